/**
 * Continuous batching of text generation: {@link GenerationEngine} runs many
 * requests' decode steps as one batch over a fixed KV pool, with chunked
 * prompt reading, per-request sampling, abort and bounded queues.
 */
export { GenerationEngine, type GenerationEngineOptions, type EngineStats, type GenerationEngineStats } from './engine';
export { EngineOverloadedError } from './errors';
export type { EngineRequest } from './request';
export { GenerationStream, type EngineToken, type FinishReason, type GenerationResult } from './stream';
export { SlotPool } from './slot-pool';
