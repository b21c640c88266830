/**
 * Soak test: many mixed native calls, every result checked, memory watched.
 *
 *   npx tsx scripts/soak.ts [--calls 100000] [--workers 2] [--sample 500] [--concurrency 8] [--max-growth 10]
 *
 * The main thread runs a rotating mix of ops and small modules at several sizes (linear+gelu, batched matmul,
 * softmax, layerNorm, embedding, broadcast add, scaledDotProductAttention, MultiheadAttention with a padding mask, a
 * TransformerEncoderLayer), half of them synchronously and half through runAsync / forwardAsync with up to
 * `--concurrency` calls in flight. `--workers` worker_threads each load the addon themselves and run raw immediate
 * and recorded (command list + submit) calls. Workers do a quarter of `--calls`; the main thread the rest.
 *
 * Every result is compared bit for bit with the same job's result computed once, sequentially and synchronously, at
 * start (the kernels are deterministic for a fixed thread count and kernel path). process.memoryUsage().rss is
 * sampled every `--sample` main-thread calls, right after a full GC (so garbage that V8 simply has not collected yet,
 * and the freed-but-cached typed arrays behind it, do not look like a leak; what is left is live or leaked memory).
 *
 * Pass criterion (robust to GC sawtooth and allocator warm-up): the median RSS of the last quarter of the samples
 * is at most `--max-growth` % (default 10) above the median of the second quarter, or less than 16 MiB above it
 * (tiny absolute drift is noise); the first quarter is warm-up and ignored. The least-squares slope over the second
 * half is printed (KiB per 1000 calls) for information. Exit code 1 on any mismatch, error or growth.
 */
import * as path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker } from 'node:worker_threads';
import { runAsync } from '../lib/async';
import { scaledDotProductAttention } from '../lib/attention';
import { addon } from '../lib/backend/native';
import { setBackend } from '../lib/backend/registry';
import * as nn from '../lib/nn';
import { setGradEnabled } from '../lib/autograd/index';
import * as ops from '../lib/ops';
import { randn, tensor, type Tensor } from '../lib/tensor';

// Inference only: no autograd graph (parameters require grad by default, as in PyTorch).
setGradEnabled(false);

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v < 0) throw new Error(`soak: --${name} needs a non-negative number`);
  return v;
}

const CALLS = arg('calls', 100_000);
const WORKERS = arg('workers', 2);
const SAMPLE = Math.max(1, arg('sample', 500));
const CONCURRENCY = Math.max(1, arg('concurrency', 8));
const MAX_GROWTH = arg('max-growth', 10);

// A full GC before each sample. --expose-gc cannot be passed through npx tsx portably; this is V8's documented way
// to turn it on at run time.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

if (!addon) {
  console.error('soak: the native addon is not loaded; nothing to soak');
  process.exit(1);
}
setBackend('native');

interface Job {
  name: string;
  /** Runs the job on the current backend (recorded when inside runAsync) and returns its output. */
  run: () => Tensor<'float32'>;
  /** The async form: runAsync(run), or the module's forwardAsync. */
  runAsync: () => Promise<Tensor<'float32'>>;
}

function makeJobs(): Job[] {
  const jobs: Job[] = [];
  const add = (name: string, run: () => Tensor<'float32'>, asyncRun?: () => Promise<Tensor<'float32'>>): void => {
    jobs.push({ name, run, runAsync: asyncRun ?? (() => runAsync(run)) });
  };
  for (const [m, k, n] of [[8, 64, 128], [33, 17, 31], [1, 256, 64]] as const) {
    const x = randn([m, k], { seed: m });
    const w = randn([n, k], { seed: n });
    const b = randn([n], { seed: k });
    add(`linear+gelu ${m}x${k}x${n}`, () => ops.linear(x, w, b, { activation: 'gelu' }));
  }
  {
    const a = randn([4, 16, 32], { seed: 1 });
    const b = randn([4, 32, 16], { seed: 2 });
    add('matmul batched [4,16,32]x[4,32,16]', () => ops.matmul(a, b));
  }
  for (const [r, c] of [[64, 33], [7, 1000]] as const) {
    const x = randn([r, c], { seed: r + c });
    add(`softmax [${r},${c}]`, () => ops.softmax(x, -1));
  }
  {
    const x = randn([32, 96], { seed: 5 });
    const g = randn([96], { seed: 6 });
    const b = randn([96], { seed: 7 });
    add('layerNorm [32,96]', () => ops.layerNorm(x, 96, g, b));
  }
  {
    const w = randn([100, 48], { seed: 8 });
    const ids = tensor(Int32Array.from({ length: 40 }, (_, i) => (i * 37) % 100), [8, 5], 'int32');
    add('embedding 40 ids x 48', () => ops.embedding(ids, w));
  }
  {
    const a = randn([6, 1, 40], { seed: 9 });
    const b = randn([5, 40], { seed: 10 });
    add('add broadcast [6,1,40]+[5,40]', () => ops.add(a, b));
  }
  for (const [bsz, h, l, d] of [[2, 4, 16, 16], [1, 2, 33, 8]] as const) {
    const q = randn([bsz, h, l, d], { seed: 11 + l });
    const k = randn([bsz, h, l, d], { seed: 12 + l });
    const v = randn([bsz, h, l, d], { seed: 13 + l });
    add(`sdpa causal [${bsz},${h},${l},${d}]`, () => scaledDotProductAttention(q, k, v, { isCausal: true }));
  }
  {
    const mha = new nn.MultiheadAttention({ embedDim: 32, numHeads: 4 });
    const q = randn([10, 2, 32], { seed: 14 });
    const kpm = tensor(new Uint8Array(20).map((_, i) => (i % 7 === 6 ? 1 : 0)), [2, 10], 'bool');
    const fwd = (): Tensor<'float32'> => mha.forward(q, q, q, { keyPaddingMask: kpm }).output;
    add('MultiheadAttention e32 h4 [10,2,32]', fwd, async () => (await mha.forwardAsync(q, q, q, { keyPaddingMask: kpm })).output);
  }
  {
    const layer = new nn.TransformerEncoderLayer({ dModel: 32, nhead: 4, dimFeedforward: 64, activation: 'gelu' }).eval();
    const src = randn([6, 2, 32], { seed: 15 });
    add('TransformerEncoderLayer d32 [6,2,32]', () => layer.forward(src), () => layer.forwardAsync(src));
    // The server's path: batches of varying shape through runAsync with pooled buffers (size classes).
    for (const [sq, n] of [[9, 3], [14, 2], [5, 7]] as const) {
      const x = randn([sq, n, 32], { seed: 16 + sq });
      add(`TransformerEncoderLayer d32 [${sq},${n},32] reuseBuffers`, () => layer.forward(x), () => runAsync(() => layer.forward(x), { reuseBuffers: true }));
    }
  }
  {
    const x = randn([40, 64], { seed: 20 });
    const r = randn([40, 64], { seed: 21 });
    add('addLayerNorm [40,64]', () => ops.addLayerNorm(x, r, 64));
  }
  if (addon?.info().bf16) {
    const layer = new nn.TransformerEncoderLayer({ dModel: 64, nhead: 4, dimFeedforward: 128 }).eval().useWeightPrecision('bfloat16');
    const src = randn([12, 2, 64], { seed: 22 });
    add('TransformerEncoderLayer d64 bfloat16 weights', () => layer.forward(src), () => layer.forwardAsync(src));
    // bfloat16 attention (packed K/V scratch per call) inside a 2-layer encoder (nested forward scopes).
    const enc = new nn.TransformerEncoder({ layer: { dModel: 64, nhead: 4, dimFeedforward: 128 }, numLayers: 2 }).eval().useAttentionPrecision('bfloat16');
    const long = randn([70, 2, 64], { seed: 23 });
    add('TransformerEncoder 2x d64 bfloat16 attention [70,2,64]', () => enc.forward(long), () => enc.forwardAsync(long));
  }
  return jobs;
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

// Worker: loads the addon itself (as a separate environment) and checks its own results against its first ones.
const WORKER_CODE = `
const { parentPort, workerData } = require('node:worker_threads');
const a = require(workerData.nodeGypBuild)(workerData.root);
const n = 48, l = 12, d = 16;
const x = new Float32Array(n * n).map((_, i) => Math.sin(i)), w = new Float32Array(n * n).map((_, i) => Math.cos(i));
const q = new Float32Array(2 * l * d).map((_, i) => Math.sin(i * 0.3));
const s = [l * d, l * d, d];
function once(rec) {
  const y = new Float32Array(n * n), z = new Float32Array(n * n), o = new Float32Array(2 * l * d);
  const list = rec ? a.createCommandList() : null;
  const call = (op, ...args) => (rec ? a[op + 'Record'](list, ...args) : a[op](...args));
  call('gemm', x, w, y, n, n, n, false, true, 1, 0, null, 1, 1, 0, 0, 0);
  call('softmax', y, z, n, n);
  call('attention', q, q, q, o, s, s, s, s, [2, 1, l, l, d, d], 0.25, [], true, null);
  return rec ? a.submit(list).then(() => [z, o]) : Promise.resolve([z, o]);
}
const same = (p, r) => p.length === r.length && p.every((v, i) => Object.is(v, r[i]));
(async () => {
  const [z0, o0] = await once(false);
  let mismatches = 0, calls = 0;
  for (let i = 0; i < workerData.rounds; i++) {
    const [z, o] = await once(i % 2 === 1);
    calls += 3;
    if (!same(z, z0) || !same(o, o0)) mismatches++;
  }
  parentPort.postMessage({ calls, mismatches });
})().catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));
`;

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  const MiB = 1024 * 1024;
  const jobs = makeJobs();
  const reference = jobs.map((j) => j.run().data.slice());
  const workerCalls = WORKERS > 0 ? Math.floor(CALLS / 4) : 0;
  const mainCalls = CALLS - workerCalls;
  console.log(`soak: ${CALLS} calls (${mainCalls} main thread over ${jobs.length} jobs, ${workerCalls} in ${WORKERS} workers), ` +
    `${addon!.info().isa}, ${addon!.getNumThreads()} threads, asan=${addon!.info().build.asan}`);

  const root = path.resolve(__dirname, '..');
  const workers = Array.from({ length: WORKERS }, () => new Promise<{ calls: number; mismatches: number }>((resolve, reject) => {
    const w = new Worker(WORKER_CODE, {
      eval: true,
      workerData: { root, nodeGypBuild: require.resolve('node-gyp-build'), rounds: Math.ceil(workerCalls / WORKERS / 3) },
    });
    w.once('message', (m: { calls: number; mismatches: number; error?: string }) => (m.error ? reject(new Error(m.error)) : resolve(m)));
    w.once('error', reject);
    w.once('exit', (code) => (code !== 0 ? reject(new Error(`worker exited with ${code}`)) : undefined));
  }));

  const start = process.memoryUsage().rss;
  const samples: number[] = [];
  let mismatches = 0;
  let done = 0;
  let asyncCalls = 0;
  const t0 = performance.now();
  const check = (ji: number, out: Tensor<'float32'>): void => {
    if (!sameBits(out.data, reference[ji]!)) {
      mismatches++;
      if (mismatches <= 5) console.error(`soak: mismatch in '${jobs[ji]!.name}' at call ${done}`);
    }
  };
  while (done < mainCalls) {
    // Alternate a block of sync calls and a block of concurrent async calls.
    const block = Math.min(CONCURRENCY, mainCalls - done);
    if ((done / CONCURRENCY) % 2 < 1) {
      for (let i = 0; i < block; i++) {
        const ji = (done + i) % jobs.length;
        check(ji, jobs[ji]!.run());
      }
    } else {
      const inflight: Promise<void>[] = [];
      for (let i = 0; i < block; i++) {
        const ji = (done + i) % jobs.length;
        inflight.push(jobs[ji]!.runAsync().then((out) => check(ji, out)));
      }
      await Promise.all(inflight);
      asyncCalls += block;
    }
    const before = done;
    done += block;
    if (Math.floor(done / SAMPLE) > Math.floor(before / SAMPLE)) {
      gc();
      samples.push(process.memoryUsage().rss);
    }
  }
  const mainMs = performance.now() - t0;
  const workerResults = await Promise.all(workers);
  gc();
  const mem = process.memoryUsage();
  const end = mem.rss;

  const q = Math.floor(samples.length / 4);
  const second = samples.slice(q, 2 * q);
  const last = samples.slice(samples.length - q);
  const m2 = median(second);
  const m4 = median(last);
  const half = samples.slice(samples.length >> 1);
  // Least-squares slope over the second half, in bytes per sample → KiB per 1000 calls.
  const xm = (half.length - 1) / 2;
  const ym = half.reduce((a, b) => a + b, 0) / half.length;
  let num = 0;
  let den = 0;
  half.forEach((y, i) => {
    num += (i - xm) * (y - ym);
    den += (i - xm) ** 2;
  });
  const slopeKiB = den > 0 ? (num / den / SAMPLE) * 1000 / 1024 : 0;
  const wCalls = workerResults.reduce((a, r) => a + r.calls, 0);
  const wMismatch = workerResults.reduce((a, r) => a + r.mismatches, 0);
  const growthPct = ((m4 - m2) / m2) * 100;
  const grew = q > 0 && growthPct > MAX_GROWTH && m4 - m2 > 16 * MiB;

  console.log(`soak: main ${done} calls (${asyncCalls} async) in ${(mainMs / 1000).toFixed(1)} s; workers ${wCalls} calls`);
  console.log(`soak: rss start ${(start / MiB).toFixed(1)} MiB, end ${(end / MiB).toFixed(1)} MiB, max ${(Math.max(...samples, end) / MiB).toFixed(1)} MiB, ` +
    `${samples.length} samples`);
  console.log(`soak: median rss 2nd quarter ${(m2 / MiB).toFixed(1)} MiB, last quarter ${(m4 / MiB).toFixed(1)} MiB ` +
    `(${growthPct >= 0 ? '+' : ''}${growthPct.toFixed(2)} %, limit ${MAX_GROWTH} % and 16 MiB); slope over 2nd half ${slopeKiB.toFixed(2)} KiB/1000 calls`);
  console.log(`soak: at end after GC: heapUsed ${(mem.heapUsed / MiB).toFixed(1)} MiB, external ${(mem.external / MiB).toFixed(1)} MiB, ` +
    `arrayBuffers ${(mem.arrayBuffers / MiB).toFixed(1)} MiB`);
  console.log(`soak: mismatches main ${mismatches}, workers ${wMismatch}`);
  if (mismatches || wMismatch || grew) {
    console.error(`soak: FAIL${grew ? ' (RSS keeps growing)' : ''}${mismatches || wMismatch ? ' (result mismatch)' : ''}`);
    process.exit(1);
  }
  console.log('soak: PASS');
}

main().catch((e: unknown) => {
  console.error('soak: FAIL', e);
  process.exit(1);
});
