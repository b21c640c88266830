import { LlamaForCausalLM, Tensor, setNumThreads } from './lib';
import { llamaConfigFromJson } from './lib/models/auto';
import { GenerationEngine } from './lib/serving/engine';
import { SMOLLM_CONFIG, makeWeights } from './bench/llm/make_model';
import { monitorEventLoopDelay } from 'node:perf_hooks';
(async () => {
  const L = Number(process.env.L ?? 30);
  const cfg = { ...SMOLLM_CONFIG, num_hidden_layers: L };
  const model = new LlamaForCausalLM(llamaConfigFromJson(cfg));
  const w = makeWeights(1); const sd: Record<string, Tensor> = {};
  for (const [k, t] of Object.entries(w)) { const m = /^model\.layers\.(\d+)\./.exec(k); if (!m || Number(m[1]) < L) sd[k] = t; }
  model.loadStateDict(sd); model.useBackend('native'); setNumThreads(Number(process.env.T ?? 1));
  const engine = new GenerationEngine(model, { maxRunning: 8, kvCacheBytes: 8 * 256 * L * 2 * 192 * 4 });
  const go = async (c: number, n: number) => {
    const h = monitorEventLoopDelay({ resolution: 1 }); h.enable();
    const t0 = performance.now(); const s0 = engine.stats().steps;
    await Promise.all(Array.from({ length: c }, async (_, i) => { for await (const _t of engine.generate({ promptIds: [1 + i, 2, 3], maxNewTokens: n })); }));
    const ms = performance.now() - t0; const steps = engine.stats().steps - s0; h.disable();
    console.log(`c=${c}: ${(c * n / ms * 1000).toFixed(1)} tok/s, ${(ms / steps).toFixed(2)} ms/step, loop p99 ${(h.percentile(99) / 1e6).toFixed(1)} max ${(h.max / 1e6).toFixed(1)}`);
  };
  await go(1, 5);
  for (const c of [1, 8, 1, 8]) await go(c, 40);
  await engine.close();
})();
