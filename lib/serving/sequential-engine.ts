/**
 * The generation side of the server, as the OpenAI routes see it: the
 * contract of `GenerationEngine` (lib/serving/engine/, continuous batching),
 * and {@link SequentialEngine}, which keeps the same contract over
 * `generateAsync` and runs one request at a time (requests queue behind it,
 * FIFO, bounded): what a server falls back to for a model that cannot run
 * packed steps (createServingEngine in serving-engine.ts picks). The routes
 * only use the contract, so either engine serves.
 *
 * Contract: `generate(req)` returns an async iterable of the new tokens; it
 * ends at an end-of-sequence token (which is yielded), after `maxNewTokens`,
 * or on abort; its iterator's final result (`done: true`) carries
 * `{ finishReason: 'stop' | 'length' | 'abort' }`. When the queue is full it
 * throws an overload error (`status` 429 or 503, `retryAfterSeconds`)
 * synchronously or from the first iteration. Aborting the request's signal,
 * or returning from the iteration, frees its slot at once (a queued request
 * leaves the queue; a running one stops before its next step).
 */
import type { CausalModel } from '../models/generation';
import { EngineOverloadedError, type EngineRequest, type EngineStats, type EngineToken, type FinishReason } from './engine';

export { EngineOverloadedError, type EngineRequest, type EngineStats, type EngineToken, type FinishReason };
import { generateAsync } from '../models/generation';
import { Tensor } from '../tensor';

/** What the server needs of a generation engine (`GenerationEngine` and {@link SequentialEngine} both are one). */
export interface TokenEngine {
  generate(req: EngineRequest): AsyncIterable<EngineToken>;
  stats(): EngineStats;
  close(): Promise<void>;
  /**
   * Most prompt + new tokens one request can have on this engine when that is below the model's context (a
   * bounded KV cache); absent: the model's context. The routes refuse longer requests with a 400 naming it.
   */
  readonly maxRequestTokens?: number;
}

/** Most prompt + new tokens one request can have on `engine` serving a model of `contextLength` positions. */
export function requestTokenLimit(engine: TokenEngine, contextLength: number): number {
  return Math.min(contextLength, engine.maxRequestTokens ?? contextLength);
}

/** An overload error of any engine (matched by shape, so another engine's class works too). */
export function isEngineOverloaded(e: unknown): e is { message: string; status: 429 | 503; retryAfterSeconds: number } {
  if (e === null || typeof e !== 'object') return false;
  const x = e as { status?: unknown; retryAfterSeconds?: unknown };
  return (x.status === 429 || x.status === 503) && typeof x.retryAfterSeconds === 'number';
}

/** Options of {@link SequentialEngine}. */
export interface SequentialEngineOptions {
  /** Requests waiting behind the running one before `generate` refuses with 503 (default 64). */
  maxQueued?: number;
  /** Seconds a refused client is told to wait (default 1). */
  retryAfterSeconds?: number;
}

interface Job {
  req: EngineRequest;
  tokens: EngineToken[];
  finish: FinishReason | null;
  error: { error: unknown } | null;
  /** Running: generateAsync is stepping it. */
  started: boolean;
  /** The consumer is gone or the signal fired: stop at the next token. */
  cancelled: boolean;
  wake: (() => void) | null;
  onAbort: (() => void) | null;
}

const cancelledToken = new Error('generation cancelled');

/**
 * One request at a time through `generateAsync` (each step's kernels off the
 * JS thread), the others queued FIFO: the engine contract without batching.
 */
export class SequentialEngine implements TokenEngine {
  readonly maxQueued: number;
  readonly retryAfterSeconds: number;
  readonly #model: CausalModel;
  readonly #queue: Job[] = [];
  #running: Job | null = null;
  #closed = false;
  #idle: (() => void)[] = [];

  constructor(model: CausalModel, options: SequentialEngineOptions = {}) {
    if (!model || typeof model.forward !== 'function' || typeof model.createCache !== 'function') {
      throw new TypeError('SequentialEngine: argument \'model\' must be a causal LM (forward and createCache)');
    }
    this.#model = model;
    const q = options.maxQueued ?? 64;
    if (!Number.isInteger(q) || q < 0) throw new RangeError(`SequentialEngine: option 'maxQueued' must be an integer >= 0, got ${String(q)}`);
    this.maxQueued = q;
    const r = options.retryAfterSeconds ?? 1;
    if (!Number.isInteger(r) || r < 1) throw new RangeError(`SequentialEngine: option 'retryAfterSeconds' must be an integer >= 1, got ${String(r)}`);
    this.retryAfterSeconds = r;
  }

  stats(): EngineStats {
    return { running: this.#running ? 1 : 0, queued: this.#queue.length, kvBytesUsed: 0, kvBytesCap: 0 };
  }

  /** Refuses new requests and resolves once the running and queued ones have finished. */
  close(): Promise<void> {
    this.#closed = true;
    return this.#running || this.#queue.length ? new Promise((r) => this.#idle.push(r)) : Promise.resolve();
  }

  /**
   * Queues a request; the tokens come as they are generated.
   * @throws EngineOverloadedError (503) when `maxQueued` requests wait already or the engine is closed;
   *   TypeError/RangeError for a bad request.
   */
  generate(req: EngineRequest): AsyncIterable<EngineToken> {
    const fn = 'SequentialEngine.generate';
    if (req === null || typeof req !== 'object') throw new TypeError(`${fn}: argument 'req' must be an object`);
    if (!Array.isArray(req.promptIds) || req.promptIds.length === 0) {
      throw new TypeError(`${fn}: field 'promptIds' must be a non-empty array of token ids`);
    }
    if (this.#closed) throw new EngineOverloadedError('the generation engine is shutting down', 503, this.retryAfterSeconds);
    const busy = this.#running !== null;
    if (busy && this.#queue.length >= this.maxQueued) {
      throw new EngineOverloadedError(
        `the generation queue is full (${this.maxQueued} requests waiting); retry later`, 503, this.retryAfterSeconds);
    }
    const job: Job = { req, tokens: [], finish: null, error: null, started: false, cancelled: false, wake: null, onAbort: null };
    if (req.signal?.aborted) job.finish = 'abort';
    else {
      if (req.signal) {
        job.onAbort = () => this.#cancel(job);
        req.signal.addEventListener('abort', job.onAbort, { once: true });
      }
      this.#queue.push(job);
      this.#pump();
    }
    return { [Symbol.asyncIterator]: () => this.#iterate(job) };
  }

  #cancel(job: Job): void {
    if (job.finish) return;
    job.cancelled = true;
    const i = this.#queue.indexOf(job);
    if (i !== -1) {
      this.#queue.splice(i, 1);
      this.#end(job, 'abort');
      this.#checkIdle();
    }
    // A running job stops at its next token (onToken throws).
  }

  #end(job: Job, reason: FinishReason): void {
    if (job.finish) return;
    job.finish = reason;
    if (job.onAbort) job.req.signal!.removeEventListener('abort', job.onAbort);
    job.onAbort = null;
    this.#notify(job);
  }

  #notify(job: Job): void {
    const w = job.wake;
    job.wake = null;
    w?.();
  }

  #checkIdle(): void {
    if (!this.#running && this.#queue.length === 0) for (const r of this.#idle.splice(0)) r();
  }

  #pump(): void {
    if (this.#running || this.#queue.length === 0) return;
    const job = this.#queue.shift()!;
    this.#running = job;
    job.started = true;
    void this.#run(job).finally(() => {
      this.#running = null;
      this.#pump();
      this.#checkIdle();
    });
  }

  async #run(job: Job): Promise<void> {
    const { req } = job;
    const eos = new Set(req.eosTokenIds ?? []);
    const sample = req.temperature === 0 ? false : req.doSample ?? false;
    let count = 0;
    let sawEos = false;
    try {
      await generateAsync(this.#model, new Tensor(Int32Array.from(req.promptIds), [1, req.promptIds.length], 'int32'), {
        maxNewTokens: req.maxNewTokens,
        eosTokenId: req.eosTokenIds ? [...req.eosTokenIds] : null,
        doSample: sample,
        ...(sample && req.temperature !== undefined ? { temperature: req.temperature } : {}),
        ...(req.topP !== undefined ? { topP: req.topP } : {}),
        ...(req.topK !== undefined ? { topK: req.topK } : {}),
        ...(req.repetitionPenalty !== undefined ? { repetitionPenalty: req.repetitionPenalty } : {}),
        ...(req.seed !== undefined ? { seed: req.seed } : {}),
        outputLogprobs: req.logprobs === true,
        onToken: (t, lp) => {
          if (job.cancelled) throw cancelledToken;
          count++;
          sawEos = eos.has(t[0]!);
          job.tokens.push(lp ? { tokenId: t[0]!, logprob: lp[0]! } : { tokenId: t[0]! });
          this.#notify(job);
        },
      });
      this.#end(job, job.cancelled ? 'abort' : sawEos ? 'stop' : count >= req.maxNewTokens ? 'length' : 'stop');
    } catch (error) {
      if (error === cancelledToken || job.cancelled) this.#end(job, 'abort');
      else {
        job.error = { error };
        this.#end(job, 'abort');
      }
    }
  }

  async *#iterate(job: Job): AsyncGenerator<EngineToken, { finishReason: FinishReason }, undefined> {
    let i = 0;
    try {
      for (;;) {
        if (i < job.tokens.length) {
          yield job.tokens[i++]!;
          continue;
        }
        if (job.finish) {
          if (job.error) throw job.error.error;
          return { finishReason: job.finish };
        }
        await new Promise<void>((r) => (job.wake = r));
      }
    } finally {
      // The consumer stopped early (break / return): free the slot.
      if (!job.finish) this.#cancel(job);
    }
  }
}
