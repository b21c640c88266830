/**
 * HTTP load test of the example inference server (`attnode serve`).
 *
 *   npx tsx bench/load/run.ts            every concurrency level for 8 s, batching on and off
 *   npx tsx bench/load/run.ts --quick    3 s per level (≤ ~1 min in all)
 *   npx tsx bench/load/run.ts --help     all options
 *
 * For each mode (dynamic batching on, then off: one request per forward pass)
 * it spawns the server on 127.0.0.1 (a free port), warms it up, then drives it
 * at each concurrency level with a bounded in-process HTTP client (`c`
 * keep-alive connections, each sending its next request when the previous one
 * is answered: a closed-loop load), for a fixed time. Recorded per level:
 * throughput, client-side latency p50/p90/p99, errors, the server's mean batch
 * size and its event-loop delay p99 under load (from GET /metrics, reset
 * before each level). Target: event-loop delay p99 < 10 ms.
 *
 * Writes bench/results/load-<date>.json, load-latest.md and load-latest.svg.
 * The client runs on the same machine: on a 2-core box it competes with the
 * server for CPU, so absolute numbers are lower than with a remote client.
 */
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { renderLoadMarkdown, renderLoadSvg, type LoadLevel, type LoadRun } from './report';
import { getJson, pct, ROOT, rng, setClientNice, startServe, stopServer } from './harness';
const RESULTS = path.join(ROOT, 'bench', 'results');

const HELP = `Usage: npx tsx bench/load/run.ts [options]
  --quick                3 s per level (default 8 s)
  --duration S           seconds per level
  --concurrency 1,4,16,64
  --modes on,off         batching on and/or off
  --min-len N --max-len N   token lengths of the requests (default 8..64, uniform)
  --config c.json        model config for the server (default: the built-in small encoder)
  --server-args "..."    extra flags for attnode serve (e.g. "--max-delay-ms 1")
  --server-node-args "..."  Node flags for the server process (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile it)
  --client-nice N        nice value of the load client while it drives (default 10: a remote client would not
                         compete with the server for its cores; 0 to compete as an equal)
  --no-write             print only
`;

interface Opts {
  durationS: number;
  concurrency: number[];
  modes: ('on' | 'off')[];
  minLen: number;
  maxLen: number;
  config: string | undefined;
  serverArgs: string[];
  /** Node flags for the server process (profiling). */
  serverNodeArgs: string[];
  write: boolean;
  quick: boolean;
  /** Nice value of the load client while it drives a level (0: same priority as the server). */
  clientNice: number;
}

function parseOpts(): Opts {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      duration: { type: 'string' },
      concurrency: { type: 'string', default: '1,4,16,64' },
      modes: { type: 'string', default: 'on,off' },
      'min-len': { type: 'string', default: '8' },
      'max-len': { type: 'string', default: '64' },
      config: { type: 'string' },
      'server-args': { type: 'string', default: '' },
      'server-node-args': { type: 'string', default: '' },
      'client-nice': { type: 'string', default: '10' },
      'no-write': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    process.exit(0);
  }
  const modes = values.modes.split(',') as ('on' | 'off')[];
  if (!modes.every((m) => m === 'on' || m === 'off')) throw new Error('--modes takes on,off');
  return {
    quick: values.quick,
    durationS: Number(values.duration ?? (values.quick ? 3 : 8)),
    concurrency: values.concurrency.split(',').map(Number),
    modes,
    minLen: Number(values['min-len']),
    maxLen: Number(values['max-len']),
    config: values.config,
    serverArgs: values['server-args'].split(/\s+/).filter(Boolean),
    serverNodeArgs: values['server-node-args'].split(/\s+/).filter(Boolean),
    clientNice: Number(values['client-nice']),
    write: !values['no-write'],
  };
}

/** The client's nice value while it last drove a level (for the report). */
let appliedNice = 0;

/** Starts `attnode serve --port 0` and resolves with its port once it prints the listening line. */
function startServer(opts: Opts, batching: boolean): Promise<{ child: ChildProcess; port: number }> {
  const args = ['--max-queue', '4096'];
  if (!batching) args.push('--no-batching');
  if (opts.config) args.push('--config', opts.config);
  args.push(...opts.serverArgs);
  return startServe(args, opts.serverNodeArgs);
}

/** Pre-built request bodies of random lengths. */
function makeBodies(opts: Opts, vocab: number): string[] {
  const r = rng(42);
  return Array.from({ length: 512 }, () => {
    const len = opts.minLen + Math.floor(r() * (opts.maxLen - opts.minLen + 1));
    return JSON.stringify({ tokens: Array.from({ length: len }, () => Math.floor(r() * vocab)) });
  });
}

function post(agent: http.Agent, port: number, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/v1/encode', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Closed-loop load: `c` workers on `c` keep-alive sockets, each sending the next request when its previous one returns. */
async function drive(port: number, c: number, seconds: number, bodies: string[]): Promise<{ lat: number[]; errors: number; elapsed: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: c });
  const lat: number[] = [];
  let errors = 0;
  let next = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(Array.from({ length: c }, async () => {
    while (performance.now() < end) {
      const body = bodies[next++ % bodies.length]!;
      const s = performance.now();
      try {
        const status = await post(agent, port, body);
        if (status === 200) lat.push(performance.now() - s);
        else errors++;
      } catch {
        errors++;
      }
    }
  }));
  const elapsed = (performance.now() - t0) / 1000;
  agent.destroy();
  return { lat, errors, elapsed };
}

async function runMode(opts: Opts, batching: boolean, bodies: string[]): Promise<LoadLevel[]> {
  const { child, port } = await startServer(opts, batching);
  const ctl = new http.Agent({ keepAlive: false });
  const levels: LoadLevel[] = [];
  try {
    await drive(port, 4, opts.quick ? 1 : 2, bodies); // warm-up: JIT, allocator, thread pool
    for (const c of opts.concurrency) {
      const before = await getJson(ctl, port, '/metrics?reset=1');
      // The client shares the server's 2 cores here; a real client runs elsewhere. Lowering the client's
      // priority while it drives (its JS runs on the main thread, which setPriority(0) targets) keeps it from
      // taking the server's event-loop time. Restored before the next server is spawned, which would inherit it.
      appliedNice = setClientNice(opts.clientNice);
      const { lat, errors, elapsed } = await drive(port, c, opts.durationS, bodies);
      setClientNice(0);
      const after = await getJson(ctl, port, '/metrics');
      lat.sort((a, b) => a - b);
      const batches = after.batcher.batches - before.batcher.batches;
      const completed = after.batcher.completed - before.batcher.completed;
      const level: LoadLevel = {
        batching,
        concurrency: c,
        requests: lat.length,
        errors,
        throughput: lat.length / elapsed,
        p50: pct(lat, 0.5),
        p90: pct(lat, 0.9),
        p99: pct(lat, 0.99),
        meanBatchSize: batches ? completed / batches : 0,
        eventLoopP99: after.eventLoopDelayMs.p99,
        eventLoopMax: after.eventLoopDelayMs.max,
        serverRssMiB: after.memoryMiB.rss,
      };
      levels.push(level);
      console.log(
        `batching ${batching ? 'on ' : 'off'}  c=${String(c).padStart(3)}  ${level.throughput.toFixed(1).padStart(7)} req/s  ` +
          `p50 ${level.p50.toFixed(1).padStart(6)} ms  p99 ${level.p99.toFixed(1).padStart(6)} ms  batch ${level.meanBatchSize.toFixed(2).padStart(5)}  ` +
          `loop p99 ${level.eventLoopP99.toFixed(2)} ms  rss ${level.serverRssMiB.toFixed(0)} MiB ` +
          `(pooled buffers ${after.memoryMiB.pooledBuffers.toFixed(0)})  errors ${errors}`,
      );
    }
  } finally {
    ctl.destroy();
    const code = await stopServer(child);
    if (code !== 0) console.error(`warning: the server exited with code ${code} after SIGTERM`);
  }
  return levels;
}

async function main(): Promise<void> {
  const opts = parseOpts();
  let vocab = 1000;
  if (opts.config) vocab = (JSON.parse(fs.readFileSync(opts.config, 'utf8')) as { options: { vocabSize: number } }).options.vocabSize;
  const bodies = makeBodies(opts, vocab);
  const levels: LoadLevel[] = [];
  for (const m of opts.modes) levels.push(...(await runMode(opts, m === 'on', bodies)));
  const run: LoadRun = {
    date: new Date().toISOString(),
    host: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? 'unknown', node: process.version, platform: `${os.platform()}-${os.arch()}` },
    config: {
      model: opts.config ?? 'default encoder (vocab 1000, dModel 128, 4 heads, 2 layers, ff 512)',
      durationS: opts.durationS,
      lengths: [opts.minLen, opts.maxLen],
      serverArgs: opts.serverArgs,
      client: `in-process closed loop, keep-alive, one socket per concurrent client, nice ${appliedNice} while driving`,
    },
    levels,
  };
  const md = renderLoadMarkdown(run);
  console.log(`\n${md}`);
  if (opts.write) {
    fs.mkdirSync(RESULTS, { recursive: true });
    const stamp = run.date.slice(0, 19).replace(/:/g, '-');
    fs.writeFileSync(path.join(RESULTS, `load-${stamp}${opts.quick ? '-quick' : ''}.json`), `${JSON.stringify(run, null, 2)}\n`);
    fs.writeFileSync(path.join(RESULTS, 'load-latest.md'), md);
    fs.writeFileSync(path.join(RESULTS, 'load-latest.svg'), renderLoadSvg(run));
    console.log(`wrote bench/results/load-${stamp}${opts.quick ? '-quick' : ''}.json, load-latest.md, load-latest.svg`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
