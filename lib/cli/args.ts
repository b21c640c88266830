/**
 * Command-line parsing shared by the `attnode` subcommands: strict flags (an
 * unknown one is a one-line error with the nearest known flag), `--help` /
 * `-h` on every subcommand, and integer flag values.
 */
import { parseArgs } from 'node:util';
/** fastest-levenshtein, loaded on the first unknown word: a program that imports the package root never needs it. */
function distance(a: string, b: string): number {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('fastest-levenshtein') as typeof import('fastest-levenshtein')).distance(a, b);
}

/** A bad command line: the CLI prints the one-line message and exits 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * The candidate nearest to `word` by edit distance, when it is near enough to
 * be a typo (at most 2 edits, or a third of the word's length for long words),
 * else null. A candidate that `word` is a prefix of wins (`--max` → `--max-running`
 * only when that prefix is unambiguous).
 */
export function closestMatch(word: string, candidates: readonly string[]): string | null {
  const prefixed = candidates.filter((c) => c.startsWith(word) && word.length >= 3);
  if (prefixed.length === 1) return prefixed[0]!;
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = distance(word, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  const allowed = Math.max(2, Math.floor(word.length / 3));
  return best !== null && bestDistance <= allowed ? best : null;
}

/** `unknown <what> 'x' (did you mean 'y'?)`, or without the hint when nothing is near. */
export function unknownMessage(what: string, word: string, candidates: readonly string[]): string {
  const near = closestMatch(word, candidates);
  return `unknown ${what} '${word}'${near ? ` (did you mean '${near}'?)` : ''}`;
}

/** Parsed flags: string flags as strings, boolean flags as true, absent ones undefined. */
export interface Flags {
  values: Record<string, string | undefined>;
  has(name: string): boolean;
}

/**
 * Parses `args` against the known flags (node:util parseArgs, strict; `--help`
 * is the caller's to handle before). @throws UsageError with one line: an unknown flag
 * with the nearest known one, a flag without its value, a stray argument.
 */
export function parseFlags(args: string[], strings: readonly string[], booleans: readonly string[] = []): Flags {
  const known = [...strings, ...booleans].map((n) => `--${n}`);
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') break;
    if (!a.startsWith('-') || a === '-') continue;
    // A value that looks like a flag (`--prompt -x`, `--seed -1`) is judged by parseArgs below, not as a name.
    if (i > 0 && strings.includes(args[i - 1]!.replace(/^--/, '')) && !args[i - 1]!.includes('=')) continue;
    const name = a.split('=', 1)[0]!;
    if (!known.includes(name)) throw new UsageError(unknownMessage('option', name, known));
  }
  const options: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const n of strings) options[n] = { type: 'string' };
  for (const n of booleans) options[n] = { type: 'boolean' };
  let parsed: Record<string, string | boolean | undefined>;
  try {
    const r = parseArgs({ args, options, strict: true, allowPositionals: true });
    if (r.positionals.length) throw new UsageError(`unexpected argument '${r.positionals[0]}'`);
    parsed = r.values as Record<string, string | boolean | undefined>;
  } catch (e) {
    if (e instanceof UsageError) throw e;
    const err = e as Error & { code?: string };
    const missing = /Option '(-[\w-]+)(?: \S+)?, (--[\w-]+) <value>' argument missing|Option '(--[\w-]+) <value>' argument missing/.exec(err.message);
    if (missing) throw new UsageError(`${missing[2] ?? missing[3]} needs a value`);
    // e.g. a string flag given a value that starts with '-': parseArgs' own message, on one line.
    throw new UsageError(err.message.split('\n')[0]!);
  }
  const values: Record<string, string | undefined> = {};
  for (const n of strings) {
    const v = parsed[n] as string | undefined;
    if (v === '') throw new UsageError(`--${n} needs a value`);
    values[n] = v;
  }
  return { values, has: (n) => parsed[n] === true };
}

/** `--help` or `-h` among a subcommand's arguments (before a `--`). */
export function wantsHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  const head = end < 0 ? args : args.slice(0, end);
  return head.includes('--help') || head.includes('-h');
}

/** Parses an integer flag value (>= min). @throws UsageError */
export function intFlag(name: string, value: string | undefined, dflt: number, min = 0): number {
  if (value === undefined) return dflt;
  const v = Number(value);
  if (!/^-?\d+$/.test(value) || !Number.isSafeInteger(v) || v < min) throw new UsageError(`--${name} needs an integer >= ${min}, got '${value}'`);
  return v;
}
