/**
 * `npm run bench:train`: one training step (forward + CrossEntropyLoss, loss.backward(), Adam.step(), zeroGrad) of
 * the seed article's TransformerModel (nn.Embedding → nn.Transformer → nn.Linear), attnode against PyTorch 1.13 on
 * the same CPU, and attnode's native backward against its TypeScript backend's (issue 16's targets).
 *
 * Models (vocab 1000, batch 8 × 32 tokens for source and target, causal target mask, dropout 0.1 in train mode):
 *   small    d_model 256, 4 heads, 2 + 2 layers, feed-forward 1024 (the target: attnode ≤ 0.6× PyTorch)
 *   default  d_model 512, 8 heads, 6 + 6 layers, feed-forward 2048 (nn.Transformer's defaults)
 *
 * Every measurement is its own process (bench/train/step-child.ts, bench/train/step_torch.py): warm-up steps, then
 * timed steps, per-step times of the whole step and of each phase. Engines alternate within every round (the order
 * flips each round), so the drift of a shared machine hits both alike; the report gives per-round medians, their
 * median and spread, the ratio of each round's adjacent pair, the CPU, the measured 1-core FMA peak (the probe of
 * bench/gemm, bench/gemm/fma_peak.h) and the load average beside every figure.
 *
 *   npm run bench:train -- [--rounds 5] [--threads 1,2] [--models small,default] [--ts-rounds 2] [--ts-steps 2]
 *                          [--torch-blas <dir>] [--out bench/results] [--name <cpu slug>] [--quick]
 *
 * PyTorch's products run on the libblas.so.3 its process loads (Debian's torch is built with BLAS_INFO=generic).
 * Debian's default is the netlib reference BLAS (~2 GFLOP/s): against it any comparison is meaningless, so the run
 * stops unless torch loaded an optimised BLAS. `apt-get install libopenblas0-pthread` makes OpenBLAS the system's
 * libblas.so.3; without touching the system, `apt-get download libopenblas0-pthread && dpkg-deb -x <deb> <dir>` and
 * `--torch-blas <dir>/usr/lib/x86_64-linux-gnu/openblas-pthread` put it first on the torch child's library path.
 * OpenBLAS's own thread count is set to --threads (OPENBLAS_NUM_THREADS): torch.set_num_threads does not reach it.
 *
 * Writes <out>/train-step-<name>.md and .json.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { measureFmaPeak } from '../fma-peak';
import { TORCH_PYTHON, torchEnv } from '../peers/torch';

interface ModelConfig {
  vocab: number;
  dModel: number;
  nhead: number;
  enc: number;
  dec: number;
  ff: number;
  batch: number;
  seq: number;
  warmup: number;
  steps: number;
}

const MODELS: Record<string, ModelConfig> = {
  small: { vocab: 1000, dModel: 256, nhead: 4, enc: 2, dec: 2, ff: 1024, batch: 8, seq: 32, warmup: 3, steps: 10 },
  default: { vocab: 1000, dModel: 512, nhead: 8, enc: 6, dec: 6, ff: 2048, batch: 8, seq: 32, warmup: 2, steps: 4 },
};

const PHASES = ['forward', 'backward', 'optimizer', 'zeroGrad'] as const;
type Phase = (typeof PHASES)[number];

/** What a child prints. */
interface ChildResult {
  ok: boolean;
  engine: string;
  threads: number;
  stepMs: number[];
  cpuMs: number[];
  phasesMs: Record<Phase, number[]>;
  firstLoss: number;
  lastLoss: number;
  peakRssKiB: number;
  version?: string;
  blas?: { libraries: string[]; openblasThreads: number | null };
  backend?: string;
}

/** One child run as recorded. */
interface Run {
  round: number;
  engine: 'attnode' | 'pytorch' | 'attnode-js';
  model: string;
  threads: number;
  /** Median over the process's timed steps. */
  stepMs: number;
  /** CPU time of a step (all threads of the process), median over its timed steps. */
  cpuMs: number;
  phasesMs: Record<Phase, number>;
  peakRssMiB: number;
  firstLoss: number;
  load1: number;
}

const root = resolve(__dirname, '..', '..');
const ROOT_REL = (p: string): string => join(root, p);

function median(xs: readonly number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

function positiveInt(name: string, text: string): number {
  const v = Number(text);
  if (!Number.isInteger(v) || v < 0) throw new RangeError(`bench:train: --${name} must be a non-negative integer, got '${text}'`);
  return v;
}

function childArgs(c: ModelConfig, threads: number, steps = c.steps, warmup = c.warmup): string[] {
  return [
    '--vocab', c.vocab, '--d-model', c.dModel, '--nhead', c.nhead, '--enc', c.enc, '--dec', c.dec, '--ff', c.ff,
    '--batch', c.batch, '--seq', c.seq, '--threads', threads, '--warmup', warmup, '--steps', steps,
  ].map(String);
}

/** Runs a child; its last stdout line is its JSON result. */
function runChild(cmd: string, args: string[], env: NodeJS.ProcessEnv): ChildResult {
  const r = spawnSync(cmd, args, { cwd: root, env, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) throw new Error(`bench:train: ${cmd} ${args.join(' ')}: ${r.error.message}`);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) {
    throw new Error(`bench:train: ${cmd} ${args.join(' ')} exited ${r.status}:\n${r.stderr.slice(-2000)}`);
  }
  return JSON.parse(line) as ChildResult;
}

const { values: a } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    threads: { type: 'string', default: '1,2' },
    models: { type: 'string', default: 'small,default' },
    'ts-rounds': { type: 'string', default: '2' },
    'ts-steps': { type: 'string', default: '2' },
    'torch-blas': { type: 'string', default: process.env.ATTNODE_BENCH_TORCH_BLAS },
    out: { type: 'string', default: 'bench/results' },
    name: { type: 'string' },
    quick: { type: 'boolean', default: false },
  },
  strict: true,
});
const rounds = a.quick ? 1 : positiveInt('rounds', a.rounds!);
const threadCounts = a.threads!.split(',').map((t) => positiveInt('threads', t));
const modelNames = (a.quick ? 'small' : a.models!).split(',');
for (const m of modelNames) if (!MODELS[m]) throw new RangeError(`bench:train: --models: unknown model '${m}' (known: ${Object.keys(MODELS).join(', ')})`);
const tsRounds = Math.min(rounds, a.quick ? 1 : positiveInt('ts-rounds', a['ts-rounds']!));
const tsSteps = Math.max(1, positiveInt('ts-steps', a['ts-steps']!));
const cpuModel = cpus()[0]?.model.trim() ?? 'unknown CPU';
const slug = a.name ?? cpuModel.toLowerCase().replace(/\(r\)|\(tm\)|processor|cpu/g, '').trim().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');

const tsx = ROOT_REL('node_modules/.bin/tsx');
const attnodeEnv = { ...process.env };
delete attnodeEnv.ATTNODE_NUM_THREADS;
// attnode's pool workers run at nice +5 by default (a server's event loop preempts them); PyTorch's threads run at
// the caller's priority. On a machine shared with other jobs that alone moves the 2-thread figures, so both engines
// run at the same priority here (on idle cores the setting changes nothing). Unless the caller set it.
attnodeEnv.ATTNODE_WORKER_NICE ??= '0';
const load = (): number => Number(loadavg()[0]!.toFixed(2));
const say = (s: string): void => void process.stderr.write(s + '\n');

/** The torch child's environment at `threads`: OpenBLAS sized to it, and the --torch-blas directory first. */
function torchChildEnv(threads: number): NodeJS.ProcessEnv {
  const env = torchEnv();
  env.OPENBLAS_NUM_THREADS = String(threads);
  if (a['torch-blas']) env.LD_LIBRARY_PATH = [resolve(a['torch-blas']), env.LD_LIBRARY_PATH].filter(Boolean).join(':');
  return env;
}
let torchBlas: string[] | null = null;
/** Stops the run when PyTorch's products ran on the reference BLAS (see the module comment). */
function checkTorchBlas(r: ChildResult, threads: number): void {
  const libs = r.blas?.libraries ?? [];
  torchBlas ??= libs;
  const optimised = libs.some((l) => /openblas|mkl|blis|atlas/i.test(l));
  if (!optimised) {
    throw new Error(`bench:train: PyTorch ran its products on ${libs.join(', ') || 'an unknown BLAS'}, not an optimised BLAS: ` +
      'a comparison with it means nothing. apt-get install libopenblas0-pthread, or pass --torch-blas <dir> with an ' +
      'extracted libopenblas0-pthread (see the comment at the top of bench/train/step.ts)');
  }
  if (r.blas?.openblasThreads !== null && r.blas?.openblasThreads !== undefined && r.blas.openblasThreads !== threads) {
    throw new Error(`bench:train: PyTorch's OpenBLAS ran ${r.blas.openblasThreads} threads, expected ${threads}`);
  }
}

const torchVersion = spawnSync(TORCH_PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', env: torchEnv() });
if (torchVersion.status !== 0) {
  throw new Error(`bench:train: PyTorch is needed (${TORCH_PYTHON}: ${torchVersion.stderr.trim().split('\n').pop()}); apt-get install python3-torch`);
}

const startedAt = new Date().toISOString();
const loadStart = loadavg().map((l) => Number(l.toFixed(2)));
const peakBefore = measureFmaPeak(say);
say(`bench:train: ${cpuModel}, FMA peak ${peakBefore ?? '?'} GFLOP/s (1 core), load ${loadStart.join(' ')}; ${rounds} rounds`);

const runs: Run[] = [];
function record(round: number, engine: Run['engine'], model: string, threads: number, r: ChildResult, loadBefore: number): Run {
  const run: Run = {
    round, engine, model, threads, stepMs: median(r.stepMs), cpuMs: median(r.cpuMs),
    phasesMs: Object.fromEntries(PHASES.map((p) => [p, median(r.phasesMs[p])])) as Record<Phase, number>,
    peakRssMiB: r.peakRssKiB / 1024, firstLoss: r.firstLoss, load1: loadBefore,
  };
  runs.push(run);
  say(`  round ${round + 1} ${model} ${threads}t ${engine.padEnd(10)} step ${run.stepMs.toFixed(1)} ms ` +
    `(fwd ${run.phasesMs.forward.toFixed(1)}, bwd ${run.phasesMs.backward.toFixed(1)}, adam ${run.phasesMs.optimizer.toFixed(1)}) load ${loadBefore}`);
  return run;
}

for (let round = 0; round < rounds; round++) {
  for (const model of modelNames) {
    const c = MODELS[model]!;
    for (const threads of threadCounts) {
      const order: ('attnode' | 'pytorch')[] = (round + threads) % 2 === 0 ? ['attnode', 'pytorch'] : ['pytorch', 'attnode'];
      for (const engine of order) {
        const l = load();
        const r = engine === 'attnode'
          ? runChild(tsx, [ROOT_REL('bench/train/step-child.ts'), ...childArgs(c, threads)], attnodeEnv)
          : runChild(TORCH_PYTHON, [ROOT_REL('bench/train/step_torch.py'), ...childArgs(c, threads)], torchChildEnv(threads));
        if (engine === 'pytorch') checkTorchBlas(r, threads);
        record(round, engine, model, threads, r, l);
      }
    }
  }
  if (round < tsRounds && modelNames.includes('small')) {
    // The TypeScript backend's step (1 thread by nature), beside the native 1-thread runs of this round.
    const l = load();
    const r = runChild(tsx, [ROOT_REL('bench/train/step-child.ts'), ...childArgs(MODELS.small!, 1, tsSteps, 1), '--backend', 'js'], attnodeEnv);
    record(round, 'attnode-js', 'small', 1, r, l);
  }
}
const peakAfter = measureFmaPeak(say);
const loadEnd = loadavg().map((l) => Number(l.toFixed(2)));

// ---------------------------------------------------------------------------
// Summary

/** GEMM flops of one step (forward 2·m·n·k per product, backward twice that), for the fraction of peak. */
function stepGflop(c: ModelConfig): number {
  const t = c.batch * c.seq;
  const d = c.dModel;
  const linears = c.enc * (4 * d * d + 2 * d * c.ff) + c.dec * (8 * d * d + 2 * d * c.ff) + d * c.vocab;
  // Per attention call: scores and P·V, 2 · 2 · batch · L · S · d.
  const attention = (c.enc + 2 * c.dec) * 4 * c.batch * c.seq * c.seq * d;
  return (3 * (2 * t * linears) + 3 * attention) / 1e9;
}

interface Row {
  model: string;
  threads: number;
  attnodeMs: number;
  attnodeRange: [number, number];
  torchMs: number;
  torchRange: [number, number];
  ratio: number;
  ratioRange: [number, number];
  attnodePhases: Record<Phase, number>;
  torchPhases: Record<Phase, number>;
  attnodeGflops: number;
  torchGflops: number;
  attnodeRssMiB: number;
  torchRssMiB: number;
  attnodeCpuMs: number;
  torchCpuMs: number;
  loads: number[];
}

const pick = (engine: Run['engine'], model: string, threads: number): Run[] =>
  runs.filter((r) => r.engine === engine && r.model === model && r.threads === threads);
const range = (xs: number[]): [number, number] => [Math.min(...xs), Math.max(...xs)];
const rows: Row[] = [];
for (const model of modelNames) {
  for (const threads of threadCounts) {
    const at = pick('attnode', model, threads);
    const pt = pick('pytorch', model, threads);
    const ratios = at.map((r) => r.stepMs / pt.find((p) => p.round === r.round)!.stepMs);
    const phases = (rs: Run[]): Record<Phase, number> => Object.fromEntries(PHASES.map((p) => [p, median(rs.map((r) => r.phasesMs[p]))])) as Record<Phase, number>;
    const gf = stepGflop(MODELS[model]!);
    const atMs = median(at.map((r) => r.stepMs));
    const ptMs = median(pt.map((r) => r.stepMs));
    rows.push({
      model, threads, attnodeMs: atMs, attnodeRange: range(at.map((r) => r.stepMs)), torchMs: ptMs,
      torchRange: range(pt.map((r) => r.stepMs)), ratio: median(ratios), ratioRange: range(ratios),
      attnodePhases: phases(at), torchPhases: phases(pt), attnodeGflops: gf / (atMs / 1e3), torchGflops: gf / (ptMs / 1e3),
      attnodeRssMiB: median(at.map((r) => r.peakRssMiB)), torchRssMiB: median(pt.map((r) => r.peakRssMiB)),
      attnodeCpuMs: median(at.map((r) => r.cpuMs)), torchCpuMs: median(pt.map((r) => r.cpuMs)),
      loads: [...at, ...pt].map((r) => r.load1),
    });
  }
}
const js = runs.filter((r) => r.engine === 'attnode-js');
const native1 = runs.filter((r) => r.engine === 'attnode' && r.model === 'small' && r.threads === 1 && js.some((j) => j.round === r.round));
const tsVsNative = js.length > 0 && native1.length > 0 ? {
  jsBackwardMs: median(js.map((r) => r.phasesMs.backward)),
  nativeBackwardMs: median(native1.map((r) => r.phasesMs.backward)),
  jsStepMs: median(js.map((r) => r.stepMs)),
  nativeStepMs: median(native1.map((r) => r.stepMs)),
  backwardRatios: js.map((j) => j.phasesMs.backward / native1.find((n) => n.round === j.round)!.phasesMs.backward),
  loads: [...js, ...native1].map((r) => r.load1),
} : null;

const f1 = (x: number): string => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
const f2 = (x: number): string => x.toFixed(2);
const cfgLine = (m: string): string => {
  const c = MODELS[m]!;
  return `${m}: vocab ${c.vocab}, d_model ${c.dModel}, ${c.nhead} heads, ${c.enc} + ${c.dec} layers, feed-forward ${c.ff}, ` +
    `batch ${c.batch} × ${c.seq} tokens, ${c.warmup} warm-up + ${c.steps} timed steps per process, ${f1(stepGflop(c))} GFLOP of products per step`;
};
const md: string[] = [
  `# Training step: attnode vs PyTorch ${torchVersion.stdout.trim()} (${cpuModel})`,
  '',
  `\`npm run bench:train\` (${rounds} round${rounds === 1 ? '' : 's'}), ${startedAt}. One step = forward + nn.CrossEntropyLoss, ` +
    'loss.backward(), optim.Adam(lr 1e-3).step(), zeroGrad (gradients to None), the seed article\'s TransformerModel in train ' +
    'mode (dropout 0.1), causal target mask. Each engine in its own process, alternating within every round.',
  '',
  `- CPU: ${cpuModel}, ${cpus().length} logical CPUs; FMA peak (measured, 1 core, bench/gemm/fma_peak.h): ` +
    `${peakBefore ?? '?'} GFLOP/s before, ${peakAfter ?? '?'} after (the machine's neighbours move it)`,
  `- PyTorch's BLAS: ${(torchBlas ?? []).join(', ')} (OpenBLAS threads = the row's threads; torch.set_num_threads for the rest)`,
  `- attnode's workers at ATTNODE_WORKER_NICE=${attnodeEnv.ATTNODE_WORKER_NICE} (PyTorch's threads at the caller's priority)`,
  `- Load average (1, 5, 15 min): ${loadStart.join(', ')} at the start, ${loadEnd.join(', ')} at the end; each row gives the ` +
    '1-minute load seen before its processes started',
  ...modelNames.map((m) => `- ${cfgLine(m)}`),
  '',
  '| model | threads | attnode ms (range) | PyTorch ms (range) | attnode / PyTorch (range of rounds) | attnode GFLOP/s | PyTorch GFLOP/s | load (1 min) |',
  '|---|---:|---:|---:|---:|---:|---:|---|',
  ...rows.map((r) => `| ${r.model} | ${r.threads} | ${f1(r.attnodeMs)} (${f1(r.attnodeRange[0])}–${f1(r.attnodeRange[1])}) | ` +
    `${f1(r.torchMs)} (${f1(r.torchRange[0])}–${f1(r.torchRange[1])}) | **${f2(r.ratio)}×** (${f2(r.ratioRange[0])}–${f2(r.ratioRange[1])}) | ` +
    `${f1(r.attnodeGflops)} | ${f1(r.torchGflops)} | ${f2(Math.min(...r.loads))}–${f2(Math.max(...r.loads))} |`),
  '',
  'Phases (median ms per step): forward includes the loss.',
  '',
  '| model | threads | engine | forward | backward | Adam step | zeroGrad | CPU ms per step (all threads) | peak RSS MiB |',
  '|---|---:|---|---:|---:|---:|---:|---:|---:|',
  ...rows.flatMap((r) => [
    `| ${r.model} | ${r.threads} | attnode | ${PHASES.map((p) => f1(r.attnodePhases[p])).join(' | ')} | ${f1(r.attnodeCpuMs)} | ${r.attnodeRssMiB.toFixed(0)} |`,
    `| ${r.model} | ${r.threads} | PyTorch | ${PHASES.map((p) => f1(r.torchPhases[p])).join(' | ')} | ${f1(r.torchCpuMs)} | ${r.torchRssMiB.toFixed(0)} |`,
  ]),
  '',
];
if (tsVsNative) {
  md.push(
    '## Native backward vs the TypeScript backend\'s',
    '',
    `Small model, 1 thread, ${tsSteps} timed step(s) of the TS backend per round in ${js.length} round(s), beside that round's native run: ` +
      `backward ${f1(tsVsNative.jsBackwardMs)} ms vs ${f1(tsVsNative.nativeBackwardMs)} ms, ` +
      `**${f1(tsVsNative.jsBackwardMs / tsVsNative.nativeBackwardMs)}×** (per round: ${tsVsNative.backwardRatios.map(f1).join(', ')}×); ` +
      `whole step ${f1(tsVsNative.jsStepMs)} vs ${f1(tsVsNative.nativeStepMs)} ms (${f1(tsVsNative.jsStepMs / tsVsNative.nativeStepMs)}×); ` +
      `load ${f2(Math.min(...tsVsNative.loads))}–${f2(Math.max(...tsVsNative.loads))}.`,
    '',
  );
}
md.push('## Every run', '', '| round | model | threads | engine | step ms | CPU ms | forward | backward | Adam | load |', '|---:|---|---:|---|---:|---:|---:|---:|---:|---:|',
  ...runs.map((r) => `| ${r.round + 1} | ${r.model} | ${r.threads} | ${r.engine} | ${f1(r.stepMs)} | ${f1(r.cpuMs)} | ${f1(r.phasesMs.forward)} | ${f1(r.phasesMs.backward)} | ${f1(r.phasesMs.optimizer)} | ${f2(r.load1)} |`),
  '');

const outDir = resolve(a.out!);
mkdirSync(outDir, { recursive: true });
const base = join(outDir, `train-step-${slug}`);
writeFileSync(`${base}.md`, md.join('\n'));
writeFileSync(`${base}.json`, JSON.stringify({
  startedAt, cpu: cpuModel, logicalCpus: cpus().length, torch: torchVersion.stdout.trim(), torchBlas, fmaPeakGflops1Core: { before: peakBefore, after: peakAfter },
  loadAverage: { start: loadStart, end: loadEnd }, models: Object.fromEntries(modelNames.map((m) => [m, { ...MODELS[m], gflopPerStep: stepGflop(MODELS[m]!) }])),
  rows, tsVsNative, runs,
}, null, 1) + '\n');
console.log(md.join('\n'));
say(`wrote ${base}.md and .json`);
