/**
 * bf16 weights against fp32 weights: C = A·Wᵀ (a Linear layer, W stored [N, K]) with W packed once by
 * `packWeight(w, K, N, true, precision)`, at 1 thread by default.
 *
 *   npx tsx bench/gemm/bf16.ts                 prints a markdown table (1 thread)
 *   npx tsx bench/gemm/bf16.ts --reps 9 --threads 1,2
 *   npx tsx bench/gemm/bf16.ts --threads 1,2 --out bench/results/gemm-bf16-latest.md
 *
 * Each cell is the median of `reps` timed repetitions (fp32 and bf16 alternate, so machine load hits both);
 * a repetition runs the GEMM enough times to take ~40 ms. GFLOP/s = 2·M·N·K / time. M = 1 is the decode GEMV:
 * fp32 streams the unpacked weight (the packed fp32 copy is not used at M = 1), bf16 streams the packed bf16
 * copy. "M=1 stream" cycles through enough distinct weights (≥ 128 MB of fp32) that they come from memory, as in
 * a model's decode step, instead of staying cache-resident. "max rel err" = max |C_bf16 − C_fp32| / max |C_fp32|
 * with A and W ~ N(0, 1).
 */
import * as fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { addon as maybeAddon, type PackedWeight } from '../../lib/backend/native';
import type { WeightPrecision } from '../../lib/backend/backend';
import { randn } from '../../lib/tensor';
/** The two precisions this benchmark compares (int8 is measured by bench:gemm). */
type Precision = Exclude<WeightPrecision, 'int8'>;

const { values: args } = parseArgs({
  options: {
    reps: { type: 'string', default: '7' },
    threads: { type: 'string', default: '1' },
    out: { type: 'string' },
  },
});
const reps = Number(args.reps);
const threadCounts = args.threads.split(',').map(Number);
if (!(reps >= 1) || threadCounts.some((t) => !Number.isInteger(t) || t < 1)) {
  throw new Error('usage: --reps N (>= 1) --threads 1[,2,...]');
}

if (!maybeAddon) throw new Error('the native addon is not available: build it with `npm run build:native`');
const addon = maybeAddon;
const info = addon.info();
if (!info.bf16) {
  console.log(`bf16 GEMM kernels unavailable (CPU ${info.cpu.brand}, path ${info.isa}): needs avx512bf16 and the avx512 path`);
  process.exit(0);
}
const startThreads = addon.getNumThreads();

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  return s[s.length >> 1]!;
}

interface Weight {
  w: Float32Array;
  fp32: PackedWeight;
  bf16: PackedWeight;
}

function makeWeight(k: number, n: number, seed: number): Weight {
  const w = randn([n, k], { seed }).data;
  return { w, fp32: addon.packWeight(w, k, n, true), bf16: addon.packWeight(w, k, n, true, 'bfloat16') };
}

function gemm(a: Float32Array, wt: Weight, c: Float32Array, m: number, n: number, k: number, p: Precision): void {
  addon.gemm({ a, b: wt.w, c, m, n, k, transB: true, packedB: p === 'bfloat16' ? wt.bf16 : wt.fp32 });
}

/** Seconds per call: median over reps, each rep timing enough calls for ~40 ms. */
function timeBoth(run: (p: Precision, i: number) => void): Record<Precision, number> {
  const calib = (p: Precision): number => {
    let iters = 1;
    for (;;) {
      const t0 = performance.now();
      for (let i = 0; i < iters; i++) run(p, i);
      const ms = performance.now() - t0;
      if (ms > 10) return Math.max(1, Math.round((iters * 40) / ms));
      iters *= 4;
    }
  };
  const iters = { float32: calib('float32'), bfloat16: calib('bfloat16') };
  const samples: Record<Precision, number[]> = { float32: [], bfloat16: [] };
  for (let r = 0; r < reps; r++) {
    for (const p of ['float32', 'bfloat16'] as const) {
      const t0 = performance.now();
      for (let i = 0; i < iters[p]; i++) run(p, i);
      samples[p].push((performance.now() - t0) / 1000 / iters[p]);
    }
  }
  return { float32: median(samples.float32), bfloat16: median(samples.bfloat16) };
}

function maxRelErr(x: Float32Array, ref: Float32Array): number {
  let scale = 0;
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    scale = Math.max(scale, Math.abs(ref[i]!));
    worst = Math.max(worst, Math.abs(x[i]! - ref[i]!));
  }
  return worst / scale;
}

const shapes: [number, number][] = [
  [768, 768],
  [768, 2304],
  [768, 3072],
  [3072, 768],
];
const header =
  '| M | K | N | fp32 GFLOP/s | bf16 GFLOP/s | bf16/fp32 | max rel err | fp32 weight MB | bf16 weight MB |\n' +
  '|---|---:|---:|---:|---:|---:|---:|---:|---:|';
function report(
  rows: string[], label: string, k: number, n: number, m: number, wt: Weight, t: Record<Precision, number>, err: number,
): void {
  const flops = 2 * m * n * k;
  const g = (s: number): string => (flops / s / 1e9).toFixed(1);
  const mb = (p: PackedWeight, fp32Unpacked: boolean): string =>
    ((fp32Unpacked ? k * n * 4 : addon.packedWeightInfo(p).bytes) / 1e6).toFixed(2);
  const row = `| ${label} | ${k} | ${n} | ${g(t.float32)} | ${g(t.bfloat16)} | ${(t.float32 / t.bfloat16).toFixed(2)} | ${err.toExponential(2)} | ${mb(wt.fp32, m === 1)} | ${mb(wt.bf16, false)} |`;
  rows.push(row);
  console.log(row);
}

function table(threads: number): string[] {
  addon.setNumThreads(threads);
  console.log(`\nCPU ${info.cpu.brand}, ${threads} thread(s), median of ${reps} reps\n`);
  console.log(header);
  const rows: string[] = [];
  for (const m of [128, 512, 1]) {
    for (const [k, n] of shapes) {
      const wt = makeWeight(k, n, k + n);
      const a = randn([m, k], { seed: m }).data;
      const c32 = new Float32Array(m * n);
      const c16 = new Float32Array(m * n);
      gemm(a, wt, c32, m, n, k, 'float32');
      gemm(a, wt, c16, m, n, k, 'bfloat16');
      const err = maxRelErr(c16, c32);
      const t = timeBoth((p) => gemm(a, wt, p === 'bfloat16' ? c16 : c32, m, n, k, p));
      report(rows, String(m), k, n, m, wt, t, err);
    }
  }

  // Decode with weights that do not stay in cache: cycle through distinct weights.
  for (const [k, n] of shapes) {
    const count = Math.max(2, Math.ceil((128 << 20) / (k * n * 4)));
    const weights = Array.from({ length: count }, (_, i) => makeWeight(k, n, 1000 + i));
    const a = randn([1, k], { seed: 7 }).data;
    const c32 = new Float32Array(n);
    const c16 = new Float32Array(n);
    gemm(a, weights[0]!, c32, 1, n, k, 'float32');
    gemm(a, weights[0]!, c16, 1, n, k, 'bfloat16');
    const err = maxRelErr(c16, c32);
    const t = timeBoth((p, i) => gemm(a, weights[i % count]!, p === 'bfloat16' ? c16 : c32, 1, n, k, p));
    report(rows, `1 stream (${count} weights)`, k, n, 1, weights[0]!, t, err);
  }
  return rows;
}

const tables = threadCounts.map((threads) => [threads, table(threads)] as const);
addon.setNumThreads(startThreads);

if (args.out) {
  const md = [
    '# bf16 weights vs fp32 weights (GEMM)',
    '',
    `\`npx tsx bench/gemm/bf16.ts --reps ${reps} --threads ${args.threads}\`, ${new Date().toISOString().slice(0, 10)}. ` +
      `CPU: ${info.cpu.brand} (${info.cpu.features.join(', ')}), ${info.build.compiler}.`,
    '',
    'C = A·Wᵀ with W [N, K] packed once (`packWeight(w, K, N, true, precision)`); median of the reps, fp32 and bf16 ' +
      'alternating. GFLOP/s = 2·M·N·K / time. M = 1: fp32 streams the unpacked weight, bf16 the packed bf16 copy; ' +
      '"1 stream" cycles through distinct weights (≥ 128 MB of fp32) so that they come from memory. max rel err = ' +
      'max |C_bf16 − C_fp32| / max |C_fp32| with A, W ~ N(0, 1).',
    '',
    ...tables.flatMap(([threads, rows]) => ['', `## ${threads} thread${threads > 1 ? 's' : ''}`, '', header, ...rows]),
    '',
  ].join('\n');
  fs.writeFileSync(args.out, md);
  console.log(`\nwrote ${args.out}`);
}
