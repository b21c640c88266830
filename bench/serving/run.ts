/**
 * Continuous-batching benchmark (issue 15): GenerationEngine on a Llama-style
 * model (SmolLM-135M shape, seeded random weights built in memory as
 * bench/llm/make_model.ts makes them), native backend, per thread count:
 *
 * 1. Aggregate decode tokens/s with 1, 2, 4, 8 concurrent streams: the
 *    streams start together (distinct prompts of --prompt tokens, --new-tokens
 *    each); the rate counts the tokens produced while every stream is
 *    decoding (from the last stream's first token to the first stream's
 *    last), so prompt reading is not in it. Goal: 8 streams >= 4x one.
 * 2. Time to first token under load: at each concurrency level, that many
 *    closed-loop clients each send --ttft-requests requests in a row
 *    (prompts of 64-192 tokens, 32 new tokens); p50/p99 of submit -> first
 *    token.
 * 3. Event-loop delay while a long prompt (--long-prompt tokens) arrives as 4
 *    streams decode: perf_hooks.monitorEventLoopDelay from its submission to
 *    its first token (target p99 < 10 ms), with the running streams' longest
 *    gap between tokens meanwhile; with prompt chunks of --chunk tokens and,
 *    for contrast, the whole prompt in one step.
 *
 * Also records the CPU, the native GEMM throughput and memory bandwidth
 * measured in-process (context for the figures).
 *
 *   npx tsx bench/serving/run.ts [--threads 1,2] [--streams 1,2,4,8] [--prompt 32] [--new-tokens 64]
 *     [--ttft-levels 1,2,4,8] [--ttft-requests 4] [--long-prompt 512] [--chunk 64] [--weights float32|bfloat16]
 *     [--reps 2] [--json out.json] [--quick]
 *
 * `--quick` is a smoke run (2 layers, few tokens): it checks the harness, its figures mean nothing.
 * Prints one JSON object (and writes it with --json); bench/serving/report.ts renders it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { execSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { info, ops, setNumThreads, Tensor, LlamaForCausalLM } from '../../lib';
import { llamaConfigFromJson } from '../../lib/models/auto';
import { GenerationEngine } from '../../lib/serving/engine';
import { SMOLLM_CONFIG, makeWeights } from '../llm/make_model';
import { promptIds } from '../llm/prompt';
import { median, pct } from './report';

const { values: args } = parseArgs({
  options: {
    threads: { type: 'string', default: '1,2' },
    streams: { type: 'string', default: '1,2,4,8' },
    prompt: { type: 'string', default: '32' },
    'new-tokens': { type: 'string', default: '64' },
    'ttft-levels': { type: 'string', default: '1,2,4,8' },
    'ttft-requests': { type: 'string', default: '4' },
    'long-prompt': { type: 'string', default: '512' },
    chunk: { type: 'string', default: '64' },
    weights: { type: 'string', default: 'float32' },
    reps: { type: 'string', default: '2' },
    json: { type: 'string' },
    quick: { type: 'boolean', default: false },
  },
});
const quick = args.quick!;
const list = (s: string): number[] => s.split(',').map(Number);
const THREADS = list(args.threads!);
const STREAMS = list(args.streams!);
const PROMPT = quick ? 8 : Number(args.prompt);
const NEW = quick ? 8 : Number(args['new-tokens']);
const TTFT_LEVELS = list(args['ttft-levels']!);
const TTFT_REQUESTS = quick ? 2 : Number(args['ttft-requests']);
const LONG = quick ? 64 : Number(args['long-prompt']);
const CHUNK = quick ? 16 : Number(args.chunk);
const REPS = quick ? 1 : Number(args.reps);
const WEIGHTS = args.weights as 'float32' | 'bfloat16';
const MAX_RUNNING = Math.max(8, ...STREAMS, ...TTFT_LEVELS);

const say = (s: string): boolean => process.stderr.write(s + '\n');
function buildModel(): LlamaForCausalLM {
  const cfg = quick ? { ...SMOLLM_CONFIG, num_hidden_layers: 2 } : SMOLLM_CONFIG;
  const model = new LlamaForCausalLM(llamaConfigFromJson(cfg));
  const weights = makeWeights(1);
  const sd: Record<string, Tensor> = {};
  for (const [k, t] of Object.entries(weights)) {
    const m = /^model\.layers\.(\d+)\./.exec(k);
    if (!m || Number(m[1]) < cfg.num_hidden_layers) sd[k] = t;
  }
  model.loadStateDict(sd);
  model.useBackend('native');
  model.useWeightPrecision(WEIGHTS);
  return model;
}

/** Native GEMM GFLOP/s on a prompt-sized [512, 576] × [576, 1536] product, best of 5 (context for the figures). */
function gemmGflops(): number {
  const a = new Tensor(new Float32Array(512 * 576).fill(0.01), [512, 576], 'float32');
  const w = new Tensor(new Float32Array(1536 * 576).fill(0.02), [1536, 576], 'float32');
  ops.linear(a, w, null, { cacheWeight: true });
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    ops.linear(a, w, null, { cacheWeight: true });
    best = Math.min(best, performance.now() - t0);
  }
  return (2 * 512 * 576 * 1536) / (best / 1000) / 1e9;
}

/** Streaming bandwidth: out = a + 0 over 256 MiB, read + written bytes / s, best of 3. */
function bandwidthGBs(): number {
  const n = (quick ? 16 : 256) * 1024 * 256;
  const a = new Tensor(new Float32Array(n).fill(1), [n], 'float32');
  const b = new Tensor(new Float32Array(n), [n], 'float32');
  ops.add(a, 0, { out: b });
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    ops.add(a, 0, { out: b });
    best = Math.min(best, performance.now() - t0);
  }
  return (2 * n * 4) / (best / 1000) / 1e9;
}

/** Prompt `i` of `len` tokens (distinct per i). */
const prompt = (len: number, i: number, vocab: number): number[] => Array.from(promptIds(len, vocab, 100 + i));

interface Timed { submit: number; times: number[] }

async function run(engine: GenerationEngine, promptTokens: number[], maxNewTokens: number): Promise<Timed> {
  const submit = performance.now();
  const times: number[] = [];
  for await (const _ of engine.generate({ promptIds: promptTokens, maxNewTokens })) times.push(performance.now());
  return { submit, times };
}

interface DecodeCell { streams: number; aggregateTokS: number[]; perStreamItlMsMedian: number[]; windowMs: number[]; steps: number[] }

/** Phase 1: c streams started together; tokens/s while all of them decode. */
async function decodeCell(engine: GenerationEngine, c: number, vocab: number): Promise<DecodeCell> {
  const cell: DecodeCell = { streams: c, aggregateTokS: [], perStreamItlMsMedian: [], windowMs: [], steps: [] };
  for (let r = 0; r < REPS; r++) {
    const steps0 = engine.stats().steps;
    const runs = await Promise.all(Array.from({ length: c }, (_, i) => run(engine, prompt(PROMPT, i + 10 * r, vocab), NEW)));
    const start = Math.max(...runs.map((x) => x.times[0]!));
    const end = Math.min(...runs.map((x) => x.times.at(-1)!));
    const inWindow = runs.reduce((n, x) => n + x.times.filter((t) => t > start && t <= end).length, 0);
    cell.aggregateTokS.push(inWindow / ((end - start) / 1000));
    cell.windowMs.push(end - start);
    cell.perStreamItlMsMedian.push(median(runs.flatMap((x) => x.times.slice(1).map((t, k) => t - x.times[k]!))));
    cell.steps.push(engine.stats().steps - steps0);
  }
  return cell;
}

interface TtftCell { clients: number; requests: number; ttftMs: number[]; p50: number; p99: number; itlP50: number; itlP99: number; tokS: number; reqS: number }

/** Phase 2: `clients` closed-loop clients, TTFT of every request. */
async function ttftCell(engine: GenerationEngine, clients: number, vocab: number): Promise<TtftCell> {
  const ttft: number[] = [];
  const itl: number[] = [];
  let tokens = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, async (_, ci) => {
    for (let k = 0; k < TTFT_REQUESTS; k++) {
      const len = 64 + ((ci * 37 + k * 53) % 129);
      const r = await run(engine, prompt(quick ? 8 : len, 1000 + ci * 100 + k, vocab), quick ? 4 : 32);
      ttft.push(r.times[0]! - r.submit);
      r.times.slice(1).forEach((t, j) => itl.push(t - r.times[j]!));
      tokens += r.times.length;
    }
  }));
  const s = (performance.now() - t0) / 1000;
  return {
    clients, requests: ttft.length, ttftMs: ttft, p50: pct(ttft, 50), p99: pct(ttft, 99), itlP50: pct(itl, 50), itlP99: pct(itl, 99),
    tokS: tokens / s, reqS: ttft.length / s,
  };
}

interface LoopCell { chunk: number; longPrompt: number; streams: number; ttftMs: number; loopP50Ms: number; loopP99Ms: number; loopMaxMs: number; maxGapMs: number; medianGapMs: number }

/** Phase 3: a long prompt arrives while 4 streams decode; event-loop delay until its first token. */
async function loopCell(model: LlamaForCausalLM, chunk: number, vocab: number): Promise<LoopCell> {
  const engine = new GenerationEngine(model, { maxRunning: 8, prefillChunk: chunk, kvCacheBytes: kvBytesFor(model, 8 * (LONG + 600)) });
  const streams = 4;
  const gaps: number[] = [];
  let measuring = false;
  let longFirst = -1;
  let started = 0;
  let ready!: () => void;
  const allDecoding = new Promise<void>((r) => (ready = r));
  const runners = Array.from({ length: streams }, async (_, i) => {
    let last = -1;
    let n = 0;
    for await (const _ of engine.generate({ promptIds: prompt(PROMPT, 500 + i, vocab), maxNewTokens: quick ? 200 : 600 })) {
      const now = performance.now();
      if (measuring && last >= 0) gaps.push(now - last);
      last = now;
      if (++n === 2 && ++started === streams) ready();
      if (longFirst >= 0) break; // the long prompt got its first token: done
    }
  });
  await allDecoding;
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  measuring = true;
  const t0 = performance.now();
  for await (const _ of engine.generate({ promptIds: prompt(LONG, 900, vocab), maxNewTokens: 1 })) longFirst = performance.now();
  measuring = false;
  h.disable();
  await Promise.all(runners);
  await engine.close();
  return {
    chunk, longPrompt: LONG, streams, ttftMs: longFirst - t0,
    loopP50Ms: h.percentile(50) / 1e6, loopP99Ms: h.percentile(99) / 1e6, loopMaxMs: h.max / 1e6,
    maxGapMs: Math.max(...gaps), medianGapMs: median(gaps),
  };
}

function kvBytesFor(model: LlamaForCausalLM, positions: number): number {
  const c = model.config;
  return positions * c.numHiddenLayers * 2 * ((c.hiddenSize / c.numAttentionHeads) * c.numKeyValueHeads) * 4;
}

async function main(): Promise<void> {
  // The machine may be shared: its load average is context for every figure (recorded at the start, per thread
  // count and at the end).
  const loadavgAtStart = os.loadavg();
  const t00 = performance.now();
  const model = buildModel();
  const vocab = model.config.vocabSize;
  say(`model built (${((performance.now() - t00) / 1000).toFixed(1)} s), ${model.config.numHiddenLayers} layers, weights ${WEIGHTS}`);
  let cpu = os.cpus()[0]?.model ?? 'unknown';
  try {
    cpu = execSync('lscpu').toString().match(/Model name:\s*(.+)/)?.[1]?.trim() ?? cpu;
  } catch {
    // lscpu missing: os.cpus() names it
  }
  const perThreads = [];
  for (const threads of THREADS) {
    setNumThreads(threads);
    const loadavg = os.loadavg();
    const gemm = gemmGflops();
    const bw = bandwidthGBs();
    say(`threads ${threads}: GEMM ${gemm.toFixed(1)} GFLOP/s, bandwidth ${bw.toFixed(1)} GB/s`);
    // KV room for every stream's prompt and output, plus slack.
    const engine = new GenerationEngine(model, { maxRunning: MAX_RUNNING, prefillChunk: CHUNK, kvCacheBytes: kvBytesFor(model, MAX_RUNNING * 512) });
    await run(engine, prompt(PROMPT, 999, vocab), 4); // warm-up: weights packed, pool touched
    const decode: DecodeCell[] = [];
    for (const c of STREAMS) {
      decode.push(await decodeCell(engine, c, vocab));
      say(`  ${c} streams: ${median(decode.at(-1)!.aggregateTokS).toFixed(1)} tok/s aggregate`);
    }
    const ttft: TtftCell[] = [];
    for (const c of TTFT_LEVELS) {
      ttft.push(await ttftCell(engine, c, vocab));
      const t = ttft.at(-1)!;
      say(`  TTFT with ${c} clients: p50 ${t.p50.toFixed(0)} ms, p99 ${t.p99.toFixed(0)} ms (${t.requests} requests)`);
    }
    await engine.close();
    const loop: LoopCell[] = [];
    for (const chunk of [CHUNK, LONG]) {
      loop.push(await loopCell(model, chunk, vocab));
      const l = loop.at(-1)!;
      say(`  long prompt ${LONG}, chunk ${chunk}: loop p99 ${l.loopP99Ms.toFixed(2)} ms, max ${l.loopMaxMs.toFixed(1)} ms, streams' max gap ${l.maxGapMs.toFixed(0)} ms, TTFT ${l.ttftMs.toFixed(0)} ms`);
    }
    const one = median(decode.find((d) => d.streams === 1)?.aggregateTokS ?? []);
    const eight = median(decode.find((d) => d.streams === 8)?.aggregateTokS ?? []);
    perThreads.push({ threads, loadavgAtStart: loadavg, gemmGflops: gemm, bandwidthGBs: bw, decode, ttft, loop, speedup8over1: eight / one });
  }
  const result = {
    bench: 'serving', when: new Date().toISOString(), quick, cpu, logicalCpus: os.cpus().length, node: process.version,
    native: info().native, loadavgAtStart, loadavgAtEnd: os.loadavg(),
    model: { shape: 'SmolLM-135M', layers: model.config.numHiddenLayers, hidden: model.config.hiddenSize, vocab, weights: WEIGHTS },
    config: { prompt: PROMPT, newTokens: NEW, ttftRequests: TTFT_REQUESTS, longPrompt: LONG, chunk: CHUNK, reps: REPS, maxRunning: MAX_RUNNING },
    perThreads,
  };
  const text = JSON.stringify(result, null, 1);
  if (args.json) fs.writeFileSync(args.json, text);
  console.log(text);
}

void main();
