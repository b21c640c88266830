import { Module } from './module';
import { Tensor } from '../tensor';
import * as ops from '../ops';
import type { LossReduction } from '../ops/loss';
import { checkOptions, numberOption } from './options';
import { checkInt } from '../errors';

/** Options of {@link CrossEntropyLoss}: PyTorch's `nn.CrossEntropyLoss(weight, ignore_index, reduction, label_smoothing)`. */
export interface CrossEntropyLossOptions {
  /** float32 [C]: a weight per class (a buffer: `weight` in the state dict, as PyTorch registers it). */
  weight?: Tensor<'float32'> | null;
  /** Default -100. */
  ignoreIndex?: number;
  /** Default 'mean'. */
  reduction?: LossReduction;
  /** Default 0. */
  labelSmoothing?: number;
}

/**
 * PyTorch's `nn.CrossEntropyLoss`: `forward(input, target)` is
 * {@link ops.crossEntropy} with this module's options — input [N, C] (or
 * [N, C, d1, …], [C]) logits, target int32 class indices [N] (or [N, d1, …],
 * 0-D). No parameters; `weight` is a buffer.
 */
export class CrossEntropyLoss extends Module {
  declare weight: Tensor<'float32'> | null;
  readonly ignoreIndex: number;
  readonly reduction: LossReduction;
  readonly labelSmoothing: number;

  constructor(options: CrossEntropyLossOptions = {}) {
    super();
    const name = 'CrossEntropyLoss';
    checkOptions(name, options, ['weight', 'ignoreIndex', 'reduction', 'labelSmoothing']);
    const w = options.weight ?? null;
    if (w !== null && (!(w instanceof Tensor) || w.dtype !== 'float32' || w.ndim !== 1)) {
      throw new TypeError(`${name}: option 'weight' must be a 1-D float32 Tensor (one weight per class) or null`);
    }
    if (w) this.registerBuffer('weight', w);
    else this.weight = null;
    const ignoreIndex = options.ignoreIndex ?? -100;
    this.ignoreIndex = checkInt(name, 'ignoreIndex', ignoreIndex);
    this.reduction = reductionOption(name, options.reduction);
    this.labelSmoothing = numberOption(name, 'labelSmoothing', options.labelSmoothing, 0, { min: 0, max: 1 });
  }

  forward(input: Tensor<'float32'>, target: Tensor<'int32'>): Tensor<'float32'> {
    return this.inContext(() => ops.crossEntropy(input, target, {
      weight: this.weight, ignoreIndex: this.ignoreIndex, reduction: this.reduction, labelSmoothing: this.labelSmoothing,
    }), false);
  }
}

/** Options of {@link MSELoss}: PyTorch's `nn.MSELoss(reduction)`. */
export interface MSELossOptions {
  /** Default 'mean'. */
  reduction?: LossReduction;
}

/** PyTorch's `nn.MSELoss`: `forward(input, target)` is {@link ops.mseLoss}. */
export class MSELoss extends Module {
  readonly reduction: LossReduction;

  constructor(options: MSELossOptions = {}) {
    super();
    checkOptions('MSELoss', options, ['reduction']);
    this.reduction = reductionOption('MSELoss', options.reduction);
  }

  forward(input: Tensor<'float32'>, target: Tensor<'float32'>): Tensor<'float32'> {
    return this.inContext(() => ops.mseLoss(input, target, { reduction: this.reduction }), false);
  }
}

function reductionOption(name: string, r: unknown): LossReduction {
  const v = r ?? 'mean';
  if (v !== 'mean' && v !== 'sum' && v !== 'none') {
    throw new TypeError(`${name}: option 'reduction' must be 'mean', 'sum' or 'none', got ${JSON.stringify(v)}`);
  }
  return v;
}
