/** The options and results of {@link MultiheadAttention} (lib/nn/multihead-attention.ts). */
import type { Tensor } from '../tensor';
import type { AttentionMaskTensor } from '../ops/multi-head-attention';

/** Options of {@link MultiheadAttention}: PyTorch's `nn.MultiheadAttention` arguments in camelCase. */
export interface MultiheadAttentionOptions {
  embedDim: number;
  numHeads: number;
  /** Accepted for PyTorch parity; attnode runs inference, so dropout is never applied. */
  dropout?: number;
  /** Biases on the input and output projections (default true). */
  bias?: boolean;
  /** Learned key/value bias rows appended to the keys and values (default false). */
  addBiasKv?: boolean;
  /** A zero key/value row appended after them (default false). */
  addZeroAttn?: boolean;
  /** Feature size of `key` (default, or null as PyTorch's None: embedDim). */
  kdim?: number | null;
  /** Feature size of `value` (default, or null as PyTorch's None: embedDim). */
  vdim?: number | null;
  /** Inputs are [batch, seq, feature] instead of [seq, batch, feature] (default false). */
  batchFirst?: boolean;
}

/** A mask tensor: bool (`true` = not allowed to attend) or float32 (added to the scores). */
export type MaskTensor = AttentionMaskTensor;

/** Forward options of {@link MultiheadAttention}, as PyTorch's keyword arguments. */
export interface MultiheadAttentionForwardOptions {
  /** [batch, S] (or [S] unbatched): `true` / -inf marks padding keys. */
  keyPaddingMask?: MaskTensor | null;
  /** Return the attention weights (PyTorch's default: true). */
  needWeights?: boolean;
  /** [L, S] or [batch·numHeads, L, S] (unbatched: [numHeads, L, S]). */
  attnMask?: MaskTensor | null;
  /** Average the weights over heads (default true) instead of returning one map per head. */
  averageAttnWeights?: boolean;
  /** Apply a causal mask (query i sees keys j ≤ i), in addition to `attnMask` if one is given. */
  isCausal?: boolean;
}

/** Options of {@link MultiheadAttention.forwardStep}. */
export interface MultiheadAttentionStepOptions {
  /**
   * [batch, S] (or [S] unbatched) over every key the step attends to: all
   * cached positions plus the step's own (self-attention), or the memory
   * positions (a {@link MemoryKV}). `true` / -inf marks padding keys.
   */
  keyPaddingMask?: MaskTensor | null;
}

/** Options of {@link MultiheadAttention.createCache}. */
export interface MultiheadAttentionCacheOptions {
  /** Sequences decoded side by side (default 1; 1 for unbatched input). */
  batch?: number;
  /** Positions allocated up front (default 16); the cache doubles when it fills. */
  capacity?: number;
}

/** Result of {@link MultiheadAttention.forward}. */
export interface MultiheadAttentionOutput {
  /** Shaped like the query. */
  output: Tensor<'float32'>;
  /** [batch, L, S] averaged or [batch, numHeads, L, S]; without the batch axis for unbatched input; null unless asked for. */
  weights: Tensor<'float32'> | null;
}
