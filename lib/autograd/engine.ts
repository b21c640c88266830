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
 *
 * Backward runs with grad mode off (no graph of the backward is recorded) and
 * with the ops' own backends, so it computes on the native kernels, and it
 * never reads tensor values in JS: inside `runAsync` it is recorded like a
 * forward.
 */
import { currentContext, withContext } from '../context';
import { allocateUninitialized } from '../dtype';
import { withBackwardScope, type BufferScope } from '../workspace';
import { argRangeErrorRaw, argTypeError, formatShape } from '../errors';
import { add } from '../ops/elementwise';
import { Tensor, zeros, type BackwardOptions, type GradFn } from '../tensor';
import { AccumulateGrad, Node, edgeOf, takeFreedBuffers } from './graph';
import { copyInto, fillZeros, scatterInfo } from './views';

type F32 = Tensor<'float32'>;

/** The gradient buffer of a node: one slot per output. */
type Slots = (F32 | null)[];

function sum(a: F32 | null, b: F32): F32 {
  return a === null ? b : add(a, b);
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
  try {
    withContext({ gradEnabled: false }, () => withBackwardScope(
      (scope) => {
        backwardScope = scope;
        handedToLeaves = scope ? new Set() : null;
        execute(edgeOf(root)!, seed, retainGraph, stored);
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
  }
  const freed = takeFreedBuffers();
  if (!currentContext().recording) for (const g of freed) g.release();
}

function execute(rootEdge: readonly [GradFn, number], seed: F32, retainGraph: boolean, stored: Tensor[]): void {
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
    if (a === null) return b;
    if (!pending.has(a)) return sum(a, b);
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
    if (next instanceof Node && !retainGraph) next.release();
    for (const e of next.nextFunctions) if (e !== null) settle(e[0]);
  };
  slotsOf(rootFn)[rootSlot] = seed;
  while (ready.length > 0) {
    const node = ready.pop()!;
    const slots = buffers.get(node)!;
    buffers.delete(node);
    for (const g of slots) materialize(g);
    if (node instanceof AccumulateGrad) {
      if (slots[0]) {
        accumulate(node.variable, slots[0]);
        stored.push(node.variable);
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
          s[e[1]] = z;
        } else if (p && p.dim === scatter.dim && p.written.every(([a, b]) => scatter.end <= a || scatter.start >= b)) {
          copyInto(g, scatter.region(cur));
          p.written.push([scatter.start, scatter.end]);
        } else if (p) {
          materialize(cur);
          const r = scatter.region(cur!);
          add(r, g, { out: r });
        } else {
          s[e[1]] = sum(cur, node.apply([g])[0]!);
        }
      }
      if (!retainGraph) node.release();
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
    const inputGrads = node.apply(grads);
    if (!retainGraph) node.release();
    node.nextFunctions.forEach((e, i) => {
      if (e === null) return;
      const g = inputGrads[i];
      if (g !== null && g !== undefined) {
        const s = slotsOf(e[0]);
        s[e[1]] = sumInto(s[e[1]] ?? null, g);
      }
      settle(e[0]);
    });
  }
}
