/** Gather and layout ops: embedding, head split/merge, transpose. */
import { resolveBackend } from '../backend/registry';
import type { DType } from '../dtype';
import { argRangeErrorRaw, argTypeError, checkInt, checkShape, formatShape, normalizeDim, shapeError } from '../errors';
import { Tensor, empty } from '../tensor';
import { currentContext } from '../context';
import type { Shape } from '../tensor';
import type { OpOptions, OutOptions } from '../op-options';
import { dense, checkTensor, checkFloat, checkOptions, overlaps, output, sameShape, prod } from './checks';
import type { F32 } from './checks';
import { needsGrad, recordOp } from '../autograd/graph';
import { allocateUninitialized } from '../dtype';
// ---------------------------------------------------------------------------
// Gather and layout

/** Options of {@link embedding}. */
export interface EmbeddingOptions extends OutOptions {
  /** The row that gets no gradient (PyTorch's padding_idx; negative counts from the end). Default none. */
  paddingIdx?: number | null;
}

/**
 * Rows of `weight` [num, dim] picked by `ids` (int32, any shape) → [...ids.shape, dim].
 * In grad mode the weight's gradient is the scatter-add of the output's
 * gradient rows by id (the backend's embeddingBackward), except row
 * `paddingIdx`, which gets none.
 * @throws RangeError naming the position and value of the first id outside [0, num).
 */
export function embedding(ids: Tensor<'int32'>, weight: F32, opts?: EmbeddingOptions): F32 {
  const fn = 'embedding';
  const original = weight;
  const t = checkTensor(fn, 'ids', ids);
  if (t.dtype !== 'int32') throw argTypeError(fn, 'ids', 'be an int32 Tensor', t);
  checkFloat(fn, 'weight', weight);
  // Read as flat arrays: views are copied.
  ids = dense(ids, opts?.backend);
  weight = dense(weight, opts?.backend);
  checkOptions(fn, opts);
  if (weight.ndim !== 2) throw shapeError(fn, 'weight', '[num_embeddings, embedding_dim]', weight.shape);
  const [num, dim] = weight.shape as [number, number];
  const idData = ids.data;
  for (let i = 0; i < idData.length; i++) {
    const id = idData[i]!;
    if (id < 0 || id >= num) {
      const pos = ids.ndim <= 1 ? String(i) : formatShape(unravel(i, ids.shape));
      throw argRangeErrorRaw(fn, 'ids', `hold indices in [0, ${num}) (num_embeddings)`, `${id} at position ${pos}`);
    }
  }
  const outShape = [...ids.shape, dim];
  checkShape(fn, 'out', outShape);
  let paddingIdx = -1;
  if (opts?.paddingIdx !== undefined && opts.paddingIdx !== null) {
    paddingIdx = checkInt(fn, 'paddingIdx', opts.paddingIdx, -num, num - 1);
    if (paddingIdx < 0) paddingIdx += num;
  }
  const y = output(fn, outShape, opts?.out, [['weight', weight]], false);
  if (y.size > 0) resolveBackend(opts?.backend).embedding({ weight: weight.data, num, dim, ids: ids.data, out: y.data });
  if (needsGrad(original)) {
    // The ids as they are now: the caller may reuse their buffer for the next batch before backward.
    const idsAt = ids.data.slice();
    recordOp('EmbeddingBackward', [original], [y], ([g]) => {
      const gs = dense(g!, opts?.backend);
      const dw = new Tensor(allocateUninitialized('float32', num * dim), [num, dim], 'float32');
      if (dw.size > 0) {
        resolveBackend(opts?.backend).embeddingBackward({ dy: gs.data, ids: idsAt, dweight: dw.data, num, dim, paddingIdx });
      }
      return [dw];
    });
  }
  return y;
}

function unravel(flat: number, shape: Shape): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = flat % shape[d]!;
    flat = Math.floor(flat / shape[d]!);
  }
  return idx;
}

/**
 * Splits the last dim into heads: x [B, S, E] → [B, H, S, E/H] (a copy, via permute0213).
 * @throws RangeError if x is not 3-D or E is not divisible by numHeads.
 */
export function splitHeads(x: F32, numHeads: number, opts?: OutOptions): F32 {
  const fn = 'splitHeads';
  checkFloat(fn, 'x', x);
  x = dense(x, opts?.backend);
  checkOptions(fn, opts);
  checkInt(fn, 'numHeads', numHeads, 1);
  if (x.ndim !== 3) throw shapeError(fn, 'x', '[batch, seq, embed]', x.shape);
  const [bsz, seq, e] = x.shape as [number, number, number];
  if (e % numHeads !== 0) {
    throw shapeError(fn, 'x', `[batch, seq, embed] with embed divisible by numHeads ${numHeads}`, x.shape);
  }
  const hd = e / numHeads;
  const y = output(fn, [bsz, numHeads, seq, hd], opts?.out, [['x', x]], false);
  if (y.size > 0) resolveBackend(opts?.backend).permute0213({ x: x.data, y: y.data, d0: bsz, d1: seq, d2: numHeads, d3: hd });
  if (needsGrad(x)) recordOp('SplitHeadsBackward', [x], [y], ([g]) => [mergeHeads(g!, backendOf(opts))]);
  return y;
}

/** Inverse of {@link splitHeads}: x [B, H, S, D] → [B, S, H·D] (a copy, via permute0213). */
export function mergeHeads(x: F32, opts?: OutOptions): F32 {
  const fn = 'mergeHeads';
  checkFloat(fn, 'x', x);
  x = dense(x, opts?.backend);
  checkOptions(fn, opts);
  if (x.ndim !== 4) throw shapeError(fn, 'x', '[batch, heads, seq, head_dim]', x.shape);
  const [bsz, h, seq, hd] = x.shape as [number, number, number, number];
  const y = output(fn, [bsz, seq, h * hd], opts?.out, [['x', x]], false);
  if (y.size > 0) resolveBackend(opts?.backend).permute0213({ x: x.data, y: y.data, d0: bsz, d1: h, d2: seq, d3: hd });
  if (needsGrad(x)) recordOp('MergeHeadsBackward', [x], [y], ([g]) => [splitHeads(g!, h, backendOf(opts))]);
  return y;
}

function backendOf(opts: OpOptions | undefined): OpOptions {
  return opts?.backend ? { backend: opts.backend } : {};
}

/**
 * Swaps dims `dim0` and `dim1` (negative counts from the end), returning a
 * contiguous copy of any dtype. Adjacent float32 dims go through the
 * backend's permute0213; everything else is a JS gather loop.
 */
export function transpose<D extends DType>(
  x: Tensor<D>, dim0: number, dim1: number, opts?: OpOptions & { out?: Tensor<D> },
): Tensor<D> {
  const fn = 'transpose';
  checkTensor(fn, 'x', x);
  x = dense(x, opts?.backend);
  checkOptions(fn, opts);
  let d0 = normalizeDim(fn, 'dim0', dim0, x.ndim);
  let d1 = normalizeDim(fn, 'dim1', dim1, x.ndim);
  if (d0 > d1) [d0, d1] = [d1, d0];
  const outShape = x.shape.slice();
  if (x.ndim > 0) {
    outShape[d0] = x.shape[d1]!;
    outShape[d1] = x.shape[d0]!;
  }
  let y: Tensor<D>;
  if (opts?.out === undefined) {
    y = empty(outShape, x.dtype);
  } else {
    const o = checkTensor(fn, 'out', opts.out);
    if (o.dtype !== x.dtype) throw argTypeError(fn, 'out', `be a ${x.dtype} Tensor like x`, o);
    if (!sameShape(o.shape, outShape)) throw shapeError(fn, 'out', formatShape(outShape), o.shape);
    if (o.size > 0 && overlaps(o.data, x.data)) {
      throw argRangeErrorRaw(fn, 'out', "not overlap input 'x'", 'a tensor sharing its memory');
    }
    o._bumpVersion();
    y = o as Tensor<D>;
  }
  if (needsGrad(x)) {
    recordOp('TransposeBackward', [x], [y], ([g]) => [transpose(g as F32, d0, d1, backendOf(opts))]);
  }
  if (x.size === 0) return y;
  const copiesInJs = !(x.ndim > 0 && d0 !== d1 && x.shape[d0] !== 1 && x.shape[d1] !== 1 && prod(x.shape, d0 + 1, d1) === 1 && x.dtype === 'float32');
  if (copiesInJs && currentContext().recording) {
    // A JS copy would read x now, before recorded kernels have written it.
    throw new Error(`${fn}: this transpose copies in JS and cannot run inside runAsync()/forwardAsync()`);
  }
  if (x.ndim === 0 || d0 === d1 || x.shape[d0] === 1 || x.shape[d1] === 1) {
    // Swapping with a unit dim (or with itself) does not move any element.
    y.data.set(x.data);
    return y;
  }
  const outer = prod(x.shape, 0, d0);
  const mid = prod(x.shape, d0 + 1, d1);
  const inner = prod(x.shape, d1 + 1);
  const n0 = x.shape[d0]!;
  const n1 = x.shape[d1]!;
  if (mid === 1 && x.dtype === 'float32') {
    resolveBackend(opts?.backend).permute0213({ x: x.data as Float32Array, y: y.data as Float32Array, d0: outer, d1: n0, d2: n1, d3: inner });
    return y;
  }
  // View x as [outer, n0, mid, n1, inner] and write y as [outer, n1, mid, n0, inner].
  const src = x.data;
  const dst = y.data;
  let o = 0;
  for (let a = 0; a < outer; a++) {
    for (let j = 0; j < n1; j++) {
      for (let m = 0; m < mid; m++) {
        for (let i = 0; i < n0; i++) {
          const s = (((a * n0 + i) * mid + m) * n1 + j) * inner;
          for (let e = 0; e < inner; e++) dst[o++] = src[s + e]!;
        }
      }
    }
  }
  return y;
}

