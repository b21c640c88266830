import type { Tensor } from '../tensor';
import type { Backend } from '../backend/backend';
import { describeValue } from '../errors';
import { checkOptions } from '../nn/options';
import {
  Optimizer, checkBoolean, checkNonNegative, loadStateTensor, zerosLike,
  type OptionCheck, type ParamGroup, type ParamStateValue, type ParamsInput,
} from './optimizer';

/** Options of {@link SGD}: PyTorch's `torch.optim.SGD(params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False, *, maximize=False)`. */
export interface SGDOptions {
  /** Learning rate; required unless every parameter group sets its own. */
  lr?: number;
  /** Momentum factor (default 0: plain SGD, no buffer). */
  momentum?: number;
  /** Dampening of the momentum's gradient term (default 0). */
  dampening?: number;
  /** L2 penalty added to the gradient (default 0). */
  weightDecay?: number;
  /** Nesterov momentum (default false; needs momentum > 0 and dampening 0). */
  nesterov?: boolean;
  /** Maximize the objective instead of minimizing it (default false). */
  maximize?: boolean;
}

/** The options every SGD parameter group holds. */
export type SGDGroupOptions = Required<SGDOptions>;

function finiteNumber(value: unknown, where: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new TypeError(`${where} must be a finite number, got ${describeValue(value)}`);
  return value;
}

const SGD_CHECKS: Record<keyof SGDGroupOptions, OptionCheck> = {
  lr: (v, w) => checkNonNegative(v, w, 'Invalid learning rate'),
  momentum: (v, w) => checkNonNegative(v, w, 'Invalid momentum value'),
  dampening: finiteNumber,
  weightDecay: (v, w) => checkNonNegative(v, w, 'Invalid weight_decay value'),
  nesterov: checkBoolean,
  maximize: checkBoolean,
};

/**
 * Stochastic gradient descent, optionally with momentum: PyTorch 1.13's `torch.optim.SGD`, step for step
 * (the momentum buffer starts as the first gradient; Nesterov adds momentum·buffer to the gradient).
 * State per parameter: `momentum_buffer` (null without momentum).
 *
 * @example
 * const opt = new optim.SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
 * opt.zeroGrad(); loss.backward(); opt.step();
 */
export class SGD extends Optimizer<SGDGroupOptions> {
  /**
   * @throws TypeError for an unknown option or a value of the wrong type; RangeError for a negative lr,
   *   momentum or weightDecay, or nesterov without momentum or with dampening (PyTorch's messages).
   */
  constructor(params: ParamsInput<SGDGroupOptions>, options: SGDOptions = {}) {
    checkOptions('SGD', options, Object.keys(SGD_CHECKS));
    const defaults: Partial<SGDGroupOptions> = { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, maximize: false };
    for (const [key, value] of Object.entries(options)) {
      if (value !== undefined) (defaults as Record<string, unknown>)[key] = SGD_CHECKS[key as keyof SGDGroupOptions](value, `SGD: option '${key}'`);
    }
    if (defaults.nesterov && (defaults.momentum! <= 0 || defaults.dampening !== 0)) {
      throw new RangeError('SGD: Nesterov momentum requires a momentum and zero dampening (options nesterov, momentum, dampening)');
    }
    super('SGD', params, defaults, SGD_CHECKS);
  }

  protected override checkGroup(group: ParamGroup<SGDGroupOptions>, where: string): void {
    if (group.nesterov && (group.momentum <= 0 || group.dampening !== 0)) {
      throw new RangeError(`${where}: Nesterov momentum requires a momentum and zero dampening (options nesterov, momentum, dampening)`);
    }
  }

  protected updateGroup(group: ParamGroup<SGDGroupOptions>, items: { p: Tensor<'float32'>; g: Float32Array }[], backend: Backend): void {
    const useMomentum = group.momentum !== 0;
    const buffers: Float32Array[] = [];
    const init: number[] = [];
    const created: [Tensor, Tensor<'float32'>][] = [];
    for (const { p } of items) {
      const existing = this.state.get(p)?.['momentum_buffer'] as Tensor<'float32'> | null | undefined;
      if (!useMomentum) continue;
      if (existing) {
        buffers.push(existing.data);
        init.push(0);
      } else {
        const buf = zerosLike(p);
        created.push([p, buf]);
        buffers.push(buf.data);
        init.push(1);
      }
    }
    backend.sgdStep({
      params: items.map((i) => i.p.data),
      grads: items.map((i) => i.g),
      momentumBuffers: useMomentum ? buffers : null,
      initMomentum: useMomentum ? init : null,
      lr: group.lr,
      momentum: group.momentum,
      dampening: group.dampening,
      weightDecay: group.weightDecay,
      nesterov: group.nesterov,
      maximize: group.maximize,
    });
    // As PyTorch: every parameter that stepped has a state entry, its buffer None without momentum.
    for (const { p } of items) if (!this.state.has(p)) this.state.set(p, { momentum_buffer: null });
    for (const [p, buf] of created) this.state.get(p)!['momentum_buffer'] = buf;
  }

  protected loadParamState(p: Tensor, saved: Record<string, unknown>, _group: ParamGroup<SGDGroupOptions>, where: string): Record<string, ParamStateValue> {
    for (const key of Object.keys(saved)) {
      if (key !== 'momentum_buffer') throw new RangeError(`${where}: unknown key '${key}' (SGD keeps momentum_buffer)`);
    }
    const buf = saved['momentum_buffer'];
    return { momentum_buffer: buf === null || buf === undefined ? null : loadStateTensor(buf, p, `${where}.momentum_buffer`) };
  }
}
