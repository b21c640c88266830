import type { Tensor } from '../tensor';
import type { Backend } from '../backend/backend';
import { describeValue } from '../errors';
import { checkOptions } from '../nn/options';
import {
  Optimizer, checkBoolean, checkNonNegative, loadStateTensor, loadStepCount, zerosLike,
  type OptionCheck, type ParamGroup, type ParamStateValue, type ParamsInput,
} from './optimizer';

/** Options of {@link Adam} and {@link AdamW}: PyTorch's `Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *, maximize=False)`. */
export interface AdamOptions {
  /** Learning rate (default 1e-3). */
  lr?: number;
  /** Decay rates of the first and second moment averages, each in [0, 1) (default [0.9, 0.999]). */
  betas?: readonly [number, number];
  /** Added to the denominator (default 1e-8). */
  eps?: number;
  /** Adam: L2 penalty added to the gradient (default 0). AdamW: decoupled decay, θ ← θ·(1 − lr·weightDecay) (default 1e-2). */
  weightDecay?: number;
  /** AMSGrad: normalise by the running maximum of the second moment (default false). */
  amsgrad?: boolean;
  /** Maximize the objective instead of minimizing it (default false). */
  maximize?: boolean;
}

/** The options every Adam/AdamW parameter group holds. */
export type AdamGroupOptions = Required<AdamOptions>;

function checkBetas(value: unknown, where: string): [number, number] {
  if (!Array.isArray(value) || value.length !== 2 || value.some((b) => typeof b !== 'number')) {
    throw new TypeError(`${where} must be two numbers [beta1, beta2], got ${describeValue(value)}`);
  }
  value.forEach((b: number, i) => {
    if (!(b >= 0 && b < 1)) throw new RangeError(`${where}: Invalid beta parameter at index ${i}: ${b} (must be in [0, 1))`);
  });
  return [value[0], value[1]];
}

const ADAM_CHECKS: Record<keyof AdamGroupOptions, OptionCheck> = {
  lr: (v, w) => checkNonNegative(v, w, 'Invalid learning rate'),
  betas: checkBetas,
  eps: (v, w) => checkNonNegative(v, w, 'Invalid epsilon value'),
  weightDecay: (v, w) => checkNonNegative(v, w, 'Invalid weight_decay value'),
  amsgrad: checkBoolean,
  maximize: checkBoolean,
};

/** What Adam and AdamW share; `decoupled` picks the weight decay. */
abstract class AdamBase extends Optimizer<AdamGroupOptions> {
  readonly #decoupled: boolean;

  protected constructor(name: string, params: ParamsInput<AdamGroupOptions>, options: AdamOptions, decoupled: boolean) {
    checkOptions(name, options, Object.keys(ADAM_CHECKS));
    const defaults: Partial<AdamGroupOptions> = {
      lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: decoupled ? 1e-2 : 0, amsgrad: false, maximize: false,
    };
    for (const [key, value] of Object.entries(options)) {
      if (value !== undefined) (defaults as Record<string, unknown>)[key] = ADAM_CHECKS[key as keyof AdamGroupOptions](value, `${name}: option '${key}'`);
    }
    super(name, params, defaults, ADAM_CHECKS);
    this.#decoupled = decoupled;
  }

  protected updateGroup(group: ParamGroup<AdamGroupOptions>, items: { p: Tensor<'float32'>; g: Float32Array }[], backend: Backend): void {
    const states = items.map(({ p }) => {
      let s = this.state.get(p);
      if (!s) {
        // Lazy state initialization, in PyTorch's key order.
        s = { step: 0, exp_avg: zerosLike(p), exp_avg_sq: zerosLike(p) };
        if (group.amsgrad) s['max_exp_avg_sq'] = zerosLike(p);
        this.state.set(p, s);
      } else if (group.amsgrad && !s['max_exp_avg_sq']) {
        s['max_exp_avg_sq'] = zerosLike(p);
      }
      return s;
    });
    const data = (key: string): Float32Array[] => states.map((s) => (s[key] as Tensor<'float32'>).data);
    const steps = states.map((s) => (s['step'] as number) + 1);
    backend.adamStep({
      params: items.map((i) => i.p.data),
      grads: items.map((i) => i.g),
      expAvgs: data('exp_avg'),
      expAvgSqs: data('exp_avg_sq'),
      maxExpAvgSqs: group.amsgrad ? data('max_exp_avg_sq') : null,
      steps,
      lr: group.lr,
      beta1: group.betas[0],
      beta2: group.betas[1],
      eps: group.eps,
      weightDecay: group.weightDecay,
      amsgrad: group.amsgrad,
      maximize: group.maximize,
      decoupled: this.#decoupled,
    });
    states.forEach((s, i) => (s['step'] = steps[i]!));
  }

  protected loadParamState(p: Tensor, saved: Record<string, unknown>, group: ParamGroup<AdamGroupOptions>, where: string): Record<string, ParamStateValue> {
    const known = ['step', 'exp_avg', 'exp_avg_sq', 'max_exp_avg_sq'];
    for (const key of Object.keys(saved)) {
      if (!known.includes(key)) throw new RangeError(`${where}: unknown key '${key}' (${this.name} keeps ${known.join(', ')})`);
    }
    for (const key of group.amsgrad ? known : known.slice(0, 3)) {
      if (saved[key] === undefined) throw new RangeError(`${where} has no '${key}'${key === 'max_exp_avg_sq' ? ' (its group has amsgrad)' : ''}`);
    }
    const out: Record<string, ParamStateValue> = {
      step: loadStepCount(saved['step'], `${where}.step`),
      exp_avg: loadStateTensor(saved['exp_avg'], p, `${where}.exp_avg`),
      exp_avg_sq: loadStateTensor(saved['exp_avg_sq'], p, `${where}.exp_avg_sq`),
    };
    if (saved['max_exp_avg_sq'] !== undefined) out['max_exp_avg_sq'] = loadStateTensor(saved['max_exp_avg_sq'], p, `${where}.max_exp_avg_sq`);
    return out;
  }
}

/**
 * Adam: PyTorch 1.13's `torch.optim.Adam`, step for step (L2 `weightDecay` added to the gradient, bias-corrected
 * moments, `amsgrad` on the raw second moment). State per parameter: `step`, `exp_avg`, `exp_avg_sq`
 * (and `max_exp_avg_sq` with amsgrad).
 *
 * @example
 * const opt = new optim.Adam(model.parameters(), { lr: 1e-3 });
 */
export class Adam extends AdamBase {
  /**
   * @throws TypeError for an unknown option or a value of the wrong type; RangeError for lr < 0, eps < 0, a beta
   *   outside [0, 1) or weightDecay < 0 (PyTorch's messages).
   */
  constructor(params: ParamsInput<AdamGroupOptions>, options: AdamOptions = {}) {
    super('Adam', params, options, false);
  }
}

/**
 * AdamW: PyTorch 1.13's `torch.optim.AdamW`, Adam with decoupled weight decay (θ ← θ·(1 − lr·weightDecay)
 * before the Adam update; default weightDecay 1e-2).
 */
export class AdamW extends AdamBase {
  /** @throws as {@link Adam}. */
  constructor(params: ParamsInput<AdamGroupOptions>, options: AdamOptions = {}) {
    super('AdamW', params, options, true);
  }
}
