/**
 * Memory of training steps: buffers go back to the pool as soon as nothing reads them (lib/workspace.ts,
 * lib/autograd/engine.ts), so a step allocates much less than it uses, and no backward reads a buffer after it went
 * back (checked with a poisoned pool: every buffer handed back is filled with NaN, so a backward reading one it did
 * not save computes NaN instead of silently reading the next op's values).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import * as ops from '../lib/ops';
import * as nn from '../lib/nn';
import * as optim from '../lib/optim';
import { noGrad } from '../lib/autograd/index';
import { Tensor, randn, tensor } from '../lib/tensor';
import { addon } from '../lib/backend/native';
import { jsBackend } from '../lib/backend/js';
import { resolveBackend } from '../lib/backend/registry';
import type { LayerNormBackwardArgs } from '../lib/backend/backend';
import { bufferPoolCounters, clearBufferPool, pooledBufferBytes, setPoolPoisoning, withForwardScope } from '../lib/workspace';
import { memoryStats, releaseMemory } from '../lib/runtime';
import { expectSameWhenPoisoned } from './helpers/pool-poison';

type F32 = Tensor<'float32'>;

afterEach(() => {
  setPoolPoisoning(false);
});

/** Runs `steps` Adam steps of `loss()` over `model`'s parameters; returns the losses and the final parameters and gradients. */
function train(model: nn.Module, loss: () => F32, steps: number): number[][] {
  const opt = new optim.Adam(model.parameters(), { lr: 1e-2 });
  const out: number[][] = [];
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    opt.zeroGrad();
    const l = loss();
    l.backward();
    losses.push(l.item());
    if (s === steps - 1) for (const p of model.parameters()) out.push(Array.from(p.grad!.data));
    opt.step();
  }
  for (const p of model.parameters()) out.push(Array.from(p.data));
  return [losses, ...out];
}

describe('a poisoned pool changes no gradient (nothing is read after it went back)', () => {
  it('post-norm encoder with dropout (flash attention), a causal mask and key padding, MSE', () => {
    expectSameWhenPoisoned(() => {
      nn.manualSeed(1);
      const enc = new nn.TransformerEncoder({ layer: { dModel: 32, nhead: 4, dimFeedforward: 64, dropout: 0.1 }, numLayers: 2 }).train();
      const x = randn([40, 2, 32], { seed: 2 });
      const target = randn([40, 2, 32], { seed: 3 });
      const pad = tensor(new Uint8Array(80).map((_, i) => (i % 2 === 1 && i >= 70 ? 1 : 0)), [2, 40], 'bool');
      const mask = nn.Transformer.generateSquareSubsequentMask(40);
      return train(enc, () => ops.mseLoss(enc.forward(x, { mask, srcKeyPaddingMask: pad }), target), 3);
    });
  });

  it('pre-norm GELU decoder over an encoder memory, cross-entropy with label smoothing', () => {
    expectSameWhenPoisoned(() => {
      nn.manualSeed(4);
      const model = new nn.Transformer({ dModel: 32, nhead: 4, numEncoderLayers: 1, numDecoderLayers: 2, dimFeedforward: 48,
        dropout: 0.1, activation: 'gelu', normFirst: true }).train();
      const head = new nn.Linear({ inFeatures: 32, outFeatures: 11 });
      const both = new nn.ModuleList([model, head]);
      const src = randn([24, 3, 32], { seed: 5 });
      const tgt = randn([17, 3, 32], { seed: 6 });
      const labels = tensor(new Int32Array(17 * 3).map((_, i) => (i * 7) % 11), [17 * 3], 'int32');
      const tgtMask = nn.Transformer.generateSquareSubsequentMask(17);
      return train(both, () => ops.crossEntropy(head.forward(model.forward(src, tgt, { tgtMask })).reshape(17 * 3, 11), labels,
        { labelSmoothing: 0.1 }), 3);
    });
  });

  it('attention weights returned (the composed path) with dropout, and kdim/vdim projections', () => {
    expectSameWhenPoisoned(() => {
      nn.manualSeed(7);
      const mha = new nn.MultiheadAttention({ embedDim: 24, numHeads: 3, dropout: 0.2, kdim: 16, vdim: 20 }).train();
      const q = randn([9, 2, 24], { seed: 8 });
      const k = randn([13, 2, 16], { seed: 9 });
      const v = randn([13, 2, 20], { seed: 10 });
      return train(mha, () => {
        const { output, weights } = mha.forward(q, k, v, { needWeights: true });
        return ops.add(ops.mean(ops.mul(output, output)), ops.mean(weights!));
      }, 2);
    });
  });
});

describe('a training step recycles its buffers', () => {
  it('allocates well under half of what it takes once warm, and nothing fresh but its result from the second step on', () => {
    nn.manualSeed(11);
    const enc = new nn.TransformerEncoder({ layer: { dModel: 64, nhead: 4, dimFeedforward: 256, dropout: 0 }, numLayers: 2 }).train();
    const opt = new optim.Adam(enc.parameters(), { lr: 1e-3 });
    const x = randn([256, 1, 64], { seed: 12 });
    const target = randn([256, 1, 64], { seed: 13 });
    const step = (): void => {
      opt.zeroGrad();
      ops.mseLoss(enc.forward(x), target).backward();
      opt.step();
    };
    clearBufferPool();
    step();
    const first = bufferPoolCounters();
    // Without recycling inside the step, every buffer of the forward and the backward is a fresh one.
    expect(first.freshBytes).toBeLessThan(0.65 * first.takenBytes);
    step();
    step();
    const after = bufferPoolCounters();
    // The encoder's result ([256, 1, 64] floats) stays with the caller, so each step takes one fresh buffer for it
    // (and the pool may settle on a size class once); nothing else is new.
    const result = 256 * 64 * 4;
    expect(after.freshBytes - first.freshBytes).toBeLessThanOrEqual(2 * 2 * result);
    expect(after.takenBytes - first.takenBytes).toBeGreaterThan(2 * first.takenBytes * 0.9);
  });

  it('a forward that records a graph hands back at once the intermediates no node saves', () => {
    nn.manualSeed(14);
    const layer = new nn.TransformerEncoderLayer({ dModel: 32, nhead: 4, dimFeedforward: 128, dropout: 0 }).train();
    const x = randn([64, 1, 32], { seed: 15 });
    clearBufferPool();
    const y = layer.forward(x);
    // The out-projection's and the second linear's outputs ([64, 1, 32] each) are read by the fused residual norms
    // only, which save their outputs instead.
    expect(pooledBufferBytes()).toBeGreaterThanOrEqual(2 * 64 * 32 * 4);
    ops.sum(y).backward();
    expect(layer.parameters().every((p) => p.grad !== null)).toBe(true);
  });
});

describe('activations a training step does not keep', () => {
  const arr = (t: Tensor | null): number[] => Array.from((t as F32).data);
  const close = (got: number[], want: number[], tol: number): void => {
    const scale = Math.max(...want.map(Math.abs), 1e-30);
    got.forEach((g, i) => expect(Math.abs(g - want[i]!) / scale).toBeLessThan(tol));
  };
  /** Gradients of x, residual, weight, bias through addLayerNorm (fused) and through layerNorm(add) (keeps its input). */
  const lnGrads = (backend: 'native' | 'js', w: F32, b: F32, fused: boolean): number[][] => {
    const x = randn([6, 3, 40], { seed: 71 }).requiresGrad_();
    const r = randn([6, 3, 40], { seed: 72 }).requiresGrad_();
    const wp = w.clone().requiresGrad_();
    const bp = b.clone().requiresGrad_();
    const dy = randn([6, 3, 40], { seed: 73 });
    const y = fused ? ops.addLayerNorm(x, r, 40, wp, bp, 1e-5, { backend }) : ops.layerNorm(ops.add(x, r, { backend }), 40, wp, bp, 1e-5, { backend });
    y.backward(dy);
    return [arr(x.grad), arr(r.grad), arr(wp.grad), arr(bp.grad)];
  };
  for (const backend of ['native', 'js'] as const) {
    it(`addLayerNorm in training keeps its output and rstd: the gradients of its input (${backend})`, () => {
      const w = ops.add(randn([40], { seed: 74 }), 1);
      const b = ops.mul(randn([40], { seed: 75 }), 0.5);
      const fused = lnGrads(backend, w, b, true);
      const plain = lnGrads(backend, w, b, false);
      fused.forEach((g, i) => close(g, plain[i]!, 2e-6));
    });
    it(`addLayerNorm falls back to keeping the sum for a zero weight or a bias large against its weight (${backend})`, () => {
      const w = ops.add(randn([40], { seed: 76 }), 1);
      const b = ops.mul(randn([40], { seed: 77 }), 0.5);
      w.data[3] = 0;
      b.data[5] = 1e4;
      const fused = lnGrads(backend, w, b, true);
      const plain = lnGrads(backend, w, b, false);
      fused.forEach((g, i) => close(g, plain[i]!, 2e-6));
    });
  }

  it('addLayerNorm in training stores no sum: in a forward scope it takes one buffer, its output', () => {
    const x = randn([64, 256], { seed: 78 }).requiresGrad_();
    const r = randn([64, 256], { seed: 79 });
    const bytes = 64 * 256 * 4;
    const taken = (w: F32): number => {
      const before = bufferPoolCounters().takenBytes;
      const y = withForwardScope(() => ops.addLayerNorm(x, r, 256, w));
      const n = bufferPoolCounters().takenBytes - before;
      y.backward(randn([64, 256], { seed: 80 }));
      return n;
    };
    expect(taken(ops.add(randn([256], { seed: 84 }), 2))).toBe(bytes);
    // A zero weight: the sum is kept.
    expect(taken(tensor(new Float32Array(256)))).toBe(2 * bytes);
  });

  it('layerNormBackward from the output: bias without rstd, or a short rstd, is a RangeError naming the argument', () => {
    const f = new Float32Array(8);
    const args: LayerNormBackwardArgs = { x: f, weight: null, dy: f.slice(), dx: new Float32Array(8), dweight: null, dbias: null, rows: 2, cols: 4, eps: 1e-5 };
    for (const call of [(a: LayerNormBackwardArgs) => resolveBackend('native').layerNormBackward(a), (a: LayerNormBackwardArgs) => jsBackend.layerNormBackward(a)]) {
      expect(() => call({ ...args, bias: new Float32Array(4) })).toThrow(/'bias'.*without rstd/);
      expect(() => call({ ...args, rstd: new Float32Array(1) })).toThrow(/'rstd'/);
    }
  });

  it("a fused ReLU linear's consumer writes dX over the ReLU output: the same gradients bit for bit, one [rows, ff] buffer fewer", () => {
    nn.manualSeed(81);
    const enc = new nn.TransformerEncoderLayer({ dModel: 32, nhead: 4, dimFeedforward: 2048, dropout: 0 }).train();
    const x = randn([512, 1, 32], { seed: 82 });
    const target = randn([512, 1, 32], { seed: 83 });
    const run = (retainGraph: boolean): { grads: number[][]; taken: number } => {
      for (const p of enc.parameters()) p.grad = null;
      clearBufferPool();
      const l = ops.mseLoss(enc.forward(x), target);
      const before = bufferPoolCounters().takenBytes;
      l.backward(undefined, { retainGraph });
      return { grads: enc.parameters().map((p) => arr(p.grad)), taken: bufferPoolCounters().takenBytes - before };
    };
    // retainGraph keeps every saved tensor, so the ReLU output may not be overwritten: the unfused path.
    const kept = run(true);
    const freed = run(false);
    freed.grads.forEach((g, i) => expect(g).toEqual(kept.grads[i]));
    // [512, 2048] floats = 4 MiB not taken; a chunk of 256 rows (2 MiB) instead.
    expect(kept.taken - freed.taken).toBeGreaterThanOrEqual(512 * 2048 * 4 - 256 * 2048 * 4);
  });
});

describe('packed weights in training', () => {
  it.skipIf(!addon)('a weight being trained is not packed; inference packs it', () => {
    nn.manualSeed(16);
    const lin = new nn.Linear({ inFeatures: 64, outFeatures: 96 });
    const x = randn([32, 64], { seed: 17 });
    const spy = vi.spyOn(addon!, 'packWeight');
    try {
      ops.sum(lin.forward(x)).backward();
      ops.sum(lin.forward(x)).backward();
      expect(spy).not.toHaveBeenCalled();
      noGrad(() => lin.forward(x));
      noGrad(() => lin.forward(x));
      expect(spy).toHaveBeenCalled();
      // A frozen weight (only the input requires grad) is constant: it packs too.
      spy.mockClear();
      const frozen = new nn.Linear({ inFeatures: 64, outFeatures: 96 });
      for (const p of frozen.parameters()) p.requiresGrad = false;
      const xg = randn([32, 64], { seed: 18 });
      xg.requiresGrad = true;
      ops.sum(frozen.forward(xg)).backward();
      ops.sum(frozen.forward(xg)).backward();
      expect(spy).toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
  });
});

describe('memoryStats and releaseMemory', () => {
  it('report the resident set, ArrayBuffers and the pool; releaseMemory empties the pool', () => {
    noGrad(() => new nn.TransformerEncoderLayer({ dModel: 32, nhead: 4, dimFeedforward: 64 }).eval().forward(randn([128, 2, 32], { seed: 19 })));
    const m = memoryStats();
    expect(m.rss).toBeGreaterThan(0);
    if (m.peakRss !== null) expect(m.peakRss).toBeGreaterThanOrEqual(m.rss);
    expect(m.arrayBuffers).toBeGreaterThanOrEqual(m.pooledBuffers);
    expect(m.pooledBuffers).toBe(pooledBufferBytes());
    expect(m.pooledBuffers).toBeGreaterThan(0);
    if (addon && process.platform === 'linux' && m.allocator) {
      expect(m.allocator.inUseBytes).toBeGreaterThan(0);
      expect(m.allocator.arenaBytes).toBeGreaterThanOrEqual(m.allocator.inUseBytes);
    }
    expect(releaseMemory()).toBeGreaterThanOrEqual(0);
    expect(pooledBufferBytes()).toBe(0);
  });
});
