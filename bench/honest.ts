/**
 * The arithmetic of the encoder benchmark (bench/encoder.ts), kept apart from the process plumbing so it can be
 * tested: the CPU a run is allowed to use, which runs are left out of the ratios and why, the work a case does,
 * the ratios against targets, and the CPU the run was on.
 */
import * as fs from 'node:fs';
import type { Stats } from './report';

/** One block of back-to-back timed forward passes in a peer's own process. */
export interface Block {
  round: number;
  /** Wall time of each forward pass, ms. */
  ms: number[];
  /** CPU time of the whole process (every thread) over the block, ms. */
  cpuMs: number;
  /** Wall time of the whole block, ms. */
  wallMs: number;
  /** CPU the process burnt after the block, while it had nothing to do (threads spinning), ms; null if not measured. */
  idleCpuMs: number | null;
  /** How long after the block the process kept burning CPU, ms (0: quiet at once). */
  spinMs: number | null;
  /** 1-minute load average when the block started. */
  load1: number;
}

/** Median, p10/p90 (nearest rank) and min of a set of timings (also bench/run.ts's). */
export function stats(xs: readonly number[]): Stats {
  if (xs.length === 0) throw new RangeError('stats: no samples');
  const s = [...xs].sort((a, b) => a - b);
  // Nearest-rank quantiles: with few samples an interpolated p10 would invent values never measured.
  const q = (p: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { n: s.length, median, p10: q(0.1), p90: q(0.9), min: s[0]! };
}

export function median(xs: readonly number[]): number {
  return stats(xs).median;
}

/** How far above its thread count a run's CPU/wall may go before it is flagged (GC and I/O threads, timer slop). */
export const CPU_MARGIN = 0.3;
/**
 * How far above (measured FMA peak × threads) a float32 run's GFLOP/s may go before it is flagged. The probe, like
 * the peers, runs slower on a loaded machine, and a peer may catch a quieter minute than the probe did: 10% slack.
 * (The Zen 5 run's PyTorch "1 thread" at 8×128 ran at 114% of one core's peak.)
 */
export const PEAK_MARGIN = 1.1;

/** A peer's figures at one case and thread count, with the reasons (if any) it is left out of the ratios. */
export interface PeerResult {
  peer: string;
  threads: number;
  stats: Stats;
  /** Sum of the blocks' CPU over the sum of their wall time: the threads the peer really kept busy. */
  cpuPerWall: number;
  /** CPU ms per forward pass (median over blocks of block CPU / reps). */
  cpuMsPerRun: number;
  /** GFLOP/s at the median time, and its fraction of (measured 1-core FMA peak × threads). */
  gflops: number | null;
  peakFraction: number | null;
  /** Longest spin after a block, ms, and the CPU it burnt. */
  spinMs: number | null;
  idleCpuMs: number | null;
  /** Why this result is left out of the ratios; empty when it counts. */
  flags: string[];
  blocks: Block[];
}

/**
 * Summarises a peer's blocks and flags a run that used more CPU than its thread column allows (CPU/wall above
 * threads + CPU_MARGIN) or that ran faster than the measured FMA peak times its threads permits (above PEAK_MARGIN ×
 * peak × threads: more cores than it says, or a wrong FLOP count): either way its time is not a `threads`-thread
 * time. Pass `peakGflops` null for work the fp32 peak does not bound (int8, bfloat16).
 */
export function summarise(peer: string, threads: number, blocks: Block[], flops: number | null, peakGflops: number | null): PeerResult {
  const all = blocks.flatMap((b) => b.ms);
  const st = stats(all);
  const cpu = blocks.reduce((s, b) => s + b.cpuMs, 0);
  const wall = blocks.reduce((s, b) => s + b.wallMs, 0);
  const cpuPerWall = wall > 0 ? cpu / wall : 0;
  const cpuMsPerRun = median(blocks.map((b) => b.cpuMs / b.ms.length));
  const gflops = flops !== null ? flops / (st.median * 1e6) : null;
  const peakFraction = gflops !== null && peakGflops ? gflops / (peakGflops * threads) : null;
  const flags: string[] = [];
  if (cpuPerWall > threads + CPU_MARGIN) {
    flags.push(`CPU/wall ${cpuPerWall.toFixed(2)} > ${threads} threads + ${CPU_MARGIN}: it ran on more threads than its column says`);
  }
  if (peakFraction !== null && peakFraction > PEAK_MARGIN) {
    flags.push(`${gflops!.toFixed(0)} GFLOP/s is ${(peakFraction * 100).toFixed(0)}% of ${threads} × the measured FMA peak: more cores than its column says`);
  }
  const spins = blocks.map((b) => b.spinMs).filter((x): x is number => x !== null);
  const idles = blocks.map((b) => b.idleCpuMs).filter((x): x is number => x !== null);
  return {
    peer, threads, stats: st, cpuPerWall, cpuMsPerRun, gflops, peakFraction,
    spinMs: spins.length ? Math.max(...spins) : null, idleCpuMs: idles.length ? Math.max(...idles) : null,
    flags, blocks,
  };
}

/** A ratio a/b of two peers' medians, with the per-round ratios (same minutes, so load moves both alike). */
export interface Ratio {
  num: string;
  den: string;
  /** median(a) / median(b); null when either is missing or flagged. */
  value: number | null;
  /** Median and range of the per-round ratios of block medians. */
  perRound: { median: number; min: number; max: number } | null;
  target: number | null;
  /** Why there is no value. */
  excluded: string | null;
}

export function ratio(a: PeerResult | undefined, b: PeerResult | undefined, num: string, den: string, target: number | null): Ratio {
  const r: Ratio = { num, den, value: null, perRound: null, target, excluded: null };
  if (!a || !b) {
    r.excluded = `${!a ? num : den} not measured`;
    return r;
  }
  const flagged = [a, b].filter((p) => p.flags.length > 0).map((p) => p.peer);
  if (flagged.length) {
    r.excluded = `left out: ${flagged.join(' and ')} flagged`;
    return r;
  }
  r.value = a.stats.median / b.stats.median;
  const byRound = (p: PeerResult): Map<number, number> => new Map(p.blocks.map((blk) => [blk.round, median(blk.ms)]));
  const ra = byRound(a);
  const rb = byRound(b);
  const per = [...ra].filter(([k]) => rb.has(k)).map(([k, v]) => v / rb.get(k)!);
  if (per.length) r.perRound = { median: median(per), min: Math.min(...per), max: Math.max(...per) };
  return r;
}

/** Whether a ratio meets its target: true/false, or null when there is no value or no target. */
export function meets(r: Ratio): boolean | null {
  if (r.value === null || r.target === null) return null;
  return r.value <= r.target;
}

// ---------------------------------------------------------------------------------------------------------------
// work per forward pass

export interface EncoderShape {
  kind: 'encoder_layer' | 'encoder' | 'mha';
  batch: number;
  seq: number;
  dModel: number;
  dimFeedforward?: number;
  numLayers?: number;
}

/**
 * Multiply-add FLOPs (2 per MAC) of one forward pass: the projections and feed-forward GEMMs and attention's two
 * products. Softmax, LayerNorm, GELU and bias adds are left out (under 1% here), so GFLOP/s is a slight underestimate.
 */
export function forwardFlops(s: EncoderShape): number {
  const t = s.batch * s.seq;
  const d = s.dModel;
  const attention = 4 * s.batch * s.seq * s.seq * d; // q·kᵀ and p·v over all heads
  const projections = 2 * t * d * (3 * d) + 2 * t * d * d; // in-projection (q, k, v) and out-projection
  if (s.kind === 'mha') return projections + attention;
  const ff = s.dimFeedforward;
  if (!ff) throw new RangeError(`forwardFlops: ${s.kind} needs dimFeedforward`);
  const layer = projections + attention + 2 * 2 * t * d * ff;
  return s.kind === 'encoder' ? layer * (s.numLayers ?? 1) : layer;
}

// ---------------------------------------------------------------------------------------------------------------
// accuracy

/** Cosine similarity and max |a-b| relative to max |b| (float64 sums). */
export function compareOutputs(a: ArrayLike<number>, b: ArrayLike<number>): { cosine: number; rel: number; maxAbsDiff: number } {
  if (a.length !== b.length) throw new RangeError(`compareOutputs: lengths differ (${a.length} vs ${b.length})`);
  let dot = 0;
  let na = 0;
  let nb = 0;
  let d = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    dot += x * y;
    na += x * x;
    nb += y * y;
    // NaN must not hide as "no difference": Math.max propagates it.
    d = Math.max(d, Math.abs(x - y));
    scale = Math.max(scale, Math.abs(y));
  }
  const cosine = na > 0 && nb > 0 ? dot / Math.sqrt(na * nb) : Number.NaN;
  return { cosine, rel: scale > 0 ? d / scale : d, maxAbsDiff: d };
}

// ---------------------------------------------------------------------------------------------------------------
// the CPU

export interface CpuId {
  modelName: string;
  vendor: string;
  family: number | null;
  model: number | null;
  /** A short name for result files: zen4, zen5, ... or cpu-f<family>m<model>. */
  slug: string;
  /** The microarchitecture when the family/model is one this table knows, else null. */
  uarch: string | null;
}

/** AMD families/models to microarchitectures (the ones result files are kept for; others get cpu-f<f>m<m>). */
export function amdUarch(family: number, model: number): string | null {
  if (family === 0x17) return model >= 0x30 ? 'zen2' : 'zen';
  if (family === 0x19) {
    if ((model >= 0x10 && model <= 0x1f) || (model >= 0x60 && model <= 0x7f) || (model >= 0xa0 && model <= 0xaf)) return 'zen4';
    return 'zen3';
  }
  if (family === 0x1a) return 'zen5';
  return null;
}

export function parseCpuinfo(text: string): CpuId {
  const field = (name: string): string | null => {
    const m = new RegExp(`^${name}\\s*:\\s*(.+)$`, 'm').exec(text);
    return m ? m[1]!.trim() : null;
  };
  const modelName = field('model name') ?? 'unknown CPU';
  const vendor = field('vendor_id') ?? 'unknown';
  const fam = field('cpu family');
  const mod = field('model');
  const family = fam !== null && /^\d+$/.test(fam) ? Number(fam) : null;
  const model = mod !== null && /^\d+$/.test(mod) ? Number(mod) : null;
  const uarch = vendor === 'AuthenticAMD' && family !== null && model !== null ? amdUarch(family, model) : null;
  const slug = uarch ?? (family !== null && model !== null ? `cpu-f${family}m${model}` : 'cpu-unknown');
  return { modelName, vendor, family, model, slug, uarch };
}

export function readCpuId(): CpuId {
  try {
    return parseCpuinfo(fs.readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return { modelName: 'unknown CPU', vendor: 'unknown', family: null, model: null, slug: 'cpu-unknown', uarch: null };
  }
}

/** CPU time (user + system, every thread) of a process in ms, from /proc/<pid>/stat; null when unreadable. */
export function procCpuMs(pid: number): number | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: fields are counted after its closing parenthesis.
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    return ((utime + stime) * 1000) / CLOCK_TICKS;
  } catch {
    return null;
  }
}

/** USER_HZ: 100 on every Linux this runs on (the kernel's ABI for /proc times). */
const CLOCK_TICKS = 100;
