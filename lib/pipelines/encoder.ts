/**
 * What the encoder pipelines share: loading a folder's model and tokenizer,
 * checking inputs, and running texts in batches. Texts are sorted by token
 * length so each batch pads to similar lengths, each batch runs with
 * `forwardAsync` (kernels off the JS thread; with several threads, several
 * batches side by side, each on one thread), and results come back in the
 * caller's order.
 */
import * as path from 'node:path';
import { AutoTokenizer, type PreTrainedTokenizer } from '../tokenizers';
import type { EncoderForwardOptions, ResolvedBertConfig } from '../models/bert';
import type { Tensor } from '../tensor';
import { checkInt } from '../errors';
import type { BackendChoice, Module } from '../nn/module';
import type { WeightPrecision } from '../backend/backend';
import { noGrad } from '../autograd/grad-mode';
import type { RunAsyncOptions } from '../async';
import { getNumThreads } from '../runtime';

/** Options every pipeline takes when it is created. */
export interface PipelineOptions {
  /** Texts per forward (default 32). Calls can override it. */
  batchSize?: number;
  /** Backend the model computes on ('native', 'js' or a Backend); default the global one. */
  backend?: BackendChoice;
  /**
   * Precision of the weight GEMMs (see `Module.useWeightPrecision`): 'bfloat16' halves the weight bytes and, on CPUs
   * with AVX512-BF16, doubles the GEMM rate at about 3 significant digits; 'int8' quarters them and multiplies on
   * int8 kernels (AVX512-VNNI, AVX2 or portable) at about 2 significant digits per input. Default 'float32'.
   */
  weightPrecision?: WeightPrecision;
  /**
   * With several threads (`setNumThreads`) and several batches in a call, run the batches side by side, each whole
   * on one thread, rather than one at a time with every kernel split over the threads (default true; the encoder
   * pipelines: feature-extraction, text-classification, fill-mask). Same results either way; side by side is the
   * higher throughput, one at a time gives each batch the lower latency.
   */
  parallelBatches?: boolean;
}

/** Checks a pipeline's creation options and applies the model's ones (backend, weight precision). */
export function applyPipelineOptions(fn: string, model: Module, options: PipelineOptions): void {
  checkCallOptions(fn, options, ['batchSize', 'backend', 'weightPrecision', 'parallelBatches']);
  if (options.parallelBatches !== undefined && typeof options.parallelBatches !== 'boolean') {
    throw new TypeError(`${fn}: option 'parallelBatches' must be a boolean, got ${typeof options.parallelBatches}`);
  }
  if (options.backend !== undefined) model.useBackend(options.backend);
  if (options.weightPrecision !== undefined) model.useWeightPrecision(options.weightPrecision);
}

/** Options every call of an encoder pipeline takes. */
export interface EncoderCallOptions {
  /** Texts per forward (default the pipeline's). */
  batchSize?: number;
}

/** The folder's tokenizer; a folder without one is an error naming it. */
export function loadTokenizer(dir: string): PreTrainedTokenizer {
  const tok = AutoTokenizer.fromPretrained(dir);
  if (!tok) {
    throw new Error(`${dir}: no tokenizer files (tokenizer.json, tokenizer.model, source.spm + target.spm + vocab.json, vocab.txt or vocab.json + merges.txt); a pipeline needs one`);
  }
  return tok;
}

/** The texts of a call as an array (a string is one text); `single` says whether one string was passed. */
export function checkTexts(fn: string, texts: unknown): { list: string[]; single: boolean } {
  if (typeof texts === 'string') return { list: [texts], single: true };
  if (!Array.isArray(texts) || texts.some((t) => typeof t !== 'string')) {
    const got = Array.isArray(texts) ? `an array holding ${typeof texts.find((t) => typeof t !== 'string')}` : texts === null ? 'null' : typeof texts;
    throw new TypeError(`${fn}: argument 'texts' must be a string or an array of strings, got ${got}`);
  }
  return { list: texts as string[], single: false };
}

export function checkBatchSize(fn: string, v: unknown, dflt: number): number {
  return v === undefined ? dflt : checkInt(fn, 'batchSize', v, 1);
}

/** Rejects option names a call does not know (a misspelt option would otherwise be ignored silently). */
export function checkCallOptions(fn: string, options: unknown, known: readonly string[]): Record<string, unknown> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`${fn}: argument 'options' must be an object, got ${options === null ? 'null' : typeof options}`);
  }
  for (const k of Object.keys(options)) {
    if (!known.includes(k)) throw new TypeError(`${fn}: unknown option '${k}' (known: ${known.join(', ')})`);
  }
  return options as Record<string, unknown>;
}

/** The longest sequence the model's position table allows (RoBERTa's starts after padding_idx + 1). */
export function maxTokens(config: ResolvedBertConfig, tok: PreTrainedTokenizer): number {
  const model = config.family === 'roberta' ? config.maxPositionEmbeddings - config.padTokenId - 1 : config.maxPositionEmbeddings;
  return Math.min(model, tok.modelMaxLength ?? Infinity);
}

/** One batch as the model sees it, with the caller's indices of its rows. */
export interface Batch {
  indices: number[];
  inputIds: Tensor<'int32'>;
  options: EncoderForwardOptions;
  /**
   * How to run the batch's forward (`forwardAsyncWith(run, ...)`): `{ concurrent: true }` when the call has
   * several batches and the pool several threads, so independent batches run side by side, each on one thread
   * (see `RunAsyncOptions.concurrent`), else `{}`.
   */
  run: RunAsyncOptions;
}

/** Options of {@link runBatched}. */
export interface RunBatchedOptions {
  /**
   * At most this many batches run at once (default: all; a generating pipeline bounds it, since each batch in
   * flight holds its KV caches).
   */
  concurrency?: number;
  /**
   * Whether batches may run side by side, each on one thread (default false: `Batch.run` is then `{}`). Only for a
   * `forward` that is one `runAsync` call per batch reading nothing another batch writes (the encoder forwards).
   */
  parallelBatches?: boolean;
}

/**
 * Runs `forward` on the texts in batches of `batchSize` sorted by length and
 * gives `collect` each batch's result as soon as it settles (so a batch's
 * post-processing in JS overlaps the next batches' kernels); `collect` returns
 * one result per row, stored at the row's original index. After a failure no
 * further batch starts.
 *
 * With `parallelBatches` and more than one batch and thread, the batches run
 * side by side (`Batch.run`), longest first: the last ones to finish are then
 * the shortest, so the threads run out of work at nearly the same time. The
 * batches hold the same texts either way.
 */
export async function runBatched<R, T>(
  texts: string[], tok: PreTrainedTokenizer, limit: number, batchSize: number,
  forward: (batch: Batch) => Promise<R>, collect: (batch: Batch, result: R) => T[], options: RunBatchedOptions = {},
): Promise<T[]> {
  const lengths = tok.encodeBatch(texts, { truncation: true, maxLength: limit }).map((ids) => ids.length);
  // Stable: equal lengths keep their order, so results do not depend on the sort's tie-breaking.
  const order = texts.map((_, i) => i).sort((a, b) => lengths[a]! - lengths[b]! || a - b);
  const nb = Math.ceil(order.length / batchSize);
  const parallel = options.parallelBatches === true && nb > 1 && getNumThreads() > 1;
  const run: RunAsyncOptions = parallel ? { concurrent: true } : {};
  const batches: Batch[] = [];
  for (let s = 0; s < order.length; s += batchSize) {
    const indices = order.slice(s, s + batchSize);
    const enc = tok(indices.map((i) => texts[i]!), { padding: true, truncation: true, maxLength: limit });
    batches.push({
      indices, inputIds: enc.inputIds, run,
      options: { attentionMask: enc.attentionMask, ...(enc.tokenTypeIds ? { tokenTypeIds: enc.tokenTypeIds } : {}) },
    });
  }
  if (parallel) batches.reverse();
  const out = new Array<T>(texts.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < batches.length) {
      const b = batches[next++]!;
      try {
        // Inference: grad mode off for every batch (forwardAsync keeps the mode it was called in).
        const result = await noGrad(() => forward(b));
        collect(b, result).forEach((r, j) => (out[b.indices[j]!] = r));
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency ?? Infinity, batches.length) }, worker));
  return out;
}

/** `path.join(dir, rel)` for error messages and reads. */
export const inFolder = (dir: string, ...rel: string[]): string => path.join(dir, ...rel);
