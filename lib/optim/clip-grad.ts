/**
 * `torch.nn.utils.clip_grad_norm_` (exported as `nn.utils.clipGradNorm`): here, beside the optimizers, because
 * like them it runs a fused backend op over the gradients' memory.
 */
import { Tensor } from '../tensor';
import { resolveBackend } from '../backend/registry';
import { currentContext } from '../context';
import { describeValue, formatShape } from '../errors';
import { checkOptions } from '../nn/options';

/** Options of {@link clipGradNorm}. */
export interface ClipGradNormOptions {
  /** Throw when the total norm is NaN or infinite (default false, as PyTorch 1.13); needs the norm now, so not inside `runAsync`. */
  errorIfNonfinite?: boolean;
}

/**
 * PyTorch 1.13's `torch.nn.utils.clip_grad_norm_`: the norm of order `normType` of all gradients together (as if
 * concatenated; each gradient's norm in float32, then the norm of those), and every gradient multiplied in place
 * by min(1, maxNorm / (total + 1e-6)) (always multiplied, as PyTorch does, so a NaN norm spreads NaN). Parameters
 * without a gradient are skipped. One fused backend call; inside `runAsync` it is recorded like any op and the
 * returned tensor is filled when the call has run.
 * @param params a tensor or tensors (e.g. `model.parameters()`) whose `grad` to clip.
 * @param maxNorm the largest norm allowed.
 * @param normType the order of the norm: a number > 0, or `Infinity` / `'inf'` for the largest absolute value (default 2).
 * @returns the total norm before clipping, as a one-element float32 tensor (0-D, like PyTorch's; read it with `item()`).
 * @throws TypeError for a non-tensor parameter or gradient; RangeError for a bad maxNorm/normType, or with
 *   `errorIfNonfinite` when the norm is not finite.
 */
export function clipGradNorm(
  params: Tensor | Iterable<Tensor>,
  maxNorm: number,
  normType: number | 'inf' = 2,
  options: ClipGradNormOptions = {},
): Tensor<'float32'> {
  const fn = 'clipGradNorm';
  checkOptions(fn, options, ['errorIfNonfinite']);
  const list = params instanceof Tensor ? [params] : iterable(params) ? [...params] : null;
  if (!list) throw new TypeError(`${fn}: argument 'params' must be a Tensor or an iterable of Tensors, got ${describeValue(params)}`);
  if (typeof maxNorm !== 'number' || Number.isNaN(maxNorm)) throw new TypeError(`${fn}: argument 'maxNorm' must be a number, got ${describeValue(maxNorm)}`);
  const p = normType === 'inf' ? Infinity : normType;
  if (typeof p !== 'number') throw new TypeError(`${fn}: argument 'normType' must be a number or 'inf', got ${describeValue(normType)}`);
  if (!(p > 0)) throw new RangeError(`${fn}: argument 'normType' must be > 0 or Infinity, got ${p}`);
  const errorIfNonfinite = options.errorIfNonfinite ?? false;
  if (typeof errorIfNonfinite !== 'boolean') throw new TypeError(`${fn}: option 'errorIfNonfinite' must be a boolean, got ${describeValue(errorIfNonfinite)}`);
  const grads: Float32Array[] = [];
  list.forEach((t, i) => {
    if (!(t instanceof Tensor)) throw new TypeError(`${fn}: params[${i}] must be a Tensor, got ${describeValue(t)}`);
    const g = t._peekGrad();
    if (!g) return;
    if (g.data.length !== g.size) {
      throw new TypeError(`${fn}: the gradient of params[${i}] must cover its memory densely, got shape ${formatShape(g.shape)} with strides ${formatShape(g.strides)}`);
    }
    grads.push(g.data);
  });
  const total = new Tensor(new Float32Array(1), [], 'float32');
  if (grads.length === 0) return total;
  if (errorIfNonfinite && currentContext().recording) {
    throw new Error(`${fn}: errorIfNonfinite reads the norm, which cannot be done inside runAsync(); check the returned tensor after the call settles`);
  }
  resolveBackend().clipGradNorm({ grads, maxNorm, normType: p, totalNorm: total.data });
  if (errorIfNonfinite && !Number.isFinite(total.data[0]!)) {
    throw new RangeError(`${fn}: The total norm of order ${p} for gradients from \`parameters\` is non-finite (${total.data[0]}), so it cannot be clipped. To disable this error and scale the gradients by the non-finite norm anyway, set errorIfNonfinite: false`);
  }
  return total;
}

function iterable(value: unknown): value is Iterable<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as Iterable<unknown>)[Symbol.iterator] === 'function';
}
