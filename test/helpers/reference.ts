/**
 * Naive float64 references and comparison helpers shared by the tests.
 * Deliberately the most straightforward loops possible: they are the spec.
 */
import { expect } from 'vitest';
import { Rng, type Tensor } from '../../lib/tensor';

/** Deterministic float32 data in [-1, 1). */
export function randomData(n: number, seed: number, scale = 1): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rng.uniform() * 2 - 1) * scale;
  return out;
}

/** op(X)[i][j] for X stored row-major as [rows, cols] (or transposed). */
function at(
  x: ArrayLike<number>, off: number, trans: boolean, i: number, j: number, rows: number, cols: number,
): number {
  // Not transposed: op(X) is [rows, cols], stored as such. Transposed: stored [cols, rows].
  return trans ? x[off + j * rows + i]! : x[off + i * cols + j]!;
}

/** C = op(A)·op(B) in float64 plus Σ|a·b| per element (for error bounds). */
export function naiveGemm(
  a: ArrayLike<number>, b: ArrayLike<number>, m: number, n: number, k: number,
  transA = false, transB = false, offA = 0, offB = 0,
): { c: Float64Array; mag: Float64Array } {
  const c = new Float64Array(m * n);
  const mag = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      let g = 0;
      for (let p = 0; p < k; p++) {
        const v = at(a, offA, transA, i, p, m, k) * at(b, offB, transB, p, j, k, n);
        s += v;
        g += Math.abs(v);
      }
      c[i * n + j] = s;
      mag[i * n + j] = g;
    }
  }
  return { c, mag };
}

/** High-accuracy erf for tests: Maclaurin series for |x| < 3, continued fraction for erfc beyond. */
export function refErf(x: number): number {
  if (Math.abs(x) < 3) {
    let term = x;
    let sum = x;
    for (let n = 1; n < 200; n++) {
      term *= (-x * x) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-18) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  const s = Math.sign(x);
  return s * (1 - refErfcLarge(Math.abs(x)));
}

/** erfc(x) for x ≥ 3 by Lentz's continued fraction. */
export function refErfcLarge(x: number): number {
  // erfc(x) = exp(-x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))
  let f = x;
  let c = x;
  let d = 0;
  for (let i = 1; i < 300; i++) {
    const an = i / 2;
    d = x + an * d;
    d = 1 / d;
    c = x + an / c;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / f;
}

export function refGelu(x: number): number {
  return 0.5 * x * (1 + refErf(x / Math.SQRT2));
}

export function refGeluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
}

/**
 * Asserts |got − want| ≤ atol + rtol·|scale| element-wise, where scale is
 * `mag[i]` when given (Σ|terms|, the natural bound for sums) else |want|.
 * Reports the first offending index.
 */
export function expectClose(
  got: ArrayLike<number>, want: ArrayLike<number>, rtol: number, atol = 0, mag?: ArrayLike<number>,
): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    if (Number.isNaN(w) && Number.isNaN(g)) continue;
    const bound = atol + rtol * Math.abs(mag ? mag[i]! : w);
    if (!(Math.abs(g - w) <= bound)) {
      expect.fail(`element ${i}: got ${g}, want ${w} (|diff| ${Math.abs(g - w)} > ${bound})`);
    }
  }
}

/**
 * max |a − b| relative to max |b|: the error of a whole output against a
 * reference at the reference's scale. NaN positions must agree (asserted);
 * NaN entries are then left out.
 */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  let s = 0;
  for (let i = 0; i < b.length; i++) {
    expect(Number.isNaN(a[i]!), `NaN at ${i}`).toBe(Number.isNaN(b[i]!));
    if (Number.isNaN(b[i]!)) continue;
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    s = Math.max(s, Math.abs(b[i]!));
  }
  return d / s;
}

/** Largest |got − want| over a tensor's elements (in row-major order) against a flat reference list; the lengths must match. */
export function maxAbsDiff(got: Tensor<'float32'>, want: number[]): number {
  const g = got.contiguous().data;
  expect(g.length).toBe(want.length);
  let worst = 0;
  want.forEach((w, i) => (worst = Math.max(worst, Math.abs(g[i]! - w))));
  return worst;
}

export { cosine } from './vectors';
