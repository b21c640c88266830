/**
 * attnode's half of `npm run bench:train`: training steps of the seed article's TransformerModel, one process per
 * measurement (bench/train/step.ts starts it, alternating with PyTorch's twin `step_torch.py`).
 *
 *   npx tsx bench/train/step-child.ts --vocab 1000 --d-model 256 --nhead 4 --enc 2 --dec 2 --ff 1024 --batch 8
 *     --seq 32 --threads 1 --warmup 3 --steps 10 [--seed 0] [--backend native|js] [--profile]
 *
 * Prints one JSON line: per-step milliseconds of the whole step and of each phase (forward with the loss,
 * loss.backward(), optim.Adam step, zeroGrad), the CPU time of each step (all threads), and the process's peak RSS. The step is the one
 * step_torch.py times: train mode (dropout 0.1), teacher forcing under a causal tgtMask, nn.CrossEntropyLoss,
 * optim.Adam(lr 1e-3), zeroGrad() (gradients set to null, as set_to_none=True).
 *
 * `--replay N` (with --profile) re-runs every op call of the last step N times each and reports the sum of each
 * call's fastest run per phase and op (profile.ts: the kernels' time as on an idle machine, without the JS).
 *
 * `--profile` wraps every backend op in a timer (see ./profile.ts) and adds, per phase, the time and call count
 * of each op (GEMMs split by which operand is transposed: forward, data gradient, weight gradient) and the time
 * spent outside the kernels (JS: checks, allocation, the tape).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { nn, optim, manualSeed, Rng, setBackend, setNumThreads, getNumThreads, tensor } from '../../lib/index';
import { TransformerModel } from '../../lib/cli/seed-model';
import { OpProfiler } from './profile';

const INT_FLAGS = ['vocab', 'd-model', 'nhead', 'enc', 'dec', 'ff', 'batch', 'seq', 'threads', 'warmup', 'steps', 'seed'] as const;
const { values: a } = parseArgs({
  options: {
    ...Object.fromEntries(INT_FLAGS.map((f) => [f, { type: 'string' as const }])),
    backend: { type: 'string', default: 'native' },
    profile: { type: 'boolean', default: false },
    replay: { type: 'string' },
  },
  strict: true,
});
const DEFAULTS: Record<(typeof INT_FLAGS)[number], number> = {
  vocab: 1000, 'd-model': 256, nhead: 4, enc: 2, dec: 2, ff: 1024, batch: 8, seq: 32, threads: 1, warmup: 3, steps: 10, seed: 0,
};
const n = Object.fromEntries(INT_FLAGS.map((f) => {
  const text = (a as unknown as Record<string, string | undefined>)[f];
  const v = text === undefined ? DEFAULTS[f] : Number(text);
  const min = f === 'warmup' || f === 'seed' ? 0 : 1;
  if (!Number.isInteger(v) || v < min) throw new RangeError(`step-child: --${f} must be an integer >= ${min}, got '${text}'`);
  return [f, v];
})) as Record<(typeof INT_FLAGS)[number], number>;
const replayReps = a.replay === undefined ? 0 : Number(a.replay);
if (!Number.isInteger(replayReps) || replayReps < 0) throw new RangeError(`step-child: --replay must be an integer >= 0, got '${a.replay}'`);
if (replayReps > 0 && !a.profile) throw new RangeError('step-child: --replay needs --profile');
if (a.backend !== 'native' && a.backend !== 'js') throw new RangeError(`step-child: --backend must be 'native' or 'js', got '${a.backend}'`);

setBackend(a.backend);
if (a.backend === 'native') setNumThreads(n.threads);
const profiler = a.profile ? OpProfiler.install(a.backend) : null;

manualSeed(n.seed);
const model = new TransformerModel(n.vocab, n['d-model'], n.nhead, n.enc, n.dec, n.ff).train();
const optimizer = new optim.Adam(model.parameters(), { lr: 1e-3 });
const criterion = new nn.CrossEntropyLoss();
const rng = new Rng(n.seed + 1);
const ids = (count: number): Int32Array => Int32Array.from({ length: count }, () => rng.nextUint32() % n.vocab);
const src = tensor(ids(n.seq * n.batch), [n.seq, n.batch], 'int32');
const tgtIn = tensor(ids(n.seq * n.batch), [n.seq, n.batch], 'int32');
const tgtOut = tensor(ids(n.seq * n.batch), [n.seq * n.batch], 'int32');
const tgtMask = nn.Transformer.generateSquareSubsequentMask(n.seq);

const PHASES = ['forward', 'backward', 'optimizer', 'zeroGrad'] as const;
const phasesMs: Record<(typeof PHASES)[number], number[]> = { forward: [], backward: [], optimizer: [], zeroGrad: [] };
const stepMs: number[] = [];
const cpuMs: number[] = [];
const losses: number[] = [];
for (let i = 0; i < n.warmup + n.steps; i++) {
  const timed = i >= n.warmup;
  if (profiler) {
    profiler.enabled = timed;
    profiler.capture = replayReps > 0 && i === n.warmup + n.steps - 1;
  }
  profiler?.phase('forward');
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const output = model.forward(src, tgtIn, { tgtMask });
  const loss = criterion.forward(output.reshape(-1, n.vocab), tgtOut);
  const t1 = performance.now();
  profiler?.phase('backward');
  loss.backward();
  const t2 = performance.now();
  profiler?.phase('optimizer');
  optimizer.step();
  const t3 = performance.now();
  profiler?.phase('zeroGrad');
  optimizer.zeroGrad();
  const t4 = performance.now();
  const c4 = process.cpuUsage(c0);
  losses.push(loss.item());
  if (timed) {
    stepMs.push(t4 - t0);
    cpuMs.push((c4.user + c4.system) / 1e3);
    [t1 - t0, t2 - t1, t3 - t2, t4 - t3].forEach((ms, k) => phasesMs[PHASES[k]!].push(ms));
  }
}

const vmHwmKiB = Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? -1);
console.log(JSON.stringify({
  ok: true, engine: 'attnode', backend: a.backend, threads: a.backend === 'native' ? getNumThreads() : 1,
  stepMs, cpuMs, phasesMs, firstLoss: losses[0], lastLoss: losses[losses.length - 1], peakRssKiB: vmHwmKiB,
  ...(profiler ? { profile: profiler.report(phasesMs) } : {}),
  ...(profiler && replayReps > 0 ? { replay: profiler.replay(replayReps) } : {}),
}));
