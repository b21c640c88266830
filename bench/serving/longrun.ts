/**
 * A long-running server's memory: starts `attnode serve` twice (a causal LM for completions and chat, an encoder for
 * embeddings), sends thousands of mixed requests through the official `openai` client and plain HTTP — chat
 * completions streamed and not, completions, embeddings, bad requests (400, 404, malformed JSON) and clients that
 * disconnect mid-stream — and samples each server's memory every `--every` requests from GET /metrics (resident set,
 * JS heap, external memory and its ArrayBuffers, the buffer pool's idle bytes, and the generation engine's KV bytes
 * in use, running and queued requests). Prints the curve and, after warm-up, how much its floor rose (V8 collects
 * lazily: the curve saws up between collections; a leak raises the floor). A same-run figure on a shared machine:
 * the load average is printed beside it.
 *
 *   npx tsx bench/serving/longrun.ts [--requests 3000] [--every 250] [--concurrency 8] [--warmup 500]
 *                                    [--gen-model DIR] [--embed-model DIR] [--server-args "--threads 1"] [--json FILE]
 *
 * Defaults serve the test fixtures (test/fixtures/hf/llama-chat, bert-st): tiny models, so the run is about the
 * server's own memory (per-request objects, KV rows, listeners, buffers), not about the kernels' speed. The exit code
 * is 0 either way; the last line is the run as JSON.
 */
import * as http from 'node:http';
import { loadavg } from 'node:os';
import * as path from 'node:path';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import OpenAI from 'openai';
import { ROOT, getJson, startServe, stopServer } from '../load/harness';
import { sendMixed, type MixTarget } from './request-mix';

const { values: a } = parseArgs({
  options: {
    requests: { type: 'string', default: '3000' },
    every: { type: 'string', default: '250' },
    concurrency: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '500' },
    'gen-model': { type: 'string', default: path.join(ROOT, 'test', 'fixtures', 'hf', 'llama-chat') },
    'embed-model': { type: 'string', default: path.join(ROOT, 'test', 'fixtures', 'hf', 'bert-st') },
    'server-args': { type: 'string', default: '--threads 1' },
    json: { type: 'string' },
  },
  strict: true,
});
const int = (name: string, v: string | undefined, min: number): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new RangeError(`--${name} must be an integer >= ${min}, got '${v}'`);
  return n;
};
const REQUESTS = int('requests', a.requests, 1);
const EVERY = int('every', a.every, 1);
const CONCURRENCY = int('concurrency', a.concurrency, 1);
const WARMUP = int('warmup', a.warmup, 0);

/** One memory sample of a server. */
interface Sample {
  requests: number;
  rssMiB: number;
  heapUsedMiB: number;
  externalMiB: number;
  arrayBuffersMiB: number;
  pooledMiB: number;
  kvBytesUsed?: number;
  running?: number;
  queued?: number;
}

async function main(): Promise<void> {
  const serverArgs = a['server-args']!.split(' ').filter(Boolean);
  const gen = await startServe(['--model', a['gen-model']!, '--served-model-name', 'gen', ...serverArgs]);
  const emb = await startServe(['--model', a['embed-model']!, '--served-model-name', 'emb', ...serverArgs]);
  const genClient = new OpenAI({ baseURL: `http://127.0.0.1:${gen.port}/v1`, apiKey: 'unused', maxRetries: 0 });
  const embClient = new OpenAI({ baseURL: `http://127.0.0.1:${emb.port}/v1`, apiKey: 'unused', maxRetries: 0 });
  const agent = new http.Agent({ keepAlive: false });
  const counts: Record<string, number> = {};
  const unexpected: string[] = [];

  const target: MixTarget = { genClient, embClient, genPort: gen.port, embPort: emb.port, genModel: 'gen', embModel: 'emb' };
  async function one(i: number): Promise<void> {
    const { kind, outcome, error } = await sendMixed(i, target);
    if (error && unexpected.length < 5) unexpected.push(`${kind}: ${error}`);
    const key = `${kind} ${outcome}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }

  async function sample(requests: number): Promise<{ gen: Sample; emb: Sample }> {
    const read = async (port: number): Promise<Sample> => {
      const m = (await getJson(agent, port, '/metrics')) as {
        memoryMiB: { rss: number; heapUsed: number; external: number; arrayBuffers: number; pooledBuffers: number };
        generation?: { kvBytesUsed?: number; running?: number; queued?: number };
      };
      const mm = m.memoryMiB;
      const g = m.generation;
      return {
        requests, rssMiB: mm.rss, heapUsedMiB: mm.heapUsed, externalMiB: mm.external, arrayBuffersMiB: mm.arrayBuffers, pooledMiB: mm.pooledBuffers,
        ...(g ? { kvBytesUsed: g.kvBytesUsed, running: g.running, queued: g.queued } : {}),
      };
    };
    return { gen: await read(gen.port), emb: await read(emb.port) };
  }

  const loadBefore = loadavg();
  const samples: { gen: Sample; emb: Sample }[] = [await sample(0)];
  const t0 = performance.now();
  let next = 0;
  let done = 0;
  let nextSample = EVERY;
  // Closed loop: `concurrency` clients, each sending its next request when the last is answered; the sample is
  // taken between requests, after those in flight settled (so KV rows and running counts are idle figures).
  while (next < REQUESTS) {
    const batchEnd = Math.min(REQUESTS, nextSample);
    const worker = async (): Promise<void> => {
      while (next < batchEnd) await one(next++);
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    done = next;
    const s = await sample(done);
    samples.push(s);
    process.stderr.write(`${String(done).padStart(6)} requests  gen rss ${s.gen.rssMiB.toFixed(1)} heap ${s.gen.heapUsedMiB.toFixed(1)} ab ${s.gen.arrayBuffersMiB.toFixed(1)} ` +
      `pool ${s.gen.pooledMiB.toFixed(1)} kv ${s.gen.kvBytesUsed ?? '-'} | emb rss ${s.emb.rssMiB.toFixed(1)} heap ${s.emb.heapUsedMiB.toFixed(1)} ` +
      `ab ${s.emb.arrayBuffersMiB.toFixed(1)} pool ${s.emb.pooledMiB.toFixed(1)}  (load ${loadavg()[0]!.toFixed(1)})\n`);
    nextSample += EVERY;
  }
  const seconds = (performance.now() - t0) / 1000;
  const loadAfter = loadavg();
  await stopServer(gen.child);
  await stopServer(emb.child);

  // V8 collects when it likes, so a single sample says little: the curve saws up between collections. What a leak
  // shows is a rising floor, so the summary compares the lowest sample of the second half after warm-up with the
  // lowest of the first half (and gives the highest, the sawtooth's top, beside it).
  const after = samples.filter((s) => s.gen.requests >= WARMUP);
  const half = Math.ceil(after.length / 2);
  const floorRise = (pick: (s: { gen: Sample; emb: Sample }) => number): number =>
    after.length < 2 ? 0 : Math.min(...after.slice(half).map(pick)) - Math.min(...after.slice(0, half).map(pick));
  const top = (pick: (s: { gen: Sample; emb: Sample }) => number): number => Math.max(...after.map(pick));
  const r1 = (x: number): number => Math.round(x * 10) / 10;
  const summary = {
    genRssFloorRiseMiB: r1(floorRise((s) => s.gen.rssMiB)), genRssTopMiB: r1(top((s) => s.gen.rssMiB)),
    genHeapFloorRiseMiB: r1(floorRise((s) => s.gen.heapUsedMiB)), genArrayBuffersFloorRiseMiB: r1(floorRise((s) => s.gen.arrayBuffersMiB)),
    embRssFloorRiseMiB: r1(floorRise((s) => s.emb.rssMiB)), embRssTopMiB: r1(top((s) => s.emb.rssMiB)),
    embHeapFloorRiseMiB: r1(floorRise((s) => s.emb.heapUsedMiB)), embArrayBuffersFloorRiseMiB: r1(floorRise((s) => s.emb.arrayBuffersMiB)),
  };
  console.log(`\n${REQUESTS} requests in ${seconds.toFixed(1)} s, ${CONCURRENCY} clients; load ${loadBefore.map((x) => x.toFixed(1)).join(' ')} → ${loadAfter.map((x) => x.toFixed(1)).join(' ')}`);
  console.log('\n| requests | gen RSS | gen JS heap | gen ArrayBuffers | gen pool idle | gen KV bytes in use | emb RSS | emb JS heap | emb ArrayBuffers | emb pool idle |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const s of samples) {
    console.log(`| ${s.gen.requests} | ${s.gen.rssMiB.toFixed(1)} | ${s.gen.heapUsedMiB.toFixed(1)} | ${s.gen.arrayBuffersMiB.toFixed(1)} | ${s.gen.pooledMiB.toFixed(1)} | ${s.gen.kvBytesUsed ?? '-'} | ` +
      `${s.emb.rssMiB.toFixed(1)} | ${s.emb.heapUsedMiB.toFixed(1)} | ${s.emb.arrayBuffersMiB.toFixed(1)} | ${s.emb.pooledMiB.toFixed(1)} |`);
  }
  console.log(`\nafter ${WARMUP} requests (MiB; floor rise = lowest sample of the second half − lowest of the first): ${Object.entries(summary).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  console.log('outcomes:', Object.entries(counts).sort().map(([k, v]) => `${k} ${v}`).join(', '));
  if (unexpected.length) console.log('first unexpected errors:', unexpected.join(' | '));
  const run = { date: new Date().toISOString(), requests: REQUESTS, concurrency: CONCURRENCY, seconds, loadBefore, loadAfter, samples, summary, counts };
  if (a.json) writeFileSync(a.json, JSON.stringify(run, null, 1));
  console.log(JSON.stringify({ summary, counts }));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
