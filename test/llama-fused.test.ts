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

describe.each(backends)('Llama gate/up stored back to back (as a safetensors file stores them) on the %s backend', (backend) => {
  /** `m` with each layer's gate_proj and up_proj moved into one buffer, gate then up (views, as the loader makes them). */
  function adjacent(m: LlamaForCausalLM): LlamaForCausalLM {
    const dict = m.stateDict();
    for (let i = 0; i < m.model.layers.length; i++) {
      const g = dict[`model.layers.${i}.mlp.gate_proj.weight`]!;
      const u = dict[`model.layers.${i}.mlp.up_proj.weight`]!;
      const buf = new Float32Array(g.size + u.size + 8);
      buf.set(g.contiguous().data as Float32Array, 4);
      buf.set(u.contiguous().data as Float32Array, 4 + g.size);
      dict[`model.layers.${i}.mlp.gate_proj.weight`] = new Tensor(buf.subarray(4, 4 + g.size), g.shape, 'float32');
      dict[`model.layers.${i}.mlp.up_proj.weight`] = new Tensor(buf.subarray(4 + g.size, 4 + g.size + u.size), u.shape, 'float32');
    }
    m.loadStateDict(dict);
    return m;
  }

  it('fuse without a copy and give the same results, also after gate or up is written in place', () => {
    noGrad(() => {
      const a = adjacent(model(6, backend));
      const b = model(6, backend);
      expect(run(a)).toEqual(run(b));
      // Nothing was copied: the fused product read the parts' own memory (a JS write to a part shows at once
      // in a fresh run of a never-fused model too, so compare with that).
      const up = a.model.layers.at(0).mlp.upProj.weight;
      const gate = a.model.layers.at(1).mlp.gateProj.weight;
      ops.mul(up, 1.25, { out: up });
      ops.mul(gate, 0.5, { out: gate });
      b.model.layers.at(0).mlp.upProj.weight.data.forEach((v, i, d) => (d[i] = v * 1.25));
      b.model.layers.at(1).mlp.gateProj.weight.data.forEach((v, i, d) => (d[i] = v * 0.5));
      const fresh = model(6, backend);
      fresh.loadStateDict(b.stateDict());
      // Twice: the second run uses the packing made at the new version (the first may run unpacked).
      expect(run(a)).toEqual(run(fresh));
      expect(run(a)).toEqual(run(fresh));
    });
  });
});
