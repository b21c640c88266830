/**
 * Decode only, for profiling and quick before/after timings: the SmolLM-135M-shaped model from make_model.ts,
 * batch 1, a `--prompt`-token prompt then `--steps` greedy decode steps (the replayed step, argmax in JS as
 * run.ts does), one precision and thread count, `--reps` times. Prints wall and process CPU ms per token (CPU time
 * is less inflated than wall time when other processes share the cores) and `uptime`'s load. Under
 * `perf record -e cpu-clock` it shows where a decode step's time goes (nothing else runs between the marks).
 *
 *   npx tsx bench/llm/decode-only.ts [--precision bfloat16] [--threads 1] [--prompt 512] [--steps 128] [--reps 3] [--dir DIR]
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { setGradEnabled, setNumThreads, Tensor, type LlamaForCausalLM } from '../../lib';
import { AutoModelForCausalLM } from '../../lib/models/auto';
import { DEFAULT_DIR } from './make_model';
import { argmax } from './greedy';
import { promptIds } from './prompt';

setGradEnabled(false);
const { values: args } = parseArgs({
  options: {
    precision: { type: 'string', default: 'bfloat16' },
    threads: { type: 'string', default: '1' },
    prompt: { type: 'string', default: '512' },
    steps: { type: 'string', default: '128' },
    reps: { type: 'string', default: '3' },
    dir: { type: 'string' },
  },
});
const precision = args.precision as 'float32' | 'bfloat16' | 'int8';
if (!['float32', 'bfloat16', 'int8'].includes(precision)) throw new RangeError(`decode-only.ts: --precision takes float32, bfloat16 or int8, got ${precision}`);
const P = Number(args.prompt), STEPS = Number(args.steps), reps = Number(args.reps);

async function main(): Promise<void> {
  const model = (await AutoModelForCausalLM.fromPretrained(path.resolve(args.dir ?? DEFAULT_DIR))) as LlamaForCausalLM;
  model.useBackend('native');
  setNumThreads(Number(args.threads));
  model.useWeightPrecision(precision);
  const prompt = new Tensor(promptIds(P, model.config.vocabSize), [1, P], 'int32');
  const wall: number[] = [], cpu: number[] = [];
  let tokens: number[] = [];
  for (let r = 0; r < reps; r++) {
    const cache = model.createCache(1, P + STEPS + 1);
    model.forward(prompt, { cache, lastOnly: true });
    let next = 5;
    const toks: number[] = [];
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let s = 0; s < STEPS; s++) {
      next = argmax(model.forward(new Tensor(Int32Array.of(next), [1, 1], 'int32'), { cache, lastOnly: true }));
      toks.push(next);
    }
    wall.push((performance.now() - t0) / STEPS);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000 / STEPS);
    if (r === 0) tokens = toks.slice(0, 8);
  }
  const f = (xs: number[]): string => xs.map((x) => x.toFixed(2)).join(', ');
  console.log(`${precision} t${args.threads} prompt ${P}: wall ms/token ${f(wall)} | CPU ms/token ${f(cpu)} | load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} | tokens ${tokens.join(',')}`);
}

void main();
