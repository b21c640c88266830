/**
 * The bfloat16 attention switch (scaledDotProductAttention's `precision`,
 * Module.useAttentionPrecision): the native AVX512-BF16 path equals the JS
 * backend's emulation (bf16 q, k, v and probabilities, float32 sums), stays
 * close to float32, keeps masks, causality and NaN rows, is independent of the
 * thread count, and falls back to float32 exactly where it says it does.
 */
import { afterEach, describe, expect, it, beforeAll, afterAll } from 'vitest';
import * as nn from '../lib/nn';
import { addon } from '../lib/backend/native';
import { scaledDotProductAttention } from '../lib/attention';
import { randn, Tensor } from '../lib/tensor';
import { getNumThreads, info, setIsa, setNumThreads } from '../lib/runtime';
import type { AttentionPrecision } from '../lib/backend/backend';
import { relErr } from './helpers/reference';
import { setGradEnabled } from '../lib/autograd/index';

// Inference behaviour (buffer pooling, reduced-precision attention) is that of forwards without an autograd graph:
// parameters require grad (as in PyTorch), so these tests run with grad mode off, as inference code does.
beforeAll(() => setGradEnabled(false));
afterAll(() => setGradEnabled(true));

const bf16 = addon !== null && addon.info().bf16;

interface Case {
  b: number;
  h: number;
  l: number;
  s: number;
  e: number;
  ev: number;
  causal?: boolean;
  mask?: 'float' | 'bool' | 'bool-with-empty-rows';
}

function run(c: Case, backend: 'native' | 'js', precision: AttentionPrecision): Tensor<'float32'> {
  const q = randn([c.b, c.h, c.l, c.e], { seed: 1 + c.l });
  const k = randn([c.b, c.h, c.s, c.e], { seed: 2 + c.s });
  const v = randn([c.b, c.h, c.s, c.ev], { seed: 3 + c.ev });
  let attnMask: Tensor<'float32'> | Tensor<'bool'> | undefined;
  if (c.mask === 'float') attnMask = randn([c.l, c.s], { seed: 4 });
  if (c.mask === 'bool' || c.mask === 'bool-with-empty-rows') {
    // true = may attend; every third key hidden, and (for the second kind) rows 5 and 70 see nothing.
    const m = new Uint8Array(c.b * c.l * c.s);
    for (let i = 0; i < m.length; i++) {
      const row = Math.floor(i / c.s) % c.l;
      m[i] = (i % c.s) % 3 === 1 || (c.mask === 'bool-with-empty-rows' && (row === 5 || row === 70)) ? 0 : 1;
    }
    attnMask = new Tensor(m, [c.b, 1, c.l, c.s], 'bool');
  }
  return scaledDotProductAttention(q, k, v, { isCausal: c.causal ?? false, attnMask, backend, precision });
}

const cases: Case[] = [
  { b: 1, h: 2, l: 100, s: 77, e: 64, ev: 64 },
  { b: 2, h: 3, l: 130, s: 130, e: 33, ev: 40, causal: true }, // odd head dim, dv tail
  { b: 1, h: 1, l: 9, s: 200, e: 64, ev: 100 }, // the fewest queries that take bfloat16
  { b: 1, h: 2, l: 150, s: 1, e: 7, ev: 130 }, // one key
  { b: 1, h: 4, l: 300, s: 300, e: 64, ev: 64, causal: true, mask: 'float' },
  { b: 2, h: 2, l: 97, s: 190, e: 48, ev: 48, mask: 'bool-with-empty-rows' },
  { b: 1, h: 2, l: 200, s: 129, e: 128, ev: 128, causal: true, mask: 'bool' },
];

describe('attention precision: API and errors', () => {
  it('validates the option and the module setting, and propagates to descendants', () => {
    const q = randn([1, 12, 8], { seed: 1 });
    expect(() => scaledDotProductAttention(q, q, q, { precision: 'float16' as never })).toThrowError(TypeError);
    const layer = new nn.TransformerEncoderLayer({ dModel: 16, nhead: 2, dimFeedforward: 32 }).eval().useBackend('js');
    expect(() => layer.useAttentionPrecision('half' as never)).toThrowError(TypeError);
    layer.useAttentionPrecision('bfloat16');
    for (const [, m] of layer.namedModules()) expect(m.attentionPrecision).toBe('bfloat16');
    expect(layer.weightPrecision).toBe('float32'); // independent switches
    layer.useAttentionPrecision('float32');
    expect(layer.selfAttn.attentionPrecision).toBe('float32');
  });

  it.runIf(addon !== null)('the binding refuses unknown precisions with the argument named', () => {
    const a = new Float32Array(16);
    const s = [16, 16, 4] as const;
    const call = (precision: unknown) =>
      addon!.attention({ q: a, k: a, v: a, out: new Float32Array(16), qStrides: s, kStrides: s, vStrides: s, outStrides: s,
        batch: 1, heads: 1, lq: 4, lk: 4, dk: 4, dv: 4, scale: 0.5, masks: [], causal: false, weights: null,
        precision: precision as never });
    expect(() => call('float16')).toThrowError(/precision.*'float32' \| 'bfloat16', got 'float16'/);
    expect(() => call(3)).toThrowError("attnode.attention: argument 'precision' must be 'float32' | 'bfloat16', got number");
    expect(() => call(undefined)).not.toThrow();
  });
});

describe('attention precision: JS emulation', () => {
  it('differs from float32 by bfloat16 rounding only, and not at all where float32 is documented', () => {
    for (const c of cases.slice(0, 3)) {
      const err = relErr(run(c, 'js', 'bfloat16').data, run(c, 'js', 'float32').data);
      expect(err).toBeGreaterThan(1e-4);
      expect(err).toBeLessThan(1e-2);
    }
    // 8 queries or fewer: float32 (the decoding path).
    const few = { b: 1, h: 2, l: 8, s: 90, e: 16, ev: 16 };
    expect(Array.from(run(few, 'js', 'bfloat16').data)).toEqual(Array.from(run(few, 'js', 'float32').data));
  });
});

describe.runIf(bf16)('attention precision: native AVX512-BF16 against the JS emulation', () => {
  const threads = getNumThreads();
  afterEach(() => {
    setNumThreads(threads);
    setIsa(info().native!.detectedIsa);
  });

  it('matches the emulation (masks, causal, tails, empty rows) and stays near float32', () => {
    for (const c of cases) {
      const native = run(c, 'native', 'bfloat16');
      const f32 = run(c, 'native', 'float32');
      const err = relErr(native.data, f32.data);
      expect(err, JSON.stringify(c)).toBeGreaterThan(0); // it really ran in bfloat16
      expect(err, JSON.stringify(c)).toBeLessThan(1e-2);
      // q, k, v are rounded identically; the probabilities are rounded after exp, where float32 last-bit
      // differences (exp polynomial, summation order) can rarely cross a bfloat16 boundary: native and
      // emulation agree far better than either agrees with float32, not to float32 precision.
      expect(relErr(native.data, run(c, 'js', 'bfloat16').data), JSON.stringify(c)).toBeLessThan(0.1 * err);
    }
  });

  it('never reads what a row must not see: NaN values of causally hidden keys, +inf masks on them', () => {
    // lq 19 = 6-row strips 6+6+6+1: strips end on odd key counts, whose last bf16 pair reaches one hidden key.
    const [l, e] = [19, 16];
    const q = randn([1, 1, l, e], { seed: 31 });
    const k = randn([1, 1, l + 2, e], { seed: 32 });
    const v = randn([1, 1, l + 2, e], { seed: 33 });
    for (let d = 0; d < e; d++) v.data[l * e + d] = NaN; // key 19: hidden from every query under causality
    const mask = new Tensor(new Float32Array(l * (l + 2)), [l, l + 2], 'float32');
    for (let i = 0; i < l; i++) mask.data[i * (l + 2) + i + 1] = Infinity; // +inf on the first hidden key of each row
    for (const precision of ['float32', 'bfloat16'] as const) {
      for (const backend of ['native', 'js'] as const) {
        const out = scaledDotProductAttention(q, k, v, { isCausal: true, attnMask: mask, backend, precision });
        // Query l - 1 sees key l - 1 with mask 0 ... and every row stays finite: no -inf + inf, no 0 · NaN.
        expect(out.data.every(Number.isFinite), `${backend} ${precision}`).toBe(true);
      }
    }
  });

  it('gives the same bits on 1 and 2 threads', () => {
    const c = cases[4]!;
    setNumThreads(1);
    const one = run(c, 'native', 'bfloat16');
    setNumThreads(2);
    expect(Array.from(run(c, 'native', 'bfloat16').data)).toEqual(Array.from(one.data));
  });

  it('runs float32 for few queries, for attention weights and on a lowered kernel path', () => {
    const few = { b: 1, h: 2, l: 8, s: 300, e: 64, ev: 64 };
    expect(Array.from(run(few, 'native', 'bfloat16').data)).toEqual(Array.from(run(few, 'native', 'float32').data));
    nn.manualSeed(3);
    const mha = new nn.MultiheadAttention({ embedDim: 32, numHeads: 4 }).useBackend('native');
    const x = randn([20, 1, 32], { seed: 9 });
    const ref = mha.forward(x, x, x, { needWeights: true });
    const got = mha.useAttentionPrecision('bfloat16').forward(x, x, x, { needWeights: true });
    expect(Array.from(got.output.data)).toEqual(Array.from(ref.output.data));
    expect(Array.from(got.weights!.data)).toEqual(Array.from(ref.weights!.data));
    const c = cases[0]!;
    setIsa('avx2');
    expect(Array.from(run(c, 'native', 'bfloat16').data)).toEqual(Array.from(run(c, 'native', 'float32').data));
  });

  it('a Transformer layer with bfloat16 attention matches its emulation, sync and async', async () => {
    nn.manualSeed(6);
    const layer = new nn.TransformerEncoderLayer({ dModel: 64, nhead: 4, dimFeedforward: 128, batchFirst: true }).eval()
      .useBackend('native')
      .useAttentionPrecision('bfloat16');
    const x = randn([2, 70, 64], { seed: 2 });
    const mask = new Tensor(Uint8Array.from({ length: 140 }, (_, i) => (i % 70 > 60 && i >= 70 ? 1 : 0)), [2, 70], 'bool');
    const native = layer.forward(x, { srcKeyPaddingMask: mask });
    expect(Array.from((await layer.forwardAsync(x, { srcKeyPaddingMask: mask })).data)).toEqual(Array.from(native.data));
    const emulated = layer.useBackend('js').forward(x, { srcKeyPaddingMask: mask });
    const f32 = layer.useBackend('native').useAttentionPrecision('float32').forward(x, { srcKeyPaddingMask: mask });
    const err = relErr(native.data, f32.data);
    expect(err).toBeGreaterThan(0);
    expect(err).toBeLessThan(2e-2);
    // q, k and v come from float32 GEMMs whose last bits differ between the backends, and are then
    // rounded to bfloat16: a looser bound than for identical inputs above.
    expect(relErr(native.data, emulated.data)).toBeLessThan(0.25 * err);
  });
});

// The other side of the switch: named as skipped, with why, on CPUs that have AVX512-BF16.
const noBf16Skip = addon === null ? 'no native addon' : bf16 ? 'this CPU has AVX512-BF16; this suite covers CPUs without it' : '';
describe.skipIf(noBf16Skip !== '')(`attention precision without AVX512-BF16${noBf16Skip ? ` (skipped: ${noBf16Skip})` : ''}`, () => {
  it('says why bfloat16 is unavailable', () => {
    const layer = new nn.TransformerEncoderLayer({ dModel: 16, nhead: 2, dimFeedforward: 32 }).eval().useBackend('native');
    expect(() => layer.useAttentionPrecision('bfloat16')).toThrowError(/useAttentionPrecision: 'bfloat16' attention is not available/);
  });
});
