/**
 * Async execution: the same ops and modules, run off the JS thread.
 *
 * `runAsync(fn)` calls `fn` with every native kernel call *recorded* instead
 * of run: shapes and arguments are validated and outputs allocated right
 * away, on the JS thread; the kernels then run in order on the native executor
 * thread (using the thread pool), and the promise resolves with `fn`'s return
 * value once they are done. `module.forwardAsync(...)` is
 * `runAsync(() => module.forward(...))`.
 *
 * Rules while a call is in flight:
 * - Do not mutate its input tensors or read its outputs before the promise
 *   settles. The buffers are kept alive by the addon until then.
 * - Code inside `fn` must not read kernel outputs (they are not computed yet);
 *   attnode's own modules never do. The JS backend cannot be used inside
 *   `fn` (it would run immediately, out of order): that is an error.
 * - Without the native addon, `runAsync` runs `fn` synchronously and returns
 *   a resolved promise.
 *
 * Many calls may be in flight at once (e.g. one per HTTP request): they run
 * one after another on the executor, each spread over the pool, so they never
 * oversubscribe the cores, and each gives exactly the result of a sync call.
 */
import { addon } from './backend/native';
import { currentContext, withContext } from './context';
import { newBufferScope, releaseBufferScope } from './workspace';

/** Options of {@link runAsync}. */
export interface RunAsyncOptions {
  /** Aborting before the work starts rejects with an AbortError and skips it. */
  signal?: AbortSignal;
  /**
   * Take large op outputs from a pool and return the ones not reachable from
   * the result when the call settles (see lib/workspace.ts): far fewer new
   * ArrayBuffers, so far fewer full GCs under load. Only for a `fn` that keeps
   * nothing it computes except through its return value (a plain `forward`).
   * Default false.
   */
  reuseBuffers?: boolean;
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  const e = new Error('attnode: the call was aborted before it ran');
  e.name = 'AbortError';
  return e;
}

/** Runs `fn`'s native kernel calls on the native executor thread; resolves with `fn`'s result when they finish. */
export async function runAsync<T>(fn: () => T, options: RunAsyncOptions = {}): Promise<T> {
  const { signal } = options;
  if (signal?.aborted) throw abortError(signal);
  if (!addon) return fn();
  // Nested: part of the enclosing recording.
  if (currentContext().recording) return fn();
  const list = addon.createCommandList();
  let result: T;
  const scope = options.reuseBuffers ? newBufferScope() : null;
  try {
    // Recording: every native call appends to `list`; outputs come from `scope` (or fresh buffers).
    result = withContext({ recording: list, bufferScope: scope }, fn);
  } catch (err) {
    if (scope) releaseBufferScope(scope, null);
    throw err;
  }
  const onAbort = (): void => addon!.cancel(list);
  signal?.addEventListener('abort', onAbort, { once: true });
  let ok = false;
  try {
    await addon.submit(list);
    ok = true;
  } catch (err) {
    if (signal?.aborted && (err as Error).name === 'AbortError') throw abortError(signal);
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    // Only now are the kernels done with the buffers; a failed call hands nothing out.
    if (scope) releaseBufferScope(scope, ok ? result : null);
  }
  return result;
}

/** Native command lists queued or running (0 without the addon). */
export function pendingAsyncCalls(): number {
  return addon ? addon.pendingJobs() : 0;
}
