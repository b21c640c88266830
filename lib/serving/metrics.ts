/**
 * Server metrics: request counts by route and status, latency percentiles
 * over a sliding window, and the event-loop delay (perf_hooks) — the number
 * that says whether inference really stays off the JS thread.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { pooledBufferBytes } from '../workspace';

/** Latency percentiles in milliseconds over the window. */
export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** Event-loop delay in milliseconds since start or the last reset. */
export interface EventLoopSummary {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** What {@link Metrics.snapshot} returns (and `GET /metrics` serves, with the batcher's stats added). */
export interface MetricsSnapshot {
  uptimeS: number;
  /** `"<route> <status>"` → count since start, e.g. `"POST /v1/encode 200": 12`. */
  requests: Record<string, number>;
  /** Requests currently being handled. */
  inFlight: number;
  windowS: number;
  /** Over the window, all routes together and per route. */
  latencyMs: LatencySummary & { byRoute: Record<string, LatencySummary> };
  eventLoopDelayMs: EventLoopSummary;
  /**
   * Process memory now (MiB): resident set, V8 heap in use, memory outside the heap and its ArrayBuffer part, and
   * the idle buffers the batch buffer pool keeps for reuse (lib/workspace.ts).
   */
  memoryMiB: { rss: number; heapUsed: number; external: number; arrayBuffers: number; pooledBuffers: number };
}

/** Options of {@link Metrics}. */
export interface MetricsOptions {
  /** Latencies older than this leave the window (default 60 s). */
  windowMs?: number;
  /** At most this many latest samples are kept (default 20 000), bounding memory. */
  maxSamples?: number;
  /** Sampling interval of the event-loop delay monitor (default 5 ms). */
  loopResolutionMs?: number;
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** A ring buffer of (time, latency) samples. */
class Window {
  readonly times: Float64Array;
  readonly values: Float64Array;
  next = 0;
  size = 0;
  constructor(capacity: number) {
    this.times = new Float64Array(capacity);
    this.values = new Float64Array(capacity);
  }

  add(t: number, v: number): void {
    this.times[this.next] = t;
    this.values[this.next] = v;
    this.next = (this.next + 1) % this.times.length;
    this.size = Math.min(this.size + 1, this.times.length);
  }

  summary(since: number): LatencySummary {
    const vals: number[] = [];
    for (let i = 0; i < this.size; i++) if (this.times[i]! >= since) vals.push(this.values[i]!);
    const sorted = Float64Array.from(vals).sort();
    return {
      count: sorted.length,
      p50: round(percentile(sorted, 0.5)),
      p90: round(percentile(sorted, 0.9)),
      p99: round(percentile(sorted, 0.99)),
      max: round(sorted.length ? sorted[sorted.length - 1]! : 0),
    };
  }

  clear(): void {
    this.next = 0;
    this.size = 0;
  }
}

function memoryMiB(): MetricsSnapshot['memoryMiB'] {
  const m = process.memoryUsage();
  const mib = (b: number): number => round(b / 2 ** 20);
  return {
    rss: mib(m.rss), heapUsed: mib(m.heapUsed), external: mib(m.external), arrayBuffers: mib(m.arrayBuffers),
    pooledBuffers: mib(pooledBufferBytes()),
  };
}

/** Request counters, sliding-window latency and event-loop delay of one server. */
export class Metrics {
  readonly windowMs: number;
  readonly #maxSamples: number;
  readonly #started = performance.now();
  readonly #counts = new Map<string, number>();
  readonly #all: Window;
  readonly #byRoute = new Map<string, Window>();
  readonly #loop: IntervalHistogram;
  readonly #loopResolutionNs: number;
  #inFlight = 0;

  constructor(options: MetricsOptions = {}) {
    this.windowMs = options.windowMs ?? 60_000;
    this.#maxSamples = options.maxSamples ?? 20_000;
    this.#all = new Window(this.#maxSamples);
    const resolution = options.loopResolutionMs ?? 5;
    this.#loopResolutionNs = resolution * 1e6;
    this.#loop = monitorEventLoopDelay({ resolution });
    this.#loop.enable();
  }

  /** Marks a request as started; returns the function that records its end. */
  begin(): (route: string, status: number) => void {
    const t0 = performance.now();
    this.#inFlight++;
    let ended = false;
    return (route, status) => {
      if (ended) return;
      ended = true;
      this.#inFlight--;
      const now = performance.now();
      const key = `${route} ${status}`;
      this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
      this.#all.add(now, now - t0);
      let w = this.#byRoute.get(route);
      if (!w) this.#byRoute.set(route, (w = new Window(Math.min(this.#maxSamples, 5000))));
      w.add(now, now - t0);
    };
  }

  /** Current values. */
  snapshot(): MetricsSnapshot {
    const since = performance.now() - this.windowMs;
    const h = this.#loop;
    // The histogram records the time between two ticks of its timer: the interval itself plus the delay.
    const ms = (ns: number): number => round(Number.isFinite(ns) ? Math.max(0, ns - this.#loopResolutionNs) / 1e6 : 0);
    const byRoute: Record<string, LatencySummary> = {};
    for (const [route, w] of this.#byRoute) byRoute[route] = w.summary(since);
    return {
      uptimeS: round((performance.now() - this.#started) / 1000),
      requests: Object.fromEntries([...this.#counts].sort(([a], [b]) => a.localeCompare(b))),
      inFlight: this.#inFlight,
      windowS: this.windowMs / 1000,
      latencyMs: { ...this.#all.summary(since), byRoute },
      memoryMiB: memoryMiB(),
      eventLoopDelayMs: {
        p50: ms(h.percentile(50)),
        p90: ms(h.percentile(90)),
        p99: ms(h.percentile(99)),
        max: ms(h.max),
        mean: ms(h.mean),
      },
    };
  }

  /** Clears the latency windows and the event-loop histogram (counters keep counting): e.g. between load phases. */
  resetWindow(): void {
    this.#all.clear();
    for (const w of this.#byRoute.values()) w.clear();
    this.#loop.reset();
  }

  /** Stops the event-loop monitor. */
  stop(): void {
    this.#loop.disable();
  }
}

/**
 * The same numbers in the Prometheus text exposition format (version 0.0.4),
 * for scrapers: counters as `attnode_requests_total{route,status}`, window
 * percentiles as gauges with a `quantile` label (a summary without _sum,
 * since the window slides), event-loop delay and any extra gauges (e.g. the
 * batcher's stats) as `attnode_<name>`.
 */
export function renderPrometheus(s: MetricsSnapshot, gauges: Record<string, number> = {}): string {
  const lines: string[] = [];
  const esc = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
  const metric = (name: string, type: string, help: string, rows: [Record<string, string | number>, number][]): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of rows) {
      const l = Object.entries(labels).map(([k, x]) => `${k}="${esc(String(x))}"`).join(',');
      lines.push(`${name}${l ? `{${l}}` : ''} ${Number.isFinite(v) ? v : 0}`);
    }
  };
  metric('attnode_uptime_seconds', 'gauge', 'Seconds since the server started.', [[{}, s.uptimeS]]);
  metric('attnode_requests_total', 'counter', 'Requests answered, by route and HTTP status.',
    Object.entries(s.requests).map(([key, n]) => {
      const cut = key.lastIndexOf(' ');
      return [{ route: key.slice(0, cut), status: key.slice(cut + 1) }, n];
    }));
  metric('attnode_requests_in_flight', 'gauge', 'Requests being handled now.', [[{}, s.inFlight]]);
  const q = (x: LatencySummary, route: string): [Record<string, string | number>, number][] => [
    [{ route, quantile: '0.5' }, x.p50 / 1000], [{ route, quantile: '0.9' }, x.p90 / 1000], [{ route, quantile: '0.99' }, x.p99 / 1000],
  ];
  metric('attnode_request_duration_seconds', 'gauge', `Request latency quantiles over the last ${s.windowS} s ("all": every route).`,
    [...q(s.latencyMs, 'all'), ...Object.entries(s.latencyMs.byRoute).flatMap(([r, x]) => q(x, r))]);
  const el = s.eventLoopDelayMs;
  metric('attnode_event_loop_delay_seconds', 'gauge', 'Event-loop delay quantiles since start or the last reset.',
    [[{ quantile: '0.5' }, el.p50 / 1000], [{ quantile: '0.9' }, el.p90 / 1000], [{ quantile: '0.99' }, el.p99 / 1000], [{ quantile: '1' }, el.max / 1000]]);
  metric('attnode_process_memory_bytes', 'gauge', 'Process memory: resident set, V8 heap used, external, ArrayBuffers.',
    Object.entries(s.memoryMiB).map(([kind, mib]) => [{ kind }, Math.round(mib * 2 ** 20)]));
  for (const [name, v] of Object.entries(gauges)) {
    const snake = name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`).replace(/[^a-zA-Z0-9_]/g, '_');
    metric(`attnode_${snake}`, 'gauge', `${name}.`, [[{}, v]]);
  }
  return lines.join('\n') + '\n';
}
