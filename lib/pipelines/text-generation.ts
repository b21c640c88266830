/**
 * Hugging Face's text-generation pipeline: a model folder (any causal LM
 * AutoModelForCausalLM loads, with its tokenizer) → a callable
 * `p(prompt | prompts, options)` resolving to `[{ generatedText }]`, and
 * `p.stream(prompt, options)`, an async iterable of text pieces as tokens
 * arrive. Generation runs through `generateAsync` (each step's kernels off
 * the JS thread).
 *
 * Text is decoded as transformers' pipeline does: the new text is the decode
 * of prompt + new ids minus the decode of the prompt, so decoders that treat
 * a sequence's first token specially (SentencePiece's leading space) still
 * join prompt and continuation correctly.
 */
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { AutoModelForCausalLM } from '../models/auto';
import type { CausalModel, GenerationOptions } from '../models/generation';
import { generationConfigFromJson, type FolderGenerationConfig } from '../models/generation-config';
import { generateAsync } from '../models/generation';
import { AutoTokenizer, type PreTrainedTokenizer } from '../tokenizers';
import { Module, type BackendChoice } from '../nn/module';
import type { WeightPrecision } from '../backend/backend';
import { Tensor } from '../tensor';
import { IncrementalDecoder } from '../tokenizers/incremental-decoder';

/** Options of {@link textGenerationPipeline}. */
export interface TextGenerationPipelineOptions {
  /** Backend the model computes on ('native', 'js' or a Backend); default the global one. */
  backend?: BackendChoice;
  /** Precision of the weight GEMMs (see `Module.useWeightPrecision`). Default 'float32'. */
  weightPrecision?: WeightPrecision;
}

/** Beam search and logits-processor options passed through to `generate` (see {@link GenerationOptions}). */
type PassedGenerationOptions = Pick<GenerationOptions, 'doSample' | 'temperature' | 'topK' | 'topP' | 'repetitionPenalty' |
  'seed' | 'numBeams' | 'lengthPenalty' | 'earlyStopping' | 'numReturnSequences' | 'noRepeatNgramSize' | 'badWordsIds' |
  'minNewTokens' | 'forcedEosTokenId'>;

/**
 * Options of one call (Hugging Face's generate arguments in camelCase, plus the pipeline's). With
 * `numReturnSequences` > 1 a prompt's result list holds that many texts (the best beams, or samples).
 */
export interface TextGenerationCallOptions extends PassedGenerationOptions {
  /** Most new tokens (default 20, transformers' default length budget). */
  maxNewTokens?: number;
  /** End-of-sequence id(s); default the folder's `generation_config.json`/`config.json` `eos_token_id`, else the tokenizer's. null: never stop early. */
  eosTokenId?: number | readonly number[] | null;
  /** Include the prompt in `generatedText` (default true, as in transformers). */
  returnFullText?: boolean;
  /** Let the tokenizer add its special tokens (e.g. Llama's BOS) to the prompt. Default true. */
  addSpecialTokens?: boolean;
  /** Drop special tokens (eos, …) from the text. Default true. */
  skipSpecialTokens?: boolean;
}

/** One generated sequence. */
export interface GeneratedText {
  generatedText: string;
}

/** The pipeline: call it with a prompt (→ one result list) or prompts (→ one list per prompt). */
export interface TextGenerationPipeline {
  (prompt: string, options?: TextGenerationCallOptions): Promise<GeneratedText[]>;
  (prompts: string[], options?: TextGenerationCallOptions): Promise<GeneratedText[][]>;
  /**
   * The new text of one prompt in pieces, each yielded as soon as its tokens
   * are generated ({@link IncrementalDecoder}: a few tokens of context are
   * decoded per step). A piece never ends inside a character: text is held back
   * while the decode ends in U+FFFD (an incomplete UTF-8 sequence). Joined,
   * the pieces are the `returnFullText: false` text of the same call (unless a
   * decode's clean-up rewrites text across a piece boundary).
   * Stopping the iteration early stops the generation.
   */
  stream(prompt: string, options?: TextGenerationCallOptions): AsyncIterable<string>;
  readonly model: CausalModel;
  readonly tokenizer: PreTrainedTokenizer;
}

/** A model and tokenizer given directly (any {@link CausalModel}). */
export interface ModelAndTokenizer {
  model: CausalModel;
  tokenizer: PreTrainedTokenizer;
  /** Default end-of-sequence id(s) (else the tokenizer's). */
  eosTokenId?: number | readonly number[] | null;
}

/** Options handed to generate as they are. */
const PASSED = ['doSample', 'temperature', 'topK', 'topP', 'repetitionPenalty', 'seed', 'numBeams', 'lengthPenalty',
  'earlyStopping', 'numReturnSequences', 'noRepeatNgramSize', 'badWordsIds', 'minNewTokens', 'forcedEosTokenId'] as const;
const CALL_OPTIONS = new Set<string>(['maxNewTokens', ...PASSED, 'eosTokenId', 'returnFullText', 'addSpecialTokens', 'skipSpecialTokens']);

/** `eos_token_id` of the folder's generation_config.json, else config.json; undefined when neither says. */
export async function folderEos(dir: string): Promise<number | number[] | null | undefined> {
  for (const name of ['generation_config.json', 'config.json']) {
    const file = path.join(dir, name);
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new Error(`${file}: cannot be read as JSON (${(err as Error).message})`, { cause: err });
    }
    const v = json?.['eos_token_id'];
    if (v === undefined) continue;
    const ok = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x >= 0;
    if (v === null || ok(v) || (Array.isArray(v) && v.every(ok))) return v as number | number[] | null;
    throw new Error(`${file}: field 'eos_token_id' must be a token id, a list of them or null, got ${JSON.stringify(v)}`);
  }
  return undefined;
}

/**
 * config.json's `task_specific_params['text-generation']` (GPT-2's checkpoints set `do_sample` and `max_length`
 * there), which transformers' pipeline applies over the generation config; `{}` when absent.
 */
export async function taskDefaults(dir: string): Promise<FolderGenerationConfig> {
  const file = path.join(dir, 'config.json');
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new Error(`${file}: cannot be read as JSON (${(err as Error).message})`, { cause: err });
  }
  const params = json?.['task_specific_params'];
  if (params === undefined || params === null) return {};
  if (typeof params !== 'object' || Array.isArray(params)) throw new Error(`${file}: field 'task_specific_params' must be an object, got ${JSON.stringify(params)}`);
  const t = (params as Record<string, unknown>)['text-generation'];
  if (t === undefined || t === null) return {};
  if (typeof t !== 'object' || Array.isArray(t)) throw new Error(`${file}: field 'task_specific_params.text-generation' must be an object, got ${JSON.stringify(t)}`);
  return generationConfigFromJson(t as Record<string, unknown>, `${file} (task_specific_params.text-generation)`);
}

/**
 * Loads a text-generation pipeline from a Hugging Face model folder
 * (config.json, safetensors weights, tokenizer files), or wraps a model and
 * tokenizer given as `{ model, tokenizer }`.
 * @throws Error naming the file and field when the folder does not fit (see
 *   AutoModelForCausalLM.fromPretrained), or when it has no tokenizer.
 */
export async function textGenerationPipeline(
  source: string | ModelAndTokenizer, options: TextGenerationPipelineOptions = {},
): Promise<TextGenerationPipeline> {
  const fn = 'textGenerationPipeline';
  if (options === null || typeof options !== 'object') throw new TypeError(`${fn}: argument 'options' must be an object, got ${options === null ? 'null' : typeof options}`);
  for (const k of Object.keys(options)) {
    if (k !== 'backend' && k !== 'weightPrecision') throw new TypeError(`${fn}: unknown option '${k}' (options: backend, weightPrecision)`);
  }
  let model: CausalModel;
  let tokenizer: PreTrainedTokenizer;
  let eos: number | readonly number[] | null | undefined;
  let task: FolderGenerationConfig = {};
  if (typeof source === 'string') {
    const m = await AutoModelForCausalLM.fromPretrained(source);
    const tok = AutoTokenizer.fromPretrained(source);
    if (!tok) throw new Error(`${source}: no tokenizer files (expected tokenizer.json, vocab.json + merges.txt or vocab.txt)`);
    model = m;
    tokenizer = tok;
    eos = await folderEos(source);
    task = await taskDefaults(source);
  } else if (source !== null && typeof source === 'object' && typeof source.model?.forward === 'function' && typeof source.tokenizer?.decode === 'function') {
    ({ model, tokenizer } = source);
    eos = source.eosTokenId;
  } else {
    throw new TypeError(`${fn}: argument 'source' must be a model folder path or { model, tokenizer }, got ${source === null ? 'null' : typeof source}`);
  }
  if (model instanceof Module) {
    if (options.backend !== undefined) model.useBackend(options.backend);
    if (options.weightPrecision !== undefined) model.useWeightPrecision(options.weightPrecision);
  } else if (options.backend !== undefined || options.weightPrecision !== undefined) {
    throw new TypeError(`${fn}: options 'backend' and 'weightPrecision' need a Module model; set them on the model instead`);
  }
  const defaultEos = eos === undefined ? tokenizer.eosTokenId ?? null : eos;
  // The task's sampling and processor fields sit between the model's generation config and the call's options.
  // (Lengths are handled per call below; the special ids come from the folder's eos and the tokenizer.)
  const notOptions = new Set(['maxNewTokens', 'maxLength', 'minLength', 'eosTokenId', 'padTokenId', 'bosTokenId', 'decoderStartTokenId']);
  const taskOptions = Object.fromEntries(Object.entries(task).filter(([k, v]) => !notOptions.has(k) && v !== null)) as Partial<GenerationOptions>;

  const prepare = (fnName: string, prompts: string[], o: TextGenerationCallOptions) => {
    if (o === null || typeof o !== 'object') throw new TypeError(`${fnName}: argument 'options' must be an object, got ${o === null ? 'null' : typeof o}`);
    for (const k of Object.keys(o)) if (!CALL_OPTIONS.has(k)) throw new TypeError(`${fnName}: unknown option '${k}' (options: ${[...CALL_OPTIONS].join(', ')})`);
    for (const k of ['returnFullText', 'addSpecialTokens', 'skipSpecialTokens', 'doSample'] as const) {
      if (o[k] !== undefined && typeof o[k] !== 'boolean') throw new TypeError(`${fnName}: option '${k}' must be a boolean, got ${typeof o[k]}`);
    }
    const encoded = prompts.map((p) => tokenizer.encode(p, { addSpecialTokens: o.addSpecialTokens ?? true }));
    encoded.forEach((ids, i) => {
      if (!ids.length) throw new RangeError(`${fnName}: prompt ${i} encodes to no tokens (generation needs at least one)`);
    });
    const eosTokenId = o.eosTokenId === undefined ? defaultEos : o.eosTokenId;
    const eosFirst = eosTokenId === null ? undefined : typeof eosTokenId === 'number' ? eosTokenId : eosTokenId[0];
    const pad = tokenizer.padTokenId ?? eosFirst ?? 0;
    // Left padding, as decoder-only generation needs: every row's last prompt token is at the same column.
    const width = Math.max(...encoded.map((e) => e.length));
    const n = encoded.length;
    const ids = new Int32Array(n * width).fill(pad);
    const mask = new Int32Array(n * width);
    encoded.forEach((e, b) => {
      ids.set(e, b * width + width - e.length);
      mask.fill(1, b * width + width - e.length, (b + 1) * width);
    });
    // New tokens: the call's, else the folder's task_specific_params (max_length counts the padded prompt, as
    // transformers' pipeline applies it), else the generation config's max_new_tokens, else 20.
    const maxNewTokens = o.maxNewTokens ?? task.maxNewTokens ??
      (task.maxLength !== undefined ? Math.max(0, task.maxLength - width) : undefined) ?? model.generationConfig?.maxNewTokens ?? 20;
    const gen: GenerationOptions = {
      ...taskOptions,
      maxNewTokens,
      ...(task.minLength !== undefined ? { minNewTokens: Math.max(0, task.minLength - width) } : {}),
      eosTokenId, padTokenId: pad,
      ...(n > 1 && encoded.some((e) => e.length < width) ? { attentionMask: new Tensor(mask, [n, width], 'int32') } : {}),
      ...pick(o, PASSED),
    };
    const decodeOpts = { skipSpecialTokens: o.skipSpecialTokens ?? true };
    /** The new text of a row: decode(prompt + new) minus decode(prompt). */
    const newText = (b: number, newIds: readonly number[]): { text: string; clean: boolean } => {
      const promptText = tokenizer.decode(encoded[b]!, decodeOpts);
      const full = tokenizer.decode([...encoded[b]!, ...newIds], decodeOpts);
      return { text: full.slice(promptText.length), clean: full.startsWith(promptText) };
    };
    return { encoded, width, n, input: new Tensor(ids, [n, width], 'int32'), gen, newText, decodeOpts, returnFullText: o.returnFullText ?? true };
  };

  /** The generated ids of row b of the output (up to, not including, the padding after its eos). */
  const rowIds = (out: Tensor<'int32'>, b: number, width: number, eosSet: Set<number>): number[] => {
    const total = out.shape[1]!;
    const row = Array.from(out.data.subarray(b * total + width, (b + 1) * total));
    const stop = row.findIndex((t) => eosSet.has(t));
    return stop < 0 ? row : row.slice(0, stop + 1);
  };
  const eosSetOf = (e: GenerationOptions['eosTokenId']): Set<number> => new Set(e === null || e === undefined ? [] : typeof e === 'number' ? [e] : e);

  async function run(prompts: string | string[], o: TextGenerationCallOptions = {}): Promise<GeneratedText[] | GeneratedText[][]> {
    const fnName = 'textGenerationPipeline';
    const many = Array.isArray(prompts);
    const list = many ? prompts : [prompts];
    if (!list.length || !list.every((p) => typeof p === 'string')) {
      throw new TypeError(`${fnName}: argument 'prompts' must be a string or a non-empty array of strings`);
    }
    const pr = prepare(fnName, list, o);
    const out = await generateAsync(model, pr.input, pr.gen);
    const eosSet = eosSetOf(pr.gen.eosTokenId);
    // Output rows: numReturnSequences per prompt, adjacent.
    const per = pr.gen.numReturnSequences ?? 1;
    const results = list.map((prompt, b) => Array.from({ length: per }, (_, j) => {
      const { text } = pr.newText(b, rowIds(out, b * per + j, pr.width, eosSet));
      return { generatedText: pr.returnFullText ? prompt + text : text };
    }));
    return many ? results : results[0]!;
  }

  async function* stream(prompt: string, o: TextGenerationCallOptions = {}): AsyncGenerator<string, void, undefined> {
    const fnName = 'textGenerationPipeline.stream';
    if (typeof prompt !== 'string') throw new TypeError(`${fnName}: argument 'prompt' must be a string, got ${typeof prompt}`);
    const pr = prepare(fnName, [prompt], o);
    if ((pr.gen.numBeams ?? 1) > 1 || (pr.gen.numReturnSequences ?? 1) > 1) {
      throw new TypeError(`${fnName}: options 'numBeams' and 'numReturnSequences' must be 1 when streaming (beam search's text is only final at the end)`);
    }
    const generated: number[] = [];
    let finished = false;
    let stopped = false;
    let failure: { error: unknown } | null = null;
    let wake: (() => void) | null = null;
    const notify = () => {
      const w = wake;
      wake = null;
      w?.();
    };
    const cancelled = new Error('stream stopped by its consumer');
    const done = generateAsync(model, pr.input, {
      ...pr.gen,
      onToken: (t) => {
        if (stopped) throw cancelled; // ends generateAsync at the next token
        generated.push(t[0]!);
        notify();
      },
    }).then(
      () => { finished = true; notify(); },
      (error: unknown) => { if (error !== cancelled) failure = { error }; finished = true; notify(); },
    );
    const decoder = new IncrementalDecoder((ids) => tokenizer.decode(ids, pr.decodeOpts), pr.encoded[0]!);
    let seen = 0;
    try {
      for (;;) {
        if (failure) throw (failure as { error: unknown }).error;
        if (generated.length > seen) {
          const piece = decoder.push(generated.slice(seen));
          seen = generated.length;
          if (piece) yield piece;
          continue;
        }
        if (finished) {
          const rest = decoder.flush();
          if (rest) yield rest;
          return;
        }
        await new Promise<void>((resolve) => (wake = resolve));
      }
    } finally {
      stopped = true;
      await done;
    }
  }

  const p = run as TextGenerationPipeline;
  Object.defineProperty(p, 'stream', { value: (prompt: string, o?: TextGenerationCallOptions) => stream(prompt, o) });
  Object.defineProperty(p, 'model', { value: model });
  Object.defineProperty(p, 'tokenizer', { value: tokenizer });
  return p;
}

function pick<T extends object, K extends keyof T>(o: T, keys: readonly K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}
