/**
 * Rendering of the load test (bench/load/run.ts): a Markdown table and a
 * hand-written SVG chart (throughput and p99 latency against concurrency,
 * batching on vs off), no chart library.
 */

/** One concurrency level of one mode. Latencies in ms. */
export interface LoadLevel {
  batching: boolean;
  concurrency: number;
  requests: number;
  errors: number;
  /** Successful requests per second. */
  throughput: number;
  p50: number;
  p90: number;
  p99: number;
  meanBatchSize: number;
  /** The server's event-loop delay p99 / max during the level. */
  eventLoopP99: number;
  eventLoopMax: number;
  /** The server's resident set at the end of the level (MiB). */
  serverRssMiB: number;
}

/** A whole run, as written to bench/results/load-<date>.json. */
export interface LoadRun {
  date: string;
  host: { cpus: number; cpu: string; node: string; platform: string };
  config: { model: string; durationS: number; lengths: [number, number]; serverArgs: string[]; client: string };
  levels: LoadLevel[];
}

const LOOP_TARGET_MS = 10;

/** The Markdown report (bench/results/load-latest.md). */
export function renderLoadMarkdown(run: LoadRun): string {
  const lines = [
    '# Load test: attnode serve, POST /v1/encode',
    '',
    `${run.date} · ${run.host.cpu} (${run.host.cpus} cores) · Node ${run.host.node} · ${run.host.platform}`,
    '',
    `Model: ${run.config.model}. Requests: one sequence of ${run.config.lengths[0]}–${run.config.lengths[1]} random tokens, ` +
      `pooled output. ${run.config.durationS} s per level; client: ${run.config.client}, on the same machine.` +
      (run.config.serverArgs.length ? ` Server flags: \`${run.config.serverArgs.join(' ')}\`.` : ''),
    '',
    '| batching | concurrency | req/s | p50 ms | p90 ms | p99 ms | mean batch | event-loop p99 ms | server RSS MiB | errors |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const l of run.levels) {
    const loop = `${l.eventLoopP99.toFixed(2)}${l.eventLoopP99 >= LOOP_TARGET_MS ? ' ⚠' : ''}`;
    lines.push(
      `| ${l.batching ? 'on' : 'off'} | ${l.concurrency} | ${l.throughput.toFixed(1)} | ${l.p50.toFixed(1)} | ${l.p90.toFixed(1)} | ` +
        `${l.p99.toFixed(1)} | ${l.meanBatchSize.toFixed(2)} | ${loop} | ${l.serverRssMiB?.toFixed(0) ?? '—'} | ${l.errors} |`,
    );
  }
  const total = run.levels.reduce((n, l) => n + l.requests, 0);
  const rss = (on: boolean): string => {
    const r = run.levels.filter((l) => l.batching === on && l.serverRssMiB !== undefined).map((l) => l.serverRssMiB);
    return r.length ? `${r[0]!.toFixed(0)} → ${r[r.length - 1]!.toFixed(0)} MiB (batching ${on ? 'on' : 'off'})` : '';
  };
  const worst = Math.max(...run.levels.map((l) => l.eventLoopP99));
  lines.push(
    '',
    `Event-loop delay p99 target < ${LOOP_TARGET_MS} ms: met at ${run.levels.filter((l) => l.eventLoopP99 < LOOP_TARGET_MS).length} of ` +
      `${run.levels.length} levels (worst ${worst.toFixed(2)} ms). The client and the server share the machine's ${run.host.cpus} cores ` +
      `with the native thread pool, so the event loop also waits for CPU time, not only for its own work.`,
    '',
    `${total} requests in all. Server RSS from the first level to the last: ${[rss(true), rss(false)].filter(Boolean).join('; ')}.`,
    '',
    'Batching on: `--max-batch-size 16 --max-delay-ms 2 --buckets pow2` (the defaults); off: `--no-batching` (one request per forward pass). ' +
      'Either way the forward passes run on the native executor thread, so the event loop only parses, records and serialises.',
    '',
  );
  return lines.join('\n');
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A "nice" upper bound for an axis. */
function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** The SVG chart (bench/results/load-latest.svg): throughput and p99 latency panels, x = concurrency (log scale). */
export function renderLoadSvg(run: LoadRun): string {
  const W = 900;
  const H = 380;
  const panelW = 380;
  const panelH = 250;
  const top = 70;
  const lefts = [70, 520];
  const colors = { on: '#1f77b4', off: '#d62728' };
  const concs = [...new Set(run.levels.map((l) => l.concurrency))].sort((a, b) => a - b);
  const xOf = (c: number, left: number): number =>
    concs.length === 1 ? left + panelW / 2 : left + (Math.log2(c) - Math.log2(concs[0]!)) / (Math.log2(concs.at(-1)!) - Math.log2(concs[0]!)) * panelW;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">attnode serve — POST /v1/encode load test (${esc(run.date.slice(0, 10))})</text>`,
    `<text x="${W / 2}" y="42" text-anchor="middle" fill="#555">${esc(`${run.host.cpus} cores · ${run.config.durationS} s per level · ${run.config.lengths[0]}–${run.config.lengths[1]} tokens per request`)}</text>`,
  ];
  const panels: { title: string; value: (l: LoadLevel) => number; unit: string }[] = [
    { title: 'Throughput (req/s, higher is better)', value: (l) => l.throughput, unit: 'req/s' },
    { title: 'p99 latency (ms, lower is better)', value: (l) => l.p99, unit: 'ms' },
  ];
  panels.forEach((p, pi) => {
    const left = lefts[pi]!;
    const ymax = niceMax(Math.max(...run.levels.map(p.value)) * 1.05);
    const yOf = (v: number): number => top + panelH - (v / ymax) * panelH;
    out.push(`<text x="${left + panelW / 2}" y="${top - 10}" text-anchor="middle" font-weight="bold">${esc(p.title)}</text>`);
    out.push(`<rect x="${left}" y="${top}" width="${panelW}" height="${panelH}" fill="none" stroke="#999"/>`);
    for (let i = 0; i <= 5; i++) {
      const v = (ymax * i) / 5;
      const y = yOf(v);
      out.push(`<line x1="${left}" x2="${left + panelW}" y1="${y}" y2="${y}" stroke="#eee"/>`);
      out.push(`<text x="${left - 6}" y="${y + 4}" text-anchor="end" fill="#333">${Number(v.toPrecision(3))}</text>`);
    }
    for (const c of concs) {
      const x = xOf(c, left);
      out.push(`<line x1="${x}" x2="${x}" y1="${top + panelH}" y2="${top + panelH + 5}" stroke="#999"/>`);
      out.push(`<text x="${x}" y="${top + panelH + 18}" text-anchor="middle">${c}</text>`);
    }
    out.push(`<text x="${left + panelW / 2}" y="${top + panelH + 36}" text-anchor="middle" fill="#333">concurrent clients</text>`);
    for (const mode of ['on', 'off'] as const) {
      const pts = run.levels.filter((l) => l.batching === (mode === 'on')).sort((a, b) => a.concurrency - b.concurrency);
      if (!pts.length) continue;
      const d = pts.map((l, i) => `${i ? 'L' : 'M'}${xOf(l.concurrency, left).toFixed(1)},${yOf(p.value(l)).toFixed(1)}`).join(' ');
      out.push(`<path d="${d}" fill="none" stroke="${colors[mode]}" stroke-width="2"/>`);
      for (const l of pts) {
        out.push(`<circle cx="${xOf(l.concurrency, left).toFixed(1)}" cy="${yOf(p.value(l)).toFixed(1)}" r="3.5" fill="${colors[mode]}"><title>batching ${mode}, c=${l.concurrency}: ${p.value(l).toFixed(1)} ${p.unit}</title></circle>`);
      }
    }
  });
  const worst = Math.max(...run.levels.map((l) => l.eventLoopP99));
  const ly = H - 14;
  out.push(`<line x1="70" x2="95" y1="${ly - 4}" y2="${ly - 4}" stroke="${colors.on}" stroke-width="2"/><text x="100" y="${ly}">batching on</text>`);
  out.push(`<line x1="200" x2="225" y1="${ly - 4}" y2="${ly - 4}" stroke="${colors.off}" stroke-width="2"/><text x="230" y="${ly}">batching off</text>`);
  out.push(`<text x="${W - 20}" y="${ly}" text-anchor="end" fill="${worst < LOOP_TARGET_MS ? '#2a7d2a' : '#b00'}">server event-loop delay p99: worst ${worst.toFixed(2)} ms over all levels (target &lt; ${LOOP_TARGET_MS} ms)</text>`);
  out.push('</svg>', '');
  return out.join('\n');
}
