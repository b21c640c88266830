/**
 * attnode LlamaForCausalLM (SmolLM-135M-shaped, random weights from
 * make_model.ts), batch 1: prompt processing of a 512-token prompt, decode
 * over 128 cached steps (argmax in JS, as generate does), model.generate end
 * to end, float32, bfloat16 and int8 weights (useWeightPrecision; int8 is
 * compared with llama.cpp's Q8_0 file of the same weights), 1 and 2 threads; memory bandwidth
 * measured in the same process (native ops.add(a, 0, { out: b }) streaming
 * 256 MiB in + 256 MiB out, best of 5), and decode's share of the bandwidth
 * limit (weight bytes per token ÷ bandwidth). Also the JS backend's decode for a few steps.
 *
 *   npx tsx bench/llm/run.ts [--reps 3] [--threads 1,2] [--prompt 512] [--steps 128] [--precisions float32,bfloat16,int8]
 *                            [--json out.json] [--no-js] [--no-generate]
 *
 * Prints one JSON object (and writes it with --json).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { info, setGradEnabled, setNumThreads, ops, Tensor, LlamaForCausalLM } from '../../lib';
import { AutoModelForCausalLM } from '../../lib/models/auto';
import { DEFAULT_DIR } from './make_model';
import { argmax } from './greedy';
import { promptIds } from './prompt';

// Inference only: no autograd graph (parameters require grad by default, as in PyTorch).
setGradEnabled(false);

const { values: args } = parseArgs({
  options: {
    reps: { type: 'string', default: '3' },
    threads: { type: 'string', default: '1,2' },
    prompt: { type: 'string', default: '512' },
    steps: { type: 'string', default: '128' },
    json: { type: 'string' },
    dir: { type: 'string' },
    precisions: { type: 'string' },
    'no-js': { type: 'boolean', default: false },
    'no-generate': { type: 'boolean', default: false },
  },
});
const reps = Number(args.reps);
const threadList = args.threads!.split(',').map(Number);
const P = Number(args.prompt);
const STEPS = Number(args.steps);


const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** Native streaming bandwidth: out = a + 0 over 256 MiB arrays; bytes read + written / s, best of 5. */
function bandwidth(): { bestGBs: number; medianGBs: number; runsGBs: number[] } {
  const n = (256 * 1024 * 1024) / 4;
  const a = new Tensor(new Float32Array(n).fill(1), [n], 'float32');
  const b = new Tensor(new Float32Array(n), [n], 'float32');
  ops.add(a, 0, { out: b }); // warm (page faults)
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    ops.add(a, 0, { out: b });
    const s = (performance.now() - t0) / 1000;
    runs.push((2 * n * 4) / s / 1e9);
  }
  return { bestGBs: Math.max(...runs), medianGBs: median(runs), runsGBs: runs };
}

type Precision = 'float32' | 'bfloat16' | 'int8';

/**
 * Bytes of weights read per decoded token: every Linear weight plus the (tied) LM head; norms; the embedding row
 * is negligible. `perChannel` bytes are added per output channel of each matrix (int8: its scale and its
 * compensation, 4 bytes each).
 */
function weightBytesPerToken(m: LlamaForCausalLM, bytesPerParam: number, perChannel = 0): number {
  let params = 0;
  let channels = 0;
  for (const [name, t] of Object.entries(m.stateDict())) {
    if (name === 'model.embed_tokens.weight') continue; // counted below as the head
    params += t.shape.reduce((a, b) => a * b, 1);
    if (t.shape.length === 2) channels += t.shape[0]!;
  }
  const c = m.config;
  params += c.vocabSize * c.hiddenSize; // LM head (tied embedding matrix) is read whole per token
  channels += c.vocabSize;
  return params * bytesPerParam + channels * perChannel;
}

interface Cell {
  threads: number;
  precision: Precision;
  prefillTokS: number[];
  decodeTokS: number[];
  decodeStepMsMedian: number[];
  /** Process CPU time (user + system, all threads) per decoded token: less inflated than wall time when other processes take the cores. */
  decodeCpuMsPerTok: number[];
  generateTokS: number[];
  generateWallMs: number[];
  /** First 16 greedy tokens of rep 0 (decode fed token 5 after the prompt, as the llama.cpp peer does). */
  tokens: number[];
}

function runCell(model: LlamaForCausalLM, threads: number, precision: Precision, prompt: Tensor<'int32'>): Cell {
  setNumThreads(threads);
  model.useWeightPrecision(precision);
  const cell: Cell = { threads, precision, prefillTokS: [], decodeTokS: [], decodeStepMsMedian: [], decodeCpuMsPerTok: [], generateTokS: [], generateWallMs: [], tokens: [] };
  // Warm-up: packs weights for this precision, thread pool.
  {
    const cache = model.createCache(1, 64);
    model.forward(new Tensor(prompt.data.slice(0, 16), [1, 16], 'int32'), { cache, lastOnly: true });
    model.forward(new Tensor(Int32Array.of(5), [1, 1], 'int32'), { cache, lastOnly: true });
  }
  for (let r = 0; r < reps; r++) {
    const cache = model.createCache(1, P + STEPS + 1);
    let t0 = performance.now();
    const logits = model.forward(prompt, { cache, lastOnly: true });
    argmax(logits);
    const prefillS = (performance.now() - t0) / 1000;
    cell.prefillTokS.push(P / prefillS);
    const stepMs: number[] = [];
    const toks: number[] = [];
    let next = 5; // same first decode input as the llama.cpp peer
    const cpu0 = process.cpuUsage();
    t0 = performance.now();
    for (let s = 0; s < STEPS; s++) {
      const ts = performance.now();
      const l = model.forward(new Tensor(Int32Array.of(next), [1, 1], 'int32'), { cache, lastOnly: true });
      next = argmax(l);
      toks.push(next);
      stepMs.push(performance.now() - ts);
    }
    cell.decodeTokS.push(STEPS / ((performance.now() - t0) / 1000));
    const cpu = process.cpuUsage(cpu0);
    cell.decodeCpuMsPerTok.push((cpu.user + cpu.system) / 1000 / STEPS);
    cell.decodeStepMsMedian.push(median(stepMs));
    if (r === 0) cell.tokens = toks.slice(0, 16);
    if (!args['no-generate']) {
      t0 = performance.now();
      const out = model.generate(prompt, { maxNewTokens: STEPS });
      const ms = performance.now() - t0;
      if (out.shape[1] !== P + STEPS) throw new Error('generate returned ' + out.shape[1]);
      cell.generateWallMs.push(ms);
      cell.generateTokS.push(STEPS / (ms / 1000)); // new tokens / whole call (prefill included)
    }
    process.stderr.write(`  t${threads} ${precision} rep ${r}: prefill ${cell.prefillTokS.at(-1)!.toFixed(1)} tok/s, decode ${cell.decodeTokS.at(-1)!.toFixed(2)} tok/s\n`);
  }
  return cell;
}

async function main(): Promise<void> {
  const dir = path.resolve(args.dir ?? DEFAULT_DIR);
  const model = (await AutoModelForCausalLM.fromPretrained(dir)) as LlamaForCausalLM;
  model.useBackend('native');
  const ni = info().native;
  const bf16 = ni?.bf16 === true;
  const precisions = (args.precisions?.split(',') ?? (bf16 ? ['float32', 'bfloat16', 'int8'] : ['float32', 'int8'])) as Precision[];
  for (const p of precisions) {
    if (p !== 'float32' && p !== 'bfloat16' && p !== 'int8') throw new RangeError(`run.ts: --precisions takes float32, bfloat16 and int8, got ${p}`);
  }
  const prompt = new Tensor(promptIds(P, model.config.vocabSize), [1, P], 'int32');
  const bw: Record<number, ReturnType<typeof bandwidth>> = {};
  const cells: Cell[] = [];
  for (const t of threadList) {
    setNumThreads(t);
    bw[t] = bandwidth();
    process.stderr.write(`bandwidth t${t}: best ${bw[t]!.bestGBs.toFixed(1)} GB/s\n`);
    for (const p of precisions) cells.push(runCell(model, t, p, prompt));
    // again after the cells, to see drift
    const again = bandwidth();
    bw[t] = { bestGBs: Math.max(bw[t]!.bestGBs, again.bestGBs), medianGBs: median([...bw[t]!.runsGBs, ...again.runsGBs]), runsGBs: [...bw[t]!.runsGBs, ...again.runsGBs] };
  }
  // q8_0: llama.cpp's blocks of 32 int8 weights with an fp16 scale (34 bytes per 32 weights), for its Q8_0 rows.
  const wb = {
    float32: weightBytesPerToken(model, 4), bfloat16: weightBytesPerToken(model, 2), int8: weightBytesPerToken(model, 1, 8),
    q8_0: weightBytesPerToken(model, 34 / 32),
  };
  // JS backend: a few decode steps after a short prompt (it is slow).
  let js: { promptLen: number; steps: number; decodeTokS: number; stepMs: number[] } | null = null;
  if (!args['no-js']) {
    model.useWeightPrecision('float32');
    model.useBackend('js');
    const cache = model.createCache(1, 16);
    let next = argmax(model.forward(new Tensor(prompt.data.slice(0, 8), [1, 8], 'int32'), { cache, lastOnly: true }));
    const stepMs: number[] = [];
    for (let s = 0; s < 3; s++) {
      const ts = performance.now();
      next = argmax(model.forward(new Tensor(Int32Array.of(next), [1, 1], 'int32'), { cache, lastOnly: true }));
      stepMs.push(performance.now() - ts);
    }
    js = { promptLen: 8, steps: 3, decodeTokS: 1000 / median(stepMs), stepMs };
    model.useBackend('native');
  }
  const result = {
    engine: 'attnode', when: new Date().toISOString(), loadavgAtEnd: (await import('node:os')).loadavg(), native: ni, prompt: P, steps: STEPS, reps,
    weightBytesPerToken: wb, bandwidth: bw, cells, js,
  };
  const text = JSON.stringify(result, null, 1);
  if (args.json) fs.writeFileSync(args.json, text);
  console.log(text);
}

void main();
