/**
 * Shared machinery of the fuzz tests (test/fuzz-*.test.ts): run counts, the regression corpus, guarded buffers
 * (canaries around every view, so an out-of-bounds write is caught even without ASan) and error assertions.
 *
 * Knobs (environment):
 * - FUZZ_RUNS: cases per property (default 25: the whole fuzz suite stays well under 20 s). E.g. FUZZ_RUNS=2000
 *   for a long run.
 * - FUZZ_SEED: replays one fast-check seed (printed with every failure, together with the shrunk case).
 * A failing case, once fixed, belongs in test/fuzz-corpus/ (see its README.md), so it is replayed forever.
 */
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { expect } from 'vitest';

/** Cases per property. */
export const FUZZ_RUNS = Math.max(1, Number(process.env.FUZZ_RUNS ?? 25) || 25);

/** fast-check parameters: run count, and the seed when one is being replayed. */
export function fcParams(scale = 1): { numRuns: number; seed?: number; endOnFailure: boolean } {
  const seed = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
  return { numRuns: Math.max(1, Math.round(FUZZ_RUNS * scale)), ...(seed === undefined ? {} : { seed }), endOnFailure: true };
}

const CORPUS_DIR = path.resolve(__dirname, '..', 'fuzz-corpus');

/** One regression case: `kind` selects the test that replays it, `case` is that test's own case format. */
export interface CorpusEntry<C = unknown> {
  kind: string;
  /** What once went wrong, and what is expected now. */
  note: string;
  case: C;
}

/** Every corpus entry of `kind`, with its file name (for the test title). */
export function loadCorpus<C>(kind: string): [string, CorpusEntry<C>][] {
  const out: [string, CorpusEntry<C>][] = [];
  for (const file of readdirSync(CORPUS_DIR).filter((f) => f.endsWith('.json')).sort()) {
    const parsed = JSON.parse(readFileSync(path.join(CORPUS_DIR, file), 'utf8')) as CorpusEntry<C> | CorpusEntry<C>[];
    for (const [i, e] of (Array.isArray(parsed) ? parsed : [parsed]).entries()) {
      if (e.kind === kind) out.push([Array.isArray(parsed) ? `${file}#${i}` : file, e]);
    }
  }
  return out;
}

export type Backing = 'ab' | 'sab';
type Elem = 'f32' | 'i32' | 'u8';
type View = Float32Array | Int32Array | Uint8Array;

const CTOR = { f32: Float32Array, i32: Int32Array, u8: Uint8Array } as const;
/** Elements of canary on either side of every view. */
const PAD = 8;
/** A recognisable bit pattern (a NaN payload for f32) that no kernel writes. */
const CANARY_BYTE = 0xa7;

/**
 * A view of `length` elements at element `offset + PAD` of a larger buffer whose other bytes are canaries.
 * `check()` fails the test if anything outside the view changed. `snapshot()`/`unchanged()` check that an input
 * was not written.
 */
export class Guarded<T extends View = View> {
  readonly view: T;
  readonly bytes: Uint8Array;
  private readonly begin: number;
  private readonly end: number;
  private saved: Uint8Array | null = null;

  constructor(elem: Elem, length: number, backing: Backing, offset = 0) {
    const C = CTOR[elem];
    const total = (offset + length + 2 * PAD) * C.BYTES_PER_ELEMENT;
    const buf = backing === 'sab' ? new SharedArrayBuffer(total) : new ArrayBuffer(total);
    this.bytes = new Uint8Array(buf);
    this.bytes.fill(CANARY_BYTE);
    this.view = new C(buf as ArrayBuffer, (offset + PAD) * C.BYTES_PER_ELEMENT, length) as T;
    this.begin = this.view.byteOffset;
    this.end = this.view.byteOffset + this.view.byteLength;
  }

  /** Throws (test failure) when a byte outside the view is not the canary. */
  check(name: string): void {
    for (let i = 0; i < this.bytes.length; i++) {
      if (i === this.begin) i = this.end;
      if (i >= this.bytes.length) break;
      if (this.bytes[i] !== CANARY_BYTE) {
        throw new Error(`out-of-bounds write: byte ${i - this.begin} relative to '${name}' (view ${this.end - this.begin} bytes)`);
      }
    }
  }

  snapshot(): void {
    // A detached buffer has nothing left to compare.
    this.saved = this.bytes.byteLength === 0 ? null : this.bytes.slice();
  }

  unchanged(name: string): void {
    if (!this.saved) return;
    for (let i = 0; i < this.bytes.length; i++) {
      if (this.bytes[i] !== this.saved[i]) throw new Error(`input '${name}' was written at byte ${i - this.begin}`);
    }
  }
}

/** The native error classes the binding may throw for bad arguments. */
export type ErrClass = typeof TypeError | typeof RangeError;

/** Runs `fn` and asserts it throws exactly `cls` whose message starts with `prefix`. Returns the message. */
export function expectError(fn: () => unknown, cls: ErrClass, prefix: string): string {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, `expected a ${cls.name}`).toBeInstanceOf(Error);
  expect((err as Error).constructor.name, (err as Error).message).toBe(cls.name);
  expect((err as Error).message.startsWith(prefix), (err as Error).message).toBe(true);
  return (err as Error).message;
}

/** Max over elements of |x − ref| / (atol + rtol·|ref|); NaN and ±Inf must match exactly. Returns the worst ratio. */
export function closeness(x: ArrayLike<number>, ref: ArrayLike<number>, atol: number, rtol: number): number {
  expect(x.length).toBe(ref.length);
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    const a = x[i]!;
    const b = ref[i]!;
    if (!Number.isFinite(b) || !Number.isFinite(a)) {
      if (!Object.is(a, b) && !(Number.isNaN(a) && Number.isNaN(b))) {
        throw new Error(`element ${i}: got ${a}, expected ${b}`);
      }
      continue;
    }
    worst = Math.max(worst, Math.abs(a - b) / (atol + rtol * Math.abs(b)));
  }
  return worst;
}

/** Deterministic PRNG (mulberry32) for case data: the case stores only its seed. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Detaches `buf` (the typed arrays on it then report length 0), as postMessage/structuredClone transfer does. */
export function detach(buf: ArrayBuffer): ArrayBuffer {
  return structuredClone(buf, { transfer: [buf] });
}
