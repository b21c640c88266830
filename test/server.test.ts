/**
 * The inference HTTP server on 127.0.0.1 port 0: every route, the 4xx cases,
 * 503 with Retry-After when the batch queue is full, and graceful shutdown
 * (in-flight requests finish, new connections are refused).
 */
import * as http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceServer } from '../lib/serving/http';
import { EncoderModel } from '../lib/serving/encoder-model';
import { manualSeed } from '../lib/nn/init';
import { tensor } from '../lib/tensor';

function makeModel(): EncoderModel {
  manualSeed(7);
  return new EncoderModel({ vocabSize: 100, dModel: 32, nhead: 4, numLayers: 2, dimFeedforward: 64, maxLen: 32 }).eval();
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** One request on a fresh connection (no keep-alive pool, so shutdown tests see exactly their sockets). */
function request(port: number, method: string, path: string, body?: string | object, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const req = http.request(
      { host: '127.0.0.1', port, method, path, agent: false, headers: { ...(data ? { 'content-type': 'application/json' } : {}), ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // not JSON (HEAD)
          }
          resolve({ status: res.statusCode!, headers: res.headers, body: parsed });
        });
      },
    );
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

describe('InferenceServer', () => {
  const model = makeModel();
  let srv: InferenceServer;
  let port: number;

  beforeAll(async () => {
    srv = new InferenceServer({
      encoder: model,
      batcher: { maxBatchSize: 8, maxDelayMs: 20, maxQueue: 64, idleDispatch: 'wait' },
      maxBodyBytes: 4096,
      maxInputsPerRequest: 4,
      info: { model: 'test' },
    });
    port = (await srv.listen(0, '127.0.0.1')).port;
  });
  afterAll(async () => {
    await srv.shutdown();
  });

  it('GET /healthz', async () => {
    const r = await request(port, 'GET', '/healthz');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ status: 'ok', model: 'test' });
    expect((await request(port, 'HEAD', '/healthz')).status).toBe(200);
  });

  it('POST /v1/encode returns the pooled vector and/or the token embeddings of exactly that sequence', async () => {
    const tokens = [5, 17, 42, 99, 0];
    const want = model.forward(tensor(Int32Array.from(tokens), [1, 5], 'int32'), null).data;
    const r = await request(port, 'POST', '/v1/encode', { tokens, output: 'both' });
    expect(r.status).toBe(200);
    expect(r.body.length).toBe(5);
    expect(r.body.dim).toBe(32);
    const flat = (r.body.embeddings as number[][]).flat();
    flat.forEach((v, i) => expect(Math.abs(v - want[i]!)).toBeLessThan(1e-6));
    for (let j = 0; j < 32; j++) {
      let m = 0;
      for (let p = 0; p < 5; p++) m += want[p * 32 + j]!;
      expect(r.body.pooled[j]).toBeCloseTo(m / 5, 5);
    }
    const pooledOnly = await request(port, 'POST', '/v1/encode', { tokens });
    expect(pooledOnly.body.embeddings).toBeUndefined();
    expect(pooledOnly.body.pooled).toHaveLength(32);
  });

  it('concurrent requests are batched, and the batch form answers each sequence', async () => {
    const before = srv.batcher.stats().batches;
    const rs = await Promise.all([3, 9, 1, 14, 6, 2].map((l, i) =>
      request(port, 'POST', '/v1/encode', { tokens: Array.from({ length: l }, (_, j) => (i * 11 + j) % 100) })));
    rs.forEach((r) => expect(r.status).toBe(200));
    expect(srv.batcher.stats().batches - before).toBeLessThan(6);
    const b = await request(port, 'POST', '/v1/encode', { inputs: [[1, 2], [3, 4, 5]], output: 'tokens' });
    expect(b.status).toBe(200);
    expect(b.body.results.map((x: { length: number }) => x.length)).toEqual([2, 3]);
  });

  it('answers invalid requests with clear 4xx JSON errors', async () => {
    const cases: [string, string, string | object | undefined, number, string, RegExp?][] = [
      ['POST', '/v1/encode', '{"tokens": [1, 2', 400, 'bad_json'],
      ['POST', '/v1/encode', '[1, 2]', 400, 'invalid_request', /JSON object/],
      ['POST', '/v1/encode', { tokens: 'abc' }, 400, 'invalid_request', /array of token ids/],
      ['POST', '/v1/encode', { tokens: [1, 2.5] }, 400, 'invalid_request', /tokens\[1\]/],
      ['POST', '/v1/encode', { tokens: [1, 100] }, 400, 'token_out_of_range', /\[0, 100\)/],
      ['POST', '/v1/encode', { tokens: [1, -1] }, 400, 'token_out_of_range'],
      ['POST', '/v1/encode', { tokens: [] }, 400, 'invalid_request', /empty/],
      ['POST', '/v1/encode', { tokens: new Array(33).fill(1) }, 400, 'too_long', /at most 32/],
      ['POST', '/v1/encode', { inputs: [[1], [2], [3], [4], [5]] }, 400, 'too_many_inputs'],
      ['POST', '/v1/encode', { inputs: [[1], [200]] }, 400, 'token_out_of_range', /inputs\[1\]\[0\]/],
      ['POST', '/v1/encode', { tokens: [1], inputs: [[1]] }, 400, 'invalid_request', /either/],
      ['POST', '/v1/encode', { tokens: [1], output: 'all' }, 400, 'invalid_request', /output/],
      ['POST', '/v1/encode', { tokens: [1], extra: 1 }, 400, 'invalid_request', /unknown field 'extra'/],
      ['POST', '/v1/encode', { tokens: new Array(3000).fill(1) }, 413, 'payload_too_large'],
      ['GET', '/v1/encode', undefined, 405, 'method_not_allowed'],
      ['GET', '/nope', undefined, 404, 'not_found'],
      ['POST', '/v1/generate', { tokens: [1] }, 501, 'not_implemented'],
    ];
    for (const [method, path, body, status, code, message] of cases) {
      const r = await request(port, method, path, body);
      expect(r.status, `${method} ${path} ${JSON.stringify(body)?.slice(0, 40)}`).toBe(status);
      expect(r.body.error.code).toBe(code);
      if (message) expect(r.body.error.message).toMatch(message);
    }
    expect((await request(port, 'GET', '/v1/encode')).headers.allow).toBe('POST');
  });

  it('GET /metrics reports counts by route and status, latency percentiles, batcher stats and event-loop delay', async () => {
    const r = await request(port, 'GET', '/metrics');
    expect(r.status).toBe(200);
    expect(r.body.requests['POST /v1/encode 200']).toBeGreaterThanOrEqual(8);
    expect(r.body.requests['POST /v1/encode 400']).toBeGreaterThan(0);
    expect(r.body.requests['other 404']).toBe(1);
    expect(r.body.latencyMs.count).toBeGreaterThan(0);
    expect(r.body.latencyMs.p99).toBeGreaterThanOrEqual(r.body.latencyMs.p50);
    expect(r.body.latencyMs.byRoute['POST /v1/encode'].count).toBeGreaterThan(0);
    expect(r.body.batcher).toMatchObject({ queueDepth: 0 });
    expect(r.body.batcher.meanBatchSize).toBeGreaterThan(1);
    // The server runs in this process: block its event loop for a known time, and the monitor must see it.
    const blockMs = 120;
    const until = performance.now() + blockMs;
    while (performance.now() < until) {
      // busy: no timer can fire
    }
    const el = (await request(port, 'GET', '/metrics')).body.eventLoopDelayMs;
    for (const q of ['p50', 'p90', 'p99', 'max', 'mean']) expect(Number.isFinite(el[q]), q).toBe(true);
    expect(el.p50).toBeGreaterThanOrEqual(0);
    expect(el.p90).toBeGreaterThanOrEqual(el.p50);
    expect(el.p99).toBeGreaterThanOrEqual(el.p90);
    expect(el.max).toBeGreaterThanOrEqual(el.p99);
    // The blocked stretch is one delay of about blockMs (less the sampling interval); none can exceed the uptime.
    expect(el.max).toBeGreaterThanOrEqual(blockMs * 0.75);
    expect(el.max).toBeLessThanOrEqual(r.body.uptimeS * 1000 + blockMs + 1000);
    // Apart from that stretch the loop is idle between requests: the median delay is far below it.
    expect(el.p50).toBeLessThan(blockMs / 2);
    expect(r.body.memoryMiB.rss).toBeGreaterThan(r.body.memoryMiB.heapUsed);
    await request(port, 'GET', '/metrics?reset=1');
    const after = await request(port, 'GET', '/metrics');
    expect(after.body.latencyMs.count).toBe(1); // only the reset request itself
  });

  it('GET /metrics speaks Prometheus text format to a scraper (Accept) or with ?format=prometheus', async () => {
    const scraped = await request(port, 'GET', '/metrics', undefined, { accept: 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5' });
    expect(scraped.status).toBe(200);
    expect(scraped.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = scraped.body as string;
    expect(text).toMatch(/^# TYPE attnode_requests_total counter$/m);
    const ok = /^attnode_requests_total\{route="POST \/v1\/encode",status="200"\} (\d+)$/m.exec(text);
    expect(Number(ok?.[1])).toBeGreaterThanOrEqual(8);
    expect(text).toMatch(/^attnode_request_duration_seconds\{route="all",quantile="0\.99"\} [0-9.e-]+$/m);
    expect(text).toMatch(/^attnode_event_loop_delay_seconds\{quantile="0\.99"\} [0-9.e-]+$/m);
    expect(text).toMatch(/^attnode_batcher_mean_batch_size [0-9.]+$/m);
    expect(text).toMatch(/^attnode_draining 0$/m);
    expect(text).toMatch(/^attnode_process_memory_bytes\{kind="rss"\} \d+$/m);
    // Every sample line is `name{labels} value` or `name value`.
    for (const line of text.trimEnd().split('\n')) expect(line).toMatch(/^(# (HELP|TYPE) .+|[a-z_]+(\{[^}]*\})? -?[0-9.e+-]+)$/);
    const byQuery = await request(port, 'GET', '/metrics?format=prometheus');
    expect(byQuery.body).toMatch(/^# HELP attnode_uptime_seconds/m);
    // JSON stays the default, also for a browser's Accept header.
    const browser = await request(port, 'GET', '/metrics', undefined, { accept: 'text/html,application/json;q=0.9,*/*;q=0.8' });
    expect(browser.body.requests).toBeTypeOf('object');
  });
});

describe('InferenceServer overload and shutdown', () => {
  it('answers 503 with Retry-After when the batch queue is full', async () => {
    const srv = new InferenceServer({ encoder: makeModel(), batcher: { maxBatchSize: 8, maxDelayMs: 300, maxQueue: 2, idleDispatch: 'wait' }, retryAfterS: 3 });
    const { port } = await srv.listen(0);
    const held = [request(port, 'POST', '/v1/encode', { tokens: [1] }), request(port, 'POST', '/v1/encode', { tokens: [2, 3] })];
    while (srv.batcher.queueDepth < 2) await new Promise((r) => setTimeout(r, 2));
    const over = await request(port, 'POST', '/v1/encode', { tokens: [4] });
    expect(over.status).toBe(503);
    expect(over.headers['retry-after']).toBe('3');
    expect(over.body.error.code).toBe('overloaded');
    const batchOver = await request(port, 'POST', '/v1/encode', { inputs: [[1]] });
    expect(batchOver.status).toBe(503);
    expect((await Promise.all(held)).map((r) => r.status)).toEqual([200, 200]);
    const m = await request(port, 'GET', '/metrics');
    expect(m.body.requests['POST /v1/encode 503']).toBe(2);
    expect(m.body.batcher.rejectedQueueFull).toBe(2);
    await srv.shutdown();
  });

  it('graceful shutdown: in-flight requests finish, then new connections are refused', async () => {
    const srv = new InferenceServer({ encoder: makeModel(), batcher: { maxBatchSize: 8, maxDelayMs: 200, maxQueue: 8, idleDispatch: 'wait' } });
    const { port } = await srv.listen(0);
    const inflight = [request(port, 'POST', '/v1/encode', { tokens: [1, 2, 3] }), request(port, 'POST', '/v1/encode', { tokens: [4] })];
    while (srv.batcher.queueDepth < 2) await new Promise((r) => setTimeout(r, 2));
    const t0 = performance.now();
    const done = srv.shutdown();
    expect(srv.draining).toBe(true);
    const results = await Promise.all(inflight);
    expect(results.map((r) => r.status)).toEqual([200, 200]);
    expect(results[0]!.body.length).toBe(3);
    await done;
    // close() flushed the queue at once instead of waiting out maxDelayMs.
    expect(performance.now() - t0).toBeLessThan(150);
    await expect(request(port, 'GET', '/healthz')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('a client that disconnects has its queued request aborted', async () => {
    const srv = new InferenceServer({ encoder: makeModel(), batcher: { maxBatchSize: 8, maxDelayMs: 200, maxQueue: 8, idleDispatch: 'wait' } });
    const { port } = await srv.listen(0);
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/encode', agent: false, headers: { 'content-type': 'application/json' } });
    req.on('error', () => {});
    req.end(JSON.stringify({ tokens: [1, 2] }));
    while (srv.batcher.queueDepth < 1) await new Promise((r) => setTimeout(r, 2));
    req.destroy();
    while (srv.batcher.queueDepth > 0) await new Promise((r) => setTimeout(r, 2));
    expect(srv.batcher.stats().aborted).toBe(1);
    expect(srv.metrics.snapshot().requests['POST /v1/encode 499']).toBe(1);
    await srv.shutdown();
  });
});
