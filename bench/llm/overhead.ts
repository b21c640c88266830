/**
 * Per-step fixed cost of LlamaForCausalLM decode on the native backend: the
 * same 30-layer / 9-head / 3-kv-head structure as SmolLM-135M but tiny widths
 * (hidden 72, intermediate 192, vocab 256), so the kernels' arithmetic and
 * memory traffic are negligible and what remains is per-op dispatch (JS,
 * N-API, thread-pool wake-ups, allocations). Compare with the full model's ms/step.
 * Also prints the process's CPU time per step (user + system, all threads),
 * which a loaded machine inflates far less than wall time.
 *
 *   npx tsx bench/llm/overhead.ts [--threads 1,2]
 */
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { setGradEnabled, setNumThreads, Tensor, LlamaForCausalLM } from '../../lib';
import { manualSeed } from '../../lib/nn/init';

// Inference only: no autograd graph (parameters require grad by default, as in PyTorch).
setGradEnabled(false);

const { values } = parseArgs({ options: { threads: { type: 'string', default: '1,2' } } });
manualSeed(0);
const model = new LlamaForCausalLM({
  vocabSize: 256, hiddenSize: 72, intermediateSize: 192, numHiddenLayers: 30, numAttentionHeads: 9,
  numKeyValueHeads: 3, tieWordEmbeddings: true, rmsNormEps: 1e-5, maxPositionEmbeddings: 2048,
}).useBackend('native');
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
for (const t of values.threads!.split(',').map(Number)) {
  setNumThreads(t);
  for (const prompt of [16, 512]) {
    const runs: number[] = [];
    const cpu: number[] = [];
    for (let r = 0; r < 3; r++) {
      const cache = model.createCache(1, prompt + 129);
      const ids = new Tensor(Int32Array.from({ length: prompt }, (_, i) => (i * 7) % 256), [1, prompt], 'int32');
      model.forward(ids, { cache, lastOnly: true });
      const ms: number[] = [];
      const c0 = process.cpuUsage();
      for (let s = 0; s < 128; s++) {
        const t0 = performance.now();
        model.forward(new Tensor(Int32Array.of(s % 256), [1, 1], 'int32'), { cache, lastOnly: true });
        ms.push(performance.now() - t0);
      }
      const c = process.cpuUsage(c0);
      cpu.push((c.user + c.system) / 1000 / 128);
      runs.push(median(ms));
    }
    console.log(`threads ${t}, after a ${prompt}-token prompt: median ms/step ${runs.map((x) => x.toFixed(3)).join(', ')} (30 layers → ${(median(runs) / 30 * 1000).toFixed(0)} µs/layer); CPU ms/step ${cpu.map((x) => x.toFixed(3)).join(', ')}`);
  }
}
