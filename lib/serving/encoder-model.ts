/**
 * The encoder the example server and `attnode run` serve: token embedding →
 * sinusoidal positions → `nn.TransformerEncoder` (batch-first), as in
 * PyTorch's Transformer tutorial. It implements {@link BatchEncoder}, so a
 * {@link Batcher} can pad and mask several requests into one forward pass.
 *
 * State dict (what a PyTorch port would write): `embedding.weight`,
 * `pos_encoder.pe`, `encoder.layers.<i>.*`, and `encoder.norm.*` with `finalNorm`.
 */
import * as nn from '../nn';
import * as ops from '../ops';
import type { Tensor } from '../tensor';
import { checkInt } from '../errors';
import type { BatchEncoder } from './batcher';

/** Constructor options of {@link EncoderModel} (the `options` of an `"encoder"` config, see lib/cli/config.ts). */
export interface EncoderModelOptions {
  vocabSize: number;
  dModel: number;
  nhead: number;
  numLayers: number;
  /** Default 4·dModel. */
  dimFeedforward?: number;
  /** Longest sequence (positional table size); default 512. */
  maxLen?: number;
  /** Default 'gelu'. */
  activation?: nn.TransformerActivation;
  /** Pre-norm layers (default false). */
  normFirst?: boolean;
  /** A final LayerNorm after the stack (default false). */
  finalNorm?: boolean;
  /** Multiply embeddings by √dModel before adding positions, as the tutorial does (default true). */
  scaleEmbedding?: boolean;
}

/** Embedding + positional encoding + TransformerEncoder over token ids [N, S] → [N, S, dModel]. */
export class EncoderModel extends nn.Module implements BatchEncoder {
  readonly vocabSize: number;
  readonly dModel: number;
  readonly maxLen: number;
  readonly scaleEmbedding: boolean;
  readonly inputKind = 'ids' as const;
  embedding: nn.Embedding;
  posEncoder: nn.PositionalEncoding;
  encoder: nn.TransformerEncoder;

  constructor(options: EncoderModelOptions) {
    super();
    const name = 'EncoderModel';
    this.vocabSize = checkInt(name, 'vocabSize', options.vocabSize, 1);
    this.dModel = checkInt(name, 'dModel', options.dModel, 1);
    this.maxLen = options.maxLen === undefined ? 512 : checkInt(name, 'maxLen', options.maxLen, 1);
    this.scaleEmbedding = options.scaleEmbedding ?? true;
    this.embedding = new nn.Embedding({ numEmbeddings: this.vocabSize, embeddingDim: this.dModel });
    this.posEncoder = new nn.PositionalEncoding({ dModel: this.dModel, maxLen: this.maxLen, batchFirst: true });
    this.encoder = new nn.TransformerEncoder({
      layer: {
        dModel: this.dModel,
        nhead: options.nhead,
        dimFeedforward: options.dimFeedforward ?? 4 * this.dModel,
        activation: options.activation ?? 'gelu',
        normFirst: options.normFirst ?? false,
        batchFirst: true,
      },
      numLayers: options.numLayers,
      norm: options.finalNorm ?? false,
    });
  }

  /** Output feature size (dModel). */
  get outputDim(): number {
    return this.dModel;
  }

  /** Longest accepted sequence. */
  get maxSeqLen(): number {
    return this.maxLen;
  }

  /** ids [N, S] int32 (or [S] unbatched), keyPaddingMask [N, S] bool (true = padding) → [N, S, dModel]. */
  forward(ids: Tensor<'int32'>, keyPaddingMask: Tensor<'bool'> | null = null): Tensor<'float32'> {
    let x = this.embedding.forward(ids);
    if (this.scaleEmbedding) x = ops.mul(x, Math.sqrt(this.dModel), { backend: this.backend });
    x = this.posEncoder.forward(x);
    return this.encoder.forward(x, { srcKeyPaddingMask: keyPaddingMask });
  }
}
