/**
 * 'fill-mask': texts with one mask token each (`[MASK]`, `<mask>`: the
 * tokenizer's) → the `topK` most likely tokens at the mask, each with its
 * probability, id, string and the text with the mask filled in.
 */
import { AutoModelForMaskedLM } from '../models/auto';
import type { EncoderHeadModel } from '../models/bert';
import type { PreTrainedTokenizer } from '../tokenizers';
import { checkInt } from '../errors';
import {
  applyPipelineOptions, checkBatchSize, checkCallOptions, checkTexts, loadTokenizer, maxTokens, runBatched, type EncoderCallOptions, type PipelineOptions,
} from './encoder';

export interface FillMaskResult {
  score: number;
  /** The token's id. */
  token: number;
  tokenStr: string;
  /** The text with the mask replaced by the token (special tokens dropped). */
  sequence: string;
}

export interface FillMaskOptions extends EncoderCallOptions {
  /** Candidates per text (default 5). */
  topK?: number;
}

export interface FillMaskPipeline {
  /** A string gives its candidates; an array gives an array of candidates per text. Best first. */
  (texts: string | string[], options?: FillMaskOptions): Promise<FillMaskResult[] | FillMaskResult[][]>;
  readonly task: 'fill-mask';
  readonly model: EncoderHeadModel;
  readonly tokenizer: PreTrainedTokenizer;
  readonly maskToken: string;
}

export async function fillMask(dir: string, options: PipelineOptions = {}): Promise<FillMaskPipeline> {
  const defaultBatch = checkBatchSize('pipeline(fill-mask)', options.batchSize, 32);
  const model = await AutoModelForMaskedLM.fromPretrained(dir);
  applyPipelineOptions('pipeline(fill-mask)', model, options);
  const tokenizer = loadTokenizer(dir);
  const maskId = tokenizer.allSpecialIds.find((id) => /^(\[MASK\]|<mask>)$/i.test(tokenizer.idToToken(id) ?? ''));
  if (maskId === undefined) throw new Error(`${tokenizer.source}: the tokenizer has no mask token ([MASK] or <mask>) among its special tokens`);
  const maskToken = tokenizer.idToToken(maskId)!;
  const limit = maxTokens(model.config, tokenizer);
  const vocab = model.config.vocabSize;

  const run = async (texts: string | string[], callOptions?: FillMaskOptions): Promise<FillMaskResult[] | FillMaskResult[][]> => {
    const call = 'fill-mask pipeline';
    const { list, single } = checkTexts(call, texts);
    const o = checkCallOptions(call, callOptions, ['batchSize', 'topK']) as FillMaskOptions;
    const batchSize = checkBatchSize(call, o.batchSize, defaultBatch);
    const topK = o.topK === undefined ? 5 : checkInt(call, 'topK', o.topK, 1);
    list.forEach((t, i) => {
      const n = tokenizer.encode(t, { truncation: true, maxLength: limit }).filter((id) => id === maskId).length;
      if (n !== 1) throw new RangeError(`${call}: argument 'texts'[${i}] must hold exactly one ${maskToken} token, got ${n}`);
    });
    const out = await runBatched(list, tokenizer, limit, batchSize,
      (b) => model.forwardAsyncWith(b.run, b.inputIds, b.options),
      (b, res) => {
        const logits = res.logits.contiguous().data;
        const ids = b.inputIds.contiguous().data;
        const t = b.inputIds.shape[1]!;
        return b.indices.map((_, r) => {
          const row = ids.subarray(r * t, (r + 1) * t);
          const pos = row.indexOf(maskId);
          const l = logits.subarray((r * t + pos) * vocab, (r * t + pos + 1) * vocab);
          let m = -Infinity;
          for (const x of l) m = Math.max(m, x);
          let s = 0;
          for (const x of l) s += Math.exp(x - m);
          const order = Array.from({ length: vocab }, (_, i) => i).sort((a, c) => l[c]! - l[a]! || a - c).slice(0, Math.min(topK, vocab));
          const kept = Array.from(row).filter((_, j) => b.options.attentionMask!.data[r * t + j]);
          const at = kept.indexOf(maskId);
          return order.map((id) => {
            const filled = kept.slice();
            filled[at] = id;
            return { score: Math.exp(l[id]! - m) / s, token: id, tokenStr: tokenizer.idToToken(id) ?? '', sequence: tokenizer.decode(filled, { skipSpecialTokens: true }) };
          });
        });
      }, { parallelBatches: options.parallelBatches ?? true });
    return single ? out[0]! : out;
  };
  return Object.assign(run, { task: 'fill-mask' as const, model, tokenizer, maskToken });
}
