/**
 * Greedy decoding throughput of the seed model (Embedding → nn.Transformer →
 * Linear at PyTorch's defaults: d_model 512, 8 heads, 6 + 6 layers, ff 2048),
 * native backend: key/value-cached steps against full recomputation (the
 * whole decoder over the growing prefix at every step), for 32 and 128 new
 * tokens at batch 1 and 4. Both paths must produce the same tokens (checked).
 *
 *   npx tsx bench/decode.ts                  writes bench/results/decode-latest.md
 *   npx tsx bench/decode.ts --quick          small model, for a smoke run (prints only)
 *   npx tsx bench/decode.ts --reps 5         runs per cell (default 3; full recomputation is slow)
 *
 * tokens/s = batch · new tokens / wall time of the whole `generate` call (encoder included, src 32 tokens);
 * ms/step = wall time / new tokens. Cached and full runs alternate, and the best run of each is reported
 * (with the median): on a shared machine other processes only ever add time.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { info, setGradEnabled, Tensor } from '../lib';
import { manualSeed } from '../lib/nn/init';
import { TransformerModel } from '../lib/cli/seed-model';

// Inference only: no autograd graph (parameters require grad by default, as in PyTorch).
setGradEnabled(false);

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    reps: { type: 'string', default: '3' },
    out: { type: 'string' },
  },
});
const quick = args.quick ?? false;
const reps = Math.max(1, Number(args.reps));
const cfg = quick
  ? { vocab: 1000, d: 64, nhead: 4, layers: 2, ff: 128, srcLen: 16, lengths: [16, 32], batches: [1, 4] }
  : { vocab: 1000, d: 512, nhead: 8, layers: 6, ff: 2048, srcLen: 32, lengths: [32, 128], batches: [1, 4] };

function srcIds(len: number, n: number, seed: number): Tensor<'int32'> {
  const data = new Int32Array(len * n);
  let s = seed;
  for (let i = 0; i < data.length; i++) data[i] = 3 + (((s = (s * 1103515245 + 12345) >>> 0) >>> 8) % (cfg.vocab - 3));
  return new Tensor(data, [len, n], 'int32');
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

manualSeed(0);
const model = new TransformerModel(cfg.vocab, cfg.d, cfg.nhead, cfg.layers, cfg.layers, cfg.ff).eval().useBackend('native');
// Warm-up: thread pool, allocator, code paths.
model.generate(srcIds(cfg.srcLen, 1, 1), { maxNewTokens: 4, bosId: 1 });
model.generate(srcIds(cfg.srcLen, 1, 1), { maxNewTokens: 4, bosId: 1, useCache: false });
// bfloat16 weights (cached path only) where the CPU has AVX512-BF16: packs its bf16 copies now.
const bf16 = info().native?.bf16 === true;
if (bf16) {
  model.useWeightPrecision('bfloat16');
  model.generate(srcIds(cfg.srcLen, 1, 1), { maxNewTokens: 4, bosId: 1 });
  model.useWeightPrecision('float32');
}

interface Row {
  batch: number;
  tokens: number;
  cachedMs: number;
  fullMs: number;
  cachedMed: number;
  fullMed: number;
  same: boolean;
  /** Cached decoding with bfloat16 weights: best ms, and whether its greedy tokens equal float32's (rounding may flip an arg-max). */
  bf16Ms?: number;
  bf16Same?: boolean;
}
const loadBefore = os.loadavg().map((x) => x.toFixed(2)).join(' ');
const rows: Row[] = [];
for (const batch of cfg.batches) {
  for (const tokens of cfg.lengths) {
    const src = srcIds(cfg.srcLen, batch, 7 + batch);
    // No eos: every run generates exactly `tokens` positions.
    const opts = { maxNewTokens: tokens, bosId: 1 };
    const run = (useCache: boolean): { ms: number; ids: Int32Array } => {
      const t0 = performance.now();
      const ids = model.generate(src, { ...opts, useCache }).data;
      return { ms: performance.now() - t0, ids };
    };
    const cachedTimes: number[] = [];
    const fullTimes: number[] = [];
    const bf16Times: number[] = [];
    let same = true;
    let bf16Same = true;
    for (let r = 0; r < reps; r++) {
      const c = run(true);
      const f = run(false);
      cachedTimes.push(c.ms);
      fullTimes.push(f.ms);
      same &&= c.ids.length === f.ids.length && c.ids.every((v, i) => v === f.ids[i]);
      if (bf16) {
        model.useWeightPrecision('bfloat16');
        const b = run(true);
        model.useWeightPrecision('float32');
        bf16Times.push(b.ms);
        bf16Same &&= b.ids.length === c.ids.length && b.ids.every((v, i) => v === c.ids[i]);
      }
    }
    const cached = { ms: Math.min(...cachedTimes) };
    const full = { ms: Math.min(...fullTimes) };
    rows.push({
      batch, tokens, cachedMs: cached.ms, fullMs: full.ms, cachedMed: median(cachedTimes), fullMed: median(fullTimes), same,
      ...(bf16 ? { bf16Ms: Math.min(...bf16Times), bf16Same } : {}),
    });
    const tps = (ms: number): string => ((batch * tokens) / ms * 1000).toFixed(1);
    console.log(`batch ${batch}, ${tokens} tokens: cached ${cached.ms.toFixed(0)} ms (${tps(cached.ms)} tok/s), ` +
      `full ${full.ms.toFixed(0)} ms (${tps(full.ms)} tok/s), ${(full.ms / cached.ms).toFixed(1)}x, same tokens: ${same}` +
      (bf16 ? `; cached bf16 ${Math.min(...bf16Times).toFixed(0)} ms (${tps(Math.min(...bf16Times))} tok/s)` : ''));
  }
}

const rt = info();
const nat = rt.native!;
const lines = [
  `# Decode benchmark (${new Date().toISOString().slice(0, 10)})`,
  '',
  `Command: \`npx tsx bench/decode.ts${quick ? ' --quick' : ''}${reps !== 3 ? ` --reps ${reps}` : ''}\``,
  '',
  `Model: seed TransformerModel — Embedding(${cfg.vocab}, ${cfg.d}) → Transformer(dModel ${cfg.d}, nhead ${cfg.nhead}, ` +
    `${cfg.layers} + ${cfg.layers} layers, ff ${cfg.ff}) → Linear(${cfg.d}, ${cfg.vocab}); src ${cfg.srcLen} tokens; greedy, no eos.`,
  `Machine: ${nat.cpu.brand || nat.cpu.vendor}, ${os.cpus().length} logical CPUs visible, kernels ${nat.isa}, ` +
    `${nat.numThreads} thread(s), node ${rt.node}.`,
  `Best of ${reps} alternating runs per cell (median in parentheses). Shared machine: load average ${loadBefore} ` +
    `before, ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} after.`,
  '',
  'tokens/s = batch · new tokens / wall time of the whole `generate` call (encoder once + decoder steps + arg-max).',
  '"full" recomputes the whole decoder over the growing prefix (causal mask) at every step; "cached" runs one',
  'decoder step of one token per new token against the self-attention K/V caches and the precomputed memory K/V.',
  '',
  '| batch | new tokens | cached ms | cached tok/s | cached ms/token | full ms | full tok/s | speedup | same tokens | cached bf16 tok/s | bf16 tokens = fp32 |',
  '|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|:---:|',
  ...rows.map((r) => {
    const tps = (ms: number): string => ((r.batch * r.tokens) / ms * 1000).toFixed(1);
    return `| ${r.batch} | ${r.tokens} | ${r.cachedMs.toFixed(0)} (${r.cachedMed.toFixed(0)}) | ${tps(r.cachedMs)} | ` +
      `${(r.cachedMs / r.tokens).toFixed(1)} | ${r.fullMs.toFixed(0)} (${r.fullMed.toFixed(0)}) | ${tps(r.fullMs)} | ` +
      `${(r.fullMs / r.cachedMs).toFixed(1)}x | ${r.same ? 'yes' : '**NO**'} | ` +
      `${r.bf16Ms !== undefined ? tps(r.bf16Ms) : '—'} | ${r.bf16Same === undefined ? '—' : r.bf16Same ? 'yes' : 'no'} |`;
  }),
  '',
  bf16
    ? '"cached bf16": the cached path with `useWeightPrecision(\'bfloat16\')` (AVX512-BF16 weight GEMMs and GEMVs); its tokens may ' +
      'differ from float32 where rounding flips an arg-max between near-equal logits (random weights make that likely).'
    : 'No bf16 column: this CPU or kernel path has no AVX512-BF16.',
  '',
];
const md = lines.join('\n');
if (!quick || args.out) {
  const out = args.out ?? path.join(__dirname, 'results', 'decode-latest.md');
  fs.writeFileSync(out, md);
  console.log(`wrote ${path.relative(process.cwd(), out)}`);
} else {
  console.log(`\n${md}`);
}
if (rows.some((r) => !r.same)) process.exitCode = 1;
