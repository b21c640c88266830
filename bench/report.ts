/**
 * Result types of a bench run and their renderings: the markdown table
 * (bench/results/latest.md) and a hand-written SVG bar chart of the ratios
 * attnode/peer (bench/results/latest.svg). No chart library: the chart is a
 * few rects and texts.
 */
import type { PeerName } from './peers/types';

export interface Stats {
  n: number;
  median: number;
  p10: number;
  p90: number;
  min: number;
}

export interface RssResult {
  threads: number;
  peakMiB: number;
  baseMiB: number;
  medianMs: number;
}

export interface CheckResult {
  /** Compared against: 'reference' (PyTorch's math-path output stored with the case) or 'ort'. */
  against: 'reference' | 'ort';
  maxAbsDiff: number;
  rel: number;
  ok: boolean;
}

export interface ThreadResult {
  threads: number;
  /** Medians etc. per peer, in ms. */
  peers: Partial<Record<PeerName, Stats>>;
  /** median(attnode) / median(peer): below 1 means attnode is faster. */
  ratios: Partial<Record<Exclude<PeerName, 'attnode' | 'bf16'>, number>>;
  /** median(attnode with bfloat16 weights and attention) / median(ort). */
  bf16VsOrt?: number;
}

export interface CaseResult {
  id: string;
  group: string;
  description: string;
  byThreads: ThreadResult[];
  checks: Partial<Record<PeerName, CheckResult[]>>;
  rss: Partial<Record<PeerName, RssResult>>;
  notes: string[];
  /** Peers that did not run, with the reason. */
  skipped: Partial<Record<PeerName, string>>;
}

export const RATIO_PEERS = ['ort', 'torch', 'ts'] as const;

function ms(s: Stats | undefined): string {
  if (!s) return '—';
  const d = s.median >= 100 ? 0 : s.median >= 10 ? 1 : 2;
  return `${s.median.toFixed(d)} <sub>${s.p10.toFixed(d)}–${s.p90.toFixed(d)}</sub>`;
}

function ratio(r: number | undefined): string {
  return r === undefined ? '—' : `${r.toFixed(2)}×`;
}

function rssCell(c: CaseResult): string {
  const parts = (['attnode', 'ort', 'torch'] as const)
    .filter((p) => c.rss[p])
    .map((p) => `${p} ${c.rss[p]!.peakMiB.toFixed(0)}`);
  return parts.length ? `${parts.join(', ')} MiB` : '';
}

function checkCell(c: CaseResult): string {
  const parts = (['attnode', 'bf16'] as const).flatMap((p) => (c.checks[p] ?? [])
    .map((x) => `${p === 'bf16' ? 'bf16 vs ' : ''}${x.ok ? '' : '✗ '}${x.against} ${x.rel.toExponential(1)}`));
  return parts.join(', ');
}

export interface RunMeta {
  date: string;
  mode: 'quick' | 'full';
  cpu: string;
  isa: string | null;
  env: Record<string, string | null>;
  versions: Record<string, string | null>;
  notes: string[];
}

/** The markdown report: one row per case and thread count. */
export function renderMarkdown(meta: RunMeta, cases: CaseResult[], gemm: { file: string; json: unknown }[]): string {
  const out: string[] = [];
  out.push(`# attnode benchmarks — ${meta.date} (${meta.mode})`, '');
  out.push(`CPU: ${meta.cpu}${meta.isa ? `, attnode kernel path ${meta.isa}` : ''}. `
    + `Versions: ${Object.entries(meta.versions).map(([k, v]) => `${k} ${v ?? 'n/a'}`).join(', ')}. `
    + `Env: ${Object.entries(meta.env).map(([k, v]) => `${k}=${v ?? '(unset)'}`).join(', ')}.`, '');
  out.push('Median ms (p10–p90 in small type) of interleaved runs; ratio = attnode median / peer median '
    + '(below 1: attnode faster). check = attnode\'s max abs diff relative to the output\'s scale. '
    + 'RSS = peak resident set of a process running only that peer. '
    + 'bf16 = attnode with bfloat16 weights and attention products (`useWeightPrecision(\'bfloat16\')` and '
    + '`useAttentionPrecision(\'bfloat16\')`, AVX512-BF16; float32 is the default and '
    + 'the columns before it); its check is its error against the float32 reference.', '');
  out.push('| case | threads | attnode ms | bf16 ms | ort ms | torch ms | TS ms | attnode/ort | bf16/ort | attnode/torch | attnode/TS | check | RSS |');
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|');
  for (const c of cases) {
    c.byThreads.forEach((t, i) => {
      const p = t.peers;
      out.push(`| ${i === 0 ? `${c.id}<br><sub>${c.description}</sub>` : ''} | ${t.threads} | ${ms(p.attnode)} | ${ms(p.bf16)} | `
        + `${ms(p.ort)} | ${ms(p.torch)} | ${ms(p.ts)} | ${ratio(t.ratios.ort)} | ${ratio(t.bf16VsOrt)} | ${ratio(t.ratios.torch)} | `
        + `${ratio(t.ratios.ts)} | ${i === 0 ? checkCell(c) : ''} | ${i === 0 ? rssCell(c) : ''} |`);
    });
  }
  const notes = [...meta.notes, ...cases.flatMap((c) => [
    ...c.notes.map((n) => `${c.id}: ${n}`),
    ...Object.entries(c.skipped).map(([p, why]) => `${c.id}: ${p} skipped: ${why}`),
  ])];
  if (notes.length) out.push('', '## Notes', '', ...notes.map((n) => `- ${n}`));
  out.push('', '## GEMM (bench/gemm/run.sh)', '');
  if (gemm.length === 0) out.push('No bench/results/gemm-*.json found (bench/gemm/run.sh absent or not run).');
  for (const g of gemm) out.push(`### ${g.file}`, '', ...renderGenericJson(g.json), '');
  return out.join('\n') + '\n';
}

/** The GEMM harness's JSON is another engineer's format: show arrays of flat records as tables, the rest as JSON. */
function renderGenericJson(json: unknown): string[] {
  const rows = Array.isArray(json)
    ? json
    : json && typeof json === 'object'
      ? Object.values(json as Record<string, unknown>).find((v) => Array.isArray(v) && v.length > 0 && typeof v[0] === 'object')
      : undefined;
  if (Array.isArray(rows) && rows.length > 0 && rows.every((r) => r && typeof r === 'object')) {
    const keys = [...new Set(rows.flatMap((r) => Object.keys(r as object)))]
      .filter((k) => rows.every((r) => typeof (r as Record<string, unknown>)[k] !== 'object'));
    const cell = (v: unknown): string => (typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(2) : String(v ?? ''));
    return [
      `| ${keys.join(' | ')} |`, `|${keys.map(() => '---').join('|')}|`,
      ...rows.slice(0, 60).map((r) => `| ${keys.map((k) => cell((r as Record<string, unknown>)[k])).join(' | ')} |`),
    ];
  }
  return ['```json', JSON.stringify(json, null, 2).slice(0, 4000), '```'];
}

const PEER_COLORS: Record<(typeof RATIO_PEERS)[number], string> = { ort: '#4e79a7', torch: '#e15759', ts: '#59a14f' };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * Horizontal bars of attnode/peer per (case, threads), on a log scale centred
 * on 1 (the parity line), so 2× slower and 2× faster are the same length.
 */
export function renderSvg(meta: RunMeta, cases: CaseResult[]): string {
  interface Bar { label: string; peer: (typeof RATIO_PEERS)[number]; r: number }
  const groups: { label: string; bars: Bar[] }[] = [];
  for (const c of cases) {
    for (const t of c.byThreads) {
      const bars = RATIO_PEERS.filter((p) => t.ratios[p] !== undefined).map((p) => ({ label: p, peer: p, r: t.ratios[p]! }));
      if (bars.length) groups.push({ label: `${c.id} · ${t.threads}T`, bars });
    }
  }
  const W = 900;
  const labelW = 230;
  const barH = 14;
  const gap = 10;
  const top = 60;
  const plotW = W - labelW - 80;
  const maxLog = Math.max(1, ...groups.flatMap((g) => g.bars.map((b) => Math.abs(Math.log2(b.r)))));
  const span = Math.ceil(maxLog);
  const x0 = labelW + plotW / 2;
  const xOf = (r: number): number => x0 + (Math.log2(r) / span) * (plotW / 2);
  const height = top + groups.reduce((h, g) => h + g.bars.length * barH + gap, 0) + 50;
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" `
    + 'font-family="sans-serif" font-size="11">');
  o.push(`<rect width="${W}" height="${height}" fill="white"/>`);
  o.push(`<text x="10" y="20" font-size="14" font-weight="bold">attnode time / peer time (log scale; left of 1 = attnode faster)</text>`);
  o.push(`<text x="10" y="38" fill="#555">${esc(`${meta.date} ${meta.mode} · ${meta.cpu}`)}</text>`);
  if (groups.length === 0) {
    o.push(`<text x="10" y="${top + 10}" fill="#b00">No ratios: attnode or every peer was missing in this run.</text>`);
  }
  for (let k = -span; k <= span; k++) {
    const x = xOf(2 ** k);
    o.push(`<line x1="${x}" y1="${top - 8}" x2="${x}" y2="${height - 40}" stroke="${k === 0 ? '#000' : '#ddd'}"/>`);
    o.push(`<text x="${x}" y="${height - 26}" text-anchor="middle" fill="#555">${k >= 0 ? 2 ** k : `1/${2 ** -k}`}</text>`);
  }
  let y = top;
  for (const g of groups) {
    o.push(`<text x="${labelW - 8}" y="${y + (g.bars.length * barH) / 2 + 4}" text-anchor="end">${esc(g.label)}</text>`);
    for (const b of g.bars) {
      const x = xOf(b.r);
      const [a, w] = x < x0 ? [x, x0 - x] : [x0, x - x0];
      o.push(`<rect x="${a.toFixed(1)}" y="${y + 1}" width="${Math.max(1, w).toFixed(1)}" height="${barH - 2}" fill="${PEER_COLORS[b.peer]}"/>`);
      const tx = x < x0 ? a - 4 : a + w + 4;
      o.push(`<text x="${tx.toFixed(1)}" y="${y + barH - 3}" text-anchor="${x < x0 ? 'end' : 'start'}">${b.label} ${b.r.toFixed(2)}×</text>`);
      y += barH;
    }
    y += gap;
  }
  let lx = 10;
  for (const p of RATIO_PEERS) {
    o.push(`<rect x="${lx}" y="${height - 14}" width="10" height="10" fill="${PEER_COLORS[p]}"/>`);
    o.push(`<text x="${lx + 14}" y="${height - 5}">vs ${p === 'ts' ? 'attnode TS backend' : p === 'ort' ? 'onnxruntime' : 'PyTorch'}</text>`);
    lx += 170;
  }
  o.push('</svg>');
  return o.join('\n') + '\n';
}
