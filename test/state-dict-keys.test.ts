/**
 * State-dict keys beyond snake_case (registerStateKey: BERT's `LayerNorm`, `attention.self`) and what a dict that
 * does not fit is told: counts, the first keys, every shape mismatch side by side, and a hint for the common
 * causes (a prefix to strip, a submodule's dict, a key spelled differently).
 */
import { describe, expect, it } from 'vitest';
import { nn, zeros, type Tensor } from '../lib/index';

/** BERT's attention block under Hugging Face's key names, with camelCase properties. */
class BertSelfAttention extends nn.Module {
  query = new nn.Linear({ inFeatures: 4, outFeatures: 4 });
  key = new nn.Linear({ inFeatures: 4, outFeatures: 4 });
}
class BertAttentionOutput extends nn.Module {
  dense = new nn.Linear({ inFeatures: 4, outFeatures: 4 });
  layerNorm = new nn.LayerNorm({ normalizedShape: 4 });
  constructor() {
    super();
    this.registerStateKey('layerNorm', 'LayerNorm');
  }
}
class BertAttention extends nn.Module {
  selfAttention: BertSelfAttention;
  output = new BertAttentionOutput();
  constructor() {
    super();
    this.registerStateKey('selfAttention', 'self'); // before the assignment works as well
    this.selfAttention = new BertSelfAttention();
  }
}

describe('registerStateKey', () => {
  it('names children and parameters whose PyTorch key is not their snake_case', () => {
    const m = new BertAttention();
    expect(Object.keys(m.stateDict())).toEqual([
      'self.query.weight', 'self.query.bias', 'self.key.weight', 'self.key.bias',
      'output.dense.weight', 'output.dense.bias', 'output.LayerNorm.weight', 'output.LayerNorm.bias',
    ]);
    expect(m.namedParameters().map(([k]) => k)).toEqual(Object.keys(m.stateDict()));
    expect(m.namedModules().map(([k]) => k)).toContain('output.LayerNorm');
    // A dict under those keys loads into the properties.
    const other = new BertAttention();
    other.loadStateDict(m.stateDict());
    expect(other.output.layerNorm.weight).toBe(m.output.layerNorm.weight);
    expect(other.selfAttention.query.weight).toBe(m.selfAttention.query.weight);
  });

  it('works for a parameter too', () => {
    class Scale extends nn.Module {
      gammaValue: Tensor<'float32'> = nn.parameter(zeros([3]));
      constructor() {
        super();
        this.registerStateKey('gammaValue', 'gamma');
      }
    }
    expect(Object.keys(new Scale().stateDict())).toEqual(['gamma']);
  });

  it('refuses an empty or dotted key and a key another property has (TypeError)', () => {
    class Bad extends nn.Module {
      a = new nn.Linear({ inFeatures: 1, outFeatures: 1 });
      layerNorm = new nn.LayerNorm({ normalizedShape: 1 });
      tryKey(property: string, key: string): void {
        this.registerStateKey(property, key);
      }
    }
    const m = new Bad();
    expect(() => m.tryKey('a', '')).toThrowError(new TypeError(`registerStateKey: argument 'key' must be a non-empty name without '.', got ""`));
    expect(() => m.tryKey('a', 'x.y')).toThrowError(/without '\.', got "x\.y"/);
    expect(() => m.tryKey('a', 'layer_norm')).toThrowError(
      new TypeError("registerStateKey: key 'layer_norm' of property 'a' is already the key of property 'layerNorm'"),
    );
  });
});

describe('loadStateDict errors', () => {
  const seed = () => new nn.Transformer({ dModel: 8, nhead: 2, numEncoderLayers: 1, numDecoderLayers: 1, dimFeedforward: 16 });

  it('a prefix to strip: counts, first keys, the hint; consumePrefixInStateDictIfPresent fixes it', () => {
    const m = seed();
    const dict = Object.fromEntries(Object.entries(seed().stateDict()).map(([k, t]) => [`module.${k}`, t]));
    const n = Object.keys(dict).length;
    let msg = '';
    try {
      m.loadStateDict(dict);
    } catch (e) {
      expect(e).toBeInstanceOf(RangeError);
      msg = (e as Error).message;
    }
    const lines = msg.split('\n');
    expect(lines[0]).toBe(`loadStateDict: the state dict does not match Transformer: ${n} missing keys, ${n} unexpected keys`);
    expect(lines[1]).toBe(`  missing keys (${n}): encoder.layers.0.self_attn.in_proj_weight, encoder.layers.0.self_attn.in_proj_bias, ` +
      `encoder.layers.0.self_attn.out_proj.weight, encoder.layers.0.self_attn.out_proj.bias, encoder.layers.0.linear1.weight, … and ${n - 5} more`);
    expect(lines[2]).toMatch(new RegExp(`^  unexpected keys \\(${n}\\): module\\.encoder\\.layers\\.0\\.self_attn\\.in_proj_weight, .*… and ${n - 5} more$`));
    expect(lines[3]).toBe("  hint: every unexpected key is a missing key under the prefix 'module.'; strip it first: " +
      "nn.utils.consumePrefixInStateDictIfPresent(dict, 'module.')");
    expect(lines).toHaveLength(4);
    nn.utils.consumePrefixInStateDictIfPresent(dict, 'module.');
    expect(m.loadStateDict(dict)).toEqual({ missingKeys: [], unexpectedKeys: [] });
  });

  it('a submodule\'s dict: the prefix it lacks, and what is missing besides', () => {
    const m = seed();
    const dict = m.encoder.stateDict();
    expect(() => m.loadStateDict(dict)).toThrowError(
      /hint: \d+ of the missing keys are an unexpected key under the prefix 'encoder\.': the dict holds the submodule 'encoder' alone; load it into that submodule, or add the prefix to its keys; missing besides: decoder\.layers\.0\.self_attn\.in_proj_weight, /,
    );
  });

  it('a key spelled differently: points at registerStateKey', () => {
    class Block extends nn.Module {
      layerNorm = new nn.LayerNorm({ normalizedShape: 2 });
    }
    const m = new Block();
    expect(() => m.loadStateDict({ 'LayerNorm.weight': zeros([2]), 'LayerNorm.bias': zeros([2]) })).toThrowError(
      "hint: 'LayerNorm.weight' in the dict is 'layer_norm.weight' spelled differently (2 such pairs); a key that is not the snake_case of a property is named with registerStateKey(property, key)",
    );
  });

  it('every shape mismatch side by side, also when not strict, and nothing changes', () => {
    const m = new nn.Linear({ inFeatures: 3, outFeatures: 2 });
    const before = m.weight;
    const dict = { weight: zeros([4, 3]), bias: zeros([4]) };
    for (const strict of [true, false]) {
      expect(() => m.loadStateDict(dict, { strict })).toThrowError(new RangeError([
        'loadStateDict: the state dict does not match Linear: 2 size mismatches',
        '  size mismatches (the module expects | the dict has):',
        '    weight  [2, 3] | [4, 3]',
        '    bias    [2]    | [4]',
      ].join('\n')));
    }
    expect(m.weight).toBe(before);
    // Keys and shapes wrong at once: one error with both.
    expect(() => m.loadStateDict({ weight: zeros([4, 3]), extra: zeros([1]) })).toThrowError(
      /1 missing key, 1 unexpected key, 1 size mismatch\n {2}missing keys \(1\): bias\n {2}unexpected keys \(1\): extra\n {2}size mismatches/,
    );
  });
});
