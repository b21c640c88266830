/**
 * `AutoTokenizer` and the callable tokenizer it returns: Hugging Face's
 * `tokenizer(...)`, `encode` and `decode` on attnode tensors.
 *
 * The engine is `@huggingface/tokenizers` (pure JavaScript, synchronous, no
 * binary): it runs the normalizer, pre-tokenizer, model, post-processor and
 * decoder of a `tokenizer.json`. This module owns what the engine leaves to its
 * caller: folder loading and the older file formats (`load.ts`), pairs,
 * truncation, padding, batching, and int32 tensors.
 */
import { Tokenizer as Engine } from '@huggingface/tokenizers';
import { Tensor, tensor } from '../tensor';
import { readTokenizerFolder, tokenContent, type JsonObject, type TokenizerFiles } from './load';

/**
 * The engine's internal steps the wrapper drives directly: encoding a text
 * without special tokens (so truncation can act before the post-processor,
 * as Hugging Face's does) and the post-processor itself. The engine version
 * is pinned in package.json because of this.
 */
interface EngineInternals {
  encode_text(text: string): string[];
  post_processor: ((a: string[], b: string[] | null, addSpecial: boolean) => {
    tokens: string[]; token_type_ids?: number[]; tokens_pair?: string[] | null;
  }) | null;
  added_tokens_map: Map<string, { id: number }>;
  model: { tokens_to_ids: Map<string, number>; unk_token_id: number | undefined; vocab: string[] };
  special_tokens: string[];
}

/**
 * Where the engine's output differs from Hugging Face's Rust `tokenizers` (the reference the tests hold it to),
 * its objects are adjusted here, once per tokenizer:
 *
 * - Unigram with `byte_fallback`: the engine maps pieces outside the vocabulary to `<unk>`; Rust spells them
 *   as their UTF-8 bytes `<0xNN>` (when the vocabulary has every byte of the piece), as SentencePiece does.
 * - The ByteFallback decoder: the engine's `TextDecoder` drops a leading U+FEFF and replaces an invalid byte run
 *   by one U+FFFD per maximal subpart; Rust keeps U+FEFF and, when a byte run is not valid UTF-8, gives one U+FFFD
 *   per byte.
 */
function alignWithReference(engine: EngineInternals, tj: JsonObject): void {
  const model = tj.model as JsonObject;
  if (model.type === 'Unigram' && model.byte_fallback === true) {
    const m = engine.model as unknown as { encode(tokens: string[]): string[] };
    const encode = m.encode.bind(m);
    const vocab = engine.model.tokens_to_ids;
    const utf8 = new TextEncoder();
    const byteToken = (b: number) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
    m.encode = (tokens: string[]): string[] => {
      const out: string[] = [];
      for (const piece of encode(tokens)) {
        if (vocab.has(piece)) { out.push(piece); continue; }
        const bytes = Array.from(utf8.encode(piece), byteToken);
        if (bytes.every((b) => vocab.has(b))) out.push(...bytes);
        else out.push(piece);
      }
      return out;
    };
  }
  const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  const rustLike = {
    decode(bytes: Uint8Array): string {
      try {
        return strict.decode(bytes);
      } catch {
        return '\ufffd'.repeat(bytes.length);
      }
    },
  };
  const visit = (d: unknown): void => {
    if (typeof d !== 'function' && (typeof d !== 'object' || d === null)) return;
    const dec = d as { config?: { type?: string }; text_decoder?: unknown; decoders?: unknown[] };
    if (dec.config?.type === 'ByteFallback' && dec.text_decoder) dec.text_decoder = rustLike;
    if (Array.isArray(dec.decoders)) dec.decoders.forEach(visit);
  };
  visit((engine as unknown as { decoder: unknown }).decoder);
}

/** Options of {@link PreTrainedTokenizer.encode}. */
export interface EncodeOptions {
  /** Add the tokenizer's special tokens (BOS, `[CLS]`/`[SEP]`, …) as its post-processor says. Default true. */
  addSpecialTokens?: boolean;
  /** A second sequence (sentence pairs). */
  textPair?: string;
  /** Truncate to `maxLength` (or `model_max_length`). Default false. */
  truncation?: boolean;
  maxLength?: number;
}

/** Options of {@link PreTrainedTokenizer.decode}. */
export interface DecodeOptions {
  /** Drop special tokens from the output. Default false. */
  skipSpecialTokens?: boolean;
  /**
   * transformers' clean-up of spaces before punctuation and contractions (`" ."` → `"."`).
   * Default: the folder's `clean_up_tokenization_spaces`, false when it does not say.
   */
  cleanUpTokenizationSpaces?: boolean;
}

/** Options of calling the tokenizer (Hugging Face's `__call__`). */
export interface CallOptions {
  /** Second sequence(s): one per text. */
  textPair?: string | string[];
  /** `true`/`'longest'`: pad to the longest row; `'max_length'`: to `maxLength`; `false`: rows must be equal. Default false. */
  padding?: boolean | 'longest' | 'max_length';
  /** Truncate to `maxLength` (default `model_max_length`); pairs lose tokens longest-first. Default false. */
  truncation?: boolean;
  maxLength?: number;
  /** Default true. */
  addSpecialTokens?: boolean;
}

/** What calling the tokenizer returns: int32 tensors `[B, L]`. */
export interface BatchEncoding {
  inputIds: Tensor<'int32'>;
  /** 1 for a token, 0 for padding (Hugging Face's convention). */
  attentionMask: Tensor<'int32'>;
  /** Segment ids, for tokenizers whose models take them (BERT-style). */
  tokenTypeIds?: Tensor<'int32'>;
}

/** A loaded tokenizer: callable like Hugging Face's, with `encode`/`decode`. */
export interface PreTrainedTokenizer {
  (text: string | string[], options?: CallOptions): BatchEncoding;
  encode(text: string, options?: EncodeOptions): number[];
  decode(ids: readonly number[] | Int32Array, options?: DecodeOptions): string;
  /** Texts to ids, one array per text (no padding). */
  encodeBatch(texts: string[], options?: EncodeOptions): number[][];
  /** The token string of an id, or undefined. */
  idToToken(id: number): string | undefined;
  /** The id of a token string (added tokens included), or undefined. */
  tokenToId(token: string): number | undefined;
  /** Number of ids, added tokens included. */
  readonly vocabSize: number;
  readonly padTokenId: number | undefined;
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number | undefined;
  readonly unkTokenId: number | undefined;
  readonly paddingSide: 'left' | 'right';
  readonly truncationSide: 'left' | 'right';
  /** `model_max_length`, or undefined when the folder sets none (or transformers' "very large" placeholder). */
  readonly modelMaxLength: number | undefined;
  /** The ids of all special tokens. */
  readonly allSpecialIds: readonly number[];
  /** Whether calling the tokenizer returns `tokenTypeIds`. */
  readonly returnsTokenTypeIds: boolean;
  /** The file the tokenizer was read from. */
  readonly source: string;
}

function checkText(fn: string, arg: string, v: unknown): asserts v is string {
  if (typeof v !== 'string') {
    throw new TypeError(`${fn}: argument '${arg}' must be a string, got ${v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v}`);
  }
}

function checkBool(fn: string, arg: string, v: unknown): void {
  if (v !== undefined && typeof v !== 'boolean') throw new TypeError(`${fn}: option '${arg}' must be a boolean, got ${typeof v}`);
}

function checkMaxLength(fn: string, v: unknown): void {
  if (v === undefined) return;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw new RangeError(`${fn}: option 'maxLength' must be a positive integer, got ${String(v)}`);
  }
}

/** Model classes whose models take token type ids (transformers' `model_input_names`). */
const TOKEN_TYPE_CLASSES = /^(Bert|Electra|Albert|Funnel|LayoutLM|SqueezeBert|MobileBert|ConvBert|XLNet|Deberta|RemBert|Nezha|Ernie)/i;

/**
 * Hugging Face's "longest first" truncation of one sequence or a pair to
 * `budget` tokens (the length without the special tokens): the longer
 * sequence loses tokens first (the Rust implementation's split: the shorter
 * keeps its length up to half the budget).
 */
function truncatePair(a: string[], b: string[] | null, budget: number, side: 'left' | 'right'): [string[], string[] | null] {
  const cut = (t: string[], n: number) => (t.length <= n ? t : side === 'right' ? t.slice(0, n) : t.slice(t.length - n));
  if (b === null) return [cut(a, budget), null];
  if (a.length + b.length <= budget) return [a, b];
  const half = Math.floor(budget / 2);
  let na: number;
  let nb: number;
  if (a.length <= b.length) {
    na = Math.min(a.length, half);
    nb = budget - na;
  } else {
    nb = Math.min(b.length, half);
    na = budget - nb;
  }
  return [cut(a, na), cut(b, nb)];
}

/** Creates the tokenizer object from the files of one folder. */
export function createTokenizer(files: TokenizerFiles): PreTrainedTokenizer {
  const { config, source } = files;
  const cleanUp = config.clean_up_tokenization_spaces === true;
  let engine: Engine;
  try {
    // The engine's own clean-up is transformers' legacy default (on); this wrapper decides per call.
    engine = new Engine(files.tokenizerJson, { ...config, clean_up_tokenization_spaces: false });
  } catch (e) {
    throw new Error(`${source}: the tokenizer cannot be built (${(e as Error)?.message ?? String(e)})`);
  }
  const internals = engine as unknown as EngineInternals;
  alignWithReference(internals, files.tokenizerJson);
  const idOf = (t: string): number | undefined => internals.added_tokens_map.get(t)?.id ?? internals.model.tokens_to_ids.get(t);

  const specialId = (key: string): number | undefined => {
    const t = tokenContent(config[key]);
    return t === undefined ? undefined : idOf(t);
  };
  const padTokenId = specialId('pad_token');
  const maxLen = config.model_max_length;
  // transformers writes int(1e30) when a model has no limit; treat anything that large as none.
  const modelMaxLength = typeof maxLen === 'number' && Number.isInteger(maxLen) && maxLen > 0 && maxLen < 1e12 ? maxLen : undefined;
  const paddingSide = config.padding_side === 'left' ? 'left' : 'right';
  const truncationSide = config.truncation_side === 'left' ? 'left' : 'right';
  const tj = files.tokenizerJson;
  const post = tj.post_processor as JsonObject | null;
  const inputNames = config.model_input_names;
  let returnsTokenTypeIds: boolean;
  if (Array.isArray(inputNames)) returnsTokenTypeIds = inputNames.includes('token_type_ids');
  else if (typeof config.tokenizer_class === 'string') returnsTokenTypeIds = TOKEN_TYPE_CLASSES.test(config.tokenizer_class);
  else returnsTokenTypeIds = post?.type === 'BertProcessing' || (post?.type === 'TemplateProcessing' && JSON.stringify(post.pair ?? []).includes('"type_id":1'));

  const specialIds = new Set<number>();
  for (const t of internals.special_tokens) {
    const id = idOf(t);
    if (id !== undefined) specialIds.add(id);
  }
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token']) {
    const id = specialId(key);
    if (id !== undefined) specialIds.add(id);
  }
  const vocabSize = internals.model.vocab.length;

  // The number of tokens the post-processor adds, for the truncation budget.
  const numAdded = (pair: boolean): number => {
    if (!internals.post_processor) return 0;
    const r = internals.post_processor([], pair ? [] : null, true);
    return r.tokens.length + (r.tokens_pair?.length ?? 0);
  };
  const addedSingle = numAdded(false);
  const addedPair = numAdded(true);

  function encodeFull(fn: string, text: string, pair: string | undefined, addSpecial: boolean, limit: number | undefined): { ids: number[]; types: number[] } {
    let a = internals.encode_text(text) ?? [];
    let b = pair === undefined ? null : internals.encode_text(pair) ?? [];
    if (limit !== undefined) {
      const budget = limit - (addSpecial ? (b === null ? addedSingle : addedPair) : 0);
      if (budget < 0) throw new RangeError(`${fn}: option 'maxLength' ${limit} is shorter than the ${limit - budget} special tokens the tokenizer adds`);
      [a, b] = truncatePair(a, b, budget, truncationSide);
    }
    let tokens: string[];
    let types: number[] | undefined;
    if (internals.post_processor) {
      const r = internals.post_processor(a, b, addSpecial);
      // The engine's ByteLevel post-processor hands the pair back separately; Hugging Face concatenates.
      tokens = r.tokens_pair ? r.tokens.concat(r.tokens_pair) : r.tokens;
      types = r.token_type_ids;
    } else {
      tokens = b === null ? a : a.concat(b);
    }
    if (!types || types.length !== tokens.length) {
      types = new Array<number>(tokens.length).fill(0);
      if (b !== null && !internals.post_processor) types.fill(1, a.length);
    }
    const unk = internals.model.unk_token_id;
    const ids = tokens.map((t) => {
      const id = idOf(t) ?? unk;
      if (id === undefined) throw new Error(`${source}: token ${JSON.stringify(t)} has no id and the model has no unk token`);
      return id;
    });
    return { ids, types };
  }

  function resolveLimit(fn: string, truncation: boolean | undefined, maxLength: number | undefined): number | undefined {
    checkBool(fn, 'truncation', truncation);
    checkMaxLength(fn, maxLength);
    if (!truncation) return undefined;
    return maxLength ?? modelMaxLength;
  }

  function encode(text: string, options: EncodeOptions = {}): number[] {
    checkText('encode', 'text', text);
    if (options.textPair !== undefined) checkText('encode', 'textPair', options.textPair);
    checkBool('encode', 'addSpecialTokens', options.addSpecialTokens);
    const limit = resolveLimit('encode', options.truncation, options.maxLength);
    return encodeFull('encode', text, options.textPair, options.addSpecialTokens ?? true, limit).ids;
  }

  function decode(ids: readonly number[] | Int32Array, options: DecodeOptions = {}): string {
    if (!Array.isArray(ids) && !(ids instanceof Int32Array)) {
      throw new TypeError(`decode: argument 'ids' must be an array of token ids or an Int32Array, got ${ids === null ? 'null' : typeof ids}`);
    }
    checkBool('decode', 'skipSpecialTokens', options.skipSpecialTokens);
    checkBool('decode', 'cleanUpTokenizationSpaces', options.cleanUpTokenizationSpaces);
    const list = Array.from(ids as ArrayLike<number>);
    for (let i = 0; i < list.length; i++) {
      const id = list[i]!;
      if (!Number.isInteger(id) || id < 0 || internals.model.vocab[id] === undefined) {
        throw new RangeError(`decode: argument 'ids' must hold token ids in [0, ${vocabSize}), got ${String(id)} at index ${i}`);
      }
    }
    const kept = options.skipSpecialTokens ? list.filter((id) => !specialIds.has(id)) : list;
    if (kept.length === 0) return '';
    return engine.decode(kept, {
      skip_special_tokens: false,
      clean_up_tokenization_spaces: options.cleanUpTokenizationSpaces ?? cleanUp,
    });
  }

  function encodeBatch(texts: string[], options: EncodeOptions = {}): number[][] {
    if (!Array.isArray(texts)) throw new TypeError(`encodeBatch: argument 'texts' must be an array of strings, got ${typeof texts}`);
    return texts.map((t, i) => {
      checkText('encodeBatch', `texts[${i}]`, t);
      return encode(t, { ...options, textPair: undefined });
    });
  }

  function call(text: string | string[], options: CallOptions = {}): BatchEncoding {
    const fn = 'tokenizer';
    const texts = Array.isArray(text) ? text : [text];
    if (!Array.isArray(text)) checkText(fn, 'text', text);
    texts.forEach((t, i) => checkText(fn, `text[${i}]`, t));
    if (texts.length === 0) throw new RangeError(`${fn}: argument 'text' must hold at least one string, got an empty array`);
    let pairs: (string | undefined)[];
    const tp = options.textPair;
    if (tp === undefined) pairs = texts.map(() => undefined);
    else if (Array.isArray(tp)) {
      if (!Array.isArray(text)) throw new TypeError(`${fn}: option 'textPair' must be a string when 'text' is a string, got an array`);
      if (tp.length !== texts.length) throw new RangeError(`${fn}: option 'textPair' must have one entry per text (${texts.length}), got ${tp.length}`);
      tp.forEach((t, i) => checkText(fn, `textPair[${i}]`, t));
      pairs = tp;
    } else {
      checkText(fn, 'textPair', tp);
      if (Array.isArray(text)) throw new TypeError(`${fn}: option 'textPair' must be an array when 'text' is an array, got a string`);
      pairs = [tp];
    }
    const padding = options.padding ?? false;
    if (padding !== true && padding !== false && padding !== 'longest' && padding !== 'max_length') {
      throw new TypeError(`${fn}: option 'padding' must be true, false, 'longest' or 'max_length', got ${JSON.stringify(padding)}`);
    }
    checkBool(fn, 'addSpecialTokens', options.addSpecialTokens);
    const limit = resolveLimit(fn, options.truncation, options.maxLength);
    const rows = texts.map((t, i) => encodeFull(fn, t, pairs[i], options.addSpecialTokens ?? true, limit));

    let width = Math.max(...rows.map((r) => r.ids.length));
    if (padding === 'max_length') {
      const target = options.maxLength ?? modelMaxLength;
      if (target === undefined) throw new RangeError(`${fn}: padding 'max_length' needs option 'maxLength' (the folder sets no model_max_length)`);
      width = Math.max(width, target);
    } else if (padding === false) {
      const lengths = new Set(rows.map((r) => r.ids.length));
      if (lengths.size > 1) {
        throw new RangeError(`${fn}: the texts have different lengths (${[...lengths].join(', ')} tokens); pass padding: true to make one [B, L] tensor`);
      }
    }
    const needsPad = rows.some((r) => r.ids.length < width);
    if (needsPad && padTokenId === undefined) {
      throw new Error(`${source}: asked to pad, but the tokenizer has no pad_token (set one in tokenizer_config.json)`);
    }
    const B = rows.length;
    const ids = new Int32Array(B * width);
    const mask = new Int32Array(B * width);
    const types = new Int32Array(B * width);
    rows.forEach((r, b) => {
      const off = b * width + (paddingSide === 'left' ? width - r.ids.length : 0);
      if (padTokenId !== undefined) ids.fill(padTokenId, b * width, (b + 1) * width);
      ids.set(r.ids, off);
      mask.fill(1, off, off + r.ids.length);
      types.set(r.types, off);
    });
    const out: BatchEncoding = { inputIds: tensor(ids, [B, width]), attentionMask: tensor(mask, [B, width]) };
    if (returnsTokenTypeIds) out.tokenTypeIds = tensor(types, [B, width]);
    return out;
  }

  const tok = call as PreTrainedTokenizer;
  const props: Record<string, unknown> = {
    encode, decode, encodeBatch,
    idToToken: (id: number) => internals.model.vocab[id],
    tokenToId: (t: string) => idOf(t),
    vocabSize, padTokenId,
    bosTokenId: specialId('bos_token'), eosTokenId: specialId('eos_token'),
    unkTokenId: specialId('unk_token') ?? internals.model.unk_token_id,
    paddingSide, truncationSide, modelMaxLength,
    allSpecialIds: Object.freeze([...specialIds].sort((x, y) => x - y)),
    returnsTokenTypeIds, source,
  };
  for (const [k, v] of Object.entries(props)) Object.defineProperty(tok, k, { value: v, enumerable: true });
  return tok;
}

/** Loads Hugging Face tokenizers from model folders. */
export const AutoTokenizer = {
  /**
   * The tokenizer of a Hugging Face model folder: `tokenizer.json` (with
   * `tokenizer_config.json` and `special_tokens_map.json` when present), else
   * BERT's `vocab.txt`, else GPT-2/RoBERTa's `vocab.json` + `merges.txt`.
   *
   * @returns null when the folder has no tokenizer files at all (a model folder may ship without one).
   * @throws Error naming the file and field for malformed, truncated or incomplete tokenizer files
   *   (e.g. `vocab.json` without `merges.txt`, an unknown `model.type`, a missing `model.vocab`).
   */
  fromPretrained(dir: string): PreTrainedTokenizer | null {
    const files = readTokenizerFolder(dir);
    return files === null ? null : createTokenizer(files);
  },
};
