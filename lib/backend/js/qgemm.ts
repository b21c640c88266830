/**
 * The int8-weight GEMM in plain TypeScript: the reference the native kernels
 * (native/kernels/qgemm) are tested against, bit for bit.
 *
 * The scheme (native/kernels/qgemm/qgemm.h has the same text):
 * - rne(v) is round-half-to-even to an integer ({@link rint}); every other
 *   step is one float32 operation (`Math.fround` of the exact double result,
 *   which for one +, ×, ÷ of float32 values is the float32 result).
 * - amax of a row or column is max |v| compared as bit patterns, so NaN wins
 *   over Inf and Inf over every finite value.
 * - Weights, once per weight version, symmetric per output channel j (column j
 *   of op(B), row j of a Linear weight): sw[j] = amax / 127,
 *   qw[j, k] = clamp(rne(B[j, k] · (127 / amax)), -127, 127).
 * - Activations, per call, per row i of op(A): the same formulas (sa[i], qa).
 * - A row or column whose amax is 0 or not finite quantizes to zeros with
 *   scale amax / 127 (0, Inf or NaN): NaN and Inf inputs give NaN outputs.
 * - acc[i, j] = Σ_k qa[i, k] · qw[j, k], exact (|acc| < 2^31 for k ≤ 133,143);
 *   d = float(acc) · (sa[i] · sw[j]); C = act(alpha · d + beta · C + bias[j]),
 *   the float32 GEMM's epilogue.
 */
import { Activation } from '../backend';
import { applyActivation } from './math';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Round half to even of a float32 value `v` (|v| < 2^31) to an integer, as cvtps2dq and nearbyint do by default. */
export function rint(v: number): number {
  const r = Math.round(v); // ties toward +Infinity
  return r - v === 0.5 && (r & 1) !== 0 ? r - 1 : r;
}

/**
 * Quantizes `len` values of `src` (from `off`, `stride` apart) into `dst` from `dOff` as int8 and returns the
 * float32 scale amax / 127 (see the module comment).
 */
export function quantizeInt8(src: Float32Array, off: number, stride: number, len: number, dst: Int8Array, dOff: number): number {
  let m = 0;
  for (let i = 0; i < len; i++) {
    f32[0] = src[off + i * stride]!;
    const b = u32[0]! & 0x7fffffff;
    if (b > m) m = b;
  }
  u32[0] = m;
  const amax = f32[0]!;
  const scale = Math.fround(amax / 127);
  if (m === 0 || m >= 0x7f800000) {
    dst.fill(0, dOff, dOff + len);
    return scale;
  }
  const inv = Math.fround(127 / amax);
  for (let i = 0; i < len; i++) {
    const r = rint(Math.fround(src[off + i * stride]! * inv));
    dst[dOff + i] = r > 127 ? 127 : r < -127 ? -127 : r;
  }
  return scale;
}

/** A weight quantized per output channel: q[j·k + t] = qw[j, t], scales sw[j]. */
export interface Int8Weight {
  readonly q: Int8Array;
  readonly scale: Float32Array;
}

/** Quantizes op(B) (k × n; transB: B stored [n, k] with row stride ldb, else [k, n]) per column of op(B). */
export function quantizeWeightInt8(b: Float32Array, offB: number, ldb: number, transB: boolean, k: number, n: number): Int8Weight {
  const q = new Int8Array(n * k);
  const scale = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    scale[j] = transB ? quantizeInt8(b, offB + j * ldb, 1, k, q, j * k) : quantizeInt8(b, offB + j, ldb, k, q, j * k);
  }
  return { q, scale };
}

/** What one int8 product reads: op(A) through lda/transA, C through ldc, the quantized weight, the epilogue. */
export interface QGemm {
  a: Float32Array; c: Float32Array;
  m: number; n: number; k: number;
  transA: boolean; lda: number; ldc: number;
  alpha: number; beta: number;
  bias: Float32Array | null; act: Activation;
}


/** C (from offC) = act(alpha · dequant(qa · qw) + beta · C + bias) for op(A) from offA. */
export function qgemmOne(g: QGemm, w: Int8Weight, offA: number, offC: number): void {
  const { a, c, m, n, k, lda, ldc, alpha, beta, bias, act } = g;
  const qa = new Int8Array(k);
  const { q, scale } = w;
  for (let i = 0; i < m; i++) {
    const sa = g.transA ? quantizeInt8(a, offA + i, lda, k, qa, 0) : quantizeInt8(a, offA + i * lda, 1, k, qa, 0);
    const row = offC + i * ldc;
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let t = 0, wj = j * k; t < k; t++) acc += qa[t]! * q[wj + t]!;
      const d = Math.fround(Math.fround(acc) * Math.fround(sa * scale[j]!));
      // The fp32 epilogue in the native order: alpha·d, then beta·C (one fused multiply-add), then the bias.
      let v = Math.fround(alpha * d);
      if (beta !== 0) v = Math.fround(beta * c[row + j]! + v);
      if (bias !== null) v = Math.fround(v + bias[j]!);
      c[row + j] = act === Activation.None ? v : applyActivation(v, act);
    }
  }
}
