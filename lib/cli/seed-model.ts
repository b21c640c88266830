/**
 * The "seed model" of the article attnode grew from (§5.2): an embedding, a
 * full `nn.Transformer` and an output projection, written as PyTorch code
 * would be. Its state dict loads straight from PyTorch's
 * `TransformerModel(vocab_size, d_model, nhead, num_layers)`. Exported from
 * the package root (`import { TransformerModel } from 'attnode'`); `attnode
 * demo`, `attnode serve` (config kind "seed") and `npm run train:seed` use it.
 */
import * as nn from '../nn';
import type { Tensor } from '../tensor';
import type { TransformerForwardOptions } from '../nn/transformer';
import { generateSeq2Seq, generateSeq2SeqAsync, type Seq2SeqGenerateOptions } from '../generate';

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

  /**
   * src [S, N], tgt [T, N] int32 token ids → logits [T, N, vocab]. `options` go to `nn.Transformer.forward` (the
   * article calls it without; teacher forcing passes `{ tgtMask }`, a causal mask, as PyTorch code would).
   */
  forward(src: Tensor<'int32'>, tgt: Tensor<'int32'>, options: TransformerForwardOptions = {}): Tensor<'float32'> {
    return this.inContext(() => {
      const output = this.transformer.forward(this.embedding.forward(src), this.embedding.forward(tgt), options);
      return this.fc.forward(output);
    });
  }

  /**
   * Greedy decoding with key/value caches (see {@link generateSeq2Seq}): src [S, N] token ids → generated ids
   * [T, N] (without the bos), T ≤ maxNewTokens; sequences that emitted `eosId` are filled with `padId` (default eos).
   */
  generate(src: Tensor<'int32'>, options: Seq2SeqGenerateOptions): Tensor<'int32'> {
    return generateSeq2Seq(this, src, options);
  }

  /** {@link generate} with each decoder step's kernels off the JS thread; the same tokens. */
  generateAsync(src: Tensor<'int32'>, options: Seq2SeqGenerateOptions): Promise<Tensor<'int32'>> {
    return generateSeq2SeqAsync(this, src, options);
  }
}
