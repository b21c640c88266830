/** Dropout (PyTorch's `F.dropout`): zero elements with probability p and scale the rest by 1/(1 − p). */
import { argRangeError, argTypeError } from '../errors';
import type { OpOptions } from '../op-options';
import { defaultGenerator } from '../random';
import { Rng, Tensor } from '../tensor';
import { resolveBackend } from '../backend/registry';
import { allocateUninitialized } from '../dtype';
import { checkFloat, checkOptions } from './checks';
import { mul } from './elementwise';
import { needsGrad, recordOp } from '../autograd/graph';
import { inLayoutOf } from './grad-layout';
import type { F32 } from './checks';

/**
 * A keep-mask of n elements: 0 with probability p, else 1/(1 − p) (PyTorch's dropout scaling), computed by the
 * backend from two 32-bit keys drawn from `generator` (a counter-based hash of the keys and each index: the same
 * mask on both backends and any thread count; see lib/backend/js/random.ts). p = 1 drops everything.
 */
export function dropoutMask(n: number, p: number, generator: Rng, backend?: OpOptions['backend']): Float32Array {
  if (p >= 1) return new Float32Array(n);
  const m = allocateUninitialized('float32', n);
  const key0 = generator.nextUint32();
  const key1 = generator.nextUint32();
  if (n > 0) resolveBackend(backend).dropoutMask({ out: m, p, key0, key1 });
  return m;
}

/** Options of {@link dropout}. */
export interface DropoutOptions extends OpOptions {
  /** Apply it (default true, as PyTorch's functional form); false returns x itself. Modules pass their `training`. */
  training?: boolean;
  /** The generator the mask is drawn from (default the process-wide one: reproducible after `manualSeed(n)`). */
  generator?: Rng;
}

/**
 * PyTorch's `F.dropout(x, p, training)`: each element is zeroed with
 * probability `p` and the others are scaled by 1/(1 − p), so the expectation
 * is x. With `training` false or p = 0 it returns x itself. The mask is drawn
 * in JS from a seeded generator (the same seed gives the same mask on both
 * backends and thread counts; not PyTorch's random stream). In grad mode the gradient is the
 * output gradient times the same mask.
 * @throws RangeError for p outside [0, 1]; TypeError for a non-boolean training or a generator that is not an Rng.
 */
export function dropout(x: F32, p = 0.5, opts?: DropoutOptions): F32 {
  const fn = 'dropout';
  checkFloat(fn, 'x', x);
  checkOptions(fn, opts);
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw argRangeError(fn, 'p', 'be a probability in [0, 1]', p);
  const training = opts?.training ?? true;
  if (typeof training !== 'boolean') throw argTypeError(fn, 'training', 'be a boolean', training);
  if (opts?.generator !== undefined && !(opts.generator instanceof Rng)) throw argTypeError(fn, 'generator', 'be an Rng', opts.generator);
  if (!training || p === 0) return x;
  const generator = opts?.generator ?? defaultGenerator();
  if (p >= 1 || !x.isContiguous()) {
    const m = dropoutMask(x.size, p, generator, opts?.backend);
    // Elements in row-major order of x's shape; mul reads x through its strides and records its backward (g · mask).
    return mul(x, new Tensor(m, x.shape, 'float32'), opts?.backend ? { backend: opts.backend } : {});
  }
  // Contiguous x: y = x · mask in one pass, and the backward regenerates the same mask from the same keys (the
  // draws dropoutMask would make), so no mask is written, kept in the graph or read back.
  const key0 = generator.nextUint32();
  const key1 = generator.nextUint32();
  const be = resolveBackend(opts?.backend);
  const y = new Tensor(allocateUninitialized('float32', x.size), x.shape, 'float32');
  if (x.size > 0) be.dropoutMask({ out: y.data, x: x.data.subarray(0, x.size), p, key0, key1 });
  if (needsGrad(x)) {
    recordOp('NativeDropoutBackward', [x], [y], ([g]) => {
      const gy = inLayoutOf(g!, y, opts?.backend);
      const dx = new Tensor(allocateUninitialized('float32', y.size), y.shape, 'float32');
      if (y.size > 0) resolveBackend(opts?.backend).dropoutMask({ out: dx.data, x: gy.data.subarray(0, y.size), p, key0, key1 });
      return [dx];
    });
  }
  return y;
}
