/**
 * The bfloat16 weight switch (Module.useWeightPrecision, ops.linear's
 * weightPrecision): the native AVX512-BF16 path equals the JS backend's
 * emulation (bf16-rounded operands, float32 accumulation), stays close to
 * float32, leaves parameters and the state dict alone, works async and for
 * decoding steps, and fails clearly where the CPU cannot do it.
 */
import { describe, expect, it } from 'vitest';
import * as nn from '../lib/nn';
import * as ops from '../lib/ops';
import { addon } from '../lib/backend/native';
import { roundToBf16 } from '../lib/backend/js/gemm';
import { randn, tensor } from '../lib/tensor';
import { CausalLM } from '../lib/nn/causal-lm';
import { relErr } from './helpers/reference';

const bf16 = addon !== null && addon.info().bf16;

describe('roundToBf16 (the JS reference rounding)', () => {
  it('rounds to nearest, ties to even, keeps specials', () => {
    const x = new Float32Array([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -7, -2.5, 0, -0, Infinity, -Infinity, NaN, 3.4e38, 1e-40]);
    const r = roundToBf16(x);
    expect(r[0]).toBe(1);
    expect(r[1]).toBe(1); // tie → even (1.0)
    expect(r[2]).toBe(1 + 2 ** -6); // tie → even (…1 rounds up)
    expect(r[3]).toBe(1 + 2 ** -7); // exactly representable
    expect(r[4]).toBe(-2.5);
    expect(Object.is(r[6], -0)).toBe(true);
    expect(r[7]).toBe(Infinity);
    expect(r[8]).toBe(-Infinity);
    expect(Number.isNaN(r[9])).toBe(true);
    expect(r[10]).toBe(Infinity); // above bfloat16's largest finite value (3.39e38): rounds to infinity, as the hardware does
    expect(r[11]).toBe(0); // a denormal flushes to zero, as vcvtneps2bf16 does
    expect(Object.is(roundToBf16(new Float32Array([-1e-40]))[0], -0)).toBe(true);
    const bits = new Uint32Array(r.buffer);
    for (const b of bits) expect(b & 0xffff).toBe(0);
  });
});

describe('weight precision: API and errors', () => {
  it('validates its argument and propagates to every descendant', () => {
    const layer = new nn.TransformerEncoderLayer({ dModel: 16, nhead: 2, dimFeedforward: 32 }).eval().useBackend('js');
    expect(() => layer.useWeightPrecision('float16' as never)).toThrowError(TypeError);
    layer.useWeightPrecision('bfloat16');
    for (const [, m] of layer.namedModules()) expect(m.weightPrecision).toBe('bfloat16');
    expect(layer.selfAttn.outProj.weightPrecision).toBe('bfloat16');
    layer.useWeightPrecision('float32');
    expect(layer.linear1.weightPrecision).toBe('float32');
  });

  it('ops.linear: bfloat16 needs cacheWeight, unknown precisions are refused', () => {
    const x = randn([2, 4]);
    const w = randn([3, 4]);
    expect(() => ops.linear(x, w, null, { weightPrecision: 'bfloat16' })).toThrowError(/cacheWeight/);
    expect(() => ops.linear(x, w, null, { weightPrecision: 'fp8' as never, cacheWeight: true })).toThrowError(TypeError);
  });

  it.runIf(bf16)("native: a lowered kernel path makes 'bfloat16' an error, not a silent fallback", () => {
    const a = addon!;
    const isa = a.info().isa;
    try {
      a.setIsa('avx2');
      expect(a.info().bf16).toBe(false);
      const layer = new nn.Linear({ inFeatures: 8, outFeatures: 4 }).useBackend('native');
      expect(() => layer.useWeightPrecision('bfloat16')).toThrowError(/kernel path is 'avx2'/);
      expect(() => a.packWeight(new Float32Array(32), 8, 4, true, 'bfloat16')).toThrowError(RangeError);
    } finally {
      a.setIsa(isa);
    }
  });
});

describe.runIf(bf16)('weight precision: native AVX512-BF16 against the JS emulation', () => {
  it('Linear and the encoder layer match the emulation and stay near float32; parameters untouched', () => {
    nn.manualSeed(4);
    const layer = new nn.TransformerEncoderLayer({ dModel: 64, nhead: 4, dimFeedforward: 160, activation: 'gelu' }).eval().useBackend('native');
    const before = layer.stateDict();
    const snapshot = Object.fromEntries(Object.entries(before).map(([k, t]) => [k, Float32Array.from(t.data)]));
    for (const [s, n] of [[1, 1], [5, 3], [37, 2]] as const) {
      const x = randn([s, n, 64], { seed: s });
      const f32 = layer.useWeightPrecision('float32').forward(x);
      layer.useWeightPrecision('bfloat16');
      const native = layer.forward(x);
      const emulated = layer.useBackend('js').forward(x);
      layer.useBackend('native');
      const err = relErr(native.data, f32.data);
      expect(err, `bf16 vs f32 s=${s} n=${n}`).toBeGreaterThan(0); // it really ran in bfloat16
      expect(err).toBeLessThan(2e-2);
      // Each GEMM's activations are rounded to bfloat16 as they are packed, so a last-bit float32 difference
      // upstream (another summation order) can move a value across a bfloat16 rounding boundary: across a whole
      // layer native and emulation agree far better than either agrees with float32, not to float32 precision.
      // Single GEMMs, whose inputs are identical, are held to 1e-5 below.
      expect(relErr(native.data, emulated.data), `native vs emulated s=${s} n=${n}`).toBeLessThan(0.1 * err);
    }
    for (const [k, t] of Object.entries(layer.stateDict())) expect(Array.from(t.data), k).toEqual(Array.from(snapshot[k]!));
  });

  it('ops.linear with awkward shapes, bias and activations matches the emulation', () => {
    for (const [m, k, n] of [[1, 3, 5], [2, 17, 33], [9, 64, 48], [130, 95, 200]] as const) {
      const x = randn([m, k], { seed: m + k });
      const w = randn([n, k], { seed: n });
      const b = randn([n], { seed: 7 });
      for (const activation of ['none', 'relu', 'gelu'] as const) {
        const o = { cacheWeight: true, weightPrecision: 'bfloat16', activation } as const;
        const got = ops.linear(x, w, b, { ...o, backend: 'native' });
        const want = ops.linear(x, w, b, { ...o, backend: 'js' });
        expect(relErr(got.data, want.data), `${m}x${k}x${n} ${activation}`).toBeLessThan(1e-5);
      }
    }
  });

  it('forwardAsync and KV-cached decoding run in bfloat16 too', async () => {
    nn.manualSeed(5);
    const layer = new nn.TransformerEncoderLayer({ dModel: 32, nhead: 4, dimFeedforward: 64 }).eval().useBackend('native').useWeightPrecision('bfloat16');
    const x = randn([6, 2, 32], { seed: 1 });
    expect(Array.from((await layer.forwardAsync(x)).data)).toEqual(Array.from(layer.forward(x).data));
    const lm = new CausalLM({ vocabSize: 40, dModel: 32, nhead: 4, numLayers: 2, dimFeedforward: 64, maxLen: 32 }).eval().useBackend('native');
    const prompt = tensor(Int32Array.from([3, 9, 1]), [3], 'int32');
    lm.useWeightPrecision('bfloat16');
    const fast = await lm.generateAsync(prompt, { maxNewTokens: 6 });
    const sync = lm.generate(prompt, { maxNewTokens: 6 });
    expect(Array.from(fast.data)).toEqual(Array.from(sync.data));
    // A one-token step runs the bf16 GEMV (M = 1): its logits match the JS emulation.
    const one = tensor(Int32Array.from([5]), [1], 'int32');
    const logitsN = lm.forwardStep(one, lm.createCache());
    const logitsJ = lm.useBackend('js').forwardStep(one, lm.createCache());
    const f32 = lm.useWeightPrecision('float32').forwardStep(one, lm.createCache());
    const err = relErr(logitsN.data, f32.data);
    expect(err).toBeGreaterThan(0);
    expect(relErr(logitsN.data, logitsJ.data)).toBeLessThan(0.1 * err);
  });
});
