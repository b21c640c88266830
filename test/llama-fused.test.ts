/**
 * Llama's fused q/k/v and gate/up products (lib/models/fused-rows.ts): the fused copy follows its parts when they
 * are replaced (loadStateDict) or written in place, so a model never runs on stale weights, and it never comes
 * from the intermediates' buffer pool (decode steps after the forward that built it still read the right weights),
 * and it is written before a recorded step (generateAsync, the serving engine) packs it.
 */
import { describe, expect, it } from 'vitest';
import { LlamaForCausalLM, noGrad, ops, runAsync, Tensor, type LlamaConfig } from '../lib';
import { manualSeed } from '../lib/nn/init';
import { backends } from './helpers/backends';

const config: LlamaConfig = {
  vocabSize: 40, hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2,
  attentionBias: true,
};

function model(seed: number, backend: 'js' | 'native'): LlamaForCausalLM {
  manualSeed(seed);
  const m = new LlamaForCausalLM(config).useBackend(backend);
  // Non-zero biases, so a stale fused bias would show.
  for (const layer of m.model.layers) {
    for (const p of [layer.selfAttn.qProj, layer.selfAttn.kProj, layer.selfAttn.vProj]) {
      p.bias!.data.forEach((_, i, d) => (d[i] = Math.sin(seed * 7 + i) * 0.1));
    }
  }
  return m;
}

/** Prompt logits and two cached decode steps. */
function run(m: LlamaForCausalLM): number[] {
  const cache = m.createCache(1, 8);
  const out = [...m.forward(new Tensor(Int32Array.of(3, 1, 4, 1), [1, 4], 'int32'), { cache }).contiguous().data];
  for (const id of [5, 9]) out.push(...m.forward(new Tensor(Int32Array.of(id), [1, 1], 'int32'), { cache }).contiguous().data);
  return out;
}

describe.each(backends)('Llama fused projections on the %s backend', (backend) => {
  it('follow weights replaced by loadStateDict', () => {
    noGrad(() => {
    const a = model(1, backend);
    const b = model(2, backend);
    const before = run(a);
    a.loadStateDict(b.stateDict());
    const after = run(a);
    expect(after).toEqual(run(b));
    expect(after).not.toEqual(before);
    });
  });

  it('follow weights written in place (q, k, v, gate, up and the q/k/v biases)', () => {
    noGrad(() => {
    const a = model(3, backend);
    const b = model(3, backend);
    run(a); // builds and caches the fused copies
    for (const m of [a, b]) {
      const layer = m.model.layers.at(1);
      const scale = (t: Tensor<'float32'>): void => {
        if (m === a) ops.mul(t, 1.5, { out: t }); // in place: bumps the version
        else t.data.forEach((v, i, d) => (d[i] = v * 1.5)); // b: a fresh model, never run before
      };
      for (const w of [layer.selfAttn.kProj.weight, layer.mlp.upProj.weight, layer.selfAttn.vProj.bias!]) scale(w);
    }
    expect(run(a)).toEqual(run(b));
    });
  });

  it('refuse q/k/v projections where only some have a bias', () => {
    noGrad(() => {
    const a = model(4, backend);
    a.model.layers.at(0).selfAttn.kProj.bias = null;
    expect(() => run(a)).toThrow(/q_proj, k_proj and v_proj must all have a bias or none/);
    });
  });
});

// Only native calls are recorded (runAsync runs nothing deferred on the JS backend).
const hasNative = backends.includes('native');
it.skipIf(!hasNative)(`Llama fused projections are built before a recorded step packs them: a fresh model forward under runAsync equals the plain forward${hasNative ? '' : ' (skipped: the native addon is not loaded; only native calls are recorded)'}`, async () => {
  const prompt = new Tensor(Int32Array.of(3, 1, 4, 1, 5), [1, 5], 'int32');
  const plain = noGrad(() => model(5, 'native').forward(prompt).contiguous().data);
  // A fresh model: its fused weights are first built while the step is being recorded.
  const fresh = model(5, 'native');
  const recorded = await runAsync(() => noGrad(() => fresh.forward(prompt)));
  expect(Array.from(recorded.contiguous().data)).toEqual(Array.from(plain));
});
