/**
 * Rendering of the load test (bench/load/run.ts): a Markdown table and a
 * hand-written SVG chart (throughput and p99 latency against concurrency,
 * batching on vs off; bench/charts.ts), no chart library.
 */
import { twoPanelSvg, type Panel } from '../charts';

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

/** The SVG chart (bench/results/load-latest.svg): throughput and p99 latency panels, x = concurrency (log scale). */
export function renderLoadSvg(run: LoadRun): string {
  const colors = { on: '#1f77b4', off: '#d62728' };
  const panel = (title: string, value: (l: LoadLevel) => number, unit: string): Panel => ({
    title,
    xlabel: 'concurrent clients',
    series: (['on', 'off'] as const).map((mode) => ({
      label: `batching ${mode}`,
      color: colors[mode],
      points: run.levels.filter((l) => l.batching === (mode === 'on')).map((l): [number, number] => [l.concurrency, value(l)]),
      tip: (c: number, y: number) => `batching ${mode}, c=${c}: ${y.toFixed(1)} ${unit}`,
    })),
  });
  const worst = Math.max(...run.levels.map((l) => l.eventLoopP99));
  return twoPanelSvg({
    title: `attnode serve — POST /v1/encode load test (${run.date.slice(0, 10)})`,
    subtitle: `${run.host.cpus} cores · ${run.config.durationS} s per level · ${run.config.lengths[0]}–${run.config.lengths[1]} tokens per request`,
    panels: [panel('Throughput (req/s, higher is better)', (l) => l.throughput, 'req/s'), panel('p99 latency (ms, lower is better)', (l) => l.p99, 'ms')],
    footer: {
      text: `server event-loop delay p99: worst ${worst.toFixed(2)} ms over all levels (target < ${LOOP_TARGET_MS} ms)`,
      color: worst < LOOP_TARGET_MS ? '#2a7d2a' : '#b00',
    },
  });
}
