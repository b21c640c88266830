/**
 * nn.init against PyTorch 1.13's definitions, and every module's default initialisation against PyTorch's
 * reset_parameters, in distribution: sample means, variances and bounds with tolerances of a few standard errors
 * (documented per check), so a wrong fan, gain, bound or scheme fails while the random draws are free to differ
 * from PyTorch's stream.
 */
import { describe, expect, it } from 'vitest';
import * as nn from '../lib/nn';
import { Tensor, tensor, zeros } from '../lib/tensor';
import { backends } from './helpers/backends';
import { getBackend } from '../lib/backend/registry';
import { withContext } from '../lib/context';
import { runAsync } from '../lib/async';

type F32 = Tensor<'float32'>;
const { init } = nn;

function stats(x: ArrayLike<number>): { mean: number; variance: number; maxAbs: number; min: number; max: number } {
  let s = 0;
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < x.length; i++) {
    s += x[i]!;
    min = Math.min(min, x[i]!);
    max = Math.max(max, x[i]!);
  }
  const mean = s / x.length;
  let v = 0;
  for (let i = 0; i < x.length; i++) v += (x[i]! - mean) ** 2;
  return { mean, variance: v / x.length, maxAbs: Math.max(-min, max), min, max };
}

/**
 * U(−b, b): every value within the bound, the extremes reach it (n draws leave a gap of ~2b/n), the variance is
 * b²/3 (relative standard error 3·√(4/45/n) ≈ 0.9/√n; allowed 5 of them) and the mean 0 (within 5 standard errors).
 */
function expectUniform(x: ArrayLike<number>, bound: number, what: string): void {
  const n = x.length;
  const s = stats(x);
  expect(s.maxAbs, `${what}: max |x|`).toBeLessThanOrEqual(bound * (1 + 1e-6));
  expect(s.maxAbs, `${what}: max |x| reaches the bound`).toBeGreaterThan(bound * (1 - 20 / n));
  expect(Math.abs(s.variance / (bound * bound / 3) - 1), `${what}: variance`).toBeLessThan(5 * 0.9 / Math.sqrt(n));
  expect(Math.abs(s.mean), `${what}: mean`).toBeLessThan(5 * bound / Math.sqrt(3 * n));
}

/** N(mean, std²): sample mean within 5 standard errors, variance within 5 of its relative standard errors (√(2/n)). */
function expectNormal(x: ArrayLike<number>, mean: number, std: number, what: string): void {
  const n = x.length;
  const s = stats(x);
  expect(Math.abs(s.mean - mean), `${what}: mean`).toBeLessThan(5 * std / Math.sqrt(n));
  expect(Math.abs(s.variance / (std * std) - 1), `${what}: variance`).toBeLessThan(5 * Math.sqrt(2 / n));
  // A normal's tails: with n ≥ 1e4 draws the largest |x| passes 3σ.
  if (n >= 10_000) expect(s.maxAbs - Math.abs(mean), `${what}: tails`).toBeGreaterThan(3 * std);
}

const big = (): F32 => zeros([200, 300]);

describe('nn.init functions', () => {
  it('calculateGain matches PyTorch', () => {
    expect(init.calculateGain('linear')).toBe(1);
    expect(init.calculateGain('conv2d')).toBe(1);
    expect(init.calculateGain('sigmoid')).toBe(1);
    expect(init.calculateGain('tanh')).toBe(5 / 3);
    expect(init.calculateGain('relu')).toBe(Math.SQRT2);
    expect(init.calculateGain('leaky_relu')).toBe(Math.sqrt(2 / (1 + 0.01 ** 2)));
    expect(init.calculateGain('leaky_relu', 0.2)).toBe(Math.sqrt(2 / 1.04));
    expect(init.calculateGain('leaky_relu', Math.sqrt(5))).toBe(Math.sqrt(1 / 3));
    expect(init.calculateGain('selu')).toBe(0.75);
    expect(() => init.calculateGain('gelu' as nn.init.Nonlinearity)).toThrow(/Unsupported nonlinearity/);
    expect(() => init.calculateGain('leaky_relu', 'x' as unknown as number)).toThrow(/not a valid number/);
  });

  it('fans: dims 1 and 0 times the receptive field; fewer than 2 dims is an error', () => {
    expect(init.calculateFanInAndFanOut(zeros([16, 8, 3, 3]))).toEqual([72, 144]);
    expect(init.calculateFanInAndFanOut(zeros([5, 7]))).toEqual([7, 5]);
    expect(() => init.calculateFanInAndFanOut(zeros([5]))).toThrow(/fewer than 2 dimensions/);
    expect(() => init.xavierUniform_(zeros([5]))).toThrow(RangeError);
  });

  it('uniform_, normal_, constant_, ones_, zeros_', () => {
    const u = init.uniform_(big(), -2, 3);
    const su = stats(u.data);
    expect(su.min).toBeGreaterThanOrEqual(-2);
    expect(su.max).toBeLessThan(3);
    expect(Math.abs(su.mean - 0.5)).toBeLessThan(5 * 5 / Math.sqrt(12 * u.size));
    expectUniform(init.uniform_(big(), -0.7, 0.7).data, 0.7, 'uniform_(-0.7, 0.7)');
    expectNormal(init.normal_(big(), 1, 2).data, 1, 2, 'normal_(1, 2)');
    expectNormal(init.normal_(big()).data, 0, 1, 'normal_()');
    expect(new Set(init.constant_(zeros([7]), 0.25).data)).toEqual(new Set([0.25]));
    expect(Array.from(init.ones_(zeros([3])).data)).toEqual([1, 1, 1]);
    expect(Array.from(init.zeros_(tensor([1, 2])).data)).toEqual([0, 0]);
    expect(() => init.uniform_(big(), 1, 0)).toThrow(RangeError);
    expect(() => init.normal_(big(), 0, -1)).toThrow(/std >= 0/);
    expect(() => init.normal_(zeros([2], 'int32') as unknown as F32)).toThrow(/float32 Tensor/);
  });

  it('xavierUniform_ and xavierNormal_: gain · √(6 or 2 / (fanIn + fanOut))', () => {
    expectUniform(init.xavierUniform_(big()).data, Math.sqrt(6 / 500), 'xavierUniform_');
    expectUniform(init.xavierUniform_(big(), 2).data, 2 * Math.sqrt(6 / 500), 'xavierUniform_ gain 2');
    expectNormal(init.xavierNormal_(big(), 0.5).data, 0, 0.5 * Math.sqrt(2 / 500), 'xavierNormal_ gain 0.5');
    expectUniform(init.xavierUniform_(zeros([40, 20, 3, 3])).data, Math.sqrt(6 / (180 + 360)), 'xavierUniform_ conv');
  });

  it('kaimingUniform_ and kaimingNormal_: modes and nonlinearities', () => {
    // Default: leaky_relu with a = 0 (gain √2), fan_in = 300.
    expectUniform(init.kaimingUniform_(big()).data, Math.SQRT2 * Math.sqrt(3 / 300), 'kaimingUniform_');
    expectUniform(init.kaimingUniform_(big(), { mode: 'fan_out', nonlinearity: 'relu' }).data, Math.SQRT2 * Math.sqrt(3 / 200), 'fan_out relu');
    // nn.Linear's: a = √5 → bound 1/√fanIn.
    expectUniform(init.kaimingUniform_(big(), { a: Math.sqrt(5) }).data, 1 / Math.sqrt(300), 'a = √5');
    expectNormal(init.kaimingNormal_(big(), { a: 0.2, mode: 'fan_out' }).data, 0, Math.sqrt(2 / 1.04) / Math.sqrt(200), 'kaimingNormal_');
    expectNormal(init.kaimingNormal_(big(), { nonlinearity: 'tanh' }).data, 0, (5 / 3) / Math.sqrt(300), 'kaimingNormal_ tanh');
    expect(() => init.kaimingUniform_(big(), { mode: 'fan_avg' as nn.init.FanMode })).toThrow(/Mode "fan_avg" not supported/);
    expect(() => init.kaimingUniform_(big(), { gain: 2 } as unknown as nn.init.KaimingOptions)).toThrow(/unknown option 'gain'/);
    // Zero-element tensors are left alone (PyTorch warns and returns).
    expect(init.kaimingUniform_(zeros([0, 4])).size).toBe(0);
  });

  it('truncNormal_: N(mean, std²) conditioned on [a, b] (trunc_normal_ too)', () => {
    const [mu, sigma, a, b] = [0.5, 2, -1, 3];
    const x = init.truncNormal_(big(), mu, sigma, a, b);
    const s = stats(x.data);
    expect(s.min).toBeGreaterThanOrEqual(a);
    expect(s.max).toBeLessThanOrEqual(b);
    // Moments of the truncated normal.
    const phi = (z: number): number => Math.exp(-z * z / 2) / Math.sqrt(2 * Math.PI);
    const alpha = (a - mu) / sigma;
    const beta = (b - mu) / sigma;
    const cdf = (z: number): number => 0.5 * (1 + erfApprox(z / Math.SQRT2));
    const z = cdf(beta) - cdf(alpha);
    const mean = mu + sigma * (phi(alpha) - phi(beta)) / z;
    const variance = sigma ** 2 * (1 + (alpha * phi(alpha) - beta * phi(beta)) / z - ((phi(alpha) - phi(beta)) / z) ** 2);
    expect(Math.abs(s.mean - mean)).toBeLessThan(5 * Math.sqrt(variance / x.size));
    expect(Math.abs(s.variance / variance - 1)).toBeLessThan(5 * Math.sqrt(2 / x.size));
    expect(init.trunc_normal_).toBe(init.truncNormal_);
    // Defaults: N(0, 1) on [−2, 2]: variance 1 − 2·2φ(2)/(2Φ(2) − 1).
    const d = stats(init.truncNormal_(big()).data);
    expect(d.maxAbs).toBeLessThanOrEqual(2);
    expect(Math.abs(d.variance / (1 - 4 * phi(2) / (2 * cdf(2) - 1)) - 1)).toBeLessThan(5 * Math.sqrt(2 / 60_000));
  });

  it('fills a view through its strides and leaves the rest of the tensor alone', () => {
    const t = zeros([4, 6]);
    init.ones_(t.narrow(1, 2, 3) as F32);
    expect(t.toArray()).toEqual(Array.from({ length: 4 }, () => [0, 0, 1, 1, 1, 0]));
    const v = zeros([300, 200]);
    init.uniform_(v.t() as F32, -1, 1);
    expectUniform(v.data, 1, 'uniform_ through a transpose');
  });

  it('manualSeed makes draws reproducible', () => {
    nn.manualSeed(123);
    const a = init.normal_(zeros([50]));
    nn.manualSeed(123);
    const b = init.normal_(zeros([50]));
    expect(Array.from(a.data)).toEqual(Array.from(b.data));
  });
});

/** erf to ~1e-7 (Abramowitz–Stegun 7.1.26 is too coarse for 5 standard errors at n = 60000; this is W. J. Cody's rational fit's accuracy class via a series). */
function erfApprox(x: number): number {
  // Maclaurin series for |x| ≤ 3 (converges fast; enough terms for 1e-12 here), sign-symmetric.
  const ax = Math.abs(x);
  let term = ax;
  let sum = ax;
  for (let n = 1; n < 80; n++) {
    term *= (-ax * ax) / n;
    sum += term / (2 * n + 1);
  }
  return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
}

describe('default initialisation of every module equals PyTorch\'s in distribution', () => {
  it('Linear: weight and bias from U(±1/√inFeatures) (kaiming_uniform a=√5)', () => {
    nn.manualSeed(1);
    const lin = new nn.Linear({ inFeatures: 300, outFeatures: 400 });
    expectUniform(lin.weight.data, 1 / Math.sqrt(300), 'Linear.weight');
    const b = stats(lin.bias!.data);
    expect(b.maxAbs).toBeLessThanOrEqual(1 / Math.sqrt(300));
    expect(b.maxAbs).toBeGreaterThan(0.9 / Math.sqrt(300));
    expect(Math.abs(b.variance / (1 / 900) - 1)).toBeLessThan(5 * 0.9 / Math.sqrt(400));
    expect(new nn.Linear({ inFeatures: 0, outFeatures: 3 }).bias!.toArray()).toEqual([0, 0, 0]);
  });

  it('Embedding: N(0, 1), the padding row zero', () => {
    nn.manualSeed(2);
    const emb = new nn.Embedding({ numEmbeddings: 1000, embeddingDim: 64, paddingIdx: 3 });
    const rows = Array.from(emb.weight.data).filter((_, i) => Math.floor(i / 64) !== 3);
    expectNormal(rows, 0, 1, 'Embedding.weight');
    expect(Array.from(emb.weight.data.subarray(3 * 64, 4 * 64)).every((v) => v === 0)).toBe(true);
  });

  it('LayerNorm ones and zeros; RMSNorm ones', () => {
    const ln = new nn.LayerNorm({ normalizedShape: [4, 5] });
    expect(new Set(ln.weight!.data)).toEqual(new Set([1]));
    expect(new Set(ln.bias!.data)).toEqual(new Set([0]));
    expect(new Set(new nn.RMSNorm({ normalizedShape: 6 }).weight!.data)).toEqual(new Set([1]));
  });

  it('MultiheadAttention: xavier_uniform_ in_proj, zero biases, out_proj as a Linear; bias_k/bias_v xavier_normal_', () => {
    nn.manualSeed(3);
    const e = 256;
    const mha = new nn.MultiheadAttention({ embedDim: e, numHeads: 8, addBiasKv: true });
    expectUniform(mha.inProjWeight!.data, Math.sqrt(6 / (e + 3 * e)), 'in_proj_weight');
    expect(new Set(mha.inProjBias!.data)).toEqual(new Set([0]));
    expectUniform(mha.outProj.weight.data, 1 / Math.sqrt(e), 'out_proj.weight');
    expect(new Set(mha.outProj.bias!.data)).toEqual(new Set([0]));
    // [1, 1, E]: fanIn = fanOut = E (dims 1 and 0 times the receptive field E), std √(2 / 2E).
    for (const t of [mha.biasK!, mha.biasV!]) {
      const s = stats(t.data);
      expect(Math.abs(s.variance / (1 / e) - 1)).toBeLessThan(5 * Math.sqrt(2 / e));
    }
    const sep = new nn.MultiheadAttention({ embedDim: 64, numHeads: 4, kdim: 32, vdim: 48 });
    expectUniform(sep.qProjWeight!.data, Math.sqrt(6 / 128), 'q_proj_weight');
    expectUniform(sep.kProjWeight!.data, Math.sqrt(6 / 96), 'k_proj_weight');
    expectUniform(sep.vProjWeight!.data, Math.sqrt(6 / 112), 'v_proj_weight');
  });

  it('TransformerEncoderLayer: Linear defaults for the feed-forward, MultiheadAttention\'s for attention', () => {
    nn.manualSeed(4);
    const layer = new nn.TransformerEncoderLayer({ dModel: 64, nhead: 4, dimFeedforward: 256 });
    expectUniform(layer.linear1.weight.data, 1 / 8, 'linear1.weight');
    expectUniform(layer.linear2.weight.data, 1 / 16, 'linear2.weight');
    expectUniform(layer.selfAttn.inProjWeight!.data, Math.sqrt(6 / 256), 'self_attn.in_proj_weight');
  });

  it('stacks start from copies of one layer, as PyTorch\'s deep-copied layers do', () => {
    nn.manualSeed(5);
    const enc = new nn.TransformerEncoder({ layer: { dModel: 32, nhead: 4, dimFeedforward: 64 }, numLayers: 3 });
    const first = enc.layers.at(0).stateDict();
    for (const i of [1, 2]) {
      const other = enc.layers.at(i).stateDict();
      for (const [k, t] of Object.entries(first)) {
        expect(Array.from(other[k]!.data), k).toEqual(Array.from(t.data));
        expect(other[k]!.data).not.toBe(t.data);
      }
    }
    // The copies are parameters of their own: leaves that require grad (a clone in grad mode would have a history).
    const fromLayer = new nn.TransformerDecoder({ layer: new nn.TransformerDecoderLayer({ dModel: 16, nhead: 2, dimFeedforward: 32 }), numLayers: 2 });
    for (const [k, p] of [...enc.namedParameters(), ...fromLayer.namedParameters()]) {
      expect(p.isLeaf, k).toBe(true);
      expect(p.requiresGrad, k).toBe(true);
    }
  });

  it('Transformer: xavier_uniform_ on every matrix with its own fans; vectors as the layers set them', () => {
    nn.manualSeed(6);
    const d = 64;
    const ff = 128;
    const model = new nn.Transformer({ dModel: d, nhead: 4, numEncoderLayers: 2, numDecoderLayers: 2, dimFeedforward: ff });
    const matrices = model.namedParameters().filter(([, p]) => p.ndim > 1);
    expect(matrices.length).toBe(2 * 4 + 2 * 6);
    for (const [name, p] of matrices) {
      expectUniform(p.data, Math.sqrt(6 / (p.shape[0]! + p.shape[1]!)), name);
    }
    // Matrices are redrawn per layer; vectors stay equal across layers (Linear bias defaults, LayerNorm ones/zeros).
    const sd = model.stateDict();
    expect(Array.from(sd['encoder.layers.0.linear1.weight']!.data)).not.toEqual(Array.from(sd['encoder.layers.1.linear1.weight']!.data));
    expect(Array.from(sd['encoder.layers.0.linear1.bias']!.data)).toEqual(Array.from(sd['encoder.layers.1.linear1.bias']!.data));
    const bias = stats(sd['decoder.layers.0.linear2.bias']!.data);
    expect(bias.maxAbs).toBeLessThanOrEqual(1 / Math.sqrt(ff));
    for (const [name, t] of Object.entries(sd)) {
      if (/norm\d?\.weight$/.test(name)) expect(new Set(t.data), name).toEqual(new Set([1]));
      if (/norm\d?\.bias$|in_proj_bias$|out_proj\.bias$/.test(name)) expect(new Set(t.data), name).toEqual(new Set([0]));
    }
  });

  it('CausalLM: N(0, 1) embedding, Linear-default head', () => {
    nn.manualSeed(7);
    const lm = new nn.CausalLM({ vocabSize: 500, dModel: 64, nhead: 4, numLayers: 2 });
    expectNormal(lm.embedding.weight.data, 0, 1, 'embedding.weight');
    expectUniform(lm.lmHead.weight.data, 1 / 8, 'lm_head.weight');
  });
});

describe.each(backends)('in-place initialisation on the %s backend', (backend) => {
  it('a forward after an nn.init call uses the new values', () => {
    withContext({ backend: getBackend(backend) }, () => {
      const lin = new nn.Linear({ inFeatures: 16, outFeatures: 8 });
      const x = tensor(new Float32Array(4 * 16).fill(1), [4, 16]);
      lin.forward(x);
      init.zeros_(lin.weight);
      init.constant_(lin.bias!, 0.5);
      expect(new Set(lin.forward(x).data)).toEqual(new Set([0.5]));
    });
  });
});

describe('nn.init inside runAsync', () => {
  if (!backends.includes('native')) {
    it.skip('skipped: the native addon is not built (runAsync records only native calls; npm run build:native)', () => {});
    return;
  }
  it('refuses to write (it would run before the recorded kernels)', async () => {
    await expect(withContext({ backend: getBackend('native') }, () => runAsync(() => init.ones_(zeros([3]))))).rejects.toThrow(/inside runAsync/);
  });
});
