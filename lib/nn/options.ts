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

/** The range a number option must lie in: `[min, max]`, `max` excluded with `maxExclusive`. */
export interface NumberRange {
  min?: number;
  max?: number;
  maxExclusive?: boolean;
}

/**
 * Reads an optional number option (default `fallback`): a TypeError for a value that is not a number, a
 * RangeError for one outside `range` (NaN included).
 */
export function numberOption(module: string, name: string, value: unknown, fallback: number, range: NumberRange = {}): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') {
    throw new TypeError(`${module}: option '${name}' must be a number, got ${typeof value === 'string' ? JSON.stringify(value) : Array.isArray(value) ? 'an array' : typeof value}`);
  }
  const { min = -Infinity, max = Infinity, maxExclusive = false } = range;
  if (!(value >= min && (maxExclusive ? value < max : value <= max))) {
    const bounds = min === -Infinity ? `${maxExclusive ? '<' : '<='} ${max}` : max === Infinity ? `>= ${min}` : `in [${min}, ${max}${maxExclusive ? ')' : ']'}`;
    throw new RangeError(`${module}: option '${name}' must be a number ${bounds}, got ${value}`);
  }
  return value;
}

/**
 * Reads a shape option given as PyTorch takes it, an integer or a list of integers (`normalizedShape`), each >= 1.
 * @throws TypeError for another type, RangeError for a size below 1 or a fraction
 */
export function shapeOption(module: string, name: string, value: unknown): number[] {
  const list = typeof value === 'number' ? [value] : Array.isArray(value) ? [...(value as unknown[])] : null;
  if (list === null) {
    throw new TypeError(`${module}: option '${name}' must be an integer or a list of integers, got ${value === null ? 'null' : typeof value}`);
  }
  list.forEach((d, i) => {
    if (typeof d !== 'number') throw new TypeError(`${module}: option '${name}[${i}]' must be an integer, got ${JSON.stringify(d) ?? typeof d}`);
    if (!Number.isInteger(d) || d < 1) throw new RangeError(`${module}: option '${name}[${i}]' must be an integer >= 1, got ${d}`);
  });
  return list as number[];
}
