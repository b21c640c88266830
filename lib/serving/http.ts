/**
 * The inference HTTP server (node:http, no framework): dynamic batching in
 * front of an encoder, JSON in and out, metrics, graceful shutdown.
 *
 * Routes:
 * - `POST /v1/encode` `{ "tokens": [1, 2, 3], "output"?: "pooled" | "tokens" | "both" }`
 *   → `{ "length": 3, "dim": E, "pooled": [...] }` (mean over positions) and/or
 *   `"embeddings": [[...], ...]`; or a batch `{ "inputs": [[...], [...]], "output"? }`
 *   → `{ "results": [ ... ] }` (each item is batched with everyone else's requests).
 * - `POST /v1/generate` `{ "tokens": [...], "maxNewTokens"?: N }` → `{ "tokens": [...] }`
 *   when a generator is configured, else 501.
 * - `GET /healthz` → 200 `{ "status": "ok", ... }` (503 `"draining"` during shutdown).
 * - `GET /metrics` → JSON: request counts by route and status, latency p50/p90/p99 over
 *   a sliding window, batcher stats (queue depth, batches, mean batch size), event-loop
 *   delay, process memory. `?reset=1` clears the windows after reading (between load phases). Prometheus
 *   text format instead for `?format=prometheus` or an Accept header asking for text/plain
 *   or OpenMetrics without JSON (what a Prometheus scraper sends).
 *
 * - With a text model (`openai` option, lib/serving/openai.ts): OpenAI's `GET /v1/models`,
 *   `GET /v1/models/{id}`, `POST /v1/embeddings`, `POST /v1/completions`,
 *   `POST /v1/chat/completions` (JSON, or server-sent events for `"stream": true`).
 *
 * Errors are `{ "error": { "code", "message", "type", "param" } }`: 400 (bad JSON, wrong types, token
 * id out of range, sequence too long, too many inputs; `param` names the field), 404, 405, 413 (body too large),
 * 415 (multipart), 501, 429/503 + Retry-After (queue full, or shutting down), 504 (deadline).
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Batcher, BatcherClosedError, QueueFullError, type BatcherOptions } from './batcher';
import { Metrics, renderPrometheus, type MetricsOptions } from './metrics';
import type { Tensor } from '../tensor';
import { HttpError } from './http-error';
import { EventStream, OpenAIRoutes } from './openai';
import type { ServedEncoder, ServedTextModel } from './served-model';
import { isEngineOverloaded, type TokenEngine } from './sequential-engine';

export type { ServedEncoder } from './served-model';

/** Greedy generation hook of `POST /v1/generate`: prompt ids → generated ids. */
export type GenerateFn = (tokens: number[], options: { maxNewTokens: number; signal: AbortSignal }) => Promise<number[]>;

/** Options of {@link InferenceServer}. */
export interface InferenceServerOptions {
  /** The encoder of `/v1/encode` (default: an embedding text model's); without one `/v1/encode` answers 501. */
  encoder?: ServedEncoder;
  /**
   * OpenAI's routes (lib/serving/openai.ts) over a text model (lib/serving/served-model.ts); they exist only with
   * it. A generation model needs the engine that runs its requests (the server closes it on shutdown).
   */
  openai?: { model: ServedTextModel; engine?: TokenEngine };
  /** Token-id limits of `/v1/generate` when there is no encoder (the generation model's). */
  tokenLimits?: { vocabSize: number; maxSeqLen: number };
  /** Batching options (`{ maxBatchSize: 1, maxDelayMs: 0 }` turns batching off). */
  batcher?: BatcherOptions;
  /** Largest request body (default 1 MiB). */
  maxBodyBytes?: number;
  /** Most sequences in one batch-form request (default 64). */
  maxInputsPerRequest?: number;
  /** A request still unanswered after this is aborted with 504 (default 30 s). */
  requestTimeoutMs?: number;
  /** Seconds in the Retry-After header of a 503 (default 1). */
  retryAfterS?: number;
  /** Generation for `POST /v1/generate`; 501 without it. */
  generate?: GenerateFn;
  /** Why generation is unavailable (the 501 message). */
  generateUnavailableReason?: string;
  /** Shown by `/healthz` (e.g. the model config). */
  info?: Record<string, unknown>;
  metrics?: MetricsOptions;
}

/** A non-JSON response body. */
class PlainText {
  constructor(readonly text: string, readonly contentType: string) {}
}

/**
 * `GET /metrics` answers in Prometheus text format for `?format=prometheus`, or when the
 * Accept header asks for text/plain or OpenMetrics (what a Prometheus scraper sends) and not JSON.
 */
function wantsPrometheus(url: URL, req: http.IncomingMessage): boolean {
  const format = url.searchParams.get('format');
  if (format !== null) return format === 'prometheus';
  const accept = req.headers.accept ?? '';
  return /text\/plain|openmetrics/i.test(accept) && !/application\/json/i.test(accept);
}

function prefixKeys(prefix: string, values: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [k === 'draining' ? k : `${prefix}_${k}`, v]));
}

const ROUTES: Record<string, string[]> = {
  '/v1/encode': ['POST'],
  '/v1/generate': ['POST'],
  '/healthz': ['GET', 'HEAD'],
  '/metrics': ['GET'],
};

const OPENAI_ROUTES: Record<string, string[]> = {
  '/v1/models': ['GET'],
  '/v1/embeddings': ['POST'],
  '/v1/completions': ['POST'],
  '/v1/chat/completions': ['POST'],
};

type OutputKind = 'pooled' | 'tokens' | 'both';

/** Plain number arrays for JSON (a Float32Array would serialise as an object). */
function rows(t: Tensor<'float32'>): number[][] {
  const [len, e] = t.shape as [number, number];
  const out: number[][] = new Array(len);
  for (let i = 0; i < len; i++) out[i] = Array.from(t.data.subarray(i * e, (i + 1) * e));
  return out;
}

function meanPool(t: Tensor<'float32'>): number[] {
  const [len, e] = t.shape as [number, number];
  const acc = new Float64Array(e);
  for (let i = 0; i < len; i++) for (let j = 0; j < e; j++) acc[j]! += t.data[i * e + j]!;
  return Array.from(acc, (x) => Math.fround(x / len));
}

/**
 * An HTTP server for one encoder (see the module comment for the routes).
 *
 * @example
 * const srv = new InferenceServer({ encoder: model, batcher: { maxBatchSize: 16, maxDelayMs: 2 } });
 * const { port } = await srv.listen(8080, '127.0.0.1');
 * process.once('SIGTERM', () => void srv.shutdown().then(() => process.exit(0)));
 */
export class InferenceServer {
  readonly server: http.Server;
  readonly metrics: Metrics;
  readonly openai: OpenAIRoutes | null;
  readonly #batcher: Batcher | null;
  readonly #routes: Record<string, string[]>;
  readonly #opts: Required<Pick<InferenceServerOptions, 'maxBodyBytes' | 'maxInputsPerRequest' | 'requestTimeoutMs' | 'retryAfterS'>> &
    InferenceServerOptions;
  #draining = false;
  #shutdown: Promise<void> | null = null;
  readonly #active = new Set<http.ServerResponse>();

  constructor(options: InferenceServerOptions) {
    this.#opts = { maxBodyBytes: 1 << 20, maxInputsPerRequest: 64, requestTimeoutMs: 30_000, retryAfterS: 1, ...options };
    const text = options.openai?.model;
    const encoder = options.encoder ?? (text?.task === 'embeddings' ? text.encoder : undefined);
    this.#batcher = encoder ? new Batcher(encoder, options.batcher) : null;
    this.openai = options.openai
      ? new OpenAIRoutes({
        ...options.openai,
        ...(this.#batcher ? { batcher: this.#batcher } : {}),
        maxInputsPerRequest: this.#opts.maxInputsPerRequest,
      })
      : null;
    this.#routes = this.openai ? { ...ROUTES, ...OPENAI_ROUTES } : ROUTES;
    this.metrics = new Metrics(options.metrics);
    this.server = http.createServer((req, res) => void this.#handle(req, res));
    // Idle keep-alive sockets must not hold a shutdown open for long.
    this.server.keepAliveTimeout = 5_000;
  }

  /** Starts listening (port 0 = any free port); resolves with the bound address. */
  listen(port: number, host = '127.0.0.1'): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /** The dynamic batcher of the encoder. @throws TypeError when the server has no encoder */
  get batcher(): Batcher {
    if (!this.#batcher) throw new TypeError('InferenceServer: this server has no encoder, so no batcher');
    return this.#batcher;
  }

  /** True once {@link shutdown} started. */
  get draining(): boolean {
    return this.#draining;
  }

  /**
   * Graceful shutdown: stop accepting connections, answer new requests on open
   * keep-alive connections with 503, let every in-flight request finish (the
   * batcher drains its queue), then close. After `forceAfterMs` (default 10 s)
   * remaining connections are cut.
   */
  shutdown(forceAfterMs = 10_000): Promise<void> {
    if (this.#shutdown) return this.#shutdown;
    this.#draining = true;
    this.#shutdown = (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      this.server.closeIdleConnections();
      const force = setTimeout(() => this.server.closeAllConnections(), forceAfterMs);
      force.unref();
      await this.#batcher?.close();
      await this.openai?.engine?.close();
      // Responses in flight finish writing; their sockets close (Connection: close is set while draining).
      while (this.#active.size) await new Promise((r) => setTimeout(r, 5));
      this.server.closeIdleConnections();
      await closed;
      clearTimeout(force);
      this.metrics.stop();
    })();
    return this.#shutdown;
  }

  #send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (res.headersSent || res.destroyed) return;
    const text = body instanceof PlainText ? body.text : JSON.stringify(body);
    res.writeHead(status, {
      'content-type': body instanceof PlainText ? body.contentType : 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(text),
      ...(this.#draining ? { connection: 'close' } : {}),
      ...headers,
    });
    res.end(text);
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const begin = this.metrics.begin();
    // Recorded once: a stream the client leaves is a 499 from 'close', not also a 200 when the handler returns.
    let recorded = false;
    const end = (r: string, s: number): void => {
      if (recorded) return;
      recorded = true;
      begin(r, s);
    };
    this.#active.add(res);
    const url = new URL(req.url ?? '/', 'http://localhost');
    const modelPath = this.openai && url.pathname.startsWith('/v1/models/');
    const allowed = modelPath ? ['GET'] : this.#routes[url.pathname];
    const route = allowed ? `${req.method} ${modelPath ? '/v1/models/{id}' : url.pathname}` : 'other';
    // One signal per request: the client went away, or the deadline passed. A plain controller and one
    // timer cleared at the end, not AbortSignal.any + AbortSignal.timeout: those keep a live timer and weak
    // references per request for the whole timeout, which under load is a good share of the GC work.
    const controller = new AbortController();
    const signal = controller.signal;
    const deadline = setTimeout(() => {
      controller.abort(new DOMException(`no result within ${this.#opts.requestTimeoutMs} ms`, 'TimeoutError'));
    }, this.#opts.requestTimeoutMs);
    deadline.unref();
    res.on('close', () => {
      clearTimeout(deadline);
      this.#active.delete(res);
      if (!res.writableFinished) {
        controller.abort();
        end(route, 499); // client closed the request (nginx's convention)
      }
    });
    let status = 500;
    try {
      if (!allowed) throw new HttpError(404, 'not_found', `no route ${url.pathname}; routes: ${Object.keys(this.#routes).join(', ')}`);
      if (!allowed.includes(req.method ?? '')) {
        throw new HttpError(405, 'method_not_allowed', `${url.pathname} accepts ${allowed.join(', ')}`, { allow: allowed.join(', ') });
      }
      const [code, body, headers] = await this.#route(url, req, signal);
      status = code;
      if (body instanceof EventStream) {
        // The deadline bounds the wait for the first tokens; a stream then runs as long as it generates.
        clearTimeout(deadline);
        await this.#stream(res, body);
      } else this.#send(res, code, body, headers);
    } catch (err) {
      const e = this.#toHttpError(err, signal);
      status = e.status;
      if (!res.headersSent) {
        // Unread body data would otherwise be parsed as the next request on this connection.
        const close: Record<string, string> = !req.complete ? { connection: 'close' } : {};
        this.#send(res, e.status, e.body(), { ...e.headers, ...close });
      } else if (!res.writableEnded && !res.destroyed) {
        // A stream that failed after its headers: OpenAI's clients read an error event.
        res.end(`data: ${JSON.stringify(e.body())}\n\n`);
      }
    } finally {
      if (res.writableFinished || res.headersSent) end(route, status);
    }
  }

  /** Writes a server-sent event stream: each event as `data: <json>`, then `data: [DONE]`. */
  async #stream(res: http.ServerResponse, body: EventStream): Promise<void> {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
      ...(this.#draining ? { connection: 'close' } : {}),
    });
    res.flushHeaders();
    const send = async (event: unknown): Promise<boolean> => {
      if (res.destroyed || res.writableEnded) return false;
      if (!res.write(`data: ${JSON.stringify(event)}\n\n`)) {
        // Backpressure: a slow reader holds its own stream, never the server's memory.
        await new Promise<void>((resolve) => {
          const done = (): void => {
            res.off('drain', done);
            res.off('close', done);
            resolve();
          };
          res.on('drain', done);
          res.on('close', done);
        });
      }
      return !res.destroyed;
    };
    await body.run(send);
    if (!res.destroyed && !res.writableEnded) res.end('data: [DONE]\n\n');
  }

  #toHttpError(err: unknown, signal: AbortSignal): HttpError {
    if (err instanceof HttpError) return err;
    const retry = { 'retry-after': String(this.#opts.retryAfterS) };
    if (isEngineOverloaded(err)) {
      return new HttpError(err.status, 'overloaded', err.message, { 'retry-after': String(Math.max(1, Math.ceil(err.retryAfterSeconds))) });
    }
    if (err instanceof QueueFullError) return new HttpError(503, 'overloaded', err.message, retry);
    if (err instanceof BatcherClosedError) return new HttpError(503, 'shutting_down', 'the server is shutting down', retry);
    if (signal.aborted && (err as Error)?.name === 'TimeoutError') {
      return new HttpError(504, 'timeout', `no result within ${this.#opts.requestTimeoutMs} ms`);
    }
    if (err instanceof RangeError || err instanceof TypeError) return new HttpError(400, 'invalid_request', err.message);
    return new HttpError(500, 'internal', (err as Error)?.message ?? String(err));
  }

  async #route(url: URL, req: http.IncomingMessage, signal: AbortSignal): Promise<[number, unknown, Record<string, string>?]> {
    switch (url.pathname) {
      case '/healthz':
        return this.#draining
          ? [503, { status: 'draining' }, { 'retry-after': String(this.#opts.retryAfterS) }]
          : [200, { status: 'ok', uptimeS: Math.round(process.uptime()), ...this.#opts.info }];
      case '/metrics': {
        const snapshot = this.metrics.snapshot();
        const batcher = this.#batcher?.stats();
        const generation = this.openai?.model.task === 'generation' ? this.openai.stats() : undefined;
        if (url.searchParams.get('reset') === '1') this.metrics.resetWindow();
        if (wantsPrometheus(url, req)) {
          const gauges: Record<string, number> = {
            ...(batcher ? prefixKeys('batcher', { ...batcher }) : {}),
            ...(generation ? prefixKeys('generation', generation) : {}),
            draining: this.#draining ? 1 : 0,
          };
          return [200, new PlainText(renderPrometheus(snapshot, gauges), 'text/plain; version=0.0.4; charset=utf-8')];
        }
        return [200, { ...snapshot, ...(batcher ? { batcher } : {}), ...(generation ? { generation } : {}), draining: this.#draining }];
      }
      case '/v1/models':
        return [200, this.openai!.models()];
      case '/v1/embeddings':
        return [200, await this.openai!.embeddings(await this.#readJson(req), signal)];
      case '/v1/completions':
        return [200, await this.openai!.completions(await this.#readJson(req), signal)];
      case '/v1/chat/completions':
        return [200, await this.openai!.chatCompletions(await this.#readJson(req), signal)];
      case '/v1/encode':
        return [200, await this.#encode(await this.#readJson(req), signal)];
      case '/v1/generate':
        return [200, await this.#generate(await this.#readJson(req), signal)];
      default:
        if (this.openai && url.pathname.startsWith('/v1/models/')) {
          return [200, this.openai.retrieveModel(decodeURIComponent(url.pathname.slice('/v1/models/'.length)))];
        }
        throw new HttpError(404, 'not_found', url.pathname);
    }
  }

  #readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
    if (this.#draining) throw new HttpError(503, 'shutting_down', 'the server is shutting down', { 'retry-after': String(this.#opts.retryAfterS) });
    // Any Content-Type is read as JSON (curl -d sends form-urlencoded); multipart is certainly not JSON.
    const type = req.headers['content-type'];
    if (type !== undefined && /^multipart\//i.test(type)) {
      throw new HttpError(415, 'unsupported_media_type', `expected a JSON body (Content-Type application/json), got ${type}`);
    }
    const limit = this.#opts.maxBodyBytes;
    const declared = Number(req.headers['content-length']);
    if (declared > limit) throw new HttpError(413, 'payload_too_large', `the body is ${declared} bytes; the limit is ${limit}`);
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const onData = (c: Buffer): void => {
        size += c.length;
        if (size > limit) {
          req.off('data', onData);
          req.resume();
          reject(new HttpError(413, 'payload_too_large', `the body is over the ${limit}-byte limit`));
        } else chunks.push(c);
      };
      req.on('data', onData);
      req.once('error', reject);
      req.once('end', () => {
        if (size > limit) return;
        let value: unknown;
        try {
          value = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch (e) {
          reject(new HttpError(400, 'bad_json', `the body is not valid JSON: ${(e as Error).message}`));
          return;
        }
        if (value === null || typeof value !== 'object' || Array.isArray(value)) {
          reject(new HttpError(400, 'invalid_request', 'the body must be a JSON object'));
          return;
        }
        resolve(value as Record<string, unknown>);
      });
    });
  }

  /** Checks one token-id sequence; `where` names it in messages (`tokens`, `inputs[3]`). */
  #tokens(value: unknown, where: string): number[] {
    const limits = this.#opts.encoder ?? this.#opts.tokenLimits;
    if (!limits) throw new HttpError(501, 'not_implemented', 'this server has no token-id model');
    const { vocabSize, maxSeqLen } = limits;
    if (!Array.isArray(value)) throw new HttpError(400, 'invalid_request', `'${where}' must be an array of token ids, got ${value === null ? 'null' : typeof value}`);
    if (value.length === 0) throw new HttpError(400, 'invalid_request', `'${where}' is empty; at least one token is needed`);
    if (value.length > maxSeqLen) {
      throw new HttpError(400, 'too_long', `'${where}' has ${value.length} tokens; the model accepts at most ${maxSeqLen}`);
    }
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i];
      if (typeof v !== 'number' || !Number.isInteger(v)) {
        throw new HttpError(400, 'invalid_request', `'${where}[${i}]' must be an integer token id, got ${JSON.stringify(v)}`);
      }
      if (v < 0 || v >= vocabSize) {
        throw new HttpError(400, 'token_out_of_range', `'${where}[${i}]' is ${v}; token ids must be in [0, ${vocabSize})`);
      }
    }
    return value as number[];
  }

  #checkKeys(body: Record<string, unknown>, known: string[]): void {
    for (const k of Object.keys(body)) {
      if (!known.includes(k)) throw new HttpError(400, 'invalid_request', `unknown field '${k}'; known fields: ${known.join(', ')}`);
    }
  }

  async #encode(body: Record<string, unknown>, signal: AbortSignal): Promise<unknown> {
    if (!this.#batcher) {
      throw new HttpError(501, 'not_implemented', 'POST /v1/encode needs an encoder; this server runs a generation model (use POST /v1/completions)');
    }
    this.#checkKeys(body, ['tokens', 'inputs', 'output']);
    const output = (body.output ?? 'pooled') as OutputKind;
    if (!['pooled', 'tokens', 'both'].includes(output)) {
      throw new HttpError(400, 'invalid_request', `'output' must be "pooled", "tokens" or "both", got ${JSON.stringify(body.output)}`);
    }
    if ((body.tokens === undefined) === (body.inputs === undefined)) {
      throw new HttpError(400, 'invalid_request', "give either 'tokens' (one sequence) or 'inputs' (an array of sequences)");
    }
    const single = body.tokens !== undefined;
    let seqs: number[][];
    if (single) seqs = [this.#tokens(body.tokens, 'tokens')];
    else {
      if (!Array.isArray(body.inputs) || body.inputs.length === 0) {
        throw new HttpError(400, 'invalid_request', "'inputs' must be a non-empty array of token-id arrays");
      }
      if (body.inputs.length > this.#opts.maxInputsPerRequest) {
        throw new HttpError(400, 'too_many_inputs', `'inputs' has ${body.inputs.length} sequences; the limit is ${this.#opts.maxInputsPerRequest}`);
      }
      seqs = body.inputs.map((s, i) => this.#tokens(s, `inputs[${i}]`));
    }
    // All or nothing: a batch request is not half-queued when the queue is nearly full.
    if (seqs.length > 1 && this.batcher.capacity < seqs.length) {
      if (this.batcher.closed) throw new BatcherClosedError();
      throw new QueueFullError(this.batcher.maxQueue);
    }
    const outs = await Promise.all(seqs.map((s) => this.batcher.submit(s, { signal })));
    const shape = (t: Tensor<'float32'>): Record<string, unknown> => ({
      length: t.shape[0],
      dim: t.shape[1],
      ...(output !== 'tokens' ? { pooled: meanPool(t) } : {}),
      ...(output !== 'pooled' ? { embeddings: rows(t) } : {}),
    });
    const result = single ? shape(outs[0]!) : { results: outs.map(shape) };
    // Copied into plain arrays: the batch outputs may go back to the pool.
    for (const t of outs) this.batcher.release(t);
    return result;
  }

  async #generate(body: Record<string, unknown>, signal: AbortSignal): Promise<unknown> {
    const gen = this.#opts.generate;
    if (!gen) {
      throw new HttpError(501, 'not_implemented', this.#opts.generateUnavailableReason ?? 'generation is not available for this model');
    }
    this.#checkKeys(body, ['tokens', 'maxNewTokens']);
    const tokens = this.#tokens(body.tokens, 'tokens');
    const maxNewTokens = body.maxNewTokens ?? 16;
    if (typeof maxNewTokens !== 'number' || !Number.isInteger(maxNewTokens) || maxNewTokens < 1 || maxNewTokens > 1024) {
      throw new HttpError(400, 'invalid_request', `'maxNewTokens' must be an integer in [1, 1024], got ${JSON.stringify(body.maxNewTokens)}`);
    }
    return { tokens: await gen(tokens, { maxNewTokens, signal }) };
  }
}
