/**
 * Backward of every op modules use, against finite differences on both
 * backends (the PyTorch fixtures of test/grad-parity.test.ts hold the exact
 * values): linear/matmul (views, fused activations), the element-wise and
 * row-wise ops, views, cat, embedding, rotary, head split/merge, attention
 * (masks, causal, grouped-query), the losses; dropout (training/eval,
 * reproducible, gradient = mask); modules in training mode; gradient
 * accumulation through a module; backward recorded inside runAsync; forward
 * scopes keeping a graph's buffers out of the pool.
 */
import { describe, expect, it } from 'vitest';
import { noGrad } from '../lib/autograd/index';
import * as ops from '../lib/ops';
import * as nn from '../lib/nn';
import * as optim from '../lib/optim';
import { Rng, Tensor, randn, tensor } from '../lib/tensor';
import { runAsync } from '../lib/async';
import { addon } from '../lib/backend/native';
import { clearBufferPool, pooledBufferBytes } from '../lib/workspace';
import { backends } from './helpers/backends';
import { GPT2LMHeadModel } from '../lib/models/gpt2';
import { TransformerModel } from '../lib/cli/seed-model';
import { gradcheck } from './helpers/gradcheck';

type F32 = Tensor<'float32'>;
const arr = (t: Tensor | null): number[] => Array.from(t!.contiguous().data);

describe.each(backends)('op gradients against finite differences (%s backend)', (backend) => {
  const be = { backend };
  const total = (t: F32, w?: F32): F32 => ops.sum(w ? ops.mul(t, w, be) : t, null, be);

  it('linear: fused relu/gelu, a transposed batch-first input, a row slice of a weight', () => {
    for (const activation of ['none', 'relu', 'gelu', 'gelu_tanh'] as const) {
      gradcheck(([x, w, b]) => total(ops.linear(x!, w!, b!, { activation, ...be }), randn([2, 3, 5], { seed: 9 })),
        [randn([2, 3, 4], { seed: 1 }), randn([5, 4], { seed: 2 }), randn([5], { seed: 3 })]);
    }
    gradcheck(([x, w]) => total(ops.linear(x!.transpose(0, 1), w!.narrow(0, 1, 3), null, be), randn([2, 3, 3], { seed: 8 })),
      [randn([3, 2, 4], { seed: 4 }), randn([5, 4], { seed: 5 })]);
  });

  it('matmul: broadcast batches, transB, 1-D operands', () => {
    gradcheck(([a, b]) => total(ops.matmul(a!, b!, { transB: true, alpha: 0.5, ...be })), [randn([2, 1, 3, 4], { seed: 1 }), randn([3, 5, 4], { seed: 2 })]);
    gradcheck(([a, b]) => total(ops.matmul(a!, b!, be)), [randn([4], { seed: 3 }), randn([2, 4, 3], { seed: 4 })]);
  });

  it('element-wise activations and siluMul', () => {
    gradcheck(([x]) => total(ops.add(ops.relu(ops.gelu(x!, { approximate: 'tanh', ...be }), be), ops.gelu(x!, be), be), randn([3, 4], { seed: 5 })),
      [randn([3, 4], { seed: 6 })]);
    gradcheck(([g, u]) => total(ops.siluMul(ops.tanh(g!, be), ops.sigmoid(u!, be), be), randn([3, 4], { seed: 7 })),
      [randn([3, 4], { seed: 8 }), randn([3, 4], { seed: 9 })]);
  });

  it('softmax and logSoftmax along any dim; the norms, fused with the residual add', () => {
    gradcheck(([x]) => total(ops.mul(ops.softmax(x!, 1, be), ops.logSoftmax(x!, -1, be), be), randn([2, 3, 4], { seed: 10 })), [randn([2, 3, 4], { seed: 11 })]);
    gradcheck(([x, r, w, b]) => {
      const s = ops.add(x!, 0.5, be);
      const y = ops.addLayerNorm(s, r!, [4], w!, b!, 1e-5, { sumOut: s, ...be });
      return total(ops.mul(y, s, be), randn([3, 4], { seed: 12 }));
    }, [randn([3, 4], { seed: 13 }), randn([3, 4], { seed: 14 }), randn([4], { seed: 15 }), randn([4], { seed: 16 })]);
    gradcheck(([x, w]) => total(ops.rmsNorm(x!.transpose(0, 1), 3, w!, 1e-5, be), randn([4, 2, 3], { seed: 17 })),
      [randn([2, 4, 3], { seed: 18 }), randn([3], { seed: 19 })]);
  });

  it('cat, head split/merge and the transposing copy', () => {
    gradcheck(([a, b]) => total(ops.cat([a!, b!.transpose(0, 1)], 1, be), randn([2, 5, 3], { seed: 20 })),
      [randn([2, 2, 3], { seed: 21 }), randn([3, 2, 3], { seed: 22 })]);
    gradcheck(([x]) => total(ops.transpose(ops.mergeHeads(ops.splitHeads(x!, 2, be), be), 0, 1, be), randn([3, 2, 4], { seed: 23 })),
      [randn([2, 3, 4], { seed: 24 })]);
  });

  it('embedding (paddingIdx gets no gradient)', () => {
    const ids = tensor(new Int32Array([1, 0, 3, 3, 2, 1]), [2, 3], 'int32');
    const w = randn([4, 5], { seed: 25 }).requiresGrad_();
    const g = randn([2, 3, 5], { seed: 26 });
    ops.embedding(ids, w, { paddingIdx: 3, ...be }).backward(g);
    const want = new Array<number>(20).fill(0);
    [1, 0, 3, 3, 2, 1].forEach((id, i) => {
      if (id === 3) return;
      for (let c = 0; c < 5; c++) want[id * 5 + c] += g.data[i * 5 + c]!;
    });
    arr(w.grad).forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 5));
  });

  it('rotary embedding, also written in place', () => {
    const positions = tensor(new Int32Array([0, 3, 7, 1]), [4], 'int32');
    gradcheck(([x]) => total(ops.rotaryEmbedding(x!, { positions, theta: 100, ...be }), randn([1, 4, 2, 6], { seed: 27 })), [randn([1, 4, 2, 6], { seed: 28 })]);
    gradcheck(([x]) => {
      const y = ops.mul(x!, 1, be);
      ops.rotaryEmbedding(y, { positions: 2, interleaved: true, rotaryDim: 4, out: y, ...be });
      return total(y, randn([2, 3, 1, 6], { seed: 29 }));
    }, [randn([2, 3, 1, 6], { seed: 30 })]);
  });

  it('scaledDotProductAttention: float and bool masks, causal, grouped-query heads', () => {
    const mask = randn([3, 4], { seed: 31 });
    gradcheck(([q, k, v]) => total(ops.scaledDotProductAttention(q!, k!, v!, { attnMask: mask, ...be }), randn([2, 2, 3, 5], { seed: 32 })),
      [randn([2, 2, 3, 4], { seed: 33 }), randn([2, 2, 4, 4], { seed: 34 }), randn([2, 2, 4, 5], { seed: 35 })]);
    gradcheck(([q, k, v]) => total(ops.scaledDotProductAttention(q!, k!, v!, { isCausal: true, enableGqa: true, ...be }), randn([1, 4, 3, 2], { seed: 36 })),
      [randn([1, 4, 3, 2], { seed: 37 }), randn([1, 2, 3, 2], { seed: 38 }), randn([1, 2, 3, 2], { seed: 39 })]);
  });

  it('crossEntropy (every reduction, weights, smoothing, [N, C, d]) and mseLoss', () => {
    const t = tensor(new Int32Array([1, -100, 0, 2]), [4], 'int32');
    const w = tensor([0.5, 1, 2]);
    for (const reduction of ['mean', 'sum', 'none'] as const) {
      gradcheck(([x]) => {
        const l = ops.crossEntropy(x!, t, { weight: w, reduction, labelSmoothing: 0.2, ...be });
        return reduction === 'none' ? total(l, tensor([1, 2, 3, 4])) : l;
      }, [randn([4, 3], { seed: 40 })]);
    }
    gradcheck(([x]) => ops.crossEntropy(x!, tensor(new Int32Array([0, 2, 1, 1]), [2, 2], 'int32'), be), [randn([2, 3, 2], { seed: 41 })]);
    gradcheck(([x, y]) => ops.mseLoss(x!, y!, be), [randn([3, 2], { seed: 42 }), randn([3, 2], { seed: 43 })]);
  });

  it('crossEntropy refuses targets that are neither a class nor ignoreIndex, and mismatched shapes, naming them', () => {
    const x = randn([2, 3], { seed: 44 });
    expect(() => ops.crossEntropy(x, tensor(new Int32Array([0, 3]), [2], 'int32'), be)).toThrow(/'target'.*3 at position 1/);
    expect(() => ops.crossEntropy(x, tensor(new Int32Array([0, 1, 2]), [3], 'int32'), be)).toThrow(/'target' must have shape \[2\]/);
    expect(() => ops.crossEntropy(x, tensor([0, 1]) as never, be)).toThrow(TypeError);
    expect(() => ops.crossEntropy(x, tensor(new Int32Array([0, 1]), [2], 'int32'), { reduction: 'avg' as never, ...be })).toThrow(/'reduction'/);
    expect(() => ops.crossEntropy(x, tensor(new Int32Array([0, 1]), [2], 'int32'), { weight: tensor([1, 2]), ...be })).toThrow(/'weight'/);
    // All ignored with 'mean': 0 / 0, NaN as in PyTorch.
    expect(ops.crossEntropy(x, tensor(new Int32Array([-100, -100]), [2], 'int32'), be).item()).toBeNaN();
  });
});

describe('dropout', () => {
  it('zeroes about p of the elements, scales the rest by 1/(1 − p), and is the identity when not training or p = 0', () => {
    const x = tensor(new Float32Array(20000).fill(2));
    const y = ops.dropout(x, 0.25, { generator: new Rng(1) });
    const zeros = arr(y).filter((v) => v === 0).length;
    expect(zeros / 20000).toBeGreaterThan(0.23);
    expect(zeros / 20000).toBeLessThan(0.27);
    expect(arr(y).every((v) => v === 0 || Math.abs(v - 2 / 0.75) < 1e-6)).toBe(true);
    expect(ops.dropout(x, 0.25, { training: false })).toBe(x);
    expect(ops.dropout(x, 0)).toBe(x);
    expect(arr(ops.dropout(tensor([1, 2]), 1))).toEqual([0, 0]);
    expect(() => ops.dropout(x, 1.5)).toThrow(/'p'/);
  });

  it('is reproducible with manualSeed and its gradient is the same mask', () => {
    nn.manualSeed(5);
    const a = ops.dropout(randn([50], { seed: 1 }), 0.5);
    nn.manualSeed(5);
    const x = randn([50], { seed: 1 }).requiresGrad_();
    const b = ops.dropout(x, 0.5);
    expect(arr(b)).toEqual(arr(a));
    b.backward(tensor(new Float32Array(50).fill(1)));
    arr(x.grad).forEach((g, i) => expect(g).toBe(arr(b)[i] === 0 ? 0 : 2));
  });

  it('nn.Dropout follows train/eval', () => {
    const d = new nn.Dropout({ p: 0.5 });
    const x = tensor(new Float32Array(100).fill(1));
    expect(d.training).toBe(true);
    expect(arr(d.forward(x)).some((v) => v === 0)).toBe(true);
    expect(d.eval().forward(x)).toBe(x);
    expect(() => new nn.Dropout({ p: 2 })).toThrow(/'p'/);
    expect(d.stateDict()).toEqual({});
  });

  it('Transformer layers apply dropout only in training mode, reproducibly', () => {
    nn.manualSeed(7);
    const layer = new nn.TransformerEncoderLayer({ dModel: 8, nhead: 2, dimFeedforward: 16, dropout: 0.3 });
    const x = randn([5, 2, 8], { seed: 2 });
    const evalOut = arr(noGrad(() => layer.eval().forward(x)));
    layer.train();
    nn.manualSeed(11);
    const t1 = arr(noGrad(() => layer.forward(x)));
    nn.manualSeed(11);
    const t2 = arr(noGrad(() => layer.forward(x)));
    expect(t1).toEqual(t2);
    expect(t1).not.toEqual(evalOut);
    expect(arr(noGrad(() => layer.eval().forward(x)))).toEqual(evalOut);
    // Attention dropout alone (MultiheadAttention's own option).
    const mha = new nn.MultiheadAttention({ embedDim: 8, numHeads: 2, dropout: 0.5 });
    const a = arr(noGrad(() => mha.forward(x, x, x).output));
    const b = arr(noGrad(() => mha.eval().forward(x, x, x).output));
    expect(a).not.toEqual(b);
  });
});

describe.each(backends)('modules in training (%s backend)', (backend) => {
  it('gradients accumulate across two backward calls until zeroed', () => {
    nn.manualSeed(3);
    const layer = new nn.TransformerDecoderLayer({ dModel: 8, nhead: 2, dimFeedforward: 16, normFirst: true }).eval().useBackend(backend);
    const tgt = randn([3, 2, 8], { seed: 4 });
    const mem = randn([4, 2, 8], { seed: 5 });
    const loss = (): F32 => ops.sum(ops.mul(layer.forward(tgt, mem), layer.forward(tgt, mem)));
    loss().backward();
    const once = layer.parameters().map((p) => arr(p.grad));
    loss().backward();
    layer.parameters().forEach((p, i) => arr(p.grad).forEach((g, j) => expect(g).toBeCloseTo(2 * once[i]![j]!, 4)));
    for (const p of layer.parameters()) p.grad = null;
    loss().backward();
    layer.parameters().forEach((p, i) => arr(p.grad).forEach((g, j) => expect(g).toBeCloseTo(once[i]![j]!, 5)));
  });

  it('noGrad forwards record nothing; detach cuts the graph', () => {
    const lin = new nn.Linear({ inFeatures: 3, outFeatures: 2 }).useBackend(backend);
    const x = randn([4, 3], { seed: 6 });
    const y = noGrad(() => lin.forward(x));
    expect(y.requiresGrad).toBe(false);
    const z = lin.forward(x);
    expect(z.gradFn?.name).toBe('LinearBackward');
    const d = z.detach();
    expect(() => ops.sum(ops.mul(d, 2)).backward()).toThrow(/must require grad/);
  });
});

describe.each(backends)('training the seed model end to end (%s backend)', (backend) => {
  it('SGD on CrossEntropyLoss learns to copy a batch of sequences (the loss falls by more than half)', () => {
    nn.manualSeed(42);
    const vocab = 8;
    const model = new TransformerModel(vocab, 16, 2, 1, 1, 32).useBackend(backend);
    model.train();
    const criterion = new nn.CrossEntropyLoss({ ignoreIndex: 0 });
    // src [S, N]; the decoder reads <bos>=1 then the sequence, and must predict the sequence then <eos>=2.
    const seqs = [[3, 4, 5, 6], [7, 3, 5, 4], [6, 6, 7, 3]];
    const src = tensor(new Int32Array(4 * 3).map((_, i) => seqs[i % 3]![Math.floor(i / 3)]!), [4, 3], 'int32');
    const tgtIn = tensor(new Int32Array(5 * 3).map((_, i) => (i < 3 ? 1 : seqs[i % 3]![Math.floor(i / 3) - 1]!)), [5, 3], 'int32');
    const tgtOut = tensor(new Int32Array(5 * 3).map((_, i) => (i >= 12 ? 2 : seqs[i % 3]![Math.floor(i / 3)]!)), [15], 'int32');
    const losses: number[] = [];
    for (let step = 0; step < 40; step++) {
      for (const p of model.parameters()) p.grad = null;
      const out = model.forward(src, tgtIn);
      const loss = criterion.forward(out.reshape(-1, vocab), tgtOut);
      loss.backward();
      noGrad(() => {
        for (const p of model.parameters() as Iterable<Tensor<'float32'>>) ops.add(p, ops.mul(p.grad!, -0.1, { backend }), { out: p, backend });
      });
      losses.push(loss.item());
    }
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[losses.length - 1]!).toBeLessThan(0.5 * losses[0]!);
  });
});

describe('Hugging Face model families', () => {
  it('run inference with grad mode off: their outputs never require grad, their parameters still do', () => {
    const gpt2 = new GPT2LMHeadModel({ vocabSize: 12, hiddenSize: 8, numHiddenLayers: 1, numAttentionHeads: 2, maxPositionEmbeddings: 16 });
    expect(gpt2.parameters().every((p) => p.requiresGrad)).toBe(true);
    const logits = gpt2.forward(tensor(new Int32Array([1, 2, 3]), [1, 3], 'int32')) as F32;
    expect(logits.requiresGrad).toBe(false);
    expect(() => ops.sum(logits).backward()).toThrow(/must require grad/);
  });
});

describe('buffers and async', () => {
  it('a forward that records a graph keeps what its nodes save until the backward has run them; a noGrad one recycles everything', () => {
    nn.manualSeed(8);
    const enc = new nn.TransformerEncoder({ layer: { dModel: 32, nhead: 4, dimFeedforward: 64 }, numLayers: 2 }).train();
    const x = randn([30, 2, 32], { seed: 9 });
    const step = (): number[][] => {
      nn.manualSeed(1); // the same dropout masks every step
      for (const p of enc.parameters()) p.grad = null;
      ops.sum(enc.forward(x)).backward();
      return enc.parameters().map((p) => arr(p.grad));
    };
    clearBufferPool();
    const out = enc.forward(x);
    // Only what no graph node saves came back (the out-projections' and second linears' outputs, read by the fused
    // residual norms only); the rest waits for the backward.
    const afterForward = pooledBufferBytes();
    ops.sum(out).backward();
    expect(pooledBufferBytes()).toBeGreaterThan(afterForward);
    expect(enc.parameters().every((p) => p.grad !== null)).toBe(true);
    // The graph's and the backward's buffers came back, but not the result's or the gradients'.
    const pooled = pooledBufferBytes();
    expect(pooled).toBeGreaterThan(0);
    const kept = new Set<ArrayBufferLike>([out.data.buffer, ...enc.parameters().map((p) => p.grad!.data.buffer)]);
    noGrad(() => enc.forward(x));
    expect(pooledBufferBytes()).toBeGreaterThan(0);
    expect(enc.parameters().every((p) => kept.has(p.grad!.data.buffer))).toBe(true);
    // Steps on recycled buffers compute what the first did.
    const first = step();
    for (let i = 0; i < 3; i++) expect(step()).toEqual(first);
    // A graph kept with retainGraph keeps its buffers: a noGrad forward in between (which takes pooled buffers)
    // does not change what the second backward reads.
    nn.manualSeed(1);
    for (const p of enc.parameters()) p.grad = null;
    const loss = ops.sum(enc.forward(x));
    loss.backward(undefined, { retainGraph: true });
    noGrad(() => enc.forward(randn([30, 2, 32], { seed: 10 })));
    loss.backward();
    enc.parameters().forEach((p, i) => arr(p.grad).forEach((g, j) => expect(g).toBeCloseTo(2 * first[i]![j]!, 4)));
  });

  it('zeroGrad recycles gradients nobody outside the library has read, and never one that was read', () => {
    nn.manualSeed(12);
    const lin = new nn.Linear({ inFeatures: 64, outFeatures: 48 });
    const opt = new optim.SGD(lin.parameters(), { lr: 0.1 });
    const x = randn([16, 64], { seed: 13 });
    const step = (): void => {
      ops.sum(ops.mul(lin.forward(x), lin.forward(x))).backward();
      opt.step();
    };
    clearBufferPool();
    step();
    const before = pooledBufferBytes();
    opt.zeroGrad();
    // The weight's gradient (64·48 floats) went back to the pool.
    expect(pooledBufferBytes() - before).toBeGreaterThanOrEqual(64 * 48 * 4);
    // Read by user code: kept out of the pool, and a later backward leaves its values alone.
    step();
    const held = lin.weight.grad!;
    const copy = Array.from(held.data);
    const pooled = pooledBufferBytes();
    opt.zeroGrad();
    expect(pooledBufferBytes()).toBeLessThan(pooled + 64 * 48 * 4);
    step();
    expect(Array.from(held.data)).toEqual(copy);
    expect(lin.weight.grad).not.toBe(held);
  });

  it.skipIf(!addon)('forward and backward recorded inside runAsync give the synchronous gradients', async () => {
    nn.manualSeed(9);
    const layer = new nn.TransformerEncoderLayer({ dModel: 16, nhead: 4, dimFeedforward: 32, activation: 'gelu' }).eval().useBackend('native');
    const x = randn([6, 2, 16], { seed: 10 });
    const t = tensor(new Int32Array(12).map((_, i) => i % 16), [12], 'int32');
    const step = (): F32 => {
      const loss = ops.crossEntropy(layer.forward(x).reshape(12, 16), t, { labelSmoothing: 0.1 });
      loss.backward();
      return loss;
    };
    const sync = step().item();
    const want = layer.parameters().map((p) => arr(p.grad));
    for (const p of layer.parameters()) p.grad = null;
    const loss = await runAsync(step);
    expect(loss.item()).toBeCloseTo(sync, 6);
    layer.parameters().forEach((p, i) => expect(arr(p.grad)).toEqual(want[i]));
  });
});
