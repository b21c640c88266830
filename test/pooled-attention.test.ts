/**
 * The two ops continuous batching is built on, on every available backend:
 * - pooledAttention: B sequences whose keys and values sit at their own places (kvStarts) and lengths
 *   (kvLengths) of one pool, against scaledDotProductAttention run per sequence on its slice of the pool
 *   (decode rows, the few-rows and streaming paths, grouped-query heads, masks, empty sequences, out views);
 * - indexCopy (Tensor.index_copy_ along dim 0): rows scattered into a strided pool view, recorded in order
 *   inside runAsync;
 * plus the errors of both, at the Tensor level and at the raw backend argument objects.
 */
import { describe, expect, it } from 'vitest';
import { runAsync } from '../lib/async';
import { addon } from '../lib/backend/native';
import { getBackend } from '../lib/backend/registry';
import * as ops from '../lib/ops';
import { Tensor, tensor } from '../lib/tensor';
import { backends } from './helpers/backends';
import { expectClose, randomData } from './helpers/reference';

function rnd(shape: number[], seed: number, scale = 1): Tensor<'float32'> {
  return tensor(randomData(shape.reduce((p, d) => p * d, 1), seed, scale), shape);
}

/** Pool rows [P, 2·kvDim] as the KV pool lays them out (keys then values per position), and its k/v views. */
function pool(p: number, hkv: number, d: number, seed: number): { rows: Tensor<'float32'>; k: Tensor<'float32'>; v: Tensor<'float32'> } {
  const rows = rnd([p, 2 * hkv * d], seed, 2);
  return { rows, k: rows.narrow(-1, 0, hkv * d).view(p, hkv, d), v: rows.narrow(-1, hkv * d, hkv * d).view(p, hkv, d) };
}

/** Sequence b's keys [1, Hkv, len, D] out of a [P, Hkv, D] pool view, as a fresh contiguous tensor. */
function slice(kv: Tensor<'float32'>, start: number, len: number): Tensor<'float32'> {
  return kv.narrow(0, start, len).permute(1, 0, 2).unsqueeze(0).contiguous();
}

describe.each(backends)('pooledAttention on the %s backend', (backend) => {
  const opts = { backend } as const;

  for (const [h, hkv, l, lens] of [
    [4, 4, 1, [5, 1, 17, 9]],   // decode rows, MHA
    [8, 2, 1, [33, 64, 65]],    // decode rows, GQA, key-block edges
    [6, 3, 5, [12, 7]],         // few-rows path
    [4, 1, 13, [40, 70]],       // streaming path, multi-query
  ] as const) {
    it(`H=${h}, Hkv=${hkv}, L=${l}, lengths ${lens.join('/')}: each sequence equals attention over its own pool slice`, () => {
      const d = 16;
      // Sequences placed out of order with gaps between them.
      const starts = Int32Array.from(lens.map((_, i) => 3 + (lens.length - 1 - i) * 80));
      const P = 3 + lens.length * 80;
      const { k, v } = pool(P, hkv, d, 11 + l);
      const q = rnd([lens.length, h, l, d], 12 + h, 2);
      const mask = rnd([lens.length, 1, l, Math.max(...lens)], 13, 1);
      const got = ops.pooledAttention(q, k, v, { ...opts, kvStarts: starts, kvLengths: Int32Array.from(lens), attnMask: mask });
      expect(got.shape).toEqual([lens.length, h, l, d]);
      lens.forEach((len, b) => {
        const want = ops.scaledDotProductAttention(q.narrow(0, b, 1), slice(k, starts[b]!, len), slice(v, starts[b]!, len), {
          ...opts, enableGqa: hkv !== h, attnMask: mask.narrow(0, b, 1).narrow(-1, 0, len),
        });
        expectClose(got.narrow(0, b, 1).contiguous().data, want.data, 2e-6, 2e-6);
      });
    });
  }

  it('takes int32 tensors for starts and lengths, writes into an out view, and gives NaN rows for an empty sequence', () => {
    const { k, v } = pool(20, 2, 8, 3);
    const q = rnd([3, 2, 1, 8], 4);
    const buf = tensor(new Float32Array(3 * 1 * 2 * 8).fill(-7), [3, 1, 2, 8]);
    const out = buf.permute(0, 2, 1, 3);
    const r = ops.pooledAttention(q, k, v, {
      ...opts, kvStarts: tensor(Int32Array.from([0, 5, 12]), [3], 'int32'), kvLengths: tensor(Int32Array.from([5, 0, 8]), [3], 'int32'), out,
    });
    expect(r).toBe(out);
    const row1 = r.narrow(0, 1, 1).contiguous().data;
    expect(Array.from(row1).every(Number.isNaN)).toBe(true);
    const want = ops.scaledDotProductAttention(q.narrow(0, 2, 1), slice(k, 12, 8), slice(v, 12, 8), opts);
    expectClose(r.narrow(0, 2, 1).contiguous().data, want.data, 2e-6, 2e-6);
  });

  it('names the option or argument that is wrong', () => {
    const { k, v } = pool(10, 2, 8, 3);
    const q = rnd([2, 4, 1, 8], 4);
    const ok = { ...opts, kvStarts: Int32Array.from([0, 4]), kvLengths: Int32Array.from([4, 6]) };
    expect(() => ops.pooledAttention(q, k, v, { ...ok, kvLengths: Int32Array.from([4, 7]) })).toThrow(/sequence 1 reads pool positions \[4, 11\), outside the pool's \[0, 10\)/);
    expect(() => ops.pooledAttention(q, k, v, { ...ok, kvStarts: Int32Array.from([0]) })).toThrow(RangeError);
    expect(() => ops.pooledAttention(q, k, v, { ...ok, kvStarts: [0, 4] as unknown as Int32Array })).toThrow(/option 'kvStarts' must be a 1-D int32 Tensor or an Int32Array/);
    expect(() => ops.pooledAttention(q, k, v, { ...ok, kvStarts: Int32Array.from([-1, 4]) })).toThrow(/outside the pool/);
    expect(() => ops.pooledAttention(q.narrow(1, 0, 3), k, v, ok)).toThrow(/q's heads \(3\) must be a multiple of k's and v's \(2\)/);
    expect(() => ops.pooledAttention(q, k.narrow(0, 0, 9), v, ok)).toThrow(/v must have k's positions and heads/);
    expect(() => ops.pooledAttention(q.view(2, 4, 8), k, v, ok)).toThrow(/argument 'q' must be 4-D/);
    expect(() => ops.pooledAttention(q, k, v, null as never)).toThrow(TypeError);
  });
});

describe.each(backends)('indexCopy on the %s backend', (backend) => {
  const opts = { backend } as const;

  it('writes rows of source to the rows index names, in place in a strided view, and leaves every other row alone', () => {
    const base = rnd([12, 10], 1);
    const before = Float32Array.from(base.data);
    const self = base.narrow(1, 2, 6); // rows 10 apart, 6 columns each
    const src = rnd([3, 6], 2);
    const r = ops.indexCopy(self, 0, Int32Array.from([7, 0, 11]), src, opts);
    expect(r).toBe(self);
    for (let row = 0; row < 12; row++) {
      for (let c = 0; c < 10; c++) {
        const i = [7, 0, 11].indexOf(row);
        const want = i >= 0 && c >= 2 && c < 8 ? src.data[i * 6 + c - 2]! : before[row * 10 + c]!;
        expect(base.data[row * 10 + c]).toBe(want);
      }
    }
  });

  it('copies a non-contiguous source first and takes multi-dim rows', () => {
    const self = tensor(new Float32Array(5 * 2 * 3), [5, 2, 3]);
    const src = rnd([3, 2, 2], 3).permute(2, 1, 0).contiguous().permute(2, 1, 0); // [2,2,3] strided
    const srcT = rnd([2, 3, 2], 4).permute(0, 2, 1); // [2, 2, 3], trailing dims transposed
    ops.indexCopy(self, 0, tensor(Int32Array.from([4, 1]), [2], 'int32'), srcT, opts);
    const c = srcT.contiguous().data;
    expect(Array.from(self.data.subarray(4 * 6, 5 * 6))).toEqual(Array.from(c.subarray(0, 6)));
    expect(Array.from(self.data.subarray(6, 12))).toEqual(Array.from(c.subarray(6, 12)));
    expect(src.shape).toEqual([3, 2, 2]);
  });

  it('names the argument that is wrong', () => {
    const self = tensor(new Float32Array(12), [4, 3]);
    const src = rnd([2, 3], 5);
    expect(() => ops.indexCopy(self, 0, Int32Array.from([1, 1]), src, opts)).toThrow(/argument 'index' must hold distinct rows, got 1 twice/);
    expect(() => ops.indexCopy(self, 0, Int32Array.from([1, 4]), src, opts)).toThrow(/argument 'index' must hold rows in \[0, 4\), got 4 at position 1/);
    expect(() => ops.indexCopy(self, 1, Int32Array.from([1, 2]), src, opts)).toThrow(/argument 'dim' must be 0/);
    expect(() => ops.indexCopy(self, 0, Int32Array.from([1]), src, opts)).toThrow(/argument 'source' must have shape \[1, 3\]/);
    expect(() => ops.indexCopy(self, 0, [1, 2] as unknown as Int32Array, src, opts)).toThrow(TypeError);
    expect(() => ops.indexCopy(self.t(), 0, Int32Array.from([1, 2]), rnd([2, 4], 6), opts)).toThrow(/argument 'self' must have contiguous trailing dims/);
    expect(() => ops.indexCopy(self, 0, Int32Array.from([0]), self.narrow(0, 1, 1), opts)).toThrow(/must not overlap self/);
  });
});

describe.skipIf(!addon)('pooled attention and indexCopy in the native binding (skipped: the addon is not built)', () => {
  const a = addon!;
  const base = () => ({
    q: new Float32Array(2 * 8), k: new Float32Array(20 * 8), v: new Float32Array(20 * 8), out: new Float32Array(2 * 8),
    qStrides: [8, 8, 8] as const, kStrides: [0, 8, 8] as const, vStrides: [0, 8, 8] as const, outStrides: [8, 8, 8] as const,
    batch: 2, heads: 1, lq: 1, lk: 6, dk: 8, dv: 8, scale: 1, masks: [], causal: false, weights: null,
    kvStarts: Int32Array.from([0, 14]), kvLengths: Int32Array.from([3, 6]),
  });

  it('checks kvStarts, kvLengths and the pool extent they reach', () => {
    expect(() => a.attention(base())).not.toThrow();
    expect(() => a.attention({ ...base(), kvStarts: Int32Array.from([0, 15]) })).toThrow(/argument 'k' .*kvStarts/);
    expect(() => a.attention({ ...base(), kvLengths: Int32Array.from([3, 7]) })).toThrow(/argument 'kvLengths' must hold lengths in \[0, lk = 6\], got 7 at index 1/);
    expect(() => a.attention({ ...base(), kvStarts: Int32Array.from([-2, 0]) })).toThrow(/argument 'kvStarts' must hold positions >= 0/);
    expect(() => a.attention({ ...base(), kvStarts: Int32Array.from([0]) })).toThrow(/argument 'kvStarts'/);
    expect(() => a.attention({ ...base(), kvStarts: [0, 1] as unknown as Int32Array })).toThrow(/argument 'kvStarts' must be an Int32Array, null or undefined/);
    expect(() => a.attention({ ...base(), weights: new Float32Array(2 * 6) })).toThrow(/argument 'weights' must be null when kvStarts or kvLengths is given/);
  });

  it('a recorded call reads kvStarts / kvLengths when it runs and checks them then: out of bounds fails the call, in bounds is read', async () => {
    const args = base();
    const k = args.k;
    for (let i = 0; i < k.length; i++) k[i] = i % 8 === 0 ? (i / 8 >= 14 ? 1 : 0) : 0;
    args.v.fill(1);
    for (let p = 14; p < 20; p++) args.v.fill(5, p * 8, p * 8 + 8);
    args.q.fill(1);
    args.out.fill(-7);
    const starts = args.kvStarts[1]!;
    // Moved far outside k and v after recording: the call fails instead of reading there, and writes nothing.
    await expect(runAsync(() => {
      getBackend('native').attention(args);
      args.kvStarts[1] = 1_000_000;
    })).rejects.toThrow(/pooledAttention: argument 'kvStarts' must place sequence 1 inside k and v, got start 1000000/);
    expect(Array.from(args.out.subarray(8, 16))).toEqual(new Array(8).fill(-7));
    args.kvStarts[1] = 0;
    await expect(runAsync(() => {
      getBackend('native').attention(args);
      args.kvLengths[1] = 1_000;
    })).rejects.toThrow(/argument 'kvLengths' must hold lengths in \[0, lk = \d+\], got 1000 at index 1/);
    // Moved to another valid place: read there (the rows of value 5 from position 14 on).
    args.kvLengths[1] = base().kvLengths[1]!;
    await runAsync(() => {
      getBackend('native').attention(args);
      args.kvStarts[1] = starts;
    });
    expect(Array.from(args.out.subarray(8, 16))).toEqual(new Array(8).fill(5));
  });

  it('checks indexCopy rows, distinctness and extents', () => {
    const ok = { x: new Float32Array(6), ldx: 3, y: new Float32Array(12), ldy: 3, yRows: 4, rows: 2, cols: 3, index: Int32Array.from([3, 0]) };
    expect(() => a.indexCopy(ok)).not.toThrow();
    expect(() => a.indexCopy({ ...ok, index: Int32Array.from([4, 0]) })).toThrow(/argument 'index' must hold rows in \[0, yRows = 4\), got 4 at position 0/);
    expect(() => a.indexCopy({ ...ok, index: Int32Array.from([2, 2]) })).toThrow(/argument 'index' must hold distinct rows, got 2 twice/);
    expect(() => a.indexCopy({ ...ok, yRows: 5 })).toThrow(/argument 'y'/);
    expect(() => a.indexCopy({ ...ok, ldx: 2 })).toThrow(/argument 'ldx' must be at least cols = 3/);
    expect(() => a.indexCopy({ ...ok, y: ok.x.subarray(0), yRows: 2 })).toThrow(/overlap/);
  });

  it('indexCopy is recorded in order after the GEMM that produces its rows', async () => {
    const x = rnd([3, 4], 7);
    const w = rnd([5, 4], 8);
    const poolRows = tensor(new Float32Array(10 * 5), [10, 5]);
    await runAsync(() => ops.indexCopy(poolRows, 0, Int32Array.from([9, 2, 5]), ops.linear(x, w)));
    const y = ops.linear(x, w);
    expect(Array.from(poolRows.data.subarray(45, 50))).toEqual(Array.from(y.data.subarray(0, 5)));
    expect(Array.from(poolRows.data.subarray(10, 15))).toEqual(Array.from(y.data.subarray(5, 10)));
    expect(Array.from(poolRows.data.subarray(25, 30))).toEqual(Array.from(y.data.subarray(10, 15)));
  });
});
