/**
 * Property tests over the native boundary (native/binding/*): random shapes (0, 1, primes, SIMD-edge sizes), every
 * kernel path and several thread counts, views at odd offsets, SharedArrayBuffer backing, and one injected fault per
 * case: a buffer one element short, the wrong typed-array type, a detached buffer, a partially overlapping output,
 * an out-of-range id or stride. Both call forms run: immediate (`addon.op(...)`) and recorded
 * (`addon.opRecord(list, ...)` + `submit`).
 *
 * Every case must end in the JS backend's result (within float32 tolerance, NaN/Inf in the same places) or in a
 * TypeError/RangeError whose message starts with `attnode.<op>:` — and never write outside its output views (every
 * view sits between canaries, see helpers/fuzz.ts) or into its inputs. Under scripts/test-asan.sh the same cases
 * also run with ASan + UBSan watching every access.
 *
 * FUZZ_RUNS (default 25 per property) and FUZZ_SEED control the runs; test/fuzz-corpus/*.json cases are replayed.
 */
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { addon } from '../lib/backend/native';
import { jsBackend } from '../lib/backend/js';
import type { AttentionMask } from '../lib/backend/backend';
import { Guarded, closeness, detach, expectError, fcParams, loadCorpus, prng, type Backing } from './helpers/fuzz';

const hasNative = addon !== null;
const ISAS = ['avx512', 'avx2', 'portable'] as const;
type Isa = (typeof ISAS)[number];
const detected = (addon?.info().detectedIsa ?? 'portable') as Isa;
const supported: Isa[] = ISAS.slice(ISAS.indexOf(detected));
const startThreads = addon?.getNumThreads() ?? 1;

/**
 * Whether the addon accepts typed arrays backed by a SharedArrayBuffer. Known bug (see the hardening report): the
 * binding asks N-API for the ArrayBuffer's data, which fails on a SharedArrayBuffer, so the call throws a bare
 * `Error: Invalid argument`. Until it is fixed the random cases use ArrayBuffers only and the `it.fails` test below
 * documents the bug; once fixed, the SharedArrayBuffer cases switch on by themselves.
 */
const SAB_OK = ((): boolean => {
  if (!addon) return false;
  try {
    const s = new Float32Array(new SharedArrayBuffer(8));
    addon.relu(s, s);
    return true;
  } catch {
    return false;
  }
})();

const throws = (fn: () => void): boolean => {
  try {
    fn();
    return false;
  } catch {
    return true;
  }
};
/**
 * Open bugs found by this file (see the hardening report), each detected by a probe so the random cases avoid them
 * only while they exist, and documented by an `it.fails` test that starts failing (= flip it back) once fixed:
 * - optionalIgnored: an optional array (gemm bias, layerNorm gamma/beta, attention weights) that is empty or detached
 *   is silently treated as absent instead of a RangeError;
 * - emptyRows: attention with no rows at all (batch, heads or lq of 0) but MultiheadAttention-style strides is refused
 *   as "output rows overlap";
 * - weightsNoDv: attention with dv = 0 returns before computing the requested weights, leaving them unwritten.
 */
const BUG = {
  optionalIgnored: !!addon && !throws(() => addon!.gemm(new Float32Array(2), new Float32Array(4), new Float32Array(2), 1, 2, 2,
    false, false, 1, 0, new Float32Array(0), 0, 1, 0, 0, 0)),
  emptyRows: !!addon && throws(() => addon!.attention(new Float32Array(0), new Float32Array(0), new Float32Array(0),
    new Float32Array(0), [0, 4, 0], [0, 4, 0], [0, 4, 0], [0, 4, 0], [2, 0, 3, 3, 4, 4], 1, [], false, null)),
  weightsNoDv: ((): boolean => {
    if (!addon) return false;
    const w = new Float32Array(1).fill(7);
    addon.attention(new Float32Array(1), new Float32Array(1), new Float32Array(0), new Float32Array(0), [1, 1, 1], [1, 1, 1],
      [0, 0, 0], [0, 0, 0], [1, 1, 1, 1, 1, 0], 1, [], false, w);
    return w[0] !== 1;
  })(),
};

type Op = 'gemm' | 'softmax' | 'layerNorm' | 'relu' | 'gelu' | 'binary' | 'embedding' | 'permute0213' | 'attention';

/** One injected fault; `arg` names the addon argument it hits. */
export type Fault =
  | { kind: 'none' }
  | { kind: 'short'; arg: string }
  | { kind: 'type'; arg: string; as: 'Float64Array' | 'Int32Array' | 'Uint8Array' | 'Array' | 'number' | 'null' }
  | { kind: 'detach'; arg: string }
  | { kind: 'overlap'; arg: string; with: string }
  | { kind: 'alias'; arg: string; with: string }
  | { kind: 'badId'; value: number }
  | { kind: 'badInt'; index: number; value: number };

/** A fully serialisable case (the corpus stores these). Data come from `seed`. */
export interface NativeCase {
  op: Op;
  /** Op-specific sizes and switches, see `build`. */
  p: Record<string, number | boolean | string | number[]>;
  seed: number;
  isa: Isa;
  threads: number;
  backing: Backing;
  /** Extra elements before each view inside its buffer (misaligns views). */
  offset: number;
  mode: 'immediate' | 'record';
  fault: Fault;
}

// ---------------------------------------------------------------------------
// Building a case: buffers (guarded), the positional addon arguments, the reference

interface Buf {
  name: string;
  elem: 'f32' | 'i32' | 'u8';
  length: number;
  out: boolean;
  fill: (r: () => number, i: number) => number;
}

interface Built {
  bufs: Buf[];
  /** Positional arguments, with buffers given by name. */
  args: (v: Record<string, unknown>) => unknown[];
  /** Runs the JS backend on fresh buffers (same contents) and returns them. */
  reference: (v: Record<string, Float32Array | Int32Array | Uint8Array>) => void;
  /** Tolerance (atol, rtol) against the reference. */
  tol: [number, number];
}

const uni = (r: () => number): number => r() * 2 - 1;

/** One past the last element reached through strides over sizes plus a row of `width` (the binding's rule). */
function reach(sizes: number[], strides: number[], width: number): number {
  if (sizes.some((s) => s === 0) || width === 0) return 0;
  return sizes.reduce((acc, s, i) => acc + (s - 1) * strides[i]!, 0) + width;
}

function build(c: NativeCase): Built {
  const p = c.p;
  switch (c.op) {
    case 'gemm': {
      const { m, n, k, batch, transA, transB, bias, act, beta, gapA, gapB, gapC, bcast } = p as Record<string, number>;
      const sizeA = m * k, sizeB = k * n, sizeC = m * n;
      const strideA = bcast === 1 ? 0 : sizeA + gapA, strideB = bcast === 2 ? 0 : sizeB + gapB, strideC = sizeC + gapC;
      const ext = (stride: number, size: number): number => (batch === 0 || size === 0 ? 0 : (batch - 1) * stride + size);
      return {
        bufs: [
          { name: 'a', elem: 'f32', length: ext(strideA, sizeA), out: false, fill: uni },
          { name: 'b', elem: 'f32', length: ext(strideB, sizeB), out: false, fill: uni },
          { name: 'c', elem: 'f32', length: ext(strideC, sizeC), out: true, fill: uni },
          ...(bias ? [{ name: 'bias', elem: 'f32' as const, length: n, out: false, fill: uni }] : []),
        ],
        args: (v) => [v.a, v.b, v.c, m, n, k, !!transA, !!transB, 1.25, beta, bias ? v.bias : null, act, batch, strideA,
          strideB, strideC],
        reference: (v) => {
          // The JS gemm runs one batch item at a time on subarrays, so gaps between items stay untouched.
          for (let i = 0; i < batch; i++) {
            jsBackend.gemm({
              a: (v.a as Float32Array).subarray(i * strideA, i * strideA + sizeA),
              b: (v.b as Float32Array).subarray(i * strideB, i * strideB + sizeB),
              c: (v.c as Float32Array).subarray(i * strideC, i * strideC + sizeC),
              m, n, k, transA: !!transA, transB: !!transB, alpha: 1.25, beta, bias: bias ? (v.bias as Float32Array) : null,
              act, batch: 1, strideA: 0, strideB: 0, strideC: 0,
            });
          }
        },
        tol: [2e-5 * Math.max(1, Math.sqrt(k)), 2e-5],
      };
    }
    case 'softmax': {
      const { rows, cols, big } = p as Record<string, number>;
      const fill = (r: () => number): number => uni(r) * (big ? 1e4 : 4);
      return {
        bufs: [
          { name: 'x', elem: 'f32', length: rows * cols, out: false, fill },
          { name: 'y', elem: 'f32', length: rows * cols, out: true, fill: uni },
        ],
        args: (v) => [v.x, v.y, rows, cols],
        reference: (v) => jsBackend.softmax(v.x as Float32Array, v.y as Float32Array, rows, cols),
        tol: [1e-6, 1e-5],
      };
    }
    case 'layerNorm': {
      const { rows, cols, gamma, beta, eps } = p as Record<string, number>;
      return {
        bufs: [
          { name: 'x', elem: 'f32', length: rows * cols, out: false, fill: (r) => uni(r) * 3 + 1 },
          ...(gamma ? [{ name: 'gamma', elem: 'f32' as const, length: cols, out: false, fill: uni }] : []),
          ...(beta ? [{ name: 'beta', elem: 'f32' as const, length: cols, out: false, fill: uni }] : []),
          { name: 'y', elem: 'f32', length: rows * cols, out: true, fill: uni },
        ],
        args: (v) => [v.x, gamma ? v.gamma : null, beta ? v.beta : null, v.y, rows, cols, eps],
        reference: (v) => jsBackend.layerNorm(v.x as Float32Array, gamma ? (v.gamma as Float32Array) : null,
          beta ? (v.beta as Float32Array) : null, v.y as Float32Array, rows, cols, eps),
        tol: [1e-4, 1e-4],
      };
    }
    case 'relu':
    case 'gelu': {
      const { len, tanh } = p as Record<string, number>;
      return {
        bufs: [
          { name: 'x', elem: 'f32', length: len, out: false, fill: (r) => uni(r) * 6 },
          { name: 'y', elem: 'f32', length: len, out: true, fill: uni },
        ],
        args: (v) => (c.op === 'relu' ? [v.x, v.y] : [v.x, v.y, !!tanh]),
        reference: (v) => (c.op === 'relu' ? jsBackend.relu(v.x as Float32Array, v.y as Float32Array)
          : jsBackend.gelu(v.x as Float32Array, v.y as Float32Array, !!tanh)),
        tol: [2e-6, 2e-6],
      };
    }
    case 'binary': {
      const { op } = p as Record<string, number>;
      const shape = p.shape as number[];
      const aB = p.aBcast as number[], bB = p.bBcast as number[];
      // Contiguous strides over the non-broadcast dims of each operand, 0 on its broadcast dims.
      const strides = (bc: number[]): number[] => {
        const s = new Array<number>(shape.length).fill(0);
        let acc = 1;
        for (let d = shape.length - 1; d >= 0; d--) {
          if (!bc[d]) {
            s[d] = acc;
            acc *= shape[d]!;
          }
        }
        return s;
      };
      const as = strides(aB), bs = strides(bB);
      const size = shape.reduce((x, y) => x * y, 1);
      return {
        bufs: [
          { name: 'a', elem: 'f32', length: shape.includes(0) ? 0 : reach(shape, as, 1), out: false, fill: uni },
          { name: 'b', elem: 'f32', length: shape.includes(0) ? 0 : reach(shape, bs, 1), out: false,
            fill: (r) => (op === 3 ? Math.sign(uni(r)) * (0.5 + r()) : uni(r)) },
          { name: 'y', elem: 'f32', length: size, out: true, fill: uni },
        ],
        args: (v) => [op, v.a, as, v.b, bs, v.y, shape],
        reference: (v) => jsBackend.binary(op, v.a as Float32Array, as, v.b as Float32Array, bs, v.y as Float32Array, shape),
        tol: [1e-6, 1e-6],
      };
    }
    case 'embedding': {
      const { num, dim, nIds } = p as Record<string, number>;
      return {
        bufs: [
          { name: 'weight', elem: 'f32', length: num * dim, out: false, fill: uni },
          { name: 'ids', elem: 'i32', length: num === 0 ? 0 : nIds, out: false, fill: (r) => Math.floor(r() * num) },
          { name: 'out', elem: 'f32', length: (num === 0 ? 0 : nIds) * dim, out: true, fill: uni },
        ],
        args: (v) => [v.weight, num, dim, v.ids, v.out],
        reference: (v) => jsBackend.embedding(v.weight as Float32Array, num, dim, v.ids as Int32Array, v.out as Float32Array),
        tol: [0, 0],
      };
    }
    case 'permute0213': {
      const d = p.d as number[];
      const size = d.reduce((x, y) => x * y, 1);
      return {
        bufs: [
          { name: 'x', elem: 'f32', length: size, out: false, fill: uni },
          { name: 'y', elem: 'f32', length: size, out: true, fill: uni },
        ],
        args: (v) => [v.x, v.y, ...d],
        reference: (v) => jsBackend.permute0213(v.x as Float32Array, v.y as Float32Array, d[0]!, d[1]!, d[2]!, d[3]!),
        tol: [0, 0],
      };
    }
    case 'attention': {
      const { batch, heads, lq, lk, dk, dv, layout, causal, weights, nMasks, bf16 } = p as Record<string, number>;
      // bfloat16 products where the CPU has them (calls with weights or <= 8 queries run float32 anyway).
      const precision = bf16 && addon?.info().bf16 ? ('bfloat16' as const) : undefined;
      const maskKinds = p.maskKinds as number[]; // per mask: 0 f32, 1 u8
      const maskBcast = p.maskBcast as number[]; // per mask: bit d set = broadcast over dim d of [b, h, q, k]
      // layout 0: [batch, heads, seq, d] contiguous; 1: [seq, batch, heads·d] (MultiheadAttention's layout).
      const st = (l: number, w: number): number[] => (layout === 0 ? [heads * l * w, l * w, w] : [heads * w, w, batch * heads * w]);
      const qs = st(lq, dk), ks = st(lk, dk), vs = st(lk, dv), os = st(lq, dv);
      const sizes = [batch, heads, lq, lk];
      const masks = maskKinds.slice(0, nMasks).map((kind, i) => {
        const strides = [0, 0, 0, 0];
        let acc = 1;
        for (let d = 3; d >= 0; d--) {
          if (!((maskBcast[i]! >> d) & 1)) {
            strides[d] = acc;
            acc *= sizes[d]!;
          }
        }
        return { kind, strides, length: reach(sizes, strides, 1) };
      });
      return {
        bufs: [
          { name: 'q', elem: 'f32', length: reach([batch, heads, lq], qs, dk), out: false, fill: uni },
          { name: 'k', elem: 'f32', length: reach([batch, heads, lk], ks, dk), out: false, fill: uni },
          { name: 'v', elem: 'f32', length: reach([batch, heads, lk], vs, dv), out: false, fill: uni },
          { name: 'out', elem: 'f32', length: reach([batch, heads, lq], os, dv), out: true, fill: uni },
          ...masks.map((m, i) => ({
            name: `mask${i}`, elem: (m.kind ? 'u8' : 'f32') as 'u8' | 'f32', length: m.length, out: false,
            // bool: ~1 in 4 masked; float: mostly small offsets, sometimes -Infinity (masked).
            fill: m.kind ? (r: () => number) => (r() < 0.25 ? 1 : 0) : (r: () => number) => (r() < 0.15 ? -Infinity : uni(r)),
          })),
          ...(weights ? [{ name: 'weights', elem: 'f32' as const, length: batch * heads * lq * lk, out: true, fill: uni }] : []),
        ],
        args: (v) => [v.q, v.k, v.v, v.out, qs, ks, vs, os, [batch, heads, lq, lk, dk, dv], 0.37,
          masks.map((m, i) => ({ data: v[`mask${i}`], strides: m.strides })), !!causal, weights ? v.weights : null,
          ...(precision ? [precision] : [])],
        reference: (v) => jsBackend.attention({
          q: v.q as Float32Array, k: v.k as Float32Array, v: v.v as Float32Array, out: v.out as Float32Array,
          qStrides: qs as [number, number, number], kStrides: ks as [number, number, number],
          vStrides: vs as [number, number, number], outStrides: os as [number, number, number],
          batch, heads, lq, lk, dk, dv, scale: 0.37,
          masks: masks.map((m, i) => ({ data: v[`mask${i}`], strides: m.strides }) as unknown as AttentionMask),
          causal: !!causal, weights: weights ? (v.weights as Float32Array) : null, precision,
        }),
        // bfloat16: the emulation rounds alike, but a last-bit float32 difference before a rounding can
        // move a probability by one bfloat16 step.
        tol: precision ? [2e-2, 2e-2] : [3e-5 * Math.max(1, Math.sqrt(dk)), 3e-5],
      };
    }
  }
}

// ---------------------------------------------------------------------------
// Running a case

/** What a fault must produce: a clean error of this class, or (null) a correct result. */
function expectedError(c: NativeCase, b: Built): typeof TypeError | typeof RangeError | null {
  const f = c.fault;
  const len = (name: string): number => b.bufs.find((x) => x.name === name)?.length ?? 0;
  switch (f.kind) {
    case 'none':
    case 'alias':
      return null;
    case 'short':
    case 'detach':
      return len(f.arg) > 0 ? RangeError : null;
    case 'type':
      return TypeError;
    case 'overlap':
      // The output view starts one element into the input: any non-empty output overlaps it.
      return len(f.arg) >= 1 && len(f.with) >= 2 ? RangeError : null;
    case 'badId':
      return len('ids') > 0 ? RangeError : null;
    case 'badInt':
      return RangeError;
  }
}

async function runCase(c: NativeCase): Promise<void> {
  const a = addon!;
  a.setIsa(c.isa);
  a.setNumThreads(c.threads);
  const b = build(c);
  const f = c.fault;
  const r = prng(c.seed);
  const guards: Record<string, Guarded> = {};
  const views: Record<string, Float32Array | Int32Array | Uint8Array> = {};
  const lengthOf = (buf: Buf): number => (f.kind === 'short' && f.arg === buf.name && buf.length > 0 ? buf.length - 1 : buf.length);
  for (const buf of b.bufs) {
    // Detaching needs a transferable (non-shared) buffer.
    const backing = (f.kind === 'detach' && f.arg === buf.name) || !SAB_OK ? 'ab' : c.backing;
    const g = new Guarded(buf.elem, lengthOf(buf), backing, c.offset);
    for (let i = 0; i < g.view.length; i++) g.view[i] = buf.fill(r, i);
    guards[buf.name] = g;
    views[buf.name] = g.view;
  }
  if (f.kind === 'badId' && views.ids && views.ids.length > 0) views.ids[Math.floor(r() * views.ids.length)] = f.value;
  // In-place / overlap: the output becomes a view into the input's buffer (same start, or one element later).
  if ((f.kind === 'alias' || f.kind === 'overlap') && views[f.with]) {
    const src = views[f.with]!;
    const shift = f.kind === 'alias' ? 0 : 1;
    const n = Math.min(lengthOf(b.bufs.find((x) => x.name === f.arg)!), src.length - shift);
    if (n > 0) views[f.arg] = new Float32Array(src.buffer, src.byteOffset + shift * 4, n);
  }
  // Reference inputs are copied before the call: an in-place call overwrites them.
  const refViews: Record<string, Float32Array | Int32Array | Uint8Array> = {};
  for (const [name, v] of Object.entries(views)) refViews[name] = v.slice();
  if (f.kind === 'alias') refViews[f.arg] = refViews[f.with]!.slice(0, views[f.arg]!.length);

  const argViews: Record<string, unknown> = { ...views };
  if (f.kind === 'type') {
    const n = views[f.arg]?.length ?? 1;
    argViews[f.arg] = f.as === 'Float64Array' ? new Float64Array(n) : f.as === 'Int32Array' ? new Int32Array(n)
      : f.as === 'Uint8Array' ? new Uint8Array(n) : f.as === 'Array' ? new Array<number>(n).fill(0)
        : f.as === 'number' ? 0 : null;
  }
  if (f.kind === 'detach') detach(views[f.arg]!.buffer as ArrayBuffer);
  const args = b.args(argViews);
  if (f.kind === 'badInt') args[f.index] = f.value;
  for (const g of Object.values(guards)) g.snapshot();

  const want = expectedError(c, b);
  const prefix = `attnode.${c.op}`;
  if (c.mode === 'immediate') {
    const call = (): void => (a[c.op] as unknown as (...x: unknown[]) => void)(...args);
    if (want) expectError(call, want, prefix);
    else call();
  } else {
    const list = a.createCommandList();
    const rec = (): void => (a[`${c.op}Record`] as unknown as (...x: unknown[]) => void)(list, ...args);
    if (want) expectError(rec, want, prefix);
    else rec();
    // A rejected record leaves the list usable (and empty): it still submits and resolves.
    await a.submit(list);
  }

  // No byte outside the views moved, and inputs were not written (unless aliased as the output).
  const written = new Set(b.bufs.filter((x) => x.out).map((x) => x.name));
  for (const [name, g] of Object.entries(guards)) {
    if (f.kind === 'detach' && f.arg === name) continue;
    g.check(name);
    const aliased = (f.kind === 'alias' || f.kind === 'overlap') && f.with === name;
    if (want || (!written.has(name) && !aliased)) g.unchanged(name);
  }
  if (want) return;

  b.reference(refViews);
  for (const buf of b.bufs.filter((x) => x.out)) {
    const worst = closeness(views[buf.name]!, refViews[buf.name]!, b.tol[0] || 1e-30, b.tol[1] || 1e-30);
    expect(worst, `${buf.name}: worst error ratio`).toBeLessThanOrEqual(1);
  }
}

// ---------------------------------------------------------------------------
// Generators

/** Sizes that hit SIMD edges and degenerate cases: 0, 1, primes, 8/16-multiples ±1. */
const dim = fc.constantFrom(0, 1, 1, 2, 3, 5, 7, 8, 13, 16, 17, 31, 33);
const smallDim = fc.constantFrom(0, 1, 1, 2, 3, 5, 7, 8);
const bit = fc.constantFrom(0, 1);

const params: Record<Op, fc.Arbitrary<NativeCase['p']>> = {
  gemm: fc.record({
    m: dim, n: dim, k: dim, batch: fc.constantFrom(0, 1, 1, 2, 3), transA: bit, transB: bit, bias: bit,
    act: fc.integer({ min: 0, max: 3 }), beta: fc.constantFrom(0, 0, 1, -0.5), gapA: fc.constantFrom(0, 0, 3),
    gapB: fc.constantFrom(0, 0, 5), gapC: fc.constantFrom(0, 0, 2), bcast: fc.constantFrom(0, 0, 1, 2),
  }),
  softmax: fc.record({ rows: dim, cols: dim, big: bit }),
  layerNorm: fc.record({ rows: dim, cols: dim, gamma: bit, beta: bit, eps: fc.constantFrom(1e-5, 1e-3, 0.5) }),
  relu: fc.record({ len: fc.constantFrom(0, 1, 7, 15, 16, 17, 33, 64, 65, 255) }),
  gelu: fc.record({ len: fc.constantFrom(0, 1, 7, 15, 16, 17, 33, 64, 65, 255), tanh: bit }),
  binary: fc.integer({ min: 1, max: 4 }).chain((nd) =>
    fc.record({
      op: fc.integer({ min: 0, max: 3 }),
      shape: fc.array(smallDim, { minLength: nd, maxLength: nd }),
      aBcast: fc.array(bit, { minLength: nd, maxLength: nd }),
      bBcast: fc.array(bit, { minLength: nd, maxLength: nd }),
    })),
  embedding: fc.record({ num: dim, dim: dim, nIds: dim }),
  permute0213: fc.record({ d: fc.array(smallDim, { minLength: 4, maxLength: 4 }) }),
  attention: fc.record({
    batch: fc.constantFrom(0, 1, 2, 3), heads: fc.constantFrom(0, 1, 2, 3), lq: fc.constantFrom(0, 1, 1, 2, 3, 5, 7, 8, 9, 13),
    // 65 and 130: several key blocks and a partial one, for the bf16 packing.
    lk: fc.constantFrom(0, 1, 1, 2, 3, 5, 7, 8, 65, 130), bf16: bit,
    dk: fc.constantFrom(0, 1, 3, 8, 16, 17), dv: fc.constantFrom(0, 1, 3, 8, 16, 17), layout: bit, causal: bit,
    weights: bit, nMasks: fc.integer({ min: 0, max: 2 }),
    maskKinds: fc.array(bit, { minLength: 2, maxLength: 2 }),
    maskBcast: fc.array(fc.integer({ min: 0, max: 15 }), { minLength: 2, maxLength: 2 }),
  }),
};

/** Names of the typed-array arguments of each op (fault targets), inputs and outputs. */
const ARRAYS: Record<Op, { inputs: string[]; outputs: string[]; optional: string[] }> = {
  gemm: { inputs: ['a', 'b'], outputs: ['c'], optional: ['bias'] },
  softmax: { inputs: ['x'], outputs: ['y'], optional: [] },
  layerNorm: { inputs: ['x'], outputs: ['y'], optional: ['gamma', 'beta'] },
  relu: { inputs: ['x'], outputs: ['y'], optional: [] },
  gelu: { inputs: ['x'], outputs: ['y'], optional: [] },
  binary: { inputs: ['a', 'b'], outputs: ['y'], optional: [] },
  embedding: { inputs: ['weight'], outputs: ['out'], optional: [] },
  permute0213: { inputs: ['x'], outputs: ['y'], optional: [] },
  attention: { inputs: ['q', 'k', 'v'], outputs: ['out'], optional: ['weights'] },
};
/** Integer arguments (positional index) a fault can push out of range. */
const INTS: Record<Op, number[]> = {
  gemm: [3, 4, 5, 11, 12, 13, 14, 15], softmax: [2, 3], layerNorm: [4, 5], relu: [], gelu: [], binary: [0],
  embedding: [1, 2], permute0213: [2, 3, 4, 5], attention: [],
};
/** Ops whose output may exactly alias an input (element-wise, in place). */
const ALIASABLE: Partial<Record<Op, [string, string]>> = {
  softmax: ['y', 'x'], layerNorm: ['y', 'x'], relu: ['y', 'x'], gelu: ['y', 'x'],
};

function faultFor(op: Op, p: NativeCase['p']): fc.Arbitrary<Fault> {
  const { inputs, outputs, optional } = ARRAYS[op];
  const present = optional.filter((n) => p[n === 'weights' ? 'weights' : n] === 1 || p[n] === true);
  const all = [...inputs, ...outputs, ...present];
  const options: fc.Arbitrary<Fault>[] = [
    fc.constant<Fault>({ kind: 'none' }),
    fc.constant<Fault>({ kind: 'none' }),
    fc.constantFrom(...all).map((arg): Fault => ({ kind: 'short', arg })),
    fc.record({ arg: fc.constantFrom(...all), as: fc.constantFrom('Float64Array', 'Int32Array', 'Array', 'number') })
      .map((x): Fault => ({ kind: 'type', ...x } as Fault)),
    fc.constantFrom(...all).map((arg): Fault => ({ kind: 'detach', arg })),
    fc.record({ arg: fc.constantFrom(...outputs), with: fc.constantFrom(...inputs) })
      .map((x): Fault => ({ kind: 'overlap', ...x })),
  ];
  const alias = ALIASABLE[op];
  if (alias) options.push(fc.constant<Fault>({ kind: 'alias', arg: alias[0], with: alias[1] }));
  if (op === 'embedding') {
    // Just past the table (num), negative, and the int32 extremes.
    options.push(fc.constantFrom(p.num as number, -1, -2147483648, 2147483647).map((value): Fault => ({ kind: 'badId', value })));
  }
  if (INTS[op].length > 0) {
    options.push(fc.record({ index: fc.constantFrom(...INTS[op]), value: fc.constantFrom(-1, 1.5, 2 ** 31, NaN, Infinity) })
      .map((x): Fault => ({ kind: 'badInt', ...x })));
  }
  return fc.oneof(...options);
}

/** Cases that would only re-find an open bug (see BUG). */
function hitsKnownBug(c: NativeCase): boolean {
  const f = c.fault;
  if (BUG.optionalIgnored && (f.kind === 'short' || f.kind === 'detach') && ARRAYS[c.op].optional.includes(f.arg)) return true;
  if (BUG.emptyRows && c.op === 'attention' && [c.p.batch, c.p.heads, c.p.lq].includes(0)) return true;
  if (BUG.weightsNoDv && c.op === 'attention' && c.p.dv === 0 && c.p.weights === 1) return true;
  return false;
}

function caseArb(op: Op, mode?: NativeCase['mode']): fc.Arbitrary<NativeCase> {
  return params[op].chain((p) =>
    fc.record({
      op: fc.constant(op),
      p: fc.constant(p),
      seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      isa: fc.constantFrom(...supported),
      threads: fc.constantFrom(1, 2, 3),
      backing: SAB_OK ? fc.constantFrom<Backing>('ab', 'ab', 'sab') : fc.constant<Backing>('ab'),
      offset: fc.constantFrom(0, 0, 1, 3),
      mode: mode ? fc.constant(mode) : fc.constantFrom<NativeCase['mode']>('immediate', 'immediate', 'record'),
      fault: faultFor(op, p),
    })).filter((c) => !hitsKnownBug(c));
}

// ---------------------------------------------------------------------------

const OPS: Op[] = ['gemm', 'softmax', 'layerNorm', 'relu', 'gelu', 'binary', 'embedding', 'permute0213', 'attention'];

describe.runIf(hasNative)('native boundary fuzz', () => {
  afterAll(() => {
    addon!.setIsa(detected);
    addon!.setNumThreads(startThreads);
  });

  it('runs against the build the environment asks for', () => {
    // scripts/test-asan.sh sets ATTNODE_EXPECT_ASAN=1: the suite must then really run on the sanitized addon.
    if (process.env.ATTNODE_EXPECT_ASAN === '1') expect(addon!.info().build.asan).toBe(true);
  });

  for (const op of OPS) {
    // gemm and attention have the most arguments to get wrong: twice the runs.
    const scale = op === 'gemm' || op === 'attention' ? 2 : 1;
    it(`${op}: correct result or a clean TypeError/RangeError, never a stray write`, async () => {
      await fc.assert(fc.asyncProperty(caseArb(op), runCase), fcParams(scale));
    });
  }

  it('recorded calls across ops in one list give the immediate results', async () => {
    const arb = fc.array(fc.constantFrom(...OPS).chain((op) => caseArb(op, 'immediate')), { minLength: 1, maxLength: 6 });
    await fc.assert(fc.asyncProperty(arb, async (cases) => {
      // Reference: each case run immediately (this also validates them); then all recorded in one list.
      const valid = cases.filter((c) => c.fault.kind === 'none' || c.fault.kind === 'alias');
      const a = addon!;
      const list = a.createCommandList();
      const results: [Float32Array | Int32Array | Uint8Array, Float32Array | Int32Array | Uint8Array][] = [];
      for (const c of valid) {
        const b = build(c);
        const mk = (): Record<string, Float32Array | Int32Array | Uint8Array> => {
          const r = prng(c.seed);
          const v: Record<string, Float32Array | Int32Array | Uint8Array> = {};
          for (const buf of b.bufs) {
            const g = new Guarded(buf.elem, buf.length, c.backing, c.offset);
            for (let i = 0; i < g.view.length; i++) g.view[i] = buf.fill(r, i);
            v[buf.name] = g.view;
          }
          return v;
        };
        const now = mk();
        (a[c.op] as unknown as (...x: unknown[]) => void)(...b.args(now));
        const later = mk();
        (a[`${c.op}Record`] as unknown as (...x: unknown[]) => void)(list, ...b.args(later));
        const out = b.bufs.find((x) => x.out)!.name;
        results.push([later[out]!, now[out]!]);
      }
      await a.submit(list);
      for (const [got, want] of results) expect(closeness(got, want, 1e-30, 1e-30)).toBe(0);
    }), fcParams(0.4));
  });

  it('a detached and a zero-length view each behave', () => {
    const a = addon!;
    const x = new Float32Array(8).fill(1);
    const y = new Float32Array(8);
    detach(y.buffer);
    expectError(() => a.relu(x, y), RangeError, "attnode.relu: argument 'y' has 0 elements");
    expectError(() => a.softmax(x, y, 2, 4), RangeError, "attnode.softmax: argument 'y' has 0 elements, expected at least 8");
    // A detached buffer is fine when nothing needs to be read from it.
    a.softmax(y, y, 0, 4);
  });

  (SAB_OK ? it : it.fails)('SharedArrayBuffer-backed typed arrays work like any other (known bug while it.fails)', () => {
    const a = addon!;
    const shared = new Float32Array(new SharedArrayBuffer(32)).fill(-2);
    a.relu(shared, shared);
    expect(Array.from(shared)).toEqual(new Array(8).fill(0));
    const y = new Float32Array(8);
    a.softmax(shared, y, 2, 4);
    expect(Array.from(y)).toEqual(new Array(8).fill(0.25));
  });

  (BUG.optionalIgnored ? it.fails : it)('an empty or detached optional array is a RangeError, not "absent" (known bug while it.fails)', () => {
    const a = addon!;
    const bias = new Float32Array([10, 20]);
    detach(bias.buffer);
    expectError(() => a.gemm(new Float32Array(2), new Float32Array(4), new Float32Array(2), 1, 2, 2, false, false, 1, 0, bias,
      0, 1, 0, 0, 0), RangeError, "attnode.gemm: argument 'bias' has 0 elements, expected at least 2");
    expectError(() => a.layerNorm(new Float32Array(4), new Float32Array(0), null, new Float32Array(4), 1, 4, 1e-5), RangeError,
      "attnode.layerNorm: argument 'gamma' has 0 elements, expected at least 4");
  });

  (BUG.emptyRows ? it.fails : it)('attention with no rows at all is a no-op whatever the strides (known bug while it.fails)', () => {
    const e = new Float32Array(0);
    addon!.attention(e, e, e, e, [0, 4, 0], [0, 4, 0], [0, 4, 0], [0, 4, 0], [2, 0, 3, 3, 4, 4], 1, [], false, null);
  });

  (BUG.weightsNoDv ? it.fails : it)('attention weights are computed even when dv = 0 (known bug while it.fails)', () => {
    const w = new Float32Array(2).fill(7);
    addon!.attention(new Float32Array(2), new Float32Array(2), new Float32Array(0), new Float32Array(0), [2, 2, 1], [2, 2, 1],
      [0, 0, 0], [0, 0, 0], [1, 1, 2, 1, 1, 0], 1, [], false, w);
    expect(Array.from(w)).toEqual([1, 1]);
  });

  it('mask strides past the end and bad mask objects are clean errors', () => {
    const a = addon!;
    const q = new Float32Array(2 * 4 * 8);
    const out = new Float32Array(2 * 4 * 8);
    const s: [number, number, number] = [32, 32, 8];
    const call = (masks: unknown): void =>
      a.attention(q, q, q, out, s, s, s, s, [2, 1, 4, 4, 8, 8], 1, masks as AttentionMask[], false, null);
    call([{ data: new Uint8Array(2 * 4 * 4), strides: [16, 0, 4, 1] }]);
    expectError(() => call([{ data: new Uint8Array(31), strides: [16, 0, 4, 1] }]), RangeError,
      "attnode.attention: argument 'masks[0].data' has 31 elements, expected at least 32");
    expectError(() => call([{ data: new Uint8Array(32), strides: [16, 0, 4, -1] }]), RangeError, 'attnode.attention');
    expectError(() => call([{ data: new Uint8Array(32), strides: [16, 0, 4] }]), TypeError, 'attnode.attention');
    expectError(() => call([{ data: new Int32Array(32), strides: [16, 0, 4, 1] }]), TypeError, 'attnode.attention');
    expectError(() => call([{ data: [0], strides: [0, 0, 0, 0] }]), TypeError, 'attnode.attention');
    expectError(() => call([1]), TypeError, 'attnode.attention');
    expectError(() => call(null), TypeError, 'attnode.attention');
    expectError(() => call([{}, {}, {}]), RangeError, 'attnode.attention: at most 2 masks');
    // Strides whose reach overflows are a RangeError, not a wrap-around.
    expectError(() => call([{ data: new Uint8Array(32), strides: [2 ** 31 - 1, 2 ** 31 - 1, 2 ** 31 - 1, 2 ** 31 - 1] }]),
      RangeError, 'attnode.attention');
    // Output strides that make rows overlap are refused.
    expectError(() => a.attention(q, q, q, out, s, s, s, [0, 0, 0], [2, 1, 4, 4, 8, 8], 1, [], false, null), RangeError,
      "attnode.attention: argument 'outStrides' makes output rows overlap");
  });

  it('thread counts and kernel paths are validated', () => {
    const a = addon!;
    expectError(() => a.setNumThreads(0), RangeError, 'attnode.setNumThreads');
    expectError(() => a.setNumThreads(1e9), RangeError, 'attnode.setNumThreads');
    expectError(() => a.setNumThreads(NaN), RangeError, 'attnode.setNumThreads');
    expectError(() => a.setIsa('AVX2'), RangeError, 'attnode.setIsa');
    for (const isa of supported) expect(a.setIsa(isa)).toBe(isa);
  });

  // Corpus replay: each entry is a NativeCase; `knownBug` entries document an open bug and are expected to fail
  // until it is fixed (then drop the field). Entries that need a separate process use kind 'native-process'.
  for (const [file, entry] of loadCorpus<NativeCase>('native')) {
    it(`corpus ${file}: ${entry.note}`, async () => {
      await runCase(entry.case);
    });
  }
  const underAsan = process.env.ATTNODE_EXPECT_ASAN === '1';
  type ProcessCase = { script: string; expect: string; knownBug?: string; asanOnly?: boolean };
  for (const [file, entry] of loadCorpus<ProcessCase>('native-process')) {
    // knownBug: expected to fail (it.fails) while open — except under ASan, where the child's report would fail the
    // whole run, and for asanOnly cases (silent corruption without ASan), which are skipped until fixed.
    const { knownBug, asanOnly } = entry.case;
    const t = asanOnly && (!underAsan || knownBug) ? it.skip : knownBug ? (underAsan ? it.skip : it.fails) : it;
    t(`corpus ${file}: ${entry.note}`, () => {
      // A child process: a case that corrupts memory must not take the test runner down with it.
      const root = path.resolve(__dirname, '..');
      const r = spawnSync(process.execPath, ['--expose-gc', '-e', entry.case.script], {
        cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, ATTNODE_ROOT: root },
      });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe(entry.case.expect);
    });
  }
});
