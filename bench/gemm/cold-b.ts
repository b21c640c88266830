/**
 * Cold vs warm pre-packed weights: C = A·Wᵀ (a Linear layer, W stored [N, K], packed once by
 * `packWeight(w, K, N, true)`), fp32 (or --precision bfloat16), at 1 thread by default.
 *
 *   npx tsx bench/gemm/cold-b.ts                       warm vs cold, median of 11 reps
 *   npx tsx bench/gemm/cold-b.ts --reps 15 --m 128 --threads 2
 *   npx tsx bench/gemm/cold-b.ts --precision bfloat16          bf16-packed weights (needs AVX512-BF16)
 *   ATTNODE_GEMM_PREFETCH=0 npx tsx bench/gemm/cold-b.ts     without the next-block prefetch (read once per process)
 *
 * "warm" repeats the GEMM on one packed weight (it stays in L2/L3); "cold" cycles through enough distinct
 * packed weights (>= 128 MB in all) that each call's weight comes from memory, as in a model's forward
 * pass where every weight is read once per call. GFLOP/s = 2·M·N·K / time; each cell is the median of
 * `reps` repetitions of ~40 ms, all variants and modes interleaved within each repetition so machine
 * load hits them alike. cold/warm < 1 is the cold-weight penalty.
 *
 * `--env 'A=1 B=2,A=0'` runs each comma-separated variant with its NAME=value assignments in process.env
 * (in the same process, interleaved), for an experimental switch a kernel reads at every call (setenv from
 * JS reaches getenv); each variant gets its own set of packed weights, packed with its environment. Do not
 * use it to compare allocation policies: sets with different page sizes in one process disturbed each
 * other's cold timings (4 KiB-page sets ran 1.3-2x slower next to huge-page sets than on their own).
 */
import * as fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { addon as maybeAddon, type PackedWeight } from '../../lib/backend/native';
import { randn } from '../../lib/tensor';

const { values: args } = parseArgs({
  options: {
    reps: { type: 'string', default: '11' },
    threads: { type: 'string', default: '1' },
    m: { type: 'string', default: '128,512' },
    env: { type: 'string' },
    mb: { type: 'string', default: '128' },
    precision: { type: 'string', default: 'float32' },
  },
});
const reps = Number(args.reps);
const threads = Number(args.threads);
const ms = args.m.split(',').map(Number);
const coldBytes = Number(args.mb) * (1 << 20);
const precision = args.precision as 'float32' | 'bfloat16';
if (precision !== 'float32' && precision !== 'bfloat16') throw new Error('--precision float32|bfloat16');
if (!(reps >= 1) || !(threads >= 1) || ms.some((m) => !(m >= 2))) {
  throw new Error("usage: --reps N (>= 1) --threads T --m 128,512 [--env 'A=1 B=2,A=0'] [--mb 128]");
}
// Variants: each a set of NAME=value assignments (space-separated), applied to process.env.
const envValues: (string | null)[] = args.env ? args.env.split(',') : [null];
const envNames = new Set<string>();
const parseVariant = (v: string): [string, string][] =>
  v
    .trim()
    .split(/\s+/)
    .map((kv) => {
      const eq = kv.indexOf('=');
      if (eq <= 0) throw new Error(`--env: expected NAME=value, got "${kv}"`);
      envNames.add(kv.slice(0, eq));
      return [kv.slice(0, eq), kv.slice(eq + 1)];
    });
const variantEnv = envValues.map((v) => (v === null ? [] : parseVariant(v)));

if (!maybeAddon) throw new Error('the native addon is not available: build it with `npm run build:native`');
const addon = maybeAddon;
const info = addon.info();
const startThreads = addon.getNumThreads();
addon.setNumThreads(threads);

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  return s[s.length >> 1]!;
}

function setVariant(v: string | null): void {
  for (const name of envNames) delete process.env[name];
  const vi = envValues.indexOf(v);
  for (const [name, value] of variantEnv[vi] ?? []) process.env[name] = value;
}

const shapes: [number, number][] = [
  [768, 2304],
  [768, 768],
  [768, 3072],
  [3072, 768],
];

console.log(
  `CPU ${info.cpu.brand} (L2 ${info.cpu.l2Bytes >> 10} KiB), ${threads} thread(s), ${precision} pre-packed, ` +
    `median of ${reps} reps, cold = cycling >= ${args.mb} MB of packed weights`,
);
const variantLabel = (v: string | null): string => (v === null ? '' : ` [${v}]`);
const cols = envValues.flatMap((v) => [`warm${variantLabel(v)}`, `cold${variantLabel(v)}`]);
const header =
  `| M | K | N | weight MB | ${cols.join(' | ')} | ${envValues.map((v) => `cold/warm${variantLabel(v)}`).join(' | ')}` +
  (envValues.length > 1
    ? ` | ${envValues
        .slice(1)
        .flatMap((v) => [`warm ${v}/${envValues[0]}`, `cold ${v}/${envValues[0]}`])
        .join(' | ')}`
    : '') +
  ' |';
console.log('\n' + header);
console.log('|' + '---|'.repeat(header.split('|').length - 2));

for (const [k, n] of shapes) {
  const w = randn([n, k], { seed: k + n }).data;
  const bytes = k * n * (precision === 'bfloat16' ? 2 : 4);
  const count = Math.max(2, Math.ceil(coldBytes / bytes));
  // Distinct memory is what makes them cold; the same values are fine.
  // One set per variant, packed with the variant's environment (for switches read at packing).
  const hugeKb = (): number => {
    try {
      const m = /AnonHugePages:\s+(\d+)/.exec(fs.readFileSync('/proc/self/smaps_rollup', 'utf8'));
      return m ? Number(m[1]) : NaN;
    } catch {
      return NaN;
    }
  };
  const hugeMb: string[] = [];
  const packedSets: PackedWeight[][] = envValues.map((v) => {
    setVariant(v);
    const h0 = hugeKb();
    const set = Array.from({ length: count }, () => addon.packWeight(w, k, n, true, precision));
    hugeMb.push(((hugeKb() - h0) / 1024).toFixed(0));
    return set;
  });
  console.error(`  ${k}x${n}: ${count} weights per set, huge pages gained per set (MB): ${hugeMb.join(', ')}`);
  for (const m of ms) {
    const a = randn([m, k], { seed: m }).data;
    const c = new Float32Array(m * n);
    let packed = packedSets[0]!;
    const run = (p: PackedWeight): void => {
      addon.gemm({ a, b: w, c, m, n, k, transB: true, packedB: p });
    };
    // Check every variant gives the same bits as the first.
    let ref: Float32Array | null = null;
    for (const [vi, v] of envValues.entries()) {
      setVariant(v);
      run(packedSets[vi]!.at(-1)!);
      if (ref === null) ref = c.slice();
      else if (!c.every((x, i) => Object.is(x, ref![i]))) throw new Error(`variant ${v} changes results`);
    }
    const modes: { name: string; v: string | null; set: PackedWeight[]; cold: boolean }[] = envValues.flatMap(
      (v, vi) => [
        { name: `warm${variantLabel(v)}`, v, set: packedSets[vi]!, cold: false },
        { name: `cold${variantLabel(v)}`, v, set: packedSets[vi]!, cold: true },
      ],
    );
    let next = 0;
    const call = (cold: boolean): void => {
      if (cold) {
        run(packed[next]!);
        next = (next + 1) % count;
      } else {
        run(packed[0]!);
      }
    };
    // Calibrate on warm: ~40 ms per rep.
    setVariant(envValues[0]!);
    let iters = 1;
    for (;;) {
      const t0 = performance.now();
      for (let i = 0; i < iters; i++) call(false);
      const dt = performance.now() - t0;
      if (dt > 10) {
        iters = Math.max(2, Math.round((iters * 40) / dt));
        break;
      }
      iters *= 4;
    }
    const samples = modes.map(() => [] as number[]);
    for (let r = 0; r < reps; r++) {
      modes.forEach((md, idx) => {
        setVariant(md.v);
        packed = md.set;
        call(md.cold); // untimed: settles the variant (and for warm, pulls the weight in)
        const t0 = performance.now();
        for (let i = 0; i < iters; i++) call(md.cold);
        samples[idx]!.push((performance.now() - t0) / 1000 / iters);
      });
    }
    const flops = 2 * m * n * k;
    const g = samples.map((s) => flops / median(s) / 1e9);
    const ratios = envValues.map((_, vi) => g[2 * vi + 1]! / g[2 * vi]!);
    const vs = envValues.slice(1).flatMap((_, i) => [g[2 * (i + 1)]! / g[0]!, g[2 * (i + 1) + 1]! / g[1]!]);
    console.log(
      `| ${m} | ${k} | ${n} | ${(bytes / 1e6).toFixed(2)} | ${g.map((x) => x.toFixed(1)).join(' | ')} | ` +
        ratios.map((x) => x.toFixed(3)).join(' | ') +
        (vs.length ? ` | ${vs.map((x) => x.toFixed(3)).join(' | ')}` : '') +
        ' |',
    );
  }
}
setVariant(null);
addon.setNumThreads(startThreads);
