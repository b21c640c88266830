import { Module } from './module';
import type { Tensor } from '../tensor';
import * as ops from '../ops';
import { checkOptions, numberOption } from './options';

/** Options of {@link Dropout}: PyTorch's `nn.Dropout(p=0.5)`. */
export interface DropoutOptions {
  /** Probability of zeroing an element, in [0, 1]. Default 0.5. */
  p?: number;
}

/**
 * PyTorch's `nn.Dropout`: in training mode zeroes each element with
 * probability `p` and scales the rest by 1/(1 − p) (`ops.dropout`, drawn from
 * the process-wide generator, so `manualSeed(n)` makes it reproducible); in
 * eval mode it returns its input. No parameters, nothing in the state dict.
 */
export class Dropout extends Module {
  readonly p: number;

  constructor(options: DropoutOptions = {}) {
    super();
    checkOptions('Dropout', options, ['p']);
    this.p = numberOption('Dropout', 'p', options.p, 0.5, { min: 0, max: 1 });
  }

  forward(x: Tensor<'float32'>): Tensor<'float32'> {
    return this.inContext(() => ops.dropout(x, this.p, { training: this.training }), false);
  }
}
