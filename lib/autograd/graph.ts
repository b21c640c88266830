/**
 * The autograd graph: what an op records when it runs in grad mode on inputs
 * that require grad.
 *
 * Each such op call creates one {@link Node} (its backward, PyTorch's
 * `grad_fn`): a closure computing the gradients of the op's inputs from the
 * gradients of its outputs, the tensors that closure reads (saved with their
 * version, so that an in-place write between forward and backward is an
 * error instead of a wrong gradient), and one edge per input to where that
 * input's gradient goes (the input's own node, or the gradient accumulator of
 * a leaf). The op's outputs point back at the node (`Tensor.gradFn`). The
 * graph is what the outputs reach; nothing global holds it, so a result that
 * is dropped takes its graph (and saved tensors) with it.
 *
 * Recording costs nothing when it does not apply: {@link needsGrad} is one
 * context flag and one field per input, so inference on tensors that do not
 * require grad runs exactly the code it ran before autograd existed.
 */
import { currentContext } from '../context';
import { formatShape } from '../errors';
import type { GradFn, Tensor } from '../tensor';
import { holdSavedBuffer, releaseSavedBuffer } from '../workspace';

type F32 = Tensor<'float32'>;

/** Where the gradient of one input goes: a node and which of its outputs the input is. */
export type Edge = readonly [GradFn, number] | null;

/**
 * An op's backward: the gradients of its outputs (one per output, each of
 * that output's shape, any strides) → the gradients of its inputs (one per
 * input, each of that input's shape; null/undefined where `needs[i]` is false
 * or the gradient is zero).
 */
export type BackwardFn = (grads: readonly F32[], needs: readonly boolean[]) => readonly (F32 | null | undefined)[];

/** True when grad mode is on and any of `inputs` requires grad: the op must record its backward. */
export function needsGrad(...inputs: readonly (Tensor | null | undefined | number)[]): boolean {
  if (!currentContext().gradEnabled) return false;
  for (const t of inputs) if (t !== null && t !== undefined && typeof t !== 'number' && t.requiresGrad) return true;
  return false;
}

/** The backward of one recorded op call (see the module comment). */
export class Node implements GradFn {
  readonly name: string;
  readonly nextFunctions: readonly Edge[];
  /** Shapes of the op's outputs (a missing output gradient is zeros of this shape). */
  readonly outputShapes: readonly (readonly number[])[];
  #backward: BackwardFn | null;
  #saved: [Tensor, number][];
  /** Outputs whose gradient is kept (Tensor.retainGrad), by output index. */
  retained: Map<number, Tensor> | null = null;
  /** The distinct buffers of the saved tensors (lib/workspace.ts counts the live nodes saving each). */
  #savedBuffers: ArrayBufferLike[];

  constructor(name: string, next: readonly Edge[], outputShapes: readonly (readonly number[])[], backward: BackwardFn,
    saved: readonly Tensor[]) {
    this.name = name;
    this.nextFunctions = next;
    this.outputShapes = outputShapes;
    this.#backward = backward;
    this.#saved = saved.map((t) => [t, t._version]);
    this.#savedBuffers = [...new Set(saved.map((t) => t.data.buffer))];
    for (const ab of this.#savedBuffers) holdSavedBuffer(ab);
  }

  /** False once the engine freed the node's saved state (a backward without retainGraph). */
  get alive(): boolean {
    return this.#backward !== null;
  }

  /**
   * Runs the backward on the gradients of the outputs.
   * @throws Error when the node was freed by an earlier backward, or a saved tensor was modified in place since.
   */
  apply(grads: readonly F32[]): readonly (F32 | null | undefined)[] {
    this.assertAlive();
    const backward = this.#backward!;
    for (const [t, version] of this.#saved) {
      if (t._version !== version) {
        throw new Error(`backward: a tensor ${formatShape(t.shape)} saved by ${this.name} for its gradient was modified by an ` +
          `in-place operation: it is at version ${t._version}, expected version ${version}`);
      }
    }
    return backward(grads, this.nextFunctions.map((e) => e !== null));
  }

  /** @throws Error when an earlier backward freed this node. */
  assertAlive(): void {
    if (!this.#backward) {
      throw new Error(`backward: trying to backward through the graph a second time (${this.name} was freed by an earlier ` +
        "backward); pass { retainGraph: true } to the first backward (argument 'options.retainGraph') to keep it");
    }
  }

  /**
   * Drops the saved tensors and the closure: the node can no longer run. A buffer its forward left to the graph
   * that no live node saves any more is queued for the backward engine ({@link takeFreedBuffers}), which returns
   * it to the pool: a backward thus gives each activation back as soon as the last node reading it has run.
   */
  release(): void {
    if (this.#backward === null) return;
    this.#backward = null;
    this.#saved = [];
    for (const ab of this.#savedBuffers) if (releaseSavedBuffer(ab)) freedBuffers.push(ab);
    this.#savedBuffers = [];
  }
}

/** Buffers whose last saving node was released (see Node.release); the engine takes them after each node. */
const freedBuffers: ArrayBufferLike[] = [];

/** The graph buffers freed since the last call (the engine returns them to the pool). */
export function takeFreedBuffers(): ArrayBufferLike[] {
  return freedBuffers.splice(0, freedBuffers.length);
}

/** The node that adds gradients into a leaf's `grad` (PyTorch's `AccumulateGrad`). */
export class AccumulateGrad implements GradFn {
  readonly name = 'AccumulateGrad';
  readonly nextFunctions: readonly Edge[] = [];
  readonly variable: Tensor;

  constructor(variable: Tensor) {
    this.variable = variable;
  }
}

/** The edge an input's gradient flows along, or null when it does not require grad. */
export function edgeOf(t: Tensor | null | undefined): Edge {
  if (!t || !t.requiresGrad) return null;
  const fn = t.gradFn;
  if (fn) return [fn, t._outputNr];
  let acc = t._gradAccumulator;
  if (!acc) t._gradAccumulator = acc = new AccumulateGrad(t);
  return [acc, 0];
}

/**
 * Records an op call: `outputs` become the outputs of a new node whose
 * backward is `backward`, with one edge per entry of `inputs` (null, numbers
 * and tensors that do not require grad get no gradient). `saved` lists the
 * tensors `backward` reads, checked for in-place modification when it runs;
 * call this after the op has written its outputs (an output written in place
 * is saved at its new version). An output that already had a history (an
 * `out` the op wrote in place) gets this node as its new history, after the
 * edges were taken, so its old history still receives the gradient of the
 * values it held.
 */
export function recordOp(
  name: string, inputs: readonly (Tensor | null | undefined | number)[], outputs: readonly Tensor[], backward: BackwardFn,
  saved: readonly Tensor[] = [],
): Node {
  const next = inputs.map((t) => (typeof t === 'number' ? null : edgeOf(t)));
  const node = new Node(name, next, outputs.map((o) => o.shape), backward, saved);
  outputs.forEach((o, i) => {
    if (o.isLeaf && o.requiresGrad) {
      throw new RangeError(`${name.replace(/Backward$/, '')}: argument 'out' must not be a leaf tensor that requires grad ` +
        '(an in-place write would lose its gradient); write into a tensor without requiresGrad, or detach() it');
    }
    o._setGradFn(node, i);
  });
  return node;
}
