/**
 * The generation engine a server runs for a causal LM (what `attnode serve`
 * builds): the continuous-batching {@link GenerationEngine} for every model
 * that can run packed steps (`forwardPacked` + `createKVPool`: the Llama
 * family, llama2.c checkpoints included, and GPT-2), and the one-at-a-time
 * {@link SequentialEngine} only for a model that cannot, with the reason, so
 * the server can say which one serves and why.
 */
import type { CausalModel } from '../models/generation';
import type { PackedCausalModel } from '../models/packed-step';
import { GenerationEngine } from './engine';
import { SequentialEngine } from './sequential-engine';

/** Options of {@link createServingEngine}; all but `maxQueued` apply to continuous batching only (SequentialEngine ignores them). */
export interface ServingEngineOptions {
  /** Most sequences decoded together (default 8). */
  maxRunning?: number;
  /** Most requests waiting before one more is refused (429 on GenerationEngine, 503 on SequentialEngine; default 64). */
  maxQueued?: number;
  /** Bytes of the preallocated KV pool, a hard cap (default: maxRunning full contexts, at most 1 GiB). */
  kvCacheBytes?: number;
  /** Prompt tokens read per step beside the decoding streams (default 64). */
  prefillChunk?: number;
}

/** The engine chosen for a model, and a one-line description of it for the server's log. */
export type ServingEngine =
  | { kind: 'continuous'; engine: GenerationEngine; description: string }
  | { kind: 'sequential'; engine: SequentialEngine; description: string; reason: string };

/** Whether a causal LM can run packed steps over a shared KV pool (what GenerationEngine needs). */
export function canBatchContinuously(model: CausalModel): model is PackedCausalModel {
  const m = model as Partial<PackedCausalModel>;
  return typeof m.forwardPacked === 'function' && typeof m.forwardPackedStages === 'function' && typeof m.createKVPool === 'function';
}

const MiB = 1024 * 1024;
const mib = (bytes: number): string => (bytes >= 10 * MiB ? String(Math.round(bytes / MiB)) : (bytes / MiB).toFixed(2));

/**
 * Builds the engine for `model` (see the module comment).
 * @throws TypeError for a value that is not a causal LM or an option of the wrong type; RangeError naming the
 *   option for a value out of range (a KV cache below one position, or too large for one buffer).
 */
export function createServingEngine(model: CausalModel, options: ServingEngineOptions = {}): ServingEngine {
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`createServingEngine: argument 'options' must be an object, got ${options === null ? 'null' : typeof options}`);
  }
  const { maxRunning, maxQueued, kvCacheBytes, prefillChunk } = options;
  if (canBatchContinuously(model)) {
    const engine = new GenerationEngine(model, {
      ...(maxRunning !== undefined ? { maxRunning } : {}),
      ...(maxQueued !== undefined ? { maxQueued } : {}),
      ...(kvCacheBytes !== undefined ? { kvCacheBytes } : {}),
      ...(prefillChunk !== undefined ? { prefillChunk } : {}),
    });
    const l = engine.limits;
    const context = model.config.maxPositionEmbeddings;
    const cut = engine.maxRequestTokens < context
      ? `; requests are limited to ${engine.maxRequestTokens} tokens (prompt + max_tokens) of the model's ${context}`
      : '';
    return {
      kind: 'continuous',
      engine,
      description: `continuous batching (GenerationEngine): up to ${l.maxRunning} sequences per step, KV cache `
        + `${mib(l.kvCacheBytes)} MiB = ${engine.kvPositions} positions${cut}, prompts read ${l.prefillChunk} tokens per step, `
        + `${l.maxQueued} requests may wait`,
    };
  }
  const name = (model as object | null)?.constructor?.name ?? typeof model;
  const reason = `${name} has no forwardPacked/createKVPool (continuous batching runs Llama-family and GPT-2 models)`;
  const engine = new SequentialEngine(model, maxQueued !== undefined ? { maxQueued } : {});
  return {
    kind: 'sequential',
    engine,
    reason,
    description: `one request at a time (SequentialEngine): ${reason}; ${engine.maxQueued} requests may wait`,
  };
}
