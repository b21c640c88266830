/**
 * Rotary position embedding (RoPE), as Hugging Face's Llama applies it (`rotate_half`, the default) or as
 * GPT-J / Meta's Llama / llama2.c do (adjacent pairs, `interleaved: true`), with GPT-NeoX's partial rotary
 * (`rotaryDim`) and caller-supplied frequencies (Llama 3's `rope_scaling`, computed by the model).
 */
import { resolveBackend } from '../backend/registry';
import { allocateUninitialized } from '../dtype';
import { argRangeErrorRaw, argTypeError, checkInt, checkNumber, formatShape, shapeError } from '../errors';
import type { OutOptions } from '../op-options';
import { Tensor } from '../tensor';
import { checkFloat, checkOptions, checkOutForGrad, checkTensor, dense, overlaps } from './checks';
import type { F32 } from './checks';
import { needsGrad, recordOp } from '../autograd/graph';

/** Options of {@link rotaryEmbedding}. */
export interface RotaryEmbeddingOptions extends OutOptions {
  /**
   * Absolute positions: int32 [N, L] (one row per batch row, e.g. for left-padded batches) or [1, L] / [L] (shared), each
   * >= 0; or a number `offset`, meaning positions offset … offset + L − 1 for every batch row (a decoding step).
   */
  positions: Tensor<'int32'> | number;
  /** RoPE base (Llama 2: 10000, Llama 3: 500000). Default 10000. Ignored when `invFreq` is given. */
  theta?: number;
  /** false (default): pairs (i, i + rotaryDim/2), HF's rotate_half; true: adjacent pairs (2i, 2i + 1). */
  interleaved?: boolean;
  /** Rotate only the first rotaryDim features (even, ≤ D; default D); the rest are copied. */
  rotaryDim?: number;
  /** float32 [rotaryDim / 2]: the frequencies, overriding 1 / theta^(2i / rotaryDim). */
  invFreq?: Tensor<'float32'> | null;
}

/**
 * The default frequencies 1 / theta^(2i / dim), i < dim / 2, rounded as Hugging Face computes them in float32
 * (`1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))`).
 */
export function rotaryInvFreq(dim: number, theta = 10000): Tensor<'float32'> {
  const fn = 'rotaryInvFreq';
  checkInt(fn, 'dim', dim, 0);
  if (dim % 2 !== 0) throw argRangeErrorRaw(fn, 'dim', 'be even', String(dim));
  checkNumber(fn, 'theta', theta);
  if (!(theta > 0)) throw argRangeErrorRaw(fn, 'theta', 'be > 0', String(theta));
  const half = dim / 2;
  const out = new Float32Array(half);
  const base = Math.fround(theta);
  for (let i = 0; i < half; i++) {
    const e = Math.fround((2 * i) / dim);
    out[i] = 1 / Math.fround(Math.pow(base, e));
  }
  return new Tensor(out, [half], 'float32');
}

/** The positions as the backend takes them: the array and its batch stride (0: shared by every batch row). */
function positionArgs(fn: string, positions: unknown, n: number, l: number): [Int32Array, number] {
  if (typeof positions === 'number') {
    const offset = checkInt(fn, 'positions', positions, 0, 2 ** 31 - 1 - Math.max(l - 1, 0));
    const p = new Int32Array(l);
    for (let i = 0; i < l; i++) p[i] = offset + i;
    return [p, 0];
  }
  const t = checkTensor(fn, 'positions', positions);
  if (t.dtype !== 'int32') throw argTypeError(fn, 'positions', 'be an int32 Tensor or a number (offset)', t);
  let stride: number;
  if ((t.ndim === 1 && t.shape[0] === l) || (t.ndim === 2 && t.shape[0] === 1 && t.shape[1] === l)) {
    // [L], or HF's position_ids [1, L]: one row shared by every batch row.
    stride = 0;
  } else if (t.ndim === 2 && t.shape[0] === n && t.shape[1] === l) {
    stride = l;
  } else {
    throw shapeError(fn, 'positions', n === 1 ? `[1, ${l}] or [${l}]` : `[${n}, ${l}], [1, ${l}] or [${l}]`, t.shape);
  }
  // Read as a flat array (a view is copied in JS, which runAsync refuses: pass a contiguous tensor there).
  const d = dense(t as Tensor<'int32'>).data;
  for (let i = 0; i < d.length; i++) {
    if (d[i]! < 0) throw argRangeErrorRaw(fn, 'positions', 'hold positions >= 0', `${d[i]} at index ${i}`);
  }
  return [d, stride];
}

/**
 * Rotary position embedding of x [N, L, H, D] (any strides with a contiguous last dim, e.g. a head view of a
 * packed QKV projection: `qkv.narrow(-1, 0, E).view(N, L, H, D)`), as PyTorch computes it in float32:
 * `x * cos + rotate_half(x) * sin` with `freqs = positions.float() * inv_freq` (each product rounded to float32
 * before the sum). Returns a new contiguous [N, L, H, D] tensor, or writes into `out` (any strides with a
 * contiguous last dim; `out` may be `x` itself: in place, e.g. keys where the projection wrote them).
 *
 * @throws TypeError for a wrong kind of argument, RangeError for a wrong shape or value (naming it).
 */
export function rotaryEmbedding(x: F32, opts: RotaryEmbeddingOptions): F32 {
  const fn = 'rotaryEmbedding';
  checkFloat(fn, 'x', x);
  if (opts === undefined || opts === null || typeof opts !== 'object') {
    throw argTypeError(fn, 'opts', 'be an options object with positions', opts);
  }
  checkOptions(fn, opts);
  if (x.ndim !== 4) throw shapeError(fn, 'x', '[N, L, H, D]', x.shape);
  const [n, l, h, d] = x.shape as [number, number, number, number];
  const rotaryDim = opts.rotaryDim === undefined ? d : checkInt(fn, 'rotaryDim', opts.rotaryDim, 0, d);
  if (rotaryDim % 2 !== 0) throw argRangeErrorRaw(fn, 'rotaryDim', 'be even', String(rotaryDim));
  const interleaved = opts.interleaved ?? false;
  if (typeof interleaved !== 'boolean') throw argTypeError(fn, 'interleaved', 'be a boolean', interleaved);
  if (opts.positions === undefined) throw argTypeError(fn, 'positions', 'be an int32 Tensor or a number (offset)', undefined);
  const [positions, positionsBatchStride] = positionArgs(fn, opts.positions, n, l);
  let invFreq: Float32Array;
  if (opts.invFreq !== undefined && opts.invFreq !== null) {
    const f = checkFloat(fn, 'invFreq', opts.invFreq);
    if (f.ndim !== 1 || f.shape[0] !== rotaryDim / 2) throw shapeError(fn, 'invFreq', `[${rotaryDim / 2}] (rotaryDim / 2)`, f.shape);
    invFreq = dense(f, opts.backend).data;
  } else {
    invFreq = rotaryInvFreq(rotaryDim, opts.theta ?? 10000).data;
  }
  // The kernel reads features contiguously; other views are copied.
  const xs = x.strides[3] === 1 || d <= 1 ? x : x.contiguous(opts.backend);
  let y: F32;
  let inPlace = false;
  if (opts.out !== undefined) {
    const o = checkFloat(fn, 'out', opts.out);
    if (o.ndim !== 4 || o.shape.some((s, i) => s !== x.shape[i])) throw shapeError(fn, 'out', formatShape(x.shape), o.shape);
    if (o.strides[3] !== 1 && d > 1) {
      throw argRangeErrorRaw(fn, 'out', 'have a contiguous last dim', `strides ${formatShape(o.strides)}`);
    }
    inPlace = o.data.buffer === xs.data.buffer && o.data.byteOffset === xs.data.byteOffset &&
      o.strides.every((s, i) => s === xs.strides[i] || o.shape[i] === 1);
    if (!inPlace && o.size > 0 && overlaps(o.data, xs.data)) {
      throw argRangeErrorRaw(fn, 'out', "be x itself (in place) or not overlap input 'x'", 'a tensor sharing its memory');
    }
    checkOutForGrad(fn, 'out', o);
    o._bumpVersion();
    y = o;
  } else {
    y = new Tensor(allocateUninitialized('float32', x.size), x.shape, 'float32');
  }
  if (x.size === 0) return y;
  const strides3 = (t: Tensor): [number, number, number] => [t.strides[0]!, t.strides[1]!, t.strides[2]!];
  if (needsGrad(x)) {
    // A rotation's transpose is the rotation by the opposite angle: the same kernel with -invFreq (the angles are
    // float32(position · invFreq), so negating the frequencies negates them exactly).
    const negFreq = new Tensor(invFreq.map((f) => -f), [invFreq.length], 'float32');
    // The positions as they are now (a decoding loop may reuse the tensor).
    const positionsArg = new Tensor(positions.slice(), positionsBatchStride === 0 ? [l] : [n, l], 'int32');
    recordOp('RotaryEmbeddingBackward', [x], [y], ([g]) => [rotaryEmbedding(g!, {
      positions: positionsArg, invFreq: negFreq, interleaved, rotaryDim, ...(opts.backend ? { backend: opts.backend } : {}),
    })]);
  }
  resolveBackend(opts.backend).rope({
    x: xs.data, y: y.data, batch: n, seq: l, heads: h, dim: d, rotaryDim,
    // In place: the same strides for both, so the binding sees the exact alias it allows.
    xStrides: strides3(xs), yStrides: inPlace ? strides3(xs) : strides3(y),
    positions, positionsBatchStride, invFreq, interleaved,
  });
  return y;
}
