/**
 * Checks and helpers shared by the ops: argument types, `out` validation,
 * overlap tests, broadcasting of shapes and strides.
 */
import type { Backend, BackendName } from '../backend/backend';
import { currentContext } from '../context';
import { argRangeErrorRaw, argTypeError, formatShape, shapeError } from '../errors';
import { Tensor, contiguousStrides, empty } from '../tensor';
import type { Shape } from '../tensor';

export type F32 = Tensor<'float32'>;

// ---------------------------------------------------------------------------
// Validation helpers

export function checkTensor(fn: string, arg: string, x: unknown): Tensor {
  if (!(x instanceof Tensor)) throw argTypeError(fn, arg, 'be a Tensor', x);
  return x;
}

export function checkFloat(fn: string, arg: string, x: unknown): F32 {
  const t = checkTensor(fn, arg, x);
  if (t.dtype !== 'float32') throw argTypeError(fn, arg, 'be a float32 Tensor', t);
  return t as F32;
}

export function checkOptions(fn: string, opts: unknown): void {
  if (opts !== undefined && (typeof opts !== 'object' || opts === null)) {
    throw argTypeError(fn, 'opts', 'be an options object', opts);
  }
}

/** True when the two arrays share any bytes. */
export function overlaps(x: ArrayBufferView, y: ArrayBufferView): boolean {
  if (x.buffer !== y.buffer) return false;
  return x.byteOffset < y.byteOffset + y.byteLength && y.byteOffset < x.byteOffset + x.byteLength;
}

export function sameRegion(x: ArrayBufferView, y: ArrayBufferView): boolean {
  return x.buffer === y.buffer && x.byteOffset === y.byteOffset && x.byteLength === y.byteLength;
}

/**
 * Validates `out` against the result shape, or allocates. `inputs` lists
 * tensors `out` must not overlap (unless `allowSame` and it is exactly the
 * same memory, for element-wise ops that may run in place).
 */
export function output(
  fn: string, shape: Shape, out: unknown, inputs: readonly [string, Tensor | null | undefined][], allowSame: boolean,
): F32 {
  return checkOut(fn, shape, out, inputs, allowSame) ?? empty(shape, 'float32');
}

/** {@link output}'s checks of a caller's `out`, or null when there is none (the op allocates in its own layout). */
export function checkOut(
  fn: string, shape: Shape, out: unknown, inputs: readonly [string, Tensor | null | undefined][], allowSame: boolean,
): F32 | null {
  if (out === undefined) return null;
  const o = checkFloat(fn, 'out', out);
  if (o.shape.length !== shape.length || o.shape.some((d, i) => d !== shape[i])) {
    throw shapeError(fn, 'out', formatShape(shape), o.shape);
  }
  for (const [name, t] of inputs) {
    if (!t || t.size === 0 || o.size === 0 || !overlaps(o.data, t.data)) continue;
    if (allowSame && sameRegion(o.data, t.data)) continue;
    throw argRangeErrorRaw(fn, 'out', `not overlap input '${name}'${allowSame ? ' except exactly (in place)' : ''}`,
      'a tensor sharing its memory');
  }
  checkOutForGrad(fn, 'out', o);
  // The op writes it in place: autograd's saved-tensor checks and the packed-weight cache see the change.
  o._bumpVersion();
  return o;
}

/**
 * An `out` (or `sumOut`) an op is about to write in place: refused when it is a leaf that requires grad in grad
 * mode (its gradient would be lost, as PyTorch refuses in-place ops on such leaves).
 */
export function checkOutForGrad(fn: string, arg: string, out: Tensor): void {
  if (out.requiresGrad && out.isLeaf && currentContext().gradEnabled) {
    throw argRangeErrorRaw(fn, arg, 'not be a leaf tensor that requires grad while grad mode is on (write into it inside noGrad(), or into a tensor without requiresGrad)',
      `a leaf ${formatShape(out.shape)} with requiresGrad = true`);
  }
}

/**
 * `x` itself when contiguous, else its contiguous copy: for arguments an op
 * reads as flat row-major data (the copy is a backend call, so it stays in
 * order inside runAsync).
 */
export function dense<D extends Tensor['dtype']>(x: Tensor<D>, backend?: BackendName | Backend): Tensor<D> {
  return x.isContiguous() ? x : x.contiguous(backend);
}

/** A contiguous `out` (ops that write their result as one flat array need one). */
export function checkContiguousOut(fn: string, out: F32): F32 {
  if (!out.isContiguous()) {
    throw argRangeErrorRaw(fn, 'out', 'be contiguous', `a view with strides ${formatShape(out.strides)}`);
  }
  return out;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function prod(dims: Shape, from = 0, to = dims.length): number {
  let p = 1;
  for (let i = from; i < to; i++) p *= dims[i]!;
  return p;
}

/**
 * NumPy broadcast of two shapes (right-aligned; a dim of 1 stretches).
 * @throws RangeError naming `argB` when they are incompatible.
 */
export function broadcastShapes(fn: string, a: Shape, b: Shape, argB = 'b'): number[] {
  const nd = Math.max(a.length, b.length);
  const out = new Array<number>(nd);
  for (let i = 0; i < nd; i++) {
    const da = a[a.length - nd + i] ?? 1;
    const db = b[b.length - nd + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw argRangeErrorRaw(fn, argB, `have a shape broadcastable with ${formatShape(a)}`,
        `${formatShape(b)} (dim ${i - nd} is ${db} vs ${da})`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Element strides of a tensor of `shape` (`strides`, default contiguous) viewed as `outShape` (0 on broadcast dims). */
export function broadcastStrides(shape: Shape, outShape: Shape, strides: readonly number[] = contiguousStrides(shape)): number[] {
  const nd = outShape.length;
  const res = new Array<number>(nd).fill(0);
  for (let i = 0; i < shape.length; i++) {
    const j = nd - shape.length + i;
    res[j] = shape[i] === 1 && outShape[j] !== 1 ? 0 : strides[i]!;
  }
  return res;
}

