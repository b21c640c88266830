/**
 * Module options as PyTorch accepts them, and every wrong option type refused at construction: a table of modules ×
 * options × wrong values, each a TypeError naming the module and the option. Also the PyTorch configurations the
 * option types accept (a final norm module in a stack, an activation function, kdim/vdim None, custom encoder and
 * decoder).
 */
import { describe, expect, it } from 'vitest';
import { nn, ops, randn, tensor, zeros, type Tensor } from '../lib/index';

type Kind = 'int' | 'number' | 'bool' | 'enum' | 'tensor' | 'shape' | 'layer' | 'norm' | 'activation' | 'module';

/** Values of the wrong type for each kind of option (null stands for Python's None only where PyTorch takes it). */
const WRONG: Record<Kind, unknown[]> = {
  int: ['4', true, [4], {}],
  number: ['0.1', true, [0.1]],
  bool: [1, 'true', {}],
  enum: [1, true],
  tensor: [[1, 2], 'w', new Float32Array(2)],
  shape: ['4', true, [4, '2']],
  layer: [4, 'layer', { dModel: '8', nhead: 2 }],
  norm: [4, 'yes', { eps: '1e-5' }],
  activation: [1, { name: 'relu' }],
  module: [4, 'encoder', {}],
};

const layer = { dModel: 8, nhead: 2, dimFeedforward: 16 };
const LAYER_OPTIONS: Record<string, Kind> = {
  dModel: 'int', nhead: 'int', dimFeedforward: 'int', dropout: 'number', activation: 'activation', layerNormEps: 'number',
  batchFirst: 'bool', normFirst: 'bool', bias: 'bool',
};

/** [module name, constructor, valid options, each option's kind]. */
const MODULES: [string, (o: never) => unknown, Record<string, unknown>, Record<string, Kind>][] = [
  ['Linear', (o) => new nn.Linear(o), { inFeatures: 3, outFeatures: 2 }, { inFeatures: 'int', outFeatures: 'int', bias: 'bool' }],
  ['LayerNorm', (o) => new nn.LayerNorm(o), { normalizedShape: 4 }, { normalizedShape: 'shape', eps: 'number', elementwiseAffine: 'bool', bias: 'bool' }],
  ['RMSNorm', (o) => new nn.RMSNorm(o), { normalizedShape: 4 }, { normalizedShape: 'shape', eps: 'number', elementwiseAffine: 'bool' }],
  ['Embedding', (o) => new nn.Embedding(o), { numEmbeddings: 10, embeddingDim: 4 }, { numEmbeddings: 'int', embeddingDim: 'int', paddingIdx: 'int' }],
  ['MultiheadAttention', (o) => new nn.MultiheadAttention(o), { embedDim: 8, numHeads: 2 }, {
    embedDim: 'int', numHeads: 'int', dropout: 'number', bias: 'bool', addBiasKv: 'bool', addZeroAttn: 'bool', kdim: 'int', vdim: 'int',
    batchFirst: 'bool',
  }],
  ['TransformerEncoderLayer', (o) => new nn.TransformerEncoderLayer(o), layer, LAYER_OPTIONS],
  ['TransformerDecoderLayer', (o) => new nn.TransformerDecoderLayer(o), layer, LAYER_OPTIONS],
  ['TransformerEncoder', (o) => new nn.TransformerEncoder(o), { layer, numLayers: 1 }, {
    layer: 'layer', numLayers: 'int', norm: 'norm', enableNestedTensor: 'bool', maskCheck: 'bool',
  }],
  ['TransformerDecoder', (o) => new nn.TransformerDecoder(o), { layer, numLayers: 1 }, { layer: 'layer', numLayers: 'int', norm: 'norm' }],
  ['Transformer', (o) => new nn.Transformer(o), { ...layer, numEncoderLayers: 1, numDecoderLayers: 1 }, {
    ...LAYER_OPTIONS, numEncoderLayers: 'int', numDecoderLayers: 'int', customEncoder: 'module', customDecoder: 'module',
  }],
  ['PositionalEncoding', (o) => new nn.PositionalEncoding(o), { dModel: 8 }, { dModel: 'int', maxLen: 'int', dropout: 'number', batchFirst: 'bool' }],
  ['Dropout', (o) => new nn.Dropout(o), {}, { p: 'number' }],
  ['CrossEntropyLoss', (o) => new nn.CrossEntropyLoss(o), {}, { weight: 'tensor', ignoreIndex: 'int', reduction: 'enum', labelSmoothing: 'number' }],
  ['MSELoss', (o) => new nn.MSELoss(o), {}, { reduction: 'enum' }],
  ['CausalLM', (o) => new nn.CausalLM(o), { vocabSize: 10, dModel: 8, nhead: 2, numLayers: 1 }, {
    vocabSize: 'int', dModel: 'int', nhead: 'int', numLayers: 'int', dimFeedforward: 'int', activation: 'activation', layerNormEps: 'number',
    normFirst: 'bool', batchFirst: 'bool', maxLen: 'int', bias: 'bool', dropout: 'number',
  }],
];

const cases = MODULES.flatMap(([name, make, valid, kinds]) =>
  Object.entries(kinds).flatMap(([option, kind]) => WRONG[kind].map((value) => [name, option, JSON.stringify(value) ?? String(value), make, valid, value] as const)));

describe('wrong option types throw a TypeError at construction', () => {
  it.each(MODULES.map(([name, make, valid]) => [name, make, valid] as const))('%s: the valid options construct', (_name, make, valid) => {
    expect(() => make(valid as never)).not.toThrow();
  });

  it.each(cases)('%s: option %s = %s', (name, option, _shown, make, valid, value) => {
    let err: unknown = null;
    try {
      make({ ...valid, [option]: value } as never);
    } catch (e) {
      err = e;
    }
    expect(err, `${name} accepted ${option} = ${String(value)}`).toBeInstanceOf(TypeError);
    expect((err as Error).message).toMatch(new RegExp(`^${name}(\\.layer)?: .*'${option}(\\[\\d+\\])?'`));
  });

  it('covers every option each module accepts (the table is complete)', () => {
    for (const [name, make, valid, kinds] of MODULES) {
      let known = '';
      try {
        make({ ...valid, notAnOption: 1 } as never);
      } catch (e) {
        known = /known options: (.*)$/.exec((e as Error).message)?.[1] ?? '';
      }
      expect(known.split(', ').sort(), name).toEqual(Object.keys(kinds).sort());
    }
  });
});

describe('option types accept PyTorch\'s configurations', () => {
  it('TransformerEncoder({ norm: new nn.LayerNorm(...) }) uses that module as the final norm (also RMSNorm)', () => {
    const norm = new nn.LayerNorm({ normalizedShape: 8, eps: 1e-6 });
    const enc = new nn.TransformerEncoder({ layer, numLayers: 1, norm }).eval();
    expect(enc.norm).toBe(norm);
    expect(Object.keys(enc.stateDict())).toContain('norm.weight');
    const x = randn([3, 2, 8], { seed: 1 });
    const withoutNorm = new nn.TransformerEncoder({ layer: enc.layers.at(0) as nn.TransformerEncoderLayer, numLayers: 1 }).eval();
    const expected = ops.layerNorm(withoutNorm.forward(x), [8], norm.weight!, norm.bias!, 1e-6);
    expect(Array.from(enc.forward(x).contiguous().data)).toEqual(Array.from(expected.contiguous().data));
    const rms = new nn.TransformerDecoder({ layer, numLayers: 1, norm: new nn.RMSNorm({ normalizedShape: 8 }) });
    expect(rms.norm).toBeInstanceOf(nn.RMSNorm);
    expect(() => new nn.TransformerEncoder({ layer, numLayers: 1, norm: new nn.LayerNorm({ normalizedShape: 4 }) })).toThrowError(
      new RangeError("TransformerEncoder: option 'norm' normalizes shape [4], but the layers' dModel is 8"),
    );
  });

  it('activation: a function (ops.relu / ops.gelu take the fused path; any other runs after linear1)', () => {
    const x = randn([4, 2, 8], { seed: 2 });
    const named = new nn.TransformerEncoderLayer({ ...layer, activation: 'gelu' }).eval();
    const fn = new nn.TransformerEncoderLayer({ ...layer, activation: ops.gelu }).eval();
    expect(fn.activation).toBe('gelu');
    fn.loadStateDict(named.stateDict());
    expect(Array.from(fn.forward(x).data)).toEqual(Array.from(named.forward(x).data));
    // A custom function: tanh, checked against linear1 → tanh → linear2 written out.
    const custom = new nn.TransformerEncoderLayer({ ...layer, activation: (h: Tensor<'float32'>) => ops.tanh(h), normFirst: true }).eval();
    expect(typeof custom.activation).toBe('function');
    const y = custom.forward(x);
    const l = custom;
    const h1 = ops.add(x, l.selfAttn.forward(l.norm1.forward(x), l.norm1.forward(x), l.norm1.forward(x), { needWeights: false }).output);
    const ff = l.linear2.forward(ops.tanh(l.linear1.forward(l.norm2.forward(h1))));
    const expected = ops.add(h1, ff);
    const got = Array.from(y.contiguous().data);
    Array.from(expected.contiguous().data).forEach((v, i) => expect(got[i]).toBeCloseTo(v, 5));
  });

  it('kdim / vdim null (PyTorch\'s None) mean embedDim', () => {
    const m = new nn.MultiheadAttention({ embedDim: 8, numHeads: 2, kdim: null, vdim: null });
    expect(m.kdim).toBe(8);
    expect(Object.keys(m.stateDict())).toContain('in_proj_weight');
  });

  it('Transformer({ customEncoder, customDecoder }) uses the given stacks', () => {
    const customEncoder = new nn.TransformerEncoder({ layer, numLayers: 2 });
    const customDecoder = new nn.TransformerDecoder({ layer, numLayers: 1, norm: true });
    const t = new nn.Transformer({ ...layer, customEncoder, customDecoder });
    expect(t.encoder).toBe(customEncoder);
    expect(t.decoder).toBe(customDecoder);
    expect(Object.keys(t.stateDict()).some((k) => k.startsWith('encoder.layers.1.'))).toBe(true);
    expect(Object.keys(t.stateDict())).not.toContain('encoder.norm.weight');
    const out = t.forward(randn([3, 1, 8], { seed: 3 }), randn([2, 1, 8], { seed: 4 }));
    expect(out.shape).toEqual([2, 1, 8]);
  });

  it('enableNestedTensor and maskCheck are accepted (PyTorch fast-path switches; results do not depend on them)', () => {
    const enc = new nn.TransformerEncoder({ layer, numLayers: 1, enableNestedTensor: false, maskCheck: true });
    expect(enc.numLayers).toBe(1);
  });

  it('CrossEntropyLoss takes a class-weight tensor', () => {
    expect(() => new nn.CrossEntropyLoss({ weight: tensor([1, 2, 3]) })).not.toThrow();
    expect(zeros([1]).size).toBe(1);
  });
});
