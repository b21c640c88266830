/**
 * A decoder-only (GPT-style) causal language model. PyTorch has no module for
 * this; it is the usual composition of PyTorch modules, and its state dict
 * uses their keys: `embedding.weight`, `pos_encoding.pe`,
 * `transformer.layers.<i>.*`, `transformer.norm.*`, `lm_head.weight`.
 */
import { Module } from './module';
import { Embedding } from './sparse';
import { PositionalEncoding } from './positional-encoding';
import { TransformerEncoder, resolveLayerOptions, type ActivationFunction, type TransformerActivation } from './transformer';
import { Linear } from './linear';
import type { SelfAttentionCache } from './kv-cache';
import { Tensor } from '../tensor';
import { checkInt, formatShape } from '../errors';
import * as ops from '../ops';
import { boolOption, checkOptions } from './options';
import {
  greedy, idsTensor, resolveGenerateOptions, runSteps, runStepsAsync,
  type GenerateOptions, type StepLayout, type Stepper,
} from '../generate';

/** Options of {@link CausalLM}. */
export interface CausalLMOptions {
  vocabSize: number;
  dModel: number;
  nhead: number;
  numLayers: number;
  /** Default 4·dModel. */
  dimFeedforward?: number;
  /** Default 'gelu' (GPT-style); a function as in the Transformer layers. */
  activation?: TransformerActivation | ActivationFunction;
  /** Default 1e-5. */
  layerNormEps?: number;
  /** Pre-norm layers (default true, GPT-style; the final norm then normalises the residual stream). */
  normFirst?: boolean;
  /** Ids are [batch, seq] (default false: [seq, batch]). */
  batchFirst?: boolean;
  /** Longest sequence (prompt + generated), the size of the position table (default 1024). */
  maxLen?: number;
  /** Biases in the layers (default true). The lm head never has one. */
  bias?: boolean;
  /** Dropout in training mode (positions and layers, as in nn.TransformerEncoderLayer; default 0.1): `eval()` before inference. */
  dropout?: number;
}

/** Options of {@link CausalLM.createCache}. */
export interface CausalLMCacheOptions {
  /** Sequences decoded side by side (default 1). */
  batch?: number;
  /** Positions allocated up front (default 16; doubles when full). */
  capacity?: number;
}

/**
 * Token embedding + sinusoidal positions ({@link PositionalEncoding}) → a
 * stack of `TransformerEncoderLayer`s run causally (a decoder-only stack is an
 * encoder stack with a causal mask) → final LayerNorm → lm head (a bias-free
 * Linear to the vocabulary).
 *
 * `forward(ids)` runs the whole sequence causally; `forwardStep(ids, cache)`
 * runs only new positions against a key/value cache; `generate(prompt, ...)`
 * decodes greedily with the cache.
 */
export class CausalLM extends Module {
  readonly vocabSize: number;
  readonly dModel: number;
  readonly batchFirst: boolean;
  embedding: Embedding;
  posEncoding: PositionalEncoding;
  transformer: TransformerEncoder;
  lmHead: Linear;

  constructor(options: CausalLMOptions) {
    super();
    const name = 'CausalLM';
    checkOptions(name, options, [
      'vocabSize', 'dModel', 'nhead', 'numLayers', 'dimFeedforward', 'activation', 'layerNormEps', 'normFirst',
      'batchFirst', 'maxLen', 'bias', 'dropout',
    ]);
    this.vocabSize = checkInt(name, 'vocabSize', options.vocabSize, 1);
    const d = (this.dModel = checkInt(name, 'dModel', options.dModel, 1));
    this.batchFirst = boolOption(name, 'batchFirst', options.batchFirst, false);
    const maxLen = options.maxLen === undefined ? 1024 : checkInt(name, 'maxLen', options.maxLen, 1);
    // Every layer option checked here, so an error names CausalLM and the option it was given as.
    const layer = resolveLayerOptions(name, {
      dModel: d,
      nhead: options.nhead,
      dimFeedforward: options.dimFeedforward ?? 4 * d,
      activation: options.activation ?? 'gelu',
      ...(options.layerNormEps === undefined ? {} : { layerNormEps: options.layerNormEps }),
      normFirst: boolOption(name, 'normFirst', options.normFirst, true),
      batchFirst: this.batchFirst,
      bias: boolOption(name, 'bias', options.bias, true),
      ...(options.dropout === undefined ? {} : { dropout: options.dropout }),
    });
    const numLayers = checkInt(name, 'numLayers', options.numLayers, 0);
    this.embedding = new Embedding({ numEmbeddings: this.vocabSize, embeddingDim: d });
    this.posEncoding = new PositionalEncoding({ dModel: d, maxLen, batchFirst: this.batchFirst, dropout: layer.dropout });
    this.transformer = new TransformerEncoder({ layer, numLayers, norm: true });
    this.lmHead = new Linear({ inFeatures: d, outFeatures: this.vocabSize, bias: false });
  }

  /** ids [T, N] ([N, T] batch-first, [T] unbatched) → logits [T, N, vocab] (same layout), causal. */
  forward(ids: Tensor<'int32'>): Tensor<'float32'> {
    return this.inContext(() => {
      this.#checkIds('CausalLM.forward', ids);
      const x = this.posEncoding.forward(this.embedding.forward(ids));
      return this.lmHead.forward(this.transformer.forward(x, { isCausal: true }));
    });
  }

  /** Empty key/value caches for {@link forwardStep}. */
  createCache(options: CausalLMCacheOptions = {}): SelfAttentionCache {
    checkOptions('CausalLM.createCache', options, ['batch', 'capacity']);
    return this.transformer.createCache(options);
  }

  /**
   * The next t positions, ids [t, N] ([N, t] batch-first, [t] unbatched),
   * after the `cache.length` positions already in `cache` → their logits
   * [t, N, vocab]: the rows `forward(prefix)` gives for them, without
   * recomputing the prefix.
   */
  forwardStep(ids: Tensor<'int32'>, cache: SelfAttentionCache): Tensor<'float32'> {
    const fn = 'CausalLM.forwardStep';
    this.#checkIds(fn, ids);
    const pos = cache.length;
    const t = ids.shape[ids.ndim === 2 && this.batchFirst ? 1 : 0]!;
    const d = this.dModel;
    if (pos + t > this.posEncoding.maxLen) {
      throw new RangeError(`${fn}: position ${pos + t} exceeds the position table (maxLen ${this.posEncoding.maxLen})`);
    }
    // Positions pos..pos+t of the table, broadcast over the batch like PositionalEncoding.forward does for 0..t.
    const pe = this.posEncoding.pe.data.subarray(pos * d, (pos + t) * d);
    const table = new Tensor(pe, ids.ndim === 2 && !this.batchFirst ? [t, 1, d] : [t, d], 'float32');
    return this.inStep(() => {
      const x = ops.add(this.embedding.forward(ids), table, { backend: this.backend });
      return this.lmHead.forward(this.transformer.forwardStep(x, cache));
    });
  }

  /**
   * Greedy decoding: runs the prompt once (causally, filling the caches), then
   * one step of one token per generated token.
   *
   * @param prompt ids [P, N] ([N, P] batch-first, [P] unbatched), P ≥ 1.
   * @returns generated ids (without the prompt) [T, N] ([N, T] batch-first, [T] unbatched), T ≤ maxNewTokens:
   *   fewer when every sequence emitted `eosId`; finished sequences are filled with `padId`.
   */
  generate(prompt: Tensor<'int32'>, options: GenerateOptions): Tensor<'int32'> {
    return runSteps(this.#generation('CausalLM.generate', prompt, options));
  }

  /** {@link generate} with each step's kernels off the JS thread (one `runAsync` per step); the same tokens. */
  generateAsync(prompt: Tensor<'int32'>, options: GenerateOptions): Promise<Tensor<'int32'>> {
    return runStepsAsync(this.#generation('CausalLM.generateAsync', prompt, options), this.backend);
  }

  #generation(fn: string, prompt: Tensor<'int32'>, options: GenerateOptions) {
    const o = resolveGenerateOptions(fn, options);
    this.#checkIds(fn, prompt);
    const unbatched = prompt.ndim === 1;
    const p = prompt.shape[!unbatched && this.batchFirst ? 1 : 0]!;
    if (p < 1) {
      throw new RangeError(`${fn}: argument 'prompt' must hold at least one token, got shape ${formatShape(prompt.shape)}`);
    }
    const n = unbatched ? 1 : prompt.shape[this.batchFirst ? 0 : 1]!;
    const layout: StepLayout = { batch: n, batchFirst: this.batchFirst, unbatched };
    let stepper: Stepper;
    if (o.useCache) {
      let cache: SelfAttentionCache;
      stepper = {
        first: () => {
          cache = this.createCache({ batch: layout.batch, capacity: p + Math.max(0, o.maxNewTokens - 1) });
          return this.forwardStep(prompt, cache);
        },
        next: (generated) => this.forwardStep(idsTensor([generated[generated.length - 1]!], layout), cache),
      };
    } else {
      // Reference path: the whole prompt + generated prefix each step.
      const promptRows = Array.from({ length: p }, (_, i) => {
        const row = new Int32Array(n);
        for (let b = 0; b < n; b++) row[b] = prompt.data[unbatched ? i : this.batchFirst ? b * p + i : i * n + b]!;
        return row;
      });
      stepper = {
        first: () => this.forward(prompt),
        next: (generated) => this.forward(idsTensor([...promptRows, ...generated], layout)),
      };
    }
    return greedy(stepper, layout, o);
  }

  #checkIds(fn: string, ids: Tensor<'int32'>): void {
    if (!(ids instanceof Tensor) || ids.dtype !== 'int32') {
      throw new TypeError(`${fn}: token ids must be an int32 Tensor, got ${ids instanceof Tensor ? ids.dtype : typeof ids}`);
    }
    if (ids.ndim !== 1 && ids.ndim !== 2) {
      throw new RangeError(`${fn}: token ids must be [T, N] ([N, T] batch-first) or [T], got ${formatShape(ids.shape)}`);
    }
  }
}
