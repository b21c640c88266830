/**
 * `npm run train:lm`: a small byte-level causal language model (`nn.CausalLM`, 0.86M parameters) learns English from
 * Jane Austen's novels (Debian's r-cran-janeaustenr) with AdamW, a warm-up LambdaLR and clipGradNorm. A progress bar
 * on stderr (loss, tokens/s, ETA); the held-out loss every `--eval-every` steps; a checkpoint (weights, optimizer
 * state, schedule, generators, step) every `--checkpoint-every` steps and at the end, written atomically, from which
 * `--resume` continues exactly (Ctrl-C stops early and writes one too); sample text at the end. Writes the loss curve and
 * the attention maps of the trained heads into `--results`.
 *
 *   npm run train:lm -- [--minutes 10] [--out runs/train-lm] [--resume] [--text FILE] [--eval-every 100]
 *                       [--checkpoint-every 200] [--seed 0] [--prompt 'She was'] [--sample-bytes 600]
 *                       [--results bench/results] [--threads n]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { getNumThreads, setNumThreads } from '../../lib/index';
import { niceMax, twoPanelSvg } from '../charts';
import { attentionGridSvg } from '../heatmap';
import { svgToPng } from '../png';
import { clock, positiveArg, trainingBar } from './progress';
import {
  AUSTEN_INSTALL_HINT, DEFAULT_LM_CONFIG, LmRun, attentionMaps, loadCorpus, sampleText, warmupFactor, type Corpus,
} from './lm-task';

/** The flags, checked (a RangeError names the one at fault). */
function readFlags() {
  const { values: a } = parseArgs({
    options: {
      minutes: { type: 'string', default: '10' },
      out: { type: 'string', default: 'runs/train-lm' },
      resume: { type: 'boolean', default: false },
      text: { type: 'string' },
      'eval-every': { type: 'string', default: '100' },
      'checkpoint-every': { type: 'string', default: '200' },
      seed: { type: 'string', default: '0' },
      prompt: { type: 'string', default: 'She was' },
      'sample-bytes': { type: 'string', default: '600' },
      'attention-text': { type: 'string', default: 'Mr. Darcy smiled at Elizabeth.' },
      results: { type: 'string', default: 'bench/results' },
      threads: { type: 'string' },
    },
    strict: true,
  });

  const minutes = Number(a.minutes);
  if (!Number.isFinite(minutes) || minutes < 0) throw new RangeError(`--minutes must be a number >= 0, got '${a.minutes}'`);
  if (minutes === 0 && !a.resume) throw new RangeError('--minutes 0 only makes sense with --resume (it then writes the sample and pictures of the checkpoint)');
  const evalEvery = positiveArg('eval-every', a['eval-every']!, true);
  const checkpointEvery = positiveArg('checkpoint-every', a['checkpoint-every']!, true);
  const seed = Number(a.seed);
  if (!Number.isInteger(seed) || seed < 0) throw new RangeError(`--seed must be a non-negative integer, got '${a.seed}'`);
  const sampleBytes = positiveArg('sample-bytes', a['sample-bytes']!, true);
  if (a.threads !== undefined) setNumThreads(positiveArg('threads', a.threads, true));
  const out = a.out!;
  const checkpointPath = join(out, 'checkpoint.safetensors');
  return { a, minutes, evalEvery, checkpointEvery, seed, sampleBytes, out, checkpointPath };
}

async function main(): Promise<void> {
  const { a, minutes, evalEvery, checkpointEvery, seed, sampleBytes, out, checkpointPath } = readFlags();
  let corpus: Corpus;
  try {
    corpus = await loadCorpus(a.text);
  } catch (e) {
    if (e instanceof Error && e.message.startsWith(AUSTEN_INSTALL_HINT)) {
      console.error(e.message);
      process.exitCode = 1;
      return;
    }
    throw e;
  }
  if (a.resume && !existsSync(checkpointPath)) throw new RangeError(`train:lm: --resume: no checkpoint at ${checkpointPath} (run without --resume first)`);
  await mkdir(out, { recursive: true });
  let run: LmRun;
  if (a.resume) {
    run = await LmRun.resume(checkpointPath, corpus);
    console.error(`train:lm: resumed ${checkpointPath} at step ${run.step} (${run.tokensSeen} tokens seen)`);
  } else {
    run = LmRun.create({ ...DEFAULT_LM_CONFIG, seed }, corpus);
  }
  const c = run.config;
  const attentionBytes = new TextEncoder().encode(a['attention-text']!).length;
  if (attentionBytes < 1 || attentionBytes > c.seqLen) {
    throw new RangeError(`--attention-text must be 1 to ${c.seqLen} bytes (the window), got ${attentionBytes}`);
  }
  if (a.prompt!.length === 0) throw new RangeError('--prompt must not be empty');
  console.error(`train:lm: ${corpus.source}; ${run.train.length} bytes for training, ${run.heldOut.length} held out`);
  console.error(`train:lm: nn.CausalLM d_model ${c.dModel}, ${c.nhead} heads, ${c.numLayers} layers, feed-forward ${c.dimFeedforward}, ` +
    `${c.seqLen}-byte windows, batch ${c.batch}: ${run.model.numParameters()} parameters; AdamW lr ${c.lr}, warm-up ${c.warmupSteps} steps`);

  const budgetS = minutes * 60;
  const lastHeld = (): string => (run.curves.heldOut.length ? run.curves.heldOut.at(-1)![1].toFixed(3) : '-');
  const { bar, log, stop: stopBar } = trainingBar('{bar} {step} | loss {loss} | held-out {held} | {tps} tok/s | ETA {left}', budgetS,
    { step: run.step, loss: '-', held: lastHeld(), tps: '-', left: clock(budgetS) });

  const t0 = performance.now();
  const elapsed = (): number => (performance.now() - t0) / 1000;
  const startTokens = run.tokensSeen;
  const startSeconds = run.trainSeconds;
  let windowLoss = 0;
  let windowSteps = 0;
  const evaluate = (): void => {
    const held = run.heldOutLoss();
    run.curves.heldOut.push([run.step, held]);
    log(`step ${run.step} (${elapsed().toFixed(0)} s): train loss ${windowSteps ? (windowLoss / windowSteps).toFixed(4) : (run.curves.train.at(-1)?.[1].toFixed(4) ?? '-')}, ` +
      `held-out loss ${held.toFixed(4)} (${(held / Math.LN2).toFixed(3)} bits/byte)\n`);
  };
  // Ctrl-C ends the run as the time budget would (a checkpoint, the sample, the pictures); a second one exits at once.
  let interrupted = false;
  process.once('SIGINT', () => {
    interrupted = true;
    log('train:lm: interrupted: finishing the step, then a checkpoint (Ctrl-C again to quit without one)\n');
    process.once('SIGINT', () => process.exit(130));
  });
  if (run.curves.heldOut.length === 0) evaluate();
  while (elapsed() < budgetS && !interrupted) {
    const r = run.trainStep();
    if (!Number.isFinite(r.loss)) throw new Error(`train:lm: the loss is ${r.loss} at step ${r.step}`);
    windowLoss += r.loss;
    windowSteps++;
    if (r.step % 10 === 0) {
      run.curves.train.push([r.step, windowLoss / windowSteps]);
      if (r.step % evalEvery !== 0) {
        windowLoss = 0;
        windowSteps = 0;
      }
    }
    if (r.step % evalEvery === 0) {
      evaluate();
      windowLoss = 0;
      windowSteps = 0;
    }
    if (r.step % checkpointEvery === 0) await run.saveCheckpoint(checkpointPath);
    const tps = Math.round((run.tokensSeen - startTokens) / (run.trainSeconds - startSeconds));
    bar.update(Math.min(Math.round(elapsed()), Math.round(budgetS)), {
      step: r.step, loss: r.loss.toFixed(3), held: lastHeld(), tps, left: clock(budgetS - elapsed()),
    });
    await yieldToEventLoop(); // the bar redraws on a timer
  }
  bar.update(Math.round(budgetS));
  stopBar();
  if (run.curves.heldOut.at(-1)?.[0] !== run.step) evaluate();
  await run.saveCheckpoint(checkpointPath);

  const sample = sampleText(run.model, a.prompt!, { maxNewTokens: sampleBytes, temperature: 0.8, seed });
  const heldOut = run.curves.heldOut.at(-1)![1];
  const cpu = `${cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${getNumThreads()} threads`;
  const load = loadavg().map((l) => l.toFixed(2)).join(' ');
  const summary = {
    task: 'byte-level causal LM', corpus: corpus.source, licence: corpus.licence, cpu, loadAverage: load,
    parameters: run.model.numParameters(), steps: run.step, tokensSeen: run.tokensSeen,
    trainSeconds: Number(run.trainSeconds.toFixed(1)), wallSecondsThisRun: Number(elapsed().toFixed(1)),
    // Of this invocation's steps (of every step so far when it took none: --minutes 0).
    trainTokensPerSecond: run.tokensSeen > startTokens
      ? Math.round((run.tokensSeen - startTokens) / (run.trainSeconds - startSeconds))
      : Math.round(run.tokensSeen / Math.max(run.trainSeconds, 1e-9)),
    finalTrainLoss: run.curves.train.at(-1)?.[1] ?? null, heldOutLoss: heldOut, heldOutBitsPerByte: heldOut / Math.LN2,
    prompt: a.prompt, temperature: 0.8, sampleSeed: seed, sample,
  };

  await mkdir(a.results!, { recursive: true });
  await writeFile(join(a.results!, 'train-lm.json'), JSON.stringify({ ...summary, config: c, curves: run.curves }, null, 1) + '\n');
  const lastStep = Math.max(run.step, 1);
  const tickStep = niceMax(lastStep / 6);
  const ticks = Array.from({ length: Math.floor(lastStep / tickStep) + 1 }, (_, i) => i * tickStep);
  const lrCurve: [number, number][] = [];
  for (let s = 0; s <= run.step; s += Math.max(1, Math.floor(lastStep / 200))) lrCurve.push([s, c.lr * warmupFactor(c.warmupSteps)(s)]);
  const curveSvg = twoPanelSvg({
    title: `train:lm: a ${(run.model.numParameters() / 1e6).toFixed(2)}M-parameter byte-level LM learns Jane Austen`,
    subtitle: `held-out ${heldOut.toFixed(3)} nats/byte (${(heldOut / Math.LN2).toFixed(2)} bits) after ${run.step} steps, ` +
      `${Math.round(run.trainSeconds)} s · ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${getNumThreads()} threads, load ${load}`,
    xScale: 'linear',
    panels: [
      {
        title: 'loss, nats per byte (training: mean of 10 steps)', xlabel: 'step', xTicks: ticks,
        series: [
          { label: 'training', color: '#1f77b4', markers: false, points: run.curves.train, tip: (x, y) => `step ${x}: ${y.toFixed(4)}` },
          { label: 'held-out', color: '#d62728', points: run.curves.heldOut, tip: (x, y) => `step ${x}: held-out ${y.toFixed(4)}` },
        ],
      },
      {
        title: `AdamW learning rate: ${c.warmupSteps}-step warm-up, then 1/√step`, xlabel: 'step', xTicks: ticks,
        series: [{ label: 'lr', color: '#2ca02c', markers: false, points: lrCurve, tip: (x, y) => `step ${x}: lr ${y.toExponential(2)}` }],
      },
    ],
  });
  await writeFile(join(a.results!, 'train-lm-loss.svg'), curveSvg);
  await writeFile(join(a.results!, 'train-lm-loss.png'), svgToPng(curveSvg));

  const text = a['attention-text']!;
  const ids = [...new TextEncoder().encode(text)];
  const maps = attentionMaps(run.model, ids);
  const labels = ids.map((b) => String.fromCharCode(b));
  const attnSvg = attentionGridSvg({
    title: `train:lm: attention of every head after ${run.step} steps (rows: query byte, columns: key byte)`,
    subtitle: `nn.CausalLM, ${c.numLayers} layers × ${c.nhead} heads, on "${text}" · causal: nothing above the diagonal`,
    maps, tokens: labels,
  });
  await writeFile(join(a.results!, 'train-lm-attention.svg'), attnSvg);
  await writeFile(join(a.results!, 'train-lm-attention.png'), svgToPng(attnSvg));

  console.log(JSON.stringify(summary, null, 1));
  console.log(`\n--- sample (prompt ${JSON.stringify(a.prompt)}, temperature 0.8, seed ${seed}) ---\n${a.prompt}${sample}\n---`);
  console.log(`checkpoint: ${checkpointPath} (continue with --resume); loss curve: ${join(a.results!, 'train-lm-loss.svg')}; ` +
    `attention maps: ${join(a.results!, 'train-lm-attention.svg')}`);
}

main().catch((e: unknown) => {
  // A bad flag, a missing or foreign checkpoint: the message alone; anything else with its stack.
  console.error(e instanceof RangeError || e instanceof TypeError ? e.message : e);
  process.exitCode = 1;
});
