/**
 * Reductions: `sum`, `mean`, and `sumToShape` (the reduce-sum over broadcast
 * dims that the backward of every broadcasting op needs).
 *
 * A sum over dims runs on the GEMM, which both backends have: with the
 * tensor seen as [A, R, B] (R the reduced dims, contiguous among themselves),
 * the result [A, B] is, per a, the row vector ones[1×R] times the R×B block,
 * one batched GEMV; with nothing after the reduced dims, ones[1×R] times the
 * transposed [A, R] block. Reduced dims that are not adjacent take one such
 * step per run. The GEMM never splits a dot product across threads, so sums
 * do not depend on the thread count.
 */
import { Activation, BinaryOp } from '../backend/backend';
import { resolveBackend } from '../backend/registry';
import { allocateUninitialized } from '../dtype';
import { argRangeErrorRaw, argTypeError, formatShape, normalizeDim } from '../errors';
import type { OpOptions } from '../op-options';
import { Tensor } from '../tensor';
import { needsGrad, recordOp } from '../autograd/graph';
import { checkFloat, checkOptions, dense, prod } from './checks';
import type { F32 } from './checks';

/** Sums contiguous `x` over the dims flagged in `reduce` (same length as its shape) → contiguous, reduced dims dropped. */
function reduceDims(x: F32, reduce: readonly boolean[], backend: OpOptions['backend']): F32 {
  const outShape = x.shape.filter((_, d) => !reduce[d]);
  // Runs of kept / reduced dims, size-1 dims dropped (they change nothing).
  const runs: { size: number; reduced: boolean }[] = [];
  x.shape.forEach((n, d) => {
    if (n === 1) return;
    const last = runs[runs.length - 1];
    if (last && last.reduced === reduce[d]) last.size *= n;
    else runs.push({ size: n, reduced: reduce[d]! });
  });
  if (x.size === 0 || !runs.some((r) => r.reduced)) {
    if (x.size === 0) return new Tensor(new Float32Array(prod(outShape)), outShape, 'float32');
    return new Tensor(x.data, outShape, 'float32');
  }
  const be = resolveBackend(backend);
  let data = x.data;
  while (runs.some((r) => r.reduced)) {
    const j = runs.findIndex((r) => r.reduced);
    const a = prod(runs.slice(0, j).map((r) => r.size));
    const r = runs[j]!.size;
    const b = prod(runs.slice(j + 1).map((r2) => r2.size));
    const out = allocateUninitialized('float32', a * b);
    // From the pool inside a buffer scope (a forward, a backward, reuseBuffers), like the output: a full
    // reduction's ones are as large as its input (4 MiB for a [2048, 1, 512] loss's mean), and a fresh array per
    // call was left for V8's collector, growing a training loop's resident set by that much every step.
    const ones = allocateUninitialized('float32', r).fill(1);
    if (b === 1) {
      // [A, R] rows: ones[1×R] · [A, R]ᵀ.
      be.gemm({ a: ones, b: data, c: out, m: 1, n: a, k: r, transB: true, ldb: r, act: Activation.None });
    } else {
      be.gemm({
        a: ones, b: data, c: out, m: 1, n: b, k: r, act: Activation.None, batch: a, strideA: 0, strideB: r * b, strideC: b,
      });
    }
    data = out;
    runs.splice(j, 1);
    // The kept runs on either side are now adjacent: one run.
    if (j > 0 && j < runs.length && !runs[j - 1]!.reduced && !runs[j]!.reduced) {
      runs[j - 1]!.size *= runs[j]!.size;
      runs.splice(j, 1);
    }
  }
  return new Tensor(data, outShape, 'float32');
}

/**
 * `g` summed down to `shape`, which `g`'s shape is a broadcast of (dims
 * missing on the left or of size 1 in `shape` are summed): the gradient of a
 * broadcast operand. Returns `g` itself when the shapes are equal. Not
 * recorded by autograd (for backward functions).
 */
export function sumToShape(g: F32, shape: readonly number[], backend?: OpOptions['backend']): F32 {
  const nd = g.ndim;
  const lead = nd - shape.length;
  if (lead === 0 && shape.every((n, i) => n === g.shape[i])) return g;
  const reduce = g.shape.map((n, d) => d < lead || (shape[d - lead] === 1 && n !== 1));
  const summed = reduceDims(dense(g, backend), reduce, backend);
  return summed.reshape([...shape]);
}

/** Options of {@link sum} and {@link mean}. */
export interface ReduceOptions extends OpOptions {
  /** Keep the reduced dims with size 1 (default false). */
  keepdim?: boolean;
}

function reduceArgs(fn: string, x: F32, dim: number | readonly number[] | null | undefined, opts: ReduceOptions | undefined):
  { reduce: boolean[]; keepdim: boolean; count: number } {
  checkFloat(fn, 'x', x);
  checkOptions(fn, opts);
  const keepdim = opts?.keepdim ?? false;
  if (typeof keepdim !== 'boolean') throw argTypeError(fn, 'keepdim', 'be a boolean', keepdim);
  const reduce = new Array<boolean>(x.ndim).fill(dim === undefined || dim === null);
  if (dim !== undefined && dim !== null) {
    const dims: readonly unknown[] = Array.isArray(dim) ? dim : [dim];
    dims.forEach((d, i) => {
      const k = normalizeDim(fn, Array.isArray(dim) ? `dim[${i}]` : 'dim', d, x.ndim);
      if (reduce[k]) throw argRangeErrorRaw(fn, 'dim', 'list each dim once', `dim ${k} twice in ${formatShape(dims as number[])}`);
      reduce[k] = true;
    });
  }
  let count = 1;
  x.shape.forEach((n, d) => {
    if (reduce[d]) count *= n;
  });
  return { reduce, keepdim, count };
}

function reduceOp(fn: string, x: F32, dim: number | readonly number[] | null | undefined, opts: ReduceOptions | undefined,
  meanOf: boolean): F32 {
  const { reduce, keepdim, count } = reduceArgs(fn, x, dim, opts);
  const backend = opts?.backend;
  let y = reduceDims(dense(x, backend), reduce, backend);
  if (meanOf) {
    const scaled = allocateUninitialized('float32', y.size);
    if (y.size > 0) {
      resolveBackend(backend).binary({ op: BinaryOp.Mul, a: y.data, aStrides: [1], b: new Float32Array([1 / count]), bStrides: [0], y: scaled, shape: [y.size] });
    }
    y = new Tensor(scaled, y.shape, 'float32');
  }
  const keptShape = x.shape.map((n, d) => (reduce[d] ? 1 : n));
  if (keepdim) y = new Tensor(y.data, keptShape, 'float32');
  if (needsGrad(x)) {
    const inShape = x.shape.slice();
    recordOp(meanOf ? 'MeanBackward' : 'SumBackward', [x], [y], ([g]) => {
      const gk = meanOf ? scale(g!, 1 / count, backend) : g!;
      return [gk.reshape(keptShape).expand(inShape)];
    });
  }
  return y;
}

/** `g` · s as a new contiguous tensor (not recorded). */
export function scale(g: F32, s: number, backend: OpOptions['backend']): F32 {
  const y = new Tensor(allocateUninitialized('float32', g.size), g.shape, 'float32');
  if (g.size > 0) {
    resolveBackend(backend).binary({ op: BinaryOp.Mul, a: g.data, aStrides: g.strides, b: new Float32Array([s]), bStrides: g.shape.map(() => 0), y: y.data, shape: g.shape });
  }
  return y;
}

/**
 * PyTorch's `torch.sum(x, dim, keepdim)`: the sum over `dim` (a dim or a
 * list; omitted or null: every dim, a 0-D result).
 */
export function sum(x: F32, dim?: number | readonly number[] | null, opts?: ReduceOptions): F32 {
  return reduceOp('sum', x, dim, opts, false);
}

/** PyTorch's `torch.mean(x, dim, keepdim)`: the mean over `dim` (omitted or null: every element). */
export function mean(x: F32, dim?: number | readonly number[] | null, opts?: ReduceOptions): F32 {
  return reduceOp('mean', x, dim, opts, true);
}
