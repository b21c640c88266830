/**
 * The functional API on tensors: validate, allocate, call a backend.
 *
 * Every op checks dtypes and shapes up front and throws TypeError (wrong kind
 * of argument) or RangeError (wrong shape / value) with a message naming the
 * argument, see errors.ts. Backends then only see flat arrays with consistent
 * sizes. Every op takes a trailing options object with
 * - `backend`: 'native' | 'js' | a Backend (default: the current backend, see registry.ts);
 * - `out` (where noted): a float32 tensor of exactly the result shape to write
 *   into instead of allocating. Element-wise ops allow `out` to be one of the
 *   inputs (in place); matmul/linear/transpose/head ops do not.
 */
import { Activation, BinaryOp } from './backend/backend';
import type { WeightPrecision } from './backend/backend';
import { resolveBackend } from './backend/registry';
import type { DType } from './dtype';
import {
  argRangeError,
  argRangeErrorRaw,
  argTypeError,
  argTypeErrorRaw,
  checkInt,
  checkNumber,
  checkShape,
  formatShape,
  normalizeDim,
  shapeError,
} from './errors';
import { Tensor, contiguousStrides, empty } from './tensor';
import { currentContext } from './context';
import type { Shape } from './tensor';

import type { OpOptions, OutOptions } from './op-options';

export type { OpOptions, OutOptions } from './op-options';

type F32 = Tensor<'float32'>;

// ---------------------------------------------------------------------------
// Validation helpers

function checkTensor(fn: string, arg: string, x: unknown): Tensor {
  if (!(x instanceof Tensor)) throw argTypeError(fn, arg, 'be a Tensor', x);
  return x;
}

function checkFloat(fn: string, arg: string, x: unknown): F32 {
  const t = checkTensor(fn, arg, x);
  if (t.dtype !== 'float32') throw argTypeError(fn, arg, 'be a float32 Tensor', t);
  return t as F32;
}

function checkOptions(fn: string, opts: unknown): void {
  if (opts !== undefined && (typeof opts !== 'object' || opts === null)) {
    throw argTypeError(fn, 'opts', 'be an options object', opts);
  }
}

/** True when the two arrays share any bytes. */
function overlaps(x: ArrayBufferView, y: ArrayBufferView): boolean {
  if (x.buffer !== y.buffer) return false;
  return x.byteOffset < y.byteOffset + y.byteLength && y.byteOffset < x.byteOffset + x.byteLength;
}

function sameRegion(x: ArrayBufferView, y: ArrayBufferView): boolean {
  return x.buffer === y.buffer && x.byteOffset === y.byteOffset && x.byteLength === y.byteLength;
}

/**
 * Validates `out` against the result shape, or allocates. `inputs` lists
 * tensors `out` must not overlap (unless `allowSame` and it is exactly the
 * same memory, for element-wise ops that may run in place).
 */
function output(
  fn: string, shape: Shape, out: unknown, inputs: readonly [string, Tensor | null | undefined][], allowSame: boolean,
): F32 {
  if (out === undefined) return empty(shape, 'float32');
  const o = checkFloat(fn, 'out', out);
  if (o.shape.length !== shape.length || o.shape.some((d, i) => d !== shape[i])) {
    throw shapeError(fn, 'out', formatShape(shape), o.shape);
  }
  for (const [name, t] of inputs) {
    if (!t || t.size === 0 || o.size === 0 || !overlaps(o.data, t.data)) continue;
    if (allowSame && sameRegion(o.data, t.data)) continue;
    throw argRangeErrorRaw(fn, 'out', `not overlap input '${name}'${allowSame ? ' except exactly (in place)' : ''}`,
      'a tensor sharing its memory');
  }
  return o;
}

function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function prod(dims: Shape, from = 0, to = dims.length): number {
  let p = 1;
  for (let i = from; i < to; i++) p *= dims[i]!;
  return p;
}

/**
 * NumPy broadcast of two shapes (right-aligned; a dim of 1 stretches).
 * @throws RangeError naming `argB` when they are incompatible.
 */
export function broadcastShapes(fn: string, a: Shape, b: Shape, argB = 'b'): number[] {
  const nd = Math.max(a.length, b.length);
  const out = new Array<number>(nd);
  for (let i = 0; i < nd; i++) {
    const da = a[a.length - nd + i] ?? 1;
    const db = b[b.length - nd + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw argRangeErrorRaw(fn, argB, `have a shape broadcastable with ${formatShape(a)}`,
        `${formatShape(b)} (dim ${i - nd} is ${db} vs ${da})`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Element strides of a contiguous tensor of `shape` viewed as `outShape` (0 on broadcast dims). */
function broadcastStrides(shape: Shape, outShape: Shape): number[] {
  const strides = contiguousStrides(shape);
  const nd = outShape.length;
  const res = new Array<number>(nd).fill(0);
  for (let i = 0; i < shape.length; i++) {
    const j = nd - shape.length + i;
    res[j] = shape[i] === 1 && outShape[j] !== 1 ? 0 : strides[i]!;
  }
  return res;
}

// ---------------------------------------------------------------------------
// matmul / linear

/** Options of {@link matmul}. */
export interface MatmulOptions extends OutOptions {
  /** Use bᵀ over b's last two dims (e.g. Q·Kᵀ) without copying; b must be ≥ 2-D. */
  transB?: boolean;
  /** Scale the product (e.g. 1/√d for attention scores). Default 1. */
  alpha?: number;
}

/**
 * PyTorch `torch.matmul` on float32 tensors:
 * 1-D·1-D is a dot product (0-D result); a 1-D left operand is a row vector and
 * a 1-D right operand a column vector (the added dim is removed again); ≥2-D
 * operands multiply their last two dims and broadcast the leading (batch) dims.
 * With `opts.transB`, b's last two dims are swapped first.
 *
 * When b has no batch dims (or all are 1) the batch folds into one big GEMM;
 * when one side's batch is all-ones it broadcasts with a 0 stride; other
 * broadcasts loop over the outer batch dims.
 * @throws TypeError for non-float32 tensors; RangeError for 0-D operands or mismatched dims.
 */
export function matmul(a: F32, b: F32, opts?: MatmulOptions): F32 {
  const fn = 'matmul';
  checkFloat(fn, 'a', a);
  checkFloat(fn, 'b', b);
  checkOptions(fn, opts);
  const transB = opts?.transB === true;
  const alpha = opts?.alpha === undefined ? 1 : checkNumber(fn, 'alpha', opts.alpha);
  if (a.ndim === 0) throw argRangeErrorRaw(fn, 'a', 'be at least 1-D', formatShape(a.shape));
  if (b.ndim === 0) throw argRangeErrorRaw(fn, 'b', 'be at least 1-D', formatShape(b.shape));
  if (transB && b.ndim < 2) throw argRangeErrorRaw(fn, 'b', 'be at least 2-D with transB', formatShape(b.shape));

  const aVec = a.ndim === 1;
  const bVec = b.ndim === 1;
  const aShape = aVec ? [1, a.shape[0]!] : a.shape;
  const bShape = bVec ? [b.shape[0]!, 1] : b.shape;
  const m = aShape[aShape.length - 2]!;
  const k = aShape[aShape.length - 1]!;
  const kb = bShape[bShape.length - (transB ? 1 : 2)]!;
  const n = bShape[bShape.length - (transB ? 2 : 1)]!;
  if (kb !== k) {
    const expected = bVec ? `[${k}]` : transB ? `[..., N, ${k}]` : `[..., ${k}, N]`;
    throw argRangeErrorRaw(fn, 'b', `have shape ${expected} matching a's last dim ${k}`, formatShape(b.shape));
  }
  const batchA = aShape.slice(0, -2);
  const batchB = bShape.slice(0, -2);
  const batch = broadcastShapes(fn, batchA, batchB, 'b');
  const outShape = [...batch];
  if (!aVec) outShape.push(m);
  if (!bVec) outShape.push(n);
  checkShape(fn, 'out', outShape);
  const y = output(fn, outShape, opts?.out, [['a', a], ['b', b]], false);
  const be = resolveBackend(opts?.backend);
  const nBatch = prod(batch);
  if (y.size === 0) return y;

  const base = {
    c: y.data, m, n, k, transA: false, transB, alpha, beta: 0, bias: null, act: Activation.None,
  } as const;
  const sizeA = prod(batchA);
  const sizeB = prod(batchB);
  if (sizeB === 1) {
    // b is one matrix for every batch: fold a's batch into M (a is contiguous).
    be.gemm({ ...base, a: a.data, b: b.data, m: nBatch * m, batch: 1, strideA: 0, strideB: 0, strideC: 0 });
    return y;
  }
  const fullA = sameShape(padLeft(batchA, batch.length), batch);
  const fullB = sameShape(padLeft(batchB, batch.length), batch);
  if ((fullA || sizeA === 1) && fullB) {
    be.gemm({
      ...base, a: a.data, b: b.data, batch: nBatch,
      strideA: sizeA === 1 ? 0 : m * k, strideB: k * n, strideC: m * n,
    });
    return y;
  }
  // General broadcast: the innermost batch dim is one strided gemm call; loop the outer ones.
  const nd = batch.length;
  const sA = broadcastStrides(padLeft(batchA, nd), batch).map((s) => s * m * k);
  const sB = broadcastStrides(padLeft(batchB, nd), batch).map((s) => s * k * n);
  const innerN = batch[nd - 1]!;
  const outer = nBatch / innerN;
  const idx = new Array<number>(nd).fill(0);
  for (let o = 0; o < outer; o++) {
    let offA = 0;
    let offB = 0;
    let rem = o;
    for (let d = nd - 2; d >= 0; d--) {
      idx[d] = rem % batch[d]!;
      rem = Math.floor(rem / batch[d]!);
      offA += idx[d]! * sA[d]!;
      offB += idx[d]! * sB[d]!;
    }
    const spanA = (innerN - 1) * sA[nd - 1]! + m * k;
    const spanB = (innerN - 1) * sB[nd - 1]! + k * n;
    be.gemm({
      ...base,
      a: a.data.subarray(offA, offA + spanA),
      b: b.data.subarray(offB, offB + spanB),
      c: y.data.subarray(o * innerN * m * n, (o + 1) * innerN * m * n),
      batch: innerN, strideA: sA[nd - 1]!, strideB: sB[nd - 1]!, strideC: m * n,
    });
  }
  return y;
}

function padLeft(shape: Shape, nd: number): number[] {
  return [...new Array<number>(nd - shape.length).fill(1), ...shape];
}

/** Activation that {@link linear} can fuse into its GEMM. */
export type FusedActivation = 'none' | 'relu' | 'gelu' | 'gelu_tanh';

const ACTIVATIONS: Record<FusedActivation, Activation> = {
  none: Activation.None,
  relu: Activation.Relu,
  gelu: Activation.Gelu,
  gelu_tanh: Activation.GeluTanh,
};

/** Options of {@link linear}. */
export interface LinearOptions extends OutOptions {
  /** Activation fused into the GEMM store (saves a pass over the output). Default 'none'. */
  activation?: FusedActivation;
  /**
   * The weight is a constant (a module parameter): the native backend packs it
   * once and reuses the packing on every later call with the same array. Don't
   * write into such a weight's data afterwards; replace the tensor instead.
   * nn modules set this. Default false.
   */
  cacheWeight?: boolean;
  /**
   * With `cacheWeight`: multiply in bfloat16 (weights and inputs rounded to
   * bfloat16, float32 accumulation; AVX512-BF16 on the native backend,
   * emulated on JS). Default 'float32'. See `Module.useWeightPrecision`.
   */
  weightPrecision?: WeightPrecision;
}

/**
 * PyTorch `F.linear`: y = x · weightᵀ + bias, with weight [out, in] (no
 * transposing copy: a trans_b GEMM), x [..., in] → y [..., out].
 * @throws TypeError for non-float32 tensors; RangeError for mismatched shapes.
 */
export function linear(x: F32, weight: F32, bias?: F32 | null, opts?: LinearOptions): F32 {
  const fn = 'linear';
  checkFloat(fn, 'x', x);
  checkFloat(fn, 'weight', weight);
  checkOptions(fn, opts);
  if (weight.ndim !== 2) throw shapeError(fn, 'weight', '[out_features, in_features]', weight.shape);
  const [nOut, nIn] = weight.shape as [number, number];
  if (x.ndim === 0 || x.shape[x.ndim - 1] !== nIn) {
    throw shapeError(fn, 'x', `[..., ${nIn}] matching weight's in_features ${nIn}`, x.shape);
  }
  if (bias !== undefined && bias !== null) {
    checkFloat(fn, 'bias', bias);
    if (bias.ndim !== 1 || bias.shape[0] !== nOut) {
      throw shapeError(fn, 'bias', `[${nOut}] matching weight's out_features`, bias.shape);
    }
  }
  const actName = opts?.activation ?? 'none';
  if (!Object.prototype.hasOwnProperty.call(ACTIVATIONS, actName)) {
    throw argTypeError(fn, 'activation', "be 'none', 'relu', 'gelu' or 'gelu_tanh'", actName);
  }
  const act = ACTIVATIONS[actName];
  // A cached weight's precision: the option, else the execution context's (a module's useWeightPrecision).
  const weightPrecision = opts?.weightPrecision ?? (opts?.cacheWeight === true ? currentContext().weightPrecision : 'float32');
  if (weightPrecision !== 'float32' && weightPrecision !== 'bfloat16') {
    throw argTypeError(fn, 'weightPrecision', "be 'float32' or 'bfloat16'", weightPrecision);
  }
  if (weightPrecision === 'bfloat16' && opts?.cacheWeight !== true) {
    throw argTypeErrorRaw(fn, 'weightPrecision', "be 'float32' unless cacheWeight is true (a bfloat16 weight is packed once)",
      "'bfloat16' without cacheWeight");
  }
  const outShape = [...x.shape.slice(0, -1), nOut];
  checkShape(fn, 'out', outShape);
  const y = output(fn, outShape, opts?.out, [['x', x], ['weight', weight], ['bias', bias]], false);
  if (y.size === 0) return y;
  resolveBackend(opts?.backend).gemm({
    a: x.data, b: weight.data, c: y.data,
    m: prod(x.shape, 0, x.ndim - 1), n: nOut, k: nIn,
    transA: false, transB: true, alpha: 1, beta: 0, bias: bias ? bias.data : null, act,
    batch: 1, strideA: 0, strideB: 0, strideC: 0, cacheB: opts?.cacheWeight === true,
    ...(weightPrecision !== 'float32' ? { bPrecision: weightPrecision } : {}),
  });
  return y;
}

// ---------------------------------------------------------------------------
// Row-wise ops

/**
 * Softmax along `dim` (default -1). The last dim runs natively; any other dim
 * is handled by transposing it to the end and back (two extra copies).
 */
export function softmax(x: F32, dim = -1, opts?: OutOptions): F32 {
  const fn = 'softmax';
  checkFloat(fn, 'x', x);
  checkOptions(fn, opts);
  const d = normalizeDim(fn, 'dim', dim, x.ndim);
  const be = resolveBackend(opts?.backend);
  if (x.ndim > 0 && d !== x.ndim - 1) {
    const t = transpose(x, d, -1, { backend: be });
    be.softmax({ x: t.data, y: t.data, rows: t.size === 0 ? 0 : t.size / t.shape[t.ndim - 1]!, cols: t.shape[t.ndim - 1]! });
    const back = transpose(t, d, -1, { backend: be });
    if (opts?.out === undefined) return back;
    const y = output(fn, x.shape, opts.out, [], true);
    if (currentContext().recording) {
      // A JS copy would read `back` before the recorded kernels have written it.
      throw new Error(`${fn}: 'out' with a dim other than the last cannot be used inside runAsync()/forwardAsync()`);
    }
    y.data.set(back.data);
    return y;
  }
  const y = output(fn, x.shape, opts?.out, [['x', x]], true);
  const cols = x.ndim === 0 ? 1 : x.shape[x.ndim - 1]!;
  if (x.size > 0) be.softmax({ x: x.data, y: y.data, rows: x.size / cols, cols });
  return y;
}

/**
 * PyTorch `F.layer_norm`: normalizes over the trailing dims given by
 * `normalizedShape` (biased variance), then scales by `weight` and shifts by
 * `bias` (each of shape `normalizedShape`, optional).
 */
export function layerNorm(
  x: F32, normalizedShape: number | Shape, weight?: F32 | null, bias?: F32 | null, eps = 1e-5, opts?: OutOptions,
): F32 {
  const fn = 'layerNorm';
  checkFloat(fn, 'x', x);
  checkOptions(fn, opts);
  const cols = checkLayerNormArgs(fn, x, normalizedShape, weight, bias, eps);
  const y = output(fn, x.shape, opts?.out, [['x', x], ['weight', weight], ['bias', bias]], true);
  if (x.size === 0) return y;
  resolveBackend(opts?.backend).layerNorm({
    x: x.data, weight: weight ? weight.data : null, bias: bias ? bias.data : null, y: y.data, rows: x.size / cols, cols, eps,
  });
  return y;
}

/** Options of {@link addLayerNorm}. */
export interface AddLayerNormOptions extends OutOptions {
  /**
   * Also store the sum `x + residual` here (float32, x's shape): the next
   * residual of a pre-norm layer. May be `x` or `residual` (in place).
   */
  sumOut?: Tensor<'float32'>;
}

/**
 * `layerNorm(x + residual, ...)` in one pass: the residual add and LayerNorm
 * of a Transformer sublayer fused. Each summed row is normalized while it is
 * still in cache, and no sum tensor is allocated unless `sumOut` asks for it.
 * Equal (bit for bit) to `layerNorm(add(x, residual), ...)`. `out` may be `x`
 * or `residual`; `x` and `residual` must have the same shape (no broadcasting).
 */
export function addLayerNorm(
  x: F32, residual: F32, normalizedShape: number | Shape, weight?: F32 | null, bias?: F32 | null, eps = 1e-5,
  opts?: AddLayerNormOptions,
): F32 {
  const fn = 'addLayerNorm';
  checkFloat(fn, 'x', x);
  checkFloat(fn, 'residual', residual);
  checkOptions(fn, opts);
  if (!sameShape(x.shape, residual.shape)) throw shapeError(fn, 'residual', `${formatShape(x.shape)} (x's shape)`, residual.shape);
  const cols = checkLayerNormArgs(fn, x, normalizedShape, weight, bias, eps);
  const inputs: [string, F32 | null | undefined][] = [['x', x], ['residual', residual], ['weight', weight], ['bias', bias]];
  const y = output(fn, x.shape, opts?.out, inputs, true);
  const sum = checkSumOut(fn, opts?.sumOut, x, inputs, y);
  if (x.size === 0) return y;
  resolveBackend(opts?.backend).addLayerNorm({
    x: x.data, residual: residual.data, weight: weight ? weight.data : null, bias: bias ? bias.data : null, y: y.data,
    sum: sum ? sum.data : null, rows: x.size / cols, cols, eps,
  });
  return y;
}

/** Checks layerNorm's normalizedShape, weight, bias and eps against x; returns the row length. */
function checkLayerNormArgs(
  fn: string, x: F32, normalizedShape: number | Shape, weight: F32 | null | undefined, bias: F32 | null | undefined, eps: number,
): number {
  const ns = typeof normalizedShape === 'number' ? [normalizedShape] : normalizedShape;
  checkShape(fn, 'normalizedShape', ns);
  const tail = x.shape.slice(x.ndim - ns.length);
  if (ns.length > x.ndim || !sameShape(tail, ns)) {
    throw argRangeErrorRaw(fn, 'normalizedShape', `match the trailing dims of x ${formatShape(x.shape)}`,
      formatShape(ns));
  }
  for (const [name, t] of [['weight', weight], ['bias', bias]] as const) {
    if (t === undefined || t === null) continue;
    checkFloat(fn, name, t);
    if (!sameShape(t.shape, ns)) throw shapeError(fn, name, `${formatShape(ns)} (normalizedShape)`, t.shape);
  }
  checkNumber(fn, 'eps', eps);
  if (eps < 0) throw argRangeError(fn, 'eps', 'be >= 0', eps);
  return prod(ns);
}

/**
 * PyTorch `F.rms_norm` (2.4): x / √(mean(x²) + eps) · weight over the
 * trailing dims given by `normalizedShape`; `weight` (of shape
 * `normalizedShape`) is optional. `eps` null or omitted is float32's machine
 * epsilon (2⁻²³), as PyTorch's `torch.finfo(x.dtype).eps`. `out` may be `x`.
 */
export function rmsNorm(
  x: F32, normalizedShape: number | Shape, weight?: F32 | null, eps?: number | null, opts?: OutOptions,
): F32 {
  const fn = 'rmsNorm';
  checkFloat(fn, 'x', x);
  checkOptions(fn, opts);
  const e = eps ?? FLOAT32_EPS;
  const cols = checkLayerNormArgs(fn, x, normalizedShape, weight, null, e);
  const y = output(fn, x.shape, opts?.out, [['x', x], ['weight', weight]], true);
  if (x.size === 0) return y;
  resolveBackend(opts?.backend).rmsNorm({
    x: x.data, weight: weight ? weight.data : null, y: y.data, rows: x.size / cols, cols, eps: e,
  });
  return y;
}

/** float32's machine epsilon, PyTorch's default RMSNorm eps for float32 inputs. */
export const FLOAT32_EPS = 2 ** -23;

/**
 * `rmsNorm(x + residual, ...)` in one pass, as {@link addLayerNorm} is for
 * LayerNorm: the residual add and RMSNorm of a pre-norm (Llama-style) block
 * fused. `opts.sumOut` also receives the sum (the next residual). Equal bit
 * for bit to `rmsNorm(add(x, residual), ...)`.
 */
export function addRmsNorm(
  x: F32, residual: F32, normalizedShape: number | Shape, weight?: F32 | null, eps?: number | null,
  opts?: AddLayerNormOptions,
): F32 {
  const fn = 'addRmsNorm';
  checkFloat(fn, 'x', x);
  checkFloat(fn, 'residual', residual);
  checkOptions(fn, opts);
  if (!sameShape(x.shape, residual.shape)) throw shapeError(fn, 'residual', `${formatShape(x.shape)} (x's shape)`, residual.shape);
  const e = eps ?? FLOAT32_EPS;
  const cols = checkLayerNormArgs(fn, x, normalizedShape, weight, null, e);
  const inputs: [string, F32 | null | undefined][] = [['x', x], ['residual', residual], ['weight', weight]];
  const y = output(fn, x.shape, opts?.out, inputs, true);
  const sum = checkSumOut(fn, opts?.sumOut, x, inputs, y);
  if (x.size === 0) return y;
  resolveBackend(opts?.backend).addRmsNorm({
    x: x.data, residual: residual.data, weight: weight ? weight.data : null, y: y.data, sum: sum ? sum.data : null,
    rows: x.size / cols, cols, eps: e,
  });
  return y;
}

/** Validates a fused norm's `sumOut`: x's shape, and no overlap except exactly x or residual (in place). */
function checkSumOut(
  fn: string, sumOut: unknown, x: F32, inputs: readonly [string, F32 | null | undefined][], y: F32,
): F32 | null {
  if (sumOut === undefined) return null;
  const sum = checkFloat(fn, 'sumOut', sumOut);
  if (!sameShape(sum.shape, x.shape)) throw shapeError(fn, 'sumOut', formatShape(x.shape), sum.shape);
  for (const [name, t] of [...inputs, ['out', y] as [string, F32]]) {
    if (!t || t.size === 0 || sum.size === 0 || !overlaps(sum.data, t.data)) continue;
    if ((name === 'x' || name === 'residual') && sameRegion(sum.data, t.data)) continue;
    throw argRangeErrorRaw(fn, 'sumOut', `not overlap '${name}'${name === 'x' || name === 'residual' ? ' except exactly (in place)' : ''}`,
      'a tensor sharing its memory');
  }
  return sum;
}

// ---------------------------------------------------------------------------
// Element-wise

/** max(x, 0), element-wise. `out` may be `x` (in place). */
export function relu(x: F32, opts?: OutOptions): F32 {
  checkFloat('relu', 'x', x);
  checkOptions('relu', opts);
  const y = output('relu', x.shape, opts?.out, [['x', x]], true);
  if (x.size > 0) resolveBackend(opts?.backend).relu({ x: x.data, y: y.data });
  return y;
}

/** Options of {@link gelu}. */
export interface GeluOptions extends OutOptions {
  /** 'none' (default): exact x·Φ(x) via erf; 'tanh': PyTorch's tanh approximation. */
  approximate?: 'none' | 'tanh';
}

/** GELU, element-wise (PyTorch `F.gelu`). `out` may be `x` (in place). */
export function gelu(x: F32, opts?: GeluOptions): F32 {
  checkFloat('gelu', 'x', x);
  checkOptions('gelu', opts);
  const approx = opts?.approximate ?? 'none';
  if (approx !== 'none' && approx !== 'tanh') throw argTypeError('gelu', 'approximate', "be 'none' or 'tanh'", approx);
  const y = output('gelu', x.shape, opts?.out, [['x', x]], true);
  if (x.size > 0) resolveBackend(opts?.backend).gelu({ x: x.data, y: y.data, tanhApprox: approx === 'tanh' });
  return y;
}

const MAX_BINARY_DIMS = 8;

function binaryOp(fn: string, op: BinaryOp, a: F32, b: F32 | number, opts: OutOptions | undefined): F32 {
  checkFloat(fn, 'a', a);
  checkOptions(fn, opts);
  let bt: F32;
  if (typeof b === 'number') {
    bt = new Tensor(new Float32Array([b]), [], 'float32');
  } else {
    if (!(b instanceof Tensor)) throw argTypeError(fn, 'b', 'be a float32 Tensor or a number', b);
    bt = checkFloat(fn, 'b', b);
  }
  const shape = broadcastShapes(fn, a.shape, bt.shape, 'b');
  // Broadcast operands may not alias out; an operand of the full shape may (in place).
  const y = output(fn, shape, opts?.out,
    [['a', a], ['b', typeof b === 'number' ? null : bt]], true);
  for (const [name, t] of [['a', a], ['b', bt]] as const) {
    if (!sameShape(t.shape, shape) && t.size > 0 && y.size > 0 && overlaps(y.data, t.data)) {
      throw argRangeErrorRaw(fn, 'out', `not overlap the broadcast input '${name}'`, 'a tensor sharing its memory');
    }
  }
  if (y.size === 0) return y;
  // Drop size-1 dims of the result so deep-but-thin shapes fit the backend's 8-dim limit.
  const aS = broadcastStrides(a.shape, shape);
  const bS = broadcastStrides(bt.shape, shape);
  const keep = shape.map((d, i) => (d !== 1 ? i : -1)).filter((i) => i >= 0);
  if (keep.length > MAX_BINARY_DIMS) {
    throw argRangeErrorRaw(fn, 'b', `broadcast to at most ${MAX_BINARY_DIMS} non-unit dims`, formatShape(shape));
  }
  resolveBackend(opts?.backend).binary({
    op, a: a.data, aStrides: keep.map((i) => aS[i]!), b: bt.data, bStrides: keep.map((i) => bS[i]!), y: y.data,
    shape: keep.map((i) => shape[i]!),
  });
  return y;
}

/** a + b with NumPy broadcasting (b may be a number). `out` may be a same-shape input. */
export function add(a: F32, b: F32 | number, opts?: OutOptions): F32 {
  return binaryOp('add', BinaryOp.Add, a, b, opts);
}

/** a − b with NumPy broadcasting (b may be a number). */
export function sub(a: F32, b: F32 | number, opts?: OutOptions): F32 {
  return binaryOp('sub', BinaryOp.Sub, a, b, opts);
}

/** a · b element-wise with NumPy broadcasting (b may be a number). */
export function mul(a: F32, b: F32 | number, opts?: OutOptions): F32 {
  return binaryOp('mul', BinaryOp.Mul, a, b, opts);
}

/** a / b element-wise with NumPy broadcasting (b may be a number). IEEE semantics: x/0 is ±Infinity or NaN. */
export function div(a: F32, b: F32 | number, opts?: OutOptions): F32 {
  return binaryOp('div', BinaryOp.Div, a, b, opts);
}

// ---------------------------------------------------------------------------
// Gather and layout

/**
 * Rows of `weight` [num, dim] picked by `ids` (int32, any shape) → [...ids.shape, dim].
 * @throws RangeError naming the position and value of the first id outside [0, num).
 */
export function embedding(ids: Tensor<'int32'>, weight: F32, opts?: OutOptions): F32 {
  const fn = 'embedding';
  const t = checkTensor(fn, 'ids', ids);
  if (t.dtype !== 'int32') throw argTypeError(fn, 'ids', 'be an int32 Tensor', t);
  checkFloat(fn, 'weight', weight);
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
  const y = output(fn, outShape, opts?.out, [['weight', weight]], false);
  if (y.size > 0) resolveBackend(opts?.backend).embedding({ weight: weight.data, num, dim, ids: ids.data, out: y.data });
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
  return y;
}

/** Inverse of {@link splitHeads}: x [B, H, S, D] → [B, S, H·D] (a copy, via permute0213). */
export function mergeHeads(x: F32, opts?: OutOptions): F32 {
  const fn = 'mergeHeads';
  checkFloat(fn, 'x', x);
  checkOptions(fn, opts);
  if (x.ndim !== 4) throw shapeError(fn, 'x', '[batch, heads, seq, head_dim]', x.shape);
  const [bsz, h, seq, hd] = x.shape as [number, number, number, number];
  const y = output(fn, [bsz, seq, h * hd], opts?.out, [['x', x]], false);
  if (y.size > 0) resolveBackend(opts?.backend).permute0213({ x: x.data, y: y.data, d0: bsz, d1: h, d2: seq, d3: hd });
  return y;
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
    y = o as Tensor<D>;
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

// Attention lives in its own file; it is part of the functional API.
export { scaledDotProductAttention, type ScaledDotProductAttentionOptions } from './attention';
