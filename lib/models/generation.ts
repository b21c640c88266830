/**
 * Text generation as Hugging Face's `model.generate` does it, for causal
 * language models and encoder-decoder models alike: greedy, sampled
 * (temperature, top-k, top-p, reproducible for a seed) or beam search, with
 * Hugging Face's logits processors (repetition penalty, no-repeat n-grams, bad
 * words, minimum new tokens, forced end-of-sequence), a KV cache and
 * left-padded batches. Returns `[batch, prefix + new]`: the prompt and the new
 * tokens for a causal LM, the decoder tokens (decoder start token first) for
 * an encoder-decoder, finished rows padded with `padTokenId`.
 *
 * ## The model side: a decoder session
 *
 * The loop never looks inside a model. It asks the model for a
 * {@link DecoderSession} ({@link DecodingModel.startDecoding}) and drives it:
 *
 * ```text
 * session = model.startDecoding(inputIds, { attentionMask, expand, maxNewTokens })
 * logits  = session.step(session.prefix, mask)        // [rows, 1, vocab]: the whole prefix first
 * loop:   pick tokens in JS (greedy / sampling / beam search)
 *         session.reorder(beamRows)                     // beam search only, before the next step
 *         logits = session.step(newTokens [rows, 1], mask)
 * ```
 *
 * - `expand` repeats every input row that many times, adjacent (row
 *   `b · expand + j` is copy `j` of input `b`, `repeat_interleave` as Hugging
 *   Face expands for beams and for `numReturnSequences`). `rows` is
 *   `batch · expand`.
 * - `prefix` [rows, L0] is what the decoder starts from and what the output
 *   starts with: the prompt of a causal LM, `[[decoderStartTokenId]]` per row
 *   for an encoder-decoder (which runs its encoder on `inputIds` /
 *   `attentionMask`, once per input row, and shares that memory between the
 *   row's copies). `prefixMask` is the prefix's attention mask (1 = token) or
 *   null when every prefix position is a token.
 * - `step(ids, attentionMask)` appends `ids` [rows, t] to every row's decoder
 *   state and returns the logits of each row's last position, [rows, 1, vocab].
 *   `attentionMask` is null when `prefixMask` is, else [rows, cached + t]: the
 *   prefix mask followed by ones. It is the kernel work of one step: the async
 *   form calls it inside `runAsync`, so it must only run backend ops (no JS
 *   reads of kernel results). Allocate caches in the first step, not in
 *   `startDecoding` (generate checks the lengths after that returns).
 * - `reorder(rowIndices)` (beam search) makes row `i` continue the state of
 *   row `rowIndices[i]`, for every `i` at once, before the next `step`. It is
 *   called inside the next step's kernel work, so it too must use backend ops:
 *   {@link SelfAttentionCache.reorder} / {@link DecoderCache.reorder} gather
 *   the cached keys and values with one backend gather per layer. Indices
 *   always stay within an input's own copies (`⌊rowIndices[i] / expand⌋ =
 *   ⌊i / expand⌋`), so state shared by an input's copies (an encoder memory)
 *   never needs to move.
 *
 * A causal LM only implements {@link CausalModel} (`createCache` + `forward`);
 * {@link causalDecoderSession} adapts it. An encoder-decoder implements
 * {@link DecodingModel} itself.
 *
 * Each step's logits are computed by kernels (off the JS thread in the async
 * form) and only then read in JS to pick the next tokens.
 */
import { runAsyncOn } from '../async';
import { noGrad } from '../autograd/grad-mode';
import type { Backend } from '../backend/backend';
import { Rng, Tensor } from '../tensor';
import { checkInt, formatShape } from '../errors';
import { checkOptions } from '../nn/options';
import type { SelfAttentionCache } from '../nn/kv-cache';
import { samplingParams, TokenPicker, type SamplingParams } from './sampling';

// ---------------------------------------------------------------------------
// The model side

/**
 * The decoding state of one `generate` call: a batch of `rows` decoder
 * sequences advanced one step at a time. See the file comment for the
 * protocol.
 */
export interface DecoderSession {
  /** Sequences decoded side by side: inputs × `expand`, an input's copies adjacent. */
  readonly rows: number;
  /** [rows, L0] int32: the decoder tokens each row starts from (the prompt, or the decoder start token). */
  readonly prefix: Tensor<'int32'>;
  /** [rows, L0] int32 attention mask of the prefix (1 = token, 0 = padding), or null: all tokens. */
  readonly prefixMask: Tensor<'int32'> | null;
  /**
   * Appends `ids` [rows, t] to every row and returns the logits of each row's
   * last position, [rows, 1, vocab]. `attentionMask` [rows, cached + t] (null
   * when `prefixMask` is null). Backend ops only: it may run inside `runAsync`.
   */
  step(ids: Tensor<'int32'>, attentionMask: Tensor<'int32'> | null): Tensor<'float32'>;
  /**
   * Row `i` continues from the state of row `rowIndices[i]` (length `rows`;
   * indices stay within an input's copies). Called before the next `step`,
   * inside its kernel work: backend ops only.
   */
  reorder(rowIndices: Int32Array): void;
  /**
   * Optional: Hugging Face's `adjust_logits_during_generation`, applied in JS
   * to each row's logits (double precision) before beam search's log-softmax
   * (not in greedy search or sampling, as in transformers). MarianMT sets its
   * pad token to -Infinity here.
   */
  adjustLogits?(logits: Float64Array, row: number): void;
}

/** What {@link DecodingModel.startDecoding} is given. */
export interface StartDecodingOptions {
  /** [batch, S] int32 attention mask of `inputIds` (1 = token, 0 = padding), or null: all tokens. */
  attentionMask: Tensor<'int32'> | null;
  /** Copies of each input row (beams × return sequences); rows = batch × expand. */
  expand: number;
  /** Most new tokens the session will be stepped for (size caches for prefix + this). */
  maxNewTokens: number;
}

/**
 * Defaults a model supplies for generate's options (Hugging Face's
 * `generation_config`, e.g. MarianMT's `badWordsIds: [[pad]]`, `numBeams`,
 * `eosTokenId`); options given to generate win.
 */
export type GenerationDefaults = Partial<Omit<GenerationOptions, 'attentionMask' | 'onToken'>>;

/** A model that runs its own decoder sessions (an encoder-decoder, or any model with special decoding state). */
export interface DecodingModel {
  readonly config: { vocabSize: number; maxPositionEmbeddings: number };
  /** Defaults for generate's options (optional). */
  readonly generationConfig?: GenerationDefaults;
  /** The backend the model computes on (a non-native one runs the async form synchronously). */
  readonly backend: Backend;
  /** A session over `inputIds` [batch, S] (validated by generate: int32, S >= 1, mask of the same shape). */
  startDecoding(inputIds: Tensor<'int32'>, options: StartDecodingOptions): DecoderSession;
}

/** What generation needs of a causal (decoder-only) model; {@link causalDecoderSession} drives it. */
export interface CausalModel {
  createCache(batch: number, capacity: number): SelfAttentionCache;
  forward(
    inputIds: Tensor<'int32'>,
    options: { cache: SelfAttentionCache; attentionMask?: Tensor<'int32'> | null; lastOnly: boolean },
  ): Tensor<'float32'>;
  readonly config: { vocabSize: number; maxPositionEmbeddings: number };
  /** The backend the model computes on (a non-native one runs the async form synchronously). */
  readonly backend: Backend;
  /** Defaults for generate's options (optional). */
  readonly generationConfig?: GenerationDefaults;
}

/** Anything `generate` drives. */
export type GenerationModel = CausalModel | DecodingModel;

/** Rows of `t` [n, w] each repeated `times` times, adjacent ([n · times, w]). */
function repeatRows(t: Tensor<'int32'>, times: number): Tensor<'int32'> {
  const [n, w] = t.shape as [number, number];
  const src = t.contiguous().data;
  if (times === 1) return new Tensor(Int32Array.from(src), [n, w], 'int32');
  const out = new Int32Array(n * times * w);
  for (let b = 0; b < n; b++) for (let j = 0; j < times; j++) out.set(src.subarray(b * w, (b + 1) * w), (b * times + j) * w);
  return new Tensor(out, [n * times, w], 'int32');
}

/**
 * The decoder session of a causal LM: the prefix is the prompt (rows
 * repeated `expand` times), each step is one cached forward, and `reorder`
 * gathers the KV caches' rows.
 */
export function causalDecoderSession(model: CausalModel, inputIds: Tensor<'int32'>, options: StartDecodingOptions): DecoderSession {
  const prefix = repeatRows(inputIds, options.expand);
  const [rows, p] = prefix.shape as [number, number];
  let cache: SelfAttentionCache | null = null;
  return {
    rows,
    prefix,
    prefixMask: options.attentionMask ? repeatRows(options.attentionMask, options.expand) : null,
    step(ids, attentionMask) {
      cache ??= model.createCache(rows, p + options.maxNewTokens);
      return model.forward(ids, { cache, attentionMask, lastOnly: true });
    },
    reorder(rowIndices) {
      if (!cache) throw new Error('causalDecoderSession.reorder: called before the first step');
      cache.reorder(model.backend, rowIndices);
    },
  };
}

function startSession(model: GenerationModel, inputIds: Tensor<'int32'>, options: StartDecodingOptions): DecoderSession {
  return 'startDecoding' in model ? model.startDecoding(inputIds, options) : causalDecoderSession(model, inputIds, options);
}

// ---------------------------------------------------------------------------
// Options

/** Options of {@link generate} (Hugging Face's names, camelCase). */
export interface GenerationOptions {
  /** Most new tokens per sequence. */
  maxNewTokens: number;
  /** [batch, prompt] 1 = token, 0 = padding (left padding). Default all ones. */
  attentionMask?: Tensor<'int32'> | null;
  /** Sample instead of taking the arg-max (default false). */
  doSample?: boolean;
  /** Divides the logits before sampling (default 1). */
  temperature?: number;
  /** Keep only the k most likely tokens (default 0: all). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (default 1: all). */
  topP?: number;
  /** > 1 discourages tokens already in the sequence (default 1: off). */
  repetitionPenalty?: number;
  /** Seed of the sampler: the same seed gives the same tokens. */
  seed?: number;
  /** Token(s) that end a sequence. */
  eosTokenId?: number | readonly number[] | null;
  /** What finished sequences are padded with (default the first eos id, else 0). */
  padTokenId?: number;
  /**
   * Called with each step's new tokens (one per row) as soon as they are
   * picked. Not with beam search, whose tokens are only final at the end.
   * With `outputLogprobs`, also each token's log-probability under the model
   * (log-softmax of the raw logits, before temperature, filtering or penalties).
   */
  onToken?: (tokens: Int32Array, logprobs?: Float64Array) => void;
  /** Compute the log-probability of each picked token for `onToken` (one log-sum-exp over the vocabulary per step). */
  outputLogprobs?: boolean;
  /** Beams of beam search (default 1: greedy or sampling). */
  numBeams?: number;
  /**
   * Beam search: a finished hypothesis scores sum(log p) / length^lengthPenalty
   * (length = its new tokens, end token included). > 0 favours longer ones. Default 1.
   */
  lengthPenalty?: number;
  /**
   * Beam search: stop an input once `numBeams` hypotheses are finished (true),
   * when no running beam can still beat the worst of them (false, Hugging
   * Face's heuristic), or only when none can by the length limit ('never').
   * Default false.
   */
  earlyStopping?: boolean | 'never';
  /**
   * Sequences returned per input: the best hypotheses of beam search (at most
   * numBeams), independent samples, or with beam sampling the best of that
   * many independent searches (transformers 4.36's `_beam_sample`). Output
   * rows `[batch · n]`, an input's adjacent. Default 1.
   */
  numReturnSequences?: number;
  /** No n-gram of this size occurs twice in a sequence (default 0: off). */
  noRepeatNgramSize?: number;
  /**
   * Token sequences never generated: a single token is never picked, a longer
   * sequence's last token not after the rest. Sequences equal to an eos id
   * are ignored (as in Hugging Face).
   */
  badWordsIds?: readonly (readonly number[])[] | null;
  /** No eos before this many new tokens (default 0). */
  minNewTokens?: number;
  /** Token(s) forced as the last token when maxNewTokens is reached. */
  forcedEosTokenId?: number | readonly number[] | null;
  /**
   * Log-softmax the scores again after the logits processors (transformers'
   * `renormalize_logits`, which Marian's generation configs set): beam search
   * then ranks by log-probabilities over the tokens the processors left
   * (e.g. without the banned pad token). Greedy and sampled tokens do not
   * change. Default false.
   */
  renormalizeLogits?: boolean;
}

const KNOWN_OPTIONS = [
  'maxNewTokens', 'attentionMask', 'doSample', 'temperature', 'topK', 'topP', 'repetitionPenalty', 'seed',
  'eosTokenId', 'padTokenId', 'onToken', 'numBeams', 'lengthPenalty', 'earlyStopping', 'numReturnSequences',
  'noRepeatNgramSize', 'badWordsIds', 'minNewTokens', 'forcedEosTokenId', 'renormalizeLogits', 'outputLogprobs',
];

/** The result of {@link generateWithScores}. */
export interface GenerationOutput {
  /** [batch · numReturnSequences, prefix + new] int32. */
  sequences: Tensor<'int32'>;
  /**
   * Beam search: the score of each returned sequence (sum of log-probabilities
   * over its new tokens / length^lengthPenalty), Hugging Face's
   * `sequences_scores`. null for greedy and sampling.
   */
  sequencesScores: Float32Array | null;
}

/** Validated options. */
interface Plan {
  n: number;
  maxNew: number;
  doSample: boolean;
  temperature: number;
  topK: number;
  topP: number;
  numBeams: number;
  numReturn: number;
  lengthPenalty: number;
  earlyStopping: boolean | 'never';
  padTokenId: number;
  /** The same sampling fields, for the shared token picker. */
  sampling: SamplingParams;
  picker: TokenPicker;
  eos: Set<number>;
  eosFirst: number | null;
  processors: LogitsProcessors;
  rng: Rng;
  mask: Tensor<'int32'> | null;
  onToken: ((tokens: Int32Array, logprobs?: Float64Array) => void) | null;
  logprobs: boolean;
}

function idList(fn: string, name: string, v: number | readonly number[] | null | undefined, vocab: number | null): number[] {
  if (v === undefined || v === null) return [];
  const list = typeof v === 'number' ? [v] : v;
  if (!Array.isArray(list)) throw new TypeError(`${fn}: option '${name}' must be a token id or an array of token ids, got ${typeof v}`);
  for (const id of list) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || (vocab !== null && id >= vocab)) {
      throw new RangeError(`${fn}: option '${name}' must hold token ids in [0, ${vocab ?? 'vocab'}), got ${String(id)}`);
    }
  }
  return [...list];
}

function plan(fn: string, model: GenerationModel, inputIds: Tensor<'int32'>, o: GenerationOptions): Plan {
  if (!(inputIds instanceof Tensor) || inputIds.dtype !== 'int32' || inputIds.ndim !== 2 || inputIds.shape[1] === 0) {
    throw new TypeError(`${fn}: argument 'inputIds' must be an int32 Tensor [batch, prompt] with prompt >= 1, got ${inputIds instanceof Tensor ? `${inputIds.dtype} ${formatShape(inputIds.shape)}` : typeof inputIds}`);
  }
  checkOptions(fn, o, KNOWN_OPTIONS);
  const [n, p] = inputIds.shape as [number, number];
  const maxNew = checkInt(fn, 'maxNewTokens', o.maxNewTokens, 0);
  const vocab = model.config.vocabSize;
  const num = (name: string, v: number | undefined, dflt: number, ok: (x: number) => boolean): number => {
    const x = v ?? dflt;
    if (typeof x !== 'number' || !ok(x)) throw new RangeError(`${fn}: option '${name}' is out of range, got ${String(x)}`);
    return x;
  };
  const int = (name: string, v: number | undefined, dflt: number, min: number): number => {
    const x = v ?? dflt;
    if (typeof x !== 'number') throw new TypeError(`${fn}: option '${name}' must be an integer >= ${min}, got ${typeof x}`);
    if (!Number.isInteger(x) || x < min) throw new RangeError(`${fn}: option '${name}' must be an integer >= ${min}, got ${x}`);
    return x;
  };
  const bool = (name: string, v: boolean | undefined): boolean => {
    if (v !== undefined && typeof v !== 'boolean') throw new TypeError(`${fn}: option '${name}' must be a boolean, got ${typeof v}`);
    return v ?? false;
  };
  const eosList = idList(fn, 'eosTokenId', o.eosTokenId, null);
  let mask: Tensor<'int32'> | null = null;
  if (o.attentionMask) {
    const m = o.attentionMask;
    if (!(m instanceof Tensor) || m.dtype !== 'int32' || m.ndim !== 2 || m.shape[0] !== n || m.shape[1] !== p) {
      throw new TypeError(`${fn}: option 'attentionMask' must be an int32 Tensor [${n}, ${p}] like inputIds`);
    }
    mask = new Tensor(Int32Array.from(m.contiguous().data), [n, p], 'int32');
  }
  const sampling = samplingParams(fn, o);
  const { doSample } = sampling;
  const numBeams = int('numBeams', o.numBeams, 1, 1);
  const numReturn = int('numReturnSequences', o.numReturnSequences, 1, 1);
  if (numBeams > 1 && !doSample && numReturn > numBeams) {
    throw new RangeError(`${fn}: option 'numReturnSequences' (${numReturn}) must be <= numBeams (${numBeams})`);
  }
  if (numBeams === 1 && !doSample && numReturn !== 1) {
    throw new RangeError(`${fn}: option 'numReturnSequences' must be 1 for greedy search (numBeams 1, doSample false), got ${numReturn}`);
  }
  if (numBeams > 1 && o.onToken) {
    throw new TypeError(`${fn}: option 'onToken' is not supported with numBeams > 1 (beam search's tokens are only final when it ends)`);
  }
  if (o.onToken !== undefined && typeof o.onToken !== 'function') {
    throw new TypeError(`${fn}: option 'onToken' must be a function, got ${typeof o.onToken}`);
  }
  const earlyStopping = o.earlyStopping ?? false;
  if (earlyStopping !== true && earlyStopping !== false && earlyStopping !== 'never') {
    throw new TypeError(`${fn}: option 'earlyStopping' must be true, false or 'never', got ${JSON.stringify(earlyStopping)}`);
  }
  const lengthPenalty = num('lengthPenalty', o.lengthPenalty, 1, Number.isFinite);
  const padTokenId = o.padTokenId ?? eosList[0] ?? 0;
  checkInt(fn, 'padTokenId', padTokenId, 0);
  const eos = new Set(eosList);
  return {
    n, maxNew, doSample, numBeams, numReturn, lengthPenalty, earlyStopping, padTokenId, eos, mask,
    eosFirst: eosList[0] ?? null,
    temperature: sampling.temperature,
    topK: sampling.topK,
    topP: sampling.topP,
    sampling,
    picker: new TokenPicker(),
    rng: new Rng(o.seed ?? 0),
    onToken: o.onToken ?? null,
    logprobs: o.outputLogprobs === true,
    processors: new LogitsProcessors(fn, vocab, {
      repetitionPenalty: sampling.repetitionPenalty,
      noRepeatNgramSize: int('noRepeatNgramSize', o.noRepeatNgramSize, 0, 0),
      badWordsIds: o.badWordsIds ?? null,
      minNewTokens: int('minNewTokens', o.minNewTokens, 0, 0),
      forcedEos: idList(fn, 'forcedEosTokenId', o.forcedEosTokenId, vocab),
      eos: eosList,
      renormalize: bool('renormalizeLogits', o.renormalizeLogits),
    }),
  };
}

// ---------------------------------------------------------------------------
// Logits processors

/**
 * Hugging Face's logits processors, in its order (repetition penalty,
 * no-repeat n-grams, bad words, minimum new tokens, forced eos, then the
 * renormalization that transformers appends last), on one row
 * of scores (logits for greedy/sampling, log-probabilities for beam search,
 * as transformers applies them).
 */
class LogitsProcessors {
  readonly #penalty: number;
  readonly #ngram: number;
  /** Single-token bad words: always banned. */
  readonly #badSingle: number[];
  /** Longer bad words: the last token is banned after the rest. */
  readonly #badSeqs: number[][];
  readonly #minNew: number;
  readonly #forced: number[];
  readonly #eos: number[];
  readonly #renormalize: boolean;
  /** Prefix length and the total length limit (set per call). */
  prefixLen = 0;
  maxLength = 0;

  constructor(fn: string, vocab: number, o: {
    repetitionPenalty: number; noRepeatNgramSize: number; badWordsIds: readonly (readonly number[])[] | null;
    minNewTokens: number; forcedEos: number[]; eos: number[]; renormalize: boolean;
  }) {
    this.#penalty = o.repetitionPenalty;
    this.#renormalize = o.renormalize;
    this.#ngram = o.noRepeatNgramSize;
    this.#minNew = o.minNewTokens;
    this.#forced = o.forcedEos;
    this.#eos = o.eos;
    this.#badSingle = [];
    this.#badSeqs = [];
    if (o.badWordsIds !== null) {
      if (!Array.isArray(o.badWordsIds)) {
        throw new TypeError(`${fn}: option 'badWordsIds' must be an array of token id arrays, got ${typeof o.badWordsIds}`);
      }
      o.badWordsIds.forEach((seq, i) => {
        if (!Array.isArray(seq) || seq.length === 0) {
          throw new TypeError(`${fn}: option 'badWordsIds' must be an array of non-empty token id arrays, entry ${i} is ${Array.isArray(seq) ? 'empty' : typeof seq}`);
        }
        for (const id of seq) {
          if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocab) {
            throw new RangeError(`${fn}: option 'badWordsIds' must hold token ids in [0, ${vocab}), entry ${i} has ${String(id)}`);
          }
        }
        // transformers drops bad words that are exactly an eos token.
        if (seq.length === 1 && o.eos.includes(seq[0]!)) return;
        if (seq.length === 1) this.#badSingle.push(seq[0]!);
        else this.#badSeqs.push([...seq]);
      });
    }
  }

  /** Modifies `row` (scores over the vocabulary) for the sequence `seq` (prefix and tokens so far). */
  apply(row: Float64Array, seq: readonly number[]): void {
    const len = seq.length;
    if (this.#penalty !== 1) {
      const p = this.#penalty;
      for (const t of new Set(seq)) row[t] = row[t]! < 0 ? row[t]! * p : row[t]! / p;
    }
    const n = this.#ngram;
    if (n > 0 && len + 1 >= n) {
      // Every token that followed an earlier occurrence of the last n - 1 tokens.
      const tail = len - (n - 1);
      for (let i = 0; i + n <= len; i++) {
        let match = true;
        for (let j = 0; j < n - 1 && match; j++) match = seq[i + j] === seq[tail + j];
        if (match) row[seq[i + n - 1]!] = -Infinity;
      }
    }
    for (const t of this.#badSingle) row[t] = -Infinity;
    for (const bad of this.#badSeqs) {
      if (bad.length > len) continue; // transformers skips sequences longer than the context
      const k = bad.length - 1;
      let match = true;
      for (let j = 0; j < k && match; j++) match = seq[len - k + j] === bad[j];
      if (match) row[bad[k]!] = -Infinity;
    }
    if (this.#minNew > 0 && len - this.prefixLen < this.#minNew) for (const e of this.#eos) row[e] = -Infinity;
    if (this.#forced.length && len === this.maxLength - 1) {
      row.fill(-Infinity);
      for (const e of this.#forced) row[e] = 0;
    }
    if (this.#renormalize) logSoftmax(row);
  }
}

// ---------------------------------------------------------------------------
// Greedy and sampling

/** The mask over `len` positions: the prefix's, then ones (null when the prefix has none). */
function maskFor(prefixMask: Tensor<'int32'> | null, len: number): Tensor<'int32'> | null {
  if (!prefixMask) return null;
  const [rows, l0] = prefixMask.shape as [number, number];
  const src = prefixMask.data;
  const out = new Int32Array(rows * len).fill(1);
  for (let r = 0; r < rows; r++) out.set(src.subarray(r * l0, (r + 1) * l0), r * len);
  return new Tensor(out, [rows, len], 'int32');
}

/** Log-softmax of the raw logits at `token` (row b of [rows, V] data). */
function logprobOf(data: Float32Array, b: number, v: number, token: number): number {
  let max = -Infinity;
  for (let j = 0; j < v; j++) max = Math.max(max, data[b * v + j]!);
  let sum = 0;
  for (let j = 0; j < v; j++) sum += Math.exp(data[b * v + j]! - max);
  return data[b * v + token]! - max - Math.log(sum);
}

/** Picks the next token of each row from logits [rows, 1, V] (read in JS); `logprobs` receives their log-probabilities. */
function pick(pl: Plan, logits: Tensor<'float32'>, seqs: readonly number[][], logprobs: Float64Array | null = null): Int32Array {
  const v = logits.shape[logits.ndim - 1]!;
  const data = logits.contiguous().data;
  const rows = seqs.length;
  const next = new Int32Array(rows);
  const row = new Float64Array(v);
  for (let b = 0; b < rows; b++) {
    for (let j = 0; j < v; j++) row[j] = data[b * v + j]!;
    pl.processors.apply(row, seqs[b]!);
    next[b] = pl.picker.choose(row, v, pl.sampling, pl.rng);
    if (logprobs) logprobs[b] = logprobOf(data, b, v, next[b]!);
  }
  return next;
}

/** One kernel step handed to the driver: a thunk computing logits [rows, 1, V]. */
type StepWork = () => Tensor<'float32'>;

/** Greedy or sampled decoding: one token per row and step, finished rows padded. */
function* sampleLoop(pl: Plan, session: DecoderSession, seqs: number[][]): Generator<StepWork, GenerationOutput, Tensor<'float32'>> {
  const rows = session.rows;
  const done = new Array<boolean>(rows).fill(false);
  let stepIds: Tensor<'int32'> = session.prefix;
  let len = seqs[0]!.length;
  for (let step = 0; step < pl.maxNew; step++) {
    const mask = maskFor(session.prefixMask, len);
    const current = stepIds;
    const logits = yield () => session.step(current, mask);
    const logprobs = pl.logprobs ? new Float64Array(rows) : null;
    const next = pick(pl, logits, seqs, logprobs);
    for (let b = 0; b < rows; b++) {
      if (done[b]) next[b] = pl.padTokenId;
      else if (pl.eos.has(next[b]!)) done[b] = true;
      seqs[b]!.push(next[b]!);
    }
    pl.onToken?.(next, logprobs ?? undefined);
    if (done.every(Boolean)) break;
    stepIds = new Tensor(next, [rows, 1], 'int32');
    len++;
  }
  return { sequences: toTensor(seqs, seqs[0]!.length, pl.padTokenId), sequencesScores: null };
}

/** Rows of token lists → int32 [rows, width] (shorter rows padded with `pad`). */
function toTensor(seqs: readonly (readonly number[])[], width: number, pad: number): Tensor<'int32'> {
  const out = new Int32Array(seqs.length * width).fill(pad);
  seqs.forEach((s, b) => out.set(s.slice(0, width), b * width));
  return new Tensor(out, [seqs.length, width], 'int32');
}

// ---------------------------------------------------------------------------
// Beam search

/**
 * The finished hypotheses of one input (transformers' `BeamHypotheses`): at
 * most `numBeams`, each scored sum(log p) / generatedLength^lengthPenalty.
 */
class BeamHypotheses {
  readonly beams: { score: number; tokens: number[] }[] = [];
  worstScore = 1e9;

  constructor(readonly numBeams: number, readonly lengthPenalty: number, readonly earlyStopping: boolean | 'never', readonly maxLength: number) {}

  add(tokens: number[], sumLogprobs: number, generatedLen: number): void {
    const score = sumLogprobs / generatedLen ** this.lengthPenalty;
    if (this.beams.length < this.numBeams || score > this.worstScore) {
      this.beams.push({ score, tokens });
      if (this.beams.length > this.numBeams) {
        // Python's sorted((score, index)): the lowest score goes, the earliest of equal ones.
        const order = this.beams.map((b, i) => [b.score, i] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
        this.beams.splice(order[0]![1], 1);
        this.worstScore = order[1]![0];
      } else {
        this.worstScore = Math.min(score, this.worstScore);
      }
    }
  }

  /** Whether no running beam can improve this input any more (`bestSumLogprobs`: the best candidate of the step). */
  isDone(bestSumLogprobs: number, curLen: number, prefixLen: number): boolean {
    if (this.beams.length < this.numBeams) return false;
    if (this.earlyStopping === true) return true;
    const denom = this.earlyStopping === 'never' && this.lengthPenalty > 0 ? this.maxLength - prefixLen : curLen - prefixLen;
    return this.worstScore >= bestSumLogprobs / denom ** this.lengthPenalty;
  }
}

const f32 = Math.fround;

/**
 * Beam search as transformers' `_beam_search` with `BeamSearchScorer`
 * (4.36+ length counting: a hypothesis' length is its new tokens, the end
 * token included): per step, log-softmax of each beam's logits, the logits
 * processors, plus the beam's running score (float32, as torch keeps it);
 * the top max(2, 1 + #eos) · numBeams candidates of each input over all its
 * beams; eos candidates ranked within the first numBeams become finished
 * hypotheses, the best others the next beams.
 *
 * With `doSample`, transformers' `_beam_sample` (4.36): the running scores
 * are warped (temperature, top-k and top-p keeping at least 2 tokens), 2 ·
 * numBeams candidates are drawn without replacement from their softmax over
 * all the input's beams, then ranked by warped score and scored as above;
 * `numReturnSequences` runs that many independent searches per input, each
 * returning its best hypothesis.
 */
function* beamLoop(pl: Plan, session: DecoderSession, seqsIn: number[][]): Generator<StepWork, GenerationOutput, Tensor<'float32'>> {
  const k = pl.numBeams;
  // The scorer's batch: one search per input, or per returned sequence when sampling.
  const n = pl.doSample ? pl.n * pl.numReturn : pl.n;
  const keep = pl.doSample ? 1 : pl.numReturn;
  const rows = session.rows;
  const prefixLen = seqsIn[0]!.length;
  const maxLength = prefixLen + pl.maxNew;
  let seqs = seqsIn;
  const hyps = Array.from({ length: n }, () => new BeamHypotheses(k, pl.lengthPenalty, pl.earlyStopping, maxLength));
  const done = new Array<boolean>(n).fill(false);
  // Only the first beam of each input is live at the start (the others are copies of it).
  let beamScores = new Float64Array(rows);
  for (let r = 0; r < rows; r++) if (r % k !== 0) beamScores[r] = -1e9;
  const nCand = pl.doSample ? 2 * k : Math.max(2, 1 + pl.eos.size) * k;
  let stepIds: Tensor<'int32'> = session.prefix;
  let reorder: Int32Array | null = null;
  let len = prefixLen;
  while (len < maxLength) {
    const mask = maskFor(session.prefixMask, len);
    const current = stepIds;
    const rowsFrom = reorder;
    const logits = yield () => {
      if (rowsFrom) session.reorder(rowsFrom);
      return session.step(current, mask);
    };
    const v = logits.shape[logits.ndim - 1]!;
    const data = logits.contiguous().data;
    const scores = new Float64Array(rows * v);
    const row = new Float64Array(v);
    for (let r = 0; r < rows; r++) {
      if (done[Math.floor(r / k)]) continue;
      for (let j = 0; j < v; j++) row[j] = data[r * v + j]!;
      session.adjustLogits?.(row, r);
      logSoftmax(row);
      pl.processors.apply(row, seqs[r]!);
      const base = beamScores[r]!;
      for (let j = 0; j < v; j++) row[j] = f32(f32(row[j]!) + base);
      if (pl.doSample) warp(row, pl.temperature, pl.topK, pl.topP);
      scores.set(row, r * v);
    }
    const curLen = len + 1;
    const nextScores = new Float64Array(rows);
    const nextTokens = new Int32Array(rows);
    const nextRows = new Int32Array(rows);
    for (let b = 0; b < n; b++) {
      if (done[b]) {
        // A finished input's beams only carry padding (their rows are never read again).
        for (let j = 0; j < k; j++) {
          nextTokens[b * k + j] = pl.padTokenId;
          nextRows[b * k + j] = b * k + j;
        }
        continue;
      }
      const cand = pl.doSample
        ? sampledCandidates(scores, b * k * v, k * v, nCand, pl.rng)
        : topCandidates(scores, b * k * v, k * v, nCand);
      let beam = 0;
      for (let rank = 0; rank < cand.length && beam < k; rank++) {
        const flat = cand[rank]!;
        const score = scores[b * k * v + flat]!;
        const token = flat % v;
        const src = b * k + Math.floor(flat / v);
        if (pl.eos.has(token)) {
          if (rank >= k) continue; // an eos below the top numBeams candidates is not a hypothesis
          hyps[b]!.add(seqs[src]!.slice(), score, curLen - prefixLen);
        } else {
          nextScores[b * k + beam] = score;
          nextTokens[b * k + beam] = token;
          nextRows[b * k + beam] = src;
          beam++;
        }
      }
      if (beam < k) throw new Error(`beam search: input ${b} has ${beam} continuations for ${k} beams (vocabulary too small for numBeams)`);
      done[b] = hyps[b]!.isDone(scores[b * k * v + cand[0]!]!, curLen, prefixLen);
    }
    seqs = Array.from({ length: rows }, (_, r) => [...seqs[nextRows[r]!]!, nextTokens[r]!]);
    beamScores = nextScores;
    len = curLen;
    if (done.every(Boolean)) break;
    stepIds = new Tensor(nextTokens, [rows, 1], 'int32');
    reorder = isIdentity(nextRows) ? null : nextRows;
  }
  return finalize(pl, hyps, keep, done, seqs, beamScores, prefixLen, maxLength);
}

/**
 * transformers' logits warpers as `_beam_sample` applies them to the running
 * scores, in place: temperature, then top-k and top-p each keeping at least 2
 * tokens (`min_tokens_to_keep` of beam search); removed tokens get -Infinity.
 */
function warp(row: Float64Array, temperature: number, topK: number, topP: number): void {
  const v = row.length;
  if (temperature !== 1) for (let j = 0; j < v; j++) row[j] = f32(row[j]! / temperature);
  if (topK > 0) {
    const kk = Math.min(Math.max(topK, 2), v);
    const kth = Float64Array.from(row).sort().reverse()[kk - 1]!;
    for (let j = 0; j < v; j++) if (row[j]! < kth) row[j] = -Infinity;
  }
  if (topP < 1) {
    // Ascending order; drop the low tail whose cumulative probability stays <= 1 - topP, keeping the top 2.
    const order = Array.from(row.keys()).sort((a, b) => row[a]! - row[b]! || a - b);
    const max = row[order[v - 1]!]!;
    let total = 0;
    for (let j = 0; j < v; j++) total += Math.exp(row[j]! - max);
    let cum = 0;
    for (let i = 0; i < v - 2; i++) {
      cum += Math.exp(row[order[i]!]! - max) / total;
      if (cum > 1 - topP) break;
      row[order[i]!] = -Infinity;
    }
  }
}

/**
 * `count` draws without replacement from softmax(scores[off, off + len)) —
 * the exponential-race form of torch.multinomial: the largest
 * score − log(E), E ~ Exp(1) — returned as offsets ranked by score, best
 * first (as `_beam_sample` sorts them). When fewer than `count` have
 * probability above zero, the rest are the first -Infinity ones.
 */
function sampledCandidates(scores: Float64Array, off: number, len: number, count: number, rng: Rng): number[] {
  const keys = new Float64Array(len);
  for (let i = 0; i < len; i++) {
    const s = scores[off + i]!;
    keys[i] = s === -Infinity ? -Infinity : s - Math.log(-Math.log(1 - rng.uniform()));
  }
  const drawn = topCandidates(keys, 0, len, count);
  return drawn.sort((a, b) => scores[off + b]! - scores[off + a]! || a - b);
}

function isIdentity(idx: Int32Array): boolean {
  for (let i = 0; i < idx.length; i++) if (idx[i] !== i) return false;
  return true;
}

/** log_softmax of a row in place (double precision, rounded to float32 as torch's result is). */
function logSoftmax(row: Float64Array): void {
  let max = -Infinity;
  for (let j = 0; j < row.length; j++) max = Math.max(max, row[j]!);
  let sum = 0;
  for (let j = 0; j < row.length; j++) sum += Math.exp(row[j]! - max);
  const lse = max + Math.log(sum);
  for (let j = 0; j < row.length; j++) row[j] = f32(row[j]! - lse);
}

/**
 * Offsets (relative to `off`) of the `count` largest of scores[off, off + len),
 * best first; equal scores in index order (-Infinity ones included when fewer
 * are finite, as torch.topk returns them).
 */
function topCandidates(scores: Float64Array, off: number, len: number, count: number): number[] {
  const top: number[] = [];
  const worst = (): number => scores[off + top[top.length - 1]!]!;
  for (let i = 0; i < len; i++) {
    const s = scores[off + i]!;
    if (top.length === count && !(s > worst())) continue;
    let at = top.length;
    while (at > 0 && s > scores[off + top[at - 1]!]!) at--;
    top.splice(at, 0, i);
    if (top.length > count) top.pop();
  }
  return top;
}

/** transformers' `BeamSearchScorer.finalize`: the best hypotheses, padded, an eos appended where it fits. */
function finalize(
  pl: Plan, hyps: BeamHypotheses[], keep: number, done: boolean[], seqs: number[][], beamScores: Float64Array,
  prefixLen: number, maxLength: number,
): GenerationOutput {
  const k = pl.numBeams;
  hyps.forEach((h, b) => {
    if (done[b]) return;
    for (let j = 0; j < k; j++) h.add(seqs[b * k + j]!, beamScores[b * k + j]!, seqs[b * k + j]!.length - prefixLen);
  });
  const best: number[][] = [];
  const scores = new Float32Array(hyps.length * keep);
  hyps.forEach((h, b) => {
    // Python's stable sorted(key=score) then pop(): the last of equal scores comes first.
    const sorted = h.beams.map((x, i) => ({ ...x, i })).sort((a, c) => a.score - c.score || a.i - c.i);
    for (let j = 0; j < keep; j++) {
      const hyp = sorted.pop()!;
      best.push(hyp.tokens);
      scores[b * keep + j] = hyp.score;
    }
  });
  const lengths = best.map((t) => t.length);
  const width = Math.min(Math.max(...lengths) + 1, maxLength);
  const rows = best.map((t) => (t.length < width && pl.eosFirst !== null ? [...t, pl.eosFirst] : t));
  return { sequences: toTensor(rows, width, pl.padTokenId), sequencesScores: scores };
}

// ---------------------------------------------------------------------------
// Drivers

/**
 * The generation loop as a generator: it yields each step's kernel work (a
 * thunk returning logits) and is resumed with the logits, so one loop serves
 * the sync driver and the async one (which runs each thunk in runAsync).
 */
function* loop(
  fn: string, model: GenerationModel, inputIds: Tensor<'int32'>, o: GenerationOptions,
): Generator<StepWork, GenerationOutput, Tensor<'float32'>> {
  const pl = plan(fn, model, inputIds, withDefaults(fn, model.generationConfig, o));
  // Beam search: numBeams rows per input; beam sampling: per returned sequence; sampling: one per returned sequence.
  const expand = pl.numBeams > 1 ? pl.numBeams * (pl.doSample ? pl.numReturn : 1) : pl.numReturn;
  const session = startSession(model, inputIds, { attentionMask: pl.mask, expand, maxNewTokens: pl.maxNew });
  const prefix = session.prefix;
  const [rows, l0] = prefix.shape as [number, number];
  if (rows !== pl.n * expand) {
    throw new Error(`${fn}: the model's decoder session has ${rows} rows, expected ${pl.n} inputs × ${expand}`);
  }
  const maxPos = model.config.maxPositionEmbeddings;
  if (l0 + pl.maxNew > maxPos) {
    const what = 'startDecoding' in model ? 'decoder prefix' : 'prompt';
    throw new RangeError(`${fn}: ${what} (${l0}) + maxNewTokens (${pl.maxNew}) exceeds the model's ${maxPos} positions`);
  }
  pl.processors.prefixLen = l0;
  pl.processors.maxLength = l0 + pl.maxNew;
  const flat = prefix.contiguous().data;
  const seqs = Array.from({ length: rows }, (_, r) => Array.from(flat.subarray(r * l0, (r + 1) * l0)));
  if (pl.numBeams === 1) return yield* sampleLoop(pl, session, seqs);
  if (pl.maxNew === 0) {
    const kept = seqs.filter((_, r) => r % pl.numBeams < (pl.doSample ? 1 : pl.numReturn));
    return { sequences: toTensor(kept, l0, pl.padTokenId), sequencesScores: new Float32Array(kept.length) };
  }
  return yield* beamLoop(pl, session, seqs);
}

/** The model's generation defaults under the given options (an option set to undefined keeps the default). */
function withDefaults(fn: string, defaults: GenerationDefaults | undefined, o: GenerationOptions): GenerationOptions {
  if (o === null || typeof o !== 'object') throw new TypeError(`${fn}: options must be an object, got ${o === null ? 'null' : typeof o}`);
  if (!defaults) return o;
  const merged: Record<string, unknown> = { ...defaults };
  for (const [key, value] of Object.entries(o)) if (value !== undefined) merged[key] = value;
  return merged as unknown as GenerationOptions;
}

// Generation never needs gradients (transformers' generate runs under torch.no_grad()): every step runs with grad
// mode off, so a model whose parameters require grad decodes as fast as one that does not.
function runSync(g: Generator<StepWork, GenerationOutput, Tensor<'float32'>>): GenerationOutput {
  return noGrad(() => {
    let r = g.next();
    while (!r.done) r = g.next(r.value());
    return r.value;
  });
}

async function runAsyncLoop(backend: Backend, g: Generator<StepWork, GenerationOutput, Tensor<'float32'>>): Promise<GenerationOutput> {
  let r = noGrad(() => g.next());
  while (!r.done) {
    const step = r.value;
    const logits = await noGrad(() => runAsyncOn(backend, step));
    r = noGrad(() => g.next(logits));
  }
  return r.value;
}

/** Generates on the calling thread: `[batch · numReturnSequences, prefix + new]`. */
export function generate(model: GenerationModel, inputIds: Tensor<'int32'>, options: GenerationOptions): Tensor<'int32'> {
  return runSync(loop('generate', model, inputIds, options)).sequences;
}

/** Generates with every step's kernels off the JS thread (`runAsync`; on a non-native backend, synchronously). */
export async function generateAsync(
  model: GenerationModel, inputIds: Tensor<'int32'>, options: GenerationOptions,
): Promise<Tensor<'int32'>> {
  return (await runAsyncLoop(model.backend, loop('generateAsync', model, inputIds, options))).sequences;
}

/** {@link generate} with beam search's sequence scores (Hugging Face's `sequences_scores`). */
export function generateWithScores(model: GenerationModel, inputIds: Tensor<'int32'>, options: GenerationOptions): GenerationOutput {
  return runSync(loop('generateWithScores', model, inputIds, options));
}

/** {@link generateAsync} with beam search's sequence scores. */
export function generateWithScoresAsync(
  model: GenerationModel, inputIds: Tensor<'int32'>, options: GenerationOptions,
): Promise<GenerationOutput> {
  return runAsyncLoop(model.backend, loop('generateWithScoresAsync', model, inputIds, options));
}
