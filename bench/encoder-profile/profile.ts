/**
 * Per-op profile of attnode's encoder layer or 6-layer encoder forward (the cases of bench:encoder): every native
 * call of a pass timed in wall time (median over passes) and process CPU time (mean), GFLOP/s of the GEMMs and the
 * attention per CPU second, the JS time between native calls, minor page faults per pass and CPU/wall of the pass
 * (at 2 threads: how much the second thread ran).
 *
 *   npm run bench:encoder-profile -- --case enc6-gelu-b1s128 --threads 2 --passes 30
 *   npm run bench:encoder-profile -- --case layer-gelu-b8s128 --precision int8
 *   npm run bench:encoder-profile -- --help
 *
 * The forwards run eagerly (the replayed program of lib/forward-program.ts is switched off: a replay is one native
 * call, with nothing to break down); `--replayed` times whole replayed passes beside eager ones instead.
 *
 * A development tool: nothing is written, and on a loaded machine only the CPU columns mean much.
 */
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { loadCases, type Case } from '../cases/cases';

const HELP = `Usage: npm run bench:encoder-profile -- [options]
  --case ID       an encoder-layer, encoder-6 or long-attention (mha-*) case of bench/cases/cases.json (default
                  layer-gelu-b1s128); its
                  exported weights and input are used when bench/models has them, else seeded random ones
  --threads N     attnode's thread count (default 1)
  --precision P   the weights' precision: float32 (default), bfloat16 or int8 (useWeightPrecision, as bench:encoder's
                  attnode-int8 peer)
  --passes N      timed forward passes (default 30), after --warmup N untimed ones (default 10)
  --js-only       skip the native calls (outputs are garbage): the JS time of a pass alone
  --replayed      no per-op breakdown: CPU and wall ms per pass, eager and replayed (one runList per pass) in
                  alternating blocks of --passes, 6 rounds, medians
`;

type Lib = typeof import('../../lib/index');
type F32 = import('../../lib/index').Tensor<'float32'>;

function positiveInt(name: string, v: string | undefined, dflt: number, min: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new RangeError(`bench:encoder-profile: --${name} must be an integer >= ${min}, got '${v}'`);
  return n;
}

/**
 * The case's input, with its exported weights loaded into `m`, when bench/models has both files; else a seeded
 * random input of `width` features (and `m` keeps its random initial weights).
 */
async function caseInput(a: Lib, c: Case, m: { loadStateDict(d: Record<string, import('../../lib/index').Tensor>): unknown }, width: number, seed: number): Promise<{ x: F32; source: string }> {
  if (fs.existsSync(c.weightsPath) && fs.existsSync(c.ioPath)) {
    m.loadStateDict((await a.loadSafetensors(c.weightsPath)).tensors);
    return { x: (await a.loadSafetensors(c.ioPath)).tensors.x as F32, source: 'exported weights and input' };
  }
  a.manualSeed(seed);
  return { x: a.randn([c.batch, c.seq, width]), source: 'seeded random weights and input (bench/models has no files for this case)' };
}

type Precision = 'float32' | 'bfloat16' | 'int8';

async function buildModel(a: Lib, c: Case, precision: Precision): Promise<{ forward: () => F32; source: string }> {
  const spec = c.spec;
  if (spec.kind === 'mha') {
    // Long-sequence attention: the q/k/v and output projections around one attention call.
    const m = new a.nn.MultiheadAttention({ embedDim: spec.embedDim, numHeads: spec.numHeads, batchFirst: true }).eval();
    const { x, source } = await caseInput(a, c, m, spec.embedDim, spec.seed);
    if (precision !== 'float32') m.useWeightPrecision(precision);
    return { forward: () => m.forward(x, x, x, { needWeights: false }).output, source };
  }
  if (spec.kind !== 'encoder_layer' && spec.kind !== 'encoder') {
    throw new RangeError(`bench:encoder-profile: --case ${c.id} is a ${spec.kind} case, not an encoder layer, encoder or MHA`);
  }
  const layerOpts = {
    dModel: spec.dModel, nhead: spec.nhead, dimFeedforward: spec.dimFeedforward, activation: spec.activation, batchFirst: true,
  };
  const m = spec.kind === 'encoder'
    ? new a.nn.TransformerEncoder({ layer: layerOpts, numLayers: spec.numLayers }).eval()
    : new a.nn.TransformerEncoderLayer(layerOpts).eval();
  const { x, source } = await caseInput(a, c, m, spec.dModel, spec.seed);
  if (precision !== 'float32') m.useWeightPrecision(precision);
  return { forward: () => m.forward(x), source };
}

interface OpRecord {
  name: string;
  wall: number[];
  cpu: number[];
  faults: number[];
  flops: number;
}

/** The op's display name and multiply-add count ×2 (GEMMs and attention; 0 for the rest). */
function describeCall(op: string, g: Record<string, unknown>): { name: string; flops: number } {
  if (op === 'gemm') {
    const [m, n, k, batch] = [g.m, g.n, g.k, g.batch ?? 1] as number[];
    const prec = typeof g.bPrecision === 'string' && g.bPrecision !== 'float32' ? ` ${g.bPrecision}` : '';
    return { name: `gemm${prec} ${m}x${n}x${k}${g.act ? ` act ${String(g.act)}` : ''}`, flops: 2 * m! * n! * k! * batch! };
  }
  if (op === 'attention') {
    const [b, h, lq, lk, dk, dv] = [g.batch, g.heads, g.lq, g.lk, g.dk, g.dv] as number[];
    return { name: `attention b${b} h${h} ${lq}x${lk}`, flops: 2 * b! * h! * lq! * lk! * (dk! + dv!) };
  }
  return { name: op, flops: 0 };
}

const median = (v: number[]): number => {
  const s = [...v].sort((p, q) => p - q);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
};
const mean = (v: number[]): number => v.reduce((p, q) => p + q, 0) / v.length;
const cpuMs = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1000;

/** Eager and replayed passes in alternating blocks (order swapped each round): CPU and wall ms per pass, medians. */
function compareReplayed(forward: () => unknown, setReplay: (on: boolean) => boolean, passes: number, warmup: number): void {
  const cpu: Record<string, number[]> = { eager: [], replayed: [] };
  const wall: Record<string, number[]> = { eager: [], replayed: [] };
  for (let round = 0; round < 6; round++) {
    for (const k of round % 2 ? ['replayed', 'eager'] : ['eager', 'replayed']) {
      setReplay(k === 'replayed');
      for (let i = 0; i < Math.max(2, warmup); i++) forward();
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      for (let i = 0; i < passes; i++) forward();
      wall[k]!.push((performance.now() - t0) / passes);
      cpu[k]!.push(cpuMs(process.cpuUsage(c0)) / passes);
    }
  }
  const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  for (const k of ['eager', 'replayed']) {
    console.log(`${k.padEnd(9)} CPU ${median(cpu[k]!).toFixed(2)} ms/pass, wall ${median(wall[k]!).toFixed(2)} ms/pass`);
  }
  console.log(`replayed/eager: CPU ${(median(cpu.replayed!) / median(cpu.eager!)).toFixed(3)}, wall ` +
    `${(median(wall.replayed!) / median(wall.eager!)).toFixed(3)}; load ${load}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      case: { type: 'string' },
      threads: { type: 'string' },
      precision: { type: 'string', default: 'float32' },
      passes: { type: 'string' },
      warmup: { type: 'string' },
      'js-only': { type: 'boolean', default: false },
      replayed: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const id = values.case ?? 'layer-gelu-b1s128';
  const c = loadCases().find((x) => x.id === id);
  if (!c) throw new RangeError(`bench:encoder-profile: --case: unknown case '${id}' (see bench/cases/cases.json)`);
  const threads = positiveInt('threads', values.threads, 1, 1);
  const passes = positiveInt('passes', values.passes, 30, 1);
  const warmup = positiveInt('warmup', values.warmup, 10, 0);
  const jsOnly = values['js-only'] === true;
  const precision = values.precision!;
  if (precision !== 'float32' && precision !== 'bfloat16' && precision !== 'int8') {
    throw new RangeError(`bench:encoder-profile: --precision must be float32, bfloat16 or int8, got '${precision}'`);
  }

  const a = await import('../../lib/index');
  const { addon } = await import('../../lib/backend/native');
  const { setForwardProgramEnabled, forwardProgramStats } = await import('../../lib/forward-program');
  if (!addon) throw new Error(`bench:encoder-profile: the native addon is not loaded (${a.info().nativeError ?? 'unknown reason'})`);
  a.setGradEnabled(false);
  a.setNumThreads(threads);
  const model = await buildModel(a, c, precision);
  if (values.replayed) {
    compareReplayed(model.forward, setForwardProgramEnabled, passes, warmup);
    console.log(`${c.id} (${model.source}), ${precision} weights, ${threads} thread(s); programs recorded/run: ${JSON.stringify(forwardProgramStats())}`);
    return;
  }
  setForwardProgramEnabled(false);

  // Every op of the addon wrapped: its wall and CPU time, keyed by its place in the pass.
  const records: OpRecord[] = [];
  let index = 0;
  let timing = false;
  let lastEnd = 0;
  let gapMs = 0;
  const table = addon as unknown as Record<string, unknown>;
  const skip = /Record$|^(packWeight|createCommandList|submit|runList|info)$|^(set|get)[A-Z]/;
  for (const op of Object.keys(table)) {
    const f = table[op];
    if (typeof f !== 'function' || skip.test(op)) continue;
    table[op] = (...args: unknown[]): unknown => {
      if (!timing) return (f as (...x: unknown[]) => unknown).apply(addon, args);
      const f0 = process.resourceUsage().minorPageFault;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      if (lastEnd > 0) gapMs += t0 - lastEnd;
      const r = jsOnly ? undefined : (f as (...x: unknown[]) => unknown).apply(addon, args);
      const t1 = performance.now();
      const used = cpuMs(process.cpuUsage(c0));
      const faulted = process.resourceUsage().minorPageFault - f0;
      lastEnd = t1;
      let rec = records[index];
      if (!rec) {
        const d = describeCall(op, (args[0] ?? {}) as Record<string, unknown>);
        rec = records[index] = { name: d.name, wall: [], cpu: [], faults: [], flops: d.flops };
      }
      rec.wall.push(t1 - t0);
      rec.cpu.push(used);
      rec.faults.push(faulted);
      index++;
      return r;
    };
  }

  for (let i = 0; i < warmup; i++) model.forward();
  const passWall: number[] = [];
  const faults0 = process.resourceUsage().minorPageFault;
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  for (let i = 0; i < passes; i++) {
    index = 0;
    lastEnd = 0;
    timing = true;
    const t0 = performance.now();
    model.forward();
    passWall.push(performance.now() - t0);
    timing = false;
  }
  const wall = performance.now() - wall0;
  const cpu = cpuMs(process.cpuUsage(cpu0));
  const faults = (process.resourceUsage().minorPageFault - faults0) / passes;
  const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

  console.log(`${c.id} (${model.source}), ${precision} weights, ${threads} thread(s), ${passes} passes${jsOnly ? ', native calls skipped' : ''}; load ${load}`);
  console.log(`pass: median ${median(passWall).toFixed(2)} ms wall, mean ${(cpu / passes).toFixed(2)} ms CPU, CPU/wall ` +
    `${(cpu / wall).toFixed(2)}; ${records.length} native calls; ${faults.toFixed(1)} minor page faults`);
  // Ops of the same name summed over the layers, in order of first appearance.
  const byName = new Map<string, { calls: number; wall: number; cpu: number; faults: number; flops: number }>();
  let nativeWall = 0;
  let nativeCpu = 0;
  for (const r of records) {
    const w = median(r.wall);
    const u = mean(r.cpu);
    nativeWall += w;
    nativeCpu += u;
    const e = byName.get(r.name) ?? { calls: 0, wall: 0, cpu: 0, faults: 0, flops: 0 };
    e.calls++;
    e.faults += mean(r.faults);
    e.wall += w;
    e.cpu += u;
    e.flops += r.flops;
    byName.set(r.name, e);
  }
  const pass = cpu / passes;
  console.log(`${'op'.padEnd(32)} calls   wall ms    CPU ms  CPU % of pass  GFLOP/s per CPU s  page faults`);
  for (const [name, e] of byName) {
    const rate = e.flops > 0 && e.cpu > 0 ? (e.flops / e.cpu / 1e6).toFixed(1) : '';
    console.log(`${name.padEnd(32)} ${String(e.calls).padStart(5)} ${e.wall.toFixed(3).padStart(9)} ${e.cpu.toFixed(3).padStart(9)} ` +
      `${(100 * e.cpu / pass).toFixed(1).padStart(13)}  ${rate.padStart(17)}  ${e.faults.toFixed(1).padStart(11)}`);
  }
  console.log(`native calls: ${nativeWall.toFixed(2)} ms wall, ${nativeCpu.toFixed(2)} ms CPU; JS between them ` +
    `${(gapMs / passes).toFixed(3)} ms wall; the rest of the pass's CPU (JS, GC, other threads) ${(pass - nativeCpu).toFixed(2)} ms`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
