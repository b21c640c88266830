/**
 * The "seed model" of the article attnode grew from (§5.2): an embedding, a
 * full `nn.Transformer` and an output projection, written as PyTorch code
 * would be. Its state dict loads straight from PyTorch's
 * `TransformerModel(vocab_size, d_model, nhead, num_layers)`.
 */
import { nn, type Tensor } from '../index';

export class TransformerModel extends nn.Module {
  embedding: nn.Embedding;
  transformer: nn.Transformer;
  fc: nn.Linear;

  /** As `nn.Transformer(d_model, nhead, num_layers)`: num_layers encoder layers, PyTorch's default 6 decoder layers. */
  constructor(vocabSize: number, dModel: number, nhead: number, numLayers: number, numDecoderLayers = 6, dimFeedforward = 2048) {
    super();
    this.embedding = new nn.Embedding({ numEmbeddings: vocabSize, embeddingDim: dModel });
    this.transformer = new nn.Transformer({ dModel, nhead, numEncoderLayers: numLayers, numDecoderLayers, dimFeedforward });
    this.fc = new nn.Linear({ inFeatures: dModel, outFeatures: vocabSize });
  }

  /** src [S, N], tgt [T, N] int32 token ids → logits [T, N, vocab]. */
  forward(src: Tensor<'int32'>, tgt: Tensor<'int32'>): Tensor<'float32'> {
    const output = this.transformer.forward(this.embedding.forward(src), this.embedding.forward(tgt));
    return this.fc.forward(output);
  }
}
