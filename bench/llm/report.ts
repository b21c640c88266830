/**
 * Summarizes bench/llm JSON rounds (attnode run.ts + peer_llamacpp.ts) into
 * bench/results/llm-<cpu-slug>.md and .json: per engine × threads × precision,
 * the median over every rep of every round with [min–max].
 *
 *   npx tsx bench/llm/report.ts file.json ... [--out bench/results/llm-<slug>]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execSync } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ options: { out: { type: 'string' } }, allowPositionals: true });
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const fmt = (xs: number[], d = 1): string => xs.length ? `${median(xs).toFixed(d)} [${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)}]` : '–';

const cpu = (execSync('lscpu').toString().match(/Model name:\s*(.+)/)?.[1] ?? os.cpus()[0]!.model).trim();
const slug = cpu.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') + `-${os.cpus().length}c`;
const out = values.out ?? path.join(__dirname, '..', 'results', `llm-${slug}`);

type Any = Record<string, any>;
const runs: Any[] = positionals.map((f) => ({ file: f, ...JSON.parse(fs.readFileSync(f, 'utf8')) }));
// llama.cpp's Q8_0 file is compared with attnode's int8 weights (the same fp32 source, quantized per block of 32
// there and per output channel here): one row group.
const norm = (p: string): string => (p === 'f32' ? 'float32' : p === 'bf16' ? 'bfloat16' : p === 'q8_0' ? 'int8' : p);
/** The weight format a row reads: its weight bytes per token (run.ts's weightBytesPerToken) and its label. */
const format = (engine: string, precision: string): { bytes: string; label: string } =>
  precision === 'int8' && engine === 'node-llama-cpp' ? { bytes: 'q8_0', label: 'int8 (Q8_0)' } : { bytes: precision, label: precision };
const groups = new Map<string, Any>();
const bw: Record<string, number[]> = {};
let wb: Any | null = null;
const js: number[] = [];
const tokens: Record<string, number[]> = {};
for (const r of runs) {
  if (r.engine === 'attnode') {
    wb = r.weightBytesPerToken;
    for (const [t, b] of Object.entries(r.bandwidth as Any)) (bw[t] ??= []).push(...(b as Any).runsGBs);
    if (r.js) js.push(r.js.decodeTokS);
  }
  for (const c of r.cells) {
    const key = `${r.engine}|${c.threads}|${norm(c.precision)}`;
    const g = groups.get(key) ?? { engine: r.engine, threads: c.threads, precision: norm(c.precision), prefill: [], decode: [], generate: [], decodeCpu: [] };
    g.prefill.push(...c.prefillTokS);
    g.decode.push(...c.decodeTokS);
    if (c.generateTokS) g.generate.push(...c.generateTokS);
    if (c.decodeCpuMsPerTok) g.decodeCpu.push(...c.decodeCpuMsPerTok);
    groups.set(key, g);
    if (c.tokens?.length && !tokens[key]) tokens[key] = c.tokens;
  }
}
const rows = [...groups.values()].sort((a, b) => a.threads - b.threads || a.precision.localeCompare(b.precision) || a.engine.localeCompare(b.engine));
const bwBest = (t: number): number => Math.max(...(bw[String(t)] ?? [NaN]));
const lines: string[] = [];
lines.push(`| engine | threads | weights | prefill 512 tok/s | decode tok/s | decode % of BW limit | decode CPU ms/token | generate 512+128 (new tok/s, wall) |`);
lines.push(`|---|---|---|---|---|---|---|---|`);
for (const g of rows) {
  const f = format(g.engine, g.precision);
  const limit = wb?.[f.bytes] ? bwBest(g.threads) * 1e9 / wb[f.bytes] : NaN; // tok/s at full bandwidth
  const pct = g.decode.map((d: number) => (100 * d) / limit);
  lines.push(`| ${g.engine} | ${g.threads} | ${f.label} | ${fmt(g.prefill)} | ${fmt(g.decode, 2)} | ${fmt(pct, 0)}% (limit ${limit.toFixed(1)} tok/s) | ${fmt(g.decodeCpu, 2)} | ${g.generate.length ? fmt(g.generate, 2) : '–'} |`);
}
const ratio: string[] = [];
ratio.push(`| threads | weights | prefill attnode / llama.cpp | decode attnode / llama.cpp | decode by CPU time per token: llama.cpp / attnode |`);
ratio.push(`|---|---|---|---|---|`);
for (const g of rows.filter((x) => x.engine === 'attnode')) {
  const p = groups.get(`node-llama-cpp|${g.threads}|${g.precision}`);
  if (!p) continue;
  ratio.push(`| ${g.threads} | ${g.precision} | ${(median(g.prefill) / median(p.prefill)).toFixed(2)} | ${(median(g.decode) / median(p.decode)).toFixed(2)} | ${g.decodeCpu.length && p.decodeCpu.length ? (median(p.decodeCpu) / median(g.decodeCpu)).toFixed(2) : '–'} |`);
}
/** ' (= float32)' or where the first 16 tokens part from the same engine's float32 ones. */
function agreement(key: string, v: number[]): string {
  const [engine, threads, precision] = key.split('|');
  if (precision === 'float32') return '';
  const ref = tokens[`${engine}|${threads}|float32`];
  if (!ref) return '';
  const n = Math.min(ref.length, v.length);
  for (let i = 0; i < n; i++) if (ref[i] !== v[i]) return ` (differs from float32 from token ${i + 1})`;
  return ` (= float32 over ${n})`;
}
const summary = {
  cpu, slug, files: runs.map((r) => r.file), weightBytesPerToken: wb,
  bandwidthGBs: Object.fromEntries(Object.entries(bw).map(([t, xs]) => [t, { best: Math.max(...xs), median: median(xs), min: Math.min(...xs) }])),
  rows: rows.map((g) => ({ ...g, prefillMedian: median(g.prefill), decodeMedian: median(g.decode) })),
  jsDecodeTokS: js, tokens, loadavg: runs.map((r) => r.loadavgAtEnd),
};
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out + '.json', JSON.stringify(summary, null, 1));
const md = [
  ...lines, '', ...ratio, '',
  `Bandwidth (native ops.add(a, 0, { out: b }), 256 MiB in + 256 MiB out, read+written bytes / s): ` +
    Object.entries(summary.bandwidthGBs).map(([t, b]) => `${t} thread(s): best ${b.best.toFixed(1)}, median ${b.median.toFixed(1)}, min ${b.min.toFixed(1)} GB/s`).join('; '),
  wb ? `Weight bytes per decoded token: ${Object.entries(wb as Record<string, number>).map(([k, v]) => `${k === 'int8' ? 'int8 (with per-channel scale and compensation)' : k === 'q8_0' ? 'Q8_0' : k} ${(v / 1e6).toFixed(1)} MB`).join(', ')}.` : '',
  js.length ? `JS backend decode (float32, 3 steps after an 8-token prompt): ${js.map((x) => x.toFixed(2)).join(', ')} tok/s.` : '',
  `Load average at the end of each run: ${summary.loadavg.map((l: number[]) => l?.[0]?.toFixed(2)).join(', ')}.`,
  `First greedy tokens (each against the same engine's float32 tokens at the same thread count): ` +
    Object.entries(tokens).map(([k, v]) => `${k}: ${v.slice(0, 8).join(',')}${agreement(k, v)}`).join('; '),
].join('\n');
fs.writeFileSync(out + '.tables.md', md + '\n'); // pasted into the hand-written <out>.md
console.log(md);
console.log(`\nwrote ${out}.json and ${out}.tables.md`);
