import { Module, parameter } from './module';
import type { Tensor } from '../tensor';
import { checkInt } from '../errors';
import * as ops from '../ops';
import { normal_ } from './init';
import { zeros } from '../tensor';
import { checkOptions } from './options';

/** Options of {@link Embedding}: PyTorch's `nn.Embedding(num_embeddings, embedding_dim, padding_idx=None)`. */
export interface EmbeddingOptions {
  numEmbeddings: number;
  embeddingDim: number;
  /** Row initialised to zeros (negative counts from the end, as in PyTorch). */
  paddingIdx?: number | null;
}

/** A lookup table: int32 ids [...] → [..., embeddingDim]. An id outside [0, numEmbeddings) is a RangeError. State dict: `weight`. */
export class Embedding extends Module {
  readonly numEmbeddings: number;
  readonly embeddingDim: number;
  readonly paddingIdx: number | null;
  weight: Tensor<'float32'>;

  constructor(options: EmbeddingOptions) {
    super();
    checkOptions('Embedding', options, ['numEmbeddings', 'embeddingDim', 'paddingIdx']);
    this.numEmbeddings = checkInt('Embedding', 'numEmbeddings', options.numEmbeddings, 0);
    this.embeddingDim = checkInt('Embedding', 'embeddingDim', options.embeddingDim, 0);
    const pad = options.paddingIdx ?? null;
    if (pad !== null) checkInt('Embedding', 'paddingIdx', pad, -this.numEmbeddings, this.numEmbeddings - 1);
    this.paddingIdx = pad === null ? null : pad < 0 ? pad + this.numEmbeddings : pad;
    this.weight = parameter(normal_(zeros([this.numEmbeddings, this.embeddingDim])));
    if (this.paddingIdx !== null) {
      this.weight.data.fill(0, this.paddingIdx * this.embeddingDim, (this.paddingIdx + 1) * this.embeddingDim);
    }
  }

  forward(ids: Tensor<'int32'>): Tensor<'float32'> {
    return ops.embedding(ids, this.weight, { backend: this.backend, paddingIdx: this.paddingIdx });
  }
}
