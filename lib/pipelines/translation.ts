/**
 * 'translation': texts → `[{ translationText }]`, one per text, from a
 * sequence-to-sequence folder (MarianMT: the Helsinki-NLP/opus-mt-* models)
 * and its tokenizer, as Hugging Face's translation pipeline does it: each
 * source is tokenized with its end-of-sequence token, the model generates
 * with the folder's generation defaults (opus-mt: beam search, max_length
 * 512, the pad token banned, eos forced at the limit) unless the call
 * overrides them, and each output is decoded without special tokens and
 * without transformers' clean-up of spaces (the pipeline's defaults).
 *
 * Texts run in batches sorted by token length (padded, truncated to the
 * model's positions); two batches are in flight at a time, so the kernels of
 * one run (off the JS thread, `generateAsync`) while JS picks the other's
 * tokens, and memory holds two batches' caches.
 */
import { AutoModelForSeq2SeqLM } from '../models/auto';
import type { MarianMTModel, Seq2SeqGenerationOptions } from '../models/marian';
import type { PreTrainedTokenizer } from '../tokenizers';
import {
  applyPipelineOptions, checkBatchSize, checkCallOptions, checkTexts, loadTokenizer, runBatched, type PipelineOptions,
} from './encoder';

/** Options of one call: generate's (Hugging Face's names in camelCase) plus the pipeline's. */
export interface TranslationOptions {
  /** Texts per generate call (default the pipeline's, 8). */
  batchSize?: number;
  /** Most new tokens (default: the folder's `max_length` − 1, e.g. 511 for opus-mt). */
  maxNewTokens?: number;
  /** Most decoder tokens with the start token (Hugging Face's `max_length`). */
  maxLength?: number;
  /** No end of sequence before this many decoder tokens with the start token (`min_length`). */
  minLength?: number;
  /** Beams (default: the folder's `num_beams`, e.g. 4 or 6 for opus-mt; 1 is greedy). */
  numBeams?: number;
  lengthPenalty?: number;
  earlyStopping?: boolean | 'never';
  noRepeatNgramSize?: number;
  repetitionPenalty?: number;
  badWordsIds?: number[][];
  /** Log-softmax again after the logits processors (default: the folder's `renormalize_logits`). */
  renormalizeLogits?: boolean;
  doSample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  /** Drop special tokens (pad, eos, …) from the text. Default true. */
  skipSpecialTokens?: boolean;
  /** transformers' clean-up of spaces before punctuation. Default false (the pipeline's). */
  cleanUpTokenizationSpaces?: boolean;
}

/** One translation. */
export interface TranslationResult {
  translationText: string;
}

/** The pipeline: one result per text, in the caller's order (a string gives one result). */
export interface TranslationPipeline {
  (texts: string | string[], options?: TranslationOptions): Promise<TranslationResult[]>;
  readonly task: 'translation';
  readonly model: MarianMTModel;
  readonly tokenizer: PreTrainedTokenizer;
}

const GENERATE_OPTIONS = [
  'maxNewTokens', 'maxLength', 'minLength', 'numBeams', 'lengthPenalty', 'earlyStopping', 'noRepeatNgramSize',
  'repetitionPenalty', 'badWordsIds', 'renormalizeLogits', 'doSample', 'temperature', 'topK', 'topP', 'seed',
] as const;

/** Batches in flight at once: one generating on the executor while JS picks the other's tokens. */
const IN_FLIGHT = 2;

/**
 * Loads a translation pipeline from a Hugging Face sequence-to-sequence
 * folder (see AutoModelForSeq2SeqLM) with its tokenizer.
 * @throws Error naming the file and field when the folder does not fit or has no tokenizer.
 */
export async function translationPipeline(dir: string, options: PipelineOptions = {}): Promise<TranslationPipeline> {
  const fn = 'pipeline(translation)';
  const defaultBatch = checkBatchSize(fn, options.batchSize, 8);
  const model = await AutoModelForSeq2SeqLM.fromPretrained(dir);
  if (options.parallelBatches !== undefined) {
    // Its batches are generate loops with several calls each, not one independent forward.
    throw new TypeError(`${fn}: option 'parallelBatches' is for the encoder pipelines (feature-extraction, text-classification, fill-mask)`);
  }
  applyPipelineOptions(fn, model, options);
  const tokenizer = loadTokenizer(dir);
  const limit = Math.min(model.config.maxPositionEmbeddings, tokenizer.modelMaxLength ?? Infinity);

  const run = async (texts: string | string[], callOptions?: TranslationOptions): Promise<TranslationResult[]> => {
    const call = 'translation pipeline';
    const { list } = checkTexts(call, texts);
    const o = checkCallOptions(call, callOptions, ['batchSize', ...GENERATE_OPTIONS, 'skipSpecialTokens', 'cleanUpTokenizationSpaces']) as TranslationOptions;
    const batchSize = checkBatchSize(call, o.batchSize, defaultBatch);
    for (const k of ['skipSpecialTokens', 'cleanUpTokenizationSpaces'] as const) {
      if (o[k] !== undefined && typeof o[k] !== 'boolean') throw new TypeError(`${call}: option '${k}' must be a boolean, got ${typeof o[k]}`);
    }
    const decodeOptions = { skipSpecialTokens: o.skipSpecialTokens ?? true, cleanUpTokenizationSpaces: o.cleanUpTokenizationSpaces ?? false };
    // One translation per text (a folder's num_return_sequences would add rows).
    const gen: Seq2SeqGenerationOptions = { numReturnSequences: 1 };
    for (const k of GENERATE_OPTIONS) if (o[k] !== undefined) (gen as Record<string, unknown>)[k] = o[k];
    return runBatched(list, tokenizer, limit, batchSize,
      (b) => model.generateAsync(b.inputIds, { ...gen, attentionMask: b.options.attentionMask ?? null }),
      (b, out) => {
        const width = out.shape[1]!;
        return b.indices.map((_, r) => ({
          translationText: tokenizer.decode(out.data.subarray(r * width, (r + 1) * width), decodeOptions),
        }));
      }, { concurrency: IN_FLIGHT });
  };
  return Object.assign(run, { task: 'translation' as const, model, tokenizer });
}
