/**
 * Async execution: the same ops and modules, run off the JS thread.
 *
 * `runAsync(fn)` calls `fn` with every native kernel call *recorded* instead
 * of run: shapes and arguments are validated and outputs allocated on the JS
 * thread; the kernels then run in order on the native executor thread (using
 * the thread pool), and the promise resolves with `fn`'s return value once
 * they are done. `module.forwardAsync(...)` is `runAsync(() => module.forward(...))`.
 *
 * Backpressure: at most {@link AsyncLimits.maxRecordedAhead} calls (default 2)
 * are recorded and handed to the executor at a time. A call made while that
 * many are running waits in a FIFO queue in JS *unrecorded* (its closure and
 * options only: O(1) memory, no buffers allocated), and is recorded when an
 * earlier call settles. So submitting N calls costs O(1) each on the event
 * loop, the executor never runs dry (one list runs while the next waits), and
 * the intermediates alive at once are those of ~K calls, not N. Calls are
 * recorded, run and settled in the order they were made. Past
 * {@link AsyncLimits.maxQueued} waiting calls (default unbounded) a call is
 * rejected with a RangeError whose `code` is `'ATTNODE_ASYNC_QUEUE_FULL'`.
 *
 * Rules while a call is in flight:
 * - Do not mutate its input tensors or read its outputs before the promise
 *   settles. A queued call runs `fn` later (when it is recorded), so this
 *   applies to everything `fn` reads.
 * - Code inside `fn` must not read kernel outputs (they are not computed yet);
 *   attnode's own modules never do. The JS backend cannot be used inside a
 *   recording `fn` (it would run immediately, out of order): that is an error.
 * - When the addon is missing, or the current backend (`getBackend()`) is not
 *   native, `runAsync` runs `fn` synchronously, at the call, and returns a
 *   settled promise (the TS backend has no executor to defer to).
 * - A `runAsync` inside a recording `fn` joins the enclosing list: it runs
 *   `fn` right away, and its promise settles (with the not yet computed result)
 *   before the enclosing call's does.
 *
 * Each call gives exactly the result of a sync call.
 */
import { addon } from './backend/native';
import { getBackend } from './backend/registry';
import { currentContext, withContext } from './context';
import type { Backend } from './backend/backend';
import { beginDeferredRelease, endDeferredRelease, newBufferScope, releaseBufferScope, type BufferScope } from './workspace';

/** Options of {@link runAsync}. */
export interface RunAsyncOptions {
  /**
   * Aborting before the work starts rejects with an AbortError and skips it.
   * A call still waiting in the queue is removed: `fn` never runs.
   */
  signal?: AbortSignal;
  /**
   * Take every large op output of `fn` from a pool and return the ones not
   * reachable from the result when the call settles (see lib/workspace.ts).
   * Only for a `fn` that keeps nothing it computes except through its return
   * value. Default false; without it, intermediates of module forwards
   * inside `fn` are still recycled (the contract sync forwards already have),
   * ops `fn` calls directly are not.
   */
  reuseBuffers?: boolean;
  /**
   * The call reads nothing that another call in flight writes and writes nothing another reads (a pipeline's
   * batches): it may then run beside other concurrent calls, each whole on one thread, as many at once as the
   * pool has threads (`setNumThreads`), instead of one call at a time with every kernel split over the threads.
   * Small kernels split badly; independent calls share nothing, so n of them side by side keep n cores busy.
   * Results are the same either way (no kernel's arithmetic depends on its thread count); concurrent calls may
   * finish out of order, but still settle in the order they were made. A call that is not concurrent waits for
   * every earlier call and runs alone. Up to threads + 1 concurrent calls are recorded ahead (at least
   * `maxRecordedAhead`). Default false.
   */
  concurrent?: boolean;
}

/** Limits of the async queue (see the module comment and {@link setAsyncLimits}). */
export interface AsyncLimits {
  /** Calls recorded and on the executor at once (default 2). More overlap buys nothing: the executor runs one list at a time. */
  maxRecordedAhead: number;
  /** Calls allowed to wait unrecorded; one more is rejected with code 'ATTNODE_ASYNC_QUEUE_FULL' (default Infinity). */
  maxQueued: number;
}

const limits: AsyncLimits = { maxRecordedAhead: 2, maxQueued: Infinity };

/**
 * Changes the async queue's limits (for all later calls; calls already queued
 * stay queued). Returns the limits now in force.
 * @throws TypeError if `changes` is not an object; RangeError naming the field
 * for a value that is not a positive integer (`maxQueued`: or Infinity, or 0).
 */
export function setAsyncLimits(changes: Partial<AsyncLimits>): AsyncLimits {
  if (changes === null || typeof changes !== 'object') {
    throw new TypeError(`setAsyncLimits: argument 'changes' must be an object, got ${changes === null ? 'null' : typeof changes}`);
  }
  const { maxRecordedAhead, maxQueued } = changes;
  if (maxRecordedAhead !== undefined && !(Number.isInteger(maxRecordedAhead) && maxRecordedAhead >= 1)) {
    throw new RangeError(`setAsyncLimits: 'maxRecordedAhead' must be an integer >= 1, got ${String(maxRecordedAhead)}`);
  }
  if (maxQueued !== undefined && !((Number.isInteger(maxQueued) && maxQueued >= 0) || maxQueued === Infinity)) {
    throw new RangeError(`setAsyncLimits: 'maxQueued' must be an integer >= 0 or Infinity, got ${String(maxQueued)}`);
  }
  if (maxRecordedAhead !== undefined) limits.maxRecordedAhead = maxRecordedAhead;
  if (maxQueued !== undefined) limits.maxQueued = maxQueued;
  pump();
  return { ...limits };
}

/** The limits in force. */
export function getAsyncLimits(): AsyncLimits {
  return { ...limits };
}

interface Waiting {
  fn: () => unknown;
  options: RunAsyncOptions;
  /** Grad mode when the call was made (restored when it runs). */
  gradEnabled: boolean;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  onAbort: (() => void) | null;
  /** Set when it left the queue (aborted); dequeuing skips it. */
  gone: boolean;
}

/** Calls recorded and submitted by this module that have not settled. */
let running = 0;
/** FIFO of calls not yet recorded; `head` indexes the next one (an O(1) shift). */
let queue: Waiting[] = [];
let head = 0;
/** Entries in `queue[head..]` that are not `gone`. */
let queued = 0;

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  const e = new Error('attnode: the call was aborted before it ran');
  e.name = 'AbortError';
  return e;
}

function queueFullError(): RangeError {
  const e = new RangeError(
    `runAsync: the async queue is full: expected at most ${limits.maxQueued} waiting calls (setAsyncLimits({ maxQueued })), got one more`,
  ) as RangeError & { code: string };
  e.code = 'ATTNODE_ASYNC_QUEUE_FULL';
  return e;
}

function checkOptions(options: unknown): RunAsyncOptions {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`runAsync: argument 'options' must be an object, got ${options === null ? 'null' : typeof options}`);
  }
  const { signal, reuseBuffers, concurrent } = options as RunAsyncOptions;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(`runAsync: option 'signal' must be an AbortSignal, got ${signal === null ? 'null' : typeof signal}`);
  }
  if (reuseBuffers !== undefined && typeof reuseBuffers !== 'boolean') {
    throw new TypeError(`runAsync: option 'reuseBuffers' must be a boolean, got ${typeof reuseBuffers}`);
  }
  if (concurrent !== undefined && typeof concurrent !== 'boolean') {
    throw new TypeError(`runAsync: option 'concurrent' must be a boolean, got ${typeof concurrent}`);
  }
  return options as RunAsyncOptions;
}

/**
 * Runs `fn`'s native kernel calls on the native executor thread; resolves
 * with `fn`'s result when they finish. See the module comment for the queue,
 * ordering and the rules while a call is in flight.
 */
export function runAsync<T>(fn: () => T, options?: RunAsyncOptions): Promise<T> {
  return runAsyncOn(null, fn, options);
}

/**
 * {@link runAsync} for work that computes on `backend` (null: the current
 * backend): a non-native one runs `fn` synchronously. For
 * `Module.forwardAsync`, whose module may use another backend than the
 * context's.
 * @internal
 */
export function runAsyncOn<T>(backend: Backend | null, fn: () => T, options?: RunAsyncOptions): Promise<T> {
  try {
    if (typeof fn !== 'function') throw new TypeError(`runAsync: argument 'fn' must be a function, got ${typeof fn}`);
    const opts = checkOptions(options);
    const { signal } = opts;
    if (signal?.aborted) return Promise.reject(abortError(signal));
    // Nested: part of the enclosing recording (its kernels run with that list's).
    if (currentContext().recording) return Promise.resolve(fn());
    // Nothing to defer to: the TS backend computes now.
    if (!addon || (backend ?? getBackend()).name !== 'native') return Promise.resolve(fn());
    // Grad mode as at the call (a queued call runs later, outside any noGrad frame it was made in).
    const { gradEnabled } = currentContext();
    if (running < recordLimit(opts) && queued === 0) {
      return new Promise<T>((resolve, reject) => start(fn, opts, gradEnabled, resolve, reject));
    }
    if (queued >= limits.maxQueued) return Promise.reject(queueFullError());
    return new Promise<T>((resolve, reject) => {
      const w: Waiting = {
        fn, options: opts, gradEnabled, resolve: resolve as (v: unknown) => void, reject, onAbort: null, gone: false,
      };
      if (signal) {
        w.onAbort = (): void => {
          if (w.gone) return;
          // Not recorded yet: nothing was allocated or submitted, so leaving the queue is all there is to it.
          w.gone = true;
          queued--;
          reject(abortError(signal));
        };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      queue.push(w);
      queued++;
    });
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * Calls recorded ahead before one with these options waits: `maxRecordedAhead`, or for a concurrent call enough to
 * keep every lane busy with one more ready (threads + 1).
 */
function recordLimit(options: RunAsyncOptions): number {
  return options.concurrent ? Math.max(limits.maxRecordedAhead, addon!.getNumThreads() + 1) : limits.maxRecordedAhead;
}

/** Records the waiting calls that fit under the limit, oldest first. */
function pump(): void {
  while (queued > 0) {
    const w = queue[head]!;
    if (!w.gone && running >= recordLimit(w.options)) break;
    queue[head++] = undefined as unknown as Waiting; // let it be collected
    if (head > 1024 && head * 2 > queue.length) {
      queue = queue.slice(head);
      head = 0;
    }
    if (w.gone) continue;
    w.gone = true;
    queued--;
    if (w.onAbort) w.options.signal!.removeEventListener('abort', w.onAbort);
    start(w.fn, w.options, w.gradEnabled, w.resolve, w.reject);
  }
  // Only aborted entries (or none) left: drop them so the array does not keep growing.
  if (queued === 0 && queue.length > 0) {
    queue = [];
    head = 0;
  }
}

/**
 * Submitted calls not yet settled, oldest first. The executor finishes lists
 * in submission order, but each list reports back through its own
 * thread-safe function, and libuv may deliver two that finish close together
 * in either order: a call settles only once every earlier one has, so callers
 * see FIFO.
 */
const started: { outcome: { ok: boolean; err?: unknown } | null; finish: (ok: boolean, err?: unknown) => void }[] = [];

function deliverInOrder(): void {
  while (started.length > 0 && started[0]!.outcome) {
    const s = started.shift()!;
    s.finish(s.outcome!.ok, s.outcome!.err);
  }
}

/**
 * Records `fn` into a new command list, submits it, and settles through
 * `resolve`/`reject` (passed in rather than chained, so every call is the
 * same number of promise hops from its outcome and FIFO holds for the caller's
 * continuations too). `running` counts it until it settles.
 */
function start<T>(
  fn: () => T, options: RunAsyncOptions, gradEnabled: boolean, resolve: (v: T) => void, reject: (e: unknown) => void,
): void {
  const a = addon!;
  const list = a.createCommandList();
  const scope: BufferScope | null = options.reuseBuffers ? newBufferScope() : null;
  // Intermediates of module forwards recorded into `list` go back to the pool when it settles.
  const deferred = beginDeferredRelease(list);
  let result: T;
  try {
    // Recording: every native call appends to `list`; outputs come from `scope` (or fresh buffers).
    result = withContext({ recording: list, bufferScope: scope, gradEnabled }, fn);
  } catch (err) {
    // Nothing was submitted, so nothing will touch the buffers.
    endDeferredRelease(list, deferred);
    if (scope) releaseBufferScope(scope, null);
    reject(err);
    return;
  }
  const { signal } = options;
  const onAbort = (): void => a.cancel(list);
  let submitted: Promise<void>;
  try {
    submitted = options.concurrent ? a.submit(list, { concurrent: true }) : a.submit(list);
  } catch (err) {
    endDeferredRelease(list, deferred);
    if (scope) releaseBufferScope(scope, null);
    reject(err);
    return;
  }
  running++;
  signal?.addEventListener('abort', onAbort, { once: true });
  const entry: (typeof started)[number] = {
    outcome: null,
    finish: (ok, err) => {
      running--;
      signal?.removeEventListener('abort', onAbort);
      // Only now are the kernels done with the buffers; a failed call hands nothing out.
      endDeferredRelease(list, deferred);
      if (scope) releaseBufferScope(scope, ok ? result : null);
      // The next waiting call is recorded before this one's continuations run, so the executor is fed first.
      pump();
      if (ok) resolve(result);
      else if (signal?.aborted && (err as Error | undefined)?.name === 'AbortError') reject(abortError(signal));
      else reject(err);
    },
  };
  started.push(entry);
  submitted.then(
    () => {
      entry.outcome = { ok: true };
      deliverInOrder();
    },
    (err: unknown) => {
      entry.outcome = { ok: false, err };
      deliverInOrder();
    },
  );
}

/** Native command lists queued or running on the executor, from every caller (0 without the addon). */
export function pendingAsyncCalls(): number {
  return addon ? addon.pendingJobs() : 0;
}

/**
 * Calls waiting unrecorded in runAsync's queue (not yet handed to the
 * executor): the backpressure at work. Aborted calls leave it at once.
 */
export function queuedAsyncCalls(): number {
  return queued;
}

/** Calls runAsync has recorded and submitted that have not settled (at most `maxRecordedAhead`). */
export function recordedAsyncCalls(): number {
  return running;
}
