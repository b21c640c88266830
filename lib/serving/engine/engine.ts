/**
 * GenerationEngine: continuous batching of text generation on one model.
 *
 * Every running request has a contiguous range of one preallocated KV pool
 * (a hard byte cap: the pool never grows). One loop runs steps back to back:
 * each step is one `forwardPacked` over every running sequence (the
 * decoding ones contribute their last token, the ones reading their prompt
 * a chunk of it), recorded and run off the JS thread (`runAsync`), so the big
 * GEMMs run once for all rows and the event loop stays free. After a step the
 * logits rows are turned into tokens (lib/models/sampling.ts, per request's
 * own sampler), pushed to the requests' streams, and finished requests leave;
 * new requests join at the next step. See scheduler.ts for the policy.
 */
import { runAsyncOn } from '../../async';
import { noGrad } from '../../autograd/grad-mode';
import { KVPool } from '../../nn/kv-pool';
import type { PackedCausalModel } from '../../models/packed-step';
import { logProbability, TokenPicker } from '../../models/sampling';
import * as ops from '../../ops';
import { Tensor } from '../../tensor';
import { returnResultBuffer } from '../../workspace';
import { EngineOverloadedError } from './errors';
import { checkRequest, type EngineRequest } from './request';
import { Scheduler, Sequence, type StepEntry } from './scheduler';
import { SlotPool } from './slot-pool';
import { GenerationStream, type FinishReason } from './stream';

/** Options of {@link GenerationEngine}. */
export interface GenerationEngineOptions {
  /** Most sequences decoded together (the rows of a step's GEMMs). Default 8. */
  maxRunning?: number;
  /** Most requests waiting for a place; one more is refused with EngineOverloadedError (429). Default 64. */
  maxQueued?: number;
  /**
   * Bytes of the KV pool, allocated and touched once at construction; the engine never uses more (requests wait
   * for room instead). A request reserves (prompt + maxNewTokens − 1) positions of
   * layers × 2 × kvDim × 4 bytes each. Default: maxRunning full contexts, at most 1 GiB.
   */
  kvCacheBytes?: number;
  /** Prompt tokens read per step, shared by the requests reading their prompts (default 64). */
  prefillChunk?: number;
}

/** An engine's load (the engine contract's stats). */
export interface EngineStats {
  /** Requests admitted (reading their prompt or decoding). */
  running: number;
  /** Requests waiting for a place or KV room. */
  queued: number;
  /** KV pool bytes reserved by running requests. */
  kvBytesUsed: number;
  /** KV pool bytes (the cap). */
  kvBytesCap: number;
}

/** What {@link GenerationEngine.stats} reports: the load and running counters. */
export interface GenerationEngineStats extends EngineStats {
  /** Steps run. */
  steps: number;
  /** Tokens generated, and prompt tokens read, since construction. */
  generatedTokens: number;
  promptTokens: number;
}

const DEFAULT_KV_CAP = 2 ** 30;

function positiveInt(fn: string, name: string, v: unknown, dflt: number, min = 1): number {
  const x = v ?? dflt;
  if (typeof x !== 'number') throw new TypeError(`${fn}: option '${name}' must be an integer >= ${min}, got ${typeof x}`);
  if (!Number.isInteger(x) || x < min) throw new RangeError(`${fn}: option '${name}' must be an integer >= ${min}, got ${x}`);
  return x;
}

/** Continuous batching of generation requests on one model (see the module comment). */
export class GenerationEngine {
  readonly #model: PackedCausalModel;
  readonly #pool: KVPool;
  readonly #slots: SlotPool;
  readonly #scheduler: Scheduler;
  readonly #picker = new TokenPicker();
  readonly #bytesPerPosition: number;
  /** Where each step's logits rows are copied (so the step's own buffers go back to the pool). */
  readonly #logits: Float32Array;
  #nextId = 0;
  #closed = false;
  #wake: (() => void) | null = null;
  readonly #done: Promise<void>;
  #steps = 0;
  #generated = 0;
  #promptRead = 0;
  /** Layers recorded per async call of a step (a step is recorded in about four stages). */
  readonly #layersPerStage: number;
  /** Mean seconds from admission to finish (for Retry-After); null until one finished. */
  #serviceSeconds: number | null = null;

  /**
   * @param model a model with `forwardPacked` (LlamaForCausalLM, GPT2LMHeadModel).
   * @throws TypeError for a model that cannot run packed steps or a wrong option type; RangeError naming the option
   * for a value out of range (a KV cap below one position).
   */
  constructor(model: PackedCausalModel, options: GenerationEngineOptions = {}) {
    const fn = 'GenerationEngine';
    const m = model as Partial<PackedCausalModel> | null;
    if (m === null || typeof m !== 'object' || typeof m.forwardPacked !== 'function' || typeof m.createKVPool !== 'function') {
      throw new TypeError(`${fn}: argument 'model' must be a causal LM with forwardPacked and createKVPool (LlamaForCausalLM, GPT2LMHeadModel), got ${m === null ? 'null' : typeof m === 'object' ? m.constructor?.name ?? 'an object' : typeof m}`);
    }
    if (options === null || typeof options !== 'object') throw new TypeError(`${fn}: argument 'options' must be an object, got ${options === null ? 'null' : typeof options}`);
    for (const key of Object.keys(options)) {
      if (!['maxRunning', 'maxQueued', 'kvCacheBytes', 'prefillChunk'].includes(key)) {
        throw new TypeError(`${fn}: unknown option '${key}'; known options: maxRunning, maxQueued, kvCacheBytes, prefillChunk`);
      }
    }
    const maxRunning = positiveInt(fn, 'maxRunning', options.maxRunning, 8);
    const maxQueued = positiveInt(fn, 'maxQueued', options.maxQueued, 64, 0);
    const prefillChunk = positiveInt(fn, 'prefillChunk', options.prefillChunk, 64);
    this.#model = model;
    const probe = model.createKVPool(1, { prefault: false });
    this.#bytesPerPosition = KVPool.bytesPerPosition(probe.layers, probe.kvDim);
    const maxPositions = model.config.maxPositionEmbeddings;
    const full = maxRunning * maxPositions;
    let positions: number;
    if (this.#bytesPerPosition === 0) {
      positions = full; // no layers: nothing to hold
    } else {
      const bytes = positiveInt(fn, 'kvCacheBytes', options.kvCacheBytes, Math.min(full * this.#bytesPerPosition, DEFAULT_KV_CAP));
      positions = Math.floor(bytes / this.#bytesPerPosition);
      if (positions < 1) {
        throw new RangeError(`${fn}: option 'kvCacheBytes' must hold at least one position (${this.#bytesPerPosition} bytes for this model), got ${bytes}`);
      }
      const limit = Math.floor((2 ** 31 - 1) / (probe.layers * 2 * probe.kvDim));
      if (positions > limit) {
        throw new RangeError(`${fn}: option 'kvCacheBytes' must be at most ${limit * this.#bytesPerPosition} for this model (${limit} positions), got ${bytes}`);
      }
    }
    this.#pool = model.createKVPool(positions);
    this.#layersPerStage = Math.max(1, Math.ceil(probe.layers / 4));
    this.#slots = new SlotPool(positions);
    this.#scheduler = new Scheduler(this.#slots, { maxRunning, maxQueued, prefillChunk });
    this.#logits = new Float32Array(maxRunning * model.config.vocabSize);
    this.#done = this.#loop().catch((err: unknown) => {
      // A fault of the engine itself (not of a step): nothing more can run, so every request ends with it.
      this.#closed = true;
      for (const seq of this.#scheduler.all()) {
        seq.detach();
        this.#scheduler.remove(seq);
        seq.stream.fail(err);
      }
    });
  }

  /** Positions of the KV pool (shared by all running requests). */
  get kvPositions(): number {
    return this.#slots.capacity;
  }

  /**
   * Most prompt + new tokens one request can have: the model's positions, or fewer when the KV pool is smaller
   * (a request reserves prompt + maxNewTokens − 1 positions of it). A longer one is refused by {@link generate}.
   */
  get maxRequestTokens(): number {
    return Math.min(this.#model.config.maxPositionEmbeddings, this.#slots.capacity + 1);
  }

  /** The options in effect (defaults resolved; `kvCacheBytes` is the pool's size, whole positions only). */
  get limits(): { maxRunning: number; maxQueued: number; prefillChunk: number; kvCacheBytes: number } {
    const { maxRunning, maxQueued, prefillChunk } = this.#scheduler.limits;
    return { maxRunning, maxQueued, prefillChunk, kvCacheBytes: this.#pool.bytes };
  }

  /**
   * Starts a request. Returns its token stream at once; tokens arrive as steps run. The stream ends with finish
   * reason 'stop' (an eos token, yielded last), 'length' (maxNewTokens) or 'abort' (its signal, leaving the loop
   * early, or {@link close}).
   * @throws TypeError/RangeError naming the request field that is wrong (synchronously; nothing is queued), a
   * RangeError when prompt + maxNewTokens can never fit the KV pool, EngineOverloadedError (429) when maxQueued
   * requests already wait, (503) after close().
   */
  generate(request: EngineRequest): GenerationStream {
    const fn = 'GenerationEngine.generate';
    if (this.#closed) throw new EngineOverloadedError('the generation engine is shutting down', 503, this.#retryAfter());
    const cfg = this.#model.config;
    const req = checkRequest(fn, request, cfg.vocabSize, cfg.maxPositionEmbeddings);
    const id = this.#nextId++;
    let seq: Sequence | null = null;
    const stream = new GenerationStream(req.prompt.length, () => seq && this.#end(seq, 'abort'));
    seq = new Sequence(id, req, stream);
    if (seq.need > this.#slots.capacity) {
      throw new RangeError(`${fn}: field 'maxNewTokens' (${req.maxNewTokens}) with a ${req.prompt.length}-token prompt needs ${seq.need} KV positions, but the engine's pool holds ${this.#slots.capacity} (option kvCacheBytes)`);
    }
    if (req.signal?.aborted) {
      stream.finish('abort');
      return stream;
    }
    if (req.maxNewTokens === 0) {
      stream.finish('length');
      return stream;
    }
    this.#scheduler.enqueue(seq);
    this.#scheduler.admit();
    if (seq.state === 'queued' && this.#scheduler.queued > this.#scheduler.limits.maxQueued) {
      this.#scheduler.remove(seq);
      throw new EngineOverloadedError(`the generation queue is full (${this.#scheduler.limits.maxQueued} requests waiting, option maxQueued); retry later`, 429, this.#retryAfter());
    }
    const signal = req.signal;
    if (signal) {
      const s = seq;
      const onAbort = (): void => this.#end(s, 'abort');
      signal.addEventListener('abort', onAbort, { once: true });
      seq.detach = () => signal.removeEventListener('abort', onAbort);
    }
    this.#wakeLoop();
    return stream;
  }

  /** Requests running and queued, and the KV pool's use. */
  stats(): GenerationEngineStats {
    return {
      running: this.#scheduler.running,
      queued: this.#scheduler.queued,
      kvBytesUsed: this.#slots.used * this.#bytesPerPosition,
      kvBytesCap: this.#pool.bytes,
      steps: this.#steps,
      generatedTokens: this.#generated,
      promptTokens: this.#promptRead,
    };
  }

  /**
   * Stops taking requests: later generate() calls throw EngineOverloadedError (503). By default the requests
   * already queued or running finish (a server's graceful shutdown), and the promise resolves when they have;
   * with `abort: true` they end at once with 'abort', and it resolves when the step in flight (if any) has run.
   */
  async close(options: { abort?: boolean } = {}): Promise<void> {
    this.#closed = true;
    if (options.abort) for (const seq of this.#scheduler.all()) this.#end(seq, 'abort');
    this.#wakeLoop();
    await this.#done;
  }

  #wakeLoop(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  /** A request leaves: its stream ends, its KV range is freed (now, or when its step has run). */
  #end(seq: Sequence, reason: FinishReason): void {
    if (seq.state === 'done') return;
    const admitted = seq.state === 'running';
    seq.detach();
    this.#scheduler.remove(seq);
    seq.stream.finish(reason);
    if (admitted && reason !== 'abort') {
      const s = (performance.now() - seq.arrived) / 1000;
      this.#serviceSeconds = this.#serviceSeconds === null ? s : 0.8 * this.#serviceSeconds + 0.2 * s;
    }
    // A freed place or KV range may let a queued request in.
    this.#wakeLoop();
  }

  /** Seconds until the queue likely has room: the mean request time × queue turns ahead, at least 1. */
  #retryAfter(): number {
    const per = this.#serviceSeconds ?? 1;
    const turns = Math.ceil((this.#scheduler.queued + 1) / this.#scheduler.limits.maxRunning);
    return Math.min(3600, Math.max(1, Math.ceil(per * turns)));
  }

  async #loop(): Promise<void> {
    for (;;) {
      this.#scheduler.admit();
      const entries = this.#scheduler.nextStep();
      if (entries.length === 0) {
        // Closed and drained (queued requests were admitted above as room freed).
        if (this.#closed && this.#scheduler.queued === 0) return;
        await new Promise<void>((resolve) => (this.#wake = resolve));
        continue;
      }
      for (const e of entries) e.seq.inStep = true;
      try {
        const logits = await this.#step(entries);
        this.#steps++;
        await this.#advance(entries, logits);
      } catch (err) {
        // The step failed as a whole: its requests end with the error (the others keep going).
        for (const { seq } of entries) {
          if (seq.state === 'done') continue;
          seq.detach();
          this.#scheduler.remove(seq);
          seq.stream.fail(err);
        }
      }
      this.#scheduler.settle(entries);
      // Between steps, let timers and I/O run even when the step ran synchronously (a non-native backend).
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /**
   * Records and runs one packed step off the JS thread, in stages of a few layers: each stage is its own async
   * call, recorded while the previous one runs, with the event loop free between recordings. Resolves with the
   * logits rows (copied into the engine's buffer, so the step's own buffers go back to the pool).
   */
  async #step(entries: readonly StepEntry[]): Promise<Tensor<'float32'>> {
    const seqs = entries.map((e) => ({ start: e.seq.start, cached: e.seq.cached, ids: e.ids, logits: e.logits }));
    const rows = entries.reduce((n, e) => n + (e.logits ? 1 : 0), 0);
    const v = this.#model.config.vocabSize;
    const out = new Tensor(this.#logits.subarray(0, rows * v), [rows, v], 'float32');
    const stages = this.#model.forwardPackedStages(seqs, this.#pool, this.#layersPerStage);
    const calls: Promise<Tensor<'float32'>>[] = [];
    let done = false;
    let failed = false;
    while (!done && !failed) {
      let ran = false;
      // Decoding: grad mode off (runAsync keeps the mode it is called in).
      calls.push(noGrad(() => runAsyncOn(this.#model.backend, () => {
        ran = true;
        let r: IteratorResult<Tensor<'float32'>, Tensor<'float32'>>;
        try {
          r = stages.next();
        } catch (err) {
          failed = true;
          throw err;
        }
        if (!r.done) return r.value; // the hidden states, which the next stage reads
        done = true;
        if (rows > 0) ops.cat([r.value], 0, { out });
        return out;
      }, { reuseBuffers: true })));
      // Queued behind other async work: its stage is recorded only when its turn comes.
      if (!ran) await calls[calls.length - 1]!.catch(() => undefined);
      else if (!done && !failed) await new Promise<void>((resolve) => setImmediate(resolve));
    }
    const results = await Promise.all(calls);
    // Every stage's kernels have run: the hidden states each stage handed the next are dead. They came from the
    // stages' pooled scopes, which keep a result for the caller; without this each step left them to the GC (a
    // step's hidden states per stage, at every step of a long-running server).
    const last = results[results.length - 1]!;
    const dead = new Set(results.slice(0, -1).map((t) => t.data.buffer));
    dead.delete(last.data.buffer);
    dead.delete(this.#logits.buffer);
    for (const ab of dead) returnResultBuffer(ab);
    return last;
  }

  /**
   * Reads a step's logits: one token per row, pushed to its stream; finished requests leave. Picking a token
   * reads the whole vocabulary (a draw: a few ms at 49k tokens), so past ~2 ms of it the event loop gets a turn
   * before the next row.
   */
  async #advance(entries: readonly StepEntry[], logits: Tensor<'float32'>): Promise<void> {
    const v = this.#model.config.vocabSize;
    const data = logits.data;
    let row = 0;
    let since = performance.now();
    for (const e of entries) {
      if (performance.now() - since > 2) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        since = performance.now();
      }
      const seq = e.seq;
      seq.cached += e.ids.length;
      if (e.ids.length > 1 || seq.pending < 0) this.#promptRead += e.ids.length;
      if (!e.logits) continue;
      const r = row++;
      // Aborted while the step ran: its row is dropped.
      if (seq.state === 'done') continue;
      const req = seq.req;
      const token = this.#picker.pick(data, r * v, v, req.sampling, req.rng, seq.history);
      seq.generated++;
      this.#generated++;
      seq.history?.add(token);
      seq.stream.push(req.logprobs ? { tokenId: token, logprob: logProbability(data, r * v, v, token) } : { tokenId: token });
      if (req.eos.has(token)) this.#end(seq, 'stop');
      else if (seq.generated >= req.maxNewTokens) this.#end(seq, 'length');
      else seq.pending = token;
    }
  }
}
