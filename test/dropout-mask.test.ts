/**
 * The dropoutMask op (dropout's keep-mask from a counter-based hash, lib/backend/js/random.ts and
 * native/kernels/elementwise/elementwise_random.inc): the hash against values computed independently (Python),
 * the same mask on both backends, every native kernel path and thread count, its statistics, and its checks.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as ops from '../lib/ops';
import { dropoutMask as drawMask } from '../lib/ops/dropout';
import '../lib/autograd/index';
import { Rng, randn } from '../lib/tensor';
import { getBackend } from '../lib/backend/registry';
import { addon } from '../lib/backend/native';
import { dropoutHash, dropoutThreshold } from '../lib/backend/js/random';
import { backends } from './helpers/backends';
import type { DropoutMaskArgs } from '../lib/backend/backend';

/** Bit-equality of two float arrays, without a per-element matcher. */
const sameBits = (a: Float32Array, b: Float32Array): boolean => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength),
  Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

const mask = (backend: 'js' | 'native', n: number, p: number, key0: number, key1: number): Float32Array => {
  const out = new Float32Array(n).fill(NaN);
  getBackend(backend).dropoutMask({ out, p, key0, key1 });
  return out;
};

describe('dropoutHash', () => {
  it('equals an independent implementation of two keyed lowbias32 rounds (Python integers)', () => {
    // M = 2**32 - 1; lb(x): x ^= x >> 16; x = x * 0x7feb352d & M; x ^= x >> 15; x = x * 0x846ca68b & M; x ^= x >> 16
    // h(k0, k1, i) = lb(lb((i * 0x9e3779b9 + k0) & M) ^ k1)
    const idx = [0, 1, 2, 3, 1000, 123456789, 0xffffffff];
    const want = [966695249, 2503483336, 3340525408, 3237055368, 3349256305, 3412165265, 914530857];
    expect(idx.map((i) => dropoutHash(0x12345678, 0x9abcdef0, i))).toEqual(want);
  });

  it('thresholds on the 2^-24 grid of the old uniform(): p = 0.5 → 2^23, p = 0 → 0', () => {
    expect(dropoutThreshold(0.5)).toBe(2 ** 23);
    expect(dropoutThreshold(0)).toBe(0);
    expect(dropoutThreshold(0.1)).toBe(Math.ceil(0.1 * 2 ** 24));
  });
});

describe.each(backends)('dropoutMask (%s backend)', (backend) => {
  it('is 0 or float32(1/(1 − p)) with a dropped fraction near p, and keys decorrelate masks', () => {
    const n = 200_003;
    for (const p of [0.1, 0.5, 0.9]) {
      const m = mask(backend, n, p, 7, 11);
      const scale = Math.fround(1 / (1 - p));
      let dropped = 0;
      let bothDropped = 0;
      let other0 = 0;
      for (let i = 0; i < n; i++) {
        if (m[i] !== 0 && m[i] !== scale) other0++;
        if (m[i] === 0) dropped++;
        if (i > 0 && m[i] === 0 && m[i - 1] === 0) bothDropped++;
      }
      expect(other0).toBe(0);
      // 5 standard deviations of a binomial.
      const sd = Math.sqrt(n * p * (1 - p));
      expect(Math.abs(dropped - n * p)).toBeLessThan(5 * sd);
      // Neighbours independent: pairs both dropped near p².
      expect(Math.abs(bothDropped / (n - 1) - p * p)).toBeLessThan(0.01);
      const other = mask(backend, n, p, 8, 11);
      let same = 0;
      for (let i = 0; i < n; i++) if ((m[i] === 0) === (other[i] === 0)) same++;
      expect(same / n).toBeCloseTo(p * p + (1 - p) * (1 - p), 1);
    }
    expect(mask(backend, 1000, 0, 1, 2).every((v) => v === 1)).toBe(true);
  });

  it('names bad arguments', () => {
    const be = getBackend(backend);
    const ok: DropoutMaskArgs = { out: new Float32Array(4), p: 0.5, key0: 1, key1: 2 };
    for (const p of [1, -0.1, NaN, 2]) expect(() => be.dropoutMask({ ...ok, p })).toThrow(RangeError);
    expect(() => be.dropoutMask({ ...ok, p: 1 })).toThrow(/'p'/);
    for (const key0 of [-1, 2 ** 32, 1.5]) expect(() => be.dropoutMask({ ...ok, key0 })).toThrow(/'key0'/);
    expect(() => be.dropoutMask({ ...ok, key1: -3 })).toThrow(/'key1'/);
    expect(() => be.dropoutMask({ ...ok, out: new Int32Array(4) as unknown as Float32Array })).toThrow(/'out'/);
    expect(() => be.dropoutMask({ ...ok, x: new Float32Array(3) })).toThrow(/'x'.*at least 4/);
    expect(() => be.dropoutMask({ ...ok, x: new Int32Array(4) as unknown as Float32Array })).toThrow(/'x'/);
  });

  it('with x: out = x · mask (bitwise), in place too', () => {
    const n = 5000;
    const x = randn([n], { seed: 4 }).data;
    x[7] = Infinity;
    const m = mask(backend, n, 0.3, 12, 34);
    const want = x.map((v, i) => Math.fround(v * m[i]!));
    const out = new Float32Array(n);
    getBackend(backend).dropoutMask({ out, p: 0.3, key0: 12, key1: 34, x });
    expect(sameBits(out, want)).toBe(true);
    const inPlace = Float32Array.from(x);
    getBackend(backend).dropoutMask({ out: inPlace, p: 0.3, key0: 12, key1: 34, x: inPlace });
    expect(sameBits(inPlace, want)).toBe(true);
  });

  it('ops.dropout: the fused form (contiguous x, mask regenerated in backward) equals x · mask and its gradient g · mask; a strided x takes the same mask', () => {
    const x = randn([40, 30], { seed: 5 }).requiresGrad_();
    const y = ops.dropout(x, 0.4, { generator: new Rng(3), backend });
    expect(y.gradFn?.name).toBe('NativeDropoutBackward');
    // The same generator state gives the mask dropoutMask draws.
    const m = drawMask(x.size, 0.4, new Rng(3), backend);
    expect(sameBits(y.data, x.data.map((v, i) => Math.fround(v * m[i]!)))).toBe(true);
    const g = randn([30, 40], { seed: 6 }).t(); // a strided gradient
    y.backward(g);
    const gc = g.contiguous().data;
    expect(sameBits(x.grad!.data, gc.map((v, i) => Math.fround(v * m[i]!)))).toBe(true);
    // A transposed (non-contiguous) x: the mask in x's row-major element order, through mul.
    const xt = randn([30, 40], { seed: 7 }).t();
    const yt = ops.dropout(xt, 0.4, { generator: new Rng(3), backend });
    const xtc = xt.contiguous().data;
    expect(sameBits(yt.contiguous().data, xtc.map((v, i) => Math.fround(v * m[i]!)))).toBe(true);
  });
});

describe.skipIf(!addon)('dropoutMask: native equals the JS reference on every kernel path and thread count (needs the addon)', () => {
  const threads0 = addon?.getNumThreads() ?? 1;
  const isa0 = addon?.info().isa;
  afterAll(() => {
    if (!addon) return;
    addon.setNumThreads(threads0);
    if (isa0) addon.setIsa(isa0);
  });

  it('bit-identical masks (sizes around the vector widths and above the parallel grain)', () => {
    const isas = (['portable', 'avx2', 'avx512'] as const).filter((isa) => {
      try {
        addon!.setIsa(isa);
        return true;
      } catch {
        return false;
      }
    });
    expect(isas.length).toBeGreaterThan(0);
    for (const n of [1, 15, 16, 17, 63, 1000, 70_001, 300_000]) {
      for (const p of [0.1, 0.5]) {
        const want = mask('js', n, p, 0xdeadbeef, 0x01234567);
        for (const isa of isas) {
          addon!.setIsa(isa);
          for (const t of [1, 2]) {
            addon!.setNumThreads(t);
            expect(sameBits(mask('native', n, p, 0xdeadbeef, 0x01234567), want), `${isa}, ${t} threads, n ${n}, p ${p}`).toBe(true);
          }
        }
      }
    }
  });

  it('ops.dropout draws the same mask on both backends from the same generator state', () => {
    const x = randn([64, 33], { seed: 3 });
    const a = ops.dropout(x, 0.3, { generator: new Rng(9), backend: 'js' });
    const b = ops.dropout(x, 0.3, { generator: new Rng(9), backend: 'native' });
    expect(sameBits(b.contiguous().data, a.contiguous().data)).toBe(true);
    expect(a.data.some((v) => v === 0)).toBe(true);
  });
});
