import { Module, parameter } from './module';
import type { Tensor } from '../tensor';
import { ones, zeros } from '../tensor';
import { checkInt } from '../errors';
import * as ops from '../ops';
import { kaimingUniform_, uniform_ } from './init';
import { boolOption, checkOptions, numberOption, shapeOption } from './options';

/** Options of {@link Linear}: PyTorch's `nn.Linear(in_features, out_features, bias=True)`. */
export interface LinearOptions {
  inFeatures: number;
  outFeatures: number;
  /** Default true. */
  bias?: boolean;
}

/**
 * y = x · Wᵀ + b, with `weight` stored [outFeatures, inFeatures] as in PyTorch
 * (the GEMM reads it transposed in place: no copy per call).
 * State dict: `weight`, `bias`.
 */
export class Linear extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  weight: Tensor<'float32'>;
  bias: Tensor<'float32'> | null;

  constructor(options: LinearOptions) {
    super();
    checkOptions('Linear', options, ['inFeatures', 'outFeatures', 'bias']);
    this.inFeatures = checkInt('Linear', 'inFeatures', options.inFeatures, 0);
    this.outFeatures = checkInt('Linear', 'outFeatures', options.outFeatures, 0);
    // PyTorch's reset_parameters: kaiming_uniform_(a=√5), i.e. U(±1/√inFeatures), and the bias from U(±1/√fanIn).
    this.weight = parameter(kaimingUniform_(zeros([this.outFeatures, this.inFeatures]), { a: Math.sqrt(5) }));
    const bound = this.inFeatures > 0 ? 1 / Math.sqrt(this.inFeatures) : 0;
    this.bias = boolOption('Linear', 'bias', options.bias, true) ? parameter(uniform_(zeros([this.outFeatures]), -bound, bound)) : null;
  }

  /** x [..., inFeatures] → [..., outFeatures]. */
  forward(x: Tensor<'float32'>): Tensor<'float32'> {
    // Its own context: a Linear with useWeightPrecision runs its GEMM in that precision.
    return this.inContext(() => ops.linear(x, this.weight, this.bias ?? undefined, { cacheWeight: true }), false);
  }
}

/** Options of {@link LayerNorm}: PyTorch's `nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True)`. */
export interface LayerNormOptions {
  normalizedShape: number | readonly number[];
  /** Default 1e-5. */
  eps?: number;
  /** Default true: learnable `weight` (ones) and `bias` (zeros). */
  elementwiseAffine?: boolean;
  /** With elementwiseAffine, also learn `bias` (default true; PyTorch 2.1+). */
  bias?: boolean;
}

/** Normalises over the trailing `normalizedShape` dims (biased variance, eps inside the root). State dict: `weight`, `bias`. */
export class LayerNorm extends Module {
  readonly normalizedShape: readonly number[];
  readonly eps: number;
  weight: Tensor<'float32'> | null;
  bias: Tensor<'float32'> | null;

  constructor(options: LayerNormOptions) {
    super();
    checkOptions('LayerNorm', options, ['normalizedShape', 'eps', 'elementwiseAffine', 'bias']);
    const shape = shapeOption('LayerNorm', 'normalizedShape', options.normalizedShape);
    this.normalizedShape = shape;
    this.eps = numberOption('LayerNorm', 'eps', options.eps, 1e-5, { min: 0 });
    const affine = boolOption('LayerNorm', 'elementwiseAffine', options.elementwiseAffine, true);
    const bias = boolOption('LayerNorm', 'bias', options.bias, true);
    this.weight = affine ? parameter(ones(shape)) : null;
    this.bias = affine && bias ? parameter(zeros(shape)) : null;
  }

  forward(x: Tensor<'float32'>): Tensor<'float32'> {
    return ops.layerNorm(x, this.normalizedShape, this.weight ?? undefined, this.bias ?? undefined, this.eps, {
      backend: this.backend,
    });
  }

  /**
   * `forward(x + residual)` with the add fused in ({@link ops.addLayerNorm}):
   * the `norm(x + sublayer(x))` step of a post-norm Transformer layer.
   * With `sumOut`, the sum is stored there too (the next residual of a
   * pre-norm layer).
   */
  forwardAdd(x: Tensor<'float32'>, residual: Tensor<'float32'>, sumOut?: Tensor<'float32'>): Tensor<'float32'> {
    return ops.addLayerNorm(x, residual, this.normalizedShape, this.weight, this.bias, this.eps, {
      backend: this.backend,
      ...(sumOut ? { sumOut } : {}),
    });
  }
}
