/**
 * Where the feature-extraction pipeline's time goes at the bench's shape (MiniLM-L6, 1000 sentences, batch 32):
 *
 *   npx tsx bench/embeddings/profile.ts [--threads 1,2] [--rounds 3] [--n 1000] [--batch 32] [--ops]
 *
 * Per thread count, over `rounds` (median):
 *   pipeline   the whole call as run.ts times it (text → normalised vectors), wall and CPU of each busy thread
 *              (JS thread, executor, pool workers; from /proc/self/task): how long the second thread idles
 *   tokenize   the pipeline's tokenization alone (length pass + padded batches)
 *   forward    the same padded batches through the model synchronously, one after another (no tokenizing, no
 *              pooling, no executor): the native work plus the JS of recording it, on the JS thread
 *   pool       mean pooling + normalisation of those outputs in JS
 * With `--ops`, every native call of one synchronous pass over all batches is timed (wall and process CPU, i.e.
 * both threads) and summed by its place in the layer: CPU/wall says how much the second thread ran inside each op.
 *
 * A development tool: nothing is written; on a loaded machine compare within a run only.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pipeline } from '../../lib/pipelines';
import { setNumThreads, info } from '../../lib/runtime';
import { noGrad } from '../../lib/autograd/grad-mode';
import { addon } from '../../lib/backend/native';
import { poolTokens } from '../../lib/pipelines/feature-extraction';
import type { Tensor } from '../../lib/tensor';
import { median } from '../honest';
import { arg } from './cli';
import { makeSentences } from './sentences';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const DIR = path.join(ROOT, 'bench', 'models', 'minilm-l6-random');

const THREADS = arg('threads', '1,2').split(',').map(Number);
const ROUNDS = Number(arg('rounds', '3'));
const N = Number(arg('n', '1000'));
const BATCH = Number(arg('batch', '32'));
const OPS = process.argv.includes('--ops');
const BF16 = process.argv.includes('--bf16');

const load = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const TICK_MS = 1000 / 100; // USER_HZ

/** CPU ms per thread of this process (utime + stime from /proc/self/task/<tid>/stat). */
function threadCpu(): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const s = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), (Number(f[11]) + Number(f[12])) * TICK_MS);
    } catch { /* thread ended */ }
  }
  return out;
}
/** The threads that ran during an interval, busiest first (JS thread marked). */
function busyThreads(a: Map<number, number>, b: Map<number, number>, wall: number): string {
  const rows = [...b].map(([tid, t]) => ({ tid, ms: t - (a.get(tid) ?? 0) })).filter((r) => r.ms >= Math.max(20, wall * 0.02));
  rows.sort((x, y) => y.ms - x.ms);
  return rows.map((r) => `${r.tid === process.pid ? 'js' : r.tid} ${r.ms.toFixed(0)}`).join(', ');
}

async function main(): Promise<void> {
  if (!addon) throw new Error(`native addon not loaded: ${info().nativeError}`);
  const texts = makeSentences(N);
  const p = await pipeline('feature-extraction', DIR, { batchSize: BATCH, ...(BF16 ? { weightPrecision: 'bfloat16' as const } : {}) });
  const tok = p.tokenizer;
  const d = p.model.config.hiddenSize;
  const limit = 512;
  const tokenize = () => {
    const lengths = tok.encodeBatch(texts, { truncation: true, maxLength: limit }).map((ids) => ids.length);
    const order = texts.map((_, i) => i).sort((a, b) => lengths[a]! - lengths[b]! || a - b);
    const batches = [];
    for (let s = 0; s < order.length; s += BATCH) {
      batches.push(tok(order.slice(s, s + BATCH).map((i) => texts[i]!), { padding: true, truncation: true, maxLength: limit }));
    }
    return batches;
  };
  const batches = tokenize();
  const widths = batches.map((b) => b.inputIds.shape[1]!);
  console.log(`${N} sentences in ${batches.length} batches, padded widths ${widths[0]}..${widths.at(-1)}, ` +
    `padded tokens ${widths.reduce((a, w, i) => a + w * batches[i]!.inputIds.shape[0]!, 0)}; ${BF16 ? 'bf16 weights; ' : ''}load ${load()}`);

  const forwardAll = (): Tensor<'float32'>[] => noGrad(() => batches.map((b) => p.model.forward(b.inputIds, { attentionMask: b.attentionMask, tokenTypeIds: b.tokenTypeIds }).lastHiddenState));
  const poolAll = (outs: Tensor<'float32'>[]) => {
    outs.forEach((h, k) => {
      const t = h.shape[1]!;
      const mask = batches[k]!.attentionMask.data;
      for (let r = 0; r < h.shape[0]!; r++) {
        let len = 0;
        for (let j = 0; j < t; j++) len += mask[r * t + j] ? 1 : 0;
        poolTokens(h.data, r * t * d, len, d, 'mean', true);
      }
    });
  };

  for (const n of THREADS) {
    setNumThreads(n);
    await p(texts.slice(0, 4 * BATCH), { pooling: 'mean', normalize: true });
    forwardAll();
    const rec: Record<string, number[]> = { pipeline: [], pipelineCpu: [], tokenize: [], forward: [], forwardCpu: [], pool: [] };
    let lastThreads = '';
    let lastFwdThreads = '';
    for (let r = 0; r < ROUNDS; r++) {
      let c0 = process.cpuUsage();
      let th0 = threadCpu();
      let t0 = performance.now();
      await p(texts, { pooling: 'mean', normalize: true });
      let w = performance.now() - t0;
      rec.pipeline!.push(w);
      const cu = process.cpuUsage(c0);
      rec.pipelineCpu!.push((cu.user + cu.system) / 1000);
      lastThreads = busyThreads(th0, threadCpu(), w);

      t0 = performance.now();
      tokenize();
      rec.tokenize!.push(performance.now() - t0);

      c0 = process.cpuUsage();
      th0 = threadCpu();
      t0 = performance.now();
      const outs = forwardAll();
      w = performance.now() - t0;
      rec.forward!.push(w);
      const cf = process.cpuUsage(c0);
      rec.forwardCpu!.push((cf.user + cf.system) / 1000);
      lastFwdThreads = busyThreads(th0, threadCpu(), w);

      t0 = performance.now();
      poolAll(outs);
      rec.pool!.push(performance.now() - t0);
    }
    const m = (k: string) => median(rec[k]!);
    console.log(`\nthreads ${n} (${ROUNDS} rounds, medians; load ${load()})`);
    console.log(`  pipeline  ${m('pipeline').toFixed(0)} ms wall, ${m('pipelineCpu').toFixed(0)} ms CPU (CPU/wall ${(m('pipelineCpu') / m('pipeline')).toFixed(2)}); per-thread CPU ms of the last round: ${lastThreads}`);
    console.log(`  tokenize  ${m('tokenize').toFixed(0)} ms`);
    console.log(`  forward   ${m('forward').toFixed(0)} ms wall (sync, batches back to back), ${m('forwardCpu').toFixed(0)} ms CPU (CPU/wall ${(m('forwardCpu') / m('forward')).toFixed(2)}); per-thread: ${lastFwdThreads}`);
    console.log(`  pool      ${m('pool').toFixed(0)} ms`);
    console.log(`  pipeline − (tokenize + forward + pool) = ${(m('pipeline') - m('tokenize') - m('forward') - m('pool')).toFixed(0)} ms`);
    console.log(`  rounds: ${rec.pipeline!.map((x) => x.toFixed(0)).join(', ')} | forward ${rec.forward!.map((x) => x.toFixed(0)).join(', ')}`);
    if (OPS) profileOps(forwardAll, batches.length);
  }
}

/** Every native call of one synchronous pass over all batches, summed by its place in a forward. */
function profileOps(forwardAll: () => unknown, nb: number): void {
  const table = addon as unknown as Record<string, unknown>;
  const skip = /Record$|^(packWeight|createCommandList|submit|runList|info)$|^(set|get)[A-Z]/;
  const saved = new Map<string, unknown>();
  interface Rec { name: string; wall: number; cpu: number; flops: number; calls: number }
  const perCall: Rec[] = [];
  let gap = 0;
  let lastEnd = 0;
  for (const op of Object.keys(table)) {
    const f = table[op];
    if (typeof f !== 'function' || skip.test(op)) continue;
    saved.set(op, f);
    table[op] = (...args: unknown[]): unknown => {
      const g = (args[0] ?? {}) as Record<string, number>;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      if (lastEnd > 0) gap += t0 - lastEnd;
      const r = (f as (...x: unknown[]) => unknown).apply(addon, args);
      const t1 = performance.now();
      const cu = process.cpuUsage(c0);
      lastEnd = t1;
      let name = op;
      let flops = 0;
      if (op === 'gemm') { name = `gemm n${g.n} k${g.k}${g.act ? ` ${String(g.act)}` : ''}`; flops = 2 * g.m! * g.n! * g.k! * (g.batch ?? 1); }
      if (op === 'attention') { name = 'attention'; flops = 2 * g.batch! * g.heads! * g.lq! * g.lk! * (g.dk! + g.dv!); }
      perCall.push({ name, wall: t1 - t0, cpu: (cu.user + cu.system) / 1000, flops, calls: 1 });
      return r;
    };
  }
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  forwardAll();
  const wall = performance.now() - t0;
  const cu = process.cpuUsage(c0);
  for (const [op, f] of saved) table[op] = f;
  const byName = new Map<string, Rec>();
  for (const r of perCall) {
    const e = byName.get(r.name) ?? { name: r.name, wall: 0, cpu: 0, flops: 0, calls: 0 };
    e.wall += r.wall; e.cpu += r.cpu; e.flops += r.flops; e.calls++;
    byName.set(r.name, e);
  }
  const cpu = (cu.user + cu.system) / 1000;
  console.log(`  ops of one sync pass (${nb} batches): ${wall.toFixed(0)} ms wall, ${cpu.toFixed(0)} ms CPU; ${perCall.length} native calls; JS between calls ${gap.toFixed(0)} ms`);
  console.log(`  ${'op'.padEnd(26)} calls  wall ms   CPU ms  CPU/wall  GFLOP/s wall`);
  for (const e of byName.values()) {
    console.log(`  ${e.name.padEnd(26)} ${String(e.calls).padStart(5)} ${e.wall.toFixed(1).padStart(8)} ${e.cpu.toFixed(1).padStart(8)} ${(e.cpu / e.wall).toFixed(2).padStart(9)}  ${e.flops ? (e.flops / e.wall / 1e6).toFixed(1).padStart(12) : ''}`);
  }
}

main().catch((e: unknown) => { console.error(e); process.exit(1); });
