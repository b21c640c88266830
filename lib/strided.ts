/**
 * Strided layouts: the arithmetic behind {@link Tensor}'s views (spans,
 * contiguity, PyTorch's view-stride rule, shape arguments) and the copy of a
 * strided layout into a contiguous one (through a backend for float32, so it
 * is recorded in order inside runAsync).
 */
import { BinaryOp, type Backend, type BackendName } from './backend/backend';
import { recordingList } from './backend/recording';
import { resolveBackend } from './backend/registry';
import type { DType, DTypeMap } from './dtype';
import { argRangeError, argRangeErrorRaw, argTypeError, argTypeErrorRaw, describeValue, formatShape } from './errors';

/** A tensor shape: one non-negative integer per dimension (`[]` is a scalar). */
export type Shape = readonly number[];

/** Row-major (C order) strides, in elements, of a contiguous tensor of `shape`. */
export function contiguousStrides(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i]!;
  }
  return strides;
}


export type AnyTypedArray = DTypeMap[DType];

/**
 * Elements of `data` a layout reaches: 1 + Σ (shape[i] - 1)·strides[i], or 0
 * when the tensor is empty (nothing is reached).
 */
export function spanOf(shape: Shape, strides: readonly number[], size: number): number {
  if (size === 0) return 0;
  let span = 1;
  for (let i = 0; i < shape.length; i++) span += (shape[i]! - 1) * strides[i]!;
  return span;
}

/** PyTorch's rule: row-major strides on every dim of size > 1 (size-1 dims may have any stride); empty is contiguous. */
export function isContiguousLayout(shape: Shape, strides: readonly number[], size: number): boolean {
  if (size === 0) return true;
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const n = shape[i]!;
    if (n === 1) continue;
    if (strides[i] !== expected) return false;
    expected *= n;
  }
  return true;
}

/** Validates constructor strides against `shape`; returns a frozen copy. */
export function checkStrides(fn: string, strides: unknown, shape: Shape): readonly number[] {
  if (!Array.isArray(strides)) throw argTypeError(fn, 'strides', 'be an array of non-negative integers', strides);
  if (strides.length !== shape.length) {
    throw argRangeErrorRaw(fn, 'strides', `have ${shape.length} entries (one per dim of shape ${formatShape(shape)})`,
      `${strides.length} entries ${describeValue(strides)}`);
  }
  for (let i = 0; i < strides.length; i++) {
    const s: unknown = strides[i];
    if (typeof s === 'number' && Number.isSafeInteger(s) && s >= 0) continue;
    // The message is built only on failure: every view constructs a Tensor through here.
    const req = `have non-negative integer entries (entry ${i} is ${describeValue(s)})`;
    if (typeof s !== 'number') throw argTypeErrorRaw(fn, 'strides', req, describeValue(strides));
    throw argRangeErrorRaw(fn, 'strides', req, describeValue(strides));
  }
  return Object.freeze((strides as number[]).slice());
}

/**
 * Drops size-1 dims and merges each dim into the previous one when the
 * strides make them one run (stride[prev] === stride[d]·shape[d]). The
 * result addresses the same elements in the same order with fewer dims.
 */
export function coalesce(shape: Shape, strides: readonly number[]): { shape: number[]; strides: number[] } {
  const cs: number[] = [];
  const cst: number[] = [];
  for (let d = 0; d < shape.length; d++) {
    const n = shape[d]!;
    if (n === 1) continue;
    const s = strides[d]!;
    const m = cs.length;
    if (m > 0 && cst[m - 1] === s * n) {
      cs[m - 1] = cs[m - 1]! * n;
      cst[m - 1] = s;
    } else {
      cs.push(n);
      cst.push(s);
    }
  }
  return { shape: cs, strides: cst };
}

/** Copies the elements of a strided layout of `src`, in row-major order, into `dst` (a JS loop). */
export function gatherJs(src: AnyTypedArray, shape: Shape, strides: readonly number[], dst: AnyTypedArray): void {
  const nd = shape.length;
  let size = 1;
  for (let d = 0; d < nd; d++) size *= shape[d]!;
  if (size === 0) return;
  if (nd === 0) {
    dst[0] = src[0]!;
    return;
  }
  const n = shape[nd - 1]!;
  const s = strides[nd - 1]!;
  const idx = new Array<number>(nd).fill(0);
  let off = 0;
  let o = 0;
  for (let k = size / n; k > 0; k--) {
    for (let i = 0; i < n; i++) dst[o++] = src[off + i * s]!;
    // Odometer over the outer dims.
    for (let d = nd - 2; d >= 0; d--) {
      off += strides[d]!;
      if (++idx[d]! < shape[d]!) break;
      off -= strides[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
}

/** Dims the backends' `binary` accepts. */
const MAX_BINARY_DIMS = 8;
/** The multiplier of the backend copy: x·1 reproduces x bit for bit (-0 and NaN included). Never written. */
const ONE = new Float32Array([1]);
/** All-zero stride lists by rank, broadcasting {@link ONE}. */
const ZERO_STRIDES: readonly (readonly number[])[] = Array.from({ length: MAX_BINARY_DIMS + 1 }, (_, k) =>
  Object.freeze(new Array<number>(k).fill(0)));

/**
 * Copies the strided layout (`shape`, `strides`) of `src` into the contiguous
 * `dst`. float32 goes through the current backend's `binary` (y = x·1), so
 * inside `runAsync` the copy is recorded and runs in order with the kernels
 * that produce `src`; int32/bool are copied in JS, which is refused while
 * recording because it would read `src` before those kernels ran.
 */
export function copyStrided(
  src: AnyTypedArray, shape: Shape, strides: readonly number[], dst: AnyTypedArray, on?: BackendName | Backend,
): void {
  const c = coalesce(shape, strides);
  if (!(src instanceof Float32Array)) {
    if (recordingList()) {
      throw new Error(`contiguous: copying a non-contiguous ${src instanceof Int32Array ? 'int32' : 'bool'} tensor ` +
        'runs in JS and cannot run inside runAsync()/forwardAsync() (only float32 copies are recorded)');
    }
    gatherJs(src, c.shape, c.strides, dst);
    return;
  }
  const y = dst as Float32Array;
  const backend = resolveBackend(on);
  const call = (a: Float32Array, aStrides: readonly number[], out: Float32Array, sh: readonly number[]): void => {
    backend.binary({ op: BinaryOp.Mul, a, aStrides, b: ONE, bStrides: ZERO_STRIDES[sh.length]!, y: out, shape: sh });
  };
  if (c.shape.length === 0) {
    // Every dim has size 1: a single element.
    call(src, [1], y, [1]);
    return;
  }
  const outer = c.shape.length - MAX_BINARY_DIMS;
  if (outer <= 0) {
    call(src, c.strides, y, c.shape);
    return;
  }
  // More dims than the backend takes even after merging: loop over the leading ones, one call per block.
  const innerShape = c.shape.slice(outer);
  const innerStrides = c.strides.slice(outer);
  let innerSize = 1;
  for (const n of innerShape) innerSize *= n;
  const innerSpan = spanOf(innerShape, innerStrides, innerSize);
  let blocks = 1;
  for (let d = 0; d < outer; d++) blocks *= c.shape[d]!;
  const idx = new Array<number>(outer).fill(0);
  let off = 0;
  for (let k = 0; k < blocks; k++) {
    call(src.subarray(off, off + innerSpan), innerStrides, y.subarray(k * innerSize, (k + 1) * innerSize), innerShape);
    for (let d = outer - 1; d >= 0; d--) {
      off += c.strides[d]!;
      if (++idx[d]! < c.shape[d]!) break;
      off -= c.strides[d]! * c.shape[d]!;
      idx[d] = 0;
    }
  }
}

/**
 * Strides that make `newShape` address the same elements in the same order
 * as (`oldShape`, `oldStrides`), or null when no such strides exist: PyTorch's
 * `computeStride` (aten/src/ATen/TensorUtils.cpp). It walks the old dims from
 * the innermost, grouping them into chunks that are contiguous with each
 * other, and lays the new dims over each chunk; a new dim straddling two
 * chunks makes the view impossible.
 */
export function computeViewStrides(
  oldShape: Shape, oldStrides: readonly number[], newShape: readonly number[], size: number,
): number[] | null {
  if (size === 0) {
    // Strides are arbitrary for an empty tensor; PyTorch keeps them for an unchanged shape.
    const same = oldShape.length === newShape.length && oldShape.every((n, i) => n === newShape[i]);
    return same ? oldStrides.slice() : contiguousStrides(newShape);
  }
  const newStrides = new Array<number>(newShape.length);
  let viewD = newShape.length - 1;
  let chunkBase = oldStrides.length > 0 ? oldStrides[oldStrides.length - 1]! : 1;
  let tensorNumel = 1;
  let viewNumel = 1;
  for (let td = oldShape.length - 1; td >= 0; td--) {
    tensorNumel *= oldShape[td]!;
    if (td === 0 || (oldShape[td - 1] !== 1 && oldStrides[td - 1] !== tensorNumel * chunkBase)) {
      while (viewD >= 0 && (viewNumel < tensorNumel || newShape[viewD] === 1)) {
        newStrides[viewD] = viewNumel * chunkBase;
        viewNumel *= newShape[viewD]!;
        viewD--;
      }
      if (viewNumel !== tensorNumel) return null;
      if (td > 0) {
        chunkBase = oldStrides[td - 1]!;
        tensorNumel = 1;
        viewNumel = 1;
      }
    }
  }
  // Leftover new dims of size 1 (e.g. a 0-D input) take any stride.
  while (viewD >= 0 && newShape[viewD] === 1) newStrides[viewD--] = 1;
  return viewD === -1 ? newStrides : null;
}

/** Parses a shape given as an array or as varargs, with at most one -1 inferred from `size`. */
export function inferShape(fn: string, args: unknown[], size: number, from: Shape): number[] {
  const raw: unknown = args.length === 1 && Array.isArray(args[0]) ? args[0] : args;
  if (!Array.isArray(raw)) throw argTypeError(fn, 'shape', 'be an array of integers', raw);
  const shape = (raw as unknown[]).slice();
  let infer = -1;
  let known = 1;
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i];
    if (d === -1) {
      if (infer >= 0) throw argRangeError(fn, 'shape', 'contain at most one -1', shape);
      infer = i;
    } else {
      if (typeof d !== 'number') throw argTypeError(fn, 'shape', 'be an array of integers', shape);
      if (!Number.isInteger(d) || d < 0) {
        throw argRangeError(fn, 'shape', 'have non-negative integer entries (or one -1)', shape);
      }
      known *= d;
    }
  }
  if (infer >= 0) {
    // -1 with other dims multiplying to 0 is ambiguous (PyTorch rejects it too).
    if (known === 0 || size % known !== 0) {
      throw argRangeErrorRaw(fn, 'shape', `be compatible with ${size} elements`,
        `${formatShape(shape as number[])} for a tensor of shape ${formatShape(from)}`);
    }
    shape[infer] = size / known;
  } else if (known !== size) {
    throw argRangeErrorRaw(fn, 'shape', `have ${size} elements like the input`,
      `${formatShape(shape as number[])} (${known} elements) for a tensor of shape ${formatShape(from)}`);
  }
  return shape as number[];
}

/** A list of ints given as one array or as varargs (permute, expand). */
export function intList(fn: string, arg: string, args: unknown[]): unknown[] {
  const raw: unknown = args.length === 1 && Array.isArray(args[0]) ? args[0] : args;
  if (!Array.isArray(raw)) throw argTypeError(fn, arg, 'be an array of integers', raw);
  return raw as unknown[];
}

