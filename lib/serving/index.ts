/**
 * Serving: dynamic batching ({@link Batcher}), the inference HTTP server
 * ({@link InferenceServer}), its metrics, the encoder model it serves, and
 * continuous batching of generation ({@link GenerationEngine}) and the choice
 * of engine for a served model ({@link createServingEngine}).
 */
export {
  Batcher,
  BatcherClosedError,
  QueueFullError,
  padBatch,
  unpadRow,
  type BatchEncoder,
  type BatcherOptions,
  type BatcherStats,
  type SequenceInput,
  type SubmitOptions,
} from './batcher';
export { EncoderModel, type EncoderModelOptions } from './encoder-model';
export { InferenceServer, type InferenceServerOptions, type GenerateFn } from './http';
export type { ServedEncoder } from './served-model';
export { Metrics, type MetricsOptions, type MetricsSnapshot, type LatencySummary, type EventLoopSummary } from './metrics';
export { OpenAIRoutes, EventStream, type OpenAIRoutesOptions } from './openai';
export {
  loadTextModel,
  HfEncoderAdapter,
  type LoadTextModelOptions,
  type ServedTextModel,
  type ServedEmbeddingModel,
  type ServedGenerationModel,
  type TextCodec,
} from './served-model';
export { ChatTemplate, ChatTemplateError, type ChatMessage } from './chat-template';
export { StopStringMatcher } from './stop-strings';
export { SequentialEngine, isEngineOverloaded, requestTokenLimit, type SequentialEngineOptions, type TokenEngine, type EngineStats } from './sequential-engine';
export { createServingEngine, canBatchContinuously, type ServingEngine, type ServingEngineOptions } from './serving-engine';
export { HttpError } from './http-error';
export {
  GenerationEngine,
  EngineOverloadedError,
  GenerationStream,
  SlotPool,
  type GenerationEngineOptions,
  type GenerationEngineStats,
  type EngineRequest,
  type EngineToken,
  type FinishReason,
  type GenerationResult,
} from './engine';
