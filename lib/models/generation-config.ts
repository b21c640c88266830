/**
 * A model folder's generation defaults, as transformers reads them:
 * `generation_config.json` when the folder has one, else the generation
 * fields of `config.json` (`GenerationConfig.from_model_config`). Only the
 * fields the folder sets are returned, camelCased; every value is checked, so
 * a malformed file is an Error naming the file and the field.
 */
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { GenerationDefaults } from './generation';

/** The generation fields of a folder (Hugging Face's names in camelCase), each present only when the folder sets it. */
export interface FolderGenerationConfig {
  /** Total length limit: the prompt plus new tokens (decoder-only) or the decoder sequence with its start token (encoder-decoder). */
  maxLength?: number;
  maxNewTokens?: number;
  minLength?: number;
  minNewTokens?: number;
  numBeams?: number;
  numReturnSequences?: number;
  doSample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  lengthPenalty?: number;
  earlyStopping?: boolean | 'never';
  noRepeatNgramSize?: number;
  badWordsIds?: number[][];
  forcedEosTokenId?: number | number[] | null;
  eosTokenId?: number | number[] | null;
  padTokenId?: number | null;
  bosTokenId?: number | null;
  decoderStartTokenId?: number | null;
  /** Log-softmax the scores again after the logits processors (transformers' `renormalize_logits`). */
  renormalizeLogits?: boolean;
}

type Json = Record<string, unknown>;

const isId = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0;

/** One field's check: the value when valid, else undefined (the caller names the field). */
const FIELDS: Record<string, [keyof FolderGenerationConfig, (v: unknown) => boolean, string]> = {
  max_length: ['maxLength', (v) => isId(v) && v >= 1, 'an integer >= 1'],
  max_new_tokens: ['maxNewTokens', isId, 'an integer >= 0'],
  min_length: ['minLength', isId, 'an integer >= 0'],
  min_new_tokens: ['minNewTokens', isId, 'an integer >= 0'],
  num_beams: ['numBeams', (v) => isId(v) && v >= 1, 'an integer >= 1'],
  num_return_sequences: ['numReturnSequences', (v) => isId(v) && v >= 1, 'an integer >= 1'],
  do_sample: ['doSample', (v) => typeof v === 'boolean', 'a boolean'],
  temperature: ['temperature', (v) => typeof v === 'number' && v > 0, 'a number > 0'],
  top_k: ['topK', isId, 'an integer >= 0'],
  top_p: ['topP', (v) => typeof v === 'number' && v > 0 && v <= 1, 'a number in (0, 1]'],
  repetition_penalty: ['repetitionPenalty', (v) => typeof v === 'number' && v > 0, 'a number > 0'],
  length_penalty: ['lengthPenalty', (v) => typeof v === 'number' && Number.isFinite(v), 'a finite number'],
  early_stopping: ['earlyStopping', (v) => typeof v === 'boolean' || v === 'never', "true, false or 'never'"],
  no_repeat_ngram_size: ['noRepeatNgramSize', isId, 'an integer >= 0'],
  bad_words_ids: ['badWordsIds', (v) => Array.isArray(v) && v.every((s) => Array.isArray(s) && s.length > 0 && s.every(isId)), 'a list of non-empty lists of token ids'],
  forced_eos_token_id: ['forcedEosTokenId', (v) => v === null || isId(v) || (Array.isArray(v) && v.every(isId)), 'a token id, a list of them or null'],
  eos_token_id: ['eosTokenId', (v) => v === null || isId(v) || (Array.isArray(v) && v.every(isId)), 'a token id, a list of them or null'],
  pad_token_id: ['padTokenId', (v) => v === null || isId(v), 'a token id or null'],
  bos_token_id: ['bosTokenId', (v) => v === null || isId(v), 'a token id or null'],
  decoder_start_token_id: ['decoderStartTokenId', (v) => v === null || isId(v), 'a token id or null'],
  renormalize_logits: ['renormalizeLogits', (v) => typeof v === 'boolean', 'a boolean'],
};

/**
 * Generation fields transformers reads that `generate` does not compute, each with the value that leaves
 * transformers' output unchanged (its default): a folder that sets another value would generate differently here,
 * so it is refused. A list value (suppress_tokens, sequence_bias, …) is never neutral.
 */
const UNSUPPORTED: Record<string, unknown> = {
  typical_p: 1, epsilon_cutoff: 0, eta_cutoff: 0, min_p: null, top_a: null, diversity_penalty: 0, num_beam_groups: 1,
  penalty_alpha: null, encoder_repetition_penalty: 1, encoder_no_repeat_ngram_size: 0, exponential_decay_length_penalty: null,
  suppress_tokens: null, begin_suppress_tokens: null, forced_bos_token_id: null, forced_decoder_ids: null, sequence_bias: null,
  guidance_scale: null, force_words_ids: null, constraints: null, watermarking_config: null, dola_layers: null,
  prompt_lookup_num_tokens: null,
};

/** Fields whose null is a value of its own (no such token) rather than "unset". */
const NULLABLE = new Set(['forced_eos_token_id', 'eos_token_id', 'pad_token_id', 'bos_token_id', 'decoder_start_token_id']);

/** The generation fields of one parsed file (`file` names it in errors). */
export function generationConfigFromJson(json: Json, file: string): FolderGenerationConfig {
  for (const [key, neutral] of Object.entries(UNSUPPORTED)) {
    const v = json[key];
    // guidance_scale 1 is also "no guidance" in transformers.
    if (v === undefined || v === null || v === neutral || (key === 'guidance_scale' && v === 1)) continue;
    throw new Error(`${file}: field '${key}' ${JSON.stringify(v)} is not supported (generate does not compute it; only ${JSON.stringify(neutral)} or absent)`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, [name, ok, what]] of Object.entries(FIELDS)) {
    const v = json[key];
    // null is transformers' None: unset (the default applies), as the full generation fields older config.json files
    // carry (`bad_words_ids: null`, `max_new_tokens: null`, …); for the token ids it is kept (an explicit "none").
    if (v === undefined || (v === null && !NULLABLE.has(key))) continue;
    if (!ok(v)) throw new Error(`${file}: field '${key}' must be ${what}, got ${JSON.stringify(v)}`);
    out[name] = v;
  }
  return out as FolderGenerationConfig;
}

/**
 * The generation defaults of the folder `dir`: `generation_config.json`
 * when present (alone, as transformers does), else `config.json`'s fields;
 * `{}` when neither file exists.
 */
export async function loadGenerationConfig(dir: string): Promise<FolderGenerationConfig> {
  for (const name of ['generation_config.json', 'config.json']) {
    const file = path.join(dir, name);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new Error(`${file}: cannot be read (${(err as Error).message})`, { cause: err });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new Error(`${file}: is not valid JSON (${(err as Error).message})`, { cause: err });
    }
    if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new Error(`${file}: the top level must be a JSON object`);
    return generationConfigFromJson(json as Json, file);
  }
  return {};
}

/**
 * What `generate` takes as a model's defaults (its `generationConfig`) from
 * a folder's generation config, as transformers' `generate` applies it:
 * `maxNewTokens` from `max_new_tokens`, else `max_length` (default 20) minus
 * the `prefixLength` the output starts with (1: an encoder-decoder's start
 * token), at most what the model's `maxPositions` allow; `minNewTokens` from
 * `min_new_tokens`, else `min_length` minus the prefix; `topK` 50 unless set
 * (transformers' default, used when sampling); `eosTokenId` and `padTokenId`
 * from the model's config when the generation config has none.
 */
export function generationDefaultsFrom(
  g: FolderGenerationConfig, model: { eosTokenId: number | number[] | null; padTokenId: number | null; maxPositions: number; prefixLength: number },
): GenerationDefaults {
  const room = Math.max(0, model.maxPositions - model.prefixLength);
  const maxNew = g.maxNewTokens ?? Math.max(0, (g.maxLength ?? 20) - model.prefixLength);
  const minNew = g.minNewTokens ?? (g.minLength !== undefined ? Math.max(0, g.minLength - model.prefixLength) : undefined);
  const eos = g.eosTokenId !== undefined ? g.eosTokenId : model.eosTokenId;
  const pad = g.padTokenId ?? model.padTokenId;
  const out: GenerationDefaults = {
    maxNewTokens: Math.min(maxNew, room),
    topK: g.topK ?? 50,
    eosTokenId: eos,
    ...(pad !== null ? { padTokenId: pad } : {}),
    ...(minNew !== undefined ? { minNewTokens: minNew } : {}),
  };
  const copy = ['numBeams', 'numReturnSequences', 'doSample', 'temperature', 'topP', 'repetitionPenalty', 'lengthPenalty',
    'earlyStopping', 'noRepeatNgramSize', 'badWordsIds', 'forcedEosTokenId', 'renormalizeLogits'] as const;
  for (const k of copy) if (g[k] !== undefined) (out as Record<string, unknown>)[k] = g[k];
  return out;
}

/**
 * A decoder-only model's generation defaults from its folder's generation config, as transformers' `generate`
 * applies them: `eosTokenId` (a list stops at any of them) and `padTokenId`, the sampling and beam fields
 * (`doSample`, `temperature`, `topK` — 50 unless set, transformers' default —, `topP`, `repetitionPenalty`,
 * `numBeams`, …) and the logits processors (`badWordsIds`, `noRepeatNgramSize`, `forcedEosTokenId`, …);
 * `maxNewTokens` from `max_new_tokens` only (`max_length` and `min_length` count the prompt, whose length a default
 * cannot know: pass `maxNewTokens` / `minNewTokens`). Options given to `generate` win.
 */
export function causalGenerationDefaults(g: FolderGenerationConfig, file = 'generation_config.json'): GenerationDefaults {
  if (g.minLength !== undefined && g.minLength > 0 && g.minNewTokens === undefined) {
    // transformers counts the prompt in min_length, which a default for every prompt cannot express.
    throw new Error(`${file}: field 'min_length' ${g.minLength} is not supported for decoder-only models (it counts the prompt): set min_new_tokens, or pass minNewTokens to generate`);
  }
  const out: GenerationDefaults = { topK: g.topK ?? 50 };
  if (g.maxNewTokens !== undefined) out.maxNewTokens = g.maxNewTokens;
  if (g.minNewTokens !== undefined) out.minNewTokens = g.minNewTokens;
  if (g.eosTokenId !== undefined) out.eosTokenId = g.eosTokenId;
  if (g.padTokenId !== undefined && g.padTokenId !== null) out.padTokenId = g.padTokenId;
  const copy = ['numBeams', 'numReturnSequences', 'doSample', 'temperature', 'topP', 'repetitionPenalty', 'lengthPenalty',
    'earlyStopping', 'noRepeatNgramSize', 'badWordsIds', 'forcedEosTokenId', 'renormalizeLogits'] as const;
  for (const k of copy) if (g[k] !== undefined) (out as Record<string, unknown>)[k] = g[k];
  return out;
}
