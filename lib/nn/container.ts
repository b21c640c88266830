import { Module } from './module';

/**
 * Holds submodules in a list, like PyTorch's `nn.ModuleList`: item i is the
 * property `'i'`, so its state-dict keys are `i.<name>` (`layers.0.linear1.weight`).
 */
export class ModuleList<M extends Module = Module> extends Module implements Iterable<M> {
  // Kept by push (the only way items are added): `length` and `at` are on every forward's path (a decoding step
  // iterates the layers), where recounting the children through namedChildren() cost O(layers) per access.
  #count = 0;

  constructor(modules: Iterable<M> = []) {
    super();
    for (const m of modules) this.push(m);
  }

  /** Number of modules. */
  get length(): number {
    return this.#count;
  }

  /** Appends a module. */
  push(module: M): this {
    if (!(module instanceof Module)) throw new TypeError(`ModuleList.push: argument 'module' must be a Module, got ${typeof module}`);
    (this as unknown as Record<string, M>)[String(this.#count++)] = module;
    return this;
  }

  /** Module i (negative counts from the end). */
  at(index: number): M {
    const n = this.length;
    const i = index < 0 ? index + n : index;
    if (!Number.isInteger(i) || i < 0 || i >= n) {
      throw new RangeError(`ModuleList.at: index ${index} is out of range for a list of ${n} modules`);
    }
    return (this as unknown as Record<string, M>)[String(i)]!;
  }

  *[Symbol.iterator](): Iterator<M> {
    for (let i = 0, n = this.length; i < n; i++) yield this.at(i);
  }
}
