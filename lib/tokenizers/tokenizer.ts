/**
 * `AutoTokenizer` and the callable tokenizer it returns: Hugging Face's
 * `tokenizer(...)`, `encode` and `decode` on attnode tensors.
 *
 * The engine is `@huggingface/tokenizers` (pure JavaScript, synchronous, no
 * binary): it runs the normalizer, pre-tokenizer, model, post-processor and
 * decoder of a `tokenizer.json`. This module owns what the engine leaves to its
 * caller: folder loading and the older file formats (`load.ts`), pairs,
 * truncation, padding, batching, and int32 tensors. Marian folders have no
 * `tokenizer.json` form (transformers' MarianTokenizer is a slow tokenizer);
 * their rules live in `marian.ts` and plug into the same wrapper as a
 * {@link TokenizerCore}.
 */
import {
  MetaspacePreTokenizer, Normalizer, SequencePreTokenizer, Tokenizer as Engine,
} from '@huggingface/tokenizers';
import { Tensor, tensor } from '../tensor';
import { readTokenizerFolder, tokenContent, type JsonObject, type JsonTokenizerFiles, type TokenizerFiles } from './load';
import { createMarianCore } from './marian';
import { PrecompiledCharsmap, PrecompiledNormalizer } from './precompiled';

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
 * - The Precompiled normalizer: the engine ignores `precompiled_charsmap` and runs NFKC plus a few replacements;
 *   Rust applies the charsmap's rules per grapheme cluster (`precompiled.ts`).
 * - The Strip normalizer: the engine trims JavaScript's whitespace (U+FEFF, not U+0085); Rust trims Unicode
 *   White_Space (U+0085, not U+FEFF).
 * - Metaspace: the engine's pre-tokenizer never splits and ignores the older `add_prefix_space` field; Rust splits
 *   before every `▁` (unless `split: false`). The engine's decoder drops only a leading `▁` of the first token;
 *   Rust drops every `▁` of the first token (unless the prepend scheme is `never`).
 */
function alignWithReference(engine: EngineInternals, tj: JsonObject, source: string): void {
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
    if (dec.config?.type === 'Metaspace') {
      const rep = (dec.config as JsonObject).replacement as string | undefined ?? '\u2581';
      const first = prependScheme(dec.config as JsonObject) !== 'never';
      (dec as unknown as { decode_chain(t: string[]): string[] }).decode_chain = (tokens) =>
        tokens.map((t, i) => t.replaceAll(rep, i === 0 && first ? '' : ' '));
    }
    if (Array.isArray(dec.decoders)) dec.decoders.forEach(visit);
  };
  const e = engine as unknown as { decoder: unknown; normalizer: Normalizer | null; pre_tokenizer: unknown };
  visit(e.decoder);
  e.normalizer = alignNormalizer(e.normalizer, source);
  alignPreTokenizer(e.pre_tokenizer, tj.pre_tokenizer as JsonObject | null);
}

/** Unicode White_Space, which Rust's `char::is_whitespace` (and so the Strip normalizer) uses. */
const WHITE_SPACE = '[\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const LEADING_WS = new RegExp(`^${WHITE_SPACE}+`);
const TRAILING_WS = new RegExp(`${WHITE_SPACE}+$`);

/** A Metaspace component's prepend scheme; files written before tokenizers 0.19 say `add_prefix_space` instead. */
function prependScheme(config: JsonObject): string {
  if (typeof config.prepend_scheme === 'string') return config.prepend_scheme;
  return config.add_prefix_space === false ? 'never' : 'always';
}

function alignNormalizer(n: Normalizer | null, source: string): Normalizer | null {
  if (n === null) return n;
  const config = (n as unknown as { config: JsonObject }).config ?? {};
  if (config.type === 'Sequence') {
    const list = (n as unknown as { normalizers: (Normalizer | null)[] }).normalizers;
    list.forEach((child, i) => {
      list[i] = alignNormalizer(child, source);
    });
  } else if (config.type === 'Precompiled' && typeof config.precompiled_charsmap === 'string' && config.precompiled_charsmap !== '') {
    const blob = new Uint8Array(Buffer.from(config.precompiled_charsmap, 'base64'));
    return new PrecompiledNormalizer(new PrecompiledCharsmap(blob, `${source}: field 'normalizer.precompiled_charsmap'`));
  } else if (config.type === 'Strip') {
    const left = config.strip_left === true;
    const right = config.strip_right === true;
    (n as unknown as { normalize(t: string): string }).normalize = (t) => {
      let out = left ? t.replace(LEADING_WS, '') : t;
      if (right) out = out.replace(TRAILING_WS, '');
      return out;
    };
  }
  return n;
}

function alignPreTokenizer(p: unknown, config: JsonObject | null): void {
  if (p === null || config === null) return;
  if (p instanceof SequencePreTokenizer && Array.isArray(config.pretokenizers)) {
    const children = (p as unknown as { tokenizers: unknown[] }).tokenizers;
    children.forEach((c, i) => alignPreTokenizer(c, (config.pretokenizers as JsonObject[])[i] ?? null));
  } else if (p instanceof MetaspacePreTokenizer) {
    const m = p as unknown as { prepend_scheme: string; replacement: string; pre_tokenize_text(t: string, o?: unknown): string[] };
    m.prepend_scheme = prependScheme(config);
    if (config.split === false) return;
    const whole = m.pre_tokenize_text.bind(m);
    const rep = m.replacement;
    // Split before each replacement character, which starts the next piece (Rust's MergedWithNext).
    m.pre_tokenize_text = (t, o) => whole(t, o).flatMap((s) => {
      const out: string[] = [];
      let start = 0;
      for (let i = s.indexOf(rep, 1); i !== -1; i = s.indexOf(rep, i + rep.length)) {
        out.push(s.slice(start, i));
        start = i;
      }
      out.push(s.slice(start));
      return out.filter((x) => x.length > 0);
    });
  }
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
  /**
   * Encode target-side text (transformers' `text_target`): Marian's `target.spm` and, with `separate_vocabs`,
   * `target_vocab.json`. Only for tokenizers with `hasTargetSide`. Default false.
   */
  target?: boolean;
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
  /**
   * Marian: join pieces with `source.spm`'s decoder instead of `target.spm`'s (transformers'
   * `use_source_tokenizer`). Only for tokenizers with `hasTargetSide`. Default false.
   */
  useSourceTokenizer?: boolean;
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
  /** Encode target-side text (Marian labels, transformers' `text_target`); see {@link EncodeOptions.target}. */
  target?: boolean;
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
  /** Number of ids, added tokens included (Marian: the entries of `vocab.json`, as transformers counts). */
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
  /**
   * Whether the tokenizer has a separate target side (Marian: `encode(text, { target: true })` for labels,
   * `decode` uses `target.spm`). False for every `tokenizer.json`-based tokenizer.
   */
  readonly hasTargetSide: boolean;
  /** Marian's language codes (`>>fra<<` …, the `vocab.json` entries of that form); empty otherwise. */
  readonly languageCodes: readonly string[];
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
function truncatePair<U>(a: U[], b: U[] | null, budget: number, side: 'left' | 'right'): [U[], U[] | null] {
  const cut = (t: U[], n: number) => (t.length <= n ? t : side === 'right' ? t.slice(0, n) : t.slice(t.length - n));
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

/**
 * The tokenizer-specific part behind the common wrapper (argument checks, truncation, padding, batching,
 * tensors): the engine on a `tokenizer.json`, or Marian's rules. `U` is whatever one text encodes to before the
 * special tokens are added (token strings for the engine, ids for Marian).
 */
export interface TokenizerCore<U> {
  /** The file the tokenizer was read from. */
  readonly source: string;
  /** One text, without special tokens. */
  encodeText(text: string, target: boolean): U[];
  /** Adds the special tokens (when asked) and gives ids and token type ids. */
  finish(a: U[], b: U[] | null, addSpecial: boolean): { ids: number[]; types: number[] };
  /** How many tokens `finish` adds for one text or a pair. */
  numAdded(pair: boolean): number;
  /** Ids (checked to lie in [0, idLimit)) to text. */
  decode(ids: number[], skipSpecialTokens: boolean, cleanUp: boolean, useSource: boolean): string;
  idToToken(id: number): string | undefined;
  tokenToId(token: string): number | undefined;
  readonly idLimit: number;
  readonly vocabSize: number;
  readonly specialIds: ReadonlySet<number>;
  readonly returnsTokenTypeIds: boolean;
  readonly hasTargetSide: boolean;
  readonly languageCodes: readonly string[];
  /** Used when the folder's config does not name the token (Marian's defaults). */
  readonly defaults: { padTokenId?: number; eosTokenId?: number; unkTokenId?: number; modelMaxLength?: number };
}

/** The engine on a `tokenizer.json` (shipped or converted by load.ts). */
function engineCore(files: JsonTokenizerFiles): TokenizerCore<string> {
  const { config, source } = files;
  let engine: Engine;
  try {
    // The engine's own clean-up is transformers' legacy default (on); this wrapper decides per call.
    engine = new Engine(files.tokenizerJson, { ...config, clean_up_tokenization_spaces: false });
  } catch (e) {
    throw new Error(`${source}: the tokenizer cannot be built (${(e as Error)?.message ?? String(e)})`);
  }
  const internals = engine as unknown as EngineInternals;
  alignWithReference(internals, files.tokenizerJson, source);
  const idOf = (t: string): number | undefined => internals.added_tokens_map.get(t)?.id ?? internals.model.tokens_to_ids.get(t);
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
    const t = tokenContent(config[key]);
    const id = t === undefined ? undefined : idOf(t);
    if (id !== undefined) specialIds.add(id);
  }

  const numAdded = (pair: boolean): number => {
    if (!internals.post_processor) return 0;
    const r = internals.post_processor([], pair ? [] : null, true);
    return r.tokens.length + (r.tokens_pair?.length ?? 0);
  };
  const addedSingle = numAdded(false);
  const addedPair = numAdded(true);

  return {
    source,
    encodeText: (text) => internals.encode_text(text) ?? [],
    finish(a, b, addSpecial) {
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
    },
    numAdded: (pair) => (pair ? addedPair : addedSingle),
    decode(ids, skipSpecialTokens, cleanUp) {
      const kept = skipSpecialTokens ? ids.filter((id) => !specialIds.has(id)) : ids;
      if (kept.length === 0) return '';
      return engine.decode(kept, { skip_special_tokens: false, clean_up_tokenization_spaces: cleanUp });
    },
    idToToken: (id) => internals.model.vocab[id],
    tokenToId: idOf,
    idLimit: internals.model.vocab.length,
    vocabSize: internals.model.vocab.length,
    specialIds,
    returnsTokenTypeIds,
    hasTargetSide: false,
    languageCodes: [],
    defaults: { unkTokenId: internals.model.unk_token_id },
  };
}

/** Marian's rules (marian.ts) as a core: ids come out of `encodeText`, `</s>` is appended. */
function marianCore(files: Extract<TokenizerFiles, { kind: 'marian' }>): TokenizerCore<number> {
  const m = createMarianCore(files);
  return {
    source: files.source,
    encodeText: (text, target) => m.encodeText(text, target),
    finish(a, b, addSpecial) {
      const ids = b === null ? a.slice() : a.concat(b);
      if (addSpecial) ids.push(m.eosTokenId);
      return { ids, types: new Array<number>(ids.length).fill(0) };
    },
    numAdded: () => 1,
    decode: (ids, skip, cleanUp, useSource) => m.decode(ids, skip, cleanUp, useSource),
    idToToken: m.idToToken,
    tokenToId: m.tokenToId,
    idLimit: m.idLimit,
    vocabSize: m.vocabSize,
    specialIds: m.specialIds,
    returnsTokenTypeIds: false,
    hasTargetSide: true,
    languageCodes: m.languageCodes,
    // MarianTokenizer's defaults: pad <pad>, eos </s>, unk <unk>, model_max_length 512.
    defaults: { padTokenId: m.padTokenId, eosTokenId: m.eosTokenId, unkTokenId: m.unkTokenId, modelMaxLength: 512 },
  };
}

/** Creates the tokenizer object from the files of one folder. */
export function createTokenizer(files: TokenizerFiles): PreTrainedTokenizer {
  return files.kind === 'marian' ? wrapCore(marianCore(files), files.config) : wrapCore(engineCore(files), files.config);
}

/** The common tokenizer API over a core. */
function wrapCore<U>(core: TokenizerCore<U>, config: JsonObject): PreTrainedTokenizer {
  const { source } = core;
  const cleanUp = config.clean_up_tokenization_spaces === true;
  const specialId = (key: string): number | undefined => {
    const t = tokenContent(config[key]);
    return t === undefined ? undefined : core.tokenToId(t);
  };
  const padTokenId = specialId('pad_token') ?? core.defaults.padTokenId;
  const maxLen = config.model_max_length;
  // transformers writes int(1e30) when a model has no limit; treat anything that large as none.
  const modelMaxLength = typeof maxLen === 'number' && Number.isInteger(maxLen) && maxLen > 0
    ? (maxLen < 1e12 ? maxLen : undefined)
    : core.defaults.modelMaxLength;
  const paddingSide = config.padding_side === 'left' ? 'left' : 'right';
  const truncationSide = config.truncation_side === 'left' ? 'left' : 'right';

  const checkTarget = (fn: string, target: unknown, option = 'target'): boolean => {
    checkBool(fn, option, target);
    if (target === true && !core.hasTargetSide) {
      throw new TypeError(`${fn}: option '${option}' needs a tokenizer with a target side (a Marian folder); ${source} has one vocabulary`);
    }
    return target === true;
  };

  function encodeFull(fn: string, text: string, pair: string | undefined, addSpecial: boolean, limit: number | undefined, target: boolean): { ids: number[]; types: number[] } {
    let a = core.encodeText(text, target);
    let b = pair === undefined ? null : core.encodeText(pair, target);
    if (limit !== undefined) {
      const budget = limit - (addSpecial ? core.numAdded(b !== null) : 0);
      if (budget < 0) throw new RangeError(`${fn}: option 'maxLength' ${limit} is shorter than the ${limit - budget} special tokens the tokenizer adds`);
      [a, b] = truncatePair(a, b, budget, truncationSide);
    }
    return core.finish(a, b, addSpecial);
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
    const target = checkTarget('encode', options.target);
    const limit = resolveLimit('encode', options.truncation, options.maxLength);
    return encodeFull('encode', text, options.textPair, options.addSpecialTokens ?? true, limit, target).ids;
  }

  function decode(ids: readonly number[] | Int32Array, options: DecodeOptions = {}): string {
    if (!Array.isArray(ids) && !(ids instanceof Int32Array)) {
      throw new TypeError(`decode: argument 'ids' must be an array of token ids or an Int32Array, got ${ids === null ? 'null' : typeof ids}`);
    }
    checkBool('decode', 'skipSpecialTokens', options.skipSpecialTokens);
    checkBool('decode', 'cleanUpTokenizationSpaces', options.cleanUpTokenizationSpaces);
    const useSource = checkTarget('decode', options.useSourceTokenizer, 'useSourceTokenizer');
    const list = Array.from(ids as ArrayLike<number>);
    for (let i = 0; i < list.length; i++) {
      const id = list[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= core.idLimit || (!core.hasTargetSide && core.idToToken(id) === undefined)) {
        throw new RangeError(`decode: argument 'ids' must hold token ids in [0, ${core.idLimit}), got ${String(id)} at index ${i}`);
      }
    }
    return core.decode(list, options.skipSpecialTokens ?? false, options.cleanUpTokenizationSpaces ?? cleanUp, useSource);
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
    const target = checkTarget(fn, options.target);
    const limit = resolveLimit(fn, options.truncation, options.maxLength);
    const rows = texts.map((t, i) => encodeFull(fn, t, pairs[i], options.addSpecialTokens ?? true, limit, target));

    let width = Math.max(...rows.map((r) => r.ids.length));
    if (padding === 'max_length') {
      const goal = options.maxLength ?? modelMaxLength;
      if (goal === undefined) throw new RangeError(`${fn}: padding 'max_length' needs option 'maxLength' (the folder sets no model_max_length)`);
      width = Math.max(width, goal);
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
    if (core.returnsTokenTypeIds) out.tokenTypeIds = tensor(types, [B, width]);
    return out;
  }

  const specialIds = new Set(core.specialIds);
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token']) {
    const id = specialId(key);
    if (id !== undefined) specialIds.add(id);
  }
  const tok = call as PreTrainedTokenizer;
  const props: Record<string, unknown> = {
    encode, decode, encodeBatch,
    idToToken: (id: number) => core.idToToken(id),
    tokenToId: (t: string) => core.tokenToId(t),
    vocabSize: core.vocabSize, padTokenId,
    bosTokenId: specialId('bos_token'), eosTokenId: specialId('eos_token') ?? core.defaults.eosTokenId,
    unkTokenId: specialId('unk_token') ?? core.defaults.unkTokenId,
    paddingSide, truncationSide, modelMaxLength,
    allSpecialIds: Object.freeze([...specialIds].sort((x, y) => x - y)),
    returnsTokenTypeIds: core.returnsTokenTypeIds,
    hasTargetSide: core.hasTargetSide,
    languageCodes: Object.freeze([...core.languageCodes]),
    source,
  };
  for (const [k, v] of Object.entries(props)) Object.defineProperty(tok, k, { value: v, enumerable: true });
  return tok;
}

/** Loads Hugging Face tokenizers from model folders. */
export const AutoTokenizer = {
  /**
   * The tokenizer of a Hugging Face model folder: `tokenizer.json` (with
   * `tokenizer_config.json` and `special_tokens_map.json` when present), else
   * Marian's `source.spm` + `target.spm` + `vocab.json`, else a SentencePiece
   * `tokenizer.model` (Llama 2 / Mistral BPE, or Unigram), else BERT's
   * `vocab.txt`, else GPT-2/RoBERTa's `vocab.json` + `merges.txt`.
   *
   * @returns null when the folder has no tokenizer files at all (a model folder may ship without one).
   * @throws Error naming the file and field for malformed, truncated or incomplete tokenizer files
   *   (e.g. `vocab.json` without `merges.txt`, an unknown `model.type`, a missing `model.vocab`); RangeError naming
   *   the file and field for a truncated or malformed SentencePiece model.
   */
  fromPretrained(dir: string): PreTrainedTokenizer | null {
    const files = readTokenizerFolder(dir);
    return files === null ? null : createTokenizer(files);
  },
};
