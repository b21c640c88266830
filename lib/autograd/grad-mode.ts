/**
 * Grad mode, PyTorch's `torch.no_grad` / `enable_grad` / `set_grad_enabled`:
 * a field of the execution context (lib/context.ts), on by default.
 */
import { currentContext, setRootGradEnabled, withContext } from '../context';
import { argTypeError } from '../errors';

/**
 * Runs `fn` (synchronously) with grad mode off: ops record no backward, and
 * their results do not require grad (PyTorch's `with torch.no_grad():`). For
 * inference on a model whose parameters require grad, and for updates of
 * parameters in place (optimizers). Returns what `fn` returns.
 */
export function noGrad<T>(fn: () => T): T {
  if (typeof fn !== 'function') throw argTypeError('noGrad', 'fn', 'be a function', fn);
  return withContext({ gradEnabled: false }, fn);
}

/** Runs `fn` (synchronously) with grad mode on, also inside {@link noGrad} (PyTorch's `torch.enable_grad`). */
export function enableGrad<T>(fn: () => T): T {
  if (typeof fn !== 'function') throw argTypeError('enableGrad', 'fn', 'be a function', fn);
  return withContext({ gradEnabled: true }, fn);
}

/** Whether ops record their backward now (PyTorch's `torch.is_grad_enabled()`). */
export function isGradEnabled(): boolean {
  return currentContext().gradEnabled;
}

/**
 * Turns grad mode on or off for code outside any {@link noGrad} /
 * {@link enableGrad} / `withContext` frame (PyTorch's
 * `torch.set_grad_enabled(mode)` as a function call).
 */
export function setGradEnabled(enabled: boolean): void {
  if (typeof enabled !== 'boolean') throw argTypeError('setGradEnabled', 'enabled', 'be a boolean', enabled);
  setRootGradEnabled(enabled);
}
