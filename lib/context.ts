/**
 * The execution context: the one object that decides how ops run.
 *
 * An op's behaviour follows from its arguments and the current context alone.
 * The context says
 * - which backend ops run on when an op is not given one (`backend`; null: the
 *   default, see lib/backend/registry.ts),
 * - the precision of weight GEMMs and of attention's products
 *   (`weightPrecision`, `attentionPrecision`; modules set them for their
 *   forward with `useWeightPrecision` / `useAttentionPrecision`),
 * - whether native calls run now or are recorded into a command list for
 *   `runAsync` (`recording`),
 * - where large op outputs are allocated (`bufferScope`: lent from the pool
 *   of lib/workspace.ts inside a module's forward or a `reuseBuffers` async
 *   call; null: fresh buffers).
 * - whether ops record their backward for autograd (`gradEnabled`: grad
 *   mode, on by default as in PyTorch; `noGrad(fn)` turns it off). An op
 *   records a backward node only when grad mode is on and one of its inputs
 *   requires grad, so inference on tensors that do not require grad costs
 *   one flag test per op (lib/autograd/).
 *
 * Contexts are immutable frames on a stack: {@link withContext} runs a
 * synchronous function with some fields changed and restores the previous
 * frame when it returns or throws. Only the root frame's `backend` can be set
 * in place, by `setBackend`. Nothing else in `lib/` holds state that changes
 * what a call computes (the weight-packing and buffer pools are caches: they
 * change where bytes live, never the result).
 */
import type { AttentionPrecision, Backend, WeightPrecision } from './backend/backend';

/** An opaque native command list (created by the addon). */
export type CommandList = { readonly __commandList: unique symbol };

/** Buffers lent to one forward or async call (see lib/workspace.ts). */
export interface BufferScope {
  /** Every ArrayBuffer taken from the pool while this scope was current. */
  readonly taken: ArrayBuffer[];
  /**
   * A scope of `reuseBuffers`: forwards nested in it leave the buffers their graph saves to the graph (returned as
   * the backward frees each), not to it; only their results move into it.
   */
  readonly root?: boolean;
  /**
   * Set while a replayed program is recorded (lib/forward-program.ts): the program's own buffers by size class.
   * Scopes inside it hand their dead buffers back here, never to the shared pool, so the recorded calls keep them.
   */
  readonly own?: Map<number, ArrayBuffer[]>;
}

/** How ops run; see the module comment. */
export interface ExecutionContext {
  /** The backend ops use when not told otherwise; null: the default backend. */
  readonly backend: Backend | null;
  /** Precision of GEMMs with a constant (cached) weight. */
  readonly weightPrecision: WeightPrecision;
  /** Precision of attention's q·kᵀ and probabilities·v. */
  readonly attentionPrecision: AttentionPrecision;
  /** The command list native calls are recorded into, or null when they run immediately. */
  readonly recording: CommandList | null;
  /** Where op outputs are lent from, or null for fresh buffers. */
  readonly bufferScope: BufferScope | null;
  /** Grad mode: ops on tensors that require grad record their backward (default true; see `noGrad`). */
  readonly gradEnabled: boolean;
}

const root: { -readonly [K in keyof ExecutionContext]: ExecutionContext[K] } = {
  backend: null,
  weightPrecision: 'float32',
  attentionPrecision: 'float32',
  recording: null,
  bufferScope: null,
  gradEnabled: true,
};

let current: ExecutionContext = root;

/** The context ops run in now. */
export function currentContext(): ExecutionContext {
  return current;
}

/**
 * Runs `fn` (synchronously) in the current context with `changes` applied,
 * then restores the previous context, also when `fn` throws. Promises `fn`
 * returns are not awaited: asynchronous work captures what it needs while it
 * is recorded (see lib/async.ts).
 */
export function withContext<T>(changes: Partial<ExecutionContext>, fn: () => T): T {
  const previous = current;
  current = { ...previous, ...changes };
  try {
    return fn();
  } finally {
    current = previous;
  }
}

/** Sets the root context's backend (what `setBackend` does); null restores the default. */
export function setRootBackend(backend: Backend | null): void {
  root.backend = backend;
}

/** Sets the root context's grad mode (what `setGradEnabled` does). */
export function setRootGradEnabled(enabled: boolean): void {
  root.gradEnabled = enabled;
}

/** The root context's backend choice. */
export function rootBackend(): Backend | null {
  return root.backend;
}
