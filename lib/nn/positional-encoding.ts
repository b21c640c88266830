import { Module } from './module';
import { Tensor } from '../tensor';
import { checkInt, formatShape } from '../errors';
import * as ops from '../ops';
import { boolOption, checkOptions, numberOption } from './options';

/** Options of {@link PositionalEncoding}. */
export interface PositionalEncodingOptions {
  dModel: number;
  /** Longest sequence supported (default 5000). */
  maxLen?: number;
  /** Dropout after adding the positions, in training mode (the tutorial's; default 0.1). */
  dropout?: number;
  /** Inputs are [batch, seq, dModel] (default false: [seq, batch, dModel]). */
  batchFirst?: boolean;
}

/**
 * Sinusoidal position encoding of "Attention Is All You Need", as in
 * PyTorch's Transformer tutorial: PE[pos, 2i] = sin(pos / 10000^(2i/d)),
 * PE[pos, 2i+1] = cos(…). The table is the persistent buffer `pe` of shape
 * [maxLen, 1, dModel], the tutorial's layout, so its state dict loads here.
 */
export class PositionalEncoding extends Module {
  readonly dModel: number;
  readonly maxLen: number;
  readonly batchFirst: boolean;
  /** Dropout after adding the positions, in training mode (the tutorial's; default 0.1). */
  readonly dropout: number;
  declare pe: Tensor<'float32'>;

  constructor(options: PositionalEncodingOptions) {
    super();
    checkOptions('PositionalEncoding', options, ['dModel', 'maxLen', 'dropout', 'batchFirst']);
    const d = (this.dModel = checkInt('PositionalEncoding', 'dModel', options.dModel, 1));
    const maxLen = (this.maxLen = options.maxLen === undefined ? 5000 : checkInt('PositionalEncoding', 'maxLen', options.maxLen, 1));
    this.batchFirst = boolOption('PositionalEncoding', 'batchFirst', options.batchFirst, false);
    this.dropout = numberOption('PositionalEncoding', 'dropout', options.dropout, 0.1, { min: 0, max: 1 });
    const pe = new Float32Array(maxLen * d);
    // Same float32 steps as the tutorial: div_term = exp(2i · (-ln(10000) / d)), angle = pos · div_term.
    const f = Math.fround;
    const scale = f(-Math.log(10000) / d);
    for (let i = 0; 2 * i < d; i++) {
      const div = f(Math.exp(f(2 * i * scale)));
      for (let pos = 0; pos < maxLen; pos++) {
        const angle = f(pos * div);
        pe[pos * d + 2 * i] = Math.sin(angle);
        if (2 * i + 1 < d) pe[pos * d + 2 * i + 1] = Math.cos(angle);
      }
    }
    this.registerBuffer('pe', new Tensor(pe, [maxLen, 1, d], 'float32'));
  }

  /** x + PE[:seq], broadcast over the batch. */
  forward(x: Tensor<'float32'>): Tensor<'float32'> {
    const fn = 'PositionalEncoding.forward';
    if (!(x instanceof Tensor) || x.dtype !== 'float32') throw new TypeError(`${fn}: argument 'x' must be a float32 Tensor`);
    if (x.ndim < 2 || x.ndim > 3 || x.shape[x.ndim - 1] !== this.dModel) {
      throw new RangeError(`${fn}: argument 'x' must have shape [seq, batch, ${this.dModel}], [batch, seq, ${this.dModel}] or [seq, ${this.dModel}], got ${formatShape(x.shape)}`);
    }
    const seqAxis = x.ndim === 3 && this.batchFirst ? 1 : 0;
    const len = x.shape[seqAxis]!;
    if (len > this.maxLen) throw new RangeError(`${fn}: sequence length ${len} exceeds maxLen ${this.maxLen}`);
    const table = new Tensor(this.pe.data.subarray(0, len * this.dModel), x.ndim === 3 && !this.batchFirst ? [len, 1, this.dModel] : [len, this.dModel], 'float32');
    return ops.dropout(ops.add(x, table, { backend: this.backend }), this.dropout, { training: this.training, backend: this.backend });
  }
}
