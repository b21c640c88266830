/**
 * Backward kernels of the JS backend: softmax / log_softmax, LayerNorm,
 * RMSNorm, the activations, the embedding's scatter-add, and the fused
 * cross-entropy (forward and backward). Plain loops over flat typed arrays;
 * reductions run in double. The reference the native kernels are tested
 * against, and what the TS backend trains with.
 */
import type {
  ActivationBackwardArgs,
  CrossEntropyArgs,
  CrossEntropyBackwardArgs,
  EmbeddingBackwardArgs,
  LayerNormBackwardArgs,
  RmsNormBackwardArgs,
  SoftmaxBackwardArgs,
} from '../backend';
import { ActivationGrad } from '../backend';
import { erfc } from './math';
import { rowStride as stride } from './layer';

/** dx = y·(dy − Σ dy·y), or with `log` dx = dy − exp(y)·Σ dy, per row. */
export function softmaxBackward(args: SoftmaxBackwardArgs): void {
  const { y, dy, dx, rows, cols } = args;
  const ldy = stride('softmaxBackward', 'yRowStride', args.yRowStride, cols);
  const lddy = stride('softmaxBackward', 'dyRowStride', args.dyRowStride, cols);
  const lddx = stride('softmaxBackward', 'dxRowStride', args.dxRowStride, cols);
  for (let r = 0; r < rows; r++) {
    const oy = r * ldy;
    const og = r * lddy;
    const ox = r * lddx;
    let s = 0;
    if (args.log === true) {
      for (let j = 0; j < cols; j++) s += dy[og + j]!;
      const sf = Math.fround(s);
      for (let j = 0; j < cols; j++) dx[ox + j] = dy[og + j]! - Math.exp(y[oy + j]!) * sf;
    } else {
      for (let j = 0; j < cols; j++) s += dy[og + j]! * y[oy + j]!;
      const sf = Math.fround(s);
      for (let j = 0; j < cols; j++) dx[ox + j] = y[oy + j]! * (dy[og + j]! - sf);
    }
  }
}

/**
 * One row's norm backward: x̂ = (x − mean)·scale (scale = rstd, or 1 when x holds x̂ itself), g = dy·w,
 * dx = rstd·(g − centre·mean(g) − x̂·mean(g·x̂)); adds dy·x̂ into pg and dy into pb.
 */
function normRow(
  x: Float32Array, ox: number, w: Float32Array | null, dy: Float32Array, og: number, dx: Float32Array, odx: number,
  cols: number, mean: number, rstd: number, centre: boolean, pg: Float64Array | null, pb: Float64Array | null,
  scale = rstd,
): void {
  let sa = 0;
  let sb = 0;
  for (let j = 0; j < cols; j++) {
    const xh = (x[ox + j]! - mean) * scale;
    const d = dy[og + j]!;
    const gd = w ? d * w[j]! : d;
    sa += gd;
    sb += gd * xh;
    if (pg) pg[j] += d * xh;
    if (pb) pb[j] += d;
  }
  const a = centre ? sa / cols : 0;
  const b = sb / cols;
  for (let j = 0; j < cols; j++) {
    const xh = (x[ox + j]! - mean) * scale;
    const d = dy[og + j]!;
    const gd = w ? d * w[j]! : d;
    dx[odx + j] = rstd * (gd - a - xh * b);
  }
}

/** LayerNorm backward (see LayerNormBackwardArgs), statistics in double. */
export function layerNormBackward(args: LayerNormBackwardArgs): void {
  const { x, weight, dy, dx, dweight, dbias, rows, cols, eps } = args;
  const fn = 'layerNormBackward';
  const ldx = stride(fn, 'xRowStride', args.xRowStride, cols);
  const lddy = stride(fn, 'dyRowStride', args.dyRowStride, cols);
  const lddx = stride(fn, 'dxRowStride', args.dxRowStride, cols);
  const pg = dweight ? new Float64Array(cols) : null;
  const pb = dbias ? new Float64Array(cols) : null;
  const rstdIn = args.rstd ?? null;
  const bias = args.bias ?? null;
  if (bias && !rstdIn) throw new RangeError(`${fn}: argument 'bias' is read only with 'rstd' (a backward from the forward's output); got bias without rstd`);
  if (rstdIn && rstdIn.length < rows) throw new RangeError(`${fn}: argument 'rstd' must have at least rows = ${rows} elements, got ${rstdIn.length}`);
  if (bias && bias.length < cols) throw new RangeError(`${fn}: argument 'bias' must have at least cols = ${cols} elements, got ${bias.length}`);
  // From the output: x̂ = (y − bias)/weight into a row buffer, then the same row backward with mean 0 and scale 1.
  const xh = rstdIn ? new Float32Array(cols) : null;
  for (let r = 0; r < rows; r++) {
    const ox = r * ldx;
    if (rstdIn && xh) {
      for (let j = 0; j < cols; j++) {
        const v = bias ? Math.fround(x[ox + j]! - bias[j]!) : x[ox + j]!;
        xh[j] = weight ? v / weight[j]! : v;
      }
      normRow(xh, 0, weight, dy, r * lddy, dx, r * lddx, cols, 0, rstdIn[r]!, true, pg, pb, 1);
      continue;
    }
    let sum = 0;
    for (let j = 0; j < cols; j++) sum += x[ox + j]!;
    const mean = sum / cols;
    let sq = 0;
    for (let j = 0; j < cols; j++) {
      const d = x[ox + j]! - mean;
      sq += d * d;
    }
    const rstd = 1 / Math.sqrt(sq / cols + eps);
    normRow(x, ox, weight, dy, r * lddy, dx, r * lddx, cols, mean, rstd, true, pg, pb);
  }
  if (dweight && pg) dweight.set(pg);
  if (dbias && pb) dbias.set(pb);
}

/** RMSNorm backward (see RmsNormBackwardArgs). */
export function rmsNormBackward(args: RmsNormBackwardArgs): void {
  const { x, weight, dy, dx, dweight, rows, cols, eps } = args;
  const fn = 'rmsNormBackward';
  const ldx = stride(fn, 'xRowStride', args.xRowStride, cols);
  const lddy = stride(fn, 'dyRowStride', args.dyRowStride, cols);
  const lddx = stride(fn, 'dxRowStride', args.dxRowStride, cols);
  const pg = dweight ? new Float64Array(cols) : null;
  for (let r = 0; r < rows; r++) {
    const ox = r * ldx;
    let sq = 0;
    for (let j = 0; j < cols; j++) sq += x[ox + j]! * x[ox + j]!;
    const rstd = 1 / Math.sqrt(sq / cols + eps);
    normRow(x, ox, weight, dy, r * lddy, dx, r * lddx, cols, 0, rstd, false, pg, null);
  }
  if (dweight && pg) dweight.set(pg);
}

const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** f′ of each activation (x the input; the output for sigmoid and tanh), in double. */
function derivative(op: ActivationGrad): (x: number) => number {
  switch (op) {
    case ActivationGrad.Gelu:
      return (x) => 0.5 * erfc(-x * Math.SQRT1_2) + x * INV_SQRT_2PI * Math.exp(-0.5 * x * x);
    case ActivationGrad.GeluTanh:
      return (x) => {
        const t = Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x));
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x);
      };
    case ActivationGrad.Silu:
      return (x) => {
        const s = 1 / (1 + Math.exp(-x));
        return s * (1 + x * (1 - s));
      };
    case ActivationGrad.Sigmoid:
      return (y) => y * (1 - y);
    case ActivationGrad.Tanh:
      return (y) => 1 - y * y;
    default:
      throw new RangeError(`activationBackward: argument 'op' must be an ActivationGrad (0 to 5), got ${String(op)}`);
  }
}

/** dx = dy · f′ element-wise (relu: dy where x > 0, NaN passing dy as PyTorch's threshold_backward). */
export function activationBackward({ op, x, dy, dx }: ActivationBackwardArgs): void {
  const n = x.length;
  if (dy.length !== n || dx.length !== n) {
    throw new RangeError(`activationBackward: arguments 'dy' and 'dx' must have x's length ${n}, got ${dy.length} and ${dx.length}`);
  }
  if (op === ActivationGrad.Relu) {
    for (let i = 0; i < n; i++) dx[i] = x[i]! <= 0 ? 0 : dy[i]!;
    return;
  }
  const f = derivative(op);
  for (let i = 0; i < n; i++) dx[i] = dy[i]! * f(x[i]!);
}

/** dweight = scatter-add of dy's rows by id (row paddingIdx stays 0), in order of position. */
export function embeddingBackward({ dy, ids, dweight, num, dim, paddingIdx, dyRowStride }: EmbeddingBackwardArgs): void {
  const ld = stride('embeddingBackward', 'dyRowStride', dyRowStride, dim);
  dweight.fill(0, 0, num * dim);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (id < 0 || id >= num) {
      throw new RangeError(`embeddingBackward: argument 'ids' must hold indices in [0, ${num}), got ${id} at position ${i}`);
    }
    if (id === paddingIdx) continue;
    const src = i * ld;
    const dst = id * dim;
    for (let j = 0; j < dim; j++) dweight[dst + j] = dweight[dst + j]! + dy[src + j]!;
  }
}

/** Σ w over the classes (cols without weights). */
function weightSum(w: Float32Array | null, cols: number): number {
  if (!w) return cols;
  let s = 0;
  for (let c = 0; c < cols; c++) s += w[c]!;
  return s;
}

function checkTargets(fn: string, target: Int32Array, rows: number, cols: number, ignoreIndex: number): void {
  for (let i = 0; i < rows; i++) {
    const t = target[i]!;
    if (t !== ignoreIndex && (t < 0 || t >= cols)) {
      throw new RangeError(`${fn}: target ${t} at position ${i} is neither a class in [0, ${cols}) nor ignoreIndex ${ignoreIndex}`);
    }
  }
}

/** Per-row cross-entropy and log-sum-exp (see CrossEntropyArgs), in double. */
export function crossEntropy(args: CrossEntropyArgs): void {
  const { logits: x, target, weight: w, ignoreIndex, labelSmoothing: eps, loss, lse, rows, cols } = args;
  const ld = stride('crossEntropy', 'logitsRowStride', args.logitsRowStride, cols);
  checkTargets('crossEntropy', target, rows, cols, ignoreIndex);
  const wSum = weightSum(w, cols);
  for (let r = 0; r < rows; r++) {
    const o = r * ld;
    let max = -Infinity;
    for (let c = 0; c < cols; c++) if (x[o + c]! > max) max = x[o + c]!;
    let se = 0;
    let swx = 0;
    for (let c = 0; c < cols; c++) {
      se += Math.exp(x[o + c]! - max);
      swx += (w ? w[c]! : 1) * x[o + c]!;
    }
    const l = max + Math.log(se);
    lse[r] = l;
    const t = target[r]!;
    if (t === ignoreIndex) {
      loss[r] = 0;
      continue;
    }
    const wt = w ? w[t]! : 1;
    loss[r] = (1 - eps) * wt * (l - x[o + t]!) + (eps > 0 ? (eps / cols) * (l * wSum - swx) : 0);
  }
}

/** The gradient of Σ dloss_i · loss_i with respect to the logits (see CrossEntropyBackwardArgs). */
export function crossEntropyBackward(args: CrossEntropyBackwardArgs): void {
  const { logits: x, lse, target, weight: w, ignoreIndex, labelSmoothing: eps, dloss, dlossStride, dlogits, rows, cols } = args;
  const ldx = stride('crossEntropyBackward', 'logitsRowStride', args.logitsRowStride, cols);
  const lddx = stride('crossEntropyBackward', 'dlogitsRowStride', args.dlogitsRowStride, cols);
  checkTargets('crossEntropyBackward', target, rows, cols, ignoreIndex);
  const wSum = weightSum(w, cols);
  const se = eps / cols;
  for (let r = 0; r < rows; r++) {
    const ox = r * ldx;
    const od = r * lddx;
    const t = target[r]!;
    if (t === ignoreIndex) {
      dlogits.fill(0, od, od + cols);
      continue;
    }
    const dl = dloss[r * dlossStride]!;
    const wt = w ? w[t]! : 1;
    const a = dl * ((1 - eps) * wt + se * wSum);
    const b = dl * se;
    const l = lse[r]!;
    for (let c = 0; c < cols; c++) dlogits[od + c] = a * Math.exp(x[ox + c]! - l) - b * (w ? w[c]! : 1);
    dlogits[od + t] = dlogits[od + t]! - dl * (1 - eps) * wt;
  }
}
