/**
 * The process-wide random generator: parameter initialisation (lib/nn/init.ts)
 * and dropout draw from it, so `manualSeed(n)` makes model construction and
 * training runs reproducible (PyTorch's `torch.manual_seed`). Explicit
 * generators (`Rng`, the `generator` option of `randn`/`rand`/`dropout`)
 * are independent of it.
 */
import { checkNumber } from './errors';
import { Rng } from './tensor';

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
