/**
 * `npm run train:seed`: the seed article's §5.4, runnable. Its `TransformerModel` (nn.Embedding →
 * nn.Transformer → nn.Linear) learns to sort 8-digit strings with nn.CrossEntropyLoss and optim.Adam(lr 1e-3),
 * teacher forcing under a causal target mask, batches from a seeded generator (see seed-task.ts for why sorting).
 * A progress bar on stderr; every `--eval-every` steps the greedy-decoding token accuracy on held-out sequences;
 * stops at `--target` (0.99) or after `--max-minutes` (10). Writes the weights (safetensors, PyTorch's state_dict
 * names) and run.json into `--out`, the loss curve into `--results` (check them with
 * `python3 scripts/check_seed_training.py <out>`).
 *
 *   npm run train:seed -- [--max-minutes 10] [--target 0.99] [--batch 64] [--seed 0] [--eval-every 25]
 *                         [--out runs/train-seed] [--results bench/results] [--threads n] [--backend native|js]
 */
import { writeFile, mkdir } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { nn, optim, manualSeed, Rng, setBackend, setNumThreads, getNumThreads } from '../../lib/index';
import { twoPanelSvg } from '../charts';
import { clock, positiveArg, trainingBar } from './progress';
import {
  DEFAULT_CONFIG, buildModel, causalMask, drawSequences, evaluate, makeBatch, saveRun, trainStep,
  RUN_FILE, WEIGHTS_FILE, type Evaluation,
} from './seed-task';

const { values: a } = parseArgs({
  options: {
    'max-minutes': { type: 'string', default: '10' },
    target: { type: 'string', default: '0.99' },
    batch: { type: 'string', default: '64' },
    seed: { type: 'string', default: '0' },
    'eval-every': { type: 'string', default: '25' },
    'held-out': { type: 'string', default: '1000' },
    lr: { type: 'string', default: '0.001' },
    out: { type: 'string', default: 'runs/train-seed' },
    results: { type: 'string', default: 'bench/results' },
    threads: { type: 'string' },
    backend: { type: 'string', default: 'native' },
  },
  strict: true,
});

const maxMinutes = positiveArg('max-minutes', a['max-minutes']!, false);
const target = positiveArg('target', a.target!, false);
if (target > 1) throw new RangeError(`--target is a token accuracy in (0, 1], got ${target}`);
const batchSize = positiveArg('batch', a.batch!, true);
const seed = Number(a.seed);
if (!Number.isInteger(seed) || seed < 0) throw new RangeError(`--seed must be a non-negative integer, got '${a.seed}'`);
const evalEvery = positiveArg('eval-every', a['eval-every']!, true);
const heldOutSize = positiveArg('held-out', a['held-out']!, true);
const lr = positiveArg('lr', a.lr!, false);
if (a.backend !== 'native' && a.backend !== 'js') throw new RangeError(`--backend must be 'native' or 'js', got '${a.backend}'`);
setBackend(a.backend);
if (a.threads !== undefined) setNumThreads(positiveArg('threads', a.threads, true));

const c = DEFAULT_CONFIG;
manualSeed(seed);
const model = buildModel(c).train();
const optimizer = new optim.Adam(model.parameters(), { lr });
const criterion = new nn.CrossEntropyLoss();
const mask = causalMask(c.seqLen);
// Held-out strings come from their own generator and are never drawn for training.
const heldOutSeqs = drawSequences(new Rng(seed * 2 + 1), heldOutSize, c.seqLen);
const heldOut = makeBatch(heldOutSeqs, c);
const exclude = new Set(heldOutSeqs.map((s) => s.join('')));
const trainRng = new Rng(seed * 2 + 2);

const budgetS = maxMinutes * 60;
// Fits 80 columns. ETA is the end of the time budget: the run stops earlier once it reaches the target.
const { bar, log, stop: stopBar } = trainingBar('{bar} {step} steps | loss {loss} | {tps} tok/s | acc {acc} | ETA ≤ {left}', budgetS,
  { step: 0, loss: '-', tps: '-', acc: '-', left: clock(budgetS) });

/** Trains until the target or the budget, then writes everything. */
async function main(): Promise<void> {
  const lossCurve: [number, number][] = [];
  const accCurve: [number, number][] = [];
  const t0 = performance.now();
  const elapsed = (): number => (performance.now() - t0) / 1000;
  let step = 0;
  let trainSeconds = 0;
  let tokens = 0;
  let windowLoss = 0;
  let windowSteps = 0;
  let last: Evaluation | null = null;
  let reachedAt: number | null = null;

  while (elapsed() < budgetS) {
    const batch = makeBatch(drawSequences(trainRng, batchSize, c.seqLen, exclude), c);
    const s0 = performance.now();
    const loss = trainStep(model, optimizer, criterion, batch, mask);
    trainSeconds += (performance.now() - s0) / 1000;
    if (!Number.isFinite(loss)) throw new Error(`train:seed: the loss is ${loss} at step ${step + 1}`);
    step++;
    tokens += batchSize * c.seqLen;
    windowLoss += loss;
    windowSteps++;
    if (step % 10 === 0) {
      lossCurve.push([step, windowLoss / windowSteps]);
      windowLoss = 0;
      windowSteps = 0;
    }
    if (step % evalEvery === 0) {
      last = evaluate(model, heldOut, c);
      accCurve.push([step, last.tokenAccuracy]);
      log(`step ${step} (${elapsed().toFixed(1)} s): train loss ${loss.toFixed(4)}, held-out loss ${last.loss.toFixed(4)}, ` +
        `token accuracy ${(100 * last.tokenAccuracy).toFixed(2)} %, sequences ${(100 * last.sequenceAccuracy).toFixed(1)} %\n`);
      if (last.tokenAccuracy >= target) {
        reachedAt = elapsed();
        break;
      }
    }
    bar.update(Math.min(Math.round(elapsed()), Math.round(budgetS)), {
      step, left: clock(budgetS - elapsed()), loss: loss.toFixed(4), tps: Math.round(tokens / trainSeconds), acc: last ? `${(100 * last.tokenAccuracy).toFixed(2)} %` : '-',
    });
    await yieldToEventLoop(); // the bar redraws on a timer
  }
  bar.update(Math.min(Math.round(elapsed()), Math.round(budgetS)));
  stopBar();

  const final = reachedAt !== null && last ? last : evaluate(model, heldOut, c);
  if (reachedAt === null) accCurve.push([step, final.tokenAccuracy]);
  const totalS = elapsed();
  const cpu = `${cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${a.backend === 'js' ? 'JS backend, 1 thread' : `${getNumThreads()} threads`}`;
  const load = loadavg().map((l) => l.toFixed(2)).join(' ');
  const summary = {
    task: 'sort 8-digit strings', backend: a.backend, cpu, loadAverage: load, seed, batch: batchSize, lr, target,
    steps: step, seconds: Number(totalS.toFixed(1)), reached: reachedAt !== null,
    secondsToTarget: reachedAt === null ? null : Number(reachedAt.toFixed(1)),
    trainTokensPerSecond: Math.round(tokens / trainSeconds),
    heldOutTokenAccuracy: final.tokenAccuracy, heldOutSequenceAccuracy: final.sequenceAccuracy, heldOutLoss: final.loss,
  };

  // The run (weights, run.json), the curve's JSON and SVG, and the summary.
  await saveRun(a.out!, model, {
    ...summary, config: c, heldOut: heldOutSeqs, heldOutLoss: final.loss, heldOutTokenAccuracy: final.tokenAccuracy,
  });
  await mkdir(a.results!, { recursive: true });
  await writeFile(join(a.results!, 'train-seed.json'), JSON.stringify({ ...summary, config: c, lossCurve, accuracyCurve: accCurve }, null, 1) + '\n');
  const lastStep = Math.max(step, 1);
  const ticks = Array.from({ length: 6 }, (_, i) => Math.round((lastStep * i) / 5));
  const svg = twoPanelSvg({
    title: "The seed article's §5.4: TransformerModel learns to sort 8-digit strings (CrossEntropyLoss + Adam 1e-3)",
    subtitle: `d_model ${c.dModel}, ${c.nhead} heads, ${c.numEncoderLayers} + ${c.numDecoderLayers} layers, batch ${batchSize} · ` +
      (reachedAt === null ? `${(100 * final.tokenAccuracy).toFixed(2)} % after ${totalS.toFixed(0)} s` : `${(100 * target).toFixed(0)} % held-out token accuracy in ${reachedAt.toFixed(0)} s (${step} steps)`) +
      ` · ${cpu}, load ${load}`,
    xScale: 'linear',
    panels: [
      { title: 'training loss (mean of 10 steps)', xlabel: 'step', xTicks: ticks, series: [{ label: 'training loss', color: '#1f77b4', markers: false, points: lossCurve, tip: (x, y) => `step ${x}: ${y.toFixed(4)}` }] },
      { title: 'held-out token accuracy (greedy decoding)', xlabel: 'step', xTicks: ticks, ymax: 1, series: [{ label: 'held-out accuracy', color: '#2ca02c', points: accCurve, tip: (x, y) => `step ${x}: ${(100 * y).toFixed(2)} %` }] },
    ],
  });
  await writeFile(join(a.results!, 'train-seed-loss.svg'), svg);

  console.log(JSON.stringify(summary, null, 1));
  console.log(`weights: ${join(a.out!, WEIGHTS_FILE)}, run: ${join(a.out!, RUN_FILE)}; loss curve: ${join(a.results!, 'train-seed-loss.svg')}`);
  console.log(`check against PyTorch: /usr/bin/python3 scripts/check_seed_training.py ${a.out}`);
  if (reachedAt === null) {
    console.error(`train:seed: held-out token accuracy ${(100 * final.tokenAccuracy).toFixed(2)} % < ${100 * target} % after ${maxMinutes} min`);
    process.exitCode = 1;
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
