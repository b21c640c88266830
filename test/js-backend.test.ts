/**
 * Backend kernels (the flat-array interface) against naive float64
 * references. Runs over every available backend; the JS one is the reference
 * the native one must match.
 */
import { describe, expect, it } from 'vitest';
import { Activation, BinaryOp } from '../lib/backend/backend';
import type { GemmArgs } from '../lib/backend/backend';
import { getBackend } from '../lib/backend/registry';
import { erf, erfc, geluExact } from '../lib/backend/js/math';
import { backends, tolerance } from './helpers/backends';
import { expectClose, naiveGemm, randomData, refErf, refErfcLarge, refGelu, refGeluTanh } from './helpers/reference';

describe('erf (Cody rational approximations)', () => {
  it('is within 1e-12 of a series / continued-fraction reference', () => {
    let worst = 0;
    for (let x = -6; x <= 6; x += 0.001) worst = Math.max(worst, Math.abs(erf(x) - refErf(x)));
    expect(worst).toBeLessThan(1e-12);
  });

  it('matches known values and keeps relative accuracy in the erfc tail', () => {
    expect(erf(0)).toBe(0);
    expect(erf(1)).toBeCloseTo(0.8427007929497149, 15);
    expect(erf(-2)).toBeCloseTo(-0.9953222650189527, 15);
    expect(erf(Infinity)).toBe(1);
    expect(erf(-Infinity)).toBe(-1);
    expect(erf(NaN)).toBeNaN();
    for (const x of [3, 4.5, 5, 8, 10, 20]) {
      expect(Math.abs(erfc(x) / refErfcLarge(x) - 1)).toBeLessThan(1e-13);
    }
    expect(erfc(30)).toBe(0);
    expect(erfc(-30)).toBe(2);
  });

  it('gives an exact GELU with relative accuracy in the negative tail', () => {
    expect(geluExact(0)).toBe(0);
    for (const x of [-12, -8, -5, -1, 0.5, 3]) {
      const want = x < -3 ? 0.5 * x * refErfcLarge(-x / Math.SQRT2) : refGelu(x);
      expect(Math.abs(geluExact(x) / want - 1)).toBeLessThan(1e-12);
    }
  });
});

describe.each(backends)('%s backend kernels', (name) => {
  const be = getBackend(name);
  const rtol = tolerance[name];

  function gemmArgs(over: Partial<GemmArgs> & Pick<GemmArgs, 'a' | 'b' | 'c' | 'm' | 'n' | 'k'>): GemmArgs {
    return {
      transA: false, transB: false, alpha: 1, beta: 0, bias: null, act: Activation.None,
      batch: 1, strideA: 0, strideB: 0, strideC: 0, ...over,
    };
  }

  describe('gemm', () => {
    const shapes: [number, number, number][] = [
      [1, 1, 1], [2, 3, 4], [7, 13, 17], [5, 1, 9], [1, 11, 3], [37, 29, 300], [65, 67, 259],
      [1000, 3, 5], [3, 1100, 5], [2, 5, 1100], [64, 64, 64], [129, 33, 257],
    ];
    for (const [m, n, k] of shapes) {
      for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as const) {
        it(`${m}x${n}x${k} transA=${ta} transB=${tb}`, () => {
          const a = randomData(m * k, m * 7 + k);
          const b = randomData(k * n, n * 13 + k);
          const c = new Float32Array(m * n);
          be.gemm(gemmArgs({ a, b, c, m, n, k, transA: ta, transB: tb }));
          const ref = naiveGemm(a, b, m, n, k, ta, tb);
          expectClose(c, ref.c, rtol, 1e-7, ref.mag);
        });
      }
    }

    it('k = 0 gives beta·C + bias', () => {
      const c = new Float32Array([1, 2, 3, 4, 5, 6]);
      const bias = new Float32Array([10, 20, 30]);
      be.gemm(gemmArgs({ a: new Float32Array(0), b: new Float32Array(0), c, m: 2, n: 3, k: 0, beta: 2, bias }));
      expect(Array.from(c)).toEqual([12, 24, 36, 18, 30, 42]);
    });

    it('beta = 0 treats C as write-only (NaN in C is not propagated)', () => {
      const [m, n, k] = [9, 10, 11];
      const a = randomData(m * k, 1);
      const b = randomData(k * n, 2);
      const c = new Float32Array(m * n).fill(NaN);
      be.gemm(gemmArgs({ a, b, c, m, n, k }));
      expectClose(c, naiveGemm(a, b, m, n, k).c, rtol, 1e-6);
    });

    it('applies alpha, beta, bias and each activation in one pass (k spanning several blocks)', () => {
      const [m, n, k] = [19, 23, 600];
      const a = randomData(m * k, 3);
      const b = randomData(k * n, 4);
      const c0 = randomData(m * n, 5);
      const bias = randomData(n, 6);
      const ref = naiveGemm(a, b, m, n, k);
      const acts: [Activation, (v: number) => number][] = [
        [Activation.None, (v) => v],
        [Activation.Relu, (v) => Math.max(v, 0)],
        [Activation.Gelu, refGelu],
        [Activation.GeluTanh, refGeluTanh],
      ];
      for (const [act, f] of acts) {
        const c = c0.slice();
        be.gemm(gemmArgs({ a, b, c, m, n, k, alpha: 0.5, beta: -1.5, bias, act }));
        const want = new Float64Array(m * n);
        const mag = new Float64Array(m * n);
        for (let i = 0; i < m * n; i++) {
          want[i] = f(0.5 * ref.c[i]! - 1.5 * c0[i]! + bias[i % n]!);
          mag[i] = 0.5 * ref.mag[i]! + Math.abs(1.5 * c0[i]!) + Math.abs(bias[i % n]!);
        }
        expectClose(c, want, rtol * 2, 1e-6, mag);
      }
    });

    it('batches with strides, including stride-0 broadcast of either operand', () => {
      const [m, n, k, batch] = [6, 7, 8, 5];
      const a = randomData(batch * m * k, 7);
      const b = randomData(k * n, 8);
      const c = new Float32Array(batch * m * n);
      be.gemm(gemmArgs({ a, b, c, m, n, k, batch, strideA: m * k, strideB: 0, strideC: m * n }));
      for (let i = 0; i < batch; i++) {
        const ref = naiveGemm(a, b, m, n, k, false, false, i * m * k, 0);
        expectClose(c.subarray(i * m * n, (i + 1) * m * n), ref.c, rtol, 1e-7, ref.mag);
      }
      const a1 = randomData(m * k, 9);
      const bb = randomData(batch * k * n, 10);
      const c2 = new Float32Array(batch * m * n);
      be.gemm(gemmArgs({ a: a1, b: bb, c: c2, m, n, k, batch, strideA: 0, strideB: k * n, strideC: m * n,
        transB: true }));
      for (let i = 0; i < batch; i++) {
        const ref = naiveGemm(a1, bb, m, n, k, false, true, 0, i * k * n);
        expectClose(c2.subarray(i * m * n, (i + 1) * m * n), ref.c, rtol, 1e-7, ref.mag);
      }
    });

    it('is fast enough to be a useful baseline (512x768x768 within a few seconds)', () => {
      const [m, n, k] = [512, 768, 768];
      const a = randomData(m * k, 11);
      const b = randomData(k * n, 12);
      const c = new Float32Array(m * n);
      const t0 = performance.now();
      be.gemm(gemmArgs({ a, b, c, m, n, k }));
      expect(performance.now() - t0).toBeLessThan(5000);
      // Spot-check a few entries against the naive dot product.
      for (const [i, j] of [[0, 0], [511, 767], [200, 300]] as const) {
        let s = 0;
        for (let p = 0; p < k; p++) s += a[i * k + p]! * b[p * n + j]!;
        expect(c[i * n + j]).toBeCloseTo(s, 3);
      }
    });
  });

  describe('softmax', () => {
    function naiveSoftmax(x: Float32Array, rows: number, cols: number): Float64Array {
      const y = new Float64Array(x.length);
      for (let r = 0; r < rows; r++) {
        let max = -Infinity;
        for (let j = 0; j < cols; j++) max = Math.max(max, x[r * cols + j]!);
        let s = 0;
        for (let j = 0; j < cols; j++) s += Math.exp(x[r * cols + j]! - max);
        for (let j = 0; j < cols; j++) y[r * cols + j] = Math.exp(x[r * cols + j]! - max) / s;
      }
      return y;
    }

    for (const [rows, cols] of [[1, 1], [3, 7], [17, 1], [1, 1000], [64, 129]] as const) {
      it(`${rows}x${cols}`, () => {
        const x = randomData(rows * cols, rows + cols, 5);
        const y = new Float32Array(x.length);
        be.softmax({ x, y, rows, cols });
        expectClose(y, naiveSoftmax(x, rows, cols), 1e-5, 1e-7);
      });
    }

    it('is stable for large inputs and works in place', () => {
      const x = new Float32Array([1000, 1001, 1002, -1000, 0, 1000]);
      be.softmax({ x, y: x, rows: 2, cols: 3 });
      expectClose(x, naiveSoftmax(new Float32Array([1000, 1001, 1002, -1000, 0, 1000]), 2, 3), 1e-5, 1e-7);
      expect(x.every(Number.isFinite)).toBe(true);
    });
  });

  describe('layerNorm', () => {
    function naiveLayerNorm(x: Float32Array, g: Float32Array | null, bt: Float32Array | null, rows: number,
      cols: number, eps: number): Float64Array {
      const y = new Float64Array(x.length);
      for (let r = 0; r < rows; r++) {
        const row = Array.from(x.subarray(r * cols, (r + 1) * cols));
        const mean = row.reduce((s, v) => s + v, 0) / cols;
        const v = row.reduce((s, q) => s + (q - mean) ** 2, 0) / cols;
        for (let j = 0; j < cols; j++) {
          y[r * cols + j] = ((row[j]! - mean) / Math.sqrt(v + eps)) * (g ? g[j]! : 1) + (bt ? bt[j]! : 0);
        }
      }
      return y;
    }

    for (const [rows, cols] of [[1, 1], [5, 3], [7, 768], [2, 1031]] as const) {
      for (const affine of ['both', 'gamma', 'beta', 'none'] as const) {
        it(`${rows}x${cols} affine=${affine}`, () => {
          const x = randomData(rows * cols, cols, 3);
          const g = affine === 'both' || affine === 'gamma' ? randomData(cols, 1) : null;
          const bt = affine === 'both' || affine === 'beta' ? randomData(cols, 2) : null;
          const y = new Float32Array(x.length);
          be.layerNorm({ x, weight: g, bias: bt, y, rows, cols, eps: 1e-5 });
          expectClose(y, naiveLayerNorm(x, g, bt, rows, cols, 1e-5), 1e-5, 1e-5);
        });
      }
    }

    it('keeps precision for rows with a large common offset, in place', () => {
      const cols = 512;
      const x = randomData(cols, 5);
      for (let j = 0; j < cols; j++) x[j] = x[j]! + 1e4;
      const want = naiveLayerNorm(x, null, null, 1, cols, 1e-5);
      be.layerNorm({ x, weight: null, bias: null, y: x, rows: 1, cols, eps: 1e-5 });
      expectClose(x, want, 1e-3, 1e-3);
    });
  });

  describe('activations', () => {
    const x = new Float32Array(20001);
    for (let i = 0; i < x.length; i++) x[i] = -10 + i * 0.001;

    it('relu', () => {
      const y = new Float32Array(x.length);
      be.relu({ x, y });
      expect(Array.from(y)).toEqual(Array.from(x, (v) => Math.max(v, 0)));
    });

    it('gelu exact', () => {
      const y = new Float32Array(x.length);
      be.gelu({ x, y, tanhApprox: false });
      expectClose(y, Array.from(x, refGelu), 1e-5, 1e-7);
    });

    it('gelu tanh', () => {
      const y = x.slice();
      be.gelu({ x: y, y, tanhApprox: true });
      expectClose(y, Array.from(x, refGeluTanh), 1e-5, 1e-7);
    });
  });

  describe('binary', () => {
    const ops: [BinaryOp, (p: number, q: number) => number][] = [
      [BinaryOp.Add, (p, q) => p + q],
      [BinaryOp.Sub, (p, q) => p - q],
      [BinaryOp.Mul, (p, q) => p * q],
      [BinaryOp.Div, (p, q) => p / q],
    ];

    /** Reference over index space `shape` with the given element strides. */
    function naiveBinary(f: (p: number, q: number) => number, a: Float32Array, as: number[], b: Float32Array,
      bs: number[], shape: number[]): number[] {
      const size = shape.reduce((p, d) => p * d, 1);
      const out: number[] = [];
      for (let flat = 0; flat < size; flat++) {
        let rem = flat;
        let ia = 0;
        let ib = 0;
        for (let d = shape.length - 1; d >= 0; d--) {
          const i = rem % shape[d]!;
          rem = Math.floor(rem / shape[d]!);
          ia += i * as[d]!;
          ib += i * bs[d]!;
        }
        out.push(Math.fround(f(a[ia]!, b[ib]!)));
      }
      return out;
    }

    const cases: { label: string; shape: number[]; as: number[]; bs: number[]; na: number; nb: number }[] = [
      { label: 'contiguous', shape: [4, 5], as: [5, 1], bs: [5, 1], na: 20, nb: 20 },
      { label: 'row broadcast', shape: [6, 7], as: [7, 1], bs: [0, 1], na: 42, nb: 7 },
      { label: 'column broadcast', shape: [6, 7], as: [7, 1], bs: [1, 0], na: 42, nb: 6 },
      { label: 'scalar b', shape: [3, 4, 5], as: [20, 5, 1], bs: [0, 0, 0], na: 60, nb: 1 },
      { label: 'scalar a', shape: [11], as: [0], bs: [1], na: 1, nb: 11 },
      { label: 'outer product', shape: [3, 4], as: [1, 0], bs: [0, 1], na: 3, nb: 4 },
      { label: 'middle broadcast', shape: [2, 3, 4], as: [12, 4, 1], bs: [4, 0, 1], na: 24, nb: 8 },
      {
        label: '8 dims mixed', shape: [2, 1, 3, 2, 1, 2, 3, 2], as: [72, 0, 24, 12, 0, 6, 2, 1],
        bs: [0, 0, 1, 0, 0, 3, 0, 0], na: 144, nb: 6,
      },
      { label: 'empty', shape: [0, 3], as: [3, 1], bs: [0, 1], na: 0, nb: 3 },
    ];
    for (const c of cases) {
      it(c.label, () => {
        const a = randomData(c.na, 1, 3);
        const b = randomData(c.nb, 2, 3);
        for (let i = 0; i < b.length; i++) if (b[i] === 0) b[i] = 0.5;
        for (const [op, f] of ops) {
          const size = c.shape.reduce((p, d) => p * d, 1);
          const y = new Float32Array(size);
          be.binary({ op, a, aStrides: c.as, b, bStrides: c.bs, y, shape: c.shape });
          expect(Array.from(y)).toEqual(naiveBinary(f, a, c.as, b, c.bs, c.shape));
        }
      });
    }
  });

  it('embedding gathers rows', () => {
    const [num, dim] = [10, 7];
    const w = randomData(num * dim, 3);
    const ids = new Int32Array([3, 0, 9, 3, 5]);
    const out = new Float32Array(ids.length * dim);
    be.embedding({ weight: w, num, dim, ids, out });
    ids.forEach((id, i) => expect(Array.from(out.subarray(i * dim, (i + 1) * dim))).toEqual(
      Array.from(w.subarray(id * dim, (id + 1) * dim))));
  });

  it('embedding gathers the leading columns of strided rows', () => {
    const [num, cols, dim, ldo] = [6, 7, 3, 5];
    const w = randomData(num * cols, 5);
    const ids = new Int32Array([5, 1, 1]);
    const out = new Float32Array(ids.length * ldo).fill(-9);
    be.embedding({ weight: w, num, dim, ids, out, weightRowStride: cols, outRowStride: ldo });
    ids.forEach((id, i) => {
      expect(Array.from(out.subarray(i * ldo, i * ldo + dim))).toEqual(Array.from(w.subarray(id * cols, id * cols + dim)));
      expect(Array.from(out.subarray(i * ldo + dim, (i + 1) * ldo))).toEqual([-9, -9]);
    });
    expect(() => be.embedding({ weight: w, num, dim, ids, out, weightRowStride: 2 })).toThrow(/'weightRowStride'.*cols/);
    expect(() => be.embedding({ weight: w, num, dim, ids, out: new Float32Array(5), outRowStride: 2 * ldo })).toThrow(/'out' has 5 elements/);
  });

  for (const dims of [[1, 1, 1, 1], [2, 3, 4, 5], [3, 7, 2, 1], [1, 128, 12, 64]] as const) {
    it(`permute0213 ${dims.join('x')}`, () => {
      const [d0, d1, d2, d3] = dims;
      const x = randomData(d0 * d1 * d2 * d3, 4);
      const y = new Float32Array(x.length);
      be.permute0213({ x, y, d0, d1, d2, d3 });
      for (let a = 0; a < d0; a++) {
        for (let b = 0; b < d1; b++) {
          for (let c = 0; c < d2; c++) {
            for (let e = 0; e < d3; e++) {
              const got = y[((a * d2 + c) * d1 + b) * d3 + e];
              const want = x[((a * d1 + b) * d2 + c) * d3 + e];
              if (got !== want) expect.fail(`y[${a},${c},${b},${e}] = ${got}, want ${want}`);
            }
          }
        }
      }
    });
  }
});
