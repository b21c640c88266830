/**
 * attnode's benchmark suite (`npm run bench`): attnode's native backend against
 * onnxruntime-node and PyTorch 1.13 (and its own TypeScript backend on the
 * smallest case), on the same weights, at 1 and 2 threads. See bench/README.md.
 *
 *   npx tsx bench/run.ts                 quick mode (< ~3 min here)
 *   npx tsx bench/run.ts --full          every case, more repetitions, and the GEMM harness
 *   npx tsx bench/run.ts --help          all options
 *
 * Method: each peer warms up, then peers run round-robin one forward pass at a
 * time (attnode, ort, torch, attnode, ...) with a short pause between turns,
 * so machine drift and other peers' idle-spinning threads hit all alike;
 * medians and p10/p90 are reported. Every peer's output is checked against
 * PyTorch's reference output, and attnode's against onnxruntime's, so a fast
 * but wrong result cannot win: a failed check makes the run exit non-zero.
 */
import { spawnSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import {
  BENCH_DIR, ROOT, RESULTS_DIR, loadCases, describeCase, caseFilesReady, type Case,
} from './cases/cases';
import { bf16UnavailableReason, createAttnodePeer, loadAttnode, nativeUnavailableReason } from './peers/attnode';
import { createOrtPeer, loadOrt, ortUnavailableReason, ortVersion, ORT_INSTALL_HINT } from './peers/ort';
import { TorchServer, createTorchPeer, detectTorch, TORCH_INSTALL_HINT, TORCH_PYTHON, TORCH_SCRIPT, torchEnv } from './peers/torch';
import { maxAbsDiff, type Peer, type PeerName } from './peers/types';
import { stats } from './honest';
import {
  renderMarkdown, renderSvg, RATIO_PEERS, type CaseResult, type CheckResult, type RssResult, type RunMeta,
  type ThreadResult,
} from './report';

const HELP = `Usage: npx tsx bench/run.ts [options]
  --full                 every case of bench/cases/cases.json (default: the quick ones), more repetitions,
                         and the GEMM harness bench/gemm/run.sh
  --cases a,b            only these case ids
  --threads 1,2          thread counts (default 1,2)
  --peers attnode,bf16,ort,torch,ts   which peers (default all that are installed; bf16 = attnode with bfloat16
                         weights and attention products, on CPUs with AVX512-BF16)
  --budget S             seconds of timed runs per case and thread count (default 4 quick, 20 full)
  --gap MS               pause between two peers' turns (default 20; at least 150 with 2+ threads): lets idle-spinning pools go to sleep
  --no-build             do not run scripts/ensure-addon.js first
  --no-rss               skip the peak-RSS child processes
  --gemm / --no-gemm     run bench/gemm/run.sh (default: only with --full); its newest JSON is reported either way
  --allow-missing-native exit 0 even when attnode's native backend could not be loaded
  --no-write             print only; write nothing to bench/results/
`;

const REL_TOL = 1e-3;
/** bfloat16 weights keep ~3 significant digits per product: a looser check, reported as the precision's error. */
const BF16_REL_TOL = 3e-2;

interface Opts {
  full: boolean;
  cases: string[] | null;
  threads: number[];
  peers: Set<PeerName>;
  budgetS: number;
  gapMs: number;
  build: boolean;
  rss: boolean;
  gemm: boolean;
  allowMissingNative: boolean;
  write: boolean;
}

function parseOpts(): Opts {
  const { values } = parseArgs({
    options: {
      full: { type: 'boolean', default: false },
      cases: { type: 'string' },
      threads: { type: 'string', default: '1,2' },
      peers: { type: 'string', default: 'attnode,bf16,ort,torch,ts' },
      budget: { type: 'string' },
      gap: { type: 'string', default: '20' },
      'no-build': { type: 'boolean', default: false },
      'no-rss': { type: 'boolean', default: false },
      gemm: { type: 'boolean' },
      'no-gemm': { type: 'boolean', default: false },
      'allow-missing-native': { type: 'boolean', default: false },
      'no-write': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const list = (s: string): string[] => s.split(',').map((x) => x.trim()).filter(Boolean);
  const threads = list(values.threads!).map(Number);
  if (threads.some((t) => !Number.isInteger(t) || t < 1)) throw new Error(`--threads: bad list '${values.threads}'`);
  const peers = new Set(list(values.peers!) as PeerName[]);
  for (const p of peers) if (!['attnode', 'bf16', 'ort', 'torch', 'ts'].includes(p)) throw new Error(`--peers: unknown peer '${p}'`);
  const full = values.full!;
  return {
    full,
    cases: values.cases ? list(values.cases) : null,
    threads,
    peers,
    budgetS: values.budget ? Number(values.budget) : full ? 20 : 4,
    gapMs: Number(values.gap),
    build: !values['no-build'],
    rss: !values['no-rss'],
    gemm: values['no-gemm'] ? false : (values.gemm ?? full),
    allowMissingNative: values['allow-missing-native']!,
    write: !values['no-write'],
  };
}

// ---------------------------------------------------------------------------------------------------------------
// statistics and timing

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Warm-up: at least 2 runs and ~0.5 s (first-touch page faults, lazy packing, JIT), at most 10 runs. */
async function warmUp(p: Peer): Promise<number> {
  const times: number[] = [];
  let spent = 0;
  while (times.length < 2 || (spent < 500 && times.length < 10)) {
    const t = await p.runOnce();
    times.push(t);
    spent += t;
  }
  return Math.min(...times.slice(1));
}

// ---------------------------------------------------------------------------------------------------------------
// environment

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    return `${m ? m[1].trim() : 'unknown CPU'} (${os.availableParallelism()} cores)`;
  } catch {
    return 'unknown CPU';
  }
}

function say(s: string): void {
  process.stdout.write(s + '\n');
}

function loud(title: string, lines: string[]): void {
  const bar = '!'.repeat(100);
  process.stderr.write(`\n${bar}\n!! ${title}\n${lines.map((l) => `!!   ${l}`).join('\n')}\n${bar}\n\n`);
}

function today(): string {
  return new Date().toISOString().slice(0, 10);
}

// ---------------------------------------------------------------------------------------------------------------
// one case

interface Ctx {
  opts: Opts;
  native: boolean;
  ort: boolean;
  torch: TorchServer | null;
  failures: string[];
}

async function runCase(c: Case, ctx: Ctx): Promise<CaseResult> {
  const { opts } = ctx;
  const res: CaseResult = {
    id: c.id, group: c.group, description: describeCase(c), byThreads: [], checks: {}, rss: {}, notes: [], skipped: {},
  };
  say(`\n== ${c.id}: ${res.description}`);
  const peers: Peer[] = [];
  const add = async (name: PeerName, make: () => Promise<Peer>, reason: string | null): Promise<void> => {
    if (!opts.peers.has(name)) return;
    if (reason) {
      res.skipped[name] = reason;
      say(`   ${name}: skipped (${reason})`);
      return;
    }
    try {
      peers.push(await make());
    } catch (e) {
      const msg = (e as Error).message.split('\n')[0];
      res.skipped[name] = `failed to set up: ${msg}`;
      ctx.failures.push(`${c.id}: ${name} failed to set up: ${msg}`);
      say(`   ${name}: FAILED to set up: ${msg}`);
    }
  };

  const { loadSafetensors } = await loadAttnode();
  const io = (await loadSafetensors(c.ioPath)).tensors;
  const ref = io.output.data as Float32Array;
  const inputs = Object.fromEntries(Object.entries(io).filter(([k]) => k !== 'output')
    .map(([k, t]) => [k, { data: t.data as Float32Array | Int32Array, shape: t.shape }]));

  await add('attnode', () => createAttnodePeer(c, 'native'), ctx.native ? null : 'native backend not loaded');
  await add('bf16', () => createAttnodePeer(c, 'native', 'bfloat16'), await bf16UnavailableReason());
  await add('ort', () => createOrtPeer(c, opts.threads, inputs), ctx.ort ? null : 'onnxruntime-node not installed');
  let torchInfo: Awaited<ReturnType<typeof createTorchPeer>>['info'] | null = null;
  await add('torch', async () => {
    const t = await createTorchPeer(ctx.torch!, c);
    torchInfo = t.info;
    return t.peer;
  }, ctx.torch ? null : 'torch not available');
  if (c.ts) await add('ts', () => createAttnodePeer(c, 'js'), null);

  // Output checks, before any timing: one run each, compared with PyTorch's reference and attnode with ort.
  const outputs = new Map<PeerName, Float32Array>();
  for (const p of peers) {
    if (p.name === 'torch') continue;
    await p.runOnce();
    outputs.set(p.name, await p.output());
  }
  const check = (name: PeerName, against: 'reference' | 'ort', a: Float32Array, b: Float32Array): void => {
    const d = maxAbsDiff(a, b);
    const tol = name === 'bf16' ? BF16_REL_TOL : REL_TOL;
    const ok = d.rel <= tol;
    (res.checks[name] ??= []).push({ against, maxAbsDiff: d.abs, rel: d.rel, ok } satisfies CheckResult);
    say(`   check ${name} vs ${against}: max abs diff ${d.abs.toExponential(2)} (relative ${d.rel.toExponential(2)}) `
      + (ok ? 'ok' : `FAILED (> ${tol})`));
    if (!ok) ctx.failures.push(`${c.id}: ${name} output differs from ${against} (relative ${d.rel.toExponential(2)})`);
  };
  for (const [name, out] of outputs) check(name, 'reference', out, ref);
  if (outputs.has('attnode') && outputs.has('ort')) check('attnode', 'ort', outputs.get('attnode')!, outputs.get('ort')!);
  if (torchInfo) {
    const ti = torchInfo as { fastpath: boolean; maxAbsDiff: number; rel: number; openblas: string | null };
    const ok = ti.rel <= REL_TOL;
    (res.checks.torch ??= []).push({ against: 'reference', maxAbsDiff: ti.maxAbsDiff, rel: ti.rel, ok });
    say(`   check torch vs reference: max abs diff ${ti.maxAbsDiff.toExponential(2)} ${ok ? 'ok' : 'FAILED'}`
      + ` (fast path ${ti.fastpath ? 'taken' : 'not taken'}, OpenBLAS ${ti.openblas ?? 'n/a'})`);
    res.notes.push(`torch ${ti.fastpath ? 'took' : 'did not take'} its fused inference fast path; OpenBLAS core ${ti.openblas ?? 'n/a'}`);
    if (!ok) ctx.failures.push(`${c.id}: torch output differs from reference`);
  }
  outputs.clear();

  for (const threads of opts.threads) {
    const active = peers.filter((p) => threads <= p.maxThreads);
    if (active.length === 0) continue;
    // With several threads, peers' idle workers keep spinning after a call (OpenBLAS in the torch child for
    // ~2^28 cycles, onnxruntime's intra-op pool): the next peer would run with a core taken. Wait them out.
    const gapMs = threads > 1 ? Math.max(opts.gapMs, 150) : opts.gapMs;
    for (const p of active) await p.setThreads(threads);
    const est = new Map<Peer, number>();
    for (const p of active) {
      est.set(p, await warmUp(p));
      await sleep(gapMs);
    }
    // The TS backend is slow: a few runs of it only, outside the budget of the others.
    const fast = active.filter((p) => p.name !== 'ts');
    const round = fast.reduce((s, p) => s + est.get(p)! + gapMs, 0);
    const reps = Math.max(opts.full ? 5 : 3, Math.min(opts.full ? 50 : 30, Math.floor((opts.budgetS * 1000) / Math.max(round, 1))));
    const times = new Map<Peer, number[]>(active.map((p) => [p, []]));
    const tsReps = opts.full ? 5 : 3;
    for (let r = 0; r < reps; r++) {
      for (const p of active) {
        if (p.name === 'ts' && r >= tsReps) continue;
        times.get(p)!.push(await p.runOnce());
        await sleep(gapMs);
      }
    }
    const tr: ThreadResult = { threads, peers: {}, ratios: {} };
    for (const p of active) tr.peers[p.name] = stats(times.get(p)!);
    const a = tr.peers.attnode;
    if (a) for (const p of RATIO_PEERS) if (tr.peers[p]) tr.ratios[p] = a.median / tr.peers[p]!.median;
    if (tr.peers.bf16 && tr.peers.ort) tr.bf16VsOrt = tr.peers.bf16.median / tr.peers.ort.median;
    res.byThreads.push(tr);
    say(`   ${threads}T: ` + active.map((p) => `${p.name} ${tr.peers[p.name]!.median.toFixed(2)} ms`).join(', ')
      + (Object.keys(tr.ratios).length ? '  | attnode/' + Object.entries(tr.ratios).map(([k, v]) => `${k} ${v!.toFixed(2)}`).join(', ') : '')
      + (tr.bf16VsOrt !== undefined ? `, bf16/ort ${tr.bf16VsOrt.toFixed(2)}` : '')
      + `  (${reps} rounds)`);
  }
  for (const p of peers) await p.close();

  if (c.rss && opts.rss) await measureRss(c, ctx, res);
  return res;
}

// ---------------------------------------------------------------------------------------------------------------
// peak RSS, one child process per peer

function runChild(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const ch = spawn(cmd, args, { env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    ch.stdout.on('data', (d: Buffer) => (out += d.toString()));
    ch.stderr.on('data', (d: Buffer) => (err += d.toString()));
    ch.on('close', (code) => resolve({ code, out, err }));
  });
}

async function measureRss(c: Case, ctx: Ctx, res: CaseResult): Promise<void> {
  const threads = Math.max(...ctx.opts.threads);
  const reps = 3;
  const child = path.join(BENCH_DIR, 'peers', 'rss_child.ts');
  const jobs: [PeerName, string, string[], NodeJS.ProcessEnv][] = [];
  // Same loader flags as this process (tsx registers itself through execArgv), so the child runs TypeScript too.
  if (ctx.native && ctx.opts.peers.has('attnode')) {
    jobs.push(['attnode', process.execPath, [...process.execArgv, child, 'attnode', c.id, String(threads), String(reps)], process.env]);
  }
  if (ctx.ort && ctx.opts.peers.has('ort')) {
    jobs.push(['ort', process.execPath, [...process.execArgv, child, 'ort', c.id, String(threads), String(reps)], process.env]);
  }
  if (ctx.torch && ctx.opts.peers.has('torch')) {
    jobs.push(['torch', TORCH_PYTHON, [TORCH_SCRIPT, 'rss', c.id, String(threads), String(reps)], torchEnv()]);
  }
  for (const [name, cmd, args, env] of jobs) {
    const r = await runChild(cmd, args, env);
    const line = r.out.trim().split('\n').pop() ?? '';
    let j: { ok?: boolean; error?: string; peakRssKiB?: number; baseRssKiB?: number; medianMs?: number } = {};
    try {
      j = JSON.parse(line);
    } catch {
      j = { ok: false, error: `no JSON from child (exit ${r.code}): ${r.err.trim().split('\n').slice(-3).join(' | ')}` };
    }
    if (!j.ok) {
      res.notes.push(`RSS of ${name} not measured: ${j.error}`);
      ctx.failures.push(`${c.id}: RSS child for ${name} failed: ${j.error}`);
      say(`   RSS ${name}: FAILED: ${j.error}`);
      continue;
    }
    const rr: RssResult = { threads, peakMiB: j.peakRssKiB! / 1024, baseMiB: j.baseRssKiB! / 1024, medianMs: j.medianMs! };
    res.rss[name] = rr;
    say(`   RSS ${name}: peak ${rr.peakMiB.toFixed(0)} MiB (${rr.baseMiB.toFixed(0)} MiB before the model; `
      + `${threads}T, ${rr.medianMs.toFixed(0)} ms/run in the child)`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// GEMM: another harness's results, included as they are

function gemmResults(run: boolean, failures: string[]): { file: string; json: unknown }[] {
  const script = path.join(BENCH_DIR, 'gemm', 'run.sh');
  if (run) {
    if (fs.existsSync(script)) {
      say('\n== GEMM: bash bench/gemm/run.sh');
      const r = spawnSync('bash', [script], { cwd: ROOT, stdio: 'inherit' });
      if (r.status !== 0) failures.push(`bench/gemm/run.sh exited ${r.status}`);
    } else {
      say('\n== GEMM: bench/gemm/run.sh not present: skipped (its JSON is included when it exists)');
    }
  }
  if (!fs.existsSync(RESULTS_DIR)) return [];
  const files = fs.readdirSync(RESULTS_DIR).filter((f) => /^gemm-.*\.json$/.test(f)).sort();
  // Newest per name stem would need their naming convention; the newest three files are shown.
  return files.slice(-3).map((f) => {
    try {
      return { file: f, json: JSON.parse(fs.readFileSync(path.join(RESULTS_DIR, f), 'utf8')) as unknown };
    } catch (e) {
      return { file: f, json: { error: `unreadable: ${(e as Error).message}` } };
    }
  });
}

// ---------------------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const opts = parseOpts();
  const failures: string[] = [];
  const metaNotes: string[] = [];
  const date = today();
  say(`attnode bench — ${date}, ${opts.full ? 'full' : 'quick'} mode, threads ${opts.threads.join(',')}`);
  say(`CPU: ${cpuModel()}`);
  // This machine is shared: a busy start explains noisy numbers (and 2-thread runs slower than 1-thread ones).
  const loadStart = os.loadavg()[0];
  if (loadStart > 0.5) {
    say(`WARNING: load average ${loadStart.toFixed(2)} at start: other processes are running; expect noisy timings`);
  }

  // 1. The addon, built from the current sources (as `npm test` does), before attnode is first imported.
  if (opts.build && opts.peers.has('attnode')) {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'ensure-addon.js')], { cwd: ROOT, stdio: 'inherit' });
    if (r.status !== 0) metaNotes.push(`scripts/ensure-addon.js failed (exit ${r.status}): the addon may be stale or missing`);
  }
  const attnode = await loadAttnode();
  const nativeWhy = await nativeUnavailableReason();
  if (nativeWhy) {
    loud('attnode NATIVE BACKEND NOT AVAILABLE: the attnode columns will be empty', [
      nativeWhy.split('\n')[0],
      'build it: node scripts/ensure-addon.js (or npm run build:native), then rerun',
    ]);
    metaNotes.push(`attnode native backend not available: ${nativeWhy.split('\n')[0]}`);
    if (!opts.allowMissingNative) failures.push('attnode native backend not available');
  }
  const nat = nativeWhy ? null : attnode.info().native;

  // 2. Peers.
  let ortOk = false;
  if (opts.peers.has('ort')) {
    ortOk = (await loadOrt()) !== null;
    if (!ortOk) {
      say(`onnxruntime-node: NOT INSTALLED (${ortUnavailableReason()}): ort columns skipped. Install: ${ORT_INSTALL_HINT}`);
      metaNotes.push(`onnxruntime-node not installed: ${ORT_INSTALL_HINT}`);
    }
  }
  const torch = detectTorch();
  if (!torch.version) {
    say(`PyTorch: NOT AVAILABLE (${torch.reason}): torch columns skipped, models cannot be exported. Install: ${TORCH_INSTALL_HINT}`);
    metaNotes.push(`torch not available: ${TORCH_INSTALL_HINT}`);
  }
  const env: Record<string, string | null> = {
    OPENBLAS_CORETYPE: process.env.OPENBLAS_CORETYPE ?? null,
    OPENBLAS_L2_SIZE: process.env.OPENBLAS_L2_SIZE ?? null,
    ATTNODE_ISA: process.env.ATTNODE_ISA ?? null,
    ATTNODE_NUM_THREADS: process.env.ATTNODE_NUM_THREADS ?? null,
    OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? null,
    torch_child_OPENBLAS: 'unset (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE removed for the torch process)',
    torch_child_idle: `OMP_WAIT_POLICY=${torchEnv().OMP_WAIT_POLICY}, OPENBLAS_THREAD_TIMEOUT=${torchEnv().OPENBLAS_THREAD_TIMEOUT} (idle threads sleep)`,
  };
  say(`Env: ${Object.entries(env).map(([k, v]) => `${k}=${v ?? '(unset)'}`).join(', ')}`);

  // 3. Cases and their model files.
  let cases = loadCases();
  if (opts.cases) {
    const unknown = opts.cases.filter((id) => !cases.some((c) => c.id === id));
    if (unknown.length) throw new Error(`unknown case(s): ${unknown.join(', ')} (see bench/cases/cases.json)`);
    cases = cases.filter((c) => opts.cases!.includes(c.id));
  } else if (!opts.full) {
    cases = cases.filter((c) => c.quick);
  }
  const missing = cases.filter((c) => !caseFilesReady(c));
  if (missing.length && torch.version) {
    say(`\nExporting models for ${missing.map((c) => c.id).join(', ')} (scripts/export_bench_models.py)`);
    const r = spawnSync(TORCH_PYTHON, [path.join(ROOT, 'scripts', 'export_bench_models.py'), '--cases', missing.map((c) => c.id).join(',')],
      { cwd: ROOT, stdio: 'inherit', env: torchEnv() });
    if (r.status !== 0) failures.push(`export_bench_models.py exited ${r.status}`);
  }
  const runnable = cases.filter((c) => {
    if (caseFilesReady(c)) return true;
    const why = `bench/models files missing for ${c.id}: run /usr/bin/python3 scripts/export_bench_models.py (needs ${TORCH_INSTALL_HINT})`;
    say(`SKIPPED ${c.id}: ${why}`);
    metaNotes.push(`case ${c.id} skipped: ${why}`);
    failures.push(`${c.id} skipped: model files missing`);
    return false;
  });

  // 4. Run.
  const server = torch.version && opts.peers.has('torch') ? new TorchServer() : null;
  const ctx: Ctx = { opts, native: !nativeWhy, ort: ortOk, torch: server, failures };
  const results: CaseResult[] = [];
  try {
    for (const c of runnable) results.push(await runCase(c, ctx));
  } finally {
    await server?.close();
  }
  const gemm = opts.gemm || fs.existsSync(RESULTS_DIR) ? gemmResults(opts.gemm, failures) : [];

  // 5. Write.
  metaNotes.push(`load average (1 min) ${loadStart.toFixed(2)} at start, ${os.loadavg()[0].toFixed(2)} at end`
    + ` on ${os.availableParallelism()} cores${loadStart > 0.5 ? ': the machine was busy, timings are noisy' : ''}`);
  const meta: RunMeta = {
    date, mode: opts.full ? 'full' : 'quick', cpu: nat ? `${nat.cpu.brand} (${cpuModel()})` : cpuModel(), isa: nat?.isa ?? null, env,
    versions: { node: process.version, attnode: nat ? `native ${nat.build.kernels}` : 'TS only', onnxruntime: ortVersion(), torch: torch.version },
    notes: metaNotes,
  };
  if (opts.write) {
    fs.mkdirSync(RESULTS_DIR, { recursive: true });
    for (const r of results) {
      const file = path.join(RESULTS_DIR, `${date}-${r.id}.json`);
      fs.writeFileSync(file, JSON.stringify({ ...meta, runtime: nat, threadsMeasured: opts.threads, case: r }, null, 2) + '\n');
    }
    fs.writeFileSync(path.join(RESULTS_DIR, 'latest.md'), renderMarkdown(meta, results, gemm));
    fs.writeFileSync(path.join(RESULTS_DIR, 'latest.svg'), renderSvg(meta, results));
    say(`\nWrote bench/results/${date}-<case>.json (${results.length}), bench/results/latest.md, bench/results/latest.svg`);
  }
  if (failures.length) {
    loud(`bench finished with ${failures.length} problem(s)`, failures);
    return 1;
  }
  return 0;
}

main().then((code) => process.exit(code), (e: Error) => {
  process.stderr.write(`bench failed: ${e.stack ?? e.message}\n`);
  process.exit(2);
});
