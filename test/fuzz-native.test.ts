/**
 * Property tests over the native boundary (native/binding/*): random shapes (0, 1, primes, SIMD-edge sizes), every
 * kernel path and several thread counts, views at odd offsets, SharedArrayBuffer backing, and one injected fault per
 * case: a buffer one element short or empty, the wrong typed-array type, a detached buffer, a partially overlapping
 * output, an out-of-range id, size, stride or leading dimension, a required field left out. Optional arrays (gemm's
 * bias, layerNorm's weight/bias, attention's weights) get the same faults: only null/undefined mean absent. Both call
 * forms run: immediate (`addon.op(args)`) and recorded (`addon.opRecord(list, args)` + `submit`).
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
import type { AttentionBackwardArgs, AttentionMask, OpArgs, OpName } from '../lib/backend/backend';
import { Guarded, closeness, detach, expectError, fcParams, loadCorpus, prng, type Backing } from './helpers/fuzz';

const hasNative = addon !== null;
const ISAS = ['avx512', 'avx2', 'portable'] as const;
type Isa = (typeof ISAS)[number];
const detected = (addon?.info().detectedIsa ?? 'portable') as Isa;
const supported: Isa[] = ISAS.slice(ISAS.indexOf(detected));
const startThreads = addon?.getNumThreads() ?? 1;

/** The JS backend's result for one op's argument object (the reference). */
function jsReference<K extends OpName>(op: K, args: OpArgs[K]): void {
  (jsBackend[op] as (a: OpArgs[K]) => void)(args);
}

/**
 * RMSNorm of each row of contiguous [rows, cols] x into y (float64 sums): a reference for rmsNorm and addRmsNorm
 * written here from the formula, independent of the JS backend's.
 */
function rmsNormReference(x: Float32Array, weight: Float32Array | null, y: Float32Array, rows: number, cols: number,
  eps: number): void {
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let j = 0; j < cols; j++) ss += x[r * cols + j]! * x[r * cols + j]!;
    const inv = 1 / Math.sqrt(ss / cols + eps);
    for (let j = 0; j < cols; j++) y[r * cols + j] = x[r * cols + j]! * inv * (weight ? weight[j]! : 1);
  }
}

/** `rows` rows of `cols` elements spaced `ld` apart, starting at `off`, copied out contiguously. */
function gatherRows(src: Float32Array, off: number, rows: number, cols: number, ld: number): Float32Array {
  const out = new Float32Array(rows * cols);
  if (cols === 0) return out;
  for (let r = 0; r < rows; r++) out.set(src.subarray(off + r * ld, off + r * ld + cols), r * cols);
  return out;
}

/** The inverse of gatherRows: writes contiguous `src` back into rows spaced `ld` apart (gaps untouched). */
function scatterRows(dst: Float32Array, off: number, rows: number, cols: number, ld: number, src: Float32Array): void {
  if (cols === 0) return;
  for (let r = 0; r < rows; r++) dst.set(src.subarray(r * cols, (r + 1) * cols), off + r * ld);
}

type Op = 'gemm' | 'softmax' | 'layerNorm' | 'rmsNorm' | 'addLayerNorm' | 'addRmsNorm' | 'relu' | 'gelu' | 'binary'
  | 'embedding' | 'permute0213' | 'attention' | 'unary' | 'siluMul' | 'rope' | 'copy' | 'indexCopy'
  | 'softmaxBackward' | 'layerNormBackward' | 'rmsNormBackward' | 'activationBackward' | 'embeddingBackward' | 'crossEntropy'
  | 'crossEntropyBackward' | 'attentionBackward';

/** One injected fault; `arg` names the addon argument (field) it hits. */
export type Fault =
  | { kind: 'none' }
  | { kind: 'short'; arg: string }
  | { kind: 'empty'; arg: string }
  | { kind: 'missing'; field: string }
  | { kind: 'type'; arg: string; as: 'Float64Array' | 'Int32Array' | 'Uint8Array' | 'Array' | 'number' | 'null' }
  | { kind: 'detach'; arg: string }
  | { kind: 'overlap'; arg: string; with: string }
  | { kind: 'alias'; arg: string; with: string }
  | { kind: 'badId'; value: number }
  | { kind: 'badInt'; field: string; value: number };

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
// Building a case: buffers (guarded), the addon's argument object, the reference

interface Buf {
  name: string;
  elem: 'f32' | 'i32' | 'u8';
  length: number;
  out: boolean;
  fill: (r: () => number, i: number) => number;
}

interface Built {
  bufs: Buf[];
  /** The argument object, with buffers given by name. */
  args: (v: Record<string, unknown>) => Record<string, unknown>;
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
      // Corpus entries from before leading dimensions existed have no ldGap*: contiguous.
      const { m, n, k, batch, transA, transB, bias, act, beta, gapA, gapB, gapC, bcast, ldGapA = 0, ldGapB = 0, ldGapC = 0 } =
        p as Record<string, number>;
      // Stored shapes: A [m, k] ([k, m] transposed), B [k, n] ([n, k]), C [m, n]; rows ld apart.
      const [rowsA, colsA] = transA ? [k, m] : [m, k];
      const [rowsB, colsB] = transB ? [n, k] : [k, n];
      const lda = colsA + ldGapA, ldb = colsB + ldGapB, ldc = n + ldGapC;
      const span = (rows: number, cols: number, ld: number): number => (rows === 0 || cols === 0 ? 0 : (rows - 1) * ld + cols);
      const sizeA = span(rowsA, colsA, lda), sizeB = span(rowsB, colsB, ldb), sizeC = span(m, n, ldc);
      const strideA = bcast === 1 ? 0 : sizeA + gapA, strideB = bcast === 2 ? 0 : sizeB + gapB, strideC = sizeC + gapC;
      const ext = (stride: number, size: number): number => (batch === 0 || size === 0 ? 0 : (batch - 1) * stride + size);
      // Leading dimensions are left out (their defaults) when they are the defaults, half the time.
      const lds = ldGapA + ldGapB + ldGapC === 0 && (c.seed & 1) === 0 ? {} : { lda, ldb, ldc };
      return {
        bufs: [
          { name: 'a', elem: 'f32', length: ext(strideA, sizeA), out: false, fill: uni },
          { name: 'b', elem: 'f32', length: ext(strideB, sizeB), out: false, fill: uni },
          { name: 'c', elem: 'f32', length: ext(strideC, sizeC), out: true, fill: uni },
          ...(bias ? [{ name: 'bias', elem: 'f32' as const, length: n, out: false, fill: uni }] : []),
        ],
        args: (v) => ({ a: v.a, b: v.b, c: v.c, m, n, k, transA: !!transA, transB: !!transB, ...lds, alpha: 1.25, beta,
          bias: bias ? v.bias : null, act, batch, strideA, strideB, strideC }),
        reference: (v) => {
          // The JS gemm runs one contiguous batch item at a time, gathered from and scattered back into the strided
          // rows, so gaps between rows and between items stay untouched.
          const [va, vb, vc] = [v.a as Float32Array, v.b as Float32Array, v.c as Float32Array];
          for (let i = 0; i < batch; i++) {
            const ci = gatherRows(vc, i * strideC, m, n, ldc);
            jsBackend.gemm({
              a: gatherRows(va, i * strideA, rowsA, colsA, lda), b: gatherRows(vb, i * strideB, rowsB, colsB, ldb), c: ci,
              m, n, k, transA: !!transA, transB: !!transB, alpha: 1.25, beta, bias: bias ? (v.bias as Float32Array) : null,
              act, batch: 1, strideA: 0, strideB: 0, strideC: 0,
            });
            scatterRows(vc, i * strideC, m, n, ldc, ci);
          }
        },
        tol: [2e-5 * Math.max(1, Math.sqrt(k)), 2e-5],
      };
    }
    case 'softmax':
    case 'layerNorm':
    case 'rmsNorm': {
      const { rows, cols, big, gamma, beta, eps, xGap = 0, yGap = 0 } = p as Record<string, number>;
      const ldx = cols + xGap, ldy = cols + yGap;
      const span = (ld: number): number => (rows === 0 || cols === 0 ? 0 : (rows - 1) * ld + cols);
      const fill = c.op === 'softmax' ? (r: () => number): number => uni(r) * (big ? 1e4 : 4) : (r: () => number) => uni(r) * 3 + 1;
      // Row strides are left out (their default, cols) when they are the default, half the time.
      const strides = xGap + yGap === 0 && (c.seed & 1) === 0 ? {} : { xRowStride: ldx, yRowStride: ldy };
      const ln = c.op === 'layerNorm', rms = c.op === 'rmsNorm';
      return {
        bufs: [
          { name: 'x', elem: 'f32', length: span(ldx), out: false, fill },
          ...((ln || rms) && gamma ? [{ name: 'weight', elem: 'f32' as const, length: cols, out: false, fill: uni }] : []),
          ...(ln && beta ? [{ name: 'bias', elem: 'f32' as const, length: cols, out: false, fill: uni }] : []),
          { name: 'y', elem: 'f32', length: span(ldy), out: true, fill: uni },
        ],
        args: (v) => ln
          ? { x: v.x, weight: gamma ? v.weight : null, bias: beta ? v.bias : null, y: v.y, rows, cols, eps, ...strides }
          : rms ? { x: v.x, weight: gamma ? v.weight : null, y: v.y, rows, cols, eps, ...strides }
            : { x: v.x, y: v.y, rows, cols, ...strides },
        reference: (v) => {
          const x = gatherRows(v.x as Float32Array, 0, rows, cols, ldx);
          const y = new Float32Array(rows * cols);
          if (ln) {
            jsReference('layerNorm', { x, weight: gamma ? (v.weight as Float32Array) : null,
              bias: beta ? (v.bias as Float32Array) : null, y, rows, cols, eps });
          } else if (rms) {
            rmsNormReference(x, gamma ? (v.weight as Float32Array) : null, y, rows, cols, eps);
          } else {
            jsReference('softmax', { x, y, rows, cols });
          }
          scatterRows(v.y as Float32Array, 0, rows, cols, ldy, y);
        },
        tol: ln || rms ? [1e-4, 1e-4] : [1e-6, 1e-5],
      };
    }
    case 'addLayerNorm':
    case 'addRmsNorm': {
      const { rows, cols, gamma, beta, eps, sum } = p as Record<string, number>;
      const ln = c.op === 'addLayerNorm';
      const fill = (r: () => number): number => uni(r) * 2 + 0.5;
      return {
        bufs: [
          { name: 'x', elem: 'f32', length: rows * cols, out: false, fill },
          { name: 'residual', elem: 'f32', length: rows * cols, out: false, fill },
          ...(gamma ? [{ name: 'weight', elem: 'f32' as const, length: cols, out: false, fill: uni }] : []),
          ...(ln && beta ? [{ name: 'bias', elem: 'f32' as const, length: cols, out: false, fill: uni }] : []),
          { name: 'y', elem: 'f32', length: rows * cols, out: true, fill: uni },
          ...(sum ? [{ name: 'sum', elem: 'f32' as const, length: rows * cols, out: true, fill: uni }] : []),
        ],
        args: (v) => ({ x: v.x, residual: v.residual, weight: gamma ? v.weight : null, ...(ln ? { bias: beta ? v.bias : null } : {}),
          y: v.y, sum: sum ? v.sum : null, rows, cols, eps }),
        reference: (v) => {
          const [x, r] = [v.x as Float32Array, v.residual as Float32Array];
          const weight = gamma ? (v.weight as Float32Array) : null;
          const out = sum ? (v.sum as Float32Array) : null;
          if (ln) {
            jsReference('addLayerNorm', { x, residual: r, weight, bias: beta ? (v.bias as Float32Array) : null,
              y: v.y as Float32Array, sum: out, rows, cols, eps });
            return;
          }
          // The sum in float32, as the kernel (and binary add) forms it.
          const s = new Float32Array(rows * cols);
          for (let i = 0; i < s.length; i++) s[i] = x[i]! + r[i]!;
          rmsNormReference(s, weight, v.y as Float32Array, rows, cols, eps);
          if (out) out.set(s);
        },
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
        args: (v) => (c.op === 'relu' ? { x: v.x, y: v.y } : { x: v.x, y: v.y, tanhApprox: !!tanh }),
        reference: (v) => (c.op === 'relu' ? jsReference('relu', { x: v.x as Float32Array, y: v.y as Float32Array })
          : jsReference('gelu', { x: v.x as Float32Array, y: v.y as Float32Array, tanhApprox: !!tanh })),
        tol: [2e-6, 2e-6],
      };
    }
    case 'unary': {
      const { len, uop } = p as Record<string, number>;
      return {
        bufs: [
          { name: 'x', elem: 'f32', length: len, out: false, fill: (r) => uni(r) * 12 },
          { name: 'y', elem: 'f32', length: len, out: true, fill: uni },
        ],
        args: (v) => ({ op: uop, x: v.x, y: v.y }),
        reference: (v) => jsReference('unary', { op: uop!, x: v.x as Float32Array, y: v.y as Float32Array }),
        tol: [1e-6, 1e-6],
      };
    }
    case 'siluMul': {
      const { len } = p as Record<string, number>;
      return {
        bufs: [
          { name: 'gate', elem: 'f32', length: len, out: false, fill: (r) => uni(r) * 12 },
          { name: 'up', elem: 'f32', length: len, out: false, fill: (r) => uni(r) * 3 },
          { name: 'y', elem: 'f32', length: len, out: true, fill: uni },
        ],
        args: (v) => ({ gate: v.gate, up: v.up, y: v.y }),
        reference: (v) => jsReference('siluMul', { gate: v.gate as Float32Array, up: v.up as Float32Array, y: v.y as Float32Array }),
        tol: [1e-6, 1e-6],
      };
    }
    case 'copy': {
      const shape = p.shape as number[];
      const { xRev, yPad, xBcast } = p as Record<string, number>;
      // x: contiguous in reversed dim order (a transposed view) or row-major, optionally broadcast over dim 0;
      // y: row-major with yPad extra elements per innermost row (a slice of a wider output, as cat writes).
      const nd = shape.length;
      const xs = new Array<number>(nd).fill(0);
      let acc = 1;
      for (const d of xRev ? [...shape.keys()] : [...shape.keys()].reverse()) {
        xs[d] = acc;
        acc *= shape[d]!;
      }
      if (xBcast && nd > 1) xs[0] = 0;
      const ys = new Array<number>(nd).fill(0);
      acc = 1;
      for (let d = nd - 1; d >= 0; d--) {
        ys[d] = acc;
        acc *= shape[d]! + (d === nd - 1 ? yPad! : 0);
      }
      return {
        bufs: [
          { name: 'x', elem: 'f32', length: reach(shape, xs, 1), out: false, fill: uni },
          { name: 'y', elem: 'f32', length: reach(shape, ys, 1), out: true, fill: uni },
        ],
        args: (v) => ({ x: v.x, xStrides: xs, y: v.y, yStrides: ys, shape }),
        reference: (v) => jsReference('copy', { x: v.x as Float32Array, xStrides: xs, y: v.y as Float32Array, yStrides: ys, shape }),
        tol: [0, 0],
      };
    }
    case 'rope': {
      const { batch, seq, heads, dim, rdHalf, layout, perBatch, interleaved } = p as Record<string, number>;
      const rotaryDim = Math.min(2 * rdHalf!, dim! - (dim! % 2));
      // layout 0: contiguous [N, L, H, D]; 1: heads of a packed [N, L, 3·H·D + 1] projection (x) written into a
      // contiguous y; both carry a row gap so the strides are not the defaults.
      const row = layout ? 3 * heads! * dim! + 1 : heads! * dim!;
      const xs = [seq! * row, row, dim!];
      const ys = [seq! * heads! * dim!, heads! * dim!, dim!];
      const pbs = perBatch ? seq! : 0;
      const nPos = perBatch ? batch! * seq! : seq!;
      return {
        bufs: [
          { name: 'x', elem: 'f32', length: reach([batch!, seq!, heads!], xs, dim!), out: false, fill: (r) => uni(r) * 3 },
          { name: 'y', elem: 'f32', length: reach([batch!, seq!, heads!], ys, dim!), out: true, fill: uni },
          { name: 'positions', elem: 'i32', length: nPos, out: false, fill: (r) => Math.floor(r() * 5000) },
          { name: 'invFreq', elem: 'f32', length: rotaryDim / 2, out: false, fill: (r) => r() },
        ],
        args: (v) => ({ x: v.x, y: v.y, batch, seq, heads, dim, rotaryDim, xStrides: xs, yStrides: ys, positions: v.positions,
          positionsBatchStride: pbs, invFreq: v.invFreq, interleaved: !!interleaved }),
        reference: (v) => jsReference('rope', { x: v.x as Float32Array, y: v.y as Float32Array, batch: batch!, seq: seq!,
          heads: heads!, dim: dim!, rotaryDim, xStrides: xs as [number, number, number], yStrides: ys as [number, number, number],
          positions: v.positions as Int32Array, positionsBatchStride: pbs, invFreq: v.invFreq as Float32Array,
          interleaved: !!interleaved }),
        tol: [1e-6, 1e-6],
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
        args: (v) => ({ op, a: v.a, aStrides: as, b: v.b, bStrides: bs, y: v.y, shape }),
        reference: (v) => jsReference('binary', { op, a: v.a as Float32Array, aStrides: as, b: v.b as Float32Array,
          bStrides: bs, y: v.y as Float32Array, shape }),
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
        args: (v) => ({ weight: v.weight, num, dim, ids: v.ids, out: v.out }),
        reference: (v) => jsReference('embedding', { weight: v.weight as Float32Array, num, dim, ids: v.ids as Int32Array,
          out: v.out as Float32Array }),
        tol: [0, 0],
      };
    }
    case 'indexCopy': {
      const { cols, n, extra, ldxGap, ldyGap, step } = p as Record<string, number>;
      const yRows = n + extra;
      const ldx = cols + ldxGap, ldy = cols + ldyGap;
      // Distinct rows: i · s mod yRows with s coprime to yRows.
      let s = step;
      const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
      while (yRows > 0 && gcd(s, yRows) !== 1) s++;
      const span = (rows: number, ld: number): number => (rows === 0 || cols === 0 ? 0 : (rows - 1) * ld + cols);
      return {
        bufs: [
          { name: 'x', elem: 'f32', length: span(n, ldx), out: false, fill: uni },
          { name: 'index', elem: 'i32', length: n, out: false, fill: (_r, i) => (i * s) % yRows },
          { name: 'y', elem: 'f32', length: span(yRows, ldy), out: true, fill: uni },
        ],
        args: (v) => ({ x: v.x, ldx, y: v.y, ldy, yRows, rows: n, cols, index: v.index }),
        reference: (v) => jsReference('indexCopy', { x: v.x as Float32Array, ldx, y: v.y as Float32Array, ldy, yRows, rows: n, cols,
          index: v.index as Int32Array }),
        tol: [0, 0],
      };
    }
    case 'softmaxBackward': {
      const { rows, cols, log, yGap, gGap, dGap } = p as Record<string, number>;
      const ldy = cols + yGap, ldg = cols + gGap, ldd = cols + dGap;
      const span = (ld: number): number => (rows === 0 || cols === 0 ? 0 : (rows - 1) * ld + cols);
      const strides = { yRowStride: ldy, dyRowStride: ldg, dxRowStride: ldd };
      return {
        bufs: [
          { name: 'y', elem: 'f32', length: span(ldy), out: false, fill: (r) => (log ? -r() * 3 : r()) },
          { name: 'dy', elem: 'f32', length: span(ldg), out: false, fill: uni },
          { name: 'dx', elem: 'f32', length: span(ldd), out: true, fill: uni },
        ],
        args: (v) => ({ y: v.y, dy: v.dy, dx: v.dx, rows, cols, log: !!log, ...strides }),
        reference: (v) => {
          const dx = new Float32Array(rows * cols);
          jsReference('softmaxBackward', { y: gatherRows(v.y as Float32Array, 0, rows, cols, ldy),
            dy: gatherRows(v.dy as Float32Array, 0, rows, cols, ldg), dx, rows, cols, log: !!log });
          scatterRows(v.dx as Float32Array, 0, rows, cols, ldd, dx);
        },
        tol: [1e-4 * Math.max(1, cols), 1e-4],
      };
    }
    case 'layerNormBackward':
    case 'rmsNormBackward': {
      const { rows, cols, gamma, dw, db, eps, xGap, gGap, dGap } = p as Record<string, number>;
      const ln = c.op === 'layerNormBackward';
      const ldx = cols + xGap, ldg = cols + gGap, ldd = cols + dGap;
      const span = (ld: number): number => (rows === 0 || cols === 0 ? 0 : (rows - 1) * ld + cols);
      const strides = { xRowStride: ldx, dyRowStride: ldg, dxRowStride: ldd };
      return {
        bufs: [
          { name: 'x', elem: 'f32', length: span(ldx), out: false, fill: (r) => uni(r) * 3 + 1 },
          ...(gamma ? [{ name: 'weight', elem: 'f32' as const, length: cols, out: false, fill: uni }] : []),
          { name: 'dy', elem: 'f32', length: span(ldg), out: false, fill: uni },
          { name: 'dx', elem: 'f32', length: span(ldd), out: true, fill: uni },
          ...(dw ? [{ name: 'dweight', elem: 'f32' as const, length: cols, out: true, fill: uni }] : []),
          ...(ln && db ? [{ name: 'dbias', elem: 'f32' as const, length: cols, out: true, fill: uni }] : []),
        ],
        args: (v) => ({ x: v.x, weight: gamma ? v.weight : null, dy: v.dy, dx: v.dx, dweight: dw ? v.dweight : null,
          ...(ln ? { dbias: db ? v.dbias : null } : {}), rows, cols, eps, ...strides }),
        reference: (v) => {
          const x = gatherRows(v.x as Float32Array, 0, rows, cols, ldx);
          const dyc = gatherRows(v.dy as Float32Array, 0, rows, cols, ldg);
          const dx = new Float32Array(rows * cols);
          const common = { x, weight: gamma ? (v.weight as Float32Array) : null, dy: dyc, dx, rows, cols, eps,
            dweight: dw ? (v.dweight as Float32Array) : null };
          if (ln) jsReference('layerNormBackward', { ...common, dbias: db ? (v.dbias as Float32Array) : null });
          else jsReference('rmsNormBackward', common);
          scatterRows(v.dx as Float32Array, 0, rows, cols, ldd, dx);
        },
        tol: [2e-4 * Math.max(1, Math.sqrt(rows)), 2e-4],
      };
    }
    case 'activationBackward': {
      const { len, aop } = p as Record<string, number>;
      // Sigmoid (4) and tanh (5) take the forward's output: values in (0, 1) / (-1, 1).
      const fill = aop === 4 ? (r: () => number): number => r() : aop === 5 ? uni : (r: () => number): number => uni(r) * 4;
      return {
        bufs: [
          { name: 'x', elem: 'f32', length: len, out: false, fill },
          { name: 'dy', elem: 'f32', length: len, out: false, fill: uni },
          { name: 'dx', elem: 'f32', length: len, out: true, fill: uni },
        ],
        args: (v) => ({ op: aop, x: v.x, dy: v.dy, dx: v.dx }),
        reference: (v) => jsReference('activationBackward', { op: aop!, x: v.x as Float32Array, dy: v.dy as Float32Array,
          dx: v.dx as Float32Array }),
        tol: [1e-6, 1e-5],
      };
    }
    case 'embeddingBackward': {
      const { num, dim, nIds, pad, gap } = p as Record<string, number>;
      const ld = dim + gap;
      const n = num === 0 ? 0 : nIds;
      const paddingIdx = pad && num > 0 ? num - 1 : -1;
      return {
        bufs: [
          { name: 'dy', elem: 'f32', length: n === 0 || dim === 0 ? 0 : (n - 1) * ld + dim, out: false, fill: uni },
          { name: 'ids', elem: 'i32', length: n, out: false, fill: (r) => Math.floor(r() * num) },
          { name: 'dweight', elem: 'f32', length: num * dim, out: true, fill: uni },
        ],
        args: (v) => ({ dy: v.dy, ids: v.ids, dweight: v.dweight, num, dim, paddingIdx, dyRowStride: ld }),
        reference: (v) => jsReference('embeddingBackward', { dy: gatherRows(v.dy as Float32Array, 0, n, dim, ld), ids: v.ids as Int32Array,
          dweight: v.dweight as Float32Array, num, dim, paddingIdx }),
        tol: [1e-6, 1e-6],
      };
    }
    case 'crossEntropy':
    case 'crossEntropyBackward': {
      const { rows, cols, weighted, smooth, gap, perRow } = p as Record<string, number>;
      const back = c.op === 'crossEntropyBackward';
      const ld = cols + gap;
      const span = rows === 0 || cols === 0 ? 0 : (rows - 1) * ld + cols;
      const labelSmoothing = smooth ? 0.1 : 0;
      const nLoss = perRow ? rows : Math.min(rows, 1);
      const target = (r: () => number): number => (cols === 0 || r() < 0.2 ? -100 : Math.floor(r() * cols));
      return {
        bufs: [
          { name: 'logits', elem: 'f32', length: span, out: false, fill: (r) => uni(r) * 4 },
          { name: 'target', elem: 'i32', length: rows, out: false, fill: target },
          ...(weighted ? [{ name: 'weight', elem: 'f32' as const, length: cols, out: false, fill: (r: () => number) => r() + 0.5 }] : []),
          ...(back
            ? [{ name: 'lse', elem: 'f32' as const, length: rows, out: false, fill: (r: () => number) => r() + 3 },
              { name: 'dloss', elem: 'f32' as const, length: nLoss, out: false, fill: uni },
              { name: 'dlogits', elem: 'f32' as const, length: span, out: true, fill: uni }]
            : [{ name: 'loss', elem: 'f32' as const, length: rows, out: true, fill: uni },
              { name: 'lse', elem: 'f32' as const, length: rows, out: true, fill: uni }]),
        ],
        args: (v) => ({
          logits: v.logits, target: v.target, weight: weighted ? v.weight : null, ignoreIndex: -100, labelSmoothing, rows, cols,
          logitsRowStride: ld,
          ...(back ? { lse: v.lse, dloss: v.dloss, dlossStride: perRow ? 1 : 0, dlogits: v.dlogits, dlogitsRowStride: ld }
            : { loss: v.loss, lse: v.lse }),
        }),
        reference: (v) => {
          const common = { logits: gatherRows(v.logits as Float32Array, 0, rows, cols, ld), target: v.target as Int32Array,
            weight: weighted ? (v.weight as Float32Array) : null, ignoreIndex: -100, labelSmoothing, rows, cols };
          if (!back) {
            jsReference('crossEntropy', { ...common, loss: v.loss as Float32Array, lse: v.lse as Float32Array });
            return;
          }
          const dx = new Float32Array(rows * cols);
          jsReference('crossEntropyBackward', { ...common, lse: v.lse as Float32Array, dloss: v.dloss as Float32Array,
            dlossStride: perRow ? 1 : 0, dlogits: dx });
          scatterRows(v.dlogits as Float32Array, 0, rows, cols, ld, dx);
        },
        tol: [1e-5, 1e-5],
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
        args: (v) => ({ x: v.x, y: v.y, d0: d[0], d1: d[1], d2: d[2], d3: d[3] }),
        reference: (v) => jsReference('permute0213', { x: v.x as Float32Array, y: v.y as Float32Array, d0: d[0]!, d1: d[1]!,
          d2: d[2]!, d3: d[3]! }),
        tol: [0, 0],
      };
    }
    case 'attention': {
      const { batch, heads, lq, lk, dk, dv, layout, causal, nMasks, bf16, group = 1, pooledStarts = 0, pooledLengths = 0 } =
        p as Record<string, number>;
      // Pooled K/V (kvStarts / kvLengths): entries placed in reverse order with a gap, lengths lk, lk − 1, … (≥ 0);
      // such calls take no weights and compute float32.
      const pooled = !!pooledStarts || !!pooledLengths;
      const weights = pooled ? 0 : p.weights as number;
      const starts = Array.from({ length: batch! }, (_, b) => (batch! - 1 - b) * (lk! + 2));
      const lengths = Array.from({ length: batch! }, (_, b) => Math.max(0, lk! - b));
      // Grouped-query attention: kvHeads key/value heads when group divides heads (corpus cases have no group).
      const kvHeads = heads! % group! === 0 ? heads! / group! : heads!;
      // bfloat16 products where the CPU has them (calls with weights or <= 8 queries run float32 anyway).
      const precision = bf16 && addon?.info().bf16 && !pooled ? ('bfloat16' as const) : undefined;
      const maskKinds = p.maskKinds as number[]; // per mask: 0 f32, 1 u8
      const maskBcast = p.maskBcast as number[]; // per mask: bit d set = broadcast over dim d of [b, h, q, k]
      // layout 0: [batch, heads, seq, d] contiguous; 1: [seq, batch, heads·d] (MultiheadAttention's layout).
      const st = (l: number, w: number, hh = heads!): number[] => (layout === 0 ? [hh * l * w, l * w, w] : [hh * w, w, batch! * hh * w]);
      const qs = st(lq!, dk!), ks = st(lk!, dk!, kvHeads), vs = st(lk!, dv!, kvHeads), os = st(lq!, dv!);
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
      // K/V extent: per entry from its start position over its own length when pooled (the binding's rule).
      const kvReach = (s: number[], w: number): number => {
        if (!pooledStarts) return reach([batch!, kvHeads, lk!], s, w);
        let need = 0;
        for (let b = 0; b < batch!; b++) {
          const r = reach([kvHeads, pooledLengths ? lengths[b]! : lk!], [s[1]!, s[2]!], w);
          if (r > 0) need = Math.max(need, starts[b]! * s[2]! + r);
        }
        return need;
      };
      return {
        bufs: [
          { name: 'q', elem: 'f32', length: reach([batch, heads, lq], qs, dk), out: false, fill: uni },
          { name: 'k', elem: 'f32', length: kvReach(ks, dk!), out: false, fill: uni },
          { name: 'v', elem: 'f32', length: kvReach(vs, dv!), out: false, fill: uni },
          ...(pooledStarts ? [{ name: 'kvStarts', elem: 'i32' as const, length: batch!, out: false, fill: (_r: () => number, i: number) => starts[i]! }] : []),
          ...(pooledLengths ? [{ name: 'kvLengths', elem: 'i32' as const, length: batch!, out: false, fill: (_r: () => number, i: number) => lengths[i]! }] : []),
          { name: 'out', elem: 'f32', length: reach([batch, heads, lq], os, dv), out: true, fill: uni },
          ...masks.map((m, i) => ({
            name: `mask${i}`, elem: (m.kind ? 'u8' : 'f32') as 'u8' | 'f32', length: m.length, out: false,
            // bool: ~1 in 4 masked; float: mostly small offsets, sometimes -Infinity (masked).
            fill: m.kind ? (r: () => number) => (r() < 0.25 ? 1 : 0) : (r: () => number) => (r() < 0.15 ? -Infinity : uni(r)),
          })),
          ...(weights ? [{ name: 'weights', elem: 'f32' as const, length: batch * heads * lq * lk, out: true, fill: uni }] : []),
        ],
        args: (v) => ({ q: v.q, k: v.k, v: v.v, out: v.out, qStrides: qs, kStrides: ks, vStrides: vs, outStrides: os,
          batch, heads, lq, lk, dk, dv, scale: 0.37, masks: masks.map((m, i) => ({ data: v[`mask${i}`], strides: m.strides })),
          causal: !!causal, weights: weights ? v.weights : null, ...(precision ? { precision } : {}),
          ...(pooledStarts ? { kvStarts: v.kvStarts } : {}), ...(pooledLengths ? { kvLengths: v.kvLengths } : {}),
          // kvHeads is given when it differs from heads, and half the time when it does not (its default).
          ...(kvHeads !== heads || (c.seed & 2) ? { kvHeads } : {}) }),
        reference: (v) => jsBackend.attention({
          q: v.q as Float32Array, k: v.k as Float32Array, v: v.v as Float32Array, out: v.out as Float32Array,
          qStrides: qs as [number, number, number], kStrides: ks as [number, number, number],
          vStrides: vs as [number, number, number], outStrides: os as [number, number, number],
          batch, heads, lq, lk, dk, dv, scale: 0.37, kvHeads,
          masks: masks.map((m, i) => ({ data: v[`mask${i}`], strides: m.strides }) as unknown as AttentionMask),
          causal: !!causal, weights: weights ? (v.weights as Float32Array) : null, precision,
          kvStarts: pooledStarts ? (v.kvStarts as Int32Array) : null, kvLengths: pooledLengths ? (v.kvLengths as Int32Array) : null,
        }),
        // bfloat16: the emulation rounds alike, but a last-bit float32 difference before a rounding can
        // move a probability by one bfloat16 step.
        tol: precision ? [2e-2, 2e-2] : [3e-5 * Math.max(1, Math.sqrt(dk)), 3e-5],
      };
    }
    case 'attentionBackward': {
      const { batch, heads, lq, lk, dk, dv, layout, causal, nMasks, group, gq, gk, gv, drop } = p as Record<string, number>;
      const kvHeads = heads! % group! === 0 ? heads! / group! : heads!;
      // layout 0: [batch, heads, seq, d] contiguous; 1: [seq, batch, heads·d]. The gradients contiguous.
      const st = (l: number, w: number, hh = heads!): number[] => (layout === 0 ? [hh * l * w, l * w, w] : [hh * w, w, batch! * hh * w]);
      const dense = (l: number, w: number, hh = heads!): number[] => [hh * l * w, l * w, w];
      const qs = st(lq!, dk!), ks = st(lk!, dk!, kvHeads), vs = st(lk!, dv!, kvHeads), os = st(lq!, dv!), gs = st(lq!, dv!);
      const dqs = dense(lq!, dk!), dks = dense(lk!, dk!, kvHeads), dvs = dense(lk!, dv!, kvHeads);
      const masks = (p.maskKinds as number[]).slice(0, nMasks).map((kind) => ({ kind, strides: [0, 0, lk!, 1], length: lq! * lk! }));
      // L past the largest score (|s| <= 0.37·dk), so P <= e and the sums stay in a range float32 compares well in.
      const lseFill = (r: () => number): number => 0.37 * dk! + uni(r);
      const opt = (flag: number, name: string, length: number, strides: number[]) => (flag ? { buf: { name, elem: 'f32' as const, length, out: true, fill: uni }, strides } : null);
      const grads = [opt(gq!, 'gradQ', reach([batch, heads, lq], dqs, dk), dqs), opt(gk!, 'gradK', reach([batch, kvHeads, lk], dks, dk), dks),
        opt(gv!, 'gradV', reach([batch, kvHeads, lk], dvs, dv), dvs)];
      const names = ['gradQ', 'gradK', 'gradV'] as const;
      const gradArgs = (v: Record<string, unknown>): Record<string, unknown> => Object.fromEntries(names.flatMap((n, i) =>
        grads[i] ? [[n, v[n]], [`${n}Strides`, grads[i]!.strides]] : [[n, null]]));
      const common = (v: Record<string, unknown>): Record<string, unknown> => ({
        q: v.q, k: v.k, v: v.v, out: v.out, qStrides: qs, kStrides: ks, vStrides: vs, outStrides: os, batch, heads, lq, lk, dk, dv,
        scale: 0.37, causal: !!causal, masks: masks.map((m, i) => ({ data: v[`mask${i}`], strides: m.strides })), lse: v.lse,
        dOut: v.dOut, dOutStrides: gs, ...(kvHeads !== heads || (c.seed & 2) ? { kvHeads } : {}),
        ...(drop ? { dropoutP: 0.25, dropoutSeed: c.seed >>> 0 } : {}), ...gradArgs(v),
      });
      return {
        bufs: [
          { name: 'q', elem: 'f32', length: reach([batch, heads, lq], qs, dk), out: false, fill: uni },
          { name: 'k', elem: 'f32', length: reach([batch, kvHeads, lk], ks, dk), out: false, fill: uni },
          { name: 'v', elem: 'f32', length: reach([batch, kvHeads, lk], vs, dv), out: false, fill: uni },
          { name: 'out', elem: 'f32', length: reach([batch, heads, lq], os, dv), out: false, fill: uni },
          { name: 'lse', elem: 'f32', length: batch! * heads! * lq!, out: false, fill: lseFill },
          { name: 'dOut', elem: 'f32', length: reach([batch, heads, lq], gs, dv), out: false, fill: uni },
          ...masks.map((m, i) => ({
            name: `mask${i}`, elem: (m.kind ? 'u8' : 'f32') as 'u8' | 'f32', length: m.length, out: false,
            fill: m.kind ? (r: () => number) => (r() < 0.25 ? 1 : 0) : (r: () => number) => (r() < 0.15 ? -Infinity : uni(r)),
          })),
          ...grads.flatMap((g) => (g ? [g.buf] : [])),
        ],
        args: common,
        reference: (v) => jsBackend.attentionBackward(common(v) as unknown as AttentionBackwardArgs),
        // Sums over up to lk keys (dQ) or group·lq queries (dK, dV) of products bounded by e·(dk + dv).
        tol: [2e-5 * (1 + dk! + dv!) * Math.sqrt(1 + Math.max(lk!, heads! * lq!)), 1e-4],
      };
    }
  }
}

// ---------------------------------------------------------------------------
// Running a case

/** The int32 index argument a 'badId' fault corrupts. */
function idArg(op: Op): string {
  return op === 'indexCopy' ? 'index' : op === 'crossEntropy' || op === 'crossEntropyBackward' ? 'target' : 'ids';
}

/** What a fault must produce: a clean error of this class, or (null) a correct result. */
function expectedError(c: NativeCase, b: Built): typeof TypeError | typeof RangeError | null {
  const f = c.fault;
  const len = (name: string): number => b.bufs.find((x) => x.name === name)?.length ?? 0;
  switch (f.kind) {
    case 'none':
    case 'alias':
      return null;
    case 'short':
    case 'empty':
    case 'detach':
      // An optional array given empty or detached is checked like any other: only null/undefined mean absent.
      return len(f.arg) > 0 ? RangeError : null;
    case 'type':
    case 'missing':
      return TypeError;
    case 'overlap':
      // The output view starts one element into the input: any non-empty output overlaps it.
      return len(f.arg) >= 1 && len(f.with) >= 2 ? RangeError : null;
    case 'badId':
      return len(idArg(c.op)) > 0 ? RangeError : null;
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
    const backing = f.kind === 'detach' && f.arg === buf.name ? 'ab' : c.backing;
    const g = new Guarded(buf.elem, lengthOf(buf), backing, c.offset);
    for (let i = 0; i < g.view.length; i++) g.view[i] = buf.fill(r, i);
    guards[buf.name] = g;
    views[buf.name] = g.view;
  }
  const idView = views[idArg(c.op)];
  if (f.kind === 'badId' && idView && idView.length > 0) idView[Math.floor(r() * idView.length)] = f.value;
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
    // An int32 argument (rope's positions) given the wrong type gets a Float32Array instead of its own type.
    const i32 = views[f.arg] instanceof Int32Array;
    argViews[f.arg] = f.as === 'Float64Array' ? new Float64Array(n) : f.as === 'Int32Array' ? (i32 ? new Float32Array(n) : new Int32Array(n))
      : f.as === 'Uint8Array' ? new Uint8Array(n) : f.as === 'Array' ? new Array<number>(n).fill(0)
        : f.as === 'number' ? 0 : null;
  }
  if (f.kind === 'empty') argViews[f.arg] = new (views[f.arg]!.constructor as Float32ArrayConstructor)(0);
  if (f.kind === 'detach') detach(views[f.arg]!.buffer as ArrayBuffer);
  const args = b.args(argViews);
  if (f.kind === 'badInt') args[f.field] = f.value;
  if (f.kind === 'missing') delete args[f.field];
  for (const g of Object.values(guards)) g.snapshot();

  const want = expectedError(c, b);
  const prefix = `attnode.${c.op}`;
  if (c.mode === 'immediate') {
    const call = (): void => (a[c.op] as unknown as (x: unknown) => void)(args);
    if (want) expectError(call, want, prefix);
    else call();
  } else {
    const list = a.createCommandList();
    const rec = (): void => (a[`${c.op}Record`] as unknown as (l: unknown, x: unknown) => void)(list, args);
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
    // Extra elements per row beyond the stored row length: lda/ldb/ldc above their minimum.
    ldGapA: fc.constantFrom(0, 0, 1, 4), ldGapB: fc.constantFrom(0, 0, 3), ldGapC: fc.constantFrom(0, 0, 2),
  }),
  // xGap / yGap: extra elements per row (xRowStride / yRowStride above cols).
  softmax: fc.record({ rows: dim, cols: dim, big: bit, xGap: fc.constantFrom(0, 0, 1, 5), yGap: fc.constantFrom(0, 0, 2) }),
  layerNorm: fc.record({ rows: dim, cols: dim, gamma: bit, beta: bit, eps: fc.constantFrom(1e-5, 1e-3, 0.5),
    xGap: fc.constantFrom(0, 0, 1, 5), yGap: fc.constantFrom(0, 0, 2) }),
  rmsNorm: fc.record({ rows: dim, cols: dim, gamma: bit, eps: fc.constantFrom(1e-5, 1e-3, 0.5),
    xGap: fc.constantFrom(0, 0, 1, 5), yGap: fc.constantFrom(0, 0, 2) }),
  addLayerNorm: fc.record({ rows: dim, cols: dim, gamma: bit, beta: bit, sum: bit, eps: fc.constantFrom(1e-5, 1e-3, 0.5) }),
  addRmsNorm: fc.record({ rows: dim, cols: dim, gamma: bit, sum: bit, eps: fc.constantFrom(1e-5, 1e-3, 0.5) }),
  relu: fc.record({ len: fc.constantFrom(0, 1, 7, 15, 16, 17, 33, 64, 65, 255) }),
  gelu: fc.record({ len: fc.constantFrom(0, 1, 7, 15, 16, 17, 33, 64, 65, 255), tanh: bit }),
  unary: fc.record({ len: fc.constantFrom(0, 1, 7, 15, 16, 17, 33, 64, 65, 255), uop: fc.integer({ min: 0, max: 2 }) }),
  siluMul: fc.record({ len: fc.constantFrom(0, 1, 7, 15, 16, 17, 33, 64, 65, 255) }),
  copy: fc.integer({ min: 1, max: 4 }).chain((nd) => fc.record({
    shape: fc.array(smallDim, { minLength: nd, maxLength: nd }), xRev: bit, yPad: fc.constantFrom(0, 0, 1, 3), xBcast: bit,
  })),
  rope: fc.record({
    batch: fc.constantFrom(0, 1, 2, 3), seq: fc.constantFrom(0, 1, 2, 5, 9), heads: fc.constantFrom(0, 1, 2, 3),
    dim: fc.constantFrom(0, 2, 4, 8, 16, 17, 34, 66), rdHalf: fc.constantFrom(0, 1, 2, 4, 8, 33), layout: bit, perBatch: bit,
    interleaved: bit,
  }),
  binary: fc.integer({ min: 1, max: 4 }).chain((nd) =>
    fc.record({
      op: fc.integer({ min: 0, max: 3 }),
      shape: fc.array(smallDim, { minLength: nd, maxLength: nd }),
      aBcast: fc.array(bit, { minLength: nd, maxLength: nd }),
      bBcast: fc.array(bit, { minLength: nd, maxLength: nd }),
    })),
  embedding: fc.record({ num: dim, dim: dim, nIds: dim }),
  permute0213: fc.record({ d: fc.array(smallDim, { minLength: 4, maxLength: 4 }) }),
  softmaxBackward: fc.record({ rows: dim, cols: dim, log: bit, yGap: fc.constantFrom(0, 0, 3), gGap: fc.constantFrom(0, 0, 1),
    dGap: fc.constantFrom(0, 0, 2) }),
  layerNormBackward: fc.record({ rows: dim, cols: dim, gamma: bit, dw: bit, db: bit, eps: fc.constantFrom(1e-5, 1e-3, 0.5),
    xGap: fc.constantFrom(0, 0, 1, 5), gGap: fc.constantFrom(0, 0, 2), dGap: fc.constantFrom(0, 0, 3) }),
  rmsNormBackward: fc.record({ rows: dim, cols: dim, gamma: bit, dw: bit, db: fc.constant(0), eps: fc.constantFrom(1e-5, 1e-3, 0.5),
    xGap: fc.constantFrom(0, 0, 1, 5), gGap: fc.constantFrom(0, 0, 2), dGap: fc.constantFrom(0, 0, 3) }),
  activationBackward: fc.record({ len: fc.constantFrom(0, 1, 7, 15, 16, 17, 33, 64, 65, 255), aop: fc.integer({ min: 0, max: 5 }) }),
  embeddingBackward: fc.record({ num: dim, dim, nIds: dim, pad: bit, gap: fc.constantFrom(0, 0, 3) }),
  crossEntropy: fc.record({ rows: dim, cols: dim, weighted: bit, smooth: bit, gap: fc.constantFrom(0, 0, 2), perRow: fc.constant(1) }),
  crossEntropyBackward: fc.record({ rows: dim, cols: dim, weighted: bit, smooth: bit, gap: fc.constantFrom(0, 0, 2), perRow: bit }),
  indexCopy: fc.record({ cols: dim, n: smallDim, extra: fc.constantFrom(0, 1, 5), ldxGap: fc.constantFrom(0, 0, 3),
    ldyGap: fc.constantFrom(0, 0, 2), step: fc.constantFrom(1, 2, 3, 7) }),
  attention: fc.record({
    batch: fc.constantFrom(0, 1, 2, 3), heads: fc.constantFrom(0, 1, 2, 3, 4, 6), group: fc.constantFrom(1, 1, 2, 3), lq: fc.constantFrom(0, 1, 1, 2, 3, 5, 7, 8, 9, 13),
    // 65 and 130: several key blocks and a partial one, for the bf16 packing.
    lk: fc.constantFrom(0, 1, 1, 2, 3, 5, 7, 8, 65, 130), bf16: bit,
    dk: fc.constantFrom(0, 1, 3, 8, 16, 17), dv: fc.constantFrom(0, 1, 3, 8, 16, 17), layout: bit, causal: bit,
    weights: bit, nMasks: fc.integer({ min: 0, max: 2 }), pooledStarts: fc.constantFrom(0, 0, 1), pooledLengths: fc.constantFrom(0, 0, 1),
    maskKinds: fc.array(bit, { minLength: 2, maxLength: 2 }),
    maskBcast: fc.array(fc.integer({ min: 0, max: 15 }), { minLength: 2, maxLength: 2 }),
  }).map((p) => (p.pooledStarts || p.pooledLengths ? { ...p, weights: 0 } : p)), // pooled calls take no weights
  attentionBackward: fc.record({
    batch: fc.constantFrom(0, 1, 2), heads: fc.constantFrom(0, 1, 2, 4), group: fc.constantFrom(1, 1, 2), lq: fc.constantFrom(0, 1, 2, 5, 33, 40),
    // 65 and 130: several key blocks and a partial one.
    lk: fc.constantFrom(0, 1, 3, 8, 65, 130), dk: fc.constantFrom(0, 1, 3, 8, 17), dv: fc.constantFrom(0, 1, 3, 8, 17),
    layout: bit, causal: bit, nMasks: fc.integer({ min: 0, max: 2 }), maskKinds: fc.array(bit, { minLength: 2, maxLength: 2 }),
    gq: fc.constant(1), gk: bit, gv: bit, drop: bit,
  }),
};

/**
 * Names of the typed-array arguments of each op (fault targets): inputs, outputs, and optional ones (given when the
 * case's flag in `p` is set).
 */
const ARRAYS: Record<Op, { inputs: string[]; outputs: string[]; optional: [name: string, flag: string][] }> = {
  gemm: { inputs: ['a', 'b'], outputs: ['c'], optional: [['bias', 'bias']] },
  softmax: { inputs: ['x'], outputs: ['y'], optional: [] },
  layerNorm: { inputs: ['x'], outputs: ['y'], optional: [['weight', 'gamma'], ['bias', 'beta']] },
  rmsNorm: { inputs: ['x'], outputs: ['y'], optional: [['weight', 'gamma']] },
  addLayerNorm: { inputs: ['x', 'residual'], outputs: ['y'], optional: [['weight', 'gamma'], ['bias', 'beta'], ['sum', 'sum']] },
  addRmsNorm: { inputs: ['x', 'residual'], outputs: ['y'], optional: [['weight', 'gamma'], ['sum', 'sum']] },
  relu: { inputs: ['x'], outputs: ['y'], optional: [] },
  gelu: { inputs: ['x'], outputs: ['y'], optional: [] },
  unary: { inputs: ['x'], outputs: ['y'], optional: [] },
  siluMul: { inputs: ['gate', 'up'], outputs: ['y'], optional: [] },
  rope: { inputs: ['x', 'positions', 'invFreq'], outputs: ['y'], optional: [] },
  copy: { inputs: ['x'], outputs: ['y'], optional: [] },
  binary: { inputs: ['a', 'b'], outputs: ['y'], optional: [] },
  embedding: { inputs: ['weight'], outputs: ['out'], optional: [] },
  permute0213: { inputs: ['x'], outputs: ['y'], optional: [] },
  indexCopy: { inputs: ['x', 'index'], outputs: ['y'], optional: [] },
  softmaxBackward: { inputs: ['y', 'dy'], outputs: ['dx'], optional: [] },
  layerNormBackward: { inputs: ['x', 'dy'], outputs: ['dx'], optional: [['weight', 'gamma'], ['dweight', 'dw'], ['dbias', 'db']] },
  rmsNormBackward: { inputs: ['x', 'dy'], outputs: ['dx'], optional: [['weight', 'gamma'], ['dweight', 'dw']] },
  activationBackward: { inputs: ['x', 'dy'], outputs: ['dx'], optional: [] },
  embeddingBackward: { inputs: ['dy'], outputs: ['dweight'], optional: [] },
  crossEntropy: { inputs: ['logits', 'target'], outputs: ['loss', 'lse'], optional: [['weight', 'weighted']] },
  crossEntropyBackward: { inputs: ['logits', 'target', 'lse', 'dloss'], outputs: ['dlogits'], optional: [['weight', 'weighted']] },
  attention: { inputs: ['q', 'k', 'v'], outputs: ['out'],
    optional: [['weights', 'weights'], ['kvStarts', 'pooledStarts'], ['kvLengths', 'pooledLengths']] },
  attentionBackward: { inputs: ['q', 'k', 'v', 'out', 'lse', 'dOut'], outputs: ['gradQ'],
    optional: [['gradK', 'gk'], ['gradV', 'gv']] },
};
/** Integer fields a fault can push out of range (optional ones included: given, they are checked alike). */
const INTS: Record<Op, string[]> = {
  gemm: ['m', 'n', 'k', 'lda', 'ldb', 'ldc', 'act', 'batch', 'strideA', 'strideB', 'strideC'],
  softmax: ['rows', 'cols', 'xRowStride', 'yRowStride'],
  layerNorm: ['rows', 'cols', 'xRowStride', 'yRowStride'],
  rmsNorm: ['rows', 'cols', 'xRowStride', 'yRowStride'],
  addLayerNorm: ['rows', 'cols'],
  addRmsNorm: ['rows', 'cols'],
  relu: [],
  gelu: [],
  unary: ['op'],
  siluMul: [],
  rope: ['batch', 'seq', 'heads', 'dim', 'rotaryDim', 'positionsBatchStride'],
  copy: [],
  binary: ['op'],
  embedding: ['num', 'dim'],
  permute0213: ['d0', 'd1', 'd2', 'd3'],
  indexCopy: ['ldx', 'ldy', 'yRows', 'rows', 'cols'],
  softmaxBackward: ['rows', 'cols', 'yRowStride', 'dyRowStride', 'dxRowStride'],
  layerNormBackward: ['rows', 'cols', 'xRowStride', 'dyRowStride', 'dxRowStride'],
  rmsNormBackward: ['rows', 'cols', 'xRowStride', 'dyRowStride', 'dxRowStride'],
  activationBackward: ['op'],
  embeddingBackward: ['num', 'dim', 'dyRowStride'],
  crossEntropy: ['rows', 'cols', 'logitsRowStride'],
  crossEntropyBackward: ['rows', 'cols', 'dlossStride', 'logitsRowStride', 'dlogitsRowStride'],
  attention: ['batch', 'heads', 'lq', 'lk', 'dk', 'dv', 'kvHeads'],
  attentionBackward: ['batch', 'heads', 'lq', 'lk', 'dk', 'dv', 'kvHeads'],
};
/** Fields without a default: leaving one out is a TypeError naming it. */
const REQUIRED: Record<Op, string[]> = {
  gemm: ['a', 'b', 'c', 'm', 'n', 'k'],
  softmax: ['x', 'y', 'rows', 'cols'],
  layerNorm: ['x', 'weight', 'bias', 'y', 'rows', 'cols', 'eps'],
  rmsNorm: ['x', 'weight', 'y', 'rows', 'cols', 'eps'],
  addLayerNorm: ['x', 'residual', 'weight', 'bias', 'y', 'sum', 'rows', 'cols', 'eps'],
  addRmsNorm: ['x', 'residual', 'weight', 'y', 'sum', 'rows', 'cols', 'eps'],
  relu: ['x', 'y'],
  gelu: ['x', 'y', 'tanhApprox'],
  unary: ['op', 'x', 'y'],
  siluMul: ['gate', 'up', 'y'],
  copy: ['x', 'xStrides', 'y', 'yStrides', 'shape'],
  rope: ['x', 'y', 'batch', 'seq', 'heads', 'dim', 'rotaryDim', 'xStrides', 'yStrides', 'positions', 'positionsBatchStride',
    'invFreq', 'interleaved'],
  binary: ['op', 'a', 'aStrides', 'b', 'bStrides', 'y', 'shape'],
  embedding: ['weight', 'num', 'dim', 'ids', 'out'],
  permute0213: ['x', 'y', 'd0', 'd1', 'd2', 'd3'],
  indexCopy: ['x', 'ldx', 'y', 'ldy', 'yRows', 'rows', 'cols', 'index'],
  softmaxBackward: ['y', 'dy', 'dx', 'rows', 'cols'],
  layerNormBackward: ['x', 'weight', 'dy', 'dx', 'dweight', 'dbias', 'rows', 'cols', 'eps'],
  rmsNormBackward: ['x', 'weight', 'dy', 'dx', 'dweight', 'rows', 'cols', 'eps'],
  activationBackward: ['op', 'x', 'dy', 'dx'],
  embeddingBackward: ['dy', 'ids', 'dweight', 'num', 'dim', 'paddingIdx'],
  crossEntropy: ['logits', 'target', 'weight', 'ignoreIndex', 'labelSmoothing', 'loss', 'lse', 'rows', 'cols'],
  crossEntropyBackward: ['logits', 'lse', 'target', 'weight', 'ignoreIndex', 'labelSmoothing', 'dloss', 'dlossStride', 'dlogits',
    'rows', 'cols'],
  attention: ['q', 'k', 'v', 'out', 'qStrides', 'kStrides', 'vStrides', 'outStrides', 'batch', 'heads', 'lq', 'lk', 'dk',
    'dv', 'scale', 'masks', 'causal', 'weights'],
  attentionBackward: ['q', 'k', 'v', 'out', 'qStrides', 'kStrides', 'vStrides', 'outStrides', 'batch', 'heads', 'lq', 'lk', 'dk',
    'dv', 'scale', 'masks', 'causal', 'lse', 'dOut', 'dOutStrides', 'gradQ', 'gradK', 'gradV'],
};
/** Ops whose output may exactly alias an input (element-wise, in place). */
const ALIASABLE: Partial<Record<Op, [string, string]>> = {
  softmax: ['y', 'x'], layerNorm: ['y', 'x'], rmsNorm: ['y', 'x'], addLayerNorm: ['y', 'residual'], addRmsNorm: ['y', 'x'],
  relu: ['y', 'x'], gelu: ['y', 'x'], unary: ['y', 'x'], siluMul: ['y', 'up'], activationBackward: ['dx', 'dy'],
};

function faultFor(op: Op, p: NativeCase['p']): fc.Arbitrary<Fault> {
  const { inputs, outputs, optional } = ARRAYS[op];
  const present = optional.filter(([, flag]) => p[flag] === 1 || p[flag] === true).map(([name]) => name);
  const all = [...inputs, ...outputs, ...present];
  const options: fc.Arbitrary<Fault>[] = [
    fc.constant<Fault>({ kind: 'none' }),
    fc.constant<Fault>({ kind: 'none' }),
    fc.constantFrom(...all).map((arg): Fault => ({ kind: 'short', arg })),
    fc.constantFrom(...all).map((arg): Fault => ({ kind: 'empty', arg })),
    fc.record({ arg: fc.constantFrom(...all), as: fc.constantFrom('Float64Array', 'Int32Array', 'Array', 'number') })
      .map((x): Fault => ({ kind: 'type', ...x } as Fault)),
    fc.constantFrom(...all).map((arg): Fault => ({ kind: 'detach', arg })),
    fc.record({ arg: fc.constantFrom(...outputs), with: fc.constantFrom(...inputs) })
      .map((x): Fault => ({ kind: 'overlap', ...x })),
    fc.constantFrom(...REQUIRED[op]).map((field): Fault => ({ kind: 'missing', field })),
  ];
  const alias = ALIASABLE[op];
  // In place needs the same view: with different row strides it is a (clean) overlap error, not an alias.
  if (alias && (p.xGap ?? 0) === (p.yGap ?? 0)) options.push(fc.constant<Fault>({ kind: 'alias', arg: alias[0], with: alias[1] }));
  if (op === 'embedding') {
    // Just past the table (num), negative, and the int32 extremes.
    options.push(fc.constantFrom(p.num as number, -1, -2147483648, 2147483647).map((value): Fault => ({ kind: 'badId', value })));
  }
  if (op === 'embeddingBackward') {
    options.push(fc.constantFrom(p.num as number, -1, -2147483648, 2147483647).map((value): Fault => ({ kind: 'badId', value })));
  }
  if (op === 'crossEntropy' || op === 'crossEntropyBackward') {
    // Just past the classes, negative (ignoreIndex is -100), and the int32 extremes.
    options.push(fc.constantFrom(p.cols as number, -1, -2147483648, 2147483647).map((value): Fault => ({ kind: 'badId', value })));
  }
  if (op === 'indexCopy') {
    // Just past y's rows, negative, and the int32 extremes.
    const yRows = (p.n as number) + (p.extra as number);
    options.push(fc.constantFrom(yRows, -1, -2147483648, 2147483647).map((value): Fault => ({ kind: 'badId', value })));
  }
  if (INTS[op].length > 0) {
    options.push(fc.record({ field: fc.constantFrom(...INTS[op]), value: fc.constantFrom(-1, 1.5, 2 ** 31, NaN, Infinity) })
      .map((x): Fault => ({ kind: 'badInt', ...x })));
  }
  return fc.oneof(...options);
}

function caseArb(op: Op, mode?: NativeCase['mode']): fc.Arbitrary<NativeCase> {
  return params[op].chain((p) =>
    fc.record({
      op: fc.constant(op),
      p: fc.constant(p),
      seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      isa: fc.constantFrom(...supported),
      threads: fc.constantFrom(1, 2, 3),
      backing: fc.constantFrom<Backing>('ab', 'ab', 'sab'),
      offset: fc.constantFrom(0, 0, 1, 3),
      mode: mode ? fc.constant(mode) : fc.constantFrom<NativeCase['mode']>('immediate', 'immediate', 'record'),
      fault: faultFor(op, p),
    }));
}

// ---------------------------------------------------------------------------

const OPS: Op[] = ['gemm', 'softmax', 'layerNorm', 'rmsNorm', 'addLayerNorm', 'addRmsNorm', 'relu', 'gelu', 'binary', 'embedding',
  'permute0213', 'attention', 'unary', 'siluMul', 'rope', 'copy', 'indexCopy', 'softmaxBackward', 'layerNormBackward',
  'rmsNormBackward', 'activationBackward', 'embeddingBackward', 'crossEntropy', 'crossEntropyBackward', 'attentionBackward'];

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
        (a[c.op] as unknown as (x: unknown) => void)(b.args(now));
        const later = mk();
        (a[`${c.op}Record`] as unknown as (l: unknown, x: unknown) => void)(list, b.args(later));
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
    expectError(() => a.relu({ x, y }), RangeError, "attnode.relu: argument 'y' has 0 elements");
    expectError(() => a.softmax({ x, y, rows: 2, cols: 4 }), RangeError,
      "attnode.softmax: argument 'y' has 0 elements, expected at least 8");
    // A detached buffer is fine when nothing needs to be read from it.
    a.softmax({ x: y, y, rows: 0, cols: 4 });
  });

  it('SharedArrayBuffer-backed typed arrays work like any other', async () => {
    const a = addon!;
    const shared = new Float32Array(new SharedArrayBuffer(32)).fill(-2);
    a.relu({ x: shared, y: shared });
    expect(Array.from(shared)).toEqual(new Array(8).fill(0));
    const y = new Float32Array(new SharedArrayBuffer(32));
    a.softmax({ x: shared, y, rows: 2, cols: 4 });
    expect(Array.from(y)).toEqual(new Array(8).fill(0.25));
    // Recorded too: the list keeps the shared buffers and submit re-checks them.
    const list = a.createCommandList();
    const z = new Float32Array(new SharedArrayBuffer(32));
    a.gemmRecord(list, { a: Float32Array.from([1, 2]), b: new Float32Array(new SharedArrayBuffer(32)).fill(1), c: z, m: 1, n: 4, k: 2 });
    await a.submit(list);
    expect(Array.from(z)).toEqual([3, 3, 3, 3, 0, 0, 0, 0]);
    // Overlap is still seen through the shared buffer.
    expectError(() => a.softmax({ x: shared, y: new Float32Array(shared.buffer, 4, 7), rows: 1, cols: 7 }), RangeError,
      "attnode.softmax: output 'y' overlaps input 'x'");
  });

  it('an empty or detached optional array is a RangeError, not "absent"; null and undefined are absent', () => {
    const a = addon!;
    const gemm = (bias: Float32Array | null | undefined): Float32Array => {
      const c = new Float32Array(2);
      a.gemm({ a: Float32Array.from([1, 1]), b: Float32Array.from([1, 2, 3, 4]), c, m: 1, n: 2, k: 2, bias });
      return c;
    };
    const bias = new Float32Array([10, 20]);
    expect(Array.from(gemm(bias))).toEqual([14, 26]);
    expect(Array.from(gemm(null))).toEqual([4, 6]);
    expect(Array.from(gemm(undefined))).toEqual([4, 6]);
    detach(bias.buffer);
    expectError(() => gemm(bias), RangeError, "attnode.gemm: argument 'bias' has 0 elements, expected at least 2");
    expectError(() => gemm(new Float32Array(0)), RangeError, "attnode.gemm: argument 'bias' has 0 elements, expected at least 2");
    const ln = (weight: Float32Array | null, bias: Float32Array | null): void =>
      a.layerNorm({ x: new Float32Array(4), weight, bias, y: new Float32Array(4), rows: 1, cols: 4, eps: 1e-5 });
    expectError(() => ln(new Float32Array(0), null), RangeError, "attnode.layerNorm: argument 'weight' has 0 elements, expected at least 4");
    expectError(() => ln(null, new Float32Array(0)), RangeError, "attnode.layerNorm: argument 'bias' has 0 elements, expected at least 4");
    const w = new Float32Array(1);
    detach(w.buffer);
    expectError(() => a.attention({ q: new Float32Array(1), k: new Float32Array(1), v: new Float32Array(1), out: new Float32Array(1),
      qStrides: [1, 1, 1], kStrides: [1, 1, 1], vStrides: [1, 1, 1], outStrides: [1, 1, 1], batch: 1, heads: 1, lq: 1, lk: 1, dk: 1,
      dv: 1, scale: 1, masks: [], causal: false, weights: w }), RangeError,
    "attnode.attention: argument 'weights' has 0 elements, expected at least 1");
  });

  it('an argument object whose getters detach or shrink an array already checked is refused before any kernel runs', async () => {
    const a = addon!;
    const detachMsg = "was detached or resized while the arguments were read (by a getter or a Proxy)";
    const x = new Float32Array(1024).fill(-1);
    const y = new Float32Array(1024);
    expectError(() => a.relu({ x, get y() { detach(x.buffer); return y; } }), TypeError, `attnode.relu: argument 'x' ${detachMsg}`);
    expect(Array.from(y.subarray(0, 4))).toEqual([0, 0, 0, 0]);
    // A Proxy's trap, and the recorded form.
    const x2 = new Float32Array(64);
    const viaProxy = new Proxy({ x: x2, y: new Float32Array(64) }, {
      get(t, k: string) {
        if (k === 'y') detach(x2.buffer);
        return t[k as 'x' | 'y'];
      },
    });
    const list = a.createCommandList();
    expectError(() => a.reluRecord(list, viaProxy), TypeError, `attnode.relu: argument 'x' ${detachMsg}`);
    await a.submit(list);
    // A getter that submits the list being recorded into: the call is refused, not appended to a list that will not run it.
    const list2 = a.createCommandList();
    let submitted: Promise<void> | null = null;
    const z = new Float32Array(4).fill(-1);
    expect(() => a.reluRecord(list2, { x: z, get y() { submitted = a.submit(list2); return z; } })).toThrowError(
      'attnode.reluRecord: the command list was already submitted');
    await submitted;
    expect(Array.from(z)).toEqual([-1, -1, -1, -1]);
    // A resizable buffer shrunk by a later field's getter: the length checked earlier no longer holds.
    const rab = new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer & { resize(n: number): void })(
      4096, { maxByteLength: 4096 });
    const tracking = new Float32Array(rab);
    const y2 = new Float32Array(1024);
    expectError(() => a.softmax({ x: tracking, get y() { rab.resize(16); return y2; }, rows: 1, cols: 1024 }),
      TypeError, `attnode.softmax: argument 'x' ${detachMsg}`);
    // Shrunk before it is read, by an earlier field's getter: a plain length error.
    rab.resize(4096);
    expectError(() => a.softmax({ x: tracking, y: y2, rows: 1, get cols() { rab.resize(16); return 1024; } }),
      RangeError, "attnode.softmax: argument 'x' has 4 elements, expected at least 1024");
    // An attention mask detached by the getter of the next mask, read after it.
    const mask = new Uint8Array(16);
    const q = new Float32Array(16);
    const s3 = [16, 16, 4] as const;
    const second = { get data() { detach(mask.buffer); return new Uint8Array(16); }, strides: [0, 0, 4, 1] as const };
    expectError(() => a.attention({ q, k: q, v: q, out: new Float32Array(16), qStrides: s3, kStrides: s3, vStrides: s3, outStrides: s3,
      batch: 1, heads: 1, lq: 4, lk: 4, dk: 4, dv: 4, scale: 1, masks: [{ data: mask, strides: [0, 0, 4, 1] }, second], causal: false,
      weights: null }), TypeError, `attnode.attention: argument 'masks' ${detachMsg}`);
  });

  it('attention with no rows at all is a no-op whatever the strides', () => {
    const e = new Float32Array(0);
    const call = (batch: number, heads: number, lq: number, lk: number): void => addon!.attention({ q: e, k: e, v: e, out: e,
      qStrides: [0, 4, 0], kStrides: [0, 4, 0], vStrides: [0, 4, 0], outStrides: [0, 4, 0], batch, heads, lq, lk, dk: 4,
      dv: 4, scale: 1, masks: [], causal: false, weights: null });
    // Strides that would make output rows overlap if there were any rows.
    call(2, 0, 3, 3);
    call(0, 2, 3, 3);
    call(2, 2, 0, 0);
    const w = new Float32Array(0);
    addon!.attention({ q: e, k: e, v: e, out: e, qStrides: [0, 4, 0], kStrides: [0, 4, 0], vStrides: [0, 4, 0],
      outStrides: [0, 4, 0], batch: 2, heads: 3, lq: 0, lk: 0, dk: 4, dv: 4, scale: 1, masks: [], causal: true, weights: w });
    // With rows, the same strides are refused (and k must hold its rows).
    expectError(() => call(2, 2, 3, 0), RangeError, "attnode.attention: argument 'q' has 0 elements");
    expectError(() => call(2, 2, 0, 3), RangeError, "attnode.attention: argument 'k' has 0 elements");
  });

  it('attention weights are computed even when dv = 0', () => {
    const w = new Float32Array(2).fill(7);
    const out = new Float32Array(0);
    addon!.attention({ q: new Float32Array(2), k: new Float32Array(2), v: new Float32Array(0), out, qStrides: [2, 2, 1],
      kStrides: [2, 2, 1], vStrides: [0, 0, 0], outStrides: [0, 0, 0], batch: 1, heads: 1, lq: 2, lk: 1, dk: 1, dv: 0, scale: 1,
      masks: [], causal: false, weights: w });
    expect(Array.from(w)).toEqual([1, 1]);
  });

  it('the argument object: one object, each required field present and typed, optional fields defaulted', () => {
    const a = addon!;
    const A = Float32Array.from([1, 2, 3, 4, 5, 6]); // [2, 3]
    const B = Float32Array.from([1, 0, 0, 1, 1, 1]); // [2, 3], used transposed
    const c = new Float32Array(4);
    expectError(() => (a.gemm as unknown as (...x: unknown[]) => void)(A, B, c, 2, 2, 3), TypeError,
      'attnode.gemm: expected 1 argument (an object of named arguments), got 6');
    expectError(() => (a.gemm as unknown as (x: unknown) => void)(A), TypeError,
      'attnode.gemm: the argument must be an object of named arguments, got Float32Array');
    expectError(() => (a.relu as unknown as (x: unknown) => void)(null), TypeError,
      'attnode.relu: the argument must be an object of named arguments, got null');
    expectError(() => a.gemm({ a: A, b: B, c, m: 2, n: 2 } as never), TypeError, "attnode.gemm: argument 'k' must be a number, got undefined");
    expectError(() => a.gemm({ a: A, b: B, c, m: 2, n: 2, k: 3, transB: 1 as never }), TypeError,
      "attnode.gemm: argument 'transB' must be a boolean, got number");
    expectError(() => a.gemm({ a: A, b: B, c, m: 2, n: 2, k: 3, alpha: null as never }), TypeError,
      "attnode.gemm: argument 'alpha' must be a number, got null");
    expectError(() => a.layerNorm({ x: A, y: c, rows: 1, cols: 4, eps: 1e-5, bias: null } as never), TypeError,
      "attnode.layerNorm: argument 'weight' must be a Float32Array or null, got undefined");
    expectError(() => a.gemm({ a: A, b: B, c, m: 2, n: 2, k: 3, bias: [1, 2] as never }), TypeError,
      "attnode.gemm: argument 'bias' must be a Float32Array, null or undefined, got Array");
    // Defaults: alpha 1, beta 0 (c is write-only), no bias, contiguous; unknown fields are ignored.
    c.fill(NaN);
    a.gemm({ a: A, b: B, c, m: 2, n: 2, k: 3, transB: true, cacheB: true, somethingElse: 1 } as never);
    expect(Array.from(c)).toEqual([1, 6, 4, 15]);
    const list = a.createCommandList();
    expectError(() => (a.reluRecord as unknown as (...x: unknown[]) => void)(list, A, A), TypeError,
      'attnode.relu: expected 2 arguments (a command list and an object of named arguments), got 3');
  });

  it('gemm leading dimensions: defaults, checks against the stored row length, and strided views', () => {
    const a = addon!;
    // A [2, 3] stored in rows of 4, B [3, 2] in rows of 3, C [2, 2] in rows of 5: the padding is never touched.
    const A = Float32Array.from([1, 2, 3, -9, 4, 5, 6]);
    const B = Float32Array.from([1, 0, -9, 0, 1, -9, 1, 1]);
    const c = new Float32Array(7).fill(-1);
    a.gemm({ a: A, b: B, c, m: 2, n: 2, k: 3, lda: 4, ldb: 3, ldc: 5 });
    expect(Array.from(c)).toEqual([4, 5, -1, -1, -1, 10, 11]);
    const f = (n: number): Float32Array => new Float32Array(n);
    expectError(() => a.gemm({ a: f(6), b: f(6), c: f(4), m: 2, n: 2, k: 3, lda: 2 }), RangeError,
      "attnode.gemm: argument 'lda' is 2, expected at least k = 3");
    expectError(() => a.gemm({ a: f(6), b: f(6), c: f(4), m: 2, n: 2, k: 3, transA: true, lda: 1 }), RangeError,
      "attnode.gemm: argument 'lda' is 1, expected at least m (transA) = 2");
    expectError(() => a.gemm({ a: f(6), b: f(6), c: f(4), m: 2, n: 2, k: 3, ldb: 1 }), RangeError,
      "attnode.gemm: argument 'ldb' is 1, expected at least n = 2");
    expectError(() => a.gemm({ a: f(6), b: f(6), c: f(4), m: 2, n: 2, k: 3, transB: true, ldb: 2 }), RangeError,
      "attnode.gemm: argument 'ldb' is 2, expected at least k (transB) = 3");
    expectError(() => a.gemm({ a: f(6), b: f(6), c: f(4), m: 2, n: 2, k: 3, ldc: 1 }), RangeError,
      "attnode.gemm: argument 'ldc' is 1, expected at least n = 2");
    // Lengths are computed with the leading dimensions: (rows - 1) * ld + row length.
    expectError(() => a.gemm({ a: f(6), b: f(6), c: f(4), m: 2, n: 2, k: 3, lda: 4 }), RangeError,
      "attnode.gemm: argument 'a' has 6 elements, expected at least 7");
    expectError(() => a.gemm({ a: f(6), b: f(6), c: f(4), m: 2, n: 2, k: 3, ldc: 3 }), RangeError,
      "attnode.gemm: argument 'c' has 4 elements, expected at least 5");
    expectError(() => a.gemm({ a: f(6), b: f(6), c: f(4), m: 2, n: 2, k: 3, lda: 2 ** 31 }), RangeError,
      "attnode.gemm: argument 'lda' must be an integer in [0, 2147483647], got 2147483648");
    // The batch stride of C must clear one item's strided rows.
    expectError(() => a.gemm({ a: f(12), b: f(6), c: f(12), m: 2, n: 2, k: 3, ldc: 3, batch: 2, strideA: 6, strideC: 4 }),
      RangeError, "attnode.gemm: argument 'strideC' is 4, expected at least (m-1)*ldc + n = 5");
    // A packed weight is the contiguous B: another ldb would describe another matrix.
    const packed = a.packWeight(f(6), 3, 2, true);
    expectError(() => a.gemm({ a: f(12), b: f(8), c: f(4), m: 2, n: 2, k: 3, transB: true, ldb: 4, packedB: packed }), RangeError,
      "attnode.gemm: argument 'packedB' was packed from a contiguous B, but ldb is 4, expected 3");
  });

  it('row strides of softmax and layerNorm: checked against cols, lengths with the strides, in place only as the same view', () => {
    const a = addon!;
    const x = Float32Array.from([0, 0, 9, 1, 1, 9]);
    const y = new Float32Array(7).fill(-1);
    a.softmax({ x, y, rows: 2, cols: 2, xRowStride: 3, yRowStride: 5 });
    expect(Array.from(y)).toEqual([0.5, 0.5, -1, -1, -1, 0.5, 0.5]);
    const f = (n: number): Float32Array => new Float32Array(n);
    expectError(() => a.softmax({ x: f(6), y: f(6), rows: 2, cols: 3, xRowStride: 2 }), RangeError,
      "attnode.softmax: argument 'xRowStride' is 2, expected at least cols = 3");
    expectError(() => a.softmax({ x: f(6), y: f(6), rows: 2, cols: 3, xRowStride: 4 }), RangeError,
      "attnode.softmax: argument 'x' has 6 elements, expected at least 7 ((rows-1)*xRowStride + cols)");
    expectError(() => a.layerNorm({ x: f(6), weight: null, bias: null, y: f(6), rows: 2, cols: 3, eps: 0, yRowStride: 4 }), RangeError,
      "attnode.layerNorm: argument 'y' has 6 elements, expected at least 7 ((rows-1)*yRowStride + cols)");
    expectError(() => a.layerNorm({ x: f(6), weight: null, bias: null, y: f(6), rows: 2, cols: 3, eps: 0, yRowStride: 1.5 }), RangeError,
      "attnode.layerNorm: argument 'yRowStride' must be an integer");
    // In place: the same view (same start, same stride) is fine; the same start with another stride is not.
    const buf = Float32Array.from([1, 2, 0, 3, 5]);
    a.softmax({ x: buf, y: buf, rows: 2, cols: 2, xRowStride: 3, yRowStride: 3 });
    expect(buf[2]).toBe(0);
    expect(buf[0]! + buf[1]!).toBeCloseTo(1, 6);
    expectError(() => a.softmax({ x: buf, y: buf, rows: 2, cols: 2, xRowStride: 3, yRowStride: 2 }), RangeError,
      "attnode.softmax: output 'y' overlaps input 'x'");
  });

  it('thread counts and kernel paths are validated', () => {
    const a = addon!;
    expectError(() => a.setNumThreads(0), RangeError, 'attnode.setNumThreads');
    expectError(() => a.setNumThreads(1e9), RangeError, 'attnode.setNumThreads');
    expectError(() => a.setNumThreads(NaN), RangeError, 'attnode.setNumThreads');
    expectError(() => a.setIsa('AVX2'), RangeError, 'attnode.setIsa');
    for (const isa of supported) expect(a.setIsa(isa)).toBe(isa);
  });

  // Corpus replay: each entry is a NativeCase. Entries that need a separate process use kind 'native-process'. Every
  // entry asserts the correct behaviour: a bug the corpus finds is fixed, not recorded as expected to fail.
  for (const [file, entry] of loadCorpus<NativeCase>('native')) {
    it(`corpus ${file}: ${entry.note}`, async () => {
      await runCase(entry.case);
    });
  }
  const underAsan = process.env.ATTNODE_EXPECT_ASAN === '1';
  type ProcessCase = { script: string; expect: string; asanOnly?: boolean };
  for (const [file, entry] of loadCorpus<ProcessCase>('native-process')) {
    // asanOnly: memory corruption that is silent without ASan, so the case only says something under it.
    const t = entry.case.asanOnly && !underAsan ? it.skip : it;
    const why = entry.case.asanOnly && !underAsan ? ' (skipped: silent without ASan; runs under npm run test:asan)' : '';
    t(`corpus ${file}: ${entry.note}${why}`, () => {
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
