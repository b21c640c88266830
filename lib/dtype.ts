/**
 * Element types a {@link Tensor} can hold, and the typed array backing each.
 *
 * Everything dtype-specific is driven by {@link DTypeMap}, so adding a dtype
 * (e.g. `bf16` stored as `Uint16Array`) is one entry here plus its cases in
 * {@link allocate} and {@link dtypeOfArray}; the generic `Tensor<D>` then gives
 * it a correctly typed `data` for free.
 */

import { takeScopedBuffer } from './workspace';

/** Maps each dtype name to the typed array that stores its elements. */
export interface DTypeMap {
  float32: Float32Array;
  int32: Int32Array;
  /** One byte per element, 0 or 1 (anything non-zero reads as true). */
  bool: Uint8Array;
}

/** A dtype name: `'float32' | 'int32' | 'bool'`. */
export type DType = keyof DTypeMap;

/** The typed array that backs dtype `D`. */
export type TypedArrayFor<D extends DType> = DTypeMap[D];

/** The JS value of one element of dtype `D`: booleans for `bool`, numbers otherwise. */
export type ElementOf<D extends DType> = D extends 'bool' ? boolean : number;

/** Every supported dtype, in a stable order (for messages and iteration). */
export const DTYPES: readonly DType[] = Object.freeze(['float32', 'int32', 'bool'] as const);

/** True when `value` names a supported dtype. */
export function isDType(value: unknown): value is DType {
  return typeof value === 'string' && (DTYPES as readonly string[]).includes(value);
}

/** Allocates a zero-filled typed array for `size` elements of `dtype`. */
export function allocate<D extends DType>(dtype: D, size: number): DTypeMap[D] {
  // The casts are sound: each branch returns exactly DTypeMap[dtype].
  switch (dtype) {
    case 'float32':
      return new Float32Array(size) as DTypeMap[D];
    case 'int32':
      return new Int32Array(size) as DTypeMap[D];
    case 'bool':
      return new Uint8Array(size) as DTypeMap[D];
    default:
      throw new TypeError(`unsupported dtype ${String(dtype)}`);
  }
}

/**
 * Below this many bytes a zero-filled allocation is as cheap as any other.
 * Above it, zero-filling (and, for fresh pages, faulting them in) costs more
 * than the kernels that fill the buffer, so outputs skip it.
 */
const UNINITIALIZED_MIN_BYTES = 64 * 1024;
/** Smallest buffer worth pooling inside a buffer-reusing call. */
const SCOPED_MIN_BYTES = 4 * 1024;

/**
 * Allocates a typed array whose contents are unspecified (possibly stale
 * memory of this process), for outputs a kernel overwrites completely. Large
 * buffers come from `Buffer.allocUnsafeSlow` (malloc without zeroing), which
 * together with the addon's allocator settings reuses freed memory instead of
 * faulting in fresh pages; small ones are ordinary zeroed arrays.
 */
export function allocateUninitialized<D extends DType>(dtype: D, size: number): DTypeMap[D] {
  const bytes = size * (dtype === 'bool' ? 1 : 4);
  // Inside runAsync(..., { reuseBuffers: true }): a pooled buffer (lib/workspace.ts), from a smaller size on,
  // since there every avoided ArrayBuffer is one less for the GC.
  const scoped = bytes >= SCOPED_MIN_BYTES && typeof Buffer !== 'undefined' ? takeScopedBuffer(bytes) : null;
  if (!scoped && (bytes < UNINITIALIZED_MIN_BYTES || typeof Buffer === 'undefined')) return allocate(dtype, size);
  const buf = scoped ? { buffer: scoped, byteOffset: 0 } : Buffer.allocUnsafeSlow(bytes);
  switch (dtype) {
    case 'float32':
      return new Float32Array(buf.buffer, buf.byteOffset, size) as DTypeMap[D];
    case 'int32':
      return new Int32Array(buf.buffer, buf.byteOffset, size) as DTypeMap[D];
    default:
      return new Uint8Array(buf.buffer, buf.byteOffset, size) as DTypeMap[D];
  }
}

/**
 * The dtype whose backing store is exactly `array`'s class, or undefined for
 * other typed arrays (which must be copied to become a tensor).
 */
export function dtypeOfArray(array: unknown): DType | undefined {
  if (array instanceof Float32Array) return 'float32';
  if (array instanceof Int32Array) return 'int32';
  if (array instanceof Uint8Array) return 'bool';
  return undefined;
}
