/**
 * Checks a module's options object: it must be an object, and every key must
 * be one the module knows, so a typo (`numHead` for `numHeads`) or a
 * snake_case PyTorch name (`embed_dim`) is an error instead of a silently
 * ignored setting.
 */
export function checkOptions(module: string, options: unknown, known: readonly string[]): void {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`${module}: options must be an object, got ${options === null ? 'null' : typeof options}`);
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      const camel = key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
      const hint = camel !== key && known.includes(camel) ? ` (did you mean '${camel}'?)` : '';
      throw new TypeError(`${module}: unknown option '${key}'${hint}; known options: ${known.join(', ')}`);
    }
  }
}

/** Reads an optional boolean option (default `fallback`), rejecting non-booleans. */
export function boolOption(module: string, name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new TypeError(`${module}: option '${name}' must be a boolean, got ${typeof value}`);
  return value;
}
