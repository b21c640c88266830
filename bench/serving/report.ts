/**
 * Renders bench/serving/run.ts results: a markdown report (tables per thread
 * count: aggregate decode tokens/s by concurrent streams with the speed-up
 * over one stream, time to first token p50/p99 by concurrency, event-loop
 * delay while a long prompt arrives) and an SVG chart (aggregate tokens/s
 * and TTFT p99 against concurrency, one line per thread count).
 *
 *   npx tsx bench/serving/report.ts results.json [more.json …] [--md out.md] [--svg out.svg]
 *
 * Several JSON files (e.g. one per thread count, or repeated rounds) are
 * merged: cells of the same thread count and concurrency pool their samples.
 */
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { twoPanelSvg, type Panel } from '../charts';

interface DecodeCell { streams: number; aggregateTokS: number[]; perStreamItlMsMedian: number[]; windowMs: number[]; steps: number[] }
interface TtftCell { clients: number; requests: number; ttftMs: number[]; p50: number; p99: number; itlP50: number; itlP99: number; tokS: number; reqS: number }
interface LoopCell { chunk: number; longPrompt: number; streams: number; ttftMs: number; loopP50Ms: number; loopP99Ms: number; loopMaxMs: number; maxGapMs: number; medianGapMs: number }
interface PerThreads { threads: number; loadavgAtStart?: number[]; gemmGflops: number; bandwidthGBs: number; decode: DecodeCell[]; ttft: TtftCell[]; loop: LoopCell[]; speedup8over1: number }
export interface ServingRun {
  when: string; quick: boolean; cpu: string; logicalCpus: number; node: string; loadavgAtStart?: number[]; loadavgAtEnd: number[];
  native: { isa?: string } | null;
  model: { shape: string; layers: number; hidden: number; vocab: number; weights: string };
  config: { prompt: number; newTokens: number; ttftRequests: number; longPrompt: number; chunk: number; reps: number; maxRunning: number };
  perThreads: PerThreads[];
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
/** Nearest-rank percentile. */
export const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};
const f = (x: number, d = 1): string => (Number.isFinite(x) ? x.toFixed(d) : '–');

/** One thread count's cells of every run. */
interface Merged { decode: Map<number, DecodeCell>; ttft: Map<number, TtftCell[]>; loop: LoopCell[]; gemm: number[]; bw: number[]; loadavg: number[][] }

/** Thread count → merged cells of every run. */
function merge(runs: ServingRun[]): Map<number, Merged> {
  const out = new Map<number, Merged>();
  for (const r of runs) {
    for (const t of r.perThreads) {
      let m = out.get(t.threads);
      if (!m) out.set(t.threads, (m = { decode: new Map(), ttft: new Map(), loop: [], gemm: [], bw: [], loadavg: [] }));
      if (t.loadavgAtStart) m.loadavg.push(t.loadavgAtStart);
      m.gemm.push(t.gemmGflops);
      m.bw.push(t.bandwidthGBs);
      for (const d of t.decode) {
        const c = m.decode.get(d.streams);
        if (!c) m.decode.set(d.streams, { ...d, aggregateTokS: [...d.aggregateTokS], perStreamItlMsMedian: [...d.perStreamItlMsMedian] });
        else {
          c.aggregateTokS.push(...d.aggregateTokS);
          c.perStreamItlMsMedian.push(...d.perStreamItlMsMedian);
        }
      }
      for (const c of t.ttft) m.ttft.set(c.clients, [...(m.ttft.get(c.clients) ?? []), c]);
      m.loop.push(...t.loop);
    }
  }
  return out;
}

export function renderMarkdown(runs: ServingRun[], command: string): string {
  const r0 = runs[0]!;
  const merged = merge(runs);
  const o: string[] = [];
  o.push(`# Continuous batching: GenerationEngine on a ${r0.model.shape}-shaped Llama (${r0.model.weights} weights)`, '');
  if (runs.some((r) => r.quick)) o.push('**Smoke run (`--quick`: 2 layers, few tokens): checks the harness only; the figures mean nothing.**', '');
  const avg = (a: number[]): string => a.map((x) => x.toFixed(2)).join('/');
  const starts = runs.filter((r) => r.loadavgAtStart).map((r) => avg(r.loadavgAtStart!));
  o.push(`- CPU: ${r0.cpu} (${r0.logicalCpus} logical CPUs), kernel path ${r0.native?.isa ?? '?'}, Node ${r0.node}; load average (1/5/15 min)${starts.length ? ` at the start: ${starts.join(', ')};` : ''} at the end: ${runs.map((r) => avg(r.loadavgAtEnd)).join(', ')}. A load above the CPU count means other work shared the cores: compare figures within a run (ratios), not across machines.`);
  o.push(`- Model: ${r0.model.layers} layers, hidden ${r0.model.hidden}, vocab ${r0.model.vocab}, seeded random weights (bench/llm/make_model.ts).`);
  o.push(`- Engine: maxRunning ${r0.config.maxRunning}, prefillChunk ${r0.config.chunk}; decode streams read a ${r0.config.prompt}-token prompt and generate ${r0.config.newTokens} tokens (greedy); ${r0.config.reps} rep(s) per cell, ${runs.length} run(s).`);
  o.push(`- Command: \`${command}\``, '');
  for (const [threads, m] of [...merged].sort((a, b) => a[0] - b[0])) {
    o.push(`## ${threads} thread${threads > 1 ? 's' : ''}`, '');
    o.push(`In-process context: native GEMM ${f(median(m.gemm))} GFLOP/s ([512×576]·[576×1536]), streaming bandwidth ${f(median(m.bw))} GB/s${m.loadavg.length ? `; load average when this thread count started: ${m.loadavg.map(avg).join(', ')}` : ''}.`, '');
    o.push('| streams | aggregate decode tok/s | × one stream | per-stream inter-token ms (median) |', '|---|---|---|---|');
    const one = median(m.decode.get(1)?.aggregateTokS ?? []);
    for (const [c, d] of [...m.decode].sort((a, b) => a[0] - b[0])) {
      const agg = median(d.aggregateTokS);
      o.push(`| ${c} | ${f(agg)} [${f(Math.min(...d.aggregateTokS))}–${f(Math.max(...d.aggregateTokS))}] | ${f(agg / one, 2)} | ${f(median(d.perStreamItlMsMedian))} |`);
    }
    const eight = m.decode.get(8);
    if (eight) {
      const x = median(eight.aggregateTokS) / one;
      o.push('', `8 streams ÷ 1 stream, same run: **${f(x, 2)}×** (goal ≥ 4×: ${x >= 4 ? 'met' : 'not met'}).`);
    }
    o.push('');
    o.push('| concurrent clients | requests | TTFT p50 ms | TTFT p99 ms | inter-token p50 / p99 ms | tok/s | req/s |', '|---|---|---|---|---|---|---|');
    for (const [c, cells] of [...m.ttft].sort((a, b) => a[0] - b[0])) {
      const all = cells.flatMap((x) => x.ttftMs);
      o.push(`| ${c} | ${all.length} | ${f(pct(all, 50), 0)} | ${f(pct(all, 99), 0)} | ${f(median(cells.map((x) => x.itlP50)), 0)} / ${f(median(cells.map((x) => x.itlP99)), 0)} | ${f(median(cells.map((x) => x.tokS)))} | ${f(median(cells.map((x) => x.reqS)), 2)} |`);
    }
    o.push('');
    o.push('| long prompt arrives while 4 streams decode | event-loop delay p50 / p99 / max ms | streams\' longest gap between tokens ms (median gap) | long prompt TTFT ms |', '|---|---|---|---|');
    for (const l of m.loop) {
      const how = l.chunk >= l.longPrompt ? `${l.longPrompt} tokens in one step (no chunking)` : `${l.longPrompt} tokens in chunks of ${l.chunk}`;
      o.push(`| ${how} | ${f(l.loopP50Ms, 2)} / ${f(l.loopP99Ms, 2)} / ${f(l.loopMaxMs, 1)} | ${f(l.maxGapMs, 0)} (${f(l.medianGapMs, 0)}) | ${f(l.ttftMs, 0)} |`);
    }
    o.push('');
  }
  o.push('Aggregate decode tok/s counts the tokens produced while every stream decodes (from the last stream\'s first token to the first stream\'s last), so prompt reading is excluded; [min–max] over reps and runs. TTFT = submit → first token, closed-loop clients each sending requests back to back (prompts of 64–192 tokens, 32 new tokens); p99 is nearest-rank over the requests (few samples: close to the max). Event-loop delay: perf_hooks.monitorEventLoopDelay (1 ms resolution) from the long prompt\'s submission to its first token.', '');
  return o.join('\n');
}

/** Two panels: aggregate decode tok/s by streams, TTFT p99 by clients; one line per thread count. */
export function renderSvg(runs: ServingRun[]): string {
  const merged = [...merge(runs)].sort((a, b) => a[0] - b[0]);
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
  const r0 = runs[0]!;
  const panel = (title: string, xlabel: string, points: (m: Merged) => [number, number][]): Panel => ({
    title,
    xlabel,
    series: merged.map(([t, m], i) => ({
      label: `${t} thread${t > 1 ? 's' : ''}`,
      color: colors[i % colors.length]!,
      points: points(m),
      tip: (x: number, y: number) => `${t} thread(s), ${x}: ${y.toFixed(1)}`,
    })),
  });
  return twoPanelSvg({
    title: `attnode GenerationEngine — continuous batching, ${r0.model.shape} shape (${r0.when.slice(0, 10)})`,
    subtitle: `${r0.cpu} · ${r0.logicalCpus} CPUs · ${r0.model.weights} weights${runs.some((r) => r.quick) ? ' · SMOKE RUN' : ''}`,
    panels: [
      panel('Aggregate decode tokens/s (higher is better)', 'concurrent streams', (m) => [...m.decode].map(([c, d]) => [c, median(d.aggregateTokS)])),
      panel('Time to first token p99, ms (lower is better)', 'concurrent clients', (m) => [...m.ttft].map(([c, cells]) => [c, pct(cells.flatMap((x) => x.ttftMs), 99)])),
    ],
  });
}

function main(): void {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { md: { type: 'string' }, svg: { type: 'string' }, command: { type: 'string' } } });
  if (positionals.length === 0) {
    console.error('usage: npx tsx bench/serving/report.ts results.json [more.json …] [--md out.md] [--svg out.svg]');
    process.exit(2);
  }
  const runs = positionals.map((p) => JSON.parse(fs.readFileSync(p, 'utf8')) as ServingRun);
  const md = renderMarkdown(runs, values.command ?? 'npm run bench:serving');
  if (values.md) fs.writeFileSync(values.md, md);
  else console.log(md);
  if (values.svg) fs.writeFileSync(values.svg, renderSvg(runs));
}

if (require.main === module) main();
