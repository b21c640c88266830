/**
 * Row-wise and element-wise kernels of the JS backend: softmax, layerNorm,
 * rmsNorm (and their residual-add forms), relu, gelu, embedding gather and
 * the 0213 permute. Plain loops over flat typed arrays, no allocation;
 * reductions run in double.
 */
import type {
  AddLayerNormArgs,
  AddRmsNormArgs,
  CopyArgs,
  EmbeddingArgs,
  IndexCopyArgs,
  GeluArgs,
  LayerNormArgs,
  Permute0213Args,
  RmsNormArgs,
  SiluMulArgs,
  SoftmaxArgs,
  UnaryArgs,
  UnaryMapArgs,
} from '../backend';
import { UnaryOp } from '../backend';
import { geluExact, geluTanh } from './math';

/** A row stride argument: its default (cols) or a checked integer ≥ cols. */
export function rowStride(fn: string, name: string, value: number | undefined, cols: number): number {
  if (value === undefined) return cols;
  if (!Number.isInteger(value) || value < cols) {
    throw new RangeError(`${fn}: argument '${name}' must be an integer >= cols (${cols}), got ${value}`);
  }
  return value;
}

/** Stable softmax (or with `log`, log_softmax) over each row of [rows, cols] (max-subtracted). x and y may alias. */
export function softmax(args: SoftmaxArgs): void {
  const { x, y, rows, cols } = args;
  const ldx = rowStride('softmax', 'xRowStride', args.xRowStride, cols);
  const ldy = rowStride('softmax', 'yRowStride', args.yRowStride, cols);
  for (let r = 0; r < rows; r++) {
    const ox = r * ldx;
    const oy = r * ldy;
    let max = -Infinity;
    for (let j = 0; j < cols; j++) {
      const v = x[ox + j]!;
      if (v > max) max = v;
    }
    if (args.log === true) {
      // PyTorch's order: (x − max) − log Σ exp(x − max).
      let sum = 0;
      for (let j = 0; j < cols; j++) sum += Math.exp(x[ox + j]! - max);
      const lse = Math.fround(Math.log(sum));
      for (let j = 0; j < cols; j++) y[oy + j] = Math.fround(x[ox + j]! - max) - lse;
      continue;
    }
    // A row of all -Infinity gives NaN (exp(-inf - -inf)), as in PyTorch.
    let sum = 0;
    for (let j = 0; j < cols; j++) {
      const e = Math.exp(x[ox + j]! - max);
      y[oy + j] = e;
      sum += e;
    }
    const inv = 1 / sum;
    for (let j = 0; j < cols; j++) y[oy + j] = y[oy + j]! * inv;
  }
}

/**
 * PyTorch LayerNorm over each row: (x − mean) / √(var + eps) · weight + bias
 * with biased variance. Two passes (mean, then squared deviations) in double
 * so large offsets do not cancel. x and y may alias.
 */
export function layerNorm(args: LayerNormArgs & { rstd?: Float32Array | null }): void {
  const { x, weight, bias, y, rows, cols, eps, rstd: rstdOut } = args;
  const ldx = rowStride('layerNorm', 'xRowStride', args.xRowStride, cols);
  const ldy = rowStride('layerNorm', 'yRowStride', args.yRowStride, cols);
  for (let r = 0; r < rows; r++) {
    const ox = r * ldx;
    const oy = r * ldy;
    let sum = 0;
    for (let j = 0; j < cols; j++) sum += x[ox + j]!;
    const mean = sum / cols;
    let sq = 0;
    for (let j = 0; j < cols; j++) {
      const d = x[ox + j]! - mean;
      sq += d * d;
    }
    const rstd = 1 / Math.sqrt(sq / cols + eps);
    if (rstdOut) rstdOut[r] = rstd;
    for (let j = 0; j < cols; j++) {
      let v = (x[ox + j]! - mean) * rstd;
      if (weight !== null) v *= weight[j]!;
      if (bias !== null) v += bias[j]!;
      y[oy + j] = v;
    }
  }
}

/**
 * Residual add fused with LayerNorm (see Backend.addLayerNorm): per row, the
 * float32 sum x + residual (into `sum` or y), then layerNorm of it into y.
 */
export function addLayerNorm(args: AddLayerNormArgs): void {
  const { x, residual, weight, bias, y, sum, rows, cols, eps } = args;
  if (args.rstd && args.rstd.length < rows) {
    throw new RangeError(`addLayerNorm: argument 'rstd' must have at least rows = ${rows} elements, got ${args.rstd.length}`);
  }
  const s = addRows(x, residual, sum ?? y, rows * cols);
  layerNorm({ x: s, weight, bias, y, rows, cols, eps, rstd: args.rstd ?? null });
}

/**
 * PyTorch RMSNorm over each row: x / √(mean(x²) + eps) · weight. The mean of
 * squares is accumulated in double. x and y may alias.
 */
export function rmsNorm(args: RmsNormArgs): void {
  const { x, weight, y, rows, cols, eps } = args;
  const ldx = rowStride('rmsNorm', 'xRowStride', args.xRowStride, cols);
  const ldy = rowStride('rmsNorm', 'yRowStride', args.yRowStride, cols);
  for (let r = 0; r < rows; r++) {
    const ox = r * ldx;
    const oy = r * ldy;
    let sq = 0;
    for (let j = 0; j < cols; j++) {
      const v = x[ox + j]!;
      sq += v * v;
    }
    const rrms = 1 / Math.sqrt(sq / cols + eps);
    if (weight !== null) {
      for (let j = 0; j < cols; j++) y[oy + j] = x[ox + j]! * rrms * weight[j]!;
    } else {
      for (let j = 0; j < cols; j++) y[oy + j] = x[ox + j]! * rrms;
    }
  }
}

/** Residual add fused with RMSNorm (see Backend.addRmsNorm). */
export function addRmsNorm(args: AddRmsNormArgs): void {
  const { x, residual, weight, y, sum, rows, cols, eps } = args;
  const s = addRows(x, residual, sum ?? y, rows * cols);
  rmsNorm({ x: s, weight, y, rows, cols, eps });
}

/** s = x + r over n elements, rounded to float32 (s may be x or r). */
function addRows(x: Float32Array, r: Float32Array, s: Float32Array, n: number): Float32Array {
  for (let i = 0; i < n; i++) s[i] = x[i]! + r[i]!;
  return s;
}

/** y = max(x, 0); NaN stays NaN (as in PyTorch). x and y may alias. */
export function relu({ x, y }: UnaryArgs): void {
  const n = x.length;
  for (let i = 0; i < n; i++) {
    const v = x[i]!;
    y[i] = v < 0 ? 0 : v;
  }
}

/** GELU, exact (erf) or tanh approximation. x and y may alias. */
export function gelu({ x, y, tanhApprox }: GeluArgs): void {
  const n = x.length;
  if (tanhApprox) {
    for (let i = 0; i < n; i++) y[i] = geluTanh(x[i]!);
  } else {
    for (let i = 0; i < n; i++) y[i] = geluExact(x[i]!);
  }
}

/** PyTorch's SiLU formula x / (1 + exp(−x)) in double, rounded once to float32. */
function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

/** y = op(x) (silu, sigmoid, tanh), each evaluated in double and rounded once. x and y may alias. */
export function unary({ op, x, y }: UnaryMapArgs): void {
  const n = x.length;
  switch (op) {
    case UnaryOp.Silu:
      for (let i = 0; i < n; i++) y[i] = silu(x[i]!);
      break;
    case UnaryOp.Sigmoid:
      for (let i = 0; i < n; i++) y[i] = 1 / (1 + Math.exp(-x[i]!));
      break;
    case UnaryOp.Tanh:
      for (let i = 0; i < n; i++) y[i] = Math.tanh(x[i]!);
      break;
    default:
      throw new RangeError(`unary: argument 'op' must be a UnaryOp (0, 1 or 2), got ${String(op)}`);
  }
}

/** y = silu(gate) · up, silu rounded to float32 first (as F.silu(gate) * up). y may be gate or up. */
export function siluMul({ gate, up, y }: SiluMulArgs): void {
  const n = gate.length;
  if (up.length !== n || y.length !== n) {
    throw new RangeError(`siluMul: arguments 'up' and 'y' must have gate's length ${n}, got ${up.length} and ${y.length}`);
  }
  for (let i = 0; i < n; i++) y[i] = Math.fround(silu(gate[i]!)) * up[i]!;
}

/** Row index[i] of y = row i of x. Checks the indices (in range, distinct) so a bad one can never write out of bounds. */
export function indexCopy({ x, ldx, y, ldy, yRows, rows, cols, index }: IndexCopyArgs): void {
  const n = rows;
  if (index.length < n) throw new RangeError(`indexCopy: argument 'index' has ${index.length} elements, expected at least ${n} (rows)`);
  const seen = new Set<number>();
  for (let i = 0; i < n; i++) {
    const r = index[i]!;
    if (!(r >= 0 && r < yRows)) throw new RangeError(`indexCopy: argument 'index' must hold rows in [0, yRows = ${yRows}), got ${r} at position ${i}`);
    if (seen.has(r)) throw new RangeError(`indexCopy: argument 'index' must hold distinct rows, got ${r} twice`);
    seen.add(r);
  }
  if (cols === 0) return;
  for (let i = 0; i < n; i++) y.set(x.subarray(i * ldx, i * ldx + cols), index[i]! * ldy);
}

/** out[i, :dim] = weight[ids[i], :dim] over strided rows. Re-checks ids so a bad one can never read out of bounds. */
export function embedding({ weight, num, dim, ids, out, weightRowStride, outRowStride }: EmbeddingArgs): void {
  const n = ids.length;
  const ldw = rowStride('embedding', 'weightRowStride', weightRowStride, dim);
  const ldo = rowStride('embedding', 'outRowStride', outRowStride, dim);
  if (num > 0 && dim > 0 && weight.length < (num - 1) * ldw + dim) {
    throw new RangeError(`embedding: argument 'weight' has ${weight.length} elements, expected at least ${(num - 1) * ldw + dim}`);
  }
  if (n > 0 && dim > 0 && out.length < (n - 1) * ldo + dim) {
    throw new RangeError(`embedding: argument 'out' has ${out.length} elements, expected at least ${(n - 1) * ldo + dim}`);
  }
  for (let i = 0; i < n; i++) {
    const id = ids[i]!;
    if (id < 0 || id >= num) {
      throw new RangeError(`embedding: argument 'ids' must hold indices in [0, ${num}), got ${id} at position ${i}`);
    }
    const src = id * ldw;
    const dst = i * ldo;
    for (let j = 0; j < dim; j++) out[dst + j] = weight[src + j]!;
  }
}

/** y[i] = x[i] over `shape`, both strided (an odometer over the index space). */
export function copy({ x, xStrides, y, yStrides, shape }: CopyArgs): void {
  const nd = shape.length;
  if (xStrides.length !== nd || yStrides.length !== nd) {
    throw new RangeError(`copy: xStrides and yStrides must have shape's ${nd} dims, got ${xStrides.length} and ${yStrides.length}`);
  }
  let total = 1;
  for (const d of shape) total *= d;
  if (total === 0) return;
  const idx = new Array<number>(nd).fill(0);
  let ox = 0;
  let oy = 0;
  for (let i = 0; i < total; i++) {
    y[oy] = x[ox]!;
    for (let d = nd - 1; d >= 0; d--) {
      ox += xStrides[d]!;
      oy += yStrides[d]!;
      if (++idx[d]! < shape[d]!) break;
      ox -= xStrides[d]! * shape[d]!;
      oy -= yStrides[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
}

/** [d0, d1, d2, d3] → [d0, d2, d1, d3], copying contiguous runs of d3. x and y must not alias. */
export function permute0213({ x, y, d0, d1, d2, d3 }: Permute0213Args): void {
  for (let a = 0; a < d0; a++) {
    for (let b = 0; b < d1; b++) {
      for (let c = 0; c < d2; c++) {
        const src = ((a * d1 + b) * d2 + c) * d3;
        const dst = ((a * d2 + c) * d1 + b) * d3;
        for (let e = 0; e < d3; e++) y[dst + e] = x[src + e]!;
      }
    }
  }
}
