/**
 * Error construction shared by tensors and ops.
 *
 * Every message has the same shape so users can grep and tests can match:
 * `<fn>: argument '<arg>' must <requirement>, got <actual>`, e.g.
 * `matmul: argument 'b' must have shape [..., 768, N] matching a's last dim 768, got [512, 3]`.
 * Wrong kinds of value (not a tensor, wrong dtype, not a number) are
 * `TypeError`s; right kind but wrong shape or out-of-range value are
 * `RangeError`s.
 *
 * This module deliberately does not import `Tensor` (tensor.ts imports it);
 * tensors are recognised structurally in {@link describeValue}.
 */

/** Largest number of elements a tensor may have (int32 indexing in the native kernels). */
export const MAX_TENSOR_SIZE = 2 ** 31 - 1;

/** Formats a shape as `[2, 3, 4]` (`[]` for a scalar). */
export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

function isTensorLike(value: unknown): value is { shape: readonly number[]; dtype: string } {
  return (
    typeof value === 'object' &&
    value !== null &&
    Array.isArray((value as { shape?: unknown }).shape) &&
    typeof (value as { dtype?: unknown }).dtype === 'string'
  );
}

/**
 * A short human description of any value for the "got ..." part of a message:
 * tensors as `Tensor(float32, [2, 3])`, arrays by length, strings quoted.
 */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (isTensorLike(value)) return `Tensor(${value.dtype}, ${formatShape(value.shape)})`;
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) {
    // Short arrays (shapes, index lists) are most useful printed in full.
    if (value.length <= 8 && value.every((v) => typeof v === 'number')) return formatShape(value as number[]);
    return `Array(${value.length})`;
  }
  if (ArrayBuffer.isView(value)) {
    return `${value.constructor.name}(${(value as unknown as ArrayLike<unknown>).length})`;
  }
  if (typeof value === 'function') return 'a function';
  return Object.prototype.toString.call(value).slice(8, -1);
}

function message(fn: string, arg: string, requirement: string, actual: string): string {
  return `${fn}: argument '${arg}' must ${requirement}, got ${actual}`;
}

/**
 * A TypeError for an argument of the wrong kind.
 * `actual` is described with {@link describeValue} unless it is already a string description
 * passed via {@link argTypeErrorRaw}.
 * @example throw argTypeError('matmul', 'a', 'be a float32 Tensor', a);
 */
export function argTypeError(fn: string, arg: string, requirement: string, actual: unknown): TypeError {
  return new TypeError(message(fn, arg, requirement, describeValue(actual)));
}

/** Like {@link argTypeError} with a preformatted description of the actual value. */
export function argTypeErrorRaw(fn: string, arg: string, requirement: string, actual: string): TypeError {
  return new TypeError(message(fn, arg, requirement, actual));
}

/**
 * A RangeError for an argument of the right kind but wrong value or shape.
 * @example throw argRangeError('softmax', 'dim', 'be in [-2, 1]', dim);
 */
export function argRangeError(fn: string, arg: string, requirement: string, actual: unknown): RangeError {
  return new RangeError(message(fn, arg, requirement, describeValue(actual)));
}

/** Like {@link argRangeError} with a preformatted description of the actual value. */
export function argRangeErrorRaw(fn: string, arg: string, requirement: string, actual: string): RangeError {
  return new RangeError(message(fn, arg, requirement, actual));
}

/** A RangeError for a tensor argument of the wrong shape: `... must have shape <expected>, got [..]`. */
export function shapeError(fn: string, arg: string, expected: string, actual: readonly number[]): RangeError {
  return new RangeError(message(fn, arg, `have shape ${expected}`, formatShape(actual)));
}

/** Throws a TypeError unless `value` is a finite number. Returns it. */
export function checkNumber(fn: string, arg: string, value: unknown): number {
  if (typeof value !== 'number') throw argTypeError(fn, arg, 'be a number', value);
  if (!Number.isFinite(value)) throw argRangeError(fn, arg, 'be finite', value);
  return value;
}

/**
 * Throws unless `value` is an integer in [min, max]: TypeError when not a
 * number at all, RangeError when fractional or out of range. Returns it.
 */
export function checkInt(fn: string, arg: string, value: unknown, min = -Infinity, max = Infinity): number {
  if (typeof value !== 'number') throw argTypeError(fn, arg, 'be an integer', value);
  if (!Number.isInteger(value)) throw argRangeError(fn, arg, 'be an integer', value);
  if (value < min || value > max) {
    const range =
      min === -Infinity ? `be <= ${max}` : max === Infinity ? `be >= ${min}` : `be an integer in [${min}, ${max}]`;
    throw argRangeError(fn, arg, range, value);
  }
  return value;
}

/**
 * Validates a shape (array of integers >= 0 whose product is at most
 * {@link MAX_TENSOR_SIZE}) and returns its element count.
 * Not an array → TypeError; bad entries or too many elements → RangeError.
 */
export function checkShape(fn: string, arg: string, shape: unknown): number {
  if (!Array.isArray(shape)) throw argTypeError(fn, arg, 'be an array of non-negative integers', shape);
  let size = 1;
  for (let i = 0; i < shape.length; i++) {
    const d: unknown = shape[i];
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 0) {
      const err = `have non-negative integer entries (entry ${i} is ${describeValue(d)})`;
      if (typeof d !== 'number') throw argTypeErrorRaw(fn, arg, err, describeValue(shape));
      throw argRangeErrorRaw(fn, arg, err, describeValue(shape));
    }
    size *= d;
  }
  // Checked after the loop: a zero dim makes any other dims legal (size 0), but an
  // individual huge dim is still rejected so strides stay representable.
  if (size > MAX_TENSOR_SIZE || shape.some((d: number) => d > MAX_TENSOR_SIZE)) {
    throw argRangeErrorRaw(fn, arg, `have at most ${MAX_TENSOR_SIZE} elements`, `${formatShape(shape)} (${size})`);
  }
  return size;
}

/**
 * Resolves a possibly negative dimension index against `ndim` (PyTorch
 * style: -1 is the last dim). Out of range → RangeError.
 */
export function normalizeDim(fn: string, arg: string, dim: unknown, ndim: number): number {
  const lo = ndim === 0 ? -1 : -ndim;
  const hi = ndim === 0 ? 0 : ndim - 1;
  const d = checkInt(fn, arg, dim);
  if (d < lo || d > hi) throw argRangeError(fn, arg, `be a dim in [${lo}, ${hi}] for a ${ndim}-D tensor`, d);
  return d < 0 ? d + Math.max(ndim, 1) : d;
}
