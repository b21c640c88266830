/**
 * What int8 weights (`useWeightPrecision('int8')`) do to real outputs, against float32 on the native backend:
 *
 * 1. A BERT-base-shaped encoder layer (768, 12 heads, 3072, GELU; PyTorch's default initialisation), 1 × 128 and
 *    8 × 128 tokens: cosine and relative error of the outputs, and the layer's latency fp32 vs int8 (CPU time of
 *    this thread per forward, interleaved, medians: a same-run ratio that load on a shared machine moves little).
 * 2. stories260K (../shared/real: a trained llama2.c Llama, 5 layers, dim 64): the logits over its own 200-token
 *    greedy story (teacher-forced): cosine per position, top-1 agreement, and the story's perplexity under each
 *    precision; and where int8's own greedy story first departs from float32's.
 * 3. A trained seed model (`npm run train:seed -- --out DIR`: the article's TransformerModel taught to sort 8-digit
 *    strings; `--seed-run DIR`, default runs/train-seed, skipped if absent): held-out loss, token and sequence
 *    accuracy of greedy decoding under each precision.
 * 4. The sentence-embedding fixture folder test/fixtures/hf/bert-st (a MiniLM-shaped BERT with generated weights,
 *    not a trained model; skipped if absent): cosine of each sentence's embedding.
 *
 * Usage: npx tsx bench/gemm/int8-accuracy.ts [--threads N] [--reps R] [--seed-run DIR]
 *        → bench/results/int8-accuracy-latest.md
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as nn from '../../lib/nn';
import { loadLlama2c } from '../../lib/io/llama2c';
import { loadSafetensors } from '../../lib/io/safetensors';
import { buildModel, evaluate, makeBatch, RUN_FILE, WEIGHTS_FILE, type SeedTaskConfig } from '../train/seed-task';
import { pipeline } from '../../lib/pipelines';
import { info, setNumThreads } from '../../lib/runtime';
import { randn, Tensor } from '../../lib/tensor';
import { cosine } from '../../test/helpers/vectors';

const { values: args } = parseArgs({
  options: {
    threads: { type: 'string', default: '1' }, reps: { type: 'string', default: '7' },
    'seed-run': { type: 'string', default: 'runs/train-seed' },
  },
});
setNumThreads(Number(args.threads));
const reps = Number(args.reps);
const root = path.resolve(__dirname, '..', '..');

function relErr(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  let d = 0, r = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i]! - ref[i]!) ** 2;
    r += ref[i]! ** 2;
  }
  return Math.sqrt(d / r);
}

const median = (v: number[]): number => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)]!;
const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

const lines: string[] = [];
const say = (s: string): void => {
  console.log(s);
  lines.push(s);
};
const nat = info().native!;
say(`# int8 weights: accuracy and layer speed against float32 (${new Date().toISOString().slice(0, 10)})\n`);
say(`CPU: ${nat.cpu.brand.trim()}; kernel path ${nat.isa}, int8 kernels ${nat.int8}; ${args.threads} thread(s); load average at start ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}.\n`);

async function main(): Promise<void> {
  // ---- 1. encoder layer ----
  say('## BERT-base-shaped encoder layer (PyTorch default init)\n');
  say('| input | cosine | relative error | fp32 CPU ms | int8 CPU ms | int8 / fp32 |');
  say('|---|---:|---:|---:|---:|---:|');
  nn.manualSeed(18);
  const layer = new nn.TransformerEncoderLayer({ dModel: 768, nhead: 12, dimFeedforward: 3072, activation: 'gelu', batchFirst: true })
    .eval().useBackend('native');
  for (const [b, s] of [[1, 128], [8, 128]] as const) {
    const x = randn([b, s, 768], { seed: b });
    const run = (p: 'float32' | 'int8'): { out: Float32Array; ms: number } => {
      layer.useWeightPrecision(p);
      const t0 = cpuMs();
      const out = layer.forward(x).data.slice();
      return { out, ms: cpuMs() - t0 };
    };
    run('float32');
    run('int8');
    const t32: number[] = [], t8: number[] = [];
    let o32: Float32Array = new Float32Array(), o8: Float32Array = new Float32Array();
    for (let r = 0; r < reps; r++) {
      const a = run('float32');
      const q = run('int8');
      t32.push(a.ms);
      t8.push(q.ms);
      o32 = a.out;
      o8 = q.out;
    }
    const m32 = median(t32), m8 = median(t8);
    say(`| ${b} × ${s} | ${cosine(o8, o32).toFixed(6)} | ${relErr(o8, o32).toExponential(2)} | ${m32.toFixed(1)} | ${m8.toFixed(1)} | ${(m8 / m32).toFixed(2)}× |`);
  }
  say('\n(CPU time of the process per forward with ' + args.threads + ' kernel thread(s): with 1 thread this is the kernel thread itself, so a busy neighbour on the same core does not inflate it the way wall time is.)\n');

  // ---- 2. stories260K ----
  const real = path.resolve(root, '..', 'shared', 'real');
  const bin = path.join(real, 'stories260K.bin');
  if (fs.existsSync(bin)) {
    say('## stories260K (trained llama2.c model, ../shared/real)\n');
    const { model } = await loadLlama2c(bin);
    model.useBackend('native');
    const bos = new Tensor(Int32Array.of(1), [1, 1], 'int32');
    model.useWeightPrecision('float32');
    const story = model.generate(bos, { maxNewTokens: 200 });
    const ids = story.data as Int32Array;
    const logitsOf = (p: 'float32' | 'int8'): Float32Array => {
      model.useWeightPrecision(p);
      return model.forward(story).contiguous().data.slice();
    };
    const l32 = logitsOf('float32'), l8 = logitsOf('int8');
    const vocab = l32.length / ids.length;
    let agree = 0, minCos = 1, sumCos = 0, nll32 = 0, nll8 = 0;
    const lse = (l: Float32Array, o: number): number => {
      let m = -Infinity;
      for (let v = 0; v < vocab; v++) m = Math.max(m, l[o + v]!);
      let s = 0;
      for (let v = 0; v < vocab; v++) s += Math.exp(l[o + v]! - m);
      return m + Math.log(s);
    };
    const argmax = (l: Float32Array, o: number): number => {
      let best = 0;
      for (let v = 1; v < vocab; v++) if (l[o + v]! > l[o + best]!) best = v;
      return best;
    };
    const positions = ids.length - 1;
    for (let t = 0; t < positions; t++) {
      const o = t * vocab;
      const c = cosine(l8.subarray(o, o + vocab), l32.subarray(o, o + vocab));
      sumCos += c;
      minCos = Math.min(minCos, c);
      if (argmax(l8, o) === argmax(l32, o)) agree++;
      nll32 += lse(l32, o) - l32[o + ids[t + 1]!]!;
      nll8 += lse(l8, o) - l8[o + ids[t + 1]!]!;
    }
    model.useWeightPrecision('int8');
    const story8 = model.generate(bos, { maxNewTokens: 200 }).data as Int32Array;
    let first = -1;
    for (let t = 0; t < ids.length; t++) if (story8[t] !== ids[t]) { first = t; break; }
    say('| measure | value |');
    say('|---|---:|');
    say(`| logits cosine, mean over ${positions} positions | ${(sumCos / positions).toFixed(6)} |`);
    say(`| logits cosine, lowest | ${minCos.toFixed(6)} |`);
    say(`| top-1 token agreement | ${agree} / ${positions} (${((100 * agree) / positions).toFixed(1)}%) |`);
    say(`| perplexity of the fp32 greedy story: fp32 / int8 | ${Math.exp(nll32 / positions).toFixed(4)} / ${Math.exp(nll8 / positions).toFixed(4)} |`);
    say(`| int8 greedy story (200 tokens) first differs at token | ${first < 0 ? 'never (identical)' : String(first)} |`);
    say('');
  } else {
    say(`(stories260K skipped: ${bin} is absent)\n`);
  }

  // ---- 3. a trained seed model ----
  const seedDir = path.resolve(root, args['seed-run']!);
  if (fs.existsSync(path.join(seedDir, RUN_FILE)) && fs.existsSync(path.join(seedDir, WEIGHTS_FILE))) {
    const run = JSON.parse(fs.readFileSync(path.join(seedDir, RUN_FILE), 'utf8')) as { config: SeedTaskConfig; heldOut: number[][]; steps: number };
    const model = buildModel(run.config);
    model.loadStateDict((await loadSafetensors(path.join(seedDir, WEIGHTS_FILE))).tensors);
    model.useBackend('native');
    const heldOut = makeBatch(run.heldOut, run.config);
    say(`## Trained seed model (train:seed, ${run.steps} steps; ${seedDir.startsWith(root) ? path.relative(root, seedDir) : seedDir})\n`);
    say(`The article's TransformerModel (d ${run.config.dModel}, ${run.config.numEncoderLayers} + ${run.config.numDecoderLayers} layers, feed-forward ${run.config.dimFeedforward}) sorting 8-digit strings; its ${run.heldOut.length} held-out sequences, greedy decoding.\n`);
    say('| precision | held-out loss | token accuracy | sequence accuracy |');
    say('|---|---:|---:|---:|');
    for (const p of ['float32', 'int8'] as const) {
      model.useWeightPrecision(p);
      const e = evaluate(model, heldOut, run.config);
      say(`| ${p} | ${e.loss.toFixed(5)} | ${(100 * e.tokenAccuracy).toFixed(2)} % | ${(100 * e.sequenceAccuracy).toFixed(2)} % |`);
    }
    say('');
  } else {
    say(`(trained seed model skipped: no ${RUN_FILE} and ${WEIGHTS_FILE} in ${seedDir}; make one with npm run train:seed)\n`);
  }

  // ---- 4. bert-st fixture ----
  const st = path.join(root, 'test', 'fixtures', 'hf', 'bert-st');
  if (fs.existsSync(st)) {
    say('## test/fixtures/hf/bert-st (MiniLM-shaped sentence-transformers folder, generated weights, not trained)\n');
    const texts = ['The cat sat on the mat.', 'A quick brown fox jumps over the lazy dog.', 'int8 weights on VNNI',
      'Attention is all you need.', 'Paris is the capital of France.', 'hello world'];
    const embed32 = await pipeline('feature-extraction', st, { backend: 'native' });
    const embed8 = await pipeline('feature-extraction', st, { backend: 'native', weightPrecision: 'int8' });
    const e32 = await embed32(texts, { pooling: 'mean', normalize: true });
    const e8 = await embed8(texts, { pooling: 'mean', normalize: true });
    const d = e32.shape[1]!;
    const cos = texts.map((_, i) => cosine(e8.data.subarray(i * d, (i + 1) * d), e32.data.subarray(i * d, (i + 1) * d)));
    say(`Embedding cosine int8 vs fp32 over ${texts.length} sentences: min ${Math.min(...cos).toFixed(6)}, mean ${(cos.reduce((a, b) => a + b) / cos.length).toFixed(6)}.\n`);
  }
  const out = path.join(root, 'bench', 'results', 'int8-accuracy-latest.md');
  fs.writeFileSync(out, lines.join('\n') + '\n');
  console.log(`wrote ${path.relative(root, out)}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
