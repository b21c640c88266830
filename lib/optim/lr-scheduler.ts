/**
 * Learning-rate schedules: PyTorch 1.13's `torch.optim.lr_scheduler`
 * (`LambdaLR`, `StepLR`). A scheduler writes each parameter group's `lr`
 * when it is created (epoch 0) and on every `step()`; call it after
 * `optimizer.step()`, as in PyTorch.
 */
import { describeValue } from '../errors';
import { checkOptions } from '../nn/options';
import { Optimizer } from './optimizer';

/** A scheduler's state dict, under PyTorch's key names. */
export interface LRSchedulerStateDict {
  base_lrs: number[];
  last_epoch: number;
  _step_count: number;
  _last_lr: number[];
  [key: string]: unknown;
}

/** Options every scheduler takes. */
export interface LRSchedulerOptions {
  /**
   * The index of the last epoch (default -1: a fresh schedule, which records every group's current lr as its
   * `initialLr`). Resuming with another value needs `initialLr` in every group.
   */
  lastEpoch?: number;
}

/** The base of the schedulers (PyTorch's `_LRScheduler`). */
export abstract class LRScheduler {
  readonly optimizer: Optimizer<{ lr: number }>;
  /** Each group's `initialLr`: what the schedule scales. */
  baseLrs: number[];
  /** Steps taken (the "epoch" passed to the schedule); 0 after construction. */
  lastEpoch: number;
  #stepCount = 0;
  #lastLr: number[] = [];

  protected constructor(name: string, optimizer: Optimizer<{ lr: number }>, lastEpoch: number) {
    if (!(optimizer instanceof Optimizer)) throw new TypeError(`${name}: argument 'optimizer' must be an Optimizer, got ${describeValue(optimizer)}`);
    if (!Number.isInteger(lastEpoch) || lastEpoch < -1) throw new RangeError(`${name}: option 'lastEpoch' must be an integer >= -1, got ${describeValue(lastEpoch)}`);
    this.optimizer = optimizer;
    const groups = optimizer.paramGroups;
    if (lastEpoch === -1) {
      for (const g of groups) if (g.initialLr === undefined) g.initialLr = g.lr;
    } else {
      groups.forEach((g, i) => {
        if (g.initialLr === undefined) throw new RangeError(`${name}: param 'initialLr' is not specified in paramGroups[${i}] when resuming an optimizer (lastEpoch ${lastEpoch})`);
      });
    }
    this.baseLrs = groups.map((g) => g.initialLr!);
    this.lastEpoch = lastEpoch;
  }

  /** The first step, run by subclass constructors once their fields are set (PyTorch's `_initial_step`). */
  protected initialStep(): void {
    this.#stepCount = 0;
    this.step();
  }

  /** Each group's new lr for `this.lastEpoch` (PyTorch's chainable `get_lr`). */
  protected abstract getLr(): number[];

  /** Advances the schedule one step and writes every group's `lr`. */
  step(): void {
    this.#stepCount++;
    this.lastEpoch++;
    const values = this.getLr();
    const groups = this.optimizer.paramGroups;
    groups.forEach((g, i) => (g.lr = values[i]!));
    this.#lastLr = groups.map((g) => g.lr);
  }

  /** The lr of every group after the last step (PyTorch's `get_last_lr()`). */
  getLastLr(): number[] {
    return [...this.#lastLr];
  }

  /** The scheduler's state (PyTorch's keys: `base_lrs`, `last_epoch`, `_step_count`, `_last_lr`, and the schedule's own). */
  stateDict(): LRSchedulerStateDict {
    return { base_lrs: [...this.baseLrs], last_epoch: this.lastEpoch, _step_count: this.#stepCount, _last_lr: [...this.#lastLr], ...this.ownState() };
  }

  /** Restores a state from {@link stateDict} (the optimizer's own state is loaded separately). */
  loadStateDict(state: LRSchedulerStateDict): void {
    const fn = `${this.constructor.name}.loadStateDict`;
    if (state === null || typeof state !== 'object') throw new TypeError(`${fn}: argument 'state' must be an object, got ${describeValue(state)}`);
    const numbers = (key: string, value: unknown): number[] => {
      if (!Array.isArray(value) || value.length !== this.optimizer.paramGroups.length || value.some((v) => typeof v !== 'number')) {
        throw new TypeError(`${fn}: '${key}' must be ${this.optimizer.paramGroups.length} numbers (one per parameter group), got ${describeValue(value)}`);
      }
      return [...value] as number[];
    };
    const int = (key: string, value: unknown, min: number): number => {
      if (!Number.isInteger(value) || (value as number) < min) throw new RangeError(`${fn}: '${key}' must be an integer >= ${min}, got ${describeValue(value)}`);
      return value as number;
    };
    const baseLrs = numbers('base_lrs', state.base_lrs);
    const lastLr = numbers('_last_lr', state._last_lr);
    const lastEpoch = int('last_epoch', state.last_epoch, -1);
    const stepCount = int('_step_count', state._step_count, 0);
    this.loadOwnState(state, fn);
    this.baseLrs = baseLrs;
    this.#lastLr = lastLr;
    this.lastEpoch = lastEpoch;
    this.#stepCount = stepCount;
  }

  /** The schedule's own fields for the state dict. */
  protected ownState(): Record<string, unknown> {
    return {};
  }

  /** Restores the schedule's own fields (checked; throw before changing anything). */
  protected loadOwnState(_state: LRSchedulerStateDict, _fn: string): void {}
}

/** A multiplicative factor of the initial lr for a step count (the "epoch" argument of PyTorch's lr_lambda). */
export type LrLambda = (epoch: number) => number;

/**
 * lr = initialLr · lrLambda(epoch) for each group (PyTorch's `LambdaLR`); one function for every group, or one
 * per group. The Transformer paper's warm-up, with the optimizer's lr set to 1:
 * @example
 * const opt = new optim.Adam(model.parameters(), { lr: 1, betas: [0.9, 0.98], eps: 1e-9 });
 * const warmup = 4000;
 * const sched = new optim.lrScheduler.LambdaLR(opt, (step) =>
 *   dModel ** -0.5 * Math.min(Math.max(step, 1) ** -0.5, Math.max(step, 1) * warmup ** -1.5));
 */
export class LambdaLR extends LRScheduler {
  readonly lrLambdas: LrLambda[];

  /**
   * @throws TypeError when `lrLambda` is not a function or an array of one function per group; RangeError for a
   *   bad lastEpoch, or when a lambda returns something other than a finite number.
   */
  constructor(optimizer: Optimizer<{ lr: number }>, lrLambda: LrLambda | readonly LrLambda[], options: LRSchedulerOptions = {}) {
    checkOptions('LambdaLR', options, ['lastEpoch']);
    super('LambdaLR', optimizer, options.lastEpoch ?? -1);
    const n = optimizer.paramGroups.length;
    if (Array.isArray(lrLambda)) {
      if (lrLambda.length !== n) throw new RangeError(`LambdaLR: Expected ${n} lr_lambdas, but got ${lrLambda.length}`);
      this.lrLambdas = [...lrLambda];
    } else {
      this.lrLambdas = Array.from({ length: n }, () => lrLambda as LrLambda);
    }
    this.lrLambdas.forEach((f, i) => {
      if (typeof f !== 'function') throw new TypeError(`LambdaLR: argument 'lrLambda'${Array.isArray(lrLambda) ? `[${i}]` : ''} must be a function of the epoch, got ${describeValue(f)}`);
    });
    this.initialStep();
  }

  protected getLr(): number[] {
    return this.lrLambdas.map((f, i) => {
      const factor = f(this.lastEpoch);
      if (typeof factor !== 'number' || !Number.isFinite(factor)) {
        throw new RangeError(`LambdaLR: lrLambda${this.lrLambdas.length > 1 ? `[${i}]` : ''}(${this.lastEpoch}) must return a finite number, got ${describeValue(factor)}`);
      }
      return this.baseLrs[i]! * factor;
    });
  }

  /** PyTorch stores `lr_lambdas` as None for plain functions (they are not serialisable). */
  protected override ownState(): Record<string, unknown> {
    return { lr_lambdas: this.lrLambdas.map(() => null) };
  }
}

/** Options of {@link StepLR}: PyTorch's `StepLR(optimizer, step_size, gamma=0.1, last_epoch=-1)`. */
export interface StepLROptions extends LRSchedulerOptions {
  /** Epochs between decays (an integer >= 1). */
  stepSize: number;
  /** Multiplicative decay (default 0.1). */
  gamma?: number;
}

/** Multiplies every group's lr by `gamma` every `stepSize` steps (PyTorch's `StepLR`, chainable form). */
export class StepLR extends LRScheduler {
  stepSize: number;
  gamma: number;

  /** @throws TypeError for unknown options; RangeError for a stepSize that is not an integer >= 1 or a non-finite gamma. */
  constructor(optimizer: Optimizer<{ lr: number }>, options: StepLROptions) {
    checkOptions('StepLR', options, ['stepSize', 'gamma', 'lastEpoch']);
    super('StepLR', optimizer, options.lastEpoch ?? -1);
    this.stepSize = checkStepSize(options.stepSize, "StepLR: option 'stepSize'");
    this.gamma = checkGamma(options.gamma ?? 0.1, "StepLR: option 'gamma'");
    this.initialStep();
  }

  protected getLr(): number[] {
    const groups = this.optimizer.paramGroups;
    if (this.lastEpoch === 0 || this.lastEpoch % this.stepSize !== 0) return groups.map((g) => g.lr);
    return groups.map((g) => g.lr * this.gamma);
  }

  protected override ownState(): Record<string, unknown> {
    return { step_size: this.stepSize, gamma: this.gamma };
  }

  protected override loadOwnState(state: LRSchedulerStateDict, fn: string): void {
    const stepSize = checkStepSize(state['step_size'], `${fn}: 'step_size'`);
    this.gamma = checkGamma(state['gamma'], `${fn}: 'gamma'`);
    this.stepSize = stepSize;
  }
}

function checkStepSize(value: unknown, where: string): number {
  if (typeof value !== 'number') throw new TypeError(`${where} must be an integer >= 1, got ${describeValue(value)}`);
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${where} must be an integer >= 1, got ${value}`);
  return value;
}

function checkGamma(value: unknown, where: string): number {
  if (typeof value !== 'number') throw new TypeError(`${where} must be a number, got ${describeValue(value)}`);
  if (!Number.isFinite(value)) throw new RangeError(`${where} must be finite, got ${value}`);
  return value;
}
