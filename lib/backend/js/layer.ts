/**
 * Row-wise and element-wise kernels of the JS backend: softmax, layerNorm,
 * relu, gelu, embedding gather and the 0213 permute. Plain loops over flat
 * typed arrays, no allocation; reductions run in double.
 */
import { geluExact, geluTanh } from './math';

/** Stable softmax over each row of [rows, cols] (max-subtracted). x and y may alias. */
export function softmax(x: Float32Array, y: Float32Array, rows: number, cols: number): void {
  for (let r = 0, o = 0; r < rows; r++, o += cols) {
    let max = -Infinity;
    for (let j = 0; j < cols; j++) {
      const v = x[o + j]!;
      if (v > max) max = v;
    }
    // A row of all -Infinity gives NaN (exp(-inf - -inf)), as in PyTorch.
    let sum = 0;
    for (let j = 0; j < cols; j++) {
      const e = Math.exp(x[o + j]! - max);
      y[o + j] = e;
      sum += e;
    }
    const inv = 1 / sum;
    for (let j = 0; j < cols; j++) y[o + j] = y[o + j]! * inv;
  }
}

/**
 * PyTorch LayerNorm over each row: (x − mean) / √(var + eps) · gamma + beta
 * with biased variance. Two passes (mean, then squared deviations) in double
 * so large offsets do not cancel. x and y may alias.
 */
export function layerNorm(
  x: Float32Array, gamma: Float32Array | null, beta: Float32Array | null, y: Float32Array,
  rows: number, cols: number, eps: number,
): void {
  for (let r = 0, o = 0; r < rows; r++, o += cols) {
    let sum = 0;
    for (let j = 0; j < cols; j++) sum += x[o + j]!;
    const mean = sum / cols;
    let sq = 0;
    for (let j = 0; j < cols; j++) {
      const d = x[o + j]! - mean;
      sq += d * d;
    }
    const rstd = 1 / Math.sqrt(sq / cols + eps);
    if (gamma !== null && beta !== null) {
      for (let j = 0; j < cols; j++) y[o + j] = (x[o + j]! - mean) * rstd * gamma[j]! + beta[j]!;
    } else if (gamma !== null) {
      for (let j = 0; j < cols; j++) y[o + j] = (x[o + j]! - mean) * rstd * gamma[j]!;
    } else if (beta !== null) {
      for (let j = 0; j < cols; j++) y[o + j] = (x[o + j]! - mean) * rstd + beta[j]!;
    } else {
      for (let j = 0; j < cols; j++) y[o + j] = (x[o + j]! - mean) * rstd;
    }
  }
}

/**
 * Residual add fused with LayerNorm (see Backend.addLayerNorm): per row, the
 * float32 sum x + r (into `sum` or y), then layerNorm of it into y.
 */
export function addLayerNorm(
  x: Float32Array, r: Float32Array, gamma: Float32Array | null, beta: Float32Array | null, y: Float32Array,
  sum: Float32Array | null, rows: number, cols: number, eps: number,
): void {
  const s = sum ?? y;
  const n = rows * cols;
  for (let i = 0; i < n; i++) s[i] = x[i]! + r[i]!;
  layerNorm(s, gamma, beta, y, rows, cols, eps);
}

/** y = max(x, 0); NaN stays NaN (as in PyTorch). x and y may alias. */
export function relu(x: Float32Array, y: Float32Array): void {
  const n = x.length;
  for (let i = 0; i < n; i++) {
    const v = x[i]!;
    y[i] = v < 0 ? 0 : v;
  }
}

/** GELU, exact (erf) or tanh approximation. x and y may alias. */
export function gelu(x: Float32Array, y: Float32Array, tanhApprox: boolean): void {
  const n = x.length;
  if (tanhApprox) {
    for (let i = 0; i < n; i++) y[i] = geluTanh(x[i]!);
  } else {
    for (let i = 0; i < n; i++) y[i] = geluExact(x[i]!);
  }
}

/** out[i, :] = weight[ids[i], :]. Re-checks ids so a bad one can never read out of bounds. */
export function embedding(weight: Float32Array, num: number, dim: number, ids: Int32Array, out: Float32Array): void {
  const n = ids.length;
  for (let i = 0; i < n; i++) {
    const id = ids[i]!;
    if (id < 0 || id >= num) {
      throw new RangeError(`embedding: argument 'ids' must hold indices in [0, ${num}), got ${id} at position ${i}`);
    }
    const src = id * dim;
    const dst = i * dim;
    for (let j = 0; j < dim; j++) out[dst + j] = weight[src + j]!;
  }
}

/** [d0, d1, d2, d3] → [d0, d2, d1, d3], copying contiguous runs of d3. x and y must not alias. */
export function permute0213(x: Float32Array, y: Float32Array, d0: number, d1: number, d2: number, d3: number): void {
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
