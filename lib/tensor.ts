/**
 * The `Tensor` class and its factories.
 *
 * A tensor is a typed array `data`, a `shape` and element `strides`
 * (PyTorch's layout model). Element `[i0, …, in]` lives at
 * `data[Σ ik·strides[k]]`: `data[0]` is the first element and `data` is
 * exactly long enough to reach the last one. Tensors built from data are
 * contiguous (row-major strides, `data.length === size`); view methods
 * (`transpose`, `narrow`, `slice`, `expand`, …) return tensors whose `data`
 * is a `subarray` of the parent's, so they copy nothing and writes through
 * either are visible in both. Ops read views through their strides where
 * their kernels can and copy the others with {@link Tensor.contiguous}. The
 * layout arithmetic lives in lib/strided.ts.
 */
import type { Backend, BackendName } from './backend/backend';
import { currentContext } from './context';
import { recordingList } from './backend/recording';
import {
  checkStrides, coalesce, computeViewStrides, contiguousStrides, copyStrided, gatherJs, inferShape, intList,
  isContiguousLayout, spanOf, type Shape,
} from './strided';
import { allocate, allocateUninitialized, DTYPES, dtypeOfArray, isDType } from './dtype';
import type { DType, DTypeMap, ElementOf } from './dtype';
import {
  argRangeError,
  argRangeErrorRaw,
  argTypeError,
  checkInt,
  checkNumber,
  checkShape,
  describeValue,
  formatShape,
  normalizeDim,
} from './errors';

export type { DType, DTypeMap, ElementOf } from './dtype';
export { contiguousStrides } from './strided';

export type { Shape } from './strided';

/** Nested JS arrays of `T`, as produced by {@link Tensor.toArray} (a bare `T` for 0-D tensors). */
export type NestedArray<T> = T | NestedArray<T>[];

/** Nested (readonly) arrays of numbers accepted by {@link tensor}. */
export type NestedNumbers = number | readonly NestedNumbers[];

/** Nested (readonly) arrays of booleans accepted by {@link tensor}. */
export type NestedBooleans = boolean | readonly NestedBooleans[];

/** Anything {@link tensor} can build a tensor from. */
export type TensorData =
  | NestedNumbers
  | NestedBooleans
  | Float32Array
  | Int32Array
  | Uint8Array
  | Float64Array
  | Int8Array
  | Int16Array
  | Uint16Array
  | Uint32Array
  | Uint8ClampedArray;

/** A shape argument: an array of dims, or a single number for a 1-D shape. */
export type ShapeLike = number | Shape;

function toShape(fn: string, arg: string, shape: unknown): number[] {
  const arr = typeof shape === 'number' ? [shape] : shape;
  checkShape(fn, arg, arr);
  return (arr as number[]).slice();
}

function checkDType(fn: string, dtype: unknown): DType {
  if (!isDType(dtype)) throw argTypeError(fn, 'dtype', `be one of ${DTYPES.map((d) => `'${d}'`).join(', ')}`, dtype);
  return dtype;
}

// ---------------------------------------------------------------------------
// Autograd hooks (lib/autograd/ implements them; they are registered when it is imported, which the package root
// and lib/nn do). Defined here as interfaces so that this file depends on nothing of autograd.

/**
 * A node of the autograd graph: the backward of the op that produced a tensor
 * (PyTorch's `grad_fn`). `nextFunctions` says where the gradient of each of the
 * op's inputs goes: the input's own `gradFn` (or its gradient accumulator,
 * for a leaf) and which of that node's outputs it is, or null for an input
 * that needs no gradient.
 */
export interface GradFn {
  /** The op's name, PyTorch-style (`'LinearBackward'`, `'AddBackward'`, …). */
  readonly name: string;
  readonly nextFunctions: readonly (readonly [GradFn, number] | null)[];
}

/** Options of {@link Tensor.backward}. */
export interface BackwardOptions {
  /**
   * Keep the graph's saved tensors so that `backward` can run through it
   * again (default false: they are freed, and a second backward through the
   * same graph is an Error that names this option).
   */
  retainGraph?: boolean;
}

/** Which view a tensor method took, for its backward (see lib/autograd/views.ts). */
export type ViewKind = 'reshape' | 'transpose' | 'permute' | 'slice' | 'select' | 'expand' | 'copy';

/** What lib/autograd registers into Tensor. @internal */
export interface AutogradHooks {
  backward(root: Tensor, gradOutput: Tensor | undefined, options: BackwardOptions): void;
  /** Records the backward of `output = input.<kind>(...args)` (called only when input requires grad and grad mode is on). */
  view(kind: ViewKind, input: Tensor, output: Tensor, args: readonly number[]): void;
  /** Keeps the gradient of non-leaf `t` on backward. */
  retainGrad(t: Tensor): void;
}

let autogradHooks: AutogradHooks | null = null;

/** Called once by lib/autograd/index.ts. @internal */
export function registerAutogradHooks(hooks: AutogradHooks): void {
  autogradHooks = hooks;
}

function hooks(what: string): AutogradHooks {
  if (!autogradHooks) {
    throw new Error(`${what}: autograd is not loaded; import attnode from its package root (or lib/autograd) before computing gradients`);
  }
  return autogradHooks;
}

/**
 * The version counter of a tensor's memory: in-place writes bump it, and
 * every view shares its base's counter (PyTorch's `_version`).
 */
interface VersionCounter {
  value: number;
}

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/**
 * An n-dimensional array of `float32`, `int32` or `bool` elements in a typed
 * array {@link Tensor.data} whose type follows the dtype (`Tensor<'float32'>`
 * has `data: Float32Array`), addressed through {@link Tensor.strides}.
 *
 * Tensors are not immutable — `data` may be written (ops with `out` do) — but
 * `shape` and `strides` are frozen. Layout changes (`view`, `reshape`,
 * `transpose`, `narrow`, `slice`, `expand`, …) return views: new tensors over
 * the same memory, so a write through a view changes the parent and vice
 * versa. Only {@link Tensor.contiguous}, {@link Tensor.clone},
 * {@link Tensor.astype} and a `reshape` that cannot be a view copy.
 */
export class Tensor<D extends DType = DType> {
  /** Dimensions, outermost first. Frozen. */
  readonly shape: Shape;
  /** Element type. */
  readonly dtype: D;
  /**
   * The memory the tensor addresses: element `[i0, …, in]` is
   * `data[Σ ik·strides[k]]`, so `data[0]` is the first element, and
   * `data.length` is exactly the span the layout reaches (0 when empty).
   * For a contiguous tensor this is the elements in row-major order
   * (`data.length === size`). For a non-contiguous view it is NOT: it may
   * skip, repeat (stride 0) or reorder elements, and it may include elements
   * of the parent that are not part of the view. Check
   * {@link Tensor.isContiguous} or call {@link Tensor.contiguous} before
   * treating it as a flat array. A view's `data` is a `subarray` of its
   * parent's (same ArrayBuffer): writes show in both.
   */
  readonly data: DTypeMap[D];
  /** Number of elements (product of `shape`; 1 for a scalar). */
  readonly size: number;
  /** Stored strides; left unset for tensors built without strides until {@link Tensor.strides} is first read. */
  #strides: readonly number[] | undefined;
  #contiguous: boolean;
  // Autograd state (see the "Autograd" section below). Private fields: never enumerable, never state.
  #requiresGrad = false;
  #grad: Tensor<'float32'> | null = null;
  /** The gradient's memory is the library's alone (see _peekGrad). */
  #gradPrivate = false;
  #gradFn: GradFn | null = null;
  #outputNr = 0;
  /** Created on first use and shared with every view (see {@link Tensor._version}). */
  #versionCounter: VersionCounter | undefined;
  /** A leaf's gradient accumulator node, kept by lib/autograd so that every use of the leaf shares one. */
  #gradAccumulator: GradFn | null = null;

  /**
   * Wraps `data` (no copy). Prefer the {@link tensor} factory, which also
   * accepts nested arrays.
   *
   * Without `strides` the tensor is contiguous and `data.length` must equal
   * the size. With `strides` (element strides, one non-negative integer per
   * dim; 0 repeats an element along that dim) `data[0]` is the first
   * element and `data` must reach the last one
   * (`data.length >= 1 + Σ (shape[i]-1)·strides[i]`); a longer `data` is cut to
   * that span with `subarray` (zero-copy), so `data.length` always equals the span.
   * @throws TypeError if `data` is not the typed array for `dtype`, or `strides` is not an array of numbers.
   * @throws RangeError if the shape or strides are invalid or `data` has the wrong length.
   */
  constructor(data: DTypeMap[D], shape: Shape, dtype: D, strides?: readonly number[]) {
    checkDType('Tensor', dtype);
    if (dtypeOfArray(data) !== dtype) {
      throw argTypeError('Tensor', 'data', `be a ${allocate(dtype, 0).constructor.name} for dtype '${dtype}'`, data);
    }
    const size = checkShape('Tensor', 'shape', shape);
    if (strides === undefined || strides === null) {
      if (data.length !== size) {
        throw argRangeErrorRaw(
          'Tensor',
          'data',
          `have ${size} elements to match shape ${formatShape(shape)}`,
          `${data.length} elements`,
        );
      }
      this.data = data;
      this.#strides = undefined;
      this.#contiguous = true;
    } else {
      const st = checkStrides('Tensor', strides, shape);
      const span = spanOf(shape, st, size);
      if (data.length < span) {
        throw argRangeErrorRaw(
          'Tensor',
          'data',
          `have at least ${span} elements to reach every element of shape ${formatShape(shape)} with strides ${formatShape(st)}`,
          `${data.length} elements`,
        );
      }
      this.data = data.length === span ? data : (data.subarray(0, span) as DTypeMap[D]);
      this.#strides = st;
      this.#contiguous = isContiguousLayout(shape, st, size);
    }
    this.shape = Object.freeze(shape.slice());
    this.dtype = dtype;
    this.size = size;
  }

  /** Number of dimensions. */
  get ndim(): number {
    return this.shape.length;
  }

  /**
   * Element strides, one per dim (frozen; the same array on every read). The
   * stored strides of a view; row-major for a tensor built without strides.
   * A stride of 0 means the dim repeats one element (see {@link Tensor.expand}).
   */
  get strides(): readonly number[] {
    return (this.#strides ??= Object.freeze(contiguousStrides(this.shape)));
  }

  /**
   * Element offset of `data` within its ArrayBuffer
   * (`data.byteOffset / BYTES_PER_ELEMENT`). Views of one tensor share the
   * buffer and differ in this offset; it is not an offset into the parent's
   * `data` unless the parent's own offset is subtracted.
   */
  get storageOffset(): number {
    return this.data.byteOffset / this.data.BYTES_PER_ELEMENT;
  }

  /**
   * PyTorch's `is_contiguous()`: true when `data` holds exactly the elements
   * in row-major order (strides row-major on every dim of size > 1; empty
   * tensors count as contiguous).
   */
  isContiguous(): boolean {
    return this.#contiguous;
  }

  /**
   * `this` when already contiguous, else a contiguous copy (PyTorch's
   * `contiguous()`). float32 copies run on `backend` (default: the execution
   * context's), so they are recorded inside `runAsync` and keep -0 and NaN bit
   * patterns; int32/bool copies run in JS.
   * @throws Error for a non-contiguous int32/bool tensor inside `runAsync()`/`forwardAsync()`,
   *   or when the current backend cannot run there (the JS backend).
   */
  contiguous(backend?: BackendName | Backend): Tensor<D> {
    if (this.#contiguous) return this;
    const out = allocateUninitialized(this.dtype, this.size);
    copyStrided(this.data, this.shape, this.#strides!, out, backend);
    return this.#copied(new Tensor(out, this.shape, this.dtype));
  }

  // -------------------------------------------------------------------------
  // Autograd

  /**
   * Whether gradients are computed for this tensor (PyTorch's
   * `requires_grad`). Set it on leaves (tensors you created, parameters:
   * modules set it on theirs); results of ops on such tensors require grad
   * themselves while grad mode is on (see `noGrad`). Only float32 tensors can
   * require grad.
   * @throws TypeError when set to true on an int32/bool tensor, or to anything but a boolean.
   * @throws RangeError when set to false on a non-leaf (use {@link detach}).
   */
  get requiresGrad(): boolean {
    return this.#requiresGrad;
  }

  set requiresGrad(flag: boolean) {
    if (typeof flag !== 'boolean') throw argTypeError('requiresGrad', 'flag', 'be a boolean', flag);
    if (flag && this.dtype !== 'float32') {
      throw argTypeError('requiresGrad', 'this', 'be a float32 Tensor (only floating point tensors can require gradients)', this);
    }
    if (!flag && this.#gradFn !== null) {
      throw argRangeErrorRaw('requiresGrad', 'flag',
        'be true for a non-leaf tensor (it is the result of an op that requires grad; use detach() for a tensor without history)',
        `false on a tensor with gradFn ${this.#gradFn.name}`);
    }
    this.#requiresGrad = flag;
  }

  /** Sets {@link requiresGrad} (default true) and returns this tensor, as PyTorch's `requires_grad_()`. */
  requiresGrad_(flag = true): this {
    this.requiresGrad = flag;
    return this;
  }

  /**
   * The gradient accumulated into this tensor by {@link backward} (null until
   * then): a contiguous float32 tensor of this shape. Gradients accumulate
   * across backward calls until set to null (or zeroed). Only leaves get one,
   * unless {@link retainGrad} was called.
   * @throws TypeError/RangeError when set to anything but null or a float32 tensor of this shape.
   */
  get grad(): Tensor<'float32'> | null {
    this.#gradPrivate = false;
    return this.#grad;
  }

  set grad(g: Tensor<'float32'> | null) {
    if (g !== null) {
      if (!(g instanceof Tensor) || g.dtype !== 'float32') throw argTypeError('grad', 'value', 'be null or a float32 Tensor', g);
      if (g.shape.length !== this.shape.length || g.shape.some((d, i) => d !== this.shape[i])) {
        throw argRangeErrorRaw('grad', 'value', `have this tensor's shape ${formatShape(this.shape)}`, formatShape(g.shape));
      }
    }
    this.#grad = g;
    this.#gradPrivate = false;
  }

  /**
   * Internal (autograd, optim): {@link grad} without handing it out. A gradient the backward created in memory of
   * its own ({@link _setPrivateGrad}) stays private until code outside the library reads `grad`: then nothing but
   * this tensor and the library refers to its memory, and zeroGrad may recycle it.
   */
  _peekGrad(): Tensor<'float32'> | null {
    return this.#grad;
  }

  /** Internal (autograd): stores a gradient whose memory nothing else refers to (see {@link _peekGrad}). */
  _setPrivateGrad(g: Tensor<'float32'>): void {
    this.grad = g;
    this.#gradPrivate = true;
  }

  /** Internal (optim): true while the gradient is private (see {@link _peekGrad}). */
  get _gradIsPrivate(): boolean {
    return this.#gradPrivate && this.#grad !== null;
  }

  /** The backward node of the op that produced this tensor (PyTorch's `grad_fn`), or null for a leaf. */
  get gradFn(): GradFn | null {
    return this.#gradFn;
  }

  /** True for a tensor that no recorded op produced: made by the user, a parameter, or the result of {@link detach}. */
  get isLeaf(): boolean {
    return this.#gradFn === null;
  }

  /**
   * The version of this tensor's memory: in-place writes (`set`, an op's `out`
   * or `sumOut`, optimizer steps) increase it, and views share their base's
   * counter. Autograd checks that tensors saved for backward were not
   * modified since; the native backend re-packs a cached GEMM weight whose
   * version changed. Code that writes `data` directly must call
   * {@link _bumpVersion} afterwards.
   */
  get _version(): number {
    return this.#versionCounter?.value ?? 0;
  }

  /** Marks this tensor's memory as modified in place (see {@link _version}). */
  _bumpVersion(): void {
    (this.#versionCounter ??= { value: 0 }).value++;
  }

  /**
   * A tensor sharing this one's memory (and version counter) that is not part
   * of any graph and does not require grad (PyTorch's `detach()`).
   */
  detach(): Tensor<D> {
    const out = new Tensor(this.data, this.shape, this.dtype, this.#contiguous ? undefined : this.#strides);
    out.#versionCounter = (this.#versionCounter ??= { value: 0 });
    return out;
  }

  /**
   * Computes the gradient of this tensor with respect to every leaf of its
   * graph that requires grad and accumulates it into their {@link grad}
   * (PyTorch's `backward()`). A one-element tensor (a loss) needs no
   * `gradOutput`; any other needs the gradient of some scalar with respect
   * to it, a float32 tensor of its shape. The graph's saved tensors are freed
   * afterwards unless `options.retainGraph`.
   * @throws RangeError for a tensor that does not require grad, a missing or mis-shaped `gradOutput`; Error
   *   for a graph already freed by an earlier backward, or a saved tensor modified in place since.
   */
  backward(gradOutput?: Tensor<'float32'>, options: BackwardOptions = {}): void {
    hooks('backward').backward(this, gradOutput, options);
  }

  /** Keeps the gradient of this non-leaf tensor in {@link grad} on backward (leaves always get theirs). */
  retainGrad(): this {
    if (!this.#requiresGrad) {
      throw argRangeErrorRaw('retainGrad', 'this', 'require grad', 'a tensor that does not require grad');
    }
    if (this.#gradFn !== null) hooks('retainGrad').retainGrad(this);
    return this;
  }

  /** Which output of {@link gradFn} this tensor is. @internal */
  get _outputNr(): number {
    return this.#outputNr;
  }

  /**
   * Makes this tensor output `outputNr` of `fn` (an op's result; or an `out`
   * tensor the op wrote in place, whose history is replaced). Only
   * lib/autograd calls this. @internal
   */
  _setGradFn(fn: GradFn, outputNr = 0): void {
    this.#gradFn = fn;
    this.#outputNr = outputNr;
    this.#requiresGrad = true;
  }

  /** A leaf's gradient accumulator node (lib/autograd creates and keeps it). @internal */
  get _gradAccumulator(): GradFn | null {
    return this.#gradAccumulator;
  }

  set _gradAccumulator(node: GradFn | null) {
    this.#gradAccumulator = node;
  }

  /** A view of this tensor: shares the version counter, and records its backward when this one requires grad. */
  #viewed(kind: ViewKind, args: readonly number[], out: Tensor<D>): Tensor<D> {
    out.#versionCounter = (this.#versionCounter ??= { value: 0 });
    if (this.#requiresGrad && currentContext().gradEnabled) hooks(kind).view(kind, this, out, args);
    return out;
  }

  /** A copy of this tensor: records an identity backward when this one requires grad. */
  #copied(out: Tensor<D>): Tensor<D> {
    if (this.#requiresGrad && currentContext().gradEnabled) hooks('copy').view('copy', this, out, []);
    return out;
  }

  /** A view over this tensor's memory starting `offset` elements into `data`. */
  #derive(offset: number, shape: number[], strides: number[]): Tensor<D> {
    let size = 1;
    for (const n of shape) size *= n;
    const span = spanOf(shape, strides, size);
    const data = offset === 0 && span === this.data.length
      ? this.data
      : (this.data.subarray(offset, offset + span) as DTypeMap[D]);
    return new Tensor(data, shape, this.dtype, strides);
  }

  /**
   * Same elements, new shape, without copying (PyTorch's `view`). One entry
   * may be -1 and is inferred. Always possible for a contiguous tensor; for
   * a strided view only when every new dim lies within a run of old dims
   * that are contiguous with each other (PyTorch's rule).
   * @throws RangeError if the element count differs, the shape is invalid, or the
   *   strides do not allow a view (use {@link Tensor.reshape}, which copies then).
   */
  view(shape: Shape): Tensor<D>;
  view(...shape: number[]): Tensor<D>;
  view(...args: unknown[]): Tensor<D> {
    const shape = inferShape('view', args, this.size, this.shape);
    if (this.#contiguous) return this.#viewed('reshape', [], new Tensor(this.data, shape, this.dtype));
    const st = computeViewStrides(this.shape, this.#strides!, shape, this.size);
    if (st === null) {
      throw argRangeErrorRaw('view', 'shape',
        "be compatible with the input tensor's size and stride (view size is not compatible with input tensor's " +
        'size and stride: at least one dimension spans across two contiguous subspaces; use .reshape(...) instead)',
        `${formatShape(shape)} for a tensor of shape ${formatShape(this.shape)} with strides ${formatShape(this.strides)}`);
    }
    return this.#viewed('reshape', [], this.#derive(0, shape, st));
  }

  /**
   * Same elements, new shape (PyTorch's `reshape`). One entry may be -1 and
   * is inferred. A view sharing memory whenever {@link Tensor.view} is
   * possible (always for contiguous tensors); otherwise a contiguous copy,
   * and then writes do not reach this tensor.
   * @throws RangeError if the element count differs or the shape is invalid.
   */
  reshape(shape: Shape): Tensor<D>;
  reshape(...shape: number[]): Tensor<D>;
  reshape(...args: unknown[]): Tensor<D> {
    const shape = inferShape('reshape', args, this.size, this.shape);
    if (this.#contiguous) return this.#viewed('reshape', [], new Tensor(this.data, shape, this.dtype));
    const st = computeViewStrides(this.shape, this.#strides!, shape, this.size);
    if (st !== null) return this.#viewed('reshape', [], this.#derive(0, shape, st));
    // A copy: the copy's history (this → contiguous) plus a view of it.
    return this.contiguous().reshape(shape);
  }

  /** A view with dims `dim0` and `dim1` swapped (negative dims count from the end). */
  transpose(dim0: number, dim1: number): Tensor<D> {
    const d0 = normalizeDim('transpose', 'dim0', dim0, this.ndim);
    const d1 = normalizeDim('transpose', 'dim1', dim1, this.ndim);
    const shape = this.shape.slice();
    const strides = this.strides.slice();
    if (this.ndim > 0) {
      [shape[d0], shape[d1]] = [shape[d1]!, shape[d0]!];
      [strides[d0], strides[d1]] = [strides[d1]!, strides[d0]!];
    }
    return this.#viewed('transpose', [d0, d1], this.#derive(0, shape, strides));
  }

  /**
   * A view with the dims reordered: dim i of the result is dim `dims[i]` of
   * this tensor. `dims` (an array or varargs) must be a permutation of the
   * dims; negative entries count from the end.
   */
  permute(dims: readonly number[]): Tensor<D>;
  permute(...dims: number[]): Tensor<D>;
  permute(...args: unknown[]): Tensor<D> {
    const dims = intList('permute', 'dims', args);
    const nd = this.ndim;
    if (dims.length !== nd) {
      throw argRangeErrorRaw('permute', 'dims', `have ${nd} entries (one per dim of shape ${formatShape(this.shape)})`,
        describeValue(dims));
    }
    const seen = new Array<boolean>(nd).fill(false);
    const shape = new Array<number>(nd);
    const strides = new Array<number>(nd);
    const order = new Array<number>(nd);
    const src = this.strides;
    for (let i = 0; i < nd; i++) {
      const d = normalizeDim('permute', `dims[${i}]`, dims[i], nd);
      if (seen[d]) {
        throw argRangeErrorRaw('permute', 'dims', `be a permutation of the ${nd} dims (dim ${d} repeats)`,
          describeValue(dims));
      }
      seen[d] = true;
      order[i] = d;
      shape[i] = this.shape[d]!;
      strides[i] = src[d]!;
    }
    return this.#viewed('permute', order, this.#derive(0, shape, strides));
  }

  /** PyTorch's `t()`: a transposed view of a 2-D tensor; 0-D and 1-D tensors come back as a view of themselves. */
  t(): Tensor<D> {
    if (this.ndim > 2) {
      throw argRangeErrorRaw('t', 'this', 'have at most 2 dims (use transpose or permute)', formatShape(this.shape));
    }
    return this.ndim === 2 ? this.transpose(0, 1) : this.#viewed('reshape', [], this.#derive(0, this.shape.slice(), this.strides.slice()));
  }

  /** Throws for 0-D tensors in ops that index along a dim. */
  #requireDims(fn: string): void {
    if (this.ndim === 0) throw argRangeErrorRaw(fn, 'this', 'have at least 1 dim', 'a 0-D tensor');
  }

  /**
   * A view of `length` entries of dim `dim` starting at `start` (PyTorch's
   * `narrow`; a negative `start` counts from the end).
   * @throws RangeError unless `0 <= start` (after wrapping) and `start + length <= shape[dim]`.
   */
  narrow(dim: number, start: number, length: number): Tensor<D> {
    const fn = 'narrow';
    this.#requireDims(fn);
    const d = normalizeDim(fn, 'dim', dim, this.ndim);
    const n = this.shape[d]!;
    let s = checkInt(fn, 'start', start, -n, n);
    if (s < 0) s += n;
    const len = checkInt(fn, 'length', length, 0, n - s);
    const shape = this.shape.slice();
    shape[d] = len;
    const strides = this.strides.slice();
    return this.#viewed('slice', [d, s, len, 1], this.#derive(s * strides[d]!, shape, strides));
  }

  /**
   * A view of `x[..., start:end:step, ...]` along `dim`, with Python slice
   * semantics: `start`/`end` default to the whole dim (`undefined` or `null`),
   * negative values count from the end, and out-of-range values are clamped
   * (an empty range gives a dim of size 0).
   * @throws RangeError for `step < 1` or non-integer bounds.
   */
  slice(dim: number, start?: number | null, end?: number | null, step = 1): Tensor<D> {
    const fn = 'slice';
    this.#requireDims(fn);
    const d = normalizeDim(fn, 'dim', dim, this.ndim);
    const n = this.shape[d]!;
    const st = checkInt(fn, 'step', step, 1);
    const clamp = (arg: string, v: number | null | undefined, dflt: number): number => {
      if (v === undefined || v === null) return dflt;
      let i = checkInt(fn, arg, v);
      if (i < 0) i += n;
      return Math.min(Math.max(i, 0), n);
    };
    const lo = clamp('start', start, 0);
    const hi = clamp('end', end, n);
    const len = hi > lo ? Math.ceil((hi - lo) / st) : 0;
    const shape = this.shape.slice();
    shape[d] = len;
    const strides = this.strides.slice();
    const offset = lo * strides[d]!;
    strides[d] = strides[d]! * st;
    return this.#viewed('slice', [d, lo, len, st], this.#derive(len === 0 ? 0 : offset, shape, strides));
  }

  /** A view of entry `index` of dim `dim`, with that dim removed (PyTorch's `select`; negative index counts from the end). */
  select(dim: number, index: number): Tensor<D> {
    const fn = 'select';
    this.#requireDims(fn);
    const d = normalizeDim(fn, 'dim', dim, this.ndim);
    const n = this.shape[d]!;
    let i = checkInt(fn, 'index', index);
    if (i < -n || i >= n) throw argRangeError(fn, 'index', `be in [${-n}, ${n - 1}] for dim ${d} of size ${n}`, i);
    if (i < 0) i += n;
    const shape = this.shape.slice();
    const strides = this.strides.slice();
    const offset = i * strides[d]!;
    shape.splice(d, 1);
    strides.splice(d, 1);
    return this.#viewed('select', [d, i], this.#derive(offset, shape, strides));
  }

  /** A view with a new dim of size 1 inserted at `dim` (in [-ndim-1, ndim]; negative counts from the end). */
  unsqueeze(dim: number): Tensor<D> {
    const nd = this.ndim;
    let d = checkInt('unsqueeze', 'dim', dim, -nd - 1, nd);
    if (d < 0) d += nd + 1;
    const shape = this.shape.slice();
    const strides = this.strides.slice();
    // PyTorch's choice: the stride a contiguous tensor would have there.
    const s = d >= nd ? 1 : shape[d]! * strides[d]!;
    shape.splice(d, 0, 1);
    strides.splice(d, 0, s);
    return this.#viewed('reshape', [], this.#derive(0, shape, strides));
  }

  /**
   * A view without dims of size 1: all of them, or only `dim` (a number or a
   * list); a named dim whose size is not 1 is kept, as in PyTorch.
   */
  squeeze(dim?: number | readonly number[]): Tensor<D> {
    const nd = this.ndim;
    const drop = new Array<boolean>(nd).fill(false);
    if (dim === undefined) {
      for (let i = 0; i < nd; i++) drop[i] = this.shape[i] === 1;
    } else {
      const list: unknown[] = Array.isArray(dim) ? (dim as unknown[]) : [dim];
      for (let k = 0; k < list.length; k++) {
        const d = normalizeDim('squeeze', Array.isArray(dim) ? `dim[${k}]` : 'dim', list[k], nd);
        if (nd > 0 && this.shape[d] === 1) drop[d] = true;
      }
    }
    const shape: number[] = [];
    const strides: number[] = [];
    const src = this.strides;
    for (let i = 0; i < nd; i++) {
      if (drop[i]) continue;
      shape.push(this.shape[i]!);
      strides.push(src[i]!);
    }
    return this.#viewed('reshape', [], this.#derive(0, shape, strides));
  }

  /**
   * A view repeating size-1 dims to `sizes` (an array or varargs) with
   * stride 0, without copying (PyTorch's `expand`). -1 keeps a dim's size;
   * extra leading sizes add new dims. Writing through an expanded view writes
   * the one shared element.
   * @throws RangeError if a non-1 dim would change size, or `sizes` is shorter than the shape.
   */
  expand(sizes: readonly number[]): Tensor<D>;
  expand(...sizes: number[]): Tensor<D>;
  expand(...args: unknown[]): Tensor<D> {
    const fn = 'expand';
    const sizes = intList(fn, 'sizes', args);
    const nd = this.ndim;
    if (sizes.length < nd) {
      throw argRangeErrorRaw(fn, 'sizes', `have at least ${nd} entries (the number of dims of shape ${formatShape(this.shape)})`,
        describeValue(sizes));
    }
    const lead = sizes.length - nd;
    const shape = new Array<number>(sizes.length);
    const strides = new Array<number>(sizes.length);
    const src = this.strides;
    for (let i = 0; i < sizes.length; i++) {
      const v = checkInt(fn, `sizes[${i}]`, sizes[i], -1);
      if (i < lead) {
        if (v === -1) throw argRangeError(fn, `sizes[${i}]`, 'be >= 0 in a new leading dim (-1 keeps an existing size)', v);
        shape[i] = v;
        strides[i] = 0;
        continue;
      }
      const old = this.shape[i - lead]!;
      if (v === -1 || v === old) {
        shape[i] = old;
        strides[i] = src[i - lead]!;
      } else if (old === 1) {
        shape[i] = v;
        strides[i] = 0;
      } else {
        throw argRangeErrorRaw(fn, `sizes[${i}]`,
          `be ${old} or -1 to match the non-singleton dim ${i - lead} of shape ${formatShape(this.shape)}`, String(v));
      }
    }
    checkShape(fn, 'sizes', shape);
    return this.#viewed('expand', [], this.#derive(0, shape, strides));
  }

  /** Offset in `data` of a (possibly negative, PyTorch-style) multi-index; validates. */
  private offsetOf(fn: string, idx: readonly number[]): number {
    if (idx.length !== this.shape.length) {
      throw argRangeErrorRaw(fn, 'index', `have ${this.shape.length} entries for shape ${formatShape(this.shape)}`,
        describeValue(idx.slice()));
    }
    // Contiguous: row-major arithmetic (right even where size-1 dims store other strides: their index is 0).
    const st = this.#contiguous ? null : this.#strides!;
    let off = 0;
    for (let i = 0; i < idx.length; i++) {
      const n = this.shape[i]!;
      let v = checkInt(fn, `index[${i}]`, idx[i]);
      if (v < -n || v >= n) throw argRangeError(fn, `index[${i}]`, `be in [${-n}, ${n - 1}] for dim ${i}`, v);
      if (v < 0) v += n;
      off = st === null ? off * n + v : off + v * st[i]!;
    }
    return off;
  }

  /** Offset in `data` of the element at row-major position `i`. */
  #offsetOfLinear(i: number): number {
    if (this.#contiguous) return i;
    const st = this.#strides!;
    let off = 0;
    for (let d = this.shape.length - 1; d >= 0; d--) {
      const n = this.shape[d]!;
      off += (i % n) * st[d]!;
      i = Math.floor(i / n);
    }
    return off;
  }

  /**
   * Element at a multi-index (negative indices count from the end), read
   * through the strides. Bool tensors give booleans.
   */
  get(...index: number[]): ElementOf<D> {
    const v = this.data[this.offsetOf('get', index)]!;
    return (this.dtype === 'bool' ? v !== 0 : v) as ElementOf<D>;
  }

  /**
   * Writes one element at a multi-index (int32 values are truncated, like a
   * typed-array store). On a view this writes the parent's memory; on an
   * expanded dim it writes the one element all its indices share.
   */
  set(index: readonly number[], value: ElementOf<D> | number): void {
    this.data[this.offsetOf('set', index)] = Number(value);
    this._bumpVersion();
  }

  /** The single element of a tensor with size 1. */
  item(): ElementOf<D> {
    if (this.size !== 1) throw argRangeErrorRaw('item', 'this', 'have exactly one element', formatShape(this.shape));
    const v = this.data[0]!;
    return (this.dtype === 'bool' ? v !== 0 : v) as ElementOf<D>;
  }

  /** Nested JS arrays mirroring the shape (a bare value for 0-D), read through the strides; bool elements become booleans. */
  toArray(): NestedArray<ElementOf<D>> {
    const data = this.data;
    const shape = this.shape;
    const strides = this.strides;
    const asBool = this.dtype === 'bool';
    const build = (dim: number, offset: number): NestedArray<ElementOf<D>> => {
      if (dim === shape.length) {
        const v = data[offset]!;
        return (asBool ? v !== 0 : v) as ElementOf<D>;
      }
      const n = shape[dim]!;
      const s = strides[dim]!;
      const out = new Array<NestedArray<ElementOf<D>>>(n);
      for (let i = 0; i < n; i++) out[i] = build(dim + 1, offset + i * s);
      return out;
    };
    return build(0, 0);
  }

  /** The elements in row-major order as a new array of this dtype (a JS copy). */
  #elementsJs(): DTypeMap[D] {
    if (this.#contiguous) return this.data.slice() as DTypeMap[D];
    const out = allocate(this.dtype, this.size);
    const c = coalesce(this.shape, this.#strides!);
    gatherJs(this.data, c.shape, c.strides, out);
    return out;
  }

  /**
   * A deep copy: new memory, same shape and dtype, always contiguous (a
   * copy of a view does not alias its parent). Inside `runAsync` a float32
   * copy is a recorded backend call.
   */
  clone(): Tensor<D> {
    if (!this.#contiguous) return this.contiguous();
    if (this.dtype === 'float32' && recordingList()) {
      // Inside runAsync the values are not computed yet: the copy is a recorded backend call, in order.
      const out = allocateUninitialized(this.dtype, this.size);
      copyStrided(this.data, this.shape, this.strides, out);
      return this.#copied(new Tensor(out, this.shape, this.dtype));
    }
    return this.#copied(new Tensor(this.data.slice() as DTypeMap[D], this.shape, this.dtype));
  }

  /** A contiguous copy converted to `dtype` (float → int32 truncates toward zero; → bool is `x !== 0`). */
  astype<E extends DType>(dtype: E): Tensor<E> {
    checkDType('astype', dtype);
    // Same dtype: a clone (differentiable); another dtype leaves the graph, as in PyTorch for integer results.
    if ((dtype as DType) === this.dtype) return this.clone() as unknown as Tensor<E>;
    const out = allocate(dtype, this.size);
    const src = this.#contiguous ? this.data : this.#elementsJs();
    if (dtype === 'bool') {
      for (let i = 0; i < src.length; i++) out[i] = src[i] !== 0 ? 1 : 0;
    } else {
      out.set(src);
    }
    return new Tensor(out, this.shape, dtype);
  }

  /**
   * `Tensor(float32, [2, 3]) [[1, 2, 3], [4, 5, 6]]`; tensors over 1000
   * elements print only their first and last few values (in element order,
   * also for views).
   */
  toString(): string {
    const head = `Tensor(${this.dtype}, ${formatShape(this.shape)})`;
    const fmt = (v: number): string => (this.dtype === 'bool' ? String(v !== 0) : formatNumber(v));
    if (this.size <= 1000) {
      const render = (x: NestedArray<ElementOf<D>>): string =>
        Array.isArray(x) ? `[${x.map(render).join(', ')}]` : fmt(Number(x));
      return `${head} ${render(this.toArray())}`;
    }
    const d = this.data;
    const at = (i: number): string => fmt(d[this.#offsetOfLinear(i)]!);
    const n = this.size;
    return `${head} data=[${at(0)}, ${at(1)}, ${at(2)}, ..., ${at(n - 3)}, ${at(n - 2)}, ${at(n - 1)}]`;
  }

  /** Makes `console.log(t)` print {@link Tensor.toString} in Node. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}


function formatNumber(v: number): string {
  if (Number.isInteger(v)) return String(v);
  // 6 significant digits like PyTorch's default print, without trailing zeros.
  return String(Number(v.toPrecision(6)));
}

/** Writes `value` (already validated as a number or boolean) into slot `i` of a new dtype array. */
function storeChecked(fn: string, out: DTypeMap[DType], dtype: DType, i: number, value: number): void {
  if (dtype === 'int32') {
    if (!Number.isInteger(value) || value < INT32_MIN || value > INT32_MAX) {
      throw argRangeError(fn, 'data', `hold integers in int32 range for dtype 'int32' (element ${i})`, value);
    }
  } else if (dtype === 'bool') {
    value = value !== 0 ? 1 : 0;
  }
  out[i] = value;
}

/** Flattens nested arrays into `leaves`, inferring and checking the shape. */
function flattenNested(data: unknown, shape: number[], leaves: unknown[]): void {
  // Infer the shape from the first element at each depth, then require every sibling to agree.
  let probe: unknown = data;
  while (Array.isArray(probe)) {
    shape.push(probe.length);
    probe = probe[0];
  }
  const walk = (x: unknown, depth: number, path: string): void => {
    if (depth === shape.length) {
      if (Array.isArray(x)) {
        throw argRangeErrorRaw('tensor', 'data', `be a regular nested array (found an extra level at ${path})`,
          `shape ${formatShape(shape)} from the first elements`);
      }
      leaves.push(x);
      return;
    }
    if (!Array.isArray(x) || x.length !== shape[depth]) {
      throw argRangeErrorRaw(
        'tensor',
        'data',
        `be a regular nested array (length ${shape[depth]} at depth ${depth}, like the first element)`,
        `${Array.isArray(x) ? `length ${x.length}` : describeValue(x)} at ${path || 'top level'}`,
      );
    }
    for (let i = 0; i < x.length; i++) walk(x[i], depth + 1, `${path}[${i}]`);
  };
  walk(data, 0, '');
}

/**
 * Builds a tensor.
 *
 * - Typed arrays of a tensor dtype (`Float32Array`, `Int32Array`, `Uint8Array` for bool) are wrapped
 *   **without copying**; other typed arrays (e.g. `Float64Array`) are copied into `dtype` (default float32).
 * - Nested arrays have their shape inferred; flat arrays need `shape` (or become 1-D).
 *   A given `shape` must have as many elements as the data (it then acts as a reshape).
 * - Without `dtype`: all-boolean data is `bool`, any number makes it `float32`.
 *   `int32` requires integer values in range (RangeError otherwise); `bool` maps non-zero to true.
 *
 * @throws TypeError for unsupported data or dtype, or a typed array that cannot back `dtype` without a copy.
 * @throws RangeError for ragged arrays, bad shapes and shape/length mismatches.
 */
export function tensor(data: Float32Array, shape?: Shape | null, dtype?: 'float32'): Tensor<'float32'>;
export function tensor(data: Int32Array, shape?: Shape | null, dtype?: 'int32'): Tensor<'int32'>;
export function tensor(data: Uint8Array, shape?: Shape | null, dtype?: 'bool'): Tensor<'bool'>;
export function tensor(data: NestedBooleans, shape?: Shape | null): Tensor<'bool'>;
export function tensor(data: TensorData, shape?: Shape | null): Tensor<'float32'>;
export function tensor<D extends DType>(data: TensorData, shape: Shape | null | undefined, dtype: D): Tensor<D>;
export function tensor(data: TensorData, shape?: Shape | null, dtype?: DType): Tensor {
  if (dtype !== undefined) checkDType('tensor', dtype);
  if (shape !== undefined && shape !== null) checkShape('tensor', 'shape', shape);

  if (ArrayBuffer.isView(data)) {
    if (data instanceof DataView || typeof (data as { length?: unknown }).length !== 'number') {
      throw argTypeError('tensor', 'data', 'be a number typed array or nested arrays', data);
    }
    if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
      throw argTypeError('tensor', 'data', 'be a number typed array (bigint arrays are not supported)', data);
    }
    const arr = data as unknown as ArrayLike<number>;
    const own = dtypeOfArray(arr);
    const finalShape = shape ?? [arr.length];
    const size = checkShape('tensor', 'shape', finalShape);
    if (size !== arr.length) {
      throw argRangeErrorRaw('tensor', 'shape', `have ${arr.length} elements to match data`,
        `${formatShape(finalShape)} (${size} elements)`);
    }
    if (own !== undefined && (dtype === undefined || dtype === own)) {
      return new Tensor(arr as DTypeMap[DType], finalShape, own);
    }
    if (own !== undefined) {
      // Converting would silently copy and break the documented zero-copy aliasing.
      throw argTypeError('tensor', 'data', `be a ${allocate(dtype!, 0).constructor.name} for dtype '${dtype}' ` +
        `(typed arrays are wrapped without copying; convert with .astype('${dtype}'))`, data);
    }
    const target = dtype ?? 'float32';
    const out = allocate(target, arr.length);
    for (let i = 0; i < arr.length; i++) storeChecked('tensor', out, target, i, arr[i]!);
    return new Tensor(out, finalShape, target);
  }

  if (typeof data !== 'number' && typeof data !== 'boolean' && !Array.isArray(data)) {
    throw argTypeError('tensor', 'data', 'be a number, boolean, nested array or typed array', data);
  }
  const inferred: number[] = [];
  const leaves: unknown[] = [];
  flattenNested(data, inferred, leaves);
  let sawNumber = false;
  for (let i = 0; i < leaves.length; i++) {
    const v = leaves[i];
    if (typeof v === 'number') sawNumber = true;
    else if (typeof v !== 'boolean') {
      throw argTypeError('tensor', 'data', `contain only numbers or booleans (element ${i})`, v);
    }
  }
  const target: DType = dtype ?? (sawNumber || leaves.length === 0 ? 'float32' : 'bool');
  const finalShape = shape ?? inferred;
  const size = checkShape('tensor', 'shape', finalShape);
  if (size !== leaves.length) {
    throw argRangeErrorRaw('tensor', 'shape', `have ${leaves.length} elements to match data`,
      `${formatShape(finalShape)} (${size} elements)`);
  }
  const out = allocate(target, size);
  for (let i = 0; i < size; i++) storeChecked('tensor', out, target, i, Number(leaves[i]));
  return new Tensor(out, finalShape, target);
}

/**
 * A tensor meant as an output buffer that will be fully overwritten: its
 * contents are unspecified (large ones are not zero-filled, which saves a pass
 * over memory per op). Use {@link zeros} when the values matter.
 */
export function empty(shape: ShapeLike): Tensor<'float32'>;
export function empty<D extends DType>(shape: ShapeLike, dtype: D): Tensor<D>;
export function empty<D extends DType>(shape: ShapeLike, dtype?: D): Tensor<D> {
  const dt = (dtype === undefined ? 'float32' : checkDType('empty', dtype)) as D;
  const s = toShape('empty', 'shape', shape);
  return new Tensor(allocateUninitialized(dt, checkShape('empty', 'shape', s)), s, dt);
}

/** A tensor of zeros. */
// Overloads rather than a defaulted type parameter: with `<D = 'float32'>`, a contextual type such as
// `Tensor<'float32'> | Tensor<'bool'>` would infer D as the union and make `zeros([2])` unassignable.
export function zeros(shape: ShapeLike): Tensor<'float32'>;
export function zeros<D extends DType>(shape: ShapeLike, dtype: D): Tensor<D>;
export function zeros<D extends DType>(shape: ShapeLike, dtype?: D): Tensor<D> {
  const dt = (dtype === undefined ? 'float32' : checkDType('zeros', dtype)) as D;
  const s = toShape('zeros', 'shape', shape);
  return new Tensor(allocate(dt, checkShape('zeros', 'shape', s)), s, dt);
}

/** A tensor of ones (`true` for bool). */
export function ones(shape: ShapeLike): Tensor<'float32'>;
export function ones<D extends DType>(shape: ShapeLike, dtype: D): Tensor<D>;
export function ones<D extends DType>(shape: ShapeLike, dtype?: D): Tensor<D> {
  const t = zeros(shape, (dtype ?? 'float32') as D);
  t.data.fill(1);
  return t;
}

/**
 * A tensor filled with `value`. Without `dtype`: a boolean value gives `bool`,
 * a number gives `float32`.
 */
export function full(shape: ShapeLike, value: number): Tensor<'float32'>;
export function full(shape: ShapeLike, value: boolean): Tensor<'bool'>;
export function full<D extends DType>(shape: ShapeLike, value: number | boolean, dtype: D): Tensor<D>;
export function full<D extends DType>(shape: ShapeLike, value: number | boolean, dtype?: D): Tensor<D> {
  if (typeof value !== 'number' && typeof value !== 'boolean') {
    throw argTypeError('full', 'value', 'be a number or boolean', value);
  }
  const dt = (dtype ?? (typeof value === 'boolean' ? 'bool' : 'float32')) as D;
  checkDType('full', dt);
  const t = zeros(shape, dt);
  if (t.size > 0) {
    storeChecked('full', t.data, dt, 0, Number(value));
    t.data.fill(t.data[0]!);
  }
  return t;
}

/**
 * `[start, end)` in steps of `step` (PyTorch `arange`). With one argument it
 * is `[0, start)`. Values are `start + i·step` (no accumulated rounding).
 * @throws RangeError for `step` 0, non-finite bounds, or non-integer values with dtype int32.
 */
export function arange(start: number, end?: number, step?: number): Tensor<'float32'>;
export function arange<D extends DType>(
  start: number, end: number | undefined, step: number | undefined, dtype: D,
): Tensor<D>;
export function arange<D extends DType>(start: number, end?: number, step = 1, dtype?: D): Tensor<D> {
  checkNumber('arange', 'start', start);
  if (end === undefined) {
    end = start;
    start = 0;
  } else {
    checkNumber('arange', 'end', end);
  }
  checkNumber('arange', 'step', step);
  if (step === 0) throw argRangeError('arange', 'step', 'be non-zero', step);
  const dt = (dtype === undefined ? 'float32' : checkDType('arange', dtype)) as D;
  if (dt === 'bool') throw argTypeError('arange', 'dtype', "be 'float32' or 'int32'", dt);
  const n = Math.max(0, Math.ceil((end - start) / step));
  const t = zeros([n], dt);
  for (let i = 0; i < n; i++) storeChecked('arange', t.data, dt, i, start + i * step);
  return t;
}

// ---------------------------------------------------------------------------
// Random numbers

/**
 * A small, fast, seedable PRNG: xoshiro128** (Blackman & Vigna), seeded
 * through splitmix32 so that nearby seeds give unrelated streams. Not
 * cryptographic. Same seed → same sequence on every platform.
 */
export class Rng {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;
  /** Second value of the last Box–Muller pair, or NaN when none is pending. */
  private spare = NaN;

  /** @param seed any finite number (integers up to 2^53 are distinct seeds); omitted → random. */
  constructor(seed?: number) {
    if (seed === undefined) {
      seed = Math.floor(Math.random() * 2 ** 32) * 2 ** 21 + Math.floor(Math.random() * 2 ** 21);
    }
    checkNumber('Rng', 'seed', seed);
    const hi = Math.floor(seed / 2 ** 32) | 0;
    let x = seed >>> 0;
    const next = (): number => {
      // splitmix32
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    // s0 determines the low 32 bits and s2 then the high ones, so distinct integer seeds
    // (below 2^53) give distinct states.
    this.s0 = next();
    this.s1 = next();
    this.s2 = (next() ^ hi) >>> 0;
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // all-zero state is a fixed point
  }

  /** A uniformly distributed unsigned 32-bit integer. */
  nextUint32(): number {
    const s1 = this.s1;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) on a 2^-24 grid, so it stays below 1 after rounding to float32. */
  uniform(): number {
    return (this.nextUint32() >>> 8) * 2 ** -24;
  }

  /** Standard normal (Box–Muller; both values of each pair are used). */
  normal(): number {
    const spare = this.spare;
    if (spare === spare) {
      this.spare = NaN;
      return spare;
    }
    // u1 in (0, 1] so log(u1) is finite.
    const u1 = (this.nextUint32() + 1) * 2 ** -32;
    const u2 = this.nextUint32() * 2 ** -32;
    const r = Math.sqrt(-2 * Math.log(u1));
    const theta = 2 * Math.PI * u2;
    this.spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /**
   * The generator's whole state (PyTorch's `Generator.get_state()`): four 32-bit words and the pending second
   * normal of the last Box–Muller pair (null when none). A plain JSON-safe object: {@link setState} with it
   * makes this or another `Rng` continue with the same numbers (a training checkpoint saves it).
   */
  getState(): RngState {
    return { s: [this.s0 >>> 0, this.s1 >>> 0, this.s2 >>> 0, this.s3 >>> 0], spare: this.spare === this.spare ? this.spare : null };
  }

  /**
   * Restores a state from {@link getState} (PyTorch's `Generator.set_state`). Nothing changes when it throws.
   * @throws TypeError naming the field when `state` is not `{ s: four integers in [0, 2^32), spare: number | null }`,
   *   RangeError for the all-zero state (which a generator never reaches).
   */
  setState(state: RngState): this {
    const fn = 'Rng.setState';
    if (state === null || typeof state !== 'object') throw new TypeError(`${fn}: argument 'state' must be an object { s, spare }, got ${state === null ? 'null' : typeof state}`);
    const s = state.s;
    if (!Array.isArray(s) || s.length !== 4 || s.some((w) => !Number.isInteger(w) || w < 0 || w >= 2 ** 32)) {
      throw new TypeError(`${fn}: field 's' must be 4 integers in [0, 2^32), got ${JSON.stringify(s)}`);
    }
    const spare = state.spare;
    if (spare !== null && (typeof spare !== 'number' || !Number.isFinite(spare))) {
      throw new TypeError(`${fn}: field 'spare' must be a finite number or null, got ${JSON.stringify(spare)}`);
    }
    if ((s[0] | s[1] | s[2] | s[3]) === 0) throw new RangeError(`${fn}: field 's' is all zeros, a state no generator reaches`);
    [this.s0, this.s1, this.s2, this.s3] = s.map((w) => w >>> 0) as [number, number, number, number];
    this.spare = spare ?? NaN;
    return this;
  }
}

/** What {@link Rng.getState} returns and {@link Rng.setState} takes. */
export interface RngState {
  /** The xoshiro128** words, each in [0, 2^32). */
  s: [number, number, number, number];
  /** The pending second value of a Box–Muller pair, or null. */
  spare: number | null;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** Options of {@link rand} and {@link randn}. */
export interface RandomOptions {
  /** Seed for a fresh {@link Rng}; omitted (and no `generator`) → random seed. */
  seed?: number;
  /** Draw from this generator instead (advances it); takes precedence over `seed`. */
  generator?: Rng;
}

function pickRng(fn: string, opts: RandomOptions | undefined): Rng {
  if (opts?.generator !== undefined) {
    if (!(opts.generator instanceof Rng)) throw argTypeError(fn, 'generator', 'be an Rng', opts.generator);
    return opts.generator;
  }
  return new Rng(opts?.seed);
}

/** float32 samples from N(0, 1); deterministic for a given seed. */
export function randn(shape: ShapeLike, opts?: RandomOptions): Tensor<'float32'> {
  const t = zeros(shape, 'float32');
  const rng = pickRng('randn', opts);
  const d = t.data;
  for (let i = 0; i < d.length; i++) d[i] = rng.normal();
  return t;
}

/** float32 samples uniform in [low, high) (default [0, 1)); deterministic for a given seed. */
export function rand(shape: ShapeLike, opts?: RandomOptions & { low?: number; high?: number }): Tensor<'float32'> {
  const low = opts?.low === undefined ? 0 : checkNumber('rand', 'low', opts.low);
  const high = opts?.high === undefined ? 1 : checkNumber('rand', 'high', opts.high);
  if (!(high >= low)) throw argRangeError('rand', 'high', `be >= low (${low})`, high);
  const t = zeros(shape, 'float32');
  const rng = pickRng('rand', opts);
  const d = t.data;
  const span = high - low;
  for (let i = 0; i < d.length; i++) d[i] = low + span * rng.uniform();
  return t;
}

/** True when `value` is a {@link Tensor} (optionally of `dtype`). */
export function isTensor<D extends DType>(value: unknown, dtype?: D): value is Tensor<D> {
  return value instanceof Tensor && (dtype === undefined || value.dtype === dtype);
}
