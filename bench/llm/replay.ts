/**
 * The replayed decode step (lib/models/decode-program.ts) against the eager one, in one process, interleaved:
 * SmolLM-135M-shaped model from make_model.ts, batch 1, decode steps after a short prompt, per precision and
 * thread count. Reports the median over rounds of wall ms and process CPU ms per token (CPU time is less
 * inflated than wall time when other processes share the cores), and `uptime`'s load.
 *
 *   npx tsx bench/llm/replay.ts [--rounds 5] [--steps 32] [--threads 1,2] [--precisions float32,bfloat16] [--dir DIR]
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { info, setGradEnabled, setNumThreads, Tensor, type LlamaForCausalLM } from '../../lib';
import { AutoModelForCausalLM } from '../../lib/models/auto';
import { setDecodeProgramEnabled } from '../../lib/models/decode-program';
import { DEFAULT_DIR } from './make_model';

setGradEnabled(false);
const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    steps: { type: 'string', default: '32' },
    threads: { type: 'string', default: '1,2' },
    precisions: { type: 'string' },
    dir: { type: 'string' },
  },
});
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

function steps(model: LlamaForCausalLM, n: number): { wall: number; cpu: number } {
  const cache = model.createCache(1, 16 + n + 1);
  model.forward(new Tensor(Int32Array.from({ length: 16 }, (_, i) => 100 + i), [1, 16], 'int32'), { cache, lastOnly: true });
  model.forward(new Tensor(Int32Array.of(5), [1, 1], 'int32'), { cache, lastOnly: true }); // records the program
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let s = 0; s < n - 1; s++) model.forward(new Tensor(Int32Array.of((s * 31) % 1000), [1, 1], 'int32'), { cache, lastOnly: true });
  const c = process.cpuUsage(c0);
  return { wall: (performance.now() - t0) / (n - 1), cpu: (c.user + c.system) / 1000 / (n - 1) };
}

async function main(): Promise<void> {
  const model = (await AutoModelForCausalLM.fromPretrained(path.resolve(args.dir ?? DEFAULT_DIR))) as LlamaForCausalLM;
  model.useBackend('native');
  const precisions = args.precisions ? args.precisions.split(',') : info().native?.bf16 ? ['float32', 'bfloat16'] : ['float32'];
  const n = Number(args.steps);
  console.log(`CPU: ${os.cpus()[0]?.model ?? '?'}; load before: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  for (const t of args.threads!.split(',').map(Number)) {
    setNumThreads(t);
    for (const p of precisions) {
      model.useWeightPrecision(p as 'float32' | 'bfloat16');
      const r: Record<string, { wall: number[]; cpu: number[] }> = { eager: { wall: [], cpu: [] }, replayed: { wall: [], cpu: [] } };
      for (let round = 0; round < Number(args.rounds); round++) {
        for (const mode of round % 2 ? ['replayed', 'eager'] : ['eager', 'replayed']) {
          setDecodeProgramEnabled(mode === 'replayed');
          const m = steps(model, n);
          r[mode]!.wall.push(m.wall);
          r[mode]!.cpu.push(m.cpu);
        }
      }
      const e = r.eager!;
      const x = r.replayed!;
      console.log(
        `threads ${t} ${p}: eager ${median(e.wall).toFixed(2)} ms/token (CPU ${median(e.cpu).toFixed(2)}), replayed ` +
        `${median(x.wall).toFixed(2)} ms/token (CPU ${median(x.cpu).toFixed(2)}); eager/replayed wall ${(median(e.wall) / median(x.wall)).toFixed(2)}×, CPU ${(median(e.cpu) / median(x.cpu)).toFixed(2)}×`,
      );
    }
  }
  console.log(`load after: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
}
void main();
