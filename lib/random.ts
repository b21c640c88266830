/**
 * The process-wide random generator: parameter initialisation (lib/nn/init.ts)
 * and dropout draw from it, so `manualSeed(n)` makes model construction and
 * training runs reproducible (PyTorch's `torch.manual_seed`). Explicit
 * generators (`Rng`, the `generator` option of `randn`/`rand`/`dropout`)
 * are independent of it.
 */
import { checkNumber } from './errors';
import { Rng, type RngState } from './tensor';

let generator = new Rng();

/** Re-seeds the process-wide generator (parameter initialisation, dropout). */
export function manualSeed(seed: number): void {
  checkNumber('manualSeed', 'seed', seed);
  generator = new Rng(seed);
}

/** The process-wide generator (replaced by {@link manualSeed}). */
export function defaultGenerator(): Rng {
  return generator;
}

/**
 * The process-wide generator's state (PyTorch's `torch.get_rng_state()`): save it with a training checkpoint so
 * that dropout masks after a resume are those of an uninterrupted run.
 */
export function getRngState(): RngState {
  return generator.getState();
}

/** Restores the process-wide generator's state from {@link getRngState} (PyTorch's `torch.set_rng_state`). */
export function setRngState(state: RngState): void {
  generator = new Rng(0).setState(state);
}
