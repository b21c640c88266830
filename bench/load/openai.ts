/**
 * Load test of the OpenAI routes of `attnode serve --model <folder>`:
 *
 * - embeddings: closed-loop clients, each POSTing one sentence to /v1/embeddings (base64, as the
 *   official client sends) and the next when it is answered: throughput, latency p50/p99;
 * - streamed generation: closed-loop clients, each streaming a completion (`stream: true`,
 *   `stream_options.include_usage`) of `--max-tokens` tokens: aggregate tokens/s, time to first
 *   token and gap between streamed pieces (p50/p99).
 *
 * Both record the server's event-loop delay p99 during each level (GET /metrics, reset before it).
 *
 *   npx tsx bench/load/openai.ts --quick                  a smoke run on the test fixtures (tiny models)
 *   npx tsx bench/load/openai.ts --bench-models           a MiniLM-L6-shaped BERT and a SmolLM-135M-shaped Llama with
 *                                                         random weights (bench/load/make_models.ts builds them)
 *   npx tsx bench/load/openai.ts --embed-model DIR --gen-model DIR [--concurrency 1,2,4,8,16] [--duration 10]
 *
 * Writes bench/results/openai-load-<date>.json, openai-load-latest.md and openai-load-latest.svg
 * (not with --no-write). The client runs on the server's machine at nice 10 (as bench/load/run.ts); the
 * machine's load average before and after each scenario is recorded with the results.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { getJson, pct, ROOT, setClientNice, startServe, stopServer } from './harness';
import { makeSentences } from '../embeddings/sentences';
import { twoPanelSvg, type Series } from '../charts';
import { ensureBenchModels } from './make_models';

const RESULTS = path.join(ROOT, 'bench', 'results');
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'hf');

const HELP = `Usage: npx tsx bench/load/openai.ts [options]
  --quick                2 s per level, concurrency 1,4 (a smoke run)
  --bench-models         serve bench/models/minilm-l6-random and bench/models/smollm-135m-random-serve (real shapes,
                         random weights; built by bench/load/make_models.ts when missing)
  --duration S           seconds per level (default 8)
  --concurrency 1,4,16   concurrent clients per level
  --scenarios embeddings,stream
  --embed-model DIR      encoder folder for /v1/embeddings (default test/fixtures/hf/bert-st)
  --gen-model DIR        causal LM folder with a tokenizer for /v1/completions (default test/fixtures/hf/llama-chat)
  --max-tokens N         tokens per streamed completion (default 64; 32 with --quick)
  --words MIN-MAX        words per embedded sentence and per prompt (default 4-16; 2-5 with --quick, for the tiny fixtures)
  --server-args "..."    extra flags for attnode serve (e.g. "--threads 2")
  --client-nice N        nice value of the client while it drives (default 10)
  --no-write             print only
`;

interface EmbedLevel { concurrency: number; requests: number; errors: number; throughput: number; p50: number; p99: number; loopP99: number; loopMax: number; rssMiB: number }
interface StreamLevel {
  concurrency: number; streams: number; errors: number; tokens: number; tokensPerS: number;
  ttftP50: number; ttftP99: number; gapP50: number; gapP99: number; loopP99: number; loopMax: number; rssMiB: number;
}
interface Run {
  date: string;
  host: { cpus: number; cpu: string; node: string };
  /** The machine's 1/5/15-minute load average before and after each scenario (it is shared: context for every figure). */
  loadavg: { scenario: string; when: 'before' | 'after'; avg: number[] }[];
  argv: string[];
  config: { durationS: number; maxTokens: number; words: [number, number]; embedModel: string; genModel: string; serverArgs: string[]; clientNice: number };
  /** The generation server's engine, as its /healthz reports it (kind, maxRunning, kvCacheBytes, …). */
  genEngine: Record<string, unknown> | null;
  embeddings: EmbedLevel[];
  stream: StreamLevel[];
}

function opts() {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false }, duration: { type: 'string' }, concurrency: { type: 'string' },
      scenarios: { type: 'string', default: 'embeddings,stream' }, 'embed-model': { type: 'string' }, 'gen-model': { type: 'string' },
      'max-tokens': { type: 'string' }, words: { type: 'string' }, 'server-args': { type: 'string', default: '' },
      'client-nice': { type: 'string', default: '10' }, 'no-write': { type: 'boolean', default: false }, help: { type: 'boolean', default: false },
      'bench-models': { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    process.exit(0);
  }
  const scenarios = values.scenarios.split(',');
  if (!scenarios.every((s) => s === 'embeddings' || s === 'stream')) throw new Error('--scenarios takes embeddings,stream');
  if (values['bench-models'] && (values['embed-model'] || values['gen-model'])) throw new Error('--bench-models picks both folders; drop --embed-model/--gen-model');
  return {
    benchModels: values['bench-models'],
    quick: values.quick,
    durationS: Number(values.duration ?? (values.quick ? 2 : 8)),
    concurrency: (values.concurrency ?? (values.quick ? '1,4' : '1,2,4,8,16')).split(',').map(Number),
    scenarios,
    embedModel: values['embed-model'] ?? path.join(FIXTURES, 'bert-st'),
    genModel: values['gen-model'] ?? path.join(FIXTURES, 'llama-chat'),
    maxTokens: Number(values['max-tokens'] ?? (values.quick ? 32 : 64)),
    words: (values.words ?? (values.quick ? '2-5' : '4-16')).split('-').map(Number) as [number, number],
    serverArgs: values['server-args'].split(/\s+/).filter(Boolean),
    clientNice: Number(values['client-nice']),
    write: !values['no-write'],
  };
}

type Opts = ReturnType<typeof opts>;

/** One POST; resolves with the status once the whole answer is read. */
function post(agent: http.Agent, port: number, route: string, body: string, onData?: (chunk: string) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: route, agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        res.setEncoding('utf8');
        res.on('data', (c: string) => onData?.(c));
        res.on('end', () => resolve(res.statusCode!));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** `c` closed-loop workers for `seconds`; `one` runs one request and says whether it succeeded. */
async function closedLoop(c: number, seconds: number, one: (agent: http.Agent, i: number) => Promise<number>): Promise<{ errors: number; elapsed: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: c });
  let errors = 0;
  const statuses = new Map<string, number>();
  let next = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(Array.from({ length: c }, async () => {
    while (performance.now() < end) {
      let status: string;
      try {
        status = String(await one(agent, next++));
      } catch (e) {
        status = (e as Error).message;
      }
      if (status !== '200') {
        errors++;
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    }
  }));
  agent.destroy();
  if (statuses.size) console.error(`  errors by status: ${JSON.stringify(Object.fromEntries(statuses))}`);
  return { errors, elapsed: (performance.now() - t0) / 1000 };
}

/** Runs `level` at each concurrency against a server started with `args`, with /metrics read around each level. */
async function withServer<L>(o: Opts, args: string[], levels: (port: number, id: string, measure: (c: number, drive: () => Promise<Omit<L, 'loopP99' | 'loopMax' | 'rssMiB'>>) => Promise<L>) => Promise<void>): Promise<void> {
  const { child, port } = await startServe([...args, ...o.serverArgs]);
  const ctl = new http.Agent({ keepAlive: false });
  try {
    const id = ((await getJson(ctl, port, '/v1/models')) as { data: { id: string }[] }).data[0]!.id;
    await levels(port, id, async (_c, drive) => {
      await getJson(ctl, port, '/metrics?reset=1');
      setClientNice(o.clientNice);
      const r = await drive();
      setClientNice(0);
      const m = await getJson(ctl, port, '/metrics');
      return { ...r, loopP99: m.eventLoopDelayMs.p99, loopMax: m.eventLoopDelayMs.max, rssMiB: m.memoryMiB.rss } as L;
    });
  } finally {
    ctl.destroy();
    const code = await stopServer(child);
    if (code !== 0) console.error(`warning: the server exited with code ${code} after SIGTERM`);
  }
}

async function embeddings(o: Opts): Promise<EmbedLevel[]> {
  const sentences = makeSentences(512, 14, o.words[0], o.words[1]);
  const out: EmbedLevel[] = [];
  await withServer<EmbedLevel>(o, ['--model', o.embedModel, '--max-queue', '4096'], async (port, id, measure) => {
    const bodies = sentences.map((s) => JSON.stringify({ model: id, input: s, encoding_format: 'base64' }));
    const run = async (c: number, seconds: number) => {
      const lat: number[] = [];
      const r = await closedLoop(c, seconds, async (agent, i) => {
        const t = performance.now();
        const status = await post(agent, port, '/v1/embeddings', bodies[i % bodies.length]!);
        if (status === 200) lat.push(performance.now() - t);
        return status;
      });
      lat.sort((a, b) => a - b);
      return { concurrency: c, requests: lat.length, errors: r.errors, throughput: lat.length / r.elapsed, p50: pct(lat, 0.5), p99: pct(lat, 0.99) };
    };
    await run(2, 1); // warm-up
    for (const c of o.concurrency) {
      const l = await measure(c, () => run(c, o.durationS));
      out.push(l);
      console.log(`embeddings c=${String(c).padStart(3)}  ${l.throughput.toFixed(1).padStart(7)} req/s  p50 ${l.p50.toFixed(1)} ms  p99 ${l.p99.toFixed(1)} ms  loop p99 ${l.loopP99.toFixed(2)} ms  errors ${l.errors}`);
    }
  });
  return out;
}

let genEngine: Record<string, unknown> | null = null;

async function streams(o: Opts): Promise<StreamLevel[]> {
  const prompts = makeSentences(64, 3, o.words[0], o.words[1]);
  const out: StreamLevel[] = [];
  await withServer<StreamLevel>(o, ['--model', o.genModel, '--max-queued', '4096'], async (port, id, measure) => {
    const ctl = new http.Agent({ keepAlive: false });
    genEngine = ((await getJson(ctl, port, '/healthz')) as { engine?: Record<string, unknown> }).engine ?? null;
    ctl.destroy();
    console.log(`generation engine: ${JSON.stringify(genEngine)}`);
    const run = async (c: number, seconds: number) => {
      const ttft: number[] = [];
      const gaps: number[] = [];
      let tokens = 0;
      let streamsDone = 0;
      const r = await closedLoop(c, seconds, async (agent, i) => {
        const body = JSON.stringify({
          model: id, prompt: prompts[i % prompts.length], max_tokens: o.maxTokens, temperature: 0, stream: true,
          stream_options: { include_usage: true },
        });
        const t0 = performance.now();
        let last = 0;
        let buf = '';
        let usage = 0;
        const status = await post(agent, port, '/v1/completions', body, (chunk) => {
          buf += chunk;
          let at: number;
          while ((at = buf.indexOf('\n\n')) !== -1) {
            const line = buf.slice(0, at);
            buf = buf.slice(at + 2);
            if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
            const ev = JSON.parse(line.slice(6)) as { choices: { text: string }[]; usage?: { completion_tokens: number } | null };
            if (ev.usage) usage = ev.usage.completion_tokens;
            if (!ev.choices[0]?.text) continue;
            const now = performance.now();
            if (last === 0) ttft.push(now - t0);
            else gaps.push(now - last);
            last = now;
          }
        });
        if (status === 200) {
          tokens += usage;
          streamsDone++;
        }
        return status;
      });
      ttft.sort((a, b) => a - b);
      gaps.sort((a, b) => a - b);
      return {
        concurrency: c, streams: streamsDone, errors: r.errors, tokens, tokensPerS: tokens / r.elapsed,
        ttftP50: pct(ttft, 0.5), ttftP99: pct(ttft, 0.99), gapP50: pct(gaps, 0.5), gapP99: pct(gaps, 0.99),
      };
    };
    await run(1, 1); // warm-up
    for (const c of o.concurrency) {
      const l = await measure(c, () => run(c, o.durationS));
      out.push(l);
      console.log(`stream     c=${String(c).padStart(3)}  ${l.tokensPerS.toFixed(1).padStart(7)} tok/s  TTFT p50 ${l.ttftP50.toFixed(1)} p99 ${l.ttftP99.toFixed(1)} ms  gap p99 ${l.gapP99.toFixed(1)} ms  loop p99 ${l.loopP99.toFixed(2)} ms  errors ${l.errors}`);
    }
  });
  return out;
}

function markdown(run: Run): string {
  const f = (x: number, d = 1): string => x.toFixed(d);
  const quote = (a: string): string => (/^[\w./,:=-]+$/.test(a) ? a : `"${a}"`);
  const lines = [
    '# Load test: attnode serve, OpenAI routes', '',
    `${run.date} · ${run.host.cpus} cores (${run.host.cpu}) · Node ${run.host.node} · ${run.config.durationS} s per level · client at nice ${run.config.clientNice} on the same machine`,
    `Load average (1/5/15 min; the machine is shared): ${run.loadavg.map((l) => `${l.when} ${l.scenario} ${l.avg.map((x) => x.toFixed(2)).join('/')}`).join(' · ')}`,
    `Command: \`npm run bench:load:openai${run.argv.length ? ` -- ${run.argv.map(quote).join(' ')}` : ''}\` (embeddings: ${run.config.embedModel}, generation: ${run.config.genModel}, ${run.config.maxTokens} tokens per stream, prompts of ${run.config.words.join('-')} words${run.config.serverArgs.length ? `, server flags ${run.config.serverArgs.join(' ')}` : ''})`, '',
  ];
  if (run.embeddings.length) {
    lines.push(`## POST /v1/embeddings (${run.config.embedModel}, one sentence per request, base64)`, '',
      '| clients | req/s | p50 ms | p99 ms | errors | event-loop p99 / max ms | RSS MiB |', '|---:|---:|---:|---:|---:|---:|---:|',
      ...run.embeddings.map((l) => `| ${l.concurrency} | ${f(l.throughput)} | ${f(l.p50)} | ${f(l.p99)} | ${l.errors} | ${f(l.loopP99, 2)} / ${f(l.loopMax, 2)} | ${f(l.rssMiB, 0)} |`), '');
  }
  if (run.stream.length) {
    const e = run.genEngine;
    const engine = e?.kind === 'continuous'
      ? `continuous batching: up to ${String(e.maxRunning)} streams per step, KV cache ${(Number(e.kvCacheBytes) / 2 ** 20).toFixed(0)} MiB, prompt chunks of ${String(e.prefillChunk)} tokens`
      : e ? 'one request at a time' : 'engine not reported';
    lines.push(`## POST /v1/completions, stream: true (${run.config.genModel}, ${run.config.maxTokens} tokens, greedy; ${engine})`, '',
      '| clients | streams | tokens/s | TTFT p50 / p99 ms | gap p50 / p99 ms | errors | event-loop p99 / max ms | RSS MiB |', '|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...run.stream.map((l) => `| ${l.concurrency} | ${l.streams} | ${f(l.tokensPerS)} | ${f(l.ttftP50)} / ${f(l.ttftP99)} | ${f(l.gapP50)} / ${f(l.gapP99)} | ${l.errors} | ${f(l.loopP99, 2)} / ${f(l.loopMax, 2)} | ${f(l.rssMiB, 0)} |`), '');
  }
  return lines.join('\n');
}

/** Two panels: embeddings req/s and streamed tokens/s against clients (bench/charts.ts, no chart library). */
function svg(run: Run): string {
  const series = (label: string, pts: [number, number][], unit: string): Series[] =>
    pts.length ? [{ label, color: '#1f77b4', points: pts, tip: (c, v) => `c=${c}: ${v.toFixed(1)} ${unit}` }] : [];
  return twoPanelSvg({
    title: `attnode serve — OpenAI routes load test (${run.date.slice(0, 10)})`,
    subtitle: `${run.host.cpus} cores (${run.host.cpu}), load avg ${run.loadavg[0]?.avg.map((x) => x.toFixed(1)).join('/') ?? '?'} at the start · ${run.config.durationS} s per level · ${run.config.maxTokens} tokens per stream`,
    panels: [
      { title: 'POST /v1/embeddings: req/s', xlabel: 'concurrent clients', series: series('embeddings', run.embeddings.map((l) => [l.concurrency, l.throughput]), 'req/s') },
      { title: 'streamed completions: tokens/s', xlabel: 'concurrent clients', series: series('streams', run.stream.map((l) => [l.concurrency, l.tokensPerS]), 'tok/s') },
    ],
  });
}

async function main(): Promise<void> {
  const o = opts();
  if (o.benchModels) Object.assign(o, await ensureBenchModels());
  const loadavg: Run['loadavg'] = [];
  const scenario = async <T>(name: string, fn: () => Promise<T[]>): Promise<T[]> => {
    if (!(o.scenarios as string[]).includes(name)) return [];
    loadavg.push({ scenario: name, when: 'before', avg: os.loadavg() });
    const out = await fn();
    loadavg.push({ scenario: name, when: 'after', avg: os.loadavg() });
    return out;
  };
  const date = new Date().toISOString();
  const embeddingLevels = await scenario('embeddings', () => embeddings(o));
  const streamLevels = await scenario('stream', () => streams(o));
  const run: Run = {
    date,
    host: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? 'unknown', node: process.version },
    loadavg,
    argv: process.argv.slice(2),
    config: {
      durationS: o.durationS, maxTokens: o.maxTokens, words: o.words, embedModel: path.relative(ROOT, o.embedModel), genModel: path.relative(ROOT, o.genModel),
      serverArgs: o.serverArgs, clientNice: o.clientNice,
    },
    genEngine,
    embeddings: embeddingLevels,
    stream: streamLevels,
  };
  const md = markdown(run);
  console.log(`\n${md}`);
  if (o.write) {
    const stamp = run.date.slice(0, 19).replace(/:/g, '-');
    const suffix = o.quick ? '-quick' : '';
    fs.mkdirSync(RESULTS, { recursive: true });
    fs.writeFileSync(path.join(RESULTS, `openai-load-${stamp}${suffix}.json`), `${JSON.stringify(run, null, 2)}\n`);
    fs.writeFileSync(path.join(RESULTS, `openai-load-latest${suffix}.md`), md);
    fs.writeFileSync(path.join(RESULTS, `openai-load-latest${suffix}.svg`), svg(run));
    console.log(`wrote bench/results/openai-load-${stamp}${suffix}.json, openai-load-latest${suffix}.md, .svg`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
