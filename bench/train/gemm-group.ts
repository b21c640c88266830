/**
 * A Linear's backward GEMMs (dW = dZᵀ·X with the bias row sums, dX = dZ·W) at the shapes of the small seed model
 * (256 tokens), three ways, interleaved: two `gemm` calls on 1 thread, two `gemm` calls on 2 threads (each product
 * split over both), one `gemmGroup` call on 2 threads (the products side by side, each whole on one thread).
 *
 *   npx tsx bench/train/gemm-group.ts [--reps 300] [--tokens 256]
 *
 * Prints per shape the median and the minimum wall time of each way (µs) and the load average; the minimum is the
 * figure least disturbed by a shared machine's other processes.
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { getBackend, setNumThreads } from '../../lib/index';
import type { GemmArgs } from '../../lib/backend/backend';
import { Rng } from '../../lib/tensor';

const { values: a } = parseArgs({ options: { reps: { type: 'string', default: '300' }, tokens: { type: 'string', default: '256' } }, strict: true });
const reps = Number(a.reps);
const tokens = Number(a.tokens);
if (!Number.isInteger(reps) || reps < 1) throw new RangeError(`gemm-group: --reps must be a positive integer, got '${a.reps}'`);
if (!Number.isInteger(tokens) || tokens < 1) throw new RangeError(`gemm-group: --tokens must be a positive integer, got '${a.tokens}'`);

const be = getBackend('native');
const rng = new Rng(1);
const rand = (n: number): Float32Array => Float32Array.from({ length: n }, () => rng.normal());
// [out, in] of the small model's Linears: q/k/v, out-proj, linear1, linear2, cross-attention k/v, the vocabulary head.
const shapes: [number, number][] = [[768, 256], [256, 256], [1024, 256], [256, 1024], [512, 256], [1000, 256]];
const BLOCK = 20;
const median = (x: number[]): number => [...x].sort((p, q) => p - q)[x.length >> 1]!;

console.log(`tokens ${tokens}, ${reps} reps per way; load ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
console.log('out×in     | 1T two calls (med / min µs) | 2T two calls | 2T gemmGroup | group vs two calls at 2T (med, min)');
for (const [nOut, nIn] of shapes) {
  const dz = rand(tokens * nOut);
  const x = rand(tokens * nIn);
  const w = rand(nOut * nIn);
  const dx = new Float32Array(tokens * nIn);
  const dw = new Float32Array(nOut * nIn);
  const db = new Float32Array(nOut);
  const dwArgs: GemmArgs = { a: dz, b: x, c: dw, m: nOut, n: nIn, k: tokens, transA: true, rowSumsA: db };
  const dxArgs: GemmArgs = { a: dz, b: w, c: dx, m: tokens, n: nIn, k: nOut };
  const ways: [string, number, () => void][] = [
    ['1T two', 1, () => { be.gemm(dwArgs); be.gemm(dxArgs); }],
    ['2T two', 2, () => { be.gemm(dwArgs); be.gemm(dxArgs); }],
    ['2T group', 2, () => be.gemmGroup({ gemms: [dwArgs, dxArgs] })],
  ];
  const times = ways.map(() => [] as number[]);
  // Blocks of BLOCK runs per way, the ways alternating (a thread count change re-creates the pool's workers).
  for (let r = 0; r < reps; r += BLOCK) {
    ways.forEach(([, threads, run], i) => {
      setNumThreads(threads);
      run();
      for (let j = r; j < Math.min(reps, r + BLOCK); j++) {
        const t0 = performance.now();
        run();
        times[i]!.push((performance.now() - t0) * 1e3);
      }
    });
  }
  const cells = times.map((t) => `${median(t).toFixed(0).padStart(5)} / ${Math.min(...t).toFixed(0).padStart(5)}`);
  const ratio = `${(median(times[2]!) / median(times[1]!)).toFixed(2)}, ${(Math.min(...times[2]!) / Math.min(...times[1]!)).toFixed(2)}`;
  console.log(`${`${nOut}×${nIn}`.padEnd(10)} | ${cells[0]}               | ${cells[1]}  | ${cells[2]}  | ${ratio}`);
}
console.log(`load at the end ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
