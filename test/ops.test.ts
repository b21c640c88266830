/**
 * The functional API (lib/ops.ts) on every available backend: PyTorch
 * semantics, broadcasting, `out`, zero-size tensors.
 */
import { describe, expect, it } from 'vitest';
import * as ops from '../lib/ops';
import { Tensor, arange, tensor, zeros } from '../lib/tensor';
import { backends, tolerance } from './helpers/backends';
import { expectClose, naiveGemm, randomData, refGelu } from './helpers/reference';

function rnd(shape: number[], seed: number, scale = 1): Tensor<'float32'> {
  return tensor(randomData(shape.reduce((p, d) => p * d, 1), seed, scale), shape);
}

/** Reference batched matmul on explicit (already broadcast) per-batch matrices. */
function refMatmul(a: Tensor<'float32'>, b: Tensor<'float32'>): { c: number[]; mag: number[]; shape: number[] } {
  const aS = a.ndim === 1 ? [1, a.shape[0]!] : a.shape.slice();
  const bS = b.ndim === 1 ? [b.shape[0]!, 1] : b.shape.slice();
  const [m, k] = aS.slice(-2) as [number, number];
  const n = bS[bS.length - 1]!;
  const ba = aS.slice(0, -2);
  const bb = bS.slice(0, -2);
  const nd = Math.max(ba.length, bb.length);
  const pa = [...Array(nd - ba.length).fill(1), ...ba];
  const pb = [...Array(nd - bb.length).fill(1), ...bb];
  const batch = pa.map((d, i) => (d === 1 ? pb[i]! : d));
  const total = batch.reduce((p, d) => p * d, 1);
  const c: number[] = [];
  const mag: number[] = [];
  for (let t = 0; t < total; t++) {
    let rem = t;
    let ia = 0;
    let ib = 0;
    let sa = 1;
    let sb = 1;
    for (let d = nd - 1; d >= 0; d--) {
      const i = rem % batch[d]!;
      rem = Math.floor(rem / batch[d]!);
      ia += (pa[d] === 1 ? 0 : i) * sa;
      ib += (pb[d] === 1 ? 0 : i) * sb;
      sa *= pa[d]!;
      sb *= pb[d]!;
    }
    const r = naiveGemm(a.data, b.data, m, n, k, false, false, ia * m * k, ib * k * n);
    c.push(...r.c);
    mag.push(...r.mag);
  }
  const shape = [...batch];
  if (a.ndim > 1) shape.push(m);
  if (b.ndim > 1) shape.push(n);
  return { c, mag, shape };
}

describe.each(backends)('%s backend ops', (backend) => {
  const opts = { backend } as const;
  const rtol = tolerance[backend];

  describe('matmul', () => {
    const cases: [number[], number[]][] = [
      [[5], [5]],
      [[3, 5], [5]],
      [[5], [5, 4]],
      [[5], [2, 5, 4]],
      [[2, 3, 5], [5]],
      [[1, 1], [1, 1]],
      [[7, 13], [13, 11]],
      [[4, 3, 5], [4, 5, 6]],
      [[4, 3, 5], [5, 6]],
      [[3, 5], [4, 5, 6]],
      [[1, 3, 5], [4, 5, 6]],
      [[2, 1, 3, 5], [1, 4, 5, 6]],
      [[2, 3, 3, 5], [3, 5, 2]],
      [[3, 1, 2, 3], [1, 4, 3, 2]],
      [[6, 1, 2, 3], [6, 3, 4]],
      [[0, 3, 5], [5, 2]],
      [[3, 0], [0, 4]],
    ];
    for (const [sa, sb] of cases) {
      it(`[${sa}] @ [${sb}]`, () => {
        const a = rnd(sa, sa.length * 10 + sa[0]!);
        const b = rnd(sb, sb.length * 100 + sb[0]!);
        const y = ops.matmul(a, b, opts);
        const ref = refMatmul(a, b);
        expect(y.shape).toEqual(ref.shape);
        expectClose(y.data, ref.c, rtol, 1e-7, ref.mag);
      });
    }

    it('transB and alpha compute alpha·a·bᵀ without a copy', () => {
      const q = rnd([2, 3, 6, 8], 1);
      const k = rnd([2, 3, 5, 8], 2);
      const y = ops.matmul(q, k, { ...opts, transB: true, alpha: 0.25 });
      const ref = refMatmul(q, ops.transpose(k, -1, -2, opts));
      expect(y.shape).toEqual([2, 3, 6, 5]);
      expectClose(y.data, ref.c.map((v) => v * 0.25), rtol, 1e-7, ref.mag.map((v) => v * 0.25));
    });

    it('writes into out', () => {
      const a = rnd([3, 4], 3);
      const b = rnd([4, 2], 4);
      const out = zeros([3, 2]);
      expect(ops.matmul(a, b, { ...opts, out })).toBe(out);
      expectClose(out.data, refMatmul(a, b).c, rtol, 1e-6);
    });
  });

  describe('linear', () => {
    for (const xs of [[7], [5, 7], [2, 3, 7], [0, 7]]) {
      it(`x [${xs}] with and without bias`, () => {
        const x = rnd(xs, xs.length);
        const w = rnd([4, 7], 9);
        const bias = rnd([4], 10);
        const y = ops.linear(x, w, bias, opts);
        const yNoBias = ops.linear(x, w, undefined, opts);
        expect(y.shape).toEqual([...xs.slice(0, -1), 4]);
        const rows = x.size / 7;
        const ref = naiveGemm(x.data, w.data, rows, 4, 7, false, true);
        expectClose(yNoBias.data, ref.c, rtol, 1e-7, ref.mag);
        expectClose(y.data, Array.from(ref.c, (v, i) => v + bias.data[i % 4]!), rtol, 1e-6);
      });
    }

    it('fuses relu / gelu activations', () => {
      const x = rnd([6, 16], 1, 2);
      const w = rnd([9, 16], 2);
      const base = ops.linear(x, w, null, opts);
      expect(Array.from(ops.linear(x, w, null, { ...opts, activation: 'relu' }).data)).toEqual(
        Array.from(ops.relu(base, opts).data));
      expectClose(ops.linear(x, w, null, { ...opts, activation: 'gelu' }).data, Array.from(base.data, refGelu),
        1e-5, 1e-6);
    });
  });

  describe('softmax', () => {
    it('last dim: rows sum to 1, matches the reference', () => {
      const x = rnd([3, 4, 9], 5, 4);
      const y = ops.softmax(x, -1, opts);
      for (let r = 0; r < 12; r++) {
        const row = Array.from(x.data.subarray(r * 9, r * 9 + 9));
        const mx = Math.max(...row);
        const s = row.reduce((p, v) => p + Math.exp(v - mx), 0);
        expectClose(y.data.subarray(r * 9, r * 9 + 9), row.map((v) => Math.exp(v - mx) / s), 1e-5, 1e-7);
      }
    });

    for (const dim of [0, 1, -2]) {
      it(`dim ${dim} equals transposing to the end`, () => {
        const x = rnd([3, 4, 5], 6, 3);
        const d = dim < 0 ? dim + 3 : dim;
        const want = ops.transpose(ops.softmax(ops.transpose(x, d, 2), -1, opts), d, 2);
        const got = ops.softmax(x, dim, opts);
        expect(got.shape).toEqual([3, 4, 5]);
        expectClose(got.data, want.data, 1e-6, 1e-7);
      });
    }

    it('in place via out', () => {
      const x = rnd([2, 5], 7);
      const want = ops.softmax(x, -1, opts);
      ops.softmax(x, -1, { ...opts, out: x });
      expect(Array.from(x.data)).toEqual(Array.from(want.data));
    });
  });

  describe('layerNorm', () => {
    it('normalizes over one or two trailing dims with weight and bias', () => {
      const x = rnd([2, 3, 4], 8, 5);
      for (const ns of [4, [4], [3, 4]] as const) {
        const shape = typeof ns === 'number' ? [ns] : [...ns];
        const cols = shape.reduce((p, d) => p * d, 1);
        const w = rnd(shape, 9);
        const b = rnd(shape, 10);
        const y = ops.layerNorm(x, ns, w, b, 1e-5, opts);
        for (let r = 0; r < x.size / cols; r++) {
          const row = Array.from(x.data.subarray(r * cols, (r + 1) * cols));
          const mean = row.reduce((p, v) => p + v, 0) / cols;
          const v = row.reduce((p, q) => p + (q - mean) ** 2, 0) / cols;
          const want = row.map((q, j) => ((q - mean) / Math.sqrt(v + 1e-5)) * w.data[j]! + b.data[j]!);
          expectClose(y.data.subarray(r * cols, (r + 1) * cols), want, 1e-5, 1e-5);
        }
      }
      const plain = ops.layerNorm(x, 4, null, null, 1e-5, opts);
      const mean = plain.data.subarray(0, 4).reduce((p, v) => p + v, 0) / 4;
      expect(Math.abs(mean)).toBeLessThan(1e-6);
    });
  });

  describe('addLayerNorm', () => {
    it('equals layerNorm(x + residual) bit for bit, with the sum on request and in place', () => {
      const x = rnd([3, 5, 8], 21);
      const r = rnd([3, 5, 8], 22);
      const w = rnd([8], 23);
      const b = rnd([8], 24);
      const sum = ops.add(x, r, opts);
      const want = ops.layerNorm(sum, 8, w, b, 1e-5, opts);
      expect(Array.from(ops.addLayerNorm(x, r, 8, w, b, 1e-5, opts).data)).toEqual(Array.from(want.data));
      const sumOut = zeros([3, 5, 8]);
      const got = ops.addLayerNorm(x, r, [8], w, b, 1e-5, { ...opts, sumOut });
      expect(Array.from(got.data)).toEqual(Array.from(want.data));
      expect(Array.from(sumOut.data)).toEqual(Array.from(sum.data));
      // Over two trailing dims and without affine parameters.
      expect(Array.from(ops.addLayerNorm(x, r, [5, 8], null, null, 1e-5, opts).data)).toEqual(
        Array.from(ops.layerNorm(sum, [5, 8], null, null, 1e-5, opts).data),
      );
      // In place: the sum over the residual and the output over x, as a pre-norm layer does.
      const x2 = x.clone();
      const r2 = r.clone();
      const y = ops.addLayerNorm(x2, r2, 8, w, b, 1e-5, { ...opts, out: x2, sumOut: r2 });
      expect(y).toBe(x2);
      expect(Array.from(x2.data)).toEqual(Array.from(want.data));
      expect(Array.from(r2.data)).toEqual(Array.from(sum.data));
    });

    it('rejects mismatched shapes and overlapping outputs', () => {
      const x = rnd([2, 4], 1);
      expect(() => ops.addLayerNorm(x, rnd([1, 4], 2), 4, null, null, 1e-5, opts)).toThrowError(
        "addLayerNorm: argument 'residual' must have shape [2, 4] (x's shape), got [1, 4]",
      );
      expect(() => ops.addLayerNorm(x, x, 3, null, null, 1e-5, opts)).toThrowError(/'normalizedShape' must match the trailing dims/);
      expect(() => ops.addLayerNorm(x, x, 4, null, null, 1e-5, { ...opts, sumOut: zeros([4, 2]) })).toThrowError(/'sumOut' must have shape \[2, 4\]/);
      const out = zeros([2, 4]);
      expect(() => ops.addLayerNorm(x, x.clone(), 4, null, null, 1e-5, { ...opts, out, sumOut: out })).toThrowError(
        /'sumOut' must not overlap 'out'/,
      );
      expect(() => ops.addLayerNorm(x, x, 4, null, null, 1e-5, { ...opts, sumOut: 'no' as never })).toThrowError(TypeError);
    });
  });

  describe('element-wise', () => {
    it('relu and gelu (exact and tanh)', () => {
      const x = tensor([-3, -1, -0.5, 0, 0.5, 1, 3]);
      expect(ops.relu(x, opts).toArray()).toEqual([0, 0, 0, 0, 0.5, 1, 3]);
      expectClose(ops.gelu(x, opts).data, Array.from(x.data, refGelu), 1e-5, 1e-7);
      const t = ops.gelu(x, { ...opts, approximate: 'tanh' });
      expectClose(t.data, [-0.0036373, -0.1588080, -0.1542859, 0, 0.3457141, 0.8411920, 2.9963627], 1e-5, 1e-6);
      ops.relu(x, { ...opts, out: x });
      expect(x.toArray()).toEqual([0, 0, 0, 0, 0.5, 1, 3]);
    });

    const fns = [
      ['add', ops.add, (p: number, q: number) => p + q],
      ['sub', ops.sub, (p: number, q: number) => p - q],
      ['mul', ops.mul, (p: number, q: number) => p * q],
      ['div', ops.div, (p: number, q: number) => p / q],
    ] as const;
    const shapes: [number[], number[] | 'scalar'][] = [
      [[2, 3], [2, 3]],
      [[2, 3], [3]],
      [[2, 3], [2, 1]],
      [[4, 1, 3], [5, 1]],
      [[3], [2, 4, 3]],
      [[2, 3], 'scalar'],
      [[], [4]],
      [[1, 1, 1, 1, 1, 1, 1, 1, 1, 2], [2]],
      [[0, 3], [3]],
    ];
    for (const [name, f, ref] of fns) {
      for (const [sa, sb] of shapes) {
        it(`${name} [${sa}] with ${sb === 'scalar' ? 'a scalar' : `[${sb}]`}`, () => {
          const a = rnd(sa, 1, 3);
          const b = sb === 'scalar' ? 0.75 : rnd(sb, 2, 3);
          const y = f(a, b, opts);
          // Broadcast reference via explicit index arithmetic.
          const bShape = b instanceof Tensor ? b.shape : [];
          const nd = Math.max(sa.length, bShape.length);
          const pa = [...Array(nd - sa.length).fill(1), ...sa];
          const pb = [...Array(nd - bShape.length).fill(1), ...bShape];
          const shape = pa.map((d, i) => (d === 1 ? pb[i]! : d));
          expect(y.shape).toEqual(shape);
          const want: number[] = [];
          for (let t = 0; t < y.size; t++) {
            let rem = t;
            let ia = 0;
            let ib = 0;
            let sA = 1;
            let sB = 1;
            for (let d = nd - 1; d >= 0; d--) {
              const i = rem % shape[d]!;
              rem = Math.floor(rem / shape[d]!);
              ia += (pa[d] === 1 ? 0 : i) * sA;
              ib += (pb[d] === 1 ? 0 : i) * sB;
              sA *= pa[d]!;
              sB *= pb[d]!;
            }
            want.push(Math.fround(ref(a.data[ia]!, b instanceof Tensor ? b.data[ib]! : Math.fround(b))));
          }
          expectClose(y.data, want, 1e-6, 0);
        });
      }
    }

    it('add in place into a same-shape operand (residual)', () => {
      const x = rnd([3, 4], 1);
      const r = rnd([3, 4], 2);
      const want = Array.from(x.data, (v, i) => Math.fround(v + r.data[i]!));
      expect(ops.add(x, r, { ...opts, out: x })).toBe(x);
      expect(Array.from(x.data)).toEqual(want);
    });
  });

  describe('embedding and layout', () => {
    it('embedding gathers rows for any ids shape', () => {
      const w = rnd([6, 3], 1);
      const ids = tensor([[0, 5], [2, 2]], null, 'int32');
      const y = ops.embedding(ids, w, opts);
      expect(y.shape).toEqual([2, 2, 3]);
      expect(Array.from(y.data.subarray(3, 6))).toEqual(Array.from(w.data.subarray(15, 18)));
      expect(ops.embedding(zeros([0], 'int32'), w, opts).shape).toEqual([0, 3]);
    });

    it('splitHeads / mergeHeads match transposes and round-trip', () => {
      const x = rnd([2, 5, 12], 3);
      const h = ops.splitHeads(x, 3, opts);
      expect(h.shape).toEqual([2, 3, 5, 4]);
      const want = ops.transpose(x.reshape(2, 5, 3, 4), 1, 2);
      expect(Array.from(h.data)).toEqual(Array.from(want.data));
      const back = ops.mergeHeads(h, opts);
      expect(back.shape).toEqual([2, 5, 12]);
      expect(Array.from(back.data)).toEqual(Array.from(x.data));
    });

    it('transpose swaps any two dims, any dtype', () => {
      const x = arange(24).reshape(2, 3, 4);
      const t = ops.transpose(x, 0, 2, opts);
      expect(t.shape).toEqual([4, 3, 2]);
      for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) for (let k = 0; k < 4; k++) {
        expect(t.get(k, j, i)).toBe(x.get(i, j, k));
      }
      const adj = ops.transpose(x, -1, 1, opts);
      expect(adj.shape).toEqual([2, 4, 3]);
      expect(adj.get(1, 3, 2)).toBe(x.get(1, 2, 3));
      const ints = arange(6, undefined, 1, 'int32').reshape(2, 3);
      expect(ops.transpose(ints, 0, 1).toArray()).toEqual([[0, 3], [1, 4], [2, 5]]);
      const bools = tensor([[true, false, false]]);
      expect(ops.transpose(bools, 1, 0).toArray()).toEqual([[true], [false], [false]]);
      expect(ops.transpose(tensor(3), 0, -1).toArray()).toBe(3);
    });
  });
});
