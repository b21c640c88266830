/**
 * `Tensor.backward`: runs the recorded graph backwards from a tensor.
 *
 * 1. The seed: `gradOutput`, or ones for a one-element tensor.
 * 2. Every node reachable from the tensor's `gradFn` is counted once per
 *    edge that reaches it (its dependencies).
 * 3. Nodes run when every gradient flowing into them has arrived (their
 *    count reaches zero), so each runs once with the sum of its outputs'
 *    gradients. A leaf's `AccumulateGrad` adds into `leaf.grad` (a new
 *    contiguous tensor the first time, in place afterwards, as PyTorch
 *    accumulates until the gradient is zeroed).
 * 4. Without `retainGraph`, each node's saved tensors are released as soon as
 *    it has run: a second backward through it is an error naming the option.
 * 5. Memory (outside `runAsync`): a buffer goes back to the pool as soon as
 *    nothing reads it any more: an activation its forward left to the graph
 *    when the last node saving it has run, a gradient flowing between nodes
 *    when the node it flows into has run (or it was added into another), a
 *    backward's scratch when that backward returns. So the step's high-water
 *    mark is the saved activations plus one node's gradients, not the whole
 *    forward plus the whole backward.
 *
 * Backward runs with grad mode off (no graph of the backward is recorded) and
 * with the ops' own backends, so it computes on the native kernels, and it
 * never reads tensor values in JS: inside `runAsync` it is recorded like a
 * forward.
 */
import { currentContext, withContext } from '../context';
import { allocateUninitialized } from '../dtype';
import { isSavedBuffer, returnGraphBuffer, returnScopedBuffer, withBackwardScope, type BufferScope } from '../workspace';
import { argRangeErrorRaw, argTypeError, formatShape } from '../errors';
import { add } from '../ops/elementwise';
import { Tensor, zeros, type BackwardOptions, type GradFn } from '../tensor';
import { AccumulateGrad, Node, edgeOf, takeFreedBuffers } from './graph';
import { copyInto, fillZeros, scatterInfo } from './views';

type F32 = Tensor<'float32'>;

/** The gradient buffer of a node: one slot per output. */
type Slots = (F32 | null)[];

/**
 * What the running backward knows about the buffers its gradients live in (null while recording for runAsync,
 * where kernels run later and nothing may go back early). `refs` counts the slots holding a gradient on each
 * buffer; a buffer goes back to the pool when no slot refers to it, no live node saves it, and it is either one
 * this backward took (in `scope.taken`) or one a forward left to the graph and no node saves any more.
 */
interface Ledger {
  scope: BufferScope;
  refs: Map<ArrayBufferLike, number>;
  /** Graph buffers whose last saving node ran while a slot still held a view of them. */
  freedGraph: Set<ArrayBufferLike>;
}

/** The ledger of the running backward (null outside one, or while recording). */
let currentLedger: Ledger | null = null;

/** Whether the running backward keeps the graph (`retainGraph`): saved tensors must then survive it. */
let retaining = false;

/**
 * True inside a backward that frees the graph as it goes (no `retainGraph`, not recorded for runAsync): a node's
 * backward may then reuse the memory of a saved activation that only it and nodes it knows of read.
 */
export function isFreeingBackward(): boolean {
  return currentLedger !== null && !retaining;
}

/**
 * True when a node's backward may overwrite the gradient `g` it was given (e.g. a fused ReLU's mask applied in
 * place): the running backward made it, only the slot it came from refers to it, and it is dense. Only for the
 * gradients passed to a node's backward, while it runs.
 */
export function isDisposableGrad(g: F32): boolean {
  return disposable(currentLedger, g);
}

function ref(l: Ledger | null, g: F32): void {
  if (l) l.refs.set(g.data.buffer, (l.refs.get(g.data.buffer) ?? 0) + 1);
}

/** A slot's gradient was consumed: its buffer goes back if nothing refers to it any more. */
function unref(l: Ledger | null, g: F32): void {
  if (!l) return;
  const ab = g.data.buffer;
  const n = (l.refs.get(ab) ?? 0) - 1;
  if (n > 0) {
    l.refs.set(ab, n);
    return;
  }
  l.refs.delete(ab);
  giveBack(l, ab);
}

/** Returns `ab` to the pool if the backward may (see {@link Ledger}) and nothing refers to it. */
function giveBack(l: Ledger, ab: ArrayBufferLike): void {
  if (l.refs.has(ab) || isSavedBuffer(ab) || handedToLeaves?.has(ab)) return;
  if (l.freedGraph.delete(ab)) returnGraphBuffer(ab);
  else returnScopedBuffer(l.scope, ab);
}

/** True when `g` is the only gradient on its buffer and this backward made it: it may be written in place. */
function disposable(l: Ledger | null, g: F32): boolean {
  return l !== null && l.refs.get(g.data.buffer) === 1 && !isSavedBuffer(g.data.buffer) && g.isContiguous() &&
    !handedToLeaves?.has(g.data.buffer) &&
    g.data.length === g.size && l.scope.taken.includes(g.data.buffer as ArrayBuffer);
}

/**
 * The sum of a slot's gradient `a` (if any) and a new one `b` (held by the caller until it has placed all of a
 * node's gradients): into `a` in place when only the slot holds it.
 */
function sum(l: Ledger | null, a: F32 | null, b: F32): F32 {
  if (a === null) {
    ref(l, b);
    return b;
  }
  let s: F32;
  if (disposable(l, a) && a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]) &&
    a.data.buffer !== b.data.buffer) {
    return add(a, b, { out: a });
  }
  s = add(a, b);
  ref(l, s);
  unref(l, a);
  return s;
}

/**
 * Buffers this backward made and handed to a leaf as its gradient (see {@link accumulate}); null outside a
 * backward that runs in a buffer scope.
 */
let handedToLeaves: Set<ArrayBufferLike> | null = null;
/** The buffer scope of the running backward (what it has allocated), or null. */
let backwardScope: BufferScope | null = null;

/** Adds `g` into `leaf.grad` (see the module comment). */
function accumulate(leaf: Tensor, g: F32): void {
  const current = leaf._peekGrad();
  if (current === null) {
    // The leaf's gradient must be its own: a later in-place accumulation must change nothing but it. `g` becomes
    // it as is (PyTorch steals it too) when this backward made g's buffer and handed it to no other leaf: then
    // only this pass's nodes, which read gradients and never write them, share it, and they are done when the
    // pass is. Otherwise (the caller's gradOutput, a forward's memory, a buffer another leaf took) a copy, into
    // the backward's pooled memory. Such a gradient is the leaf's alone, so the optimizer's zeroGrad can give it
    // back to the pool unless user code has read it.
    const recording = currentContext().recording !== null;
    const buffer = g.data.buffer;
    if (!recording && handedToLeaves && g.isContiguous() && !handedToLeaves.has(buffer) &&
      backwardScope?.taken.includes(buffer as ArrayBuffer)) {
      handedToLeaves.add(buffer);
      leaf._setPrivateGrad(g);
    } else if (g.isContiguous() && !recording) {
      const own = copyOf(g);
      handedToLeaves?.add(own.data.buffer);
      leaf._setPrivateGrad(own);
    } else {
      leaf.grad = g.contiguous().clone();
    }
  } else if (current.isContiguous()) {
    add(current, g, { out: current });
  } else {
    leaf.grad = add(current, g);
  }
}

/** A contiguous copy of a contiguous float32 tensor (no history: backward runs without grad). */
function copyOf(g: F32): F32 {
  const out = allocateUninitialized('float32', g.size);
  out.set(g.data.subarray(0, g.size));
  return new Tensor(out, g.shape, 'float32');
}

/** Implements Tensor.backward (registered by lib/autograd/index.ts). */
export function runBackward(root: Tensor, gradOutput: Tensor | undefined, options: BackwardOptions): void {
  const fn = 'backward';
  if (options === null || typeof options !== 'object') throw argTypeError(fn, 'options', 'be an options object', options);
  const retainGraph = options.retainGraph ?? false;
  if (typeof retainGraph !== 'boolean') throw argTypeError(fn, 'options.retainGraph', 'be a boolean', retainGraph);
  if (!root.requiresGrad) {
    throw argRangeErrorRaw(fn, 'this', 'require grad (be computed from tensors with requiresGrad = true, in grad mode)',
      `a ${root.dtype} tensor ${formatShape(root.shape)} that does not require grad and has no gradFn`);
  }
  let seed: F32;
  if (gradOutput === undefined || gradOutput === null) {
    if (root.size !== 1) {
      throw argRangeErrorRaw(fn, 'gradOutput',
        'be given for a tensor with more than one element (a gradient can be created implicitly only for a one-element output)',
        `missing, for a tensor of shape ${formatShape(root.shape)}`);
    }
    seed = new Tensor(new Float32Array(1).fill(1), root.shape, 'float32');
  } else {
    if (!(gradOutput instanceof Tensor) || gradOutput.dtype !== 'float32') {
      throw argTypeError(fn, 'gradOutput', 'be a float32 Tensor', gradOutput);
    }
    if (gradOutput.shape.length !== root.shape.length || gradOutput.shape.some((d, i) => d !== root.shape[i])) {
      throw argRangeErrorRaw(fn, 'gradOutput', `have the shape of the tensor ${formatShape(root.shape)}`, formatShape(gradOutput.shape));
    }
    seed = gradOutput as F32;
  }
  // The gradients stored into leaves and retained tensors stay; every other buffer the pass allocates goes back to
  // the pool, and so do the forward's buffers once the pass has freed the graph that used them.
  const stored: Tensor[] = [];
  const outer = handedToLeaves;
  const outerScope = backwardScope;
  const outerLedger = currentLedger;
  const outerRetaining = retaining;
  retaining = retainGraph;
  try {
    withContext({ gradEnabled: false }, () => withBackwardScope(
      (scope) => {
        backwardScope = scope;
        handedToLeaves = scope ? new Set() : null;
        const ledger = scope && !currentContext().recording ? { scope, refs: new Map(), freedGraph: new Set<ArrayBufferLike>() } : null;
        currentLedger = ledger;
        execute(edgeOf(root)!, seed, retainGraph, stored, ledger);
        // Graph buffers still held by a gradient when their last node ran, whose gradient is stored (a leaf's).
        if (ledger) for (const ab of ledger.freedGraph) if (!ledger.refs.has(ab) && !handedToLeaves?.has(ab)) returnGraphBuffer(ab);
      },
      () => stored.map((t) => t._peekGrad()?.data.buffer).filter((b): b is ArrayBufferLike => b !== undefined),
    ));
  } catch (e) {
    // A pass that stopped half-way may have freed a forward's result nodes but not every node behind them: their
    // buffers are left to the GC.
    takeFreedBuffers();
    throw e;
  } finally {
    handedToLeaves = outer;
    backwardScope = outerScope;
    currentLedger = outerLedger;
    retaining = outerRetaining;
  }
  // Recording for runAsync: the kernels reading the freed buffers have not run; the GC takes them.
  takeFreedBuffers();
}

function execute(rootEdge: readonly [GradFn, number], seed: F32, retainGraph: boolean, stored: Tensor[], l: Ledger | null): void {
  const [rootFn, rootSlot] = rootEdge;
  // Dependencies: how many edges of the reachable graph point at each node.
  const deps = new Map<GradFn, number>();
  const seen = new Set<GradFn>([rootFn]);
  const stack: GradFn[] = [rootFn];
  while (stack.length > 0) {
    const node = stack.pop()!;
    for (const e of node.nextFunctions) {
      if (e === null) continue;
      const next = e[0];
      deps.set(next, (deps.get(next) ?? 0) + 1);
      if (!seen.has(next)) {
        seen.add(next);
        stack.push(next);
      }
    }
  }
  // Before anything runs: a freed node anywhere in the graph is reported before any gradient is accumulated.
  for (const node of seen) if (node instanceof Node) node.assertAlive();
  const buffers = new Map<GradFn, Slots>();
  const slotsOf = (node: GradFn): Slots => {
    let s = buffers.get(node);
    if (!s) {
      s = new Array<F32 | null>(node instanceof Node ? node.outputShapes.length : 1).fill(null);
      buffers.set(node, s);
    }
    return s;
  };
  // Gradient buffers of this pass that slices' backwards write into (see ScatterInfo in ./views): the entries
  // [start, end) of dim `dim` written so far, disjoint. The rest is uninitialized until `materialize` zeroes it,
  // before anything reads the buffer (the node it belongs to runs, or another gradient is added to it).
  const pending = new Map<F32, { dim: number; written: [number, number][] }>();
  const materialize = (t: F32 | null | undefined): void => {
    const p = t ? pending.get(t) : undefined;
    if (!t || !p) return;
    pending.delete(t);
    p.written.sort((x, y) => x[0] - y[0]);
    let at = 0;
    for (const [a, b] of p.written) {
      if (a > at) fillZeros(t.narrow(p.dim, at, a - at));
      at = Math.max(at, b);
    }
    const n = t.shape[p.dim]!;
    if (at < n) fillZeros(t.narrow(p.dim, at, n - at));
  };
  // A gradient arriving where one already is: a buffer of `pending` is this pass's own, so it is added to in place.
  const sumInto = (a: F32 | null, b: F32): F32 => {
    if (!a || !pending.has(a)) return sum(l, a, b);
    materialize(a);
    add(a, b, { out: a });
    return a;
  };
  const ready: GradFn[] = [rootFn];
  // One edge into `next` is done. When all are: it runs if any gradient reached it; otherwise nothing flows
  // through it, but its successors still count it as a dependency, so it settles them in turn.
  const settle = (next: GradFn): void => {
    const left = deps.get(next)! - 1;
    deps.set(next, left);
    if (left > 0) return;
    if (buffers.has(next)) {
      ready.push(next);
      return;
    }
    if (next instanceof Node && !retainGraph) {
      next.release();
      freeGraphBuffers();
    }
    for (const e of next.nextFunctions) if (e !== null) settle(e[0]);
  };
  // The buffers whose last saving node was just released: back to the pool unless a gradient still views one.
  const freeGraphBuffers = (): void => {
    for (const ab of takeFreedBuffers()) {
      if (!l) continue;
      l.freedGraph.add(ab);
      giveBack(l, ab);
    }
  };
  slotsOf(rootFn)[rootSlot] = seed;
  ref(l, seed);
  while (ready.length > 0) {
    const node = ready.pop()!;
    const slots = buffers.get(node)!;
    buffers.delete(node);
    for (const g of slots) materialize(g);
    if (node instanceof AccumulateGrad) {
      if (slots[0]) {
        accumulate(node.variable, slots[0]);
        stored.push(node.variable);
        unref(l, slots[0]);
      }
      continue;
    }
    if (!(node instanceof Node)) throw new TypeError(`backward: unknown graph node ${node.name}`);
    const scatter = node.retained ? undefined : scatterInfo(node);
    if (scatter && slots[0]) {
      // A slice's gradient goes into its region of the input's gradient buffer, shared with the other slices of
      // the same tensor: no zeros of the whole input per slice, no sum of those.
      node.assertAlive();
      const e = node.nextFunctions[0]!;
      const g = slots[0];
      if (e !== null) {
        const s = slotsOf(e[0]);
        const cur = s[e[1]] ?? null;
        const p = cur ? pending.get(cur) : undefined;
        if (cur === null) {
          const z = new Tensor(allocateUninitialized('float32', scatter.shape.reduce((x, y) => x * y, 1)), scatter.shape, 'float32');
          copyInto(g, scatter.region(z));
          pending.set(z, { dim: scatter.dim, written: [[scatter.start, scatter.end]] });
          ref(l, z);
          s[e[1]] = z;
        } else if (p && p.dim === scatter.dim && p.written.every(([a, b]) => scatter.end <= a || scatter.start >= b)) {
          copyInto(g, scatter.region(cur));
          p.written.push([scatter.start, scatter.end]);
        } else if (p) {
          materialize(cur);
          const r = scatter.region(cur!);
          add(r, g, { out: r });
        } else {
          const r = node.apply([g])[0]!;
          ref(l, r);
          s[e[1]] = sum(l, cur, r);
          unref(l, r);
        }
      }
      // The slice's gradient is in its place now: its own buffer is dead.
      unref(l, g);
      if (!retainGraph) {
        node.release();
        freeGraphBuffers();
      }
      if (e !== null) settle(e[0]);
      continue;
    }
    const grads = slots.map((g, i) => g ?? zeros(node.outputShapes[i]!));
    if (node.retained) {
      for (const [i, t] of node.retained) {
        t.grad = t.grad ? add(t.grad, grads[i]!) : grads[i]!.contiguous().clone();
        stored.push(t);
      }
    }
    const mark = l ? l.scope.taken.length : 0;
    const inputGrads = node.apply(grads);
    const fresh = l ? l.scope.taken.slice(mark) : [];
    // What the node made: held until every gradient is in its slot (two inputs may get one tensor).
    const made = inputGrads.filter((g): g is F32 => g !== null && g !== undefined);
    for (const g of made) ref(l, g);
    for (const g of slots) if (g) unref(l, g);
    if (!retainGraph) {
      node.release();
      freeGraphBuffers();
    }
    node.nextFunctions.forEach((e, i) => {
      if (e === null) return;
      const g = inputGrads[i];
      if (g !== null && g !== undefined) {
        const s = slotsOf(e[0]);
        s[e[1]] = sumInto(s[e[1]] ?? null, g);
      }
      settle(e[0]);
    });
    for (const g of made) unref(l, g);
    // The node's scratch (and gradients no edge took) is dead now.
    if (l) for (const ab of fresh) giveBack(l, ab);
  }
}
