/** PyTorch-shaped modules. */
export { Module, parameter, toStateKey, type ForwardAsyncOptions, type LoadStateDictOptions, type LoadStateDictResult } from './module';
export { ModuleList } from './container';
export { Linear, LayerNorm, type LinearOptions, type LayerNormOptions } from './linear';
export { RMSNorm, type RMSNormOptions } from './rms-norm';
export { Embedding, type EmbeddingOptions } from './sparse';
export {
  MultiheadAttention,
  type MultiheadAttentionOptions,
  type MultiheadAttentionForwardOptions,
  type MultiheadAttentionOutput,
  type MultiheadAttentionStepOptions,
  type MultiheadAttentionCacheOptions,
  type MaskTensor,
} from './multihead-attention';
export {
  KVCache,
  DecoderCache,
  SelfAttentionCache,
  type KVCacheOptions,
  type MemoryKV,
  type DecoderLayerCache,
} from './kv-cache';
export {
  TransformerEncoderLayer,
  TransformerDecoderLayer,
  TransformerEncoder,
  TransformerDecoder,
  Transformer,
  type TransformerActivation,
  type TransformerLayerOptions,
  type TransformerStackOptions,
  type TransformerOptions,
  type EncoderLayerForwardOptions,
  type DecoderLayerForwardOptions,
  type EncoderForwardOptions,
  type TransformerForwardOptions,
  type StackNormOption,
  type StackNorm,
  type ActivationFunction,
  type TransformerEncoderOptions,
  type StepCacheOptions,
  type SelfAttentionCacheOptions,
  type CausalStepOptions,
  type DecoderStepOptions,
} from './transformer';
export { CausalLM, type CausalLMOptions, type CausalLMCacheOptions } from './causal-lm';
export { PositionalEncoding, type PositionalEncodingOptions } from './positional-encoding';
export { manualSeed } from './init';
export { Dropout, type DropoutOptions } from './dropout';
export { CrossEntropyLoss, MSELoss, type CrossEntropyLossOptions, type MSELossOptions } from './loss';
/** `torch.nn.init`: in-place initialisation (`xavierUniform_`, `kaimingUniform_`, `normal_`, …) and `calculateGain`. */
export * as init from './init';
/** `torch.nn.utils`: `clipGradNorm`. */
export * as utils from './utils';
