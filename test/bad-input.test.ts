/**
 * The bad-input battery: every input a user can get wrong, in one place, each with the exact error class and the
 * parts of the message that make it actionable (the function, the argument, what was expected, what was given).
 * TypeError = wrong kind of value (not a tensor, wrong dtype, not a number, unknown option); RangeError = right kind,
 * wrong shape or value. Runs on every available backend where a backend is involved.
 *
 * NaN / ±Infinity inputs are not errors: they propagate as in PyTorch (see the last block and test/numerics.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { scaledDotProductAttention } from '../lib/attention';
import { parseSafetensors, serializeSafetensors } from '../lib/io/safetensors';
import * as nn from '../lib/nn';
import * as ops from '../lib/ops';
import { setNumThreads } from '../lib/runtime';
import { Tensor, full, randn, tensor, zeros } from '../lib/tensor';
import { backends } from './helpers/backends';

type ErrorClass = typeof TypeError | typeof RangeError | typeof SyntaxError | typeof Error;

/** Asserts `fn` throws exactly `cls` (not a subclass or a plain Error) and the message contains every fragment. */
function expectThrow(fn: () => unknown, cls: ErrorClass, ...fragments: string[]): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a throw').toBeInstanceOf(Error);
  expect((err as Error).constructor, (err as Error).message).toBe(cls);
  for (const f of fragments) expect((err as Error).message).toContain(f);
}

const f32 = (shape: number[]): Tensor<'float32'> => zeros(shape);
const i32 = (values: number[], shape = [values.length]): Tensor<'int32'> => tensor(new Int32Array(values), shape, 'int32');
const bool = (shape: number[]): Tensor<'bool'> => zeros(shape, 'bool');

describe.each(backends)('bad input (%s backend)', (backend) => {
  const o = { backend } as const;

  describe('non-tensor and wrong-dtype arguments', () => {
    it('a plain array, typed array, null or number where a tensor is expected', () => {
      expectThrow(() => ops.matmul([[1]] as never, f32([1, 1]), o), TypeError, "matmul: argument 'a' must be a Tensor", 'got Array(1)');
      expectThrow(() => ops.relu(new Float32Array(2) as never, o), TypeError, "relu: argument 'x' must be a Tensor", 'Float32Array(2)');
      expectThrow(() => ops.softmax(null as never, -1, o), TypeError, "softmax: argument 'x' must be a Tensor", 'got null');
      expectThrow(() => ops.linear(f32([2, 3]), 3 as never, null, o), TypeError, "linear: argument 'weight' must be a Tensor", 'got 3');
    });

    it('an int32 or bool tensor where float32 is expected', () => {
      expectThrow(() => ops.gelu(i32([1, 2]) as never, o), TypeError, "gelu: argument 'x' must be a float32 Tensor", 'Tensor(int32, [2])');
      expectThrow(() => ops.add(f32([2]), bool([2]) as never, o), TypeError, "add: argument 'b' must be a float32 Tensor", 'Tensor(bool, [2])');
      expectThrow(() => ops.embedding(f32([2]) as never, f32([3, 4]), o), TypeError, "embedding: argument 'ids' must be an int32 Tensor", 'Tensor(float32, [2])');
    });

    it('an options argument that is not an object', () => {
      expectThrow(() => ops.relu(f32([2]), 'js' as never), TypeError, "relu: argument 'opts' must be an options object", '"js"');
    });
  });

  describe('ranks and shapes', () => {
    it('wrong rank', () => {
      expectThrow(() => ops.matmul(f32([]), f32([2]), o), RangeError, "matmul: argument 'a' must be at least 1-D", 'got []');
      expectThrow(() => ops.linear(f32([2, 3]), f32([3]), null, o), RangeError, "linear: argument 'weight' must have shape [out_features, in_features]", 'got [3]');
      expectThrow(() => ops.splitHeads(f32([2, 8]), 2, o), RangeError, "splitHeads: argument 'x' must have shape [batch, seq, embed]", 'got [2, 8]');
      expectThrow(() => ops.mergeHeads(f32([2, 3, 4]), o), RangeError, "mergeHeads: argument 'x' must have shape [batch, heads, seq, head_dim]", 'got [2, 3, 4]');
      expectThrow(() => scaledDotProductAttention(f32([4]), f32([4]), f32([4]), o), RangeError,
        "scaledDotProductAttention: argument 'q' must be 2-D to 4-D", 'got [4]');
    });

    it('mismatched inner dims, broadcasts and out tensors', () => {
      expectThrow(() => ops.matmul(f32([4, 768]), f32([512, 3]), o), RangeError,
        "matmul: argument 'b' must have shape [..., 768, N] matching a's last dim 768, got [512, 3]");
      expectThrow(() => ops.linear(f32([2, 5]), f32([3, 4]), null, o), RangeError, "linear: argument 'x' must have shape [..., 4]", 'got [2, 5]');
      expectThrow(() => ops.linear(f32([2, 4]), f32([3, 4]), f32([4]), o), RangeError, "linear: argument 'bias' must have shape [3]", 'got [4]');
      expectThrow(() => ops.add(f32([2, 3]), f32([4]), o), RangeError, "add: argument 'b' must have a shape broadcastable with [2, 3]", 'got [4]');
      expectThrow(() => ops.relu(f32([2, 3]), { ...o, out: f32([3, 2]) }), RangeError, "relu: argument 'out' must have shape [2, 3]", 'got [3, 2]');
      expectThrow(() => ops.layerNorm(f32([2, 3]), [4], null, null, 1e-5, o), RangeError,
        "layerNorm: argument 'normalizedShape' must match the trailing dims of x [2, 3]", 'got [4]');
      expectThrow(() => ops.splitHeads(f32([1, 2, 6]), 4, o), RangeError, 'divisible by numHeads 4', 'got [1, 2, 6]');
    });

    it('out overlapping an input', () => {
      const x = f32([4, 4]);
      expectThrow(() => ops.matmul(x, x, { ...o, out: x }), RangeError, "matmul: argument 'out' must not overlap input 'a'");
    });

    it('zero-length dimensions are legal and give empty results', () => {
      expect(ops.matmul(f32([0, 3]), f32([3, 5]), o).shape).toEqual([0, 5]);
      expect(ops.matmul(f32([2, 0]), f32([0, 5]), o).toArray()).toEqual([[0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]);
      expect(ops.softmax(f32([0, 7]), -1, o).shape).toEqual([0, 7]);
      expect(ops.layerNorm(f32([0, 4]), 4, null, null, 1e-5, o).shape).toEqual([0, 4]);
      expect(ops.embedding(i32([], [0]), f32([5, 3]), o).shape).toEqual([0, 3]);
      expect(ops.add(f32([3, 0]), f32([1]), o).shape).toEqual([3, 0]);
    });

    it('zero query positions, zero keys or zero batch give an empty attention output', () => {
      expect(scaledDotProductAttention(f32([2, 0, 4]), f32([2, 3, 4]), f32([2, 3, 5]), o).shape).toEqual([2, 0, 5]);
      expect(scaledDotProductAttention(f32([0, 3, 4]), f32([0, 3, 4]), f32([0, 3, 5]), o).shape).toEqual([0, 3, 5]);
      // Several heads and no query rows: MultiheadAttention's strides over no rows at all.
      const m = new nn.MultiheadAttention({ embedDim: 8, numHeads: 2 });
      m.useBackend(backend);
      expect(m.forward(f32([0, 2, 8]), f32([3, 2, 8]), f32([3, 2, 8])).output.shape).toEqual([0, 2, 8]);
    });

    it('shapes with negative, fractional or too many elements', () => {
      expectThrow(() => zeros([-1, 2]), RangeError, "argument 'shape' must have non-negative integer entries (entry 0 is -1)");
      expectThrow(() => zeros([1.5]), RangeError, 'entry 0 is 1.5');
      expectThrow(() => zeros([65536, 65536]), RangeError, 'must have at most 2147483647 elements', '(4294967296)');
      expectThrow(() => f32([6]).reshape([4, -1]), RangeError, 'reshape');
    });
  });

  describe('indices, dims and numbers', () => {
    it('token ids out of range or negative name the position and value', () => {
      const w = f32([10, 4]);
      expectThrow(() => ops.embedding(i32([1, 10]), w, o), RangeError,
        "embedding: argument 'ids' must hold indices in [0, 10) (num_embeddings), got 10 at position 1");
      expectThrow(() => ops.embedding(i32([0, 1, 2, -3], [2, 2]), w, o), RangeError, 'got -3 at position [1, 1]');
      const emb = new nn.Embedding({ numEmbeddings: 5, embeddingDim: 2 });
      emb.useBackend(backend);
      expectThrow(() => emb.forward(i32([5])), RangeError, '[0, 5)', 'got 5 at position 0');
    });

    it('dims out of range, and non-finite or non-number scalars', () => {
      expectThrow(() => ops.softmax(f32([2, 3]), 2, o), RangeError, "softmax: argument 'dim' must be a dim in [-2, 1] for a 2-D tensor, got 2");
      expectThrow(() => ops.softmax(f32([2, 3]), 0.5, o), RangeError, "argument 'dim' must be an integer, got 0.5");
      expectThrow(() => ops.layerNorm(f32([2, 3]), 3, null, null, -1, o), RangeError, "layerNorm: argument 'eps' must be >= 0, got -1");
      expectThrow(() => ops.layerNorm(f32([2, 3]), 3, null, null, NaN, o), RangeError, "layerNorm: argument 'eps' must be finite, got NaN");
      expectThrow(() => ops.matmul(f32([1, 1]), f32([1, 1]), { ...o, alpha: '2' as never }), TypeError, "matmul: argument 'alpha' must be a number");
      expectThrow(() => ops.splitHeads(f32([1, 2, 4]), 0, o), RangeError, "splitHeads: argument 'numHeads' must be >= 1, got 0");
      expectThrow(() => scaledDotProductAttention(f32([2, 4]), f32([2, 4]), f32([2, 4]), { ...o, scale: Infinity }), TypeError,
        "scaledDotProductAttention: option 'scale' must be a finite number, got Infinity");
    });

    it('unknown enum-like option values', () => {
      expectThrow(() => ops.gelu(f32([2]), { ...o, approximate: 'fast' as never }), TypeError, "gelu: argument 'approximate' must be 'none' or 'tanh', got \"fast\"");
      expectThrow(() => ops.linear(f32([1, 2]), f32([2, 2]), null, { ...o, activation: 'swish' as never }), TypeError,
        "linear: argument 'activation' must be 'none', 'relu', 'gelu' or 'gelu_tanh'");
    });
  });

  describe('attention: heads, embedDim, masks', () => {
    const mha = (extra: Record<string, unknown> = {}): nn.MultiheadAttention => {
      const m = new nn.MultiheadAttention({ embedDim: 8, numHeads: 2, ...extra });
      m.useBackend(backend);
      return m;
    };

    it('embedDim not divisible by numHeads; bad numHeads', () => {
      expectThrow(() => new nn.MultiheadAttention({ embedDim: 10, numHeads: 3 }), RangeError, 'embedDim (10) must be divisible by numHeads (3)');
      expectThrow(() => new nn.MultiheadAttention({ embedDim: 8, numHeads: 0 }), RangeError, 'numHeads');
      expectThrow(() => new nn.TransformerEncoderLayer({ dModel: 6, nhead: 4 }).eval(), RangeError, 'divisible');
    });

    it('query of the wrong rank or feature size; key/value batch and length mismatch', () => {
      const m = mha();
      expectThrow(() => m.forward(f32([8]), f32([8]), f32([8])), RangeError, "argument 'query' must be 3-D (batched) or 2-D (unbatched), got shape [8]");
      expectThrow(() => m.forward(f32([3, 2, 6]), f32([3, 2, 8]), f32([3, 2, 8])), RangeError, 'embedDim = 8', 'got shape [3, 2, 6]');
      expectThrow(() => m.forward(f32([3, 2, 8]), f32([3, 2, 6]), f32([3, 2, 8])), RangeError, "argument 'key' must have 8 features (kdim)", 'got shape [3, 2, 6]');
      expectThrow(() => m.forward(f32([3, 2, 8]), f32([4, 3, 8]), f32([4, 3, 8])), RangeError, 'same batch size', '[3, 2, 8]', '[4, 3, 8]');
      expectThrow(() => m.forward(f32([3, 2, 8]), f32([4, 2, 8]), f32([5, 2, 8])), RangeError, 'key and value', '[4, 2, 8]', '[5, 2, 8]');
      expectThrow(() => m.forward(f32([3, 2, 8]), i32([1]) as never, f32([3, 2, 8])), TypeError, "argument 'key' must be a float32 Tensor");
    });

    it('masks of the wrong shape or dtype', () => {
      const m = mha();
      const q = f32([3, 2, 8]);
      const kv = f32([4, 2, 8]);
      expectThrow(() => m.forward(q, kv, kv, { attnMask: bool([4, 3]) }), RangeError, "argument 'attnMask' must have shape [L, S] = [3, 4]", 'got [4, 3]');
      expectThrow(() => m.forward(q, kv, kv, { attnMask: bool([3, 3, 4]) }), RangeError, "argument 'attnMask'", '[4, 3, 4]', 'got [3, 3, 4]');
      expectThrow(() => m.forward(q, kv, kv, { keyPaddingMask: bool([4, 2]) }), RangeError, "argument 'keyPaddingMask' must have shape [batch, S] = [2, 4], got [4, 2]");
      expectThrow(() => m.forward(q, kv, kv, { attnMask: i32([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [3, 4]) as never }), TypeError,
        "argument 'attnMask' must be a bool or float32 Tensor");
      expectThrow(() => scaledDotProductAttention(f32([2, 3, 4]), f32([2, 5, 4]), f32([2, 5, 4]), { ...o, attnMask: bool([3, 4]) }), RangeError,
        "option 'attnMask' of shape [3, 4] does not broadcast to [1, 2, 3, 5]");
    });

    it('unknown options (with a snake_case hint) and non-boolean flags', () => {
      expectThrow(() => new nn.MultiheadAttention({ embed_dim: 8, numHeads: 2 } as never), TypeError,
        "MultiheadAttention: unknown option 'embed_dim' (did you mean 'embedDim'?)");
      expectThrow(() => new nn.Linear({ inFeatures: 2, outFeatures: 2, bais: false } as never), TypeError, "unknown option 'bais'", 'known options:');
      expectThrow(() => mha().forward(f32([1, 1, 8]), f32([1, 1, 8]), f32([1, 1, 8]), { need_weights: false } as never), TypeError,
        "unknown option 'need_weights' (did you mean 'needWeights'?)");
      expectThrow(() => new nn.MultiheadAttention({ embedDim: 8, numHeads: 2, batchFirst: 1 } as never), TypeError,
        "option 'batchFirst' must be a boolean, got number");
      expectThrow(() => new nn.Linear(null as never), TypeError, 'options must be an object, got null');
    });
  });

  describe('state dicts and files', () => {
    it('missing, unexpected, mis-shaped and wrong-dtype keys', () => {
      const lin = new nn.Linear({ inFeatures: 3, outFeatures: 2 });
      const good = lin.stateDict();
      expectThrow(() => lin.loadStateDict({ weight: good.weight! }), RangeError, 'does not match Linear: 1 missing key\n  missing keys (1): bias');
      expectThrow(() => lin.loadStateDict({ ...good, extra: f32([1]) }), RangeError, 'unexpected keys (1): extra');
      expectThrow(() => lin.loadStateDict({ weight: f32([3, 2]), bias: good.bias! }), RangeError,
        "size mismatch for 'weight': expected shape [2, 3], got [3, 2]");
      expectThrow(() => lin.loadStateDict({ weight: good.weight!, bias: i32([1, 2]) as never }), TypeError,
        "'bias' must have dtype float32, got int32");
      expectThrow(() => lin.loadStateDict({ weight: good.weight!, bias: [0, 0] as never }), TypeError, "'bias' must be a Tensor");
      expectThrow(() => lin.loadStateDict(null as never), TypeError, "argument 'dict' must be an object of Tensors, got null");
      // Non-strict: missing/extra keys are reported, not thrown; shapes are still checked.
      expect(lin.loadStateDict({ weight: good.weight!, extra: f32([1]) }, { strict: false })).toEqual({ missingKeys: ['bias'], unexpectedKeys: ['extra'] });
    });

    it('a safetensors file whose dtypes do not fit the model', () => {
      // An I64 tensor loads as int32 and is then refused by a float32 parameter, naming the key.
      const bytes = serializeSafetensors({ weight: tensor(new Int32Array(6), [2, 3], 'int32'), bias: f32([2]) });
      const { tensors } = parseSafetensors(bytes);
      expectThrow(() => new nn.Linear({ inFeatures: 3, outFeatures: 2 }).loadStateDict(tensors), TypeError,
        "'weight' must have dtype float32, got int32");
      const f8 = new TextEncoder().encode('{"w":{"dtype":"F8_E5M2","shape":[1],"data_offsets":[0,1]}}');
      const file = new Uint8Array(8 + f8.length + 1);
      new DataView(file.buffer).setUint32(0, f8.length, true);
      file.set(f8, 8);
      expectThrow(() => parseSafetensors(file), TypeError, "safetensors: tensor 'w': unsupported dtype 'F8_E5M2'");
    });
  });

  describe('NaN and Infinity propagate (no error), as in PyTorch', () => {
    it('element-wise, matmul and softmax', () => {
      expect(ops.relu(tensor([NaN, -Infinity, Infinity]), o).toArray()).toEqual([NaN, 0, Infinity]);
      const y = ops.matmul(tensor([[NaN, 1]]), tensor([[1], [1]]), o);
      expect(Number.isNaN(y.get(0, 0))).toBe(true);
      const s = ops.softmax(tensor([[NaN, 0, 1], [0, Infinity, 1]]), -1, o).toArray() as number[][];
      expect(s[0]!.every((v) => Number.isNaN(v))).toBe(true);
      // A +Inf logit: max - max = Inf - Inf = NaN, as torch.softmax gives.
      expect(s[1]!.every((v) => Number.isNaN(v))).toBe(true);
      expect(ops.div(tensor([1, -1, 0]), 0, o).toArray()).toEqual([Infinity, -Infinity, NaN]);
    });
  });
});

describe('runtime controls', () => {
  it('numThreads 0, huge, fractional or not a number', () => {
    expectThrow(() => setNumThreads(0), RangeError, "setNumThreads: argument 'n' must be an integer in [1, 256], got 0");
    expectThrow(() => setNumThreads(1e6), RangeError, 'got 1000000');
    expectThrow(() => setNumThreads(2.5), RangeError, "argument 'n' must be an integer, got 2.5");
    expectThrow(() => setNumThreads('4' as never), TypeError, "argument 'n' must be an integer, got \"4\"");
  });

  it('a full() of the wrong kind and a tensor() of mismatched length', () => {
    expectThrow(() => full([2], 'x' as never), TypeError, "full: argument 'value' must be a number or boolean");
    expectThrow(() => tensor(new Float32Array(3), [2, 2]), RangeError, "tensor: argument 'shape' must have 3 elements to match data");
    expectThrow(() => new Tensor(new Float64Array(2) as never, [2], 'float32'), TypeError, "Tensor: argument 'data' must be a Float32Array for dtype 'float32'");
    expect(randn([2], { seed: 1 }).shape).toEqual([2]);
  });
});
