/**
 * Serving: dynamic batching ({@link Batcher}), the inference HTTP server
 * ({@link InferenceServer}), its metrics, and the encoder model it serves.
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
export { InferenceServer, type InferenceServerOptions, type GenerateFn, type ServedEncoder } from './http';
export { Metrics, type MetricsOptions, type MetricsSnapshot, type LatencySummary, type EventLoopSummary } from './metrics';
