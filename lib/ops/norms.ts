/** Row-wise ops: softmax and the normalisations (layerNorm, rmsNorm and their residual-add forms). */
import { transpose } from './layout';
import { add } from './elementwise';
import { resolveBackend } from '../backend/registry';
import { argRangeError, argRangeErrorRaw, checkNumber, checkShape, formatShape, normalizeDim, shapeError } from '../errors';
import { Tensor, contiguousStrides } from '../tensor';
import { allocateUninitialized } from '../dtype';
import { flattenTrailing, planRows, type RowPlan } from './rows';
import { currentContext } from '../context';
import type { Shape } from '../tensor';
import type { OutOptions } from '../op-options';
import { checkContiguousOut, checkFloat, checkOptions, checkOut, checkOutForGrad, dense, overlaps, sameRegion, output, sameShape, prod } from './checks';
import type { F32 } from './checks';
import { needsGrad, recordOp } from '../autograd/graph';
import { gradRows } from './grad-layout';
// ---------------------------------------------------------------------------
// Row-wise ops

/** The row strides of `r` as kernel arguments (absent when a row is all there is). */
function strides(r: RowArgs): { xRowStride?: number; yRowStride?: number } {
  return {
    ...(r.xRowStride !== undefined ? { xRowStride: r.xRowStride } : {}),
    ...(r.yRowStride !== undefined ? { yRowStride: r.yRowStride } : {}),
  };
}

/** Number of trailing dims a normalizedShape argument covers (already checked). */
function normalizedRank(normalizedShape: number | Shape): number {
  return typeof normalizedShape === 'number' ? 1 : normalizedShape.length;
}

/** Where a row-wise op reads and writes: x and y as rows of `cols`, with their row strides. */
interface RowArgs {
  x: F32;
  y: F32;
  rows: number;
  xRowStride?: number;
  yRowStride?: number;
}

/**
 * Lays out a row-wise op over the last `trailing` dims of x: a view whose
 * rows are addressable (see ./rows.ts) is read in place, anything else is
 * copied; the result goes to `out` (checked) or a fresh tensor in x's row order.
 */
function rowArgs(fn: string, x: F32, trailing: number, out: F32 | null, backend: OutOptions['backend']): RowArgs {
  const cols = prod(x.shape, x.ndim - trailing);
  const plan = (t: F32): [RowPlan, { shape: number[]; strides: number[] }] | null => {
    const xf = flattenTrailing(t, trailing);
    if (!xf) return null;
    let yStrides: number[] | null = null;
    if (out) {
      const of = flattenTrailing(out, trailing);
      if (!of) return null;
      yStrides = of.strides;
    }
    const p = planRows(xf.shape, xf.strides, yStrides, cols, false);
    return p ? [p, xf] : null;
  };
  let xs = x;
  let found = plan(xs);
  if (!found && !xs.isContiguous()) {
    xs = xs.contiguous(backend);
    found = plan(xs);
  }
  if (!found) {
    throw argRangeErrorRaw(fn, 'out', 'have rows addressable with uniform strides (e.g. contiguous)',
      `a view with strides ${formatShape(out?.strides ?? [])}`);
  }
  const [p] = found;
  const trailingStrides = contiguousStrides(x.shape.slice(x.ndim - trailing));
  const y = out ?? new Tensor(allocateUninitialized('float32', x.size), x.shape, 'float32',
    [...p.yStrides.slice(0, -1), ...trailingStrides]);
  return {
    x: xs, y, rows: p.x.rows,
    ...(p.x.rowStride !== undefined ? { xRowStride: p.x.rowStride } : {}),
    ...(p.y.rowStride !== undefined ? { yRowStride: p.y.rowStride } : {}),
  };
}

/**
 * Softmax along `dim` (default -1). The last dim runs natively; any other dim
 * is handled by transposing it to the end and back (two extra copies).
 */
export function softmax(x: F32, dim = -1, opts?: OutOptions): F32 {
  return softmaxOp('softmax', false, x, dim, opts);
}

/**
 * PyTorch's `F.log_softmax(x, dim)` (default -1): (x − max) − log Σ exp(x − max)
 * along `dim`, in one pass per row (no softmax materialised). Layouts and
 * `out` as {@link softmax}.
 */
export function logSoftmax(x: F32, dim = -1, opts?: OutOptions): F32 {
  return softmaxOp('logSoftmax', true, x, dim, opts);
}

/** Records the backward of a row-wise softmax / log_softmax from its output y (rows of the last dim). */
function recordSoftmax(log: boolean, x: F32, y: F32, backend: OutOptions['backend']): void {
  recordOp(log ? 'LogSoftmaxBackward' : 'SoftmaxBackward', [x], [y], ([g]) => {
    const r = gradRows(y, g!, 1, backend);
    if (y.size > 0) {
      resolveBackend(backend).softmaxBackward({
        y: r.x.data, dy: r.g.data, dx: r.dx.data, rows: r.rows, cols: y.shape[y.ndim - 1]!, log,
        ...(r.xRowStride !== undefined ? { yRowStride: r.xRowStride } : {}),
        ...(r.dyRowStride !== undefined ? { dyRowStride: r.dyRowStride } : {}),
        ...(r.dxRowStride !== undefined ? { dxRowStride: r.dxRowStride } : {}),
      });
    }
    return [r.dx];
  }, [y]);
}

function softmaxOp(fn: string, log: boolean, x: F32, dim: number, opts: OutOptions | undefined): F32 {
  checkFloat(fn, 'x', x);
  checkOptions(fn, opts);
  const d = normalizeDim(fn, 'dim', dim, x.ndim);
  const be = resolveBackend(opts?.backend);
  const grad = needsGrad(x);
  if (grad && x.ndim > 0 && d !== x.ndim - 1 && opts?.out === undefined) {
    // In grad mode through views: the transposes record their own backward.
    return softmaxOp(fn, log, x.transpose(d, -1), -1, opts).transpose(d, -1);
  }
  if (x.ndim > 0 && d !== x.ndim - 1) {
    const t = transpose(x, d, -1, { backend: be });
    be.softmax({ x: t.data, y: t.data, rows: t.size === 0 ? 0 : t.size / t.shape[t.ndim - 1]!, cols: t.shape[t.ndim - 1]!, ...(log ? { log } : {}) });
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
  const out = checkOut(fn, x.shape, opts?.out, [['x', x]], true);
  if (x.ndim === 0) {
    const y = out ?? output(fn, x.shape, undefined, [], true);
    be.softmax({ x: x.data, y: y.data, rows: 1, cols: 1, ...(log ? { log } : {}) });
    if (grad) recordSoftmax(log, x, y, opts?.backend);
    return y;
  }
  const r = rowArgs(fn, x, 1, out, opts?.backend);
  if (x.size > 0) {
    be.softmax({ x: r.x.data, y: r.y.data, rows: r.rows, cols: x.shape[x.ndim - 1]!, ...strides(r), ...(log ? { log } : {}) });
  }
  if (grad) recordSoftmax(log, x, r.y, opts?.backend);
  return r.y;
}

/**
 * Records the backward of a LayerNorm (layer) or RMSNorm of x (the rows it normalised: `xs`, saved) into `outputs`
 * with parameters weight (and bias): dx through the backend's norm backward, plus, for the fused residual forms,
 * the same gradient for the residual and the gradient of a returned sum added in.
 */
function recordNorm(
  name: string, layer: boolean, inputs: readonly (F32 | null | undefined)[], outputs: readonly F32[], xs: F32,
  weight: F32 | null | undefined, trailing: number, eps: number, backend: OutOptions['backend'],
  fromOutput?: FromOutput,
): void {
  const w = weight ? dense(weight, backend) : null;
  const fused = inputs.length === (layer ? 4 : 3);
  recordOp(name, inputs, outputs, (grads, needs) => {
    const r = gradRows(xs, grads[0]!, trailing, backend);
    const cols = prod(xs.shape, xs.ndim - trailing);
    const iw = fused ? 2 : 1;
    const dw = needs[iw] && w ? new Tensor(allocateUninitialized('float32', w.size), w.shape, 'float32') : null;
    const db = layer && needs[iw + 1] ? new Tensor(allocateUninitialized('float32', cols), weight!.shape, 'float32') : null;
    const common = {
      x: r.x.data, weight: w ? w.data : null, dy: r.g.data, dx: r.dx.data, rows: r.rows, cols, eps,
      ...(r.xRowStride !== undefined ? { xRowStride: r.xRowStride } : {}),
      ...(r.dyRowStride !== undefined ? { dyRowStride: r.dyRowStride } : {}),
      ...(r.dxRowStride !== undefined ? { dxRowStride: r.dxRowStride } : {}),
    };
    if (xs.size > 0 || dw || db) {
      const from = fromOutput ? { rstd: fromOutput.rstd.data, bias: fromOutput.bias ? fromOutput.bias.data : null } : {};
      if (layer) resolveBackend(backend).layerNormBackward({ ...common, dweight: dw ? dw.data : null, dbias: db ? db.data : null, ...from });
      else resolveBackend(backend).rmsNormBackward({ ...common, dweight: dw ? dw.data : null });
    }
    if (!fused) return layer ? [r.dx, dw, db] : [r.dx, dw];
    // x + residual: one gradient for both (plus that of the returned sum).
    const ds = grads.length > 1 ? add(r.dx, grads[1]!, backend ? { backend } : {}) : r.dx;
    return layer ? [ds, ds, dw, db] : [ds, ds, dw];
  }, [xs, ...(w ? [w] : []), ...(fromOutput ? [fromOutput.rstd] : []), ...(fromOutput?.bias ? [fromOutput.bias] : [])]);
}

/** What a LayerNorm's backward reads when it kept its output instead of its input: each row's rstd, the bias. */
interface FromOutput {
  rstd: F32;
  bias: F32 | null;
}

/**
 * How far |bias| may exceed |weight| in a column for x̂ = (y − bias)/weight to stay within a few 1e-6 of the
 * forward's x̂ (its error is about 2⁻²³·(|x̂| + |bias/weight|)).
 */
const MAX_BIAS_OVER_WEIGHT = 16;

/**
 * True when a LayerNorm's backward can recover x̂ from its output: every weight finite and nonzero with
 * |bias| ≤ 16·|weight| (or no weight), read now, so not while recording for runAsync (the kernels, and any
 * optimizer step before them, run later).
 */
function outputKeepsXhat(weight: F32 | null | undefined, bias: F32 | null | undefined): boolean {
  if (currentContext().recording) return false;
  if (!weight) return !bias || bias.data.subarray(0, bias.size).every(Number.isFinite);
  const w = dense(weight).data;
  const b = bias ? dense(bias).data : null;
  for (let j = 0; j < weight.size; j++) {
    const wj = Math.abs(w[j]!);
    if (!(wj > 1e-30 && wj < Infinity)) return false;
    if (b && !(Math.abs(b[j]!) <= MAX_BIAS_OVER_WEIGHT * wj)) return false;
  }
  return true;
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
  const out = checkOut(fn, x.shape, opts?.out, [['x', x], ['weight', weight], ['bias', bias]], true);
  const r = rowArgs(fn, x, normalizedRank(normalizedShape), out, opts?.backend);
  const grad = needsGrad(x, weight, bias);
  // In place over x, the backward's copy of the input is taken first.
  const saved = grad ? keepRows(r.x, r.y) : r.x;
  if (x.size > 0) {
    resolveBackend(opts?.backend).layerNorm({
      x: r.x.data, weight: weight ? dense(weight, opts?.backend).data : null, bias: bias ? dense(bias, opts?.backend).data : null, y: r.y.data,
      rows: r.rows, cols, eps, ...strides(r),
    });
  }
  if (grad) recordNorm('LayerNormBackward', true, [x, weight, bias], [r.y], saved, weight, normalizedRank(normalizedShape), eps, opts?.backend);
  return r.y;
}

/** `x` itself, or a copy when the op writes its output over it (the backward reads the input). */
function keepRows(x: F32, y: F32): F32 {
  return overlaps(x.data, y.data) ? x.clone() : x;
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
 *
 * In training (grad mode, no `sumOut`, no `out`) the graph keeps the result and
 * each row's 1/σ rather than the sum, and the backward recovers the normalised
 * rows as (y − bias)/weight: one activation fewer per call. The result must then
 * not be written in place before the backward (that is an error at backward, as
 * for any saved tensor). A weight that is 0, or under 1/16 of its bias, keeps
 * the sum instead, as does a call recorded inside `runAsync`.
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
  const y = checkContiguousOut(fn, output(fn, x.shape, opts?.out, inputs, true));
  const sum = checkSumOut(fn, opts?.sumOut, x, inputs, y);
  // In grad mode the backward needs x̂ of every row. When the sum is not returned, the norm keeps its output and
  // each row's rstd and recovers x̂ = (y − bias)/weight (Apex's memory-efficient LayerNorm), so the sum, which
  // nothing else reads, is never stored: a post-norm Transformer layer saves two activations fewer. Otherwise (a
  // weight near 0 against its bias, y written in place over an input, inside runAsync) it keeps the sum.
  const grad = needsGrad(x, residual, weight, bias);
  const rows = cols === 0 ? 0 : x.size / cols;
  const fromOutput = grad && !sum && opts?.out === undefined && outputKeepsXhat(weight, bias)
    ? { rstd: new Tensor(allocateUninitialized('float32', rows), [rows], 'float32'), bias: bias ? dense(bias, opts?.backend) : null }
    : undefined;
  const s = sum ?? (grad && !fromOutput ? new Tensor(allocateUninitialized('float32', x.size), x.shape, 'float32') : null);
  if (x.size > 0) {
    // The fused kernel reads and writes flat rows: views are copied (y and sum are contiguous).
    resolveBackend(opts?.backend).addLayerNorm({
      x: dense(x, opts?.backend).data, residual: dense(residual, opts?.backend).data, weight: weight ? dense(weight, opts?.backend).data : null,
      bias: bias ? dense(bias, opts?.backend).data : null, y: y.data,
      sum: s ? s.data : null, rows, cols, eps, ...(fromOutput ? { rstd: fromOutput.rstd.data } : {}),
    });
  }
  if (grad) {
    recordNorm('AddLayerNormBackward', true, [x, residual, weight, bias], sum ? [y, sum] : [y], fromOutput ? y : s!, weight,
      normalizedRank(normalizedShape), eps, opts?.backend, fromOutput);
  }
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
  const out = checkOut(fn, x.shape, opts?.out, [['x', x], ['weight', weight]], true);
  const r = rowArgs(fn, x, normalizedRank(normalizedShape), out, opts?.backend);
  const grad = needsGrad(x, weight);
  const saved = grad ? keepRows(r.x, r.y) : r.x;
  if (x.size > 0) {
    resolveBackend(opts?.backend).rmsNorm({
      x: r.x.data, weight: weight ? dense(weight, opts?.backend).data : null, y: r.y.data, rows: r.rows, cols, eps: e, ...strides(r),
    });
  }
  if (grad) recordNorm('RmsNormBackward', false, [x, weight], [r.y], saved, weight, normalizedRank(normalizedShape), e, opts?.backend);
  return r.y;
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
  const y = checkContiguousOut(fn, output(fn, x.shape, opts?.out, inputs, true));
  const sum = checkSumOut(fn, opts?.sumOut, x, inputs, y);
  const grad = needsGrad(x, residual, weight);
  const s = sum ?? (grad ? new Tensor(allocateUninitialized('float32', x.size), x.shape, 'float32') : null);
  if (x.size > 0) {
    resolveBackend(opts?.backend).addRmsNorm({
      x: dense(x, opts?.backend).data, residual: dense(residual, opts?.backend).data, weight: weight ? dense(weight, opts?.backend).data : null, y: y.data,
      sum: s ? s.data : null,
      rows: x.size / cols, cols, eps: e,
    });
  }
  if (grad) {
    recordNorm('AddRmsNormBackward', false, [x, residual, weight], sum ? [y, sum] : [y], s!, weight,
      normalizedRank(normalizedShape), e, opts?.backend);
  }
  return y;
}

/** Validates a fused norm's `sumOut`: x's shape, and no overlap except exactly x or residual (in place). */
function checkSumOut(
  fn: string, sumOut: unknown, x: F32, inputs: readonly [string, F32 | null | undefined][], y: F32,
): F32 | null {
  if (sumOut === undefined) return null;
  const sum = checkFloat(fn, 'sumOut', sumOut);
  if (!sameShape(sum.shape, x.shape)) throw shapeError(fn, 'sumOut', formatShape(x.shape), sum.shape);
  if (!sum.isContiguous()) throw argRangeErrorRaw(fn, 'sumOut', 'be contiguous', `a view with strides ${formatShape(sum.strides)}`);
  for (const [name, t] of [...inputs, ['out', y] as [string, F32]]) {
    if (!t || t.size === 0 || sum.size === 0 || !overlaps(sum.data, t.data)) continue;
    if ((name === 'x' || name === 'residual') && sameRegion(sum.data, t.data)) continue;
    throw argRangeErrorRaw(fn, 'sumOut', `not overlap '${name}'${name === 'x' || name === 'residual' ? ' except exactly (in place)' : ''}`,
      'a tensor sharing its memory');
  }
  checkOutForGrad(fn, 'sumOut', sum);
  sum._bumpVersion();
  return sum;
}

