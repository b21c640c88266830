/**
 * Event-loop responsiveness, throughput and memory of many `forwardAsync`
 * calls in flight.
 *
 *   npx tsx bench/async/run.ts                 every model × N = 1, 4, 16, 64
 *   npx tsx bench/async/run.ts --quick         a fast smoke run (small model + BERT 1×128, N = 1, 4, 16)
 *   npx tsx bench/async/run.ts --label before  writes bench/results/async-before-<cpu>.{md,json}
 *   npx tsx bench/async/run.ts --help
 *
 * Per model and N, in a fresh child process (so RSS numbers belong to that
 * configuration alone):
 * - warm-up: one sync forward and one forwardAsync (packs the weights, starts
 *   the executor);
 * - async round: N `layer.forwardAsync(x)` submitted in one go, then awaited;
 *   while it runs, two probes watch the event loop: `monitorEventLoopDelay`
 *   (resolution 1 ms; its max and p99) and a `setInterval(…, 1)` whose largest
 *   gap between ticks, minus the 1 ms period, is the longest stall. The
 *   submission itself is inside the window: it runs on the event loop.
 * - sync round: N `layer.forward(x)` one after another (the reference time).
 *   Ratio = async wall / sync wall (target ≤ 1.1).
 * - RSS: before the async round, its peak during the round (VmHWM, reset
 *   through /proc/self/clear_refs first, else sampled by the probe), growth =
 *   peak − before.
 * Results: bench/results/async-<label->?<cpu-slug>.{md,json}.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(__dirname, '..', '..');
const RESULTS = path.join(ROOT, 'bench', 'results');

interface ModelSpec {
  name: string;
  dModel: number;
  nhead: number;
  ff: number;
  batch: number;
  seq: number;
}

const MODELS: ModelSpec[] = [
  { name: 'small-d64-b1s128', dModel: 64, nhead: 4, ff: 256, batch: 1, seq: 128 },
  { name: 'bert-b1s128', dModel: 768, nhead: 12, ff: 3072, batch: 1, seq: 128 },
  { name: 'bert-b8s128', dModel: 768, nhead: 12, ff: 3072, batch: 8, seq: 128 },
];

interface Row {
  model: string;
  n: number;
  stallMaxMs: number; // monitorEventLoopDelay max
  gapMaxMs: number; // setInterval probe: longest gap beyond the 1 ms period
  stallWorstMs: number; // the worst of both probes over all rounds
  p99Ms: number;
  asyncMs: number;
  syncMs: number;
  ratio: number;
  rssBeforeMiB: number;
  rssPeakMiB: number;
  rssGrowthMiB: number;
  submitMs: number; // time spent in the synchronous part of submitting all N calls
  // JS thread's own CPU time between two probe ticks, at most (worst round): the part of a stall our code spends.
  busyMaxMs: number;
  // Share of the async round the JS thread was runnable but waiting for a CPU (other threads and processes).
  runqWaitPct: number;
  rounds: number;
}

/** The main thread's CPU time and run-queue wait (ns), from /proc (Linux); null elsewhere. */
function schedstat(): { onCpu: number; waiting: number } | null {
  try {
    const [onCpu, waiting] = fs.readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ').map(Number);
    return { onCpu: onCpu!, waiting: waiting! };
  } catch {
    return null;
  }
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

const HELP = `Usage: npx tsx bench/async/run.ts [options]
  --quick            small model and BERT 1x128 only, N = 1, 4, 16
  --models a,b       subset of: ${MODELS.map((m) => m.name).join(', ')}
  --n 1,4,16,64      calls in flight
  --ahead K          setAsyncLimits({ maxRecordedAhead: K }) in each child (default: the library's)
  --label NAME       prefix of the result files (async-NAME-<cpu>.md); default none
  --help`;

function readStatusKiB(field: string): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function resetPeakRss(): boolean {
  try {
    fs.writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

const MiB = 1024 * 1024;

async function child(modelName: string, n: number, ahead: number | null, reps: number): Promise<void> {
  const spec = MODELS.find((m) => m.name === modelName);
  if (!spec) throw new RangeError(`bench/async: unknown model '${modelName}'`);
  // Imported here so the parent process never loads the addon.
  const lib = await import('../../lib/index');
  lib.setGradEnabled(false); // inference: no autograd graph
  const { nn, randn, getBackend } = lib;
  // Only the queue of the code after this change has limits; --ahead on the old code fails instead of being ignored.
  if (ahead !== null) (lib as unknown as { setAsyncLimits(l: { maxRecordedAhead: number }): void }).setAsyncLimits({ maxRecordedAhead: ahead });
  if (getBackend().name !== 'native') throw new Error('bench/async: the native backend is not available');
  const layer = new nn.TransformerEncoderLayer({
    dModel: spec.dModel,
    nhead: spec.nhead,
    dimFeedforward: spec.ff,
    activation: 'gelu',
    batchFirst: true,
  }).eval();
  const x = randn([spec.batch, spec.seq, spec.dModel], { seed: 7 });
  layer.forward(x);
  await layer.forwardAsync(x);
  global.gc?.();
  await new Promise((r) => setTimeout(r, 50));

  // Rounds alternate async (probes on) and sync, so drift and neighbours on a shared machine hit both alike.
  const rssBefore = process.memoryUsage.rss();
  let rssPeak = rssBefore;
  const rounds: {
    stall: number;
    gap: number;
    p99: number;
    submit: number;
    async: number;
    sync: number;
    busyMax: number;
    waitPct: number;
  }[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const hwmReset = resetPeakRss();
    let sampledPeak = process.memoryUsage.rss();
    const h = monitorEventLoopDelay({ resolution: 1 });
    let last = performance.now();
    let maxGap = 0;
    let ticks = 0;
    let prevSched = schedstat();
    let busyMax = 0;
    const probe = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      const sc = schedstat();
      if (sc && prevSched) busyMax = Math.max(busyMax, (sc.onCpu - prevSched.onCpu) / 1e6);
      prevSched = sc;
      if (!hwmReset && (ticks++ & 7) === 0) sampledPeak = Math.max(sampledPeak, process.memoryUsage.rss());
    }, 1);
    // Let both probes take a few samples before the load starts.
    await new Promise((r) => setTimeout(r, 20));
    h.enable();
    last = performance.now();
    maxGap = 0;
    busyMax = 0;
    const sched0 = schedstat();
    const t0 = performance.now();
    const calls: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) calls.push(layer.forwardAsync(x));
    const submit = performance.now() - t0;
    await Promise.all(calls);
    const asyncMs = performance.now() - t0;
    const sched1 = schedstat();
    // One more tick so a stall at the very end is seen by the interval probe.
    await new Promise((r) => setTimeout(r, 3));
    h.disable();
    clearInterval(probe);
    const hwm = readStatusKiB('VmHWM');
    rssPeak = Math.max(rssPeak, hwmReset && hwm !== null ? hwm * 1024 : Math.max(sampledPeak, process.memoryUsage.rss()));
    calls.length = 0;

    // Sync reference: the same N forwards, one after another.
    const s0 = performance.now();
    for (let i = 0; i < n; i++) layer.forward(x);
    const sync = performance.now() - s0;
    const waitPct = sched0 && sched1 ? (100 * (sched1.waiting - sched0.waiting)) / 1e6 / asyncMs : NaN;
    rounds.push({ stall: h.max / 1e6, gap: Math.max(0, maxGap - 1), p99: h.percentile(99) / 1e6, submit, async: asyncMs, sync, busyMax, waitPct });
  }
  const med = (k: keyof (typeof rounds)[number]): number => median(rounds.map((r) => r[k]));
  const row: Row = {
    model: spec.name,
    n,
    stallMaxMs: med('stall'),
    gapMaxMs: med('gap'),
    stallWorstMs: Math.max(...rounds.map((r) => Math.max(r.stall, r.gap))),
    p99Ms: med('p99'),
    asyncMs: med('async'),
    syncMs: med('sync'),
    ratio: med('async') / med('sync'),
    rssBeforeMiB: rssBefore / MiB,
    rssPeakMiB: rssPeak / MiB,
    rssGrowthMiB: (rssPeak - rssBefore) / MiB,
    submitMs: med('submit'),
    busyMaxMs: Math.max(...rounds.map((r) => r.busyMax)),
    runqWaitPct: med('waitPct'),
    rounds: reps,
  };
  process.stdout.write(`ROW ${JSON.stringify(row)}\n`);
}

function cpuSlug(model: string): string {
  return model.toLowerCase().replace(/\(r\)|\(tm\)|processor|cpu|@.*$/g, '').trim().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'cpu';
}

function fmt(v: number, d = 1): string {
  return v.toFixed(d);
}

function markdown(header: Record<string, string>, rows: Row[]): string {
  const lines = ['# forwardAsync under load', ''];
  for (const [k, v] of Object.entries(header)) lines.push(`- ${k}: ${v}`);
  lines.push(
    '',
    'Each child alternates an async round and a sync round (3 times, 1 with --quick); the columns are medians over rounds',
    'except worst (the largest stall of either probe in any round) and RSS.',
    'stall = longest event-loop delay (monitorEventLoopDelay max, resolution 1 ms); gap = longest setInterval(1 ms) gap minus',
    'the period; submit = synchronous time to submit all N calls; ratio = N in flight / N sequential sync forwards;',
    'RSS growth = peak during the async rounds − RSS before the first (includes the N results, which the caller holds).',
    'JS busy = the JS thread\'s own CPU time between two consecutive 1 ms probe ticks, at most (worst round; from',
    '/proc/self/task/<pid>/schedstat): the part of a stall spent running JS/addon code. runq wait = share of the async',
    'round the JS thread was runnable but waiting for a core (stalls beyond JS busy are that wait).',
    '',
    '| model | N | stall max ms | gap max ms | worst ms | p99 ms | submit ms | async ms | sync ms | ratio | RSS before MiB | RSS peak MiB | growth MiB | JS busy max ms | runq wait % |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const r of rows) {
    lines.push(
      `| ${r.model} | ${r.n} | ${fmt(r.stallMaxMs)} | ${fmt(r.gapMaxMs)} | ${fmt(r.stallWorstMs ?? Math.max(r.stallMaxMs, r.gapMaxMs))} | ${fmt(r.p99Ms)} | ${fmt(r.submitMs)} | ${fmt(r.asyncMs, 0)} | ${fmt(r.syncMs, 0)} | ${fmt(r.ratio, 2)} | ${fmt(r.rssBeforeMiB, 0)} | ${fmt(r.rssPeakMiB, 0)} | ${fmt(r.rssGrowthMiB, 0)} | ${r.busyMaxMs === undefined ? '' : fmt(r.busyMaxMs)} | ${r.runqWaitPct === undefined ? '' : fmt(r.runqWaitPct, 0)} |`,
    );
  }
  return lines.join('\n') + '\n';
}

function compare(before: { header: Record<string, string>; rows: Row[] }, after: Row[]): string {
  const lines = [
    '',
    `## Before / after (before: commit ${before.header.commit}, ${before.header.date})`,
    '',
    'stall = max of the two probes (ms, median over rounds); JS busy = the longest JS-thread CPU stretch between ticks (ms); ratio = async / sync wall time; growth = RSS growth during the async round (MiB).',
    '',
    '| model | N | stall before | stall after | JS busy before | JS busy after | p99 before | p99 after | ratio before | ratio after | growth before | growth after |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const a of after) {
    const b = before.rows.find((r) => r.model === a.model && r.n === a.n);
    if (!b) continue;
    const stall = (r: Row): string => fmt(Math.max(r.stallMaxMs, r.gapMaxMs));
    lines.push(
      `| ${a.model} | ${a.n} | ${stall(b)} | ${stall(a)} | ${fmt(b.busyMaxMs)} | ${fmt(a.busyMaxMs)} | ${fmt(b.p99Ms)} | ${fmt(a.p99Ms)} | ${fmt(b.ratio, 2)} | ${fmt(a.ratio, 2)} | ${fmt(b.rssGrowthMiB, 0)} | ${fmt(a.rssGrowthMiB, 0)} |`,
    );
  }
  return lines.join('\n') + '\n';
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      models: { type: 'string' },
      n: { type: 'string' },
      label: { type: 'string' },
      ahead: { type: 'string' },
      help: { type: 'boolean', default: false },
      child: { type: 'string' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  if (values.child) {
    const [model, n, reps, ahead] = values.child.split(':');
    await child(model!, Number(n), ahead ? Number(ahead) : null, Number(reps));
    return;
  }
  const ns = (values.n ?? (values.quick ? '1,4,16' : '1,4,16,64')).split(',').map(Number);
  for (const n of ns) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`bench/async: --n must be positive integers, got ${values.n}`);
  }
  const names = values.models
    ? values.models.split(',')
    : values.quick
      ? ['small-d64-b1s128', 'bert-b1s128']
      : MODELS.map((m) => m.name);
  for (const name of names) {
    if (!MODELS.some((m) => m.name === name)) {
      throw new RangeError(`bench/async: --models must name ${MODELS.map((m) => m.name).join(', ')}; got '${name}'`);
    }
  }
  const rows: Row[] = [];
  for (const name of names) {
    for (const n of ns) {
      const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', __filename, '--child', `${name}:${n}:${values.quick ? 1 : 3}${values.ahead ? `:${values.ahead}` : ''}`], {
        cwd: ROOT,
        encoding: 'utf8',
        maxBuffer: 16 * MiB,
      });
      const line = r.stdout.split('\n').find((l) => l.startsWith('ROW '));
      if (r.status !== 0 || !line) {
        throw new Error(`bench/async: child ${name} N=${n} failed (status ${r.status}):\n${r.stderr}\n${r.stdout}`);
      }
      const row = JSON.parse(line.slice(4)) as Row;
      rows.push(row);
      console.log(
        `${name.padEnd(18)} N=${String(n).padStart(2)}  stall ${fmt(row.stallMaxMs).padStart(6)} ms  gap ${fmt(row.gapMaxMs).padStart(6)} ms  p99 ${fmt(row.p99Ms).padStart(5)}  submit ${fmt(row.submitMs).padStart(6)} ms  busy ${fmt(row.busyMaxMs).padStart(5)} ms  runq ${fmt(row.runqWaitPct, 0).padStart(3)}%  async/sync ${fmt(row.ratio, 2)}  RSS ${fmt(row.rssBeforeMiB, 0)}→${fmt(row.rssPeakMiB, 0)} MiB`,
      );
    }
  }
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  const { getNumThreads } = await import('../../lib/runtime');
  const header = {
    date: new Date().toISOString(),
    cpu,
    'logical CPUs': String(os.cpus().length),
    'attnode threads': String(getNumThreads()),
    node: process.version,
    commit: spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim(),
    mode: values.quick ? 'quick' : 'full',
    'load average at end (1/5/15 min)': os.loadavg().map((v) => v.toFixed(2)).join(' '),
    maxRecordedAhead: values.ahead ?? 'default',
    command: `npx tsx bench/async/run.ts ${process.argv.slice(2).join(' ')}`.trim(),
  };
  fs.mkdirSync(RESULTS, { recursive: true });
  const base = path.join(RESULTS, `async-${values.label ? `${values.label}-` : ''}${cpuSlug(cpu)}`);
  fs.writeFileSync(`${base}.json`, JSON.stringify({ header, rows }, null, 2) + '\n');
  let md = markdown(header, rows);
  // Side by side with the numbers recorded before the async queue (async-before-<cpu>.json), when there are some.
  const beforeFile = path.join(RESULTS, `async-before-${cpuSlug(cpu)}.json`);
  if (values.label !== 'before' && fs.existsSync(beforeFile)) {
    const before = JSON.parse(fs.readFileSync(beforeFile, 'utf8')) as { header: Record<string, string>; rows: Row[] };
    md += compare(before, rows);
  }
  fs.writeFileSync(`${base}.md`, md);
  console.log(`wrote ${path.relative(ROOT, base)}.{md,json}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
