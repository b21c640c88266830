/**
 * 'feature-extraction': texts → one float32 vector per text ([B, D]), pooled
 * over the tokens ('mean' over non-padding tokens, the first token 'cls',
 * 'max' per feature, 'mean_sqrt_len' the sum over √tokens, 'lasttoken'),
 * optionally L2-normalized; 'none' returns every token's vector ([B, L, D],
 * zeros past a text's length). A sentence-transformers folder sets the
 * defaults: `modules.json` names the Pooling module, whose `config.json`
 * picks the pooling, a Normalize module turns normalization on, and
 * `sentence_bert_config.json`'s `max_seq_length` / `do_lower_case` set the
 * truncation length and lower-casing. Modules attnode does not compute
 * (Dense, LayerNorm, …) and unknown pooling modes are errors naming the file.
 */
import { readFile } from 'node:fs/promises';
import { AutoModel } from '../models/auto';
import type { EncoderModel } from '../models/bert';
import type { PreTrainedTokenizer } from '../tokenizers';
import { Tensor } from '../tensor';
import {
  applyPipelineOptions, checkBatchSize, checkCallOptions, checkTexts, inFolder, loadTokenizer, maxTokens, runBatched, type EncoderCallOptions, type PipelineOptions,
} from './encoder';

/** A pooling over a text's tokens (sentence-transformers' Pooling modes). */
export type SentencePooling = 'mean' | 'cls' | 'max' | 'mean_sqrt_len' | 'lasttoken';
export type Pooling = SentencePooling | 'none';

const POOLINGS: readonly Pooling[] = ['mean', 'cls', 'max', 'mean_sqrt_len', 'lasttoken', 'none'];

/** sentence-transformers' Pooling config fields → the pooling computed. */
const POOLING_MODES: Record<string, SentencePooling> = {
  pooling_mode_cls_token: 'cls', pooling_mode_mean_tokens: 'mean', pooling_mode_max_tokens: 'max',
  pooling_mode_mean_sqrt_len_tokens: 'mean_sqrt_len', pooling_mode_lasttoken: 'lasttoken',
};

/** What a sentence-transformers folder sets. */
export interface SentenceTransformersConfig {
  pooling: SentencePooling;
  normalize: boolean;
  /** sentence_bert_config.json's `max_seq_length`: texts are truncated to this many tokens (specials included). */
  maxSeqLength?: number;
  /** sentence_bert_config.json's `do_lower_case`: texts are lower-cased before tokenizing. */
  doLowerCase?: boolean;
}

export interface FeatureExtractionOptions extends EncoderCallOptions {
  /** Default: the sentence-transformers Pooling config, else 'mean'. */
  pooling?: Pooling;
  /** L2-normalize each vector. Default: true when modules.json has a Normalize module, else false. */
  normalize?: boolean;
}

export interface FeatureExtractionPipeline {
  (texts: string | string[], options?: FeatureExtractionOptions): Promise<Tensor<'float32'>>;
  readonly task: 'feature-extraction';
  readonly model: EncoderModel;
  readonly tokenizer: PreTrainedTokenizer;
  /** The defaults the folder set (sentence-transformers) or 'mean' / false. */
  readonly defaults: { pooling: Pooling; normalize: boolean; maxSeqLength?: number; doLowerCase?: boolean };
}

async function readJsonIfPresent(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`${file}: cannot be read (${(err as Error).message})`, { cause: err });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new Error(`${file}: is not valid JSON (${(err as Error).message})`, { cause: err });
  }
}

/**
 * sentence-transformers' pooling, normalization, truncation and lower-casing from modules.json, the Pooling module's
 * config.json and sentence_bert_config.json; null for a folder without modules.json. Modules other than Transformer,
 * Pooling and Normalize, and Pooling configs attnode does not compute (weighted mean, several modes concatenated),
 * are an Error naming the file and the field.
 */
export async function sentenceTransformersDefaults(dir: string, hiddenSize?: number): Promise<SentenceTransformersConfig | null> {
  const file = inFolder(dir, 'modules.json');
  const modules = await readJsonIfPresent(file);
  if (modules === undefined) return null;
  if (!Array.isArray(modules)) throw new Error(`${file}: must be an array of modules`);
  let pooling: SentencePooling = 'mean';
  let normalize = false;
  for (const [i, m] of (modules as Record<string, unknown>[]).entries()) {
    const type = m?.['type'];
    if (typeof type !== 'string') throw new Error(`${file}: field '[${i}].type' must be a string`);
    if (type.endsWith('.Normalize')) {
      normalize = true;
      continue;
    }
    if (type.endsWith('.Transformer')) continue;
    if (!type.endsWith('.Pooling')) {
      throw new Error(`${file}: field '[${i}].type' ${JSON.stringify(type)} is not supported (attnode computes the Transformer, Pooling and Normalize modules; this one would change the embeddings)`);
    }
    const rel = m['path'];
    if (typeof rel !== 'string' || rel.includes('..')) throw new Error(`${file}: field '[${i}].path' must be a folder name, got ${JSON.stringify(rel)}`);
    const pfile = inFolder(dir, rel, 'config.json');
    const cfg = await readJsonIfPresent(pfile);
    if (cfg === undefined || cfg === null || typeof cfg !== 'object') throw new Error(`${pfile}: not found or not an object (modules.json names a Pooling module there)`);
    const c = cfg as Record<string, unknown>;
    const modes = Object.keys(c).filter((k) => k.startsWith('pooling_mode_') && c[k] === true);
    const known = Object.keys(POOLING_MODES);
    if (modes.length !== 1 || !known.includes(modes[0]!)) {
      throw new Error(`${pfile}: fields 'pooling_mode_*' must select exactly one of ${known.join(', ')} (got ${modes.join(', ') || 'none'})`);
    }
    const dim = c['word_embedding_dimension'];
    if (hiddenSize !== undefined && dim !== undefined && dim !== hiddenSize) {
      throw new Error(`${pfile}: field 'word_embedding_dimension' is ${JSON.stringify(dim)} but the model's hidden size is ${hiddenSize}`);
    }
    pooling = POOLING_MODES[modes[0]!]!;
  }
  const out: SentenceTransformersConfig = { pooling, normalize };
  const sfile = inFolder(dir, 'sentence_bert_config.json');
  const sb = await readJsonIfPresent(sfile);
  if (sb !== undefined) {
    if (sb === null || typeof sb !== 'object' || Array.isArray(sb)) throw new Error(`${sfile}: must be a JSON object`);
    const s = sb as Record<string, unknown>;
    const max = s['max_seq_length'];
    if (max !== undefined && max !== null) {
      if (typeof max !== 'number' || !Number.isInteger(max) || max < 1) throw new Error(`${sfile}: field 'max_seq_length' must be an integer >= 1, got ${JSON.stringify(max)}`);
      out.maxSeqLength = max;
    }
    const lower = s['do_lower_case'];
    if (lower !== undefined && lower !== null) {
      if (typeof lower !== 'boolean') throw new Error(`${sfile}: field 'do_lower_case' must be a boolean, got ${JSON.stringify(lower)}`);
      out.doLowerCase = lower;
    }
  }
  return out;
}

export async function featureExtraction(dir: string, options: PipelineOptions = {}): Promise<FeatureExtractionPipeline> {
  const fn = 'pipeline(feature-extraction)';
  const defaultBatch = checkBatchSize(fn, options.batchSize, 32);
  const model = await AutoModel.fromPretrained(dir);
  applyPipelineOptions('pipeline(feature-extraction)', model, options);
  const tokenizer = loadTokenizer(dir);
  const defaults: FeatureExtractionPipeline['defaults'] = (await sentenceTransformersDefaults(dir, model.config.hiddenSize)) ?? { pooling: 'mean', normalize: false };
  const limit = Math.min(maxTokens(model.config, tokenizer), defaults.maxSeqLength ?? Infinity);
  const d = model.config.hiddenSize;

  const run = async (texts: string | string[], callOptions?: FeatureExtractionOptions): Promise<Tensor<'float32'>> => {
    const call = 'feature-extraction pipeline';
    const checked = checkTexts(call, texts).list;
    // sentence-transformers' Transformer module lower-cases the texts itself when do_lower_case is set.
    const list = defaults.doLowerCase ? checked.map((t) => t.toLowerCase()) : checked;
    const o = checkCallOptions(call, callOptions, ['pooling', 'normalize', 'batchSize']) as FeatureExtractionOptions;
    const pooling = o.pooling ?? defaults.pooling;
    if (!POOLINGS.includes(pooling)) {
      throw new TypeError(`${call}: option 'pooling' must be ${POOLINGS.map((p) => `'${p}'`).join(', ')}, got ${JSON.stringify(pooling)}`);
    }
    const normalize = o.normalize ?? defaults.normalize;
    if (typeof normalize !== 'boolean') throw new TypeError(`${call}: option 'normalize' must be a boolean, got ${typeof normalize}`);
    const batchSize = checkBatchSize(call, o.batchSize, defaultBatch);
    const rows = await runBatched(list, tokenizer, limit, batchSize,
      (b) => model.forwardAsyncWith(b.run, b.inputIds, b.options),
      (b, out) => {
        const h = out.lastHiddenState.contiguous();
        const [n, t] = h.shape as [number, number];
        const mask = b.options.attentionMask!.contiguous().data;
        const res: Float32Array[] = [];
        for (let r = 0; r < n; r++) {
          const len = mask.subarray(r * t, (r + 1) * t).reduce((a, m) => a + (m ? 1 : 0), 0);
          // Right padding: the tokens are the first `len` positions; left padding: the last.
          const start = tokenizer.paddingSide === 'left' ? t - len : 0;
          const base = (r * t + start) * d;
          if (pooling === 'none') {
            const v = h.data.slice(base, base + len * d);
            if (normalize) for (let i = 0; i < len; i++) l2(v.subarray(i * d, (i + 1) * d));
            res.push(v);
            continue;
          }
          res.push(poolTokens(h.data, base, len, d, pooling, normalize));
        }
        return res;
      }, { parallelBatches: options.parallelBatches ?? true });
    if (pooling !== 'none') {
      const data = new Float32Array(list.length * d);
      rows.forEach((v, i) => data.set(v, i * d));
      return new Tensor(data, [list.length, d], 'float32');
    }
    const lmax = Math.max(0, ...rows.map((v) => v.length / d));
    const data = new Float32Array(list.length * lmax * d);
    rows.forEach((v, i) => data.set(v, i * lmax * d));
    return new Tensor(data, [list.length, lmax, d], 'float32');
  };
  return Object.assign(run, { task: 'feature-extraction' as const, model, tokenizer, defaults });
}

/**
 * One text's vector from its token vectors (`len` rows of `d` floats from `base` in `data`), as
 * sentence-transformers' Pooling module computes it: the mean over the tokens, the first token ('cls'), the
 * per-feature maximum ('max'), the sum over √len ('mean_sqrt_len') or the last token ('lasttoken');
 * L2-normalized when asked (the Normalize module).
 */
export function poolTokens(data: Float32Array, base: number, len: number, d: number, pooling: SentencePooling, normalize: boolean): Float32Array {
  let v: Float32Array;
  if (pooling === 'cls' || pooling === 'lasttoken') {
    const at = base + (pooling === 'cls' ? 0 : Math.max(0, len - 1)) * d;
    v = data.slice(at, at + d);
  } else if (pooling === 'max') {
    v = new Float32Array(d).fill(-Infinity);
    for (let i = 0; i < len; i++) for (let j = 0; j < d; j++) v[j] = Math.max(v[j]!, data[base + i * d + j]!);
  } else {
    // Plain indexed loops (no iterators or callbacks): this runs on the JS thread for every row of every batch.
    const acc = new Float64Array(d);
    for (let i = 0, o = base; i < len; i++, o += d) for (let j = 0; j < d; j++) acc[j]! += data[o + j]!;
    const div = pooling === 'mean' ? len : Math.sqrt(len);
    v = new Float32Array(d);
    for (let j = 0; j < d; j++) v[j] = acc[j]! / div;
  }
  if (normalize) l2(v);
  return v;
}

/** In place: v / max(‖v‖, 1e-12), as torch.nn.functional.normalize. */
export function l2(v: Float32Array): void {
  let s = 0;
  for (let j = 0; j < v.length; j++) s += v[j]! * v[j]!;
  const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
  for (let i = 0; i < v.length; i++) v[i]! *= inv;
}
