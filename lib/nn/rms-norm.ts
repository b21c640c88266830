import { Module, parameter } from './module';
import * as ops from '../ops';
import { ones, type Tensor } from '../tensor';
import { checkNumber } from '../errors';
import { boolOption, checkOptions, shapeOption } from './options';

/** Options of {@link RMSNorm}: PyTorch 2.4's `nn.RMSNorm(normalized_shape, eps=None, elementwise_affine=True)`. */
export interface RMSNormOptions {
  normalizedShape: number | readonly number[];
  /** Added to the mean square under the root; null or omitted: float32's machine epsilon (2⁻²³), as PyTorch. */
  eps?: number | null;
  /** Default true: a learnable `weight` (ones). */
  elementwiseAffine?: boolean;
}

/**
 * Root-mean-square normalisation over the trailing `normalizedShape` dims:
 * y = x / √(mean(x²) + eps) · weight (Llama, Mistral, T5). State dict: `weight`.
 */
export class RMSNorm extends Module {
  readonly normalizedShape: readonly number[];
  /** null: float32's machine epsilon. */
  readonly eps: number | null;
  weight: Tensor<'float32'> | null;

  constructor(options: RMSNormOptions) {
    super();
    const name = 'RMSNorm';
    checkOptions(name, options, ['normalizedShape', 'eps', 'elementwiseAffine']);
    const shape = shapeOption(name, 'normalizedShape', options.normalizedShape);
    this.normalizedShape = shape;
    this.eps = options.eps === undefined || options.eps === null ? null : checkNumber(name, 'eps', options.eps);
    this.weight = boolOption(name, 'elementwiseAffine', options.elementwiseAffine, true) ? parameter(ones(shape)) : null;
  }

  forward(x: Tensor<'float32'>): Tensor<'float32'> {
    return this.inContext(() => ops.rmsNorm(x, this.normalizedShape, this.weight, this.eps), false);
  }

  /** `forward(x + residual)` with the add fused ({@link ops.addRmsNorm}); `sumOut` also receives the sum. */
  forwardAdd(x: Tensor<'float32'>, residual: Tensor<'float32'>, sumOut?: Tensor<'float32'>): Tensor<'float32'> {
    return this.inContext(
      () => ops.addRmsNorm(x, residual, this.normalizedShape, this.weight, this.eps, sumOut ? { sumOut } : {}),
      false,
    );
  }
}
