/**
 * The encoder benchmark's ratios against issue 18's targets and its Markdown report (bench/encoder.ts writes it
 * as bench/results/encoder-<cpu>-<date>.md). Pure functions of the measured results.
 */
import { meets, ratio, type PeerResult, type Ratio, type CpuId } from './honest';

/** The peers that run int8 weights (and are compared with float32 by their accuracy). */
export const INT8_PEERS: readonly string[] = ['attnode-int8', 'ort-int8', 'ort-int8pc'];

/** Output compared with the case's float32 PyTorch reference. */
export interface PeerCheck {
  cosine: number;
  rel: number;
}

export interface ThreadsResult {
  threads: number;
  peers: Record<string, PeerResult>;
  /** Peers that could not run here, with the reason (an API that does not exist yet, a missing file, a failure). */
  unavailable: Record<string, string>;
  checks: Record<string, PeerCheck>;
  info: Record<string, Record<string, unknown>>;
  ratios: Ratio[];
}

export interface EncoderCaseResult {
  id: string;
  group: string;
  description: string;
  byThreads: ThreadsResult[];
}

export interface EncoderRun {
  date: string;
  /** 'quick' (--quick) and 'short' (fewer rounds or shorter blocks than the defaults) are development runs. */
  mode: 'quick' | 'short' | 'full';
  cpu: CpuId;
  logicalCpus: number;
  fmaPeak: { start: number | null; end: number | null };
  load: { start: number[]; end: number[] };
  command: string;
  versions: Record<string, string | null>;
  env: Record<string, string | null>;
  rounds: number;
  blockMs: number;
  threads: number[];
  notes: string[];
}

/** Issue 18's targets (attnode / peer, latency): encoder cases ≤ 0.85× ort, long-sequence attention ≤ 0.7×, int8 ≤ 0.8× ort's int8 and ≤ 0.45× ort's float32. */
export const TARGETS = { encoder: 0.85, longAttention: 0.7, int8VsOrtInt8: 0.8, int8VsOrtFp32: 0.45 } as const;

/** The ratios a case reports, each with its target where issue 18 sets one. */
export function caseRatios(group: string, peers: Record<string, PeerResult>): Ratio[] {
  const pairs: [string, string, number | null][] = [
    ['attnode', 'ort', group === 'long-attention' ? TARGETS.longAttention : TARGETS.encoder],
    ['attnode', 'torch', null],
    ['attnode', 'ts', null],
    ['bf16', 'ort', null],
    ['attnode-int8', 'ort-int8', TARGETS.int8VsOrtInt8],
    ['attnode-int8', 'ort', TARGETS.int8VsOrtFp32],
    ['attnode-int8', 'ort-int8pc', null],
    ['attnode-int8', 'attnode', null],
    ['ort-int8', 'ort', null],
  ];
  return pairs
    .filter(([a, b]) => peers[a] && peers[b])
    .map(([a, b, t]) => ratio(peers[a], peers[b], a, b, t));
}

// ---------------------------------------------------------------------------------------------------------------
// Markdown

const fmtMs = (x: number): string => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

function msCell(t: ThreadsResult, peer: string): string {
  const p = t.peers[peer];
  if (p) {
    const mark = p.flags.length ? ' ⚑' : '';
    return `${fmtMs(p.stats.median)} <sub>${fmtMs(p.stats.p10)}–${fmtMs(p.stats.p90)}</sub>${mark}`;
  }
  const why = t.unavailable[peer];
  return why ? `not available${why.startsWith('failed') ? ' (failed)' : ''}` : '—';
}

function ratioCell(t: ThreadsResult, num: string, den: string): string {
  const r = t.ratios.find((x) => x.num === num && x.den === den);
  if (!r) return '—';
  if (r.value === null) {
    if (r.excluded?.startsWith('left out')) return `left out (${r.excluded.slice('left out: '.length)})`;
    return '—';
  }
  const ok = meets(r);
  const verdict = ok === null ? '' : ok ? ' ✓' : ' ✗';
  const pr = r.perRound && r.perRound.max !== r.perRound.min
    ? ` <sub>rounds ${r.perRound.min.toFixed(2)}–${r.perRound.max.toFixed(2)}</sub>` : '';
  return `${r.value.toFixed(2)}×${verdict}${pr}`;
}

/** CPU ms per pass of two peers and their ratio: on a loaded machine, where wall times stretch with whoever else runs. */
function cpuMsCell(t: ThreadsResult, num: string, den: string): string {
  const a = t.peers[num];
  const b = t.peers[den];
  if (!a || !b) return '—';
  const left = a.flags.length || b.flags.length ? ' (flagged)' : '';
  return `${fmtMs(a.cpuMsPerRun)} / ${fmtMs(b.cpuMsPerRun)} = ${(a.cpuMsPerRun / b.cpuMsPerRun).toFixed(2)}×${left}`;
}

function cpuCell(t: ThreadsResult, peers: string[]): string {
  return peers.filter((p) => t.peers[p]).map((p) => `${p} ${t.peers[p]!.cpuPerWall.toFixed(2)}`).join(', ') || '—';
}

/** Issue 18's accuracy target for attnode's int8 weights: cosine with the float32 output at least 0.999. */
export const INT8_MIN_COSINE = 0.999;

function accCell(t: ThreadsResult, peer: string): string {
  const c = t.checks[peer];
  if (!c) return '—';
  const verdict = peer === 'attnode-int8' ? (c.cosine >= INT8_MIN_COSINE ? ' ✓' : ' ✗') : '';
  return `${c.cosine.toFixed(5)}${verdict} <sub>rel ${c.rel.toExponential(1)}</sub>`;
}

function peakCell(t: ThreadsResult, peer: string): string {
  const p = t.peers[peer];
  if (!p || p.gflops === null) return '—';
  return `${p.gflops.toFixed(0)}${p.peakFraction !== null ? ` (${(p.peakFraction * 100).toFixed(0)}%)` : ''}`;
}

export function renderEncoderMarkdown(run: EncoderRun, cases: EncoderCaseResult[]): string {
  const L: string[] = [];
  const cpu = run.cpu;
  L.push(`# Encoder benchmark — ${run.date} (${run.mode}), ${cpu.uarch ?? cpu.slug}`);
  L.push('');
  if (run.mode !== 'full') {
    L.push(`**A development run** (${run.mode}: ${run.rounds} rounds of ~${run.blockMs} ms blocks), not the figures to keep: ` +
      'those come from `npm run bench:encoder` with its defaults on a quiet machine.');
    L.push('');
  }
  L.push(`CPU: ${cpu.modelName} (${cpu.vendor}, family ${cpu.family ?? '?'} model ${cpu.model ?? '?'}${cpu.uarch ? `: ${cpu.uarch}` : ''}), ${run.logicalCpus} logical CPUs. ` +
    `Measured 1-core fp32 FMA peak: ${run.fmaPeak.start?.toFixed(1) ?? '?'} GFLOP/s at the start, ${run.fmaPeak.end?.toFixed(1) ?? '?'} at the end. ` +
    `Load average (1/5/15 min): ${run.load.start.join(' ')} at the start, ${run.load.end.join(' ')} at the end.`);
  L.push('');
  L.push(`Command: \`${run.command}\` (${run.rounds} rounds, blocks of ~${run.blockMs} ms). Versions: ${Object.entries(run.versions).map(([k, v]) => `${k} ${v ?? '?'}`).join(', ')}. ` +
    `Env: ${Object.entries(run.env).map(([k, v]) => `${k}=${v ?? '(unset)'}`).join(', ')}.`);
  L.push('');
  L.push('Method: each peer runs in a process of its own (one per case and thread count), takes turns in blocks of ' +
    'back-to-back forward passes (order rotated each round), and after each block the runner waits until that process ' +
    'stops burning CPU before the next peer starts. Median ms with p10–p90. Ratios: attnode median / peer median ' +
    '(below 1: attnode faster), ✓/✗ against issue 18\'s target, with the range of per-round ratios (same minutes). ' +
    'CPU/wall: the process\'s CPU time (every thread) over the wall time of its timed passes; a run above its thread ' +
    'count + 0.3, or above (FMA peak × threads) in GFLOP/s, is flagged ⚑ and left out of the ratios. GFLOP/s counts ' +
    'the GEMMs and attention products (2 per multiply-add); % is of the measured peak × threads. CPU ms/pass: the ' +
    'process\'s CPU time per forward pass (every thread, spinning included): on a loaded machine, where wall times ' +
    'stretch with whoever else runs, the steadier measure of the work each peer does.');
  L.push('');
  L.push('## float32');
  L.push('');
  L.push('| case | threads | attnode ms | onnxruntime ms | PyTorch ms | TS ms | attnode/ort | attnode/torch | attnode GFLOP/s (% peak) | ort GFLOP/s | CPU ms/pass attnode / ort | CPU/wall | load |');
  L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|');
  for (const c of cases) {
    c.byThreads.forEach((t, i) => {
      const loads = Object.values(t.peers).flatMap((p) => p.blocks.map((b) => b.load1));
      const loadCell = loads.length ? `${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}` : '—';
      L.push(`| ${i === 0 ? `${c.id}<br><sub>${c.description}</sub>` : ''} | ${t.threads} | ${msCell(t, 'attnode')} | ${msCell(t, 'ort')} | ` +
        `${msCell(t, 'torch')} | ${msCell(t, 'ts')} | ${ratioCell(t, 'attnode', 'ort')} | ${ratioCell(t, 'attnode', 'torch')} | ` +
        `${peakCell(t, 'attnode')} | ${peakCell(t, 'ort')} | ${cpuMsCell(t, 'attnode', 'ort')} | ${cpuCell(t, ['attnode', 'ort', 'torch', 'ts'])} | ${loadCell} |`);
    });
  }
  const int8Cases = cases.filter((c) => c.byThreads.some((t) => INT8_PEERS.some((p) => t.peers[p] || t.unavailable[p])));
  if (int8Cases.length) {
    L.push('');
    L.push('## int8 weights');
    L.push('');
    L.push('attnode-int8: `useWeightPrecision(\'int8\')` (weights per output channel, activations per row). ort-int8: ' +
      'onnxruntime-node on the case\'s graph rewritten as `quantize_dynamic` emits it (scripts/quantize_onnx_dynamic.py: ' +
      'DynamicQuantizeLinear + MatMulInteger, int8 weights per tensor, its default); ort-int8pc: the same with ' +
      'per-channel weights. Accuracy: cosine of the output with the float32 reference (and max relative difference); ' +
      `attnode-int8's ✓/✗ against issue 18's cosine ≥ ${INT8_MIN_COSINE}.`);
    L.push('');
    L.push('| case | threads | attnode-int8 ms | ort-int8 ms | ort-int8pc ms | ort fp32 ms | int8/ort-int8 | int8/ort fp32 | int8/ort-int8pc | attnode int8/fp32 | ort int8/fp32 | cosine attnode-int8 | cosine ort-int8 | cosine ort-int8pc |');
    L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const c of int8Cases) {
      c.byThreads.forEach((t, i) => {
        L.push(`| ${i === 0 ? c.id : ''} | ${t.threads} | ${msCell(t, 'attnode-int8')} | ${msCell(t, 'ort-int8')} | ${msCell(t, 'ort-int8pc')} | ` +
          `${msCell(t, 'ort')} | ${ratioCell(t, 'attnode-int8', 'ort-int8')} | ${ratioCell(t, 'attnode-int8', 'ort')} | ` +
          `${ratioCell(t, 'attnode-int8', 'ort-int8pc')} | ${ratioCell(t, 'attnode-int8', 'attnode')} | ${ratioCell(t, 'ort-int8', 'ort')} | ` +
          `${accCell(t, 'attnode-int8')} | ${accCell(t, 'ort-int8')} | ${accCell(t, 'ort-int8pc')} |`);
      });
    }
    const reasons = new Set<string>();
    for (const c of int8Cases) for (const t of c.byThreads) for (const p of INT8_PEERS) if (t.unavailable[p]) reasons.add(`${p}: ${t.unavailable[p]}`);
    if (reasons.size) {
      L.push('');
      for (const r of reasons) L.push(`- not available: ${r}`);
    }
  }
  L.push('');
  L.push('## Flagged runs (left out of the ratios)');
  L.push('');
  const flagged = cases.flatMap((c) => c.byThreads.flatMap((t) => Object.values(t.peers)
    .filter((p) => p.flags.length).map((p) => `- ${c.id}, ${t.threads}T, ${p.peer}: ${p.flags.join('; ')}`)));
  L.push(...(flagged.length ? flagged : ['None: every peer kept within its thread count and below the FMA peak.']));
  L.push('');
  L.push('## Spinning after a call');
  L.push('');
  L.push('Longest time a peer\'s process kept burning CPU after its block ended, and the CPU it burnt then (what it would have taken from the next peer had the runner not waited).');
  L.push('');
  const spinning = cases.flatMap((c) => c.byThreads.flatMap((t) => Object.values(t.peers)
    .filter((p) => (p.spinMs ?? 0) > 0).map((p) => `- ${c.id}, ${t.threads}T, ${p.peer}: ${p.spinMs!.toFixed(0)} ms, ${p.idleCpuMs!.toFixed(0)} CPU ms`)));
  L.push(...(spinning.length ? spinning : ['None measured (resolution: one 10 ms clock tick per 100 ms).']));
  const infos = cases.flatMap((c) => c.byThreads.flatMap((t) => Object.entries(t.info).filter(([p]) => p === 'torch')
    .map(([, v]) => `${c.id} ${t.threads}T: ${JSON.stringify(v)}`)));
  if (infos.length) {
    L.push('');
    L.push('## PyTorch');
    L.push('');
    L.push(`Fused fast path, BLAS library and OpenBLAS threads per run: ${infos.slice(0, 1).join('')}${infos.length > 1 ? ` (and ${infos.length - 1} more in the JSON)` : ''}.`);
  }
  if (run.notes.length) {
    L.push('');
    L.push('## Notes');
    L.push('');
    for (const n of run.notes) L.push(`- ${n}`);
  }
  L.push('');
  return L.join('\n');
}
