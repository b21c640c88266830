import { describe, expect, it } from 'vitest';
import * as nn from '../lib/nn';
import { Tensor, randn, tensor, zeros } from '../lib/tensor';
import { backends } from './helpers/backends';

const keys = (m: nn.Module): string[] => Object.keys(m.stateDict());

describe('Module mechanics', () => {
  it('finds children and parameters in assignment order under PyTorch key names', () => {
    class Tiny extends nn.Module {
      embedding = new nn.Embedding({ numEmbeddings: 5, embeddingDim: 4 });
      outProj = new nn.Linear({ inFeatures: 4, outFeatures: 3 });
      scaleFactor = 2; // not a tensor or module: ignored
    }
    const m = new Tiny();
    expect(keys(m)).toEqual(['embedding.weight', 'out_proj.weight', 'out_proj.bias']);
    expect(m.numParameters()).toBe(5 * 4 + 3 * 4 + 3);
    expect(m.namedParameters().map(([k]) => k)).toEqual(keys(m));
  });

  it('MultiheadAttention keys match PyTorch for packed, separate and bias_kv layouts', () => {
    expect(keys(new nn.MultiheadAttention({ embedDim: 8, numHeads: 2 }))).toEqual([
      'in_proj_weight', 'in_proj_bias', 'out_proj.weight', 'out_proj.bias',
    ]);
    expect(keys(new nn.MultiheadAttention({ embedDim: 8, numHeads: 2, kdim: 4, vdim: 6, bias: false }))).toEqual([
      'q_proj_weight', 'k_proj_weight', 'v_proj_weight', 'out_proj.weight',
    ]);
    expect(keys(new nn.MultiheadAttention({ embedDim: 8, numHeads: 2, addBiasKv: true }))).toEqual([
      'in_proj_weight', 'in_proj_bias', 'bias_k', 'bias_v', 'out_proj.weight', 'out_proj.bias',
    ]);
  });

  it('Transformer keys follow encoder.layers.N / decoder.norm naming', () => {
    const t = new nn.Transformer({ dModel: 8, nhead: 2, numEncoderLayers: 1, numDecoderLayers: 1, dimFeedforward: 16 }).eval();
    const k = keys(t);
    expect(k.slice(0, 12)).toEqual([
      'encoder.layers.0.self_attn.in_proj_weight', 'encoder.layers.0.self_attn.in_proj_bias',
      'encoder.layers.0.self_attn.out_proj.weight', 'encoder.layers.0.self_attn.out_proj.bias',
      'encoder.layers.0.linear1.weight', 'encoder.layers.0.linear1.bias',
      'encoder.layers.0.linear2.weight', 'encoder.layers.0.linear2.bias',
      'encoder.layers.0.norm1.weight', 'encoder.layers.0.norm1.bias',
      'encoder.layers.0.norm2.weight', 'encoder.layers.0.norm2.bias',
    ]);
    expect(k).toContain('encoder.norm.weight');
    expect(k).toContain('decoder.layers.0.multihead_attn.in_proj_weight');
    expect(k).toContain('decoder.layers.0.norm3.bias');
    expect(k[k.length - 1]).toBe('decoder.norm.bias');
  });

  it('loadStateDict lists every missing and unexpected key at once', () => {
    const lin = new nn.Linear({ inFeatures: 3, outFeatures: 2 });
    expect(() => lin.loadStateDict({ weight: zeros([2, 3]), extra: zeros([1]), other: zeros([1]) })).toThrowError(
      /1 missing key, 2 unexpected keys\n  missing keys \(1\): bias\n  unexpected keys \(2\): extra, other$/,
    );
    const r = lin.loadStateDict({ weight: zeros([2, 3]), extra: zeros([1]) }, { strict: false });
    expect(r).toEqual({ missingKeys: ['bias'], unexpectedKeys: ['extra'] });
  });

  it('loadStateDict names the key, expected and actual shape on a mismatch, and changes nothing', () => {
    const lin = new nn.Linear({ inFeatures: 3, outFeatures: 2 });
    const before = lin.weight;
    expect(() => lin.loadStateDict({ weight: zeros([2, 3]), bias: zeros([3]) })).toThrowError(
      new RangeError("loadStateDict: size mismatch for 'bias': expected shape [2], got [3]"),
    );
    expect(lin.weight).toBe(before);
    expect(() => lin.loadStateDict({ weight: zeros([2, 3], 'int32'), bias: zeros([2]) })).toThrowError(TypeError);
  });

  it('loads tensors without copying them', () => {
    const lin = new nn.Linear({ inFeatures: 3, outFeatures: 2 });
    const w = randn([2, 3], { seed: 1 });
    lin.loadStateDict({ weight: w, bias: zeros([2]) });
    expect(lin.weight).toBe(w);
  });

  it('rejects unknown or snake_case options with a hint', () => {
    expect(() => new nn.MultiheadAttention({ embedDim: 8, numHeads: 2, batch_first: true } as never)).toThrowError(
      /unknown option 'batch_first' \(did you mean 'batchFirst'\?\)/,
    );
    expect(() => new nn.MultiheadAttention({ embedDim: 10, numHeads: 3 })).toThrowError(RangeError);
  });

  it('ModuleList indexes, iterates and names items 0..n-1', () => {
    const list = new nn.ModuleList([new nn.Linear({ inFeatures: 1, outFeatures: 1 }), new nn.Linear({ inFeatures: 1, outFeatures: 1 })]);
    expect(list.length).toBe(2);
    expect([...list].length).toBe(2);
    expect(keys(list)).toEqual(['0.weight', '0.bias', '1.weight', '1.bias']);
    expect(() => list.at(2)).toThrowError(RangeError);
  });

  it('a stack built from a layer instance copies its weights into every layer, as PyTorch deep-copies', () => {
    const layer = new nn.TransformerEncoderLayer({ dModel: 8, nhead: 2, dimFeedforward: 16 }).eval();
    const enc = new nn.TransformerEncoder({ layer, numLayers: 2 }).eval();
    const w = layer.linear1.weight.data;
    for (const l of enc.layers) {
      expect(Array.from(l.linear1.weight.data)).toEqual(Array.from(w));
      expect(l.linear1.weight.data).not.toBe(w);
    }
    expect(() => new nn.TransformerEncoder({ layer: new nn.Linear({ inFeatures: 1, outFeatures: 1 }) as never, numLayers: 1 }).eval()).toThrowError(TypeError);
  });

  it('the package exposes ops.scaledDotProductAttention as the issue table names it', async () => {
    const ops = await import('../lib/ops');
    expect(typeof ops.scaledDotProductAttention).toBe('function');
  });

  it('generateSquareSubsequentMask is -inf above the diagonal', () => {
    expect(nn.Transformer.generateSquareSubsequentMask(3).toArray()).toEqual([
      [0, -Infinity, -Infinity],
      [0, 0, -Infinity],
      [0, 0, 0],
    ]);
  });

  it('PositionalEncoding matches the sinusoid formula and keeps pe in the state dict', () => {
    const pe = new nn.PositionalEncoding({ dModel: 6, maxLen: 10 }).eval();
    expect(keys(pe)).toEqual(['pe']);
    const out = pe.forward(zeros([4, 2, 6]));
    const pos = 3;
    const i = 1; // dims 2 and 3
    const angle = pos / Math.pow(10000, (2 * i) / 6);
    expect(out.get(pos, 1, 2)).toBeCloseTo(Math.sin(angle), 5);
    expect(out.get(pos, 0, 3)).toBeCloseTo(Math.cos(angle), 5);
  });
});

describe.each(backends)('modules on the %s backend', (backend) => {
  it('MHA: unbatched input equals the batch-of-one result', () => {
    const mha = new nn.MultiheadAttention({ embedDim: 8, numHeads: 2 }).useBackend(backend);
    const x = randn([5, 8], { seed: 3 });
    const a = mha.forward(x, x, x);
    const b = mha.forward(x.reshape([5, 1, 8]), x.reshape([5, 1, 8]), x.reshape([5, 1, 8]));
    expect(a.output.shape).toEqual([5, 8]);
    expect(a.weights!.shape).toEqual([5, 5]);
    expect(Array.from(a.output.data)).toEqual(Array.from(b.output.data));
  });

  it('MHA: batchFirst gives the transposed result of seq-first', () => {
    const a = new nn.MultiheadAttention({ embedDim: 8, numHeads: 4 }).useBackend(backend);
    const b = new nn.MultiheadAttention({ embedDim: 8, numHeads: 4, batchFirst: true }).useBackend(backend);
    b.loadStateDict(a.stateDict());
    const x = randn([3, 2, 8], { seed: 4 }); // [L, N, E]
    const xt = new Tensor(new Float32Array(48), [2, 3, 8], 'float32');
    for (let l = 0; l < 3; l++) for (let n = 0; n < 2; n++) for (let e = 0; e < 8; e++) xt.set([n, l, e], x.get(l, n, e));
    const ya = a.forward(x, x, x, { needWeights: false }).output;
    const yb = b.forward(xt, xt, xt, { needWeights: false }).output;
    for (let l = 0; l < 3; l++) for (let n = 0; n < 2; n++) for (let e = 0; e < 8; e++) {
      expect(yb.get(n, l, e)).toBeCloseTo(ya.get(l, n, e), 5);
    }
  });

  it('MHA: weights rows sum to 1 and masked keys get zero weight', () => {
    const mha = new nn.MultiheadAttention({ embedDim: 4, numHeads: 2 }).useBackend(backend);
    const x = randn([3, 1, 4], { seed: 5 });
    const kpm = tensor([[false, false, true]]);
    const { weights } = mha.forward(x, x, x, { keyPaddingMask: kpm });
    for (let i = 0; i < 3; i++) {
      expect(weights!.get(0, i, 2)).toBe(0);
      expect(weights!.get(0, i, 0) + weights!.get(0, i, 1)).toBeCloseTo(1, 6);
    }
  });

  it('MHA: a wrongly shaped mask is a RangeError naming the expected shapes', () => {
    const mha = new nn.MultiheadAttention({ embedDim: 4, numHeads: 2 }).useBackend(backend);
    const x = randn([3, 2, 4], { seed: 6 });
    expect(() => mha.forward(x, x, x, { attnMask: zeros([3, 4]) })).toThrowError(
      "MultiheadAttention.forward: argument 'attnMask' must have shape [L, S] = [3, 3] or [batch·numHeads, L, S] = [4, 3, 3], got [3, 4]",
    );
    expect(() => mha.forward(x, x, x, { keyPaddingMask: zeros([3, 3]) })).toThrowError(/keyPaddingMask' must have shape \[batch, S\] = \[2, 3\]/);
    expect(() => mha.forward(randn([3, 2, 5]), x, x)).toThrowError(/embedDim = 4/);
  });
});
