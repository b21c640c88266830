/**
 * The message of a state dict that does not fit a module: the counts, the
 * first keys of each kind, every shape mismatch side by side, and a hint when
 * the keys differ in a way that has a known fix (a prefix such as
 * DataParallel's `module.` to strip, a submodule's dict, a key spelled
 * differently than the property's snake_case).
 */
import { formatShape } from '../errors';

/** How many keys of each kind a message lists before "… and N more". */
const SHOWN = 5;

/** One tensor whose shape differs between the module and the dict. */
export interface ShapeMismatch {
  key: string;
  expected: readonly number[];
  got: readonly number[];
}

function listKeys(keys: readonly string[]): string {
  const shown = keys.slice(0, SHOWN).join(', ');
  return keys.length > SHOWN ? `${shown}, … and ${keys.length - SHOWN} more` : shown;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/**
 * The prefix whose removal turns the most `from` keys into `to` keys (each `from` key is `prefix + to key`), with
 * how many it explains; null when none does.
 */
function bestPrefix(from: readonly string[], to: readonly string[]): { prefix: string; count: number } | null {
  const targets = new Set(to);
  const counts = new Map<string, number>();
  for (const key of from) {
    // Every split at a '.' is a candidate prefix: 'model.encoder.x' → 'model.', 'model.encoder.'.
    for (let i = key.indexOf('.'); i >= 0; i = key.indexOf('.', i + 1)) {
      if (targets.has(key.slice(i + 1))) {
        const p = key.slice(0, i + 1);
        counts.set(p, (counts.get(p) ?? 0) + 1);
      }
    }
  }
  let best: { prefix: string; count: number } | null = null;
  for (const [prefix, count] of counts) if (!best || count > best.count) best = { prefix, count };
  return best;
}

/** Keys equal once case and underscores are ignored (`LayerNorm.weight` ↔ `layer_norm.weight`). */
function spellingPairs(missing: readonly string[], unexpected: readonly string[]): [string, string][] {
  const norm = (k: string): string => k.replace(/_/g, '').toLowerCase();
  const byNorm = new Map(unexpected.map((k) => [norm(k), k] as const));
  const out: [string, string][] = [];
  for (const m of missing) {
    const u = byNorm.get(norm(m));
    if (u !== undefined) out.push([m, u]);
  }
  return out;
}

/** The hint for a key mismatch, or '' when no pattern explains it. */
function keyHint(missing: readonly string[], unexpected: readonly string[]): string {
  if (!missing.length || !unexpected.length) return '';
  const strip = bestPrefix(unexpected, missing);
  const add = bestPrefix(missing, unexpected);
  if (strip && (!add || strip.count >= add.count)) {
    const rest = unexpected.filter((k) => !(k.startsWith(strip.prefix) && missing.includes(k.slice(strip.prefix.length))));
    const which = rest.length === 0 ? 'every unexpected key is' : `${strip.count} of the unexpected keys are`;
    return `hint: ${which} a missing key under the prefix '${strip.prefix}'; strip it first: ` +
      `nn.utils.consumePrefixInStateDictIfPresent(dict, '${strip.prefix}')` +
      (rest.length ? `; unexplained: ${listKeys(rest)}` : '');
  }
  if (add) {
    const rest = missing.filter((k) => !(k.startsWith(add.prefix) && unexpected.includes(k.slice(add.prefix.length))));
    const which = rest.length === 0 ? 'every missing key is' : `${add.count} of the missing keys are`;
    return `hint: ${which} an unexpected key under the prefix '${add.prefix}': the dict holds the submodule ` +
      `'${add.prefix.slice(0, -1)}' alone; load it into that submodule, or add the prefix to its keys` +
      (rest.length ? `; missing besides: ${listKeys(rest)}` : '');
  }
  const pairs = spellingPairs(missing, unexpected);
  if (pairs.length) {
    const [m, u] = pairs[0]!;
    return `hint: '${u}' in the dict is '${m}' spelled differently (${plural(pairs.length, 'such pair')}); a key that ` +
      `is not the snake_case of a property is named with registerStateKey(property, key)`;
  }
  return '';
}

/**
 * The error message for a dict that does not fit `moduleName`: missing and unexpected keys (counts and the first
 * few), shape mismatches side by side, and a hint. Empty lists are left out.
 */
export function stateDictMismatchMessage(
  moduleName: string,
  missing: readonly string[],
  unexpected: readonly string[],
  shapes: readonly ShapeMismatch[],
): string {
  if (!missing.length && !unexpected.length && shapes.length === 1) {
    const s = shapes[0]!;
    return `loadStateDict: size mismatch for '${s.key}': expected shape ${formatShape(s.expected)}, got ${formatShape(s.got)}`;
  }
  const counts: string[] = [];
  if (missing.length) counts.push(plural(missing.length, 'missing key'));
  if (unexpected.length) counts.push(plural(unexpected.length, 'unexpected key'));
  if (shapes.length) counts.push(shapes.length === 1 ? '1 size mismatch' : `${shapes.length} size mismatches`);
  const lines = [`loadStateDict: the state dict does not match ${moduleName}: ${counts.join(', ')}`];
  if (missing.length) lines.push(`  missing keys (${missing.length}): ${listKeys(missing)}`);
  if (unexpected.length) lines.push(`  unexpected keys (${unexpected.length}): ${listKeys(unexpected)}`);
  if (shapes.length) {
    lines.push('  size mismatches (the module expects | the dict has):');
    const width = Math.max(...shapes.map((s) => s.key.length));
    const expWidth = Math.max(...shapes.map((s) => formatShape(s.expected).length));
    for (const s of shapes) lines.push(`    ${s.key.padEnd(width)}  ${formatShape(s.expected).padEnd(expWidth)} | ${formatShape(s.got)}`);
  }
  const hint = keyHint(missing, unexpected);
  if (hint) lines.push(`  ${hint}`);
  return lines.join('\n');
}

/**
 * PyTorch's `consume_prefix_in_state_dict_if_present`: removes `prefix` from every key that starts with it, in
 * place (e.g. `module.` from a model saved inside `nn.DataParallel`), and returns the same dict.
 */
export function consumePrefixInStateDictIfPresent<T>(dict: Record<string, T>, prefix: string): Record<string, T> {
  if (typeof prefix !== 'string') throw new TypeError(`consumePrefixInStateDictIfPresent: argument 'prefix' must be a string, got ${typeof prefix}`);
  for (const key of Object.keys(dict)) {
    if (!key.startsWith(prefix)) continue;
    const value = dict[key]!;
    delete dict[key];
    dict[key.slice(prefix.length)] = value;
  }
  return dict;
}
