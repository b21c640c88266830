/**
 * The decode step's matrix-vector products in isolation: ops.linear of one
 * row [1, 1, in] with each SmolLM-135M weight shape (cacheWeight: true, as the
 * model calls it), float32, bfloat16 (where the CPU has it) and int8, 1 and 2 threads; achieved weight
 * GB/s = weight bytes / time (median of 50 calls). Compares with the per-step
 * time of the whole model to split kernel time from everything else.
 *
 *   npx tsx bench/llm/gemv.ts [--threads 1,2] [--precisions float32,bfloat16,int8]
 */
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { setNumThreads, ops, Tensor, withContext, info } from '../../lib';

const { values } = parseArgs({ options: { threads: { type: 'string', default: '1,2' }, precisions: { type: 'string' } } });
const shapes: [string, number, number, number][] = [
  // name, out, in, count per token
  ['q_proj/o_proj', 576, 576, 60], ['k_proj/v_proj', 192, 576, 60], ['gate/up', 1536, 576, 60], ['down', 576, 1536, 30], ['lm_head', 49152, 576, 1],
];
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
function rand(n: number): Float32Array { const d = new Float32Array(n); for (let i = 0; i < n; i++) d[i] = Math.sin(i * 12.9898) * 0.02; return d; }
type P = 'float32' | 'bfloat16' | 'int8';
const precisions = (values.precisions?.split(',') ?? (info().native?.bf16 ? ['float32', 'bfloat16', 'int8'] : ['float32', 'int8'])) as P[];
const bytesPerWeight: Record<P, number> = { float32: 4, bfloat16: 2, int8: 1 };
for (const t of values.threads!.split(',').map(Number)) {
  setNumThreads(t);
  for (const p of precisions) {
    let perToken = 0;
    const parts: string[] = [];
    for (const [name, out, inn, count] of shapes) {
      // As many distinct weights as the model has (up to 30) so they do not sit in cache.
      const copies = Math.min(count, 30);
      const ws = Array.from({ length: copies }, () => new Tensor(rand(out * inn), [out, inn], 'float32'));
      const x = new Tensor(rand(inn), [1, 1, inn], 'float32');
      withContext({ weightPrecision: p }, () => { for (const w of ws) ops.linear(x, w, null, { cacheWeight: true }); });
      const times: number[] = [];
      withContext({ weightPrecision: p }, () => {
        for (let r = 0; r < 5; r++) {
          const t0 = performance.now();
          for (const w of ws) ops.linear(x, w, null, { cacheWeight: true });
          times.push((performance.now() - t0) / copies);
        }
      });
      const ms = median(times);
      const gbs = (out * inn * bytesPerWeight[p]) / (ms / 1000) / 1e9;
      perToken += ms * count;
      parts.push(`${name} [${out}x${inn}] ${(ms * 1000).toFixed(0)} µs (${gbs.toFixed(1)} GB/s) ×${count}`);
    }
    console.log(`threads ${t} ${p}: ${parts.join('; ')} → GEMVs ${perToken.toFixed(1)} ms/token`);
  }
}
