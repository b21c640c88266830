/**
 * The encoder benchmark of issue 18 (`npm run bench:encoder`): attnode against onnxruntime-node (float32, and the
 * same graph dynamically quantized to int8 as onnxruntime's quantize_dynamic emits it), PyTorch 1.13 and attnode's
 * TypeScript backend, on BERT-base encoder layers, 6-layer encoders and long-sequence attention, at 1 and 2 threads.
 *
 *   npm run bench:encoder                       every case, 5 rounds (the figures to keep; run it on a quiet machine)
 *   npm run bench:encoder -- --quick            3 cases, 2 short rounds (development under load: figures not kept)
 *   npm run bench:encoder -- --help             all options
 *
 * Honest peers:
 * - every peer runs in a process of its own (bench/peers/child.ts, torch in bench/peers/torch_bench.py), started
 *   for one case at one thread count: its thread pool is sized once, nothing else shares its heap;
 * - each process measures its own CPU time (process.cpuUsage / getrusage: every thread) against the wall time of
 *   its timed passes. A run whose CPU/wall exceeds its thread count by more than 0.3, or whose GFLOP/s exceeds the
 *   measured 1-core FMA peak times its threads, is flagged and left out of the ratios (the report lists it);
 * - peers take turns in blocks of back-to-back passes (order rotated each round, so drift hits all alike and the
 *   per-round ratios compare the same minutes); after each block the runner waits until that process stops burning
 *   CPU (onnxruntime's and OpenMP's pools spin after a call) before the next peer starts: a spinning peer is always
 *   measured alone, and how long it spun is reported;
 * - every result records the CPU (model name, family/model, microarchitecture), the 1-core FMA peak measured at the
 *   start and the end of the run, and the load average beside each figure;
 * - every peer's output is compared with the case's float32 PyTorch reference (cosine and max relative difference):
 *   a float32 peer beyond 1e-3 fails the run; int8 peers report their accuracy beside their times.
 *
 * Writes bench/results/encoder-<cpu>-<date>.md and .json (<cpu>: zen4, zen5, ... from cpuid's family/model).
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { parseArgs } from 'node:util';
import { BENCH_DIR, ROOT, RESULTS_DIR, caseFilesReady, describeCase, int8OnnxPath, loadCases, type Case } from './cases/cases';
import { measureFmaPeak } from './fma-peak';
import { procCpuMs, readCpuId, summarise, forwardFlops, type Block, type PeerResult } from './honest';
import { renderEncoderMarkdown, caseRatios, INT8_PEERS, type EncoderCaseResult, type EncoderRun, type PeerCheck } from './encoder-report';
import { detectTorch, TORCH_PYTHON, TORCH_SCRIPT, torchEnv, torchBlasDir } from './peers/torch';
import { CHILD_PEERS } from './peers/types';

const HELP = `Usage: npm run bench:encoder -- [options]
  --quick              3 cases (layer-gelu-b1s128, enc6-gelu-b1s128, mha-s2048), 2 rounds of ~0.3 s blocks:
                       for development under load; the figures are not meant to be kept
  --cases a,b          these case ids of bench/cases/cases.json (default: every encoder-layer (gelu), encoder-6 and
                       long-attention case)
  --threads 1,2        thread counts (default 1,2)
  --peers p,q          of attnode, ort, torch, ts, attnode-int8, ort-int8, ort-int8pc, bf16 (default all but bf16)
  --int8-groups g,h    case groups the int8 peers run on (default encoder-layer,encoder-6)
  --rounds N           rounds of blocks per case and thread count (default 5)
  --block-ms MS        wall time of one peer's block of back-to-back passes (default 1500)
  --torch-blas DIR     put DIR first on the torch process's library path (default: Debian's openblas-pthread
                       directory when the system libblas.so.3 is the reference BLAS)
  --out DIR            results directory (default bench/results)
  --name SLUG          file name part for the CPU (default from cpuid: zen4, zen5, cpu-f<family>m<model>)
  --no-write           print only
  --render FILE.json   write FILE.md again from a run's JSON (after a change to the report), run nothing
`;

const FP32_TOL = 1e-3;
const FULL_ROUNDS = 5;
const FULL_BLOCK_MS = 1500;
/** Best of 150 probe runs (~1 s): on a shared machine a few of them run on a core of their own. */
const PEAK_TRIES = 150;
const DEFAULT_GROUPS = new Set(['encoder-layer', 'encoder-6', 'long-attention']);

interface Opts {
  quick: boolean;
  cases: string[] | null;
  threads: number[];
  peers: string[];
  int8Groups: Set<string>;
  rounds: number;
  blockMs: number;
  torchBlas: string | null;
  out: string;
  name: string | null;
  write: boolean;
}

function parseOpts(): Opts {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      cases: { type: 'string' },
      threads: { type: 'string', default: '1,2' },
      peers: { type: 'string', default: 'attnode,ort,torch,ts,attnode-int8,ort-int8,ort-int8pc' },
      'int8-groups': { type: 'string', default: 'encoder-layer,encoder-6' },
      rounds: { type: 'string' },
      'block-ms': { type: 'string' },
      'torch-blas': { type: 'string' },
      out: { type: 'string', default: RESULTS_DIR },
      name: { type: 'string' },
      'no-write': { type: 'boolean', default: false },
      render: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  if (values.render) {
    const file = path.resolve(values.render);
    if (!file.endsWith('.json') || !fs.existsSync(file)) throw new RangeError(`bench:encoder: --render: '${values.render}' is not an existing .json file`);
    const { run, cases } = JSON.parse(fs.readFileSync(file, 'utf8')) as { run: EncoderRun; cases: EncoderCaseResult[] };
    if (!run || !Array.isArray(cases)) throw new TypeError(`bench:encoder: --render: ${file} has no 'run' and 'cases' (not a bench:encoder result)`);
    fs.writeFileSync(file.replace(/\.json$/, '.md'), renderEncoderMarkdown(run, cases));
    say(`Wrote ${file.replace(/\.json$/, '.md')}`);
    process.exit(0);
  }
  const list = (s: string): string[] => s.split(',').map((x) => x.trim()).filter(Boolean);
  const posInt = (name: string, s: string): number => {
    const v = Number(s);
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`bench:encoder: --${name} must be a positive integer, got '${s}'`);
    return v;
  };
  const threads = list(values.threads!).map((t) => posInt('threads', t));
  const peers = list(values.peers!);
  for (const p of peers) {
    if (p !== 'torch' && !(CHILD_PEERS as readonly string[]).includes(p)) {
      throw new RangeError(`bench:encoder: --peers: unknown peer '${p}' (torch, ${CHILD_PEERS.join(', ')})`);
    }
  }
  const quick = values.quick!;
  return {
    quick,
    cases: values.cases ? list(values.cases) : quick ? ['layer-gelu-b1s128', 'enc6-gelu-b1s128', 'mha-s2048'] : null,
    threads,
    peers,
    int8Groups: new Set(list(values['int8-groups']!)),
    rounds: values.rounds ? posInt('rounds', values.rounds) : quick ? 2 : FULL_ROUNDS,
    blockMs: values['block-ms'] ? posInt('block-ms', values['block-ms']) : quick ? 300 : FULL_BLOCK_MS,
    torchBlas: values['torch-blas'] ?? torchBlasDir(),
    out: path.resolve(values.out!),
    name: values.name ?? null,
    write: !values['no-write'],
  };
}

const say = (s: string): void => void process.stdout.write(s + '\n');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const load1 = (): number => Number(os.loadavg()[0]!.toFixed(2));

// ---------------------------------------------------------------------------------------------------------------
// peer processes

interface Ready {
  check: PeerCheck;
  info: Record<string, unknown>;
}

interface RunReply {
  ms: number[];
  cpuMs: number;
  wallMs: number;
}

/** A peer's process, spoken to in JSON lines; answers come in request order. */
class PeerProcess {
  readonly #proc: ChildProcessWithoutNullStreams;
  readonly #lines: string[] = [];
  #waiter: ((line: string | null) => void) | null = null;
  #stderr = '';
  #closed = false;

  constructor(readonly name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv) {
    this.#proc = spawn(cmd, args, { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    readline.createInterface({ input: this.#proc.stdout }).on('line', (l) => {
      if (this.#waiter) {
        const w = this.#waiter;
        this.#waiter = null;
        w(l);
      } else this.#lines.push(l);
    });
    this.#proc.stderr.on('data', (d: Buffer) => (this.#stderr = (this.#stderr + d.toString()).slice(-4000)));
    this.#proc.on('exit', () => {
      this.#closed = true;
      this.#waiter?.(null);
      this.#waiter = null;
    });
  }

  get pid(): number {
    return this.#proc.pid!;
  }

  /** The next JSON line; a non-JSON line (a library's warning on stdout) is skipped. */
  async next(): Promise<Record<string, unknown>> {
    for (;;) {
      const line = this.#lines.shift() ?? (this.#closed ? null : await new Promise<string | null>((r) => (this.#waiter = r)));
      if (line === null) throw new Error(`${this.name}: process exited: ${this.#stderr.trim().split('\n').slice(-3).join(' | ')}`);
      if (!line.startsWith('{')) continue;
      return JSON.parse(line) as Record<string, unknown>;
    }
  }

  async request(req: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (this.#closed) throw new Error(`${this.name}: process exited: ${this.#stderr.trim().split('\n').slice(-3).join(' | ')}`);
    this.#proc.stdin.write(JSON.stringify(req) + '\n');
    const r = await this.next();
    if (!r.ok) throw new Error(`${this.name}: ${String(r.error)}`);
    return r;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    const done = new Promise<void>((r) => this.#proc.once('exit', () => r()));
    this.#proc.stdin.write(JSON.stringify({ cmd: 'quit' }) + '\n');
    this.#proc.stdin.end();
    const timer = setTimeout(() => this.#proc.kill('SIGKILL'), 10_000);
    await done;
    clearTimeout(timer);
  }
}

/** attnode's workers at the same priority as the other peers' threads (its default nice +5 would handicap it). */
function nodeChildEnv(): NodeJS.ProcessEnv {
  return { ...process.env, ATTNODE_WORKER_NICE: process.env.ATTNODE_WORKER_NICE ?? '0' };
}

/**
 * The torch process's environment at `threads`: OpenMP and OpenBLAS sized to it (torch.set_num_threads does not
 * reach a pthreads OpenBLAS: on the Zen 5 run that is how PyTorch's "1-thread" column ran on two cores), the
 * optimised BLAS first on the library path, and its idle threads left to spin as they do by default (the runner
 * waits them out instead of handicapping PyTorch with a passive wait policy).
 */
function torchChildEnv(threads: number, blasDir: string | null): NodeJS.ProcessEnv {
  const env = torchEnv();
  if (process.env.OMP_WAIT_POLICY === undefined) delete env.OMP_WAIT_POLICY;
  if (process.env.OPENBLAS_THREAD_TIMEOUT === undefined) delete env.OPENBLAS_THREAD_TIMEOUT;
  env.OMP_NUM_THREADS = String(threads);
  env.OPENBLAS_NUM_THREADS = String(threads);
  if (blasDir) env.LD_LIBRARY_PATH = [blasDir, env.LD_LIBRARY_PATH].filter(Boolean).join(':');
  return env;
}

interface Started {
  proc: PeerProcess;
  ready: Ready;
}

async function startPeer(peer: string, c: Case, threads: number, opts: Opts): Promise<Started | { unavailable: string }> {
  if (peer === 'torch') {
    const proc = new PeerProcess('torch', TORCH_PYTHON, [TORCH_SCRIPT, 'serve'], torchChildEnv(threads, opts.torchBlas));
    let info: Record<string, unknown>;
    try {
      info = await proc.request({ cmd: 'load', case: c.id });
      await proc.request({ cmd: 'threads', n: threads });
    } catch (e) {
      await proc.close();
      throw e;
    }
    const blas = info.blas as { libraries: string[]; openblasThreads: number | null };
    return {
      proc,
      ready: {
        check: { cosine: info.cosine as number, rel: info.rel as number },
        info: { torch: info.torch, fastpath: info.fastpath, blas: blas.libraries, openblasThreads: blas.openblasThreads, openblasCore: info.openblas },
      },
    };
  }
  const child = path.join(BENCH_DIR, 'peers', 'child.ts');
  // Same loader flags as this process (tsx registers itself through execArgv), so the child runs TypeScript too.
  const proc = new PeerProcess(peer, process.execPath, [...process.execArgv, child, peer, c.id, String(threads)], nodeChildEnv());
  const first = await proc.next();
  if (!first.ok) {
    await proc.close();
    if (first.unavailable) return { unavailable: String(first.unavailable) };
    throw new Error(`${peer}: ${String(first.error)}`);
  }
  return { proc, ready: { check: first.check as PeerCheck, info: (first.info ?? {}) as Record<string, unknown> } };
}

/**
 * Waits until a process stops burning CPU after a block (threads spinning for work): quiet once 100 ms add at most
 * one clock tick (10 ms) of CPU. Returns how long it kept busy and the CPU it burnt, both ms.
 */
async function waitQuiet(pid: number, maxMs = 3000): Promise<{ spinMs: number; idleCpuMs: number } | null> {
  const c0 = procCpuMs(pid);
  if (c0 === null) return null;
  const t0 = performance.now();
  let prev = c0;
  // End of the last 100 ms that added more than a tick: 0 when the process was quiet at the first look.
  let busyUntil = 0;
  for (;;) {
    await sleep(100);
    const c = procCpuMs(pid);
    if (c === null) return null;
    const elapsed = performance.now() - t0;
    if (c - prev <= 10 || elapsed >= maxMs) return { spinMs: busyUntil, idleCpuMs: c - c0 };
    busyUntil = elapsed;
    prev = c;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// one case at one thread count

function peersFor(c: Case, threads: number, opts: Opts): string[] {
  return opts.peers.filter((p) => {
    if (p === 'ts') return threads === 1 && Boolean(c.ts);
    if (INT8_PEERS.includes(p)) return opts.int8Groups.has(c.group);
    return true;
  });
}

async function runThreads(c: Case, threads: number, opts: Opts, run: EncoderRun, failures: string[]): Promise<EncoderCaseResult['byThreads'][number]> {
  const flops = c.spec.kind === 'seed' ? null : forwardFlops({ ...c.spec, batch: c.batch, seq: c.seq, dModel: c.spec.kind === 'mha' ? c.spec.embedDim : c.spec.dModel });
  const out: EncoderCaseResult['byThreads'][number] = { threads, peers: {}, unavailable: {}, checks: {}, info: {}, ratios: [] };
  const live: { name: string; proc: PeerProcess; est: number }[] = [];
  try {
    for (const p of peersFor(c, threads, opts)) {
      let s: Started | { unavailable: string };
      try {
        s = await startPeer(p, c, threads, opts);
      } catch (e) {
        const msg = (e as Error).message.split('\n')[0]!;
        out.unavailable[p] = `failed: ${msg}`;
        failures.push(`${c.id} ${threads}T: ${p} failed: ${msg}`);
        say(`   ${p}: FAILED: ${msg}`);
        continue;
      }
      if ('unavailable' in s) {
        out.unavailable[p] = s.unavailable;
        say(`   ${p}: not available (${s.unavailable})`);
        continue;
      }
      out.checks[p] = s.ready.check;
      out.info[p] = s.ready.info;
      // The versions the peers report, for the run's header.
      for (const k of ['onnxruntime', 'torch', 'attnode'] as const) {
        if (typeof s.ready.info[k] === 'string') run.versions[k] = s.ready.info[k] as string;
      }
      const ck = s.ready.check;
      say(`   ${p}: pid ${s.proc.pid}, output vs float32 reference: cosine ${ck.cosine.toFixed(6)}, max rel diff ${ck.rel.toExponential(2)}`);
      if (!INT8_PEERS.includes(p) && p !== 'bf16' && !(ck.rel <= FP32_TOL)) {
        failures.push(`${c.id} ${threads}T: ${p} output differs from the reference (relative ${ck.rel.toExponential(2)})`);
      }
      await waitQuiet(s.proc.pid);
      // Warm-up alone: first-touch faults, packing, JIT, lazy session init; at least 2 passes and ~0.5 s.
      const warm: number[] = [];
      let spent = 0;
      while (warm.length < 2 || (spent < 500 && warm.length < 10)) {
        const r = (await s.proc.request({ cmd: 'run', reps: 1 })) as unknown as RunReply;
        warm.push(r.ms[0]!);
        spent += r.ms[0]!;
      }
      await waitQuiet(s.proc.pid);
      live.push({ name: p, proc: s.proc, est: Math.min(...warm.slice(1)) });
    }
    const blocks = new Map<string, Block[]>(live.map((l) => [l.name, []]));
    for (let round = 0; round < opts.rounds; round++) {
      const order = live.map((_, i) => live[(i + round) % live.length]!);
      const line: string[] = [];
      for (const l of order) {
        // The TypeScript backend is ~50x slower: one pass per block, and only in the first two rounds.
        if (l.name === 'ts' && round >= 2) continue;
        const reps = l.name === 'ts' ? 1 : Math.max(1, Math.min(50, Math.round(opts.blockMs / Math.max(l.est, 0.01))));
        const ld = load1();
        const r = (await l.proc.request({ cmd: 'run', reps })) as unknown as RunReply;
        const q = await waitQuiet(l.proc.pid);
        blocks.get(l.name)!.push({ round, ms: r.ms, cpuMs: r.cpuMs, wallMs: r.wallMs, idleCpuMs: q?.idleCpuMs ?? null, spinMs: q?.spinMs ?? null, load1: ld });
        const med = [...r.ms].sort((a, b) => a - b)[r.ms.length >> 1]!;
        line.push(`${l.name} ${med.toFixed(1)} ms (cpu/wall ${(r.cpuMs / r.wallMs).toFixed(2)}${q && q.spinMs > 0 ? `, spun ${q.spinMs.toFixed(0)} ms` : ''})`);
      }
      say(`   ${threads}T round ${round + 1}/${opts.rounds} (load ${load1()}): ${line.join(', ')}`);
    }
    for (const [name, bl] of blocks) {
      if (bl.length === 0) continue;
      // The FMA-peak bound holds for float32 work only: int8 and bf16 products run several times the fp32 rate.
      const fp32 = !INT8_PEERS.includes(name) && name !== 'bf16';
      const pr: PeerResult = summarise(name, threads, bl, flops, fp32 ? run.fmaPeak.start : null);
      if (name === 'torch') {
        const libs = (out.info.torch?.blas ?? []) as string[];
        if (!libs.some((l) => /openblas|mkl|blis/i.test(l))) {
          pr.flags.push(`PyTorch's products ran on ${libs.join(', ') || 'an unknown BLAS'}, not an optimised BLAS (--torch-blas DIR)`);
        }
      }
      const ck = out.checks[name];
      if (ck && !INT8_PEERS.includes(name) && name !== 'bf16' && !(ck.rel <= FP32_TOL)) {
        pr.flags.push(`output differs from the float32 reference by ${ck.rel.toExponential(1)} of its scale (> ${FP32_TOL})`);
      }
      if (name === 'attnode-int8' && out.checks[name] && out.checks[name]!.rel < 1e-5) {
        pr.flags.push(`int8 requested but the output matches float32's to ${out.checks[name]!.rel.toExponential(1)}: int8 weights not in use`);
      }
      out.peers[name] = pr;
    }
    out.ratios = caseRatios(c.group, out.peers);
    for (const r of out.ratios) {
      if (r.value !== null) say(`   ${threads}T ${r.num}/${r.den}: ${r.value.toFixed(2)}×${r.target !== null ? ` (target ≤ ${r.target})` : ''}`);
      else if (!r.excluded?.endsWith('not measured')) say(`   ${threads}T ${r.num}/${r.den}: ${r.excluded}`);
    }
  } finally {
    for (const l of live) await l.proc.close();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------

function ensureModels(cases: Case[], opts: Opts, failures: string[]): Case[] {
  const missing = cases.filter((c) => !caseFilesReady(c));
  if (missing.length) {
    say(`Exporting models for ${missing.map((c) => c.id).join(', ')} (scripts/export_bench_models.py)`);
    const r = spawnSync(TORCH_PYTHON, [path.join(ROOT, 'scripts', 'export_bench_models.py'), '--cases', missing.map((c) => c.id).join(',')],
      { cwd: ROOT, stdio: 'inherit', env: torchEnv() });
    if (r.status !== 0) failures.push(`export_bench_models.py exited ${r.status}`);
  }
  const ready = cases.filter((c) => {
    if (caseFilesReady(c)) return true;
    failures.push(`${c.id} skipped: bench/models files missing (/usr/bin/python3 scripts/export_bench_models.py --cases ${c.id})`);
    return false;
  });
  const wantsInt8 = opts.peers.some((p) => p === 'ort-int8' || p === 'ort-int8pc');
  const int8Cases = ready.filter((c) => opts.int8Groups.has(c.group));
  if (wantsInt8 && int8Cases.length) {
    for (const perChannel of [false, true]) {
      if (!opts.peers.includes(perChannel ? 'ort-int8pc' : 'ort-int8')) continue;
      const stale = int8Cases.filter((c) => {
        const f = int8OnnxPath(c, perChannel);
        return !fs.existsSync(f) || fs.statSync(f).mtimeMs < fs.statSync(c.onnxPath).mtimeMs;
      });
      if (!stale.length) continue;
      const r = spawnSync('/usr/bin/python3', [path.join(ROOT, 'scripts', 'quantize_onnx_dynamic.py'), '--cases', stale.map((c) => c.id).join(','),
        ...(perChannel ? ['--per-channel'] : [])], { cwd: ROOT, stdio: 'inherit' });
      // Missing python3-onnx is not a failure of the run: the ort-int8 cells then say what to install.
      if (r.status !== 0) say(`scripts/quantize_onnx_dynamic.py exited ${r.status}: apt-get install -y python3-onnx`);
    }
  }
  return ready;
}

function versions(): Record<string, string | null> {
  const git = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' });
  return { node: process.version, commit: git.status === 0 ? git.stdout.trim() : null };
}

async function main(): Promise<number> {
  const opts = parseOpts();
  const failures: string[] = [];
  const cpu = readCpuId();
  const date = new Date().toISOString().slice(0, 10);
  const loadStart = os.loadavg().map((l) => Number(l.toFixed(2)));
  say(`bench:encoder — ${date}, ${opts.quick ? 'quick (development: short rounds)' : `${opts.rounds} rounds of ${opts.blockMs} ms blocks`}; CPU ${cpu.modelName} ` +
    `(family ${cpu.family} model ${cpu.model}${cpu.uarch ? `, ${cpu.uarch}` : ''}), ${os.availableParallelism()} logical CPUs; load ${loadStart.join(' ')}`);
  const peakStart = measureFmaPeak(say, PEAK_TRIES);
  say(`FMA peak (1 core, fp32, measured now): ${peakStart?.toFixed(1) ?? 'unknown'} GFLOP/s`);

  let cases = loadCases();
  if (opts.cases) {
    const unknown = opts.cases.filter((id) => !cases.some((c) => c.id === id));
    if (unknown.length) throw new RangeError(`bench:encoder: --cases: unknown case(s) ${unknown.join(', ')} (see bench/cases/cases.json)`);
    cases = opts.cases.map((id) => cases.find((c) => c.id === id)!);
  } else {
    cases = cases.filter((c) => DEFAULT_GROUPS.has(c.group) && !(c.spec.kind !== 'mha' && 'activation' in c.spec && c.spec.activation === 'relu'));
  }
  if (opts.peers.includes('torch')) {
    const t = detectTorch();
    if (!t.version) {
      say(`PyTorch not available (${t.reason}): its column is skipped`);
      opts.peers = opts.peers.filter((p) => p !== 'torch');
    }
  }
  cases = ensureModels(cases, opts, failures);

  const run: EncoderRun = {
    date, mode: opts.quick ? 'quick' : opts.rounds < FULL_ROUNDS || opts.blockMs < FULL_BLOCK_MS ? 'short' : 'full', cpu, logicalCpus: os.availableParallelism(),
    fmaPeak: { start: peakStart, end: null }, load: { start: loadStart, end: [] },
    command: `npm run bench:encoder --${process.argv.slice(2).length ? ' ' + process.argv.slice(2).join(' ') : ''}`,
    versions: versions(), env: {
      ATTNODE_WORKER_NICE: nodeChildEnv().ATTNODE_WORKER_NICE ?? null, torchBlasDir: opts.torchBlas,
      torchIdle: 'OpenMP/OpenBLAS defaults (spinning); the runner waits each process quiet before the next peer',
      OPENBLAS_CORETYPE: process.env.OPENBLAS_CORETYPE ?? null,
    },
    rounds: opts.rounds, blockMs: opts.blockMs, threads: opts.threads, notes: [],
  };
  const results: EncoderCaseResult[] = [];
  for (const c of cases) {
    say(`\n== ${c.id}: ${describeCase(c)}`);
    const res: EncoderCaseResult = { id: c.id, group: c.group, description: describeCase(c), byThreads: [] };
    for (const threads of opts.threads) res.byThreads.push(await runThreads(c, threads, opts, run, failures));
    results.push(res);
  }
  run.fmaPeak.end = measureFmaPeak(say, PEAK_TRIES);
  run.load.end = os.loadavg().map((l) => Number(l.toFixed(2)));
  say(`\nFMA peak at the end: ${run.fmaPeak.end?.toFixed(1) ?? 'unknown'} GFLOP/s; load ${run.load.end.join(' ')}`);
  run.notes.push(...failures.map((f) => `problem: ${f}`));

  if (opts.write) {
    fs.mkdirSync(opts.out, { recursive: true });
    // Runs shorter than the defaults are development runs: their files say so in the name.
    const stem = `encoder-${opts.name ?? cpu.slug}-${date}${run.mode === 'full' ? '' : `-${run.mode}`}`;
    fs.writeFileSync(path.join(opts.out, `${stem}.json`), JSON.stringify({ run, cases: results }, null, 1) + '\n');
    fs.writeFileSync(path.join(opts.out, `${stem}.md`), renderEncoderMarkdown(run, results));
    say(`Wrote ${path.relative(ROOT, path.join(opts.out, stem))}.md and .json`);
  }
  if (failures.length) {
    process.stderr.write(`\nbench:encoder finished with ${failures.length} problem(s):\n${failures.map((f) => `  ${f}`).join('\n')}\n`);
    return 1;
  }
  return 0;
}

main().then((code) => process.exit(code), (e: Error) => {
  // A bad option is the user's to fix: its message alone; anything else with its stack.
  const usage = e instanceof RangeError || e instanceof TypeError;
  process.stderr.write(usage ? `${e.message}\n` : `bench:encoder failed: ${e.stack ?? e.message}\n`);
  process.exit(2);
});
