/**
 * Counter-based random masks: dropout's keep-mask as a pure function of two keys and the element's index, so a
 * mask is the same on the JS backend, every native kernel path and any thread count, and a native kernel can fill
 * its elements in parallel (a sequential generator cannot). The keys are one draw from the process-wide generator
 * per call (lib/ops/dropout.ts), so `manualSeed(n)` still fixes every mask of a run.
 *
 * The hash is two rounds of Wellons' `lowbias32` (a bijective 32-bit mixer with low bias) over the index spread by
 * the golden-ratio constant, keyed before each round. native/kernels/elementwise/elementwise_random.inc is the same
 * function in C++.
 */
import type { DropoutMaskArgs } from '../backend';

function lowbias32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
  return (x ^ (x >>> 16)) >>> 0;
}

/** The 32-bit hash of element `i` under (key0, key1). */
export function dropoutHash(key0: number, key1: number, i: number): number {
  return lowbias32((lowbias32((Math.imul(i, 0x9e3779b9) + key0) >>> 0) ^ key1) >>> 0);
}

/** The keep threshold of probability p: element i is dropped when (hash >>> 8) < threshold, i.e. a 2^-24-grid uniform < p. */
export function dropoutThreshold(p: number): number {
  return Math.ceil(p * 16777216);
}

const UINT32_MAX = 0xffffffff;

/** {@link DropoutMaskArgs}: out[i] = 0 or float32(1 / (1 − p)). */
export function dropoutMask({ out, p, key0, key1, x }: DropoutMaskArgs): void {
  if (!(out instanceof Float32Array)) throw new TypeError(`dropoutMask: argument 'out' must be a Float32Array, got ${typeof out}`);
  if (typeof p !== 'number' || !(p >= 0 && p < 1)) throw new RangeError(`dropoutMask: argument 'p' must be in [0, 1), got ${String(p)}`);
  for (const [name, k] of [['key0', key0], ['key1', key1]] as const) {
    if (!Number.isInteger(k) || k < 0 || k > UINT32_MAX) {
      throw new RangeError(`dropoutMask: argument '${name}' must be an integer in [0, 2^32 - 1], got ${String(k)}`);
    }
  }
  if (out.length > UINT32_MAX) throw new RangeError(`dropoutMask: argument 'out' must have fewer than 2^32 elements, got ${out.length}`);
  if (x !== undefined && x !== null) {
    if (!(x instanceof Float32Array)) throw new TypeError(`dropoutMask: argument 'x' must be a Float32Array, got ${typeof x}`);
    if (x.length < out.length) throw new RangeError(`dropoutMask: argument 'x' must have at least ${out.length} elements (out's length), got ${x.length}`);
  }
  const threshold = dropoutThreshold(p);
  const scale = Math.fround(1 / (1 - p));
  if (x) {
    for (let i = 0; i < out.length; i++) out[i] = x[i]! * (dropoutHash(key0, key1, i) >>> 8 < threshold ? 0 : scale);
    return;
  }
  for (let i = 0; i < out.length; i++) out[i] = dropoutHash(key0, key1, i) >>> 8 < threshold ? 0 : scale;
}
