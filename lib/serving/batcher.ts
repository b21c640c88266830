/**
 * Dynamic batching for serving: concurrent single-sequence requests of
 * different lengths are padded into one `[N, S]` (token ids) or `[N, S, E]`
 * (features) batch with a key padding mask, run with one native forward pass
 * off the JS thread ({@link runAsync}), and each request gets back exactly its
 * own rows.
 *
 * Why the result equals running a request alone: the model must be
 * position-wise except for attention, and attention is given the key padding
 * mask, so a real position never attends to padding (its softmax weight is
 * exactly 0). Padded positions are computed and thrown away.
 *
 * Latency/throughput trade-off:
 * - `maxDelayMs` is how long the oldest queued request may wait for company
 *   before a partial batch is sent while another batch runs. By default
 *   (`idleDispatch: 'immediate'`) a request reaching an idle batcher goes at
 *   once, so low load pays no batching delay; under load, batches form from
 *   the requests that queue up while one runs. `idleDispatch: 'wait'` always
 *   waits (fuller batches at moderate load, up to `maxDelayMs` more latency).
 *   0 = dispatch as soon as the executor has room.
 * - `maxBatchSize` caps N: bigger batches amortise weight reads (the GEMMs
 *   become wider), but every request of a batch finishes when the slowest
 *   (longest) one does, and the batch is padded to the longest sequence.
 * - `buckets` groups requests by length so short ones are not padded to a
 *   long one's length; the cost is smaller batches when traffic is thin.
 * - `maxInFlight` batches may be queued on the native executor at once: 2
 *   lets the next batch be recorded while one runs (no idle executor between
 *   batches); 1 lets more requests accumulate into each batch.
 * - `maxQueue` bounds memory and latency under overload: a request beyond it
 *   is rejected at once with {@link QueueFullError} (a server answers 503).
 */
import { runAsync } from '../async';
import { noGrad } from '../autograd/grad-mode';
import { Tensor } from '../tensor';
import { returnResultBuffer } from '../workspace';
import { Module } from '../nn/module';

/** A model a {@link Batcher} can drive. Output rows must be batch-first: `[N, S, outputDim]`. */
export interface BatchEncoder {
  /** `'ids'`: inputs are token-id sequences, batched as int32 `[N, S]`; `'features'`: float rows, batched as `[N, S, inputDim]`. */
  readonly inputKind: 'ids' | 'features';
  /** Feature size of a `'features'` input row. */
  readonly inputDim?: number;
  /** Token ids must be in `[0, vocabSize)` (checked per request, so one bad request cannot fail a batch). */
  readonly vocabSize?: number;
  /** Longest accepted sequence. */
  readonly maxSeqLen?: number;
  /** Id written at padded positions (default 0; any valid id works since padding is masked). */
  readonly padId?: number;
  /**
   * Runs a padded batch. `keyPaddingMask` is bool `[N, S]`, `true` at padding
   * (null when no row is padded). Must only record native kernels (it runs
   * inside {@link runAsync}); attnode's modules do.
   */
  forward(input: Tensor<'int32'> | Tensor<'float32'>, keyPaddingMask: Tensor<'bool'> | null): Tensor<'float32'>;
}

/** One request: token ids (`'ids'` models), or a float32 `[S, inputDim]` tensor (`'features'` models). */
export type SequenceInput = readonly number[] | Int32Array | Tensor<'float32'>;

/** Options of {@link Batcher}. */
export interface BatcherOptions {
  /** Most requests in one forward pass (default 16). 1 disables batching. */
  maxBatchSize?: number;
  /** Longest the oldest queued request waits for a fuller batch, in ms (default 2; 0 = dispatch eagerly). */
  maxDelayMs?: number;
  /**
   * What a request arriving at an idle batcher (nothing running) does: `'immediate'` (default)
   * dispatches at once, so low load pays no batching delay and batches form from the requests
   * that arrive while one runs; `'wait'` always waits up to `maxDelayMs` for company.
   */
  idleDispatch?: 'immediate' | 'wait';
  /** Most requests waiting (not yet dispatched); beyond it `submit` rejects with {@link QueueFullError} (default 256). */
  maxQueue?: number;
  /** Batches dispatched to the executor and not yet finished (default 2). */
  maxInFlight?: number;
  /**
   * `'async'` (default): run batches with {@link runAsync} (native kernels on the executor thread);
   * `'sync'`: run on the JS thread (needed for models on the JS backend). Default: `'sync'` when the
   * model is an `nn.Module` on the JS backend, else `'async'`.
   */
  execution?: 'async' | 'sync';
  /** Cap on N·S (padded positions) of a batch (default unlimited); a single longer request still runs alone. */
  maxBatchTokens?: number;
  /**
   * Length grouping: `'none'` (default: FIFO), `'pow2'` (lengths 1, 2, 3–4, 5–8, …
   * share a batch), or ascending upper bounds, e.g. `[16, 64, 256]` (longer ones form a last bucket).
   */
  buckets?: 'none' | 'pow2' | readonly number[];
}

/** Options of {@link Batcher.submit}. */
export interface SubmitOptions {
  /** Aborting removes a queued request (or drops its result if its batch already runs) and rejects with the reason. */
  signal?: AbortSignal;
}

/** Counters of a {@link Batcher} (see {@link Batcher.stats}). */
export interface BatcherStats {
  /** Requests waiting to be dispatched. */
  queueDepth: number;
  /** Batches on the executor. */
  inFlightBatches: number;
  /** Requests in those batches. */
  inFlightRequests: number;
  /** Batches run to completion (successfully or not). */
  batches: number;
  /** Requests resolved with a result. */
  completed: number;
  /** Requests rejected by a model error. */
  failed: number;
  /** Requests aborted by their signal. */
  aborted: number;
  /** Requests refused because the queue was full. */
  rejectedQueueFull: number;
  /** Mean requests per batch (0 before the first batch). */
  meanBatchSize: number;
  /** Largest batch run. */
  maxBatchSizeSeen: number;
  /** Share of computed positions that were padding, over all batches (0..1). */
  paddingRatio: number;
}

/** `submit` was refused because `maxQueue` requests are already waiting: retry later (HTTP 503). */
export class QueueFullError extends Error {
  readonly code = 'EQUEUEFULL';
  constructor(readonly maxQueue: number) {
    super(`attnode: the batch queue is full (${maxQueue} requests waiting); retry later`);
    this.name = 'QueueFullError';
  }
}

/** `submit` after {@link Batcher.close}. */
export class BatcherClosedError extends Error {
  readonly code = 'ECLOSED';
  constructor() {
    super('attnode: the batcher is closed (shutting down)');
    this.name = 'BatcherClosedError';
  }
}

interface Entry {
  /** int32 ids of length len, or float32 len·inputDim. */
  data: Int32Array | Float32Array;
  len: number;
  bucket: number;
  enqueuedAt: number;
  resolve: (t: Tensor<'float32'>) => void;
  reject: (e: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | null;
  /** Settled (aborted while its batch runs): the result is dropped. */
  done: boolean;
}

function abortReason(signal: AbortSignal): unknown {
  if (signal.reason instanceof Error) return signal.reason;
  const e = new Error('attnode: the request was aborted');
  e.name = 'AbortError';
  return e;
}

function positiveInt(name: string, v: number | undefined, dflt: number, min = 1): number {
  if (v === undefined) return dflt;
  if (v !== Infinity && (!Number.isInteger(v) || v < min)) {
    throw new RangeError(`Batcher: option '${name}' must be an integer >= ${min}, got ${String(v)}`);
  }
  return v;
}

/**
 * Pads sequences into one batch: ids `[N, S]` (padded with `padId`) or features
 * `[N, S, dim]` (zeros), plus the key padding mask (`true` at padding; null
 * when all lengths are equal, so an unpadded batch runs exactly as it would alone).
 */
export function padBatch(
  kind: 'ids' | 'features',
  rows: readonly (Int32Array | Float32Array)[],
  lengths: readonly number[],
  dim = 0,
  padId = 0,
): { input: Tensor<'int32'> | Tensor<'float32'>; mask: Tensor<'bool'> | null; maxLen: number } {
  const n = rows.length;
  const s = Math.max(...lengths);
  const width = kind === 'ids' ? 1 : dim;
  const padded = lengths.some((l) => l !== s);
  let input: Tensor<'int32'> | Tensor<'float32'>;
  if (kind === 'ids') {
    const data = new Int32Array(n * s);
    if (padded && padId !== 0) data.fill(padId);
    rows.forEach((r, i) => data.set(r as Int32Array, i * s));
    input = new Tensor(data, [n, s], 'int32');
  } else {
    const data = new Float32Array(n * s * width);
    rows.forEach((r, i) => data.set(r as Float32Array, i * s * width));
    input = new Tensor(data, [n, s, width], 'float32');
  }
  let mask: Tensor<'bool'> | null = null;
  if (padded) {
    const m = new Uint8Array(n * s);
    lengths.forEach((l, i) => m.fill(1, i * s + l, (i + 1) * s));
    mask = new Tensor(m, [n, s], 'bool');
  }
  return { input, mask, maxLen: s };
}

/** Row i of a batch-first `[N, S, E]` output, first `len` positions: a `[len, E]` view (no copy). */
export function unpadRow(out: Tensor<'float32'>, i: number, len: number): Tensor<'float32'> {
  const [, s, e] = out.shape as [number, number, number];
  return new Tensor(out.data.subarray(i * s * e, (i * s + len) * e), [len, e], 'float32');
}

/**
 * Collects concurrent single-sequence requests into padded, masked batches
 * and runs them on the native executor (see the module comment for the
 * trade-offs of each option).
 *
 * @example
 * const batcher = new Batcher(model, { maxBatchSize: 16, maxDelayMs: 2, maxQueue: 256 });
 * const rows = await batcher.submit([5, 17, 42]); // [3, dModel]
 */
export class Batcher {
  readonly maxBatchSize: number;
  readonly maxDelayMs: number;
  readonly maxQueue: number;
  readonly maxInFlight: number;
  readonly maxBatchTokens: number;
  readonly execution: 'async' | 'sync';
  readonly idleDispatch: 'immediate' | 'wait';
  readonly #model: BatchEncoder;
  readonly #bucketOf: (len: number) => number;
  #queue: Entry[] = [];
  #timer: NodeJS.Timeout | null = null;
  #timerDue = 0;
  #inFlight = 0;
  #inFlightRequests = 0;
  #closing = false;
  #drained: (() => void)[] = [];
  #stats = { batches: 0, completed: 0, failed: 0, aborted: 0, rejectedQueueFull: 0, batchedRequests: 0, maxBatch: 0, padded: 0, positions: 0 };

  constructor(model: BatchEncoder, options: BatcherOptions = {}) {
    if (!model || typeof model.forward !== 'function') throw new TypeError('Batcher: model must have a forward(input, keyPaddingMask) method');
    if (model.inputKind !== 'ids' && model.inputKind !== 'features') {
      throw new TypeError(`Batcher: model.inputKind must be 'ids' or 'features', got ${String(model.inputKind)}`);
    }
    if (model.inputKind === 'features' && !(Number.isInteger(model.inputDim) && model.inputDim! > 0)) {
      throw new TypeError('Batcher: a features model needs a positive integer inputDim');
    }
    this.#model = model;
    this.maxBatchSize = positiveInt('maxBatchSize', options.maxBatchSize, 16);
    this.maxDelayMs = options.maxDelayMs ?? 2;
    if (!(this.maxDelayMs >= 0) || !Number.isFinite(this.maxDelayMs)) {
      throw new RangeError(`Batcher: option 'maxDelayMs' must be a finite number >= 0, got ${String(options.maxDelayMs)}`);
    }
    this.maxQueue = positiveInt('maxQueue', options.maxQueue, 256, 0);
    this.maxInFlight = positiveInt('maxInFlight', options.maxInFlight, 2);
    this.maxBatchTokens = positiveInt('maxBatchTokens', options.maxBatchTokens, Infinity);
    this.idleDispatch = options.idleDispatch ?? 'immediate';
    if (this.idleDispatch !== 'immediate' && this.idleDispatch !== 'wait') {
      throw new TypeError(`Batcher: option 'idleDispatch' must be 'immediate' or 'wait', got ${String(options.idleDispatch)}`);
    }
    const jsModule = model instanceof Module && model.backend.name === 'js';
    this.execution = options.execution ?? (jsModule ? 'sync' : 'async');
    if (this.execution !== 'async' && this.execution !== 'sync') {
      throw new TypeError(`Batcher: option 'execution' must be 'async' or 'sync', got ${String(options.execution)}`);
    }
    const b = options.buckets ?? 'none';
    if (b === 'none') this.#bucketOf = () => 0;
    else if (b === 'pow2') this.#bucketOf = (len) => Math.ceil(Math.log2(len));
    else if (Array.isArray(b) && b.every((x, i) => Number.isInteger(x) && x > 0 && (i === 0 || x > b[i - 1]!))) {
      const bounds = b.slice();
      this.#bucketOf = (len) => {
        const i = bounds.findIndex((x) => len <= x);
        return i === -1 ? bounds.length : i;
      };
    } else throw new TypeError(`Batcher: option 'buckets' must be 'none', 'pow2' or ascending positive integers`);
  }

  /** Requests waiting to be dispatched. */
  get queueDepth(): number {
    return this.#queue.length;
  }

  /** How many more requests `submit` would accept right now (0 when closed). */
  get capacity(): number {
    return this.#closing ? 0 : Math.max(0, this.maxQueue - this.#queue.length);
  }

  /** True after {@link close}. */
  get closed(): boolean {
    return this.#closing;
  }

  /** A snapshot of the counters. */
  stats(): BatcherStats {
    const s = this.#stats;
    return {
      queueDepth: this.#queue.length,
      inFlightBatches: this.#inFlight,
      inFlightRequests: this.#inFlightRequests,
      batches: s.batches,
      completed: s.completed,
      failed: s.failed,
      aborted: s.aborted,
      rejectedQueueFull: s.rejectedQueueFull,
      meanBatchSize: s.batches ? s.batchedRequests / s.batches : 0,
      maxBatchSizeSeen: s.maxBatch,
      paddingRatio: s.positions ? s.padded / s.positions : 0,
    };
  }

  /**
   * Checks one input against the model (ids are integers in `[0, vocabSize)`,
   * 1 ≤ length ≤ maxSeqLen, features have `inputDim` columns) and returns it
   * in batch form.
   * @throws TypeError / RangeError describing the problem.
   */
  prepare(input: SequenceInput): { data: Int32Array | Float32Array; len: number } {
    const m = this.#model;
    let data: Int32Array | Float32Array;
    let len: number;
    if (m.inputKind === 'ids') {
      if (!(input instanceof Int32Array) && !Array.isArray(input)) {
        throw new TypeError('Batcher.submit: input must be an array of token ids or an Int32Array');
      }
      const arr = input as readonly number[] | Int32Array;
      len = arr.length;
      data = input instanceof Int32Array ? input : new Int32Array(len);
      const vocab = m.vocabSize ?? 2 ** 31;
      for (let i = 0; i < len; i++) {
        const v = arr[i]!;
        if (!Number.isInteger(v)) throw new TypeError(`Batcher.submit: token ${i} must be an integer, got ${String(v)}`);
        if (v < 0 || v >= vocab) throw new RangeError(`Batcher.submit: token ${i} is ${v}, outside [0, ${vocab})`);
        data[i] = v;
      }
    } else {
      const dim = m.inputDim!;
      if (!(input instanceof Tensor) || input.dtype !== 'float32' || input.ndim !== 2 || input.shape[1] !== dim) {
        throw new TypeError(`Batcher.submit: input must be a float32 Tensor of shape [seq, ${dim}]`);
      }
      data = input.data;
      len = input.shape[0]!;
    }
    if (len < 1) throw new RangeError('Batcher.submit: the sequence is empty');
    if (m.maxSeqLen !== undefined && len > m.maxSeqLen) {
      throw new RangeError(`Batcher.submit: the sequence has ${len} positions, more than the model's maximum ${m.maxSeqLen}`);
    }
    return { data, len };
  }

  /**
   * Queues one sequence; resolves with its output rows `[len, outputDim]`
   * (a view into the batch output: do not mutate if you share it), equal to
   * running the model on that sequence alone.
   *
   * Rejects with a TypeError/RangeError for a bad input, {@link QueueFullError}
   * when `maxQueue` requests are waiting, {@link BatcherClosedError} after
   * {@link close}, the signal's reason when aborted, or the model's error.
   */
  submit(input: SequenceInput, options: SubmitOptions = {}): Promise<Tensor<'float32'>> {
    const { signal } = options;
    if (this.#closing) return Promise.reject(new BatcherClosedError());
    if (signal?.aborted) {
      this.#stats.aborted++;
      return Promise.reject(abortReason(signal));
    }
    let prepared: { data: Int32Array | Float32Array; len: number };
    try {
      prepared = this.prepare(input);
    } catch (e) {
      return Promise.reject(e);
    }
    if (this.#queue.length >= this.maxQueue) {
      this.#stats.rejectedQueueFull++;
      return Promise.reject(new QueueFullError(this.maxQueue));
    }
    return new Promise<Tensor<'float32'>>((resolve, reject) => {
      const entry: Entry = {
        ...prepared,
        bucket: this.#bucketOf(prepared.len),
        enqueuedAt: performance.now(),
        resolve,
        reject,
        signal,
        onAbort: null,
        done: false,
      };
      if (signal) {
        entry.onAbort = () => this.#abort(entry);
        signal.addEventListener('abort', entry.onAbort, { once: true });
      }
      this.#queue.push(entry);
      this.#schedule();
    });
  }

  /**
   * Stops accepting requests (later `submit`s reject with
   * {@link BatcherClosedError}), dispatches what is queued without waiting for
   * `maxDelayMs`, and resolves once every queued and running request has settled.
   */
  close(): Promise<void> {
    this.#closing = true;
    this.#schedule();
    return this.#idle() ? Promise.resolve() : new Promise((r) => this.#drained.push(r));
  }

  #idle(): boolean {
    return this.#queue.length === 0 && this.#inFlight === 0;
  }

  #settle(e: Entry): void {
    e.done = true;
    if (e.onAbort) e.signal!.removeEventListener('abort', e.onAbort);
    e.onAbort = null;
  }

  #abort(e: Entry): void {
    if (e.done) return;
    const i = this.#queue.indexOf(e);
    if (i !== -1) this.#queue.splice(i, 1);
    this.#settle(e);
    this.#stats.aborted++;
    e.reject(abortReason(e.signal!));
    if (i !== -1) this.#checkDrained();
    // An entry of a running batch: the batch goes on for the others (see #run).
  }

  #checkDrained(): void {
    if (this.#idle() && this.#drained.length) for (const r of this.#drained.splice(0)) r();
  }

  /** Dispatches batches while the executor has room and the oldest request has waited long enough (or a batch is full). */
  #schedule(): void {
    while (this.#inFlight < this.maxInFlight && this.#queue.length > 0) {
      const waited = performance.now() - this.#queue[0]!.enqueuedAt;
      const idle = this.#inFlight === 0 && this.idleDispatch === 'immediate';
      if (this.#closing || idle || this.maxDelayMs === 0 || waited >= this.maxDelayMs || this.#queue.length >= this.maxBatchSize) {
        this.#dispatch(this.#take());
        continue;
      }
      const due = this.#queue[0]!.enqueuedAt + this.maxDelayMs;
      if (this.#timer === null || this.#timerDue > due + 0.5) {
        if (this.#timer) clearTimeout(this.#timer);
        this.#timerDue = due;
        this.#timer = setTimeout(() => {
          this.#timer = null;
          this.#schedule();
        }, Math.max(0, due - performance.now()));
      }
      return;
    }
    if (this.#timer && this.#queue.length === 0) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
  }

  /** The oldest request and the next ones of its length bucket, FIFO, within maxBatchSize and maxBatchTokens. */
  #take(): Entry[] {
    const q = this.#queue;
    const first = q[0]!;
    const batch = [first];
    let maxLen = first.len;
    const keep: Entry[] = [];
    for (let i = 1; i < q.length; i++) {
      const e = q[i]!;
      const len = Math.max(maxLen, e.len);
      if (batch.length < this.maxBatchSize && e.bucket === first.bucket && (batch.length + 1) * len <= this.maxBatchTokens) {
        batch.push(e);
        maxLen = len;
      } else keep.push(e);
    }
    this.#queue = keep;
    return batch;
  }

  #dispatch(batch: Entry[]): void {
    this.#inFlight++;
    this.#inFlightRequests += batch.length;
    void this.#run(batch).finally(() => {
      this.#inFlight--;
      this.#inFlightRequests -= batch.length;
      this.#schedule();
      this.#checkDrained();
    });
  }

  /** Runs entries as one padded batch; the batch is cancelled if every request in it gets aborted before it starts. */
  async #forward(entries: Entry[], controller: AbortController): Promise<Tensor<'float32'>> {
    const m = this.#model;
    const { input, mask, maxLen } = padBatch(
      m.inputKind, entries.map((e) => e.data), entries.map((e) => e.len), m.inputDim ?? 0, m.padId ?? 0,
    );
    const s = this.#stats;
    s.positions += entries.length * maxLen;
    for (const e of entries) s.padded += maxLen - e.len;
    // Inference: grad mode off (runAsync keeps the mode it was called in).
    const out = this.execution === 'async'
      ? await noGrad(() => runAsync(() => m.forward(input, mask), { signal: controller.signal, reuseBuffers: true }))
      : noGrad(() => m.forward(input, mask));
    if (out.ndim !== 3 || out.shape[0] !== entries.length || out.shape[1] !== maxLen) {
      throw new RangeError(`Batcher: the model must return [N, S, E] = [${entries.length}, ${maxLen}, E], got [${out.shape.join(', ')}]`);
    }
    return out;
  }

  async #run(batch: Entry[]): Promise<void> {
    const s = this.#stats;
    s.batches++;
    s.batchedRequests += batch.length;
    s.maxBatch = Math.max(s.maxBatch, batch.length);
    const controller = new AbortController();
    const cancelIfAllAborted = (): void => {
      if (batch.every((e) => e.done)) controller.abort();
    };
    for (const e of batch) e.signal?.addEventListener('abort', cancelIfAllAborted, { once: true });
    try {
      let out: Tensor<'float32'>;
      try {
        out = await this.#forward(batch, controller);
      } catch (err) {
        if (controller.signal.aborted) return; // every request already rejected with its own reason
        if (batch.length === 1) throw err;
        // Isolate the failure: run each request alone, so one bad request cannot fail the others.
        for (const e of batch) {
          if (e.done) continue;
          try {
            this.#deliver(e, unpadRow(await this.#forward([e], new AbortController()), 0, e.len));
          } catch (err1) {
            this.#fail(e, err1);
          }
        }
        return;
      }
      let delivered = 0;
      batch.forEach((e, i) => {
        if (this.#deliver(e, unpadRow(out, i, e.len))) delivered++;
      });
      // The batch's output goes back to the pool when every row handed out was released (see release); with none
      // handed out (all aborted meanwhile) at once.
      if (delivered > 0) this.#outstanding.set(out.data.buffer, delivered);
      else returnResultBuffer(out.data.buffer);
    } catch (err) {
      for (const e of batch) this.#fail(e, err);
    } finally {
      for (const e of batch) e.signal?.removeEventListener('abort', cancelIfAllAborted);
    }
  }

  #deliver(e: Entry, t: Tensor<'float32'>): boolean {
    if (e.done) return false;
    this.#settle(e);
    this.#stats.completed++;
    e.resolve(t);
    return true;
  }

  /** Rows handed out and not yet released, per batch output buffer. */
  readonly #outstanding = new WeakMap<ArrayBufferLike, number>();
  /** The rows released so far (a second release of one changes nothing). */
  readonly #released = new WeakSet<Tensor<'float32'>>();

  /**
   * Tells the batcher the caller is done with `row`, a tensor {@link submit} resolved with: nothing reads it any
   * more. Once every row of its batch is released, the batch's output buffer goes back to the buffer pool for the
   * next batch instead of waiting for V8's collector (a server's embeddings route releases each row after pooling
   * it). Rows never released leave their batch to the GC, as before. Other tensors are ignored.
   */
  release(row: Tensor<'float32'>): void {
    const ab = row?.data?.buffer;
    const n = ab === undefined ? undefined : this.#outstanding.get(ab);
    if (n === undefined || this.#released.has(row)) return;
    this.#released.add(row);
    if (n > 1) {
      this.#outstanding.set(ab!, n - 1);
      return;
    }
    this.#outstanding.delete(ab!);
    returnResultBuffer(ab!);
  }

  #fail(e: Entry, err: unknown): void {
    if (e.done) return;
    this.#settle(e);
    this.#stats.failed++;
    e.reject(err);
  }
}
