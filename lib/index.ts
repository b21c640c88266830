/**
 * attnode: multi-head attention and Transformer stacks for Node.js, on
 * multithreaded SIMD C++ kernels (or a pure-TypeScript backend with the same API).
 *
 * @example
 * import { nn, ops, tensor, loadSafetensors } from 'attnode';
 */
// The native backend registers itself on import; keep this first.
import './backend/native';
// Registers the autograd engine into Tensor.
import './autograd/index';

export {
  Tensor,
  tensor,
  empty,
  zeros,
  ones,
  full,
  arange,
  randn,
  rand,
  isTensor,
  Rng,
  type RngState,
  contiguousStrides,
  type Shape,
  type ShapeLike,
  type DType,
  type DTypeMap,
  type ElementOf,
  type NestedArray,
  type TensorData,
  type RandomOptions,
  type GradFn,
  type BackwardOptions,
} from './tensor';
export { noGrad, enableGrad, isGradEnabled, setGradEnabled } from './autograd/index';
export { manualSeed, getRngState, setRngState } from './random';
export * as ops from './ops';
export * as nn from './nn';
export * as optim from './optim';
export * as serving from './serving';
export * as jobs from './jobs';
export { scaledDotProductAttention } from './attention';
export { loadSafetensors, parseSafetensors, saveSafetensors, serializeSafetensors } from './io/safetensors';
export { loadTorchCheckpoint, parseTorchCheckpoint, type TorchCheckpoint, type TorchCheckpointOptions } from './io/torch/checkpoint';
export { setBackend, getBackend, availableBackends } from './backend/registry';
export type { AttentionPrecision, Backend, BackendName, OpArgs, OpName, WeightPrecision } from './backend/backend';
export { generateSeq2Seq, generateSeq2SeqAsync, type GenerateOptions, type Seq2SeqGenerateOptions } from './generate';
export { TransformerModel } from './cli/seed-model';
export {
  parseConfig as parseModelConfig, readConfig as readModelConfig, loadServedModel, DEFAULT_CONFIG, CONFIG_FIELDS,
  type ModelConfig, type SeedModelConfigOptions, type LoadModelOptions, type ServedModel,
} from './cli/config';
export {
  runAsync,
  pendingAsyncCalls,
  queuedAsyncCalls,
  recordedAsyncCalls,
  setAsyncLimits,
  getAsyncLimits,
  type RunAsyncOptions,
  type AsyncLimits,
} from './async';
export { clearBufferPool, pooledBufferBytes, reuseBuffers } from './workspace';
export { currentContext, withContext, type ExecutionContext } from './context';
export { info, setNumThreads, getNumThreads, setIsa, memoryStats, releaseMemory, type MemoryStats, type RuntimeInfo, type IsaName, type NativeInfo, type NativeSource } from './runtime';
export { checkCpuBaseline, readCpuFlags, BASELINES, type CpuBaseline, type BaselineCheck } from './backend/cpu-baseline';
export {
  AutoTokenizer, IncrementalDecoder, type PreTrainedTokenizer, type BatchEncoding, type EncodeOptions, type DecodeOptions,
  type CallOptions,
} from './tokenizers';
export { readSentencePieceModel, parseSentencePieceModel, type SentencePieceModel, type SentencePiece } from './io/sentencepiece';
export { LlamaForCausalLM, resolveLlamaConfig, ropeInvFreq, type LlamaConfig, type Llama3RopeScaling, type LinearRopeScaling, type RopeScaling, type LlamaForwardOptions } from './models/llama';
export {
  generate, generateAsync, generateWithScores, generateWithScoresAsync, causalDecoderSession,
  type GenerationOptions, type GenerationOutput, type GenerationModel, type CausalModel, type DecodingModel,
  type DecoderSession, type StartDecodingOptions, type GenerationDefaults,
} from './models/generation';
export { TokenPicker, samplingParams, logProbability, type SamplingParams, type SamplingOptions } from './models/sampling';
export type { PackedSequence, PackedCausalModel } from './models/packed-step';
export { KVPool, type KVPoolOptions } from './nn/kv-pool';
export {
  GenerationEngine, EngineOverloadedError, GenerationStream, type GenerationEngineOptions, type EngineStats, type GenerationEngineStats, type EngineRequest,
  type EngineToken, type FinishReason, type GenerationResult,
} from './serving/engine';
export { createServingEngine, canBatchContinuously, type ServingEngine, type ServingEngineOptions } from './serving/serving-engine';
export { GPT2LMHeadModel, GPT2Model, GPT2Block, GPT2Attention, GPT2MLP, Conv1D, resolveGPT2Config, gpt2ConfigFromJson, gpt2StateDict, type GPT2Config, type ResolvedGPT2Config, type GPT2ForwardOptions } from './models/gpt2';
export { textGenerationPipeline, type TextGenerationPipeline, type TextGenerationPipelineOptions, type TextGenerationCallOptions, type GeneratedText, type ModelAndTokenizer } from './pipelines/text-generation';
export { loadLlama2c, Llama2cTokenizer, parseLlama2cHeader, type Llama2cHeader, type Llama2cModel } from './io/llama2c';
export { AutoModelForCausalLM, llamaConfigFromJson, loadFolderWeights } from './models/auto';
export { AutoModel, AutoModelForSequenceClassification, AutoModelForMaskedLM, AutoModelForSeq2SeqLM } from './models/auto';
export {
  MarianMTModel, MarianModel, MarianEncoder, MarianDecoder, MarianEncoderLayer, MarianDecoderLayer, MarianAttention,
  MarianSinusoidalPositionalEmbedding, MarianDecoderCache, resolveMarianConfig, marianConfigFromJson, marianStateDict,
  marianSinusoidalTable, type MarianConfig, type ResolvedMarianConfig, type MarianActivation, type Seq2SeqInputs,
  type Seq2SeqLMOutput, type MarianDecodeOptions, type Seq2SeqGenerationOptions,
} from './models/marian';
export { loadGenerationConfig, generationConfigFromJson, generationDefaultsFrom, type FolderGenerationConfig } from './models/generation-config';
export {
  BertModel, DistilBertModel, BertForMaskedLM, RobertaForMaskedLM, DistilBertForMaskedLM, BertForSequenceClassification,
  RobertaForSequenceClassification, DistilBertForSequenceClassification, resolveBertConfig, bertConfigFromJson,
  type BertConfig, type EncoderModel, type EncoderHeadModel, type EncoderForwardOptions, type EncoderOutput, type LogitsOutput,
} from './models/bert';
export {
  pipeline, type PipelineTask, type PipelineOptions, type PipelineTypes, type FeatureExtractionPipeline, type FeatureExtractionOptions,
  type Pooling, type TextClassificationPipeline, type TextClassificationResult, type TextClassificationOptions, type FillMaskPipeline,
  type FillMaskResult, type FillMaskOptions, type TranslationPipeline, type TranslationOptions, type TranslationResult,
  type TranslationTask, type PipelineFor,
} from './pipelines';
