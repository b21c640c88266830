/**
 * 'text-classification': texts → the most likely label of each with its
 * score, as transformers' pipeline computes it from the config's
 * `problem_type`: softmax over the logits (single-label, or unset with several
 * labels), a sigmoid per label (`multi_label_classification`, or a
 * single-logit head), the logits themselves (`regression`); labels from the
 * config's `id2label`.
 */
import { AutoModelForSequenceClassification } from '../models/auto';
import type { EncoderHeadModel } from '../models/bert';
import type { PreTrainedTokenizer } from '../tokenizers';
import { checkInt } from '../errors';
import {
  applyPipelineOptions, checkBatchSize, checkCallOptions, checkTexts, loadTokenizer, maxTokens, runBatched, type EncoderCallOptions, type PipelineOptions,
} from './encoder';

export interface TextClassificationResult {
  label: string;
  score: number;
}

export interface TextClassificationOptions extends EncoderCallOptions {
  /** Return the best `topK` labels of each text (an array per text) instead of the best one. */
  topK?: number;
}

export interface TextClassificationPipeline {
  /** One `{ label, score }` per text (with `topK`: an array per text, best first). */
  (texts: string | string[], options?: TextClassificationOptions): Promise<TextClassificationResult[] | TextClassificationResult[][]>;
  readonly task: 'text-classification';
  readonly model: EncoderHeadModel;
  readonly tokenizer: PreTrainedTokenizer;
}

export async function textClassification(dir: string, options: PipelineOptions = {}): Promise<TextClassificationPipeline> {
  const defaultBatch = checkBatchSize('pipeline(text-classification)', options.batchSize, 32);
  const model = await AutoModelForSequenceClassification.fromPretrained(dir);
  applyPipelineOptions('pipeline(text-classification)', model, options);
  const tokenizer = loadTokenizer(dir);
  const limit = maxTokens(model.config, tokenizer);
  const labels = model.config.id2label;

  const run = async (texts: string | string[], callOptions?: TextClassificationOptions): Promise<TextClassificationResult[] | TextClassificationResult[][]> => {
    const call = 'text-classification pipeline';
    const { list } = checkTexts(call, texts);
    const o = checkCallOptions(call, callOptions, ['batchSize', 'topK']) as TextClassificationOptions;
    const batchSize = checkBatchSize(call, o.batchSize, defaultBatch);
    const topK = o.topK === undefined ? null : checkInt(call, 'topK', o.topK, 1);
    const ranked = await runBatched(list, tokenizer, limit, batchSize,
      (b) => model.forwardAsyncWith(b.run, b.inputIds, b.options),
      (b, out) => {
        const logits = out.logits.contiguous().data;
        const k = labels.length;
        return b.indices.map((_, r) => {
          const row = Array.from(logits.subarray(r * k, (r + 1) * k));
          let probs: number[];
          const problem = model.config.problemType;
          if (problem === 'regression') {
            probs = row;
          } else if (problem === 'multi_label_classification' || k === 1) {
            probs = row.map((x) => 1 / (1 + Math.exp(-x)));
          } else {
            const m = Math.max(...row);
            const e = row.map((x) => Math.exp(x - m));
            const s = e.reduce((a, x) => a + x, 0);
            probs = e.map((x) => x / s);
          }
          return probs.map((score, i) => ({ label: labels[i]!, score })).sort((a, c) => c.score - a.score);
        });
      }, { parallelBatches: options.parallelBatches ?? true });
    return topK === null ? ranked.map((r) => r[0]!) : ranked.map((r) => r.slice(0, topK));
  };
  return Object.assign(run, { task: 'text-classification' as const, model, tokenizer });
}
