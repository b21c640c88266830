/**
 * Buffer reuse for the intermediates of synchronous module forwards
 * ({@link withForwardScope}) and for async calls that opt in
 * (`runAsync(fn, { reuseBuffers: true })`).
 *
 * Every op output is a new ArrayBuffer, and V8 counts ArrayBuffers as
 * external memory: a server running hundreds of batches a second churns
 * through enough of it to trigger a full mark-compact GC every ~50 ms, each a
 * pause of several milliseconds on the event loop. Inside an opted-in call,
 * large op outputs instead come from a pool of ArrayBuffers bucketed by size
 * class; when the call settles, every buffer it took that is not reachable from
 * its result goes back to the pool for the next call.
 *
 * Size classes, not exact sizes: a batching server runs a different [N, S]
 * every time, so exact-size buckets almost never hit (measured: a mark-compact
 * every ~50 ms either way). Classes are 2^k, 1.25·2^k, 1.5·2^k and 1.75·2^k
 * bytes: at most 25% of a buffer is unused, and the handful of classes a
 * workload touches is reused across every shape that falls in them.
 *
 * The contract that makes this safe: the function passed to runAsync must not
 * keep any tensor it computes other than through its return value (attnode's
 * `forward` methods don't; the step APIs of decoding, which store K/V in a
 * cache, do — so generation does not opt in).
 */
import { currentContext, withContext, type BufferScope } from './context';
import { argTypeError } from './errors';

export type { BufferScope } from './context';

/** Pooled bytes are capped so an unusual burst cannot pin memory forever. */
const MAX_POOLED_BYTES = 256 * 1024 * 1024;
/**
 * Training raises the cap to what its steps hand back: 1.5 × the largest step seen (the graph's buffers, the
 * backward's scratch, the recycled gradients), since every step takes all of it again (the default seed model's
 * step, batch 8 × 32: 754 MiB pooled after zeroGrad; under a 256 MiB cap the rest went to the GC and the next
 * backward faulted in ~7,000 fresh pages and ran ~25 % longer).
 * clearBufferPool resets it.
 */
let trainingCap = 0;
/** Bytes handed back since the current training step's backward began. */
let stepBytes = 0;

/** Notes `bytes` handed back by a training step before they are returned, raising the cap if needed. */
function noteStepBytes(bytes: number): void {
  stepBytes += bytes;
  trainingCap = Math.max(trainingCap, Math.ceil(1.5 * stepBytes));
}
const pool = new Map<number, ArrayBuffer[]>();
let pooledBytes = 0;
/** Bytes scopes took from the pool, and the part of them it had to allocate (since the last clearBufferPool). */
let takenBytes = 0;
let freshBytes = 0;

/**
 * Internal (tests, diagnostics): bytes buffer scopes took since the last {@link clearBufferPool}, and how many of
 * them were fresh allocations rather than buffers handed back earlier. A training step that recycles each buffer
 * as soon as it is dead allocates far less than it takes.
 */
export function bufferPoolCounters(): { takenBytes: number; freshBytes: number } {
  return { takenBytes, freshBytes };
}
/** `ATTNODE_REUSE_INTERMEDIATES=0` turns {@link withForwardScope} off (every intermediate a fresh buffer). */
const forwardScopes = typeof process === 'undefined' || process.env.ATTNODE_REUSE_INTERMEDIATES !== '0';

/** A new, empty scope: run calls in it with `withContext({ bufferScope })`, then {@link releaseBufferScope}. */
export function newBufferScope(): BufferScope {
  return { taken: [] };
}

/**
 * An ArrayBuffer of at least `bytes` (its size class) from the pool when the
 * execution context has a buffer scope (and records it there), or null.
 */
export function takeScopedBuffer(bytes: number): ArrayBuffer | null {
  const scope = currentContext().bufferScope;
  if (!scope) return null;
  const cls = sizeClass(bytes);
  // A program being recorded takes its own dead buffers first, then the shared pool's (it keeps both).
  let ab = scope.own?.get(cls)?.pop();
  if (ab) {
    scope.taken.push(ab);
    return ab;
  }
  const bucket = pool.get(cls);
  ab = bucket?.pop();
  takenBytes += cls;
  if (ab) {
    idle.delete(ab);
    pooledBytes -= cls;
  } else {
    const b = Buffer.allocUnsafeSlow(cls);
    ab = b.buffer as ArrayBuffer;
    freshBytes += cls;
  }
  lent.add(ab);
  scope.taken.push(ab);
  return ab;
}

/** Every buffer the pool has lent (fresh or reused): only these may come back through {@link returnResultBuffer}. */
const lent = new WeakSet<ArrayBuffer>();

/** The smallest size class (2^k · {1, 1.25, 1.5, 1.75}) holding `bytes`; the caller views only the bytes it asked for. */
export function sizeClass(bytes: number): number {
  if (bytes <= 1024) return 1024;
  const pow = 2 ** Math.floor(Math.log2(bytes));
  const step = pow / 4;
  return Math.ceil(bytes / step) * step;
}

/**
 * Returns the scope's buffers to the pool, except those reachable from
 * `result`, which move to `parent` (an enclosing forward scope) if given.
 * When `result` holds an autograd graph, the buffers a graph node saved stay too: with a parent they move to it,
 * at the outermost forward they become the graph's ({@link releaseSavedBuffer} returns each once the last node
 * saving it has run backward). Every other buffer is dead already and goes back now.
 */
export function releaseBufferScope(scope: BufferScope, result: unknown, parent: BufferScope | null = null): void {
  const keep = new Set<ArrayBufferLike>();
  const graph = collectBuffers(result, keep, 0);
  for (const ab of scope.taken) {
    if (keep.has(ab)) {
      parent?.taken.push(ab);
      continue;
    }
    if (graph && (saveCounts.get(ab) ?? 0) > 0) {
      // Under a reuseBuffers scope the graph still owns them: the backward hands each back as it frees its nodes,
      // which keeps a step's high-water mark where it is without the scope.
      if (parent && !parent.root) parent.taken.push(ab);
      else graphOwned.add(ab);
      continue;
    }
    if (scope.own) keepOwn(scope.own, ab);
    else returnToPool(ab);
  }
  scope.taken.length = 0;
}

/** A program's dead buffer, for its later calls (see {@link BufferScope.own}). */
function keepOwn(own: Map<number, ArrayBuffer[]>, ab: ArrayBuffer): void {
  let bucket = own.get(ab.byteLength);
  if (!bucket) own.set(ab.byteLength, (bucket = []));
  bucket.push(ab);
}

/**
 * A scope for recording a replayed program: forwards recorded inside it reuse each other's dead buffers as
 * synchronous forwards do (the program runs its calls in the order they were recorded, so a buffer is written
 * again only after its last reader ran), and every buffer stays the program's. {@link releaseProgramBuffers} hands
 * them to the shared pool once the program is dropped.
 */
export function newProgramScope(): BufferScope {
  return { taken: [], own: new Map() };
}

/** Hands every buffer of a dropped program's scope (see {@link newProgramScope}) to the shared pool. */
export function releaseProgramBuffers(scope: BufferScope): void {
  for (const ab of scope.taken) returnToPool(ab);
  scope.taken.length = 0;
  for (const bucket of scope.own?.values() ?? []) for (const ab of bucket) returnToPool(ab);
  scope.own?.clear();
}

/**
 * How many live graph nodes save a tensor on each buffer (lib/autograd/graph.ts counts its saved tensors' buffers
 * here when it records and when it frees a node).
 */
const saveCounts = new WeakMap<ArrayBufferLike, number>();
/** Pooled buffers an outermost forward left to its graph: they go back when no live node saves them any more. */
const graphOwned = new WeakSet<ArrayBufferLike>();

/** A graph node saves a tensor on `ab` (see {@link releaseSavedBuffer}). */
export function holdSavedBuffer(ab: ArrayBufferLike): void {
  saveCounts.set(ab, (saveCounts.get(ab) ?? 0) + 1);
}

/**
 * A node saving a tensor on `ab` was freed. True when that was the last such node and `ab` is a buffer its
 * forward left to the graph: nothing reads it any more, and the caller (the backward engine) hands it back with
 * {@link returnGraphBuffer}, now or once no gradient it still holds is a view of it.
 */
export function releaseSavedBuffer(ab: ArrayBufferLike): boolean {
  const n = (saveCounts.get(ab) ?? 0) - 1;
  if (n > 0) {
    saveCounts.set(ab, n);
    return false;
  }
  saveCounts.delete(ab);
  return graphOwned.has(ab);
}

/** True while graph nodes save a tensor on `ab`. */
export function isSavedBuffer(ab: ArrayBufferLike): boolean {
  return (saveCounts.get(ab) ?? 0) > 0;
}

/**
 * True when `ab` is a buffer a forward left to its graph (nothing outside the graph reaches it) that exactly
 * `nodes` live nodes save: a backward that knows which nodes those are may reuse it once they no longer need it.
 */
export function isGraphBufferSavedBy(ab: ArrayBufferLike, nodes: number): boolean {
  return graphOwned.has(ab) && saveCounts.get(ab) === nodes;
}

/** Returns a buffer {@link releaseSavedBuffer} reported free to the pool (once). */
export function returnGraphBuffer(ab: ArrayBufferLike): void {
  if (!graphOwned.has(ab)) return;
  graphOwned.delete(ab);
  noteStepBytes(ab.byteLength);
  returnToPool(ab as ArrayBuffer);
}

/**
 * A buffer the running backward took (it is in `scope.taken`) and no longer uses: back to the pool now, out of the
 * scope, so the next op of the same backward can take it.
 */
export function returnScopedBuffer(scope: BufferScope, ab: ArrayBufferLike): void {
  const i = scope.taken.lastIndexOf(ab as ArrayBuffer);
  if (i < 0) return;
  scope.taken.splice(i, 1);
  noteStepBytes(ab.byteLength);
  returnToPool(ab as ArrayBuffer);
}

/**
 * Gives a buffer nothing uses any more to the pool: one the pool lent (its size is a size class), else nothing
 * happens (the GC takes it). The caller guarantees no tensor reads it again.
 */
export function recycleBuffer(ab: ArrayBufferLike): void {
  if (ab instanceof ArrayBuffer && ab.byteLength >= 1024 && sizeClass(ab.byteLength) === ab.byteLength) {
    noteStepBytes(ab.byteLength);
    returnToPool(ab);
  }
}

/**
 * Gives back a buffer a pooled call's result held once the caller knows nothing reads it any more — the hidden
 * states one stage of a generation step handed the next, after the step's kernels have all run; a Batcher's output
 * once every row of it was released — without counting it toward a training step's cap. Only a buffer the pool lent
 * is taken (anything else, e.g. a model returning its input or a weight, is left to the GC).
 */
export function returnResultBuffer(ab: ArrayBufferLike): void {
  if (ab instanceof ArrayBuffer && lent.has(ab)) returnToPool(ab);
}

/**
 * Tests: fill every buffer handed back with NaN, so that anything still reading one (a backward reading a tensor
 * it did not save) computes NaN instead of silently reading the next op's values.
 */
let poison = typeof process !== 'undefined' && process.env.ATTNODE_POOL_POISON === '1';

/** Internal (tests): turns {@link poison} on or off; returns the previous setting. */
export function setPoolPoisoning(on: boolean): boolean {
  const was = poison;
  poison = on;
  return was;
}

/**
 * The buffers idle in the pool. A buffer handed back twice (two owners each believing it was theirs to return)
 * would later be lent to two tensors at once and silently mix their values; the second return is ignored instead.
 */
const idle = new WeakSet<ArrayBuffer>();

/** Puts a buffer nothing uses any more back into the pool (unless the pool is full). */
function returnToPool(ab: ArrayBuffer): void {
  if (idle.has(ab)) return;
  if (poison) new Float32Array(ab, 0, ab.byteLength >> 2).fill(NaN);
  if (pooledBytes + ab.byteLength > Math.max(MAX_POOLED_BYTES, trainingCap)) return;
  let bucket = pool.get(ab.byteLength);
  if (!bucket) pool.set(ab.byteLength, (bucket = []));
  bucket.push(ab);
  idle.add(ab);
  pooledBytes += ab.byteLength;
}

/**
 * Adds the buffers of the tensors in `value` to `into`; true when one of
 * them has an autograd history (a `gradFn`): its graph's saved tensors may be
 * any of the scope's buffers, so those its nodes save stay with the graph
 * ({@link releaseBufferScope}).
 */
function collectBuffers(value: unknown, into: Set<ArrayBufferLike>, depth: number): boolean {
  if (value === null || typeof value !== 'object' || depth > 4) return false;
  if (ArrayBuffer.isView(value)) {
    into.add(value.buffer);
    return false;
  }
  const data = (value as { data?: unknown }).data;
  if (data !== undefined && ArrayBuffer.isView(data)) {
    into.add(data.buffer);
    return ((value as { gradFn?: unknown }).gradFn ?? null) !== null;
  }
  const items: unknown[] = Array.isArray(value) ? value : Object.values(value as Record<string, unknown>);
  let graph = false;
  for (const v of items) graph = collectBuffers(v, into, depth + 1) || graph;
  return graph;
}

/**
 * Runs a backward pass (`fn`, given the scope, or null when there is none) with its buffers lent from the pool:
 * when it returns, every buffer it took goes back
 * except those `keep()` then lists (the gradients it stored into leaves' and retained tensors' `grad`). Everything
 * else a backward allocates (gradients flowing between nodes, head-major scratch) is dead once it is over. Not
 * while recording (the kernels have not run yet): the GC takes them then.
 */
export function withBackwardScope(fn: (scope: BufferScope | null) => void, keep: () => Iterable<ArrayBufferLike>): void {
  const ctx = currentContext();
  if (!forwardScopes || ctx.recording) {
    fn(null);
    return;
  }
  const scope = newBufferScope();
  stepBytes = 0;
  withContext({ bufferScope: scope }, () => fn(scope));
  const kept = new Set(keep());
  const done = scope.taken.filter((ab) => !kept.has(ab));
  noteStepBytes(done.reduce((s, ab) => s + ab.byteLength, 0));
  for (const ab of done) returnToPool(ab);
  scope.taken.length = 0;
}

/**
 * Runs a module's synchronous `forward` with its intermediates lent from the
 * pool: when it returns (or throws), every buffer it took that is not
 * reachable from its result goes back for the next forward.
 *
 * Why: a forward's intermediates (the packed QKV projection, attention
 * output, feed-forward hidden layer, inner layers' outputs) are garbage the
 * moment it returns, but V8 frees their ArrayBuffers only at its next GC, so
 * the following forward gets fresh pages, and first touch of a fresh page
 * costs ~11 µs per 4 KiB on the target VMs: 70 ms of a 300 ms 4096-token
 * attention, and peak RSS that grows with every uncollected call.
 *
 * Scopes nest: each layer's forward returns its intermediates as soon as it
 * returns, so a 6-layer encoder reuses one layer's worth of buffers instead
 * of holding all six layers' until the end; a result moves to the enclosing
 * scope. While recording for runAsync the kernels have not run when the
 * forward returns, so the buffers it is done with are released when the
 * command list settles instead ({@link beginDeferredRelease}). Safe because attnode's
 * `forward` methods keep nothing they compute other than through their
 * result; the step APIs (`forwardStep`), which write K/V caches, are not
 * scoped. `ATTNODE_REUSE_INTERMEDIATES=0` turns it off.
 */
export function withForwardScope<T>(fn: () => T): T {
  const ctx = currentContext();
  if (!forwardScopes) return fn();
  const parent = ctx.bufferScope;
  // While recording, kernels run after the forward returns: what it leaves behind goes back to the pool only
  // when its command list settles (the list's deferred scope), not now. Without one (the addon's own list
  // protocol used directly), nothing is pooled.
  const own = parent?.own;
  const deferred = ctx.recording && !own ? deferredScopes.get(ctx.recording) : undefined;
  if (ctx.recording && !deferred && !own) return fn();
  const scope: BufferScope = own ? { taken: [], own } : newBufferScope();
  let result: T | undefined;
  try {
    result = withContext({ bufferScope: scope }, fn);
  } finally {
    if (deferred) handOver(scope, result, parent, deferred);
    else releaseBufferScope(scope, result, parent);
  }
  return result;
}

/**
 * Recording: `scope`'s buffers reachable from `result` move to `parent` (as
 * releaseBufferScope does), the rest to `deferred`, to be released when the
 * list settles.
 */
function handOver(scope: BufferScope, result: unknown, parent: BufferScope | null, deferred: BufferScope): void {
  const keep = new Set<ArrayBufferLike>();
  if (collectBuffers(result, keep, 0)) {
    // A graph recorded for later: its saved tensors may be any of the buffers, and its kernels have not run.
    if (parent) for (const ab of scope.taken) parent.taken.push(ab);
    scope.taken.length = 0;
    return;
  }
  for (const ab of scope.taken) {
    if (keep.has(ab)) parent?.taken.push(ab);
    else deferred.taken.push(ab);
  }
  scope.taken.length = 0;
}

/** Per command list being recorded by runAsync: the buffers its module forwards are done with. */
const deferredScopes = new WeakMap<object, BufferScope>();

/**
 * Called by runAsync before recording into `list`: module forwards recorded
 * into it take their intermediates from the pool (as sync forwards do) and
 * leave them in the returned scope.
 */
export function beginDeferredRelease(list: object): BufferScope {
  const scope = newBufferScope();
  deferredScopes.set(list, scope);
  return scope;
}

/**
 * Called by runAsync once `list`'s kernels are done (or when it was never
 * submitted): its forwards' intermediates go back to the pool. Nothing that
 * was reachable from a forward's result is among them.
 */
export function endDeferredRelease(list: object, scope: BufferScope): void {
  deferredScopes.delete(list);
  releaseBufferScope(scope, null);
}

/**
 * Runs `fn` (synchronous) with the outputs of every op it calls lent from the buffer pool, and when it returns (or
 * throws) gives back every buffer it took that its return value does not reach: a training step's forward output,
 * its loss and whatever the step computed besides. Without it those outlive the step until V8 collects them (a
 * module's forward already returns its own intermediates; its result is the caller's), so a loop of steps with no
 * collection between them takes fresh memory for them every step (~8 MiB a step for a seq-2048 encoder).
 *
 * Inside, autograd works as outside: the buffers a graph saves are the graph's, each handed back when the backward
 * frees the last node saving it, and the gradients stored in parameters' `grad` are not the scope's.
 *
 * The contract (runAsync's `reuseBuffers` has the same): `fn` keeps no tensor it computes other than through its
 * return value — assigning one to an outer variable or a module field leaves it on memory the next op may be lent.
 * Return plain numbers (`loss.item()`) or the tensors you need. Nested in another scope, what the result reaches
 * moves to that scope. Inside runAsync's recording it simply runs `fn` (the kernels have not run when it returns).
 * @throws TypeError when `fn` is not a function.
 * @example
 * for (const batch of batches) {
 *   const loss = reuseBuffers(() => {
 *     optimizer.zeroGrad();
 *     const l = criterion.forward(model.forward(batch.x), batch.y);
 *     l.backward();
 *     optimizer.step();
 *     return l.item();
 *   });
 * }
 */
export function reuseBuffers<T>(fn: () => T): T {
  if (typeof fn !== 'function') throw argTypeError('reuseBuffers', 'fn', 'be a function', fn);
  const ctx = currentContext();
  if (!forwardScopes || ctx.recording) return fn();
  const scope: BufferScope = { taken: [], root: true };
  let result: T | undefined;
  try {
    result = withContext({ bufferScope: scope }, fn);
  } finally {
    releaseBufferScope(scope, result, ctx.bufferScope);
  }
  return result;
}

/** Frees every idle pooled buffer (to the GC); the pool refills on the next forwards. */
export function clearBufferPool(): void {
  pool.clear();
  pooledBytes = 0;
  takenBytes = 0;
  freshBytes = 0;
  trainingCap = 0;
}

/** Bytes of idle buffers in the pool (at most 256 MiB, or 1.5× a training step's buffers), for diagnostics and `/metrics`. */
export function pooledBufferBytes(): number {
  return pooledBytes;
}

