/**
 * 'feature-extraction': texts → one float32 vector per text ([B, D]), pooled
 * over the tokens ('mean' over non-padding tokens or the first token 'cls'),
 * optionally L2-normalized; 'none' returns every token's vector ([B, L, D],
 * zeros past a text's length). A sentence-transformers folder sets the
 * defaults: `modules.json` names the Pooling module, whose `config.json`
 * picks the pooling, and a Normalize module turns normalization on.
 */
import { readFile } from 'node:fs/promises';
import { AutoModel } from '../models/auto';
import type { EncoderModel } from '../models/bert';
import type { PreTrainedTokenizer } from '../tokenizers';
import { Tensor } from '../tensor';
import {
  applyPipelineOptions, checkBatchSize, checkCallOptions, checkTexts, inFolder, loadTokenizer, maxTokens, runBatched, type EncoderCallOptions, type PipelineOptions,
} from './encoder';

export type Pooling = 'mean' | 'cls' | 'none';

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
  readonly defaults: { pooling: Pooling; normalize: boolean };
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

/** sentence-transformers' pooling and normalization from modules.json and the Pooling module's config.json. */
export async function sentenceTransformersDefaults(dir: string): Promise<{ pooling: Pooling; normalize: boolean } | null> {
  const file = inFolder(dir, 'modules.json');
  const modules = await readJsonIfPresent(file);
  if (modules === undefined) return null;
  if (!Array.isArray(modules)) throw new Error(`${file}: must be an array of modules`);
  let pooling: Pooling = 'mean';
  let normalize = false;
  for (const [i, m] of (modules as Record<string, unknown>[]).entries()) {
    const type = m?.['type'];
    if (typeof type !== 'string') throw new Error(`${file}: field '[${i}].type' must be a string`);
    if (type.endsWith('.Normalize')) normalize = true;
    if (!type.endsWith('.Pooling')) continue;
    const rel = m['path'];
    if (typeof rel !== 'string' || rel.includes('..')) throw new Error(`${file}: field '[${i}].path' must be a folder name, got ${JSON.stringify(rel)}`);
    const pfile = inFolder(dir, rel, 'config.json');
    const cfg = await readJsonIfPresent(pfile);
    if (cfg === undefined || cfg === null || typeof cfg !== 'object') throw new Error(`${pfile}: not found or not an object (modules.json names a Pooling module there)`);
    const c = cfg as Record<string, unknown>;
    const modes = Object.keys(c).filter((k) => k.startsWith('pooling_mode_') && c[k] === true);
    if (modes.length !== 1 || (modes[0] !== 'pooling_mode_mean_tokens' && modes[0] !== 'pooling_mode_cls_token')) {
      throw new Error(`${pfile}: fields 'pooling_mode_*' must select exactly one of pooling_mode_mean_tokens, pooling_mode_cls_token (got ${modes.join(', ') || 'none'})`);
    }
    pooling = modes[0] === 'pooling_mode_cls_token' ? 'cls' : 'mean';
  }
  return { pooling, normalize };
}

export async function featureExtraction(dir: string, options: PipelineOptions = {}): Promise<FeatureExtractionPipeline> {
  const fn = 'pipeline(feature-extraction)';
  const defaultBatch = checkBatchSize(fn, options.batchSize, 32);
  const model = await AutoModel.fromPretrained(dir);
  applyPipelineOptions('pipeline(feature-extraction)', model, options);
  const tokenizer = loadTokenizer(dir);
  const defaults = (await sentenceTransformersDefaults(dir)) ?? { pooling: 'mean' as Pooling, normalize: false };
  const limit = maxTokens(model.config, tokenizer);
  const d = model.config.hiddenSize;

  const run = async (texts: string | string[], callOptions?: FeatureExtractionOptions): Promise<Tensor<'float32'>> => {
    const call = 'feature-extraction pipeline';
    const { list } = checkTexts(call, texts);
    const o = checkCallOptions(call, callOptions, ['pooling', 'normalize', 'batchSize']) as FeatureExtractionOptions;
    const pooling = o.pooling ?? defaults.pooling;
    if (pooling !== 'mean' && pooling !== 'cls' && pooling !== 'none') {
      throw new TypeError(`${call}: option 'pooling' must be 'mean', 'cls' or 'none', got ${JSON.stringify(pooling)}`);
    }
    const normalize = o.normalize ?? defaults.normalize;
    if (typeof normalize !== 'boolean') throw new TypeError(`${call}: option 'normalize' must be a boolean, got ${typeof normalize}`);
    const batchSize = checkBatchSize(call, o.batchSize, defaultBatch);
    const rows = await runBatched(list, tokenizer, limit, batchSize,
      (b) => model.forwardAsync(b.inputIds, b.options),
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
      });
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
 * One text's vector from its token vectors (`len` rows of `d` floats from `base` in `data`): the mean over the
 * tokens or the first token, L2-normalized when asked (sentence-transformers' Pooling and Normalize modules).
 */
export function poolTokens(data: Float32Array, base: number, len: number, d: number, pooling: 'mean' | 'cls', normalize: boolean): Float32Array {
  const acc = new Float64Array(d);
  const count = pooling === 'cls' ? 1 : len;
  for (let i = 0; i < count; i++) for (let j = 0; j < d; j++) acc[j]! += data[base + i * d + j]!;
  const v = Float32Array.from(acc, (x) => x / count);
  if (normalize) l2(v);
  return v;
}

/** In place: v / max(‖v‖, 1e-12), as torch.nn.functional.normalize. */
export function l2(v: Float32Array): void {
  let s = 0;
  for (const x of v) s += x * x;
  const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
  for (let i = 0; i < v.length; i++) v[i]! *= inv;
}
