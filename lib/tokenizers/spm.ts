/**
 * SentencePiece models in two roles:
 *
 * 1. {@link SpmProcessor}: SentencePiece's own `encode` / `decode_pieces`, as transformers' slow tokenizers
 *    (MarianTokenizer) call them. Normalisation is SentencePiece's (`normalizeSpm`), segmentation is
 *    SentencePiece's Unigram search over the pieces it lets text match (NORMAL and USER_DEFINED ones), and the
 *    result follows `SentencePieceProcessor`: runs of unknown characters are one piece (split into `<0xNN>` byte pieces
 *    when the model has byte fallback), decoding drops control pieces, joins byte pieces into UTF-8 and strips the
 *    dummy-prefix space.
 * 2. {@link spmTokenizerJson}: the `tokenizer.json` a Hugging Face fast tokenizer builds from a model file
 *    (transformers' `convert_slow_tokenizer`): `LlamaConverter` for BPE models (Llama 2, Mistral, TinyLlama,
 *    CodeLlama: byte fallback, merges recovered from the piece scores, `<s>` from `add_bos_token`) and
 *    `SpmConverter` for Unigram models (the `Precompiled` normalizer of the model's charsmap, Metaspace).
 */
import type { SentencePieceModel } from '../io/sentencepiece';
import { PrecompiledCharsmap, normalizeSpm, validUtf8Char, type SpmNormalizerOptions } from './precompiled';

/** A parsed JSON object. */
type JsonObject = Record<string, unknown>;

const SPACE_SYMBOL = '\u2581';
/** SentencePiece's FLT_MIN start value of the maximum NORMAL score (user-defined pieces' bonus uses it). */
const FLT_MIN = 1.1754943508222875e-38;

const byteToken = (b: number): string => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
const BYTE_PIECE = /^<0x([0-9A-F]{2})>$/;
const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** A trie over UTF-16 code units of the matchable pieces. */
interface TrieNode {
  next: Map<number, TrieNode>;
  /** The piece ending here: its id and lattice score. */
  id: number;
  score: number;
}

const newNode = (): TrieNode => ({ next: new Map(), id: -1, score: 0 });

/**
 * A SentencePiece model run the way the `sentencepiece` library runs it (the slow tokenizers' backend).
 *
 * The Unigram search is SentencePiece's own (`Model::EncodeOptimized`), not the engine's lattice: SentencePiece
 * keeps path scores in float32 (a candidate is summed in double and rounded when stored), so two segmentations
 * whose double sums tie or nearly tie are ordered by float32 rounding. With the engine's double-precision lattice
 * "1999" became 9|99 where SentencePiece gives 99|9 (2 of 2000 random sentences differed); this search matches.
 */
export class SpmProcessor {
  readonly pieceIds: Map<string, number>;
  private readonly root: TrieNode = newNode();
  private readonly unkScore: number;
  private readonly normalizer: SpmNormalizerOptions;

  /**
   * @throws RangeError naming the file when the model is not a Unigram model, has no UNKNOWN piece at `unk_id`,
   *   or has byte fallback without all 256 byte pieces.
   */
  constructor(readonly model: SentencePieceModel) {
    const { pieces, trainerSpec: t, normalizerSpec: n, file } = model;
    if (t.modelType !== 'unigram') {
      throw new RangeError(`${file}: field 'trainer_spec.model_type' must be UNIGRAM for this tokenizer, got ${t.modelType.toUpperCase()}`);
    }
    if (pieces[t.unkId]!.type !== 'unknown') {
      throw new RangeError(`${file}: field 'pieces[${t.unkId}].type' (trainer_spec.unk_id) must be UNKNOWN, got ${pieces[t.unkId]!.type.toUpperCase()}`);
    }
    this.pieceIds = new Map(pieces.map((p, i) => [p.piece, i]));
    if (t.byteFallback) {
      for (let b = 0; b < 256; b++) {
        const id = this.pieceIds.get(byteToken(b));
        if (id === undefined || pieces[id]!.type !== 'byte') {
          throw new RangeError(`${file}: field 'trainer_spec.byte_fallback' is set but the model has no BYTE piece ${byteToken(b)}`);
        }
      }
    }
    let minScore = Infinity;
    let maxScore = FLT_MIN;
    for (const p of pieces) {
      if (p.type !== 'normal') continue;
      minScore = Math.min(minScore, p.score);
      maxScore = Math.max(maxScore, p.score);
    }
    // float32 arithmetic, as SentencePiece computes min_score() - kUnkPenalty.
    this.unkScore = Math.fround((minScore === Infinity ? 3.4028234663852886e38 : minScore) - 10);
    // NORMAL and USER_DEFINED pieces match text (UNUSED ones are skipped; control, unknown and byte pieces are
    // reserved). A user-defined piece gets a bonus so it is always chosen: length in bytes * max_score - 0.1.
    pieces.forEach((p, id) => {
      if (p.type !== 'normal' && p.type !== 'user_defined') return;
      let node = this.root;
      for (let i = 0; i < p.piece.length; i++) {
        const c = p.piece.charCodeAt(i);
        let child = node.next.get(c);
        if (!child) node.next.set(c, (child = newNode()));
        node = child;
      }
      node.id = id;
      node.score = p.type === 'user_defined' ? Math.fround(utf8Encoder.encode(p.piece).length * maxScore) - 0.1 : p.score;
    });
    const userDefined = pieces.filter((p) => p.type === 'user_defined').map((p) => p.piece);
    this.normalizer = {
      charsmap: n.precompiledCharsmap.length > 0 ? new PrecompiledCharsmap(n.precompiledCharsmap, `${file}: field 'normalizer_spec.precompiled_charsmap'`) : null,
      addDummyPrefix: n.addDummyPrefix,
      removeExtraWhitespaces: n.removeExtraWhitespaces,
      escapeWhitespaces: n.escapeWhitespaces,
      treatWhitespaceAsSuffix: t.treatWhitespaceAsSuffix,
      userDefined,
    };
  }

  /** The best segmentation of normalised text: [start, end, id] in UTF-16 units; id -1 for an unknown character. */
  private segment(s: string): [number, number, number][] {
    const n = s.length;
    const score = new Float64Array(n + 1);
    const from = new Int32Array(n + 1).fill(-1);
    const ids = new Int32Array(n + 1).fill(-1);
    for (let start = 0; start < n;) {
      const till = score[start]!;
      const c0 = s.charCodeAt(start);
      const mblen = c0 >= 0xd800 && c0 <= 0xdbff && start + 1 < n ? 2 : 1;
      let single = false;
      let node: TrieNode | undefined = this.root;
      for (let end = start + 1; end <= n; end++) {
        node = node.next.get(s.charCodeAt(end - 1));
        if (!node) break;
        if (node.id < 0) continue;
        const cand = node.score + till;
        if (from[end] === -1 || cand > score[end]!) {
          score[end] = Math.fround(cand);
          from[end] = start;
          ids[end] = node.id;
        }
        if (end - start === mblen) single = true;
      }
      if (!single) {
        const end = start + mblen;
        const cand = Math.fround(this.unkScore + till);
        if (from[end] === -1 || cand > score[end]!) {
          score[end] = cand;
          from[end] = start;
          ids[end] = -1;
        }
      }
      start += mblen;
    }
    const out: [number, number, number][] = [];
    for (let end = n; end > 0; end = from[end]!) out.push([from[end]!, end, ids[end]!]);
    return out.reverse();
  }

  /** SentencePiece's `encode(text, out_type=str)`. */
  encode(text: string): string[] {
    const normalized = normalizeSpm(text, this.normalizer);
    const out: string[] = [];
    let prevUnknown = false;
    for (const [start, end, id] of this.segment(normalized)) {
      const piece = normalized.slice(start, end);
      if (id >= 0) out.push(piece);
      else if (this.model.trainerSpec.byteFallback) for (const b of utf8Encoder.encode(piece)) out.push(byteToken(b));
      // A run of unknown characters is one piece (SentencePieceProcessor merges them).
      else if (prevUnknown) out[out.length - 1] += piece;
      else out.push(piece);
      prevUnknown = id < 0;
    }
    return out;
  }

  /** SentencePiece's `PieceToId`: reserved pieces, then matchable ones, else the unknown id. */
  pieceToId(piece: string): number {
    return this.pieceIds.get(piece) ?? this.model.trainerSpec.unkId;
  }

  /** SentencePiece's `decode_pieces` (`SentencePieceProcessor::Decode`). */
  decode(pieces: readonly string[]): string {
    const { pieces: vocab, trainerSpec: t, normalizerSpec: n } = this.model;
    let text = '';
    let bytes: number[] = [];
    const flushBytes = () => {
      if (bytes.length === 0) return;
      const b = Uint8Array.from(bytes);
      let i = 0;
      while (i < b.length) {
        const len = validUtf8Char(b, i);
        // Each byte of a structurally invalid sequence becomes one U+FFFD.
        if (len === 0) {
          text += '\ufffd';
          i++;
        } else {
          text += utf8Decoder.decode(b.subarray(i, i + len));
          i += len;
        }
      }
      bytes = [];
    };
    let isBosWs = true;
    let bosWsSeen = false;
    for (const piece of pieces) {
      const id = this.pieceToId(piece);
      const type = vocab[id]!.type;
      if (type === 'byte') {
        bytes.push(parseInt(BYTE_PIECE.exec(piece)![1]!, 16));
        continue;
      }
      flushBytes();
      if (bosWsSeen || text.length > 0) isBosWs = false;
      bosWsSeen = false;
      if (type === 'control') continue;
      if (type === 'unknown') {
        text += piece === vocab[id]!.piece ? t.unkSurface : piece;
        continue;
      }
      let p = piece;
      if (isBosWs && (n.addDummyPrefix || n.removeExtraWhitespaces)) {
        if (p.startsWith(SPACE_SYMBOL)) {
          p = p.slice(SPACE_SYMBOL.length);
          // With extra whitespace removal every leading space goes, so the next piece may start one too.
          bosWsSeen = !n.removeExtraWhitespaces;
        }
      }
      text += p.replaceAll(SPACE_SYMBOL, ' ');
    }
    flushBytes();
    return text;
  }
}

/** Settings of `tokenizer_config.json` the converters read (transformers' defaults when absent). */
export interface SpmConvertOptions {
  /** LlamaTokenizer's `legacy` (default true): Prepend + Replace normalizer instead of a Metaspace pre-tokenizer. */
  legacy: boolean;
  addPrefixSpace: boolean;
  addBosToken: boolean;
  addEosToken: boolean;
  bosToken: string | undefined;
  eosToken: string | undefined;
  /** Special tokens of the folder (bos, eos, unk, pad, additional): added tokens of the fast tokenizer. */
  specialTokens: string[];
  /** `added_tokens_decoder` entries: id → AddedToken fields. */
  addedTokensDecoder: Map<number, JsonObject>;
}

/** transformers' `generate_merges`: every split of a piece into two pieces, by score (then longer left, longer right). */
export function spmMerges(pieces: readonly { piece: string }[], scores: readonly number[]): [string, string][] {
  const ids = new Map<string, number>();
  pieces.forEach((p, i) => {
    if (!ids.has(p.piece)) ids.set(p.piece, i);
  });
  const merges: { l: string; r: string; score: number; ll: number; lr: number }[] = [];
  pieces.forEach((p, i) => {
    const chars = Array.from(p.piece);
    const local: { l: string; r: string; score: number; ll: number; lr: number }[] = [];
    for (let k = 1; k < chars.length; k++) {
      const l = chars.slice(0, k).join('');
      const r = chars.slice(k).join('');
      if (ids.has(l) && ids.has(r)) local.push({ l, r, score: scores[i]!, ll: k, lr: chars.length - k });
    }
    local.sort((a, b) => ids.get(a.l)! - ids.get(b.l)! || ids.get(a.r)! - ids.get(b.r)!);
    merges.push(...local);
  });
  // Python's sorted(..., reverse=True) is stable: equal keys keep their order.
  const order = merges.map((m, i) => ({ m, i }));
  order.sort((a, b) => b.m.score - a.m.score || b.m.ll - a.m.ll || b.m.lr - a.m.lr || a.i - b.i);
  return order.map(({ m }) => [m.l, m.r]);
}

function addedToken(id: number, content: string, special: boolean, extra: JsonObject = {}): JsonObject {
  return {
    id, content, single_word: extra.single_word === true, lstrip: extra.lstrip === true, rstrip: extra.rstrip === true,
    normalized: extra.normalized === true, special: typeof extra.special === 'boolean' ? extra.special : special,
  };
}

/**
 * The added tokens of a converted tokenizer: the model's CONTROL pieces (special) and USER_DEFINED pieces (not
 * special), then what the fast tokenizer adds on loading: `added_tokens_decoder` entries and the folder's
 * special tokens (new ones get the next free ids).
 */
function addedTokens(model: SentencePieceModel, o: SpmConvertOptions, vocabIds: Map<string, number>): JsonObject[] {
  const out = new Map<string, JsonObject>();
  model.pieces.forEach((p, id) => {
    if (p.type === 'control' || p.type === 'user_defined') out.set(p.piece, addedToken(id, p.piece, p.type === 'control'));
  });
  let next = model.pieces.length;
  for (const [id, entry] of o.addedTokensDecoder) {
    const content = entry.content as string;
    out.set(content, addedToken(id, content, entry.special === true, entry));
    next = Math.max(next, id + 1);
  }
  for (const t of o.specialTokens) {
    if (out.has(t)) continue;
    const id = vocabIds.get(t) ?? next++;
    out.set(t, addedToken(id, t, true));
  }
  return [...out.values()].sort((a, b) => (a.id as number) - (b.id as number));
}

/** LlamaTokenizerFast's post-processor: `<s>` and `</s>` as `add_bos_token` / `add_eos_token` say. */
function llamaTemplate(o: SpmConvertOptions, file: string, idOf: (t: string) => number | undefined): JsonObject {
  const special: JsonObject = {};
  const seq = (id: 'A' | 'B', type: number) => ({ Sequence: { id, type_id: type } });
  const tok = (t: string, type: number) => ({ SpecialToken: { id: t, type_id: type } });
  const single: JsonObject[] = [];
  const pair: JsonObject[] = [];
  for (const [flag, token, name] of [[o.addBosToken, o.bosToken, 'bos_token'], [o.addEosToken, o.eosToken, 'eos_token']] as const) {
    if (!flag) continue;
    if (token === undefined) throw new Error(`${file}: add_${name} is true but the folder sets no ${name}`);
    const id = idOf(token);
    if (id === undefined) throw new Error(`${file}: ${name} ${JSON.stringify(token)} is not in the vocabulary`);
    special[token] = { id: token, ids: [id], tokens: [token] };
  }
  if (o.addBosToken) single.push(tok(o.bosToken!, 0));
  single.push(seq('A', 0));
  if (o.addEosToken) single.push(tok(o.eosToken!, 0));
  pair.push(...single);
  if (o.addBosToken) pair.push(tok(o.bosToken!, 1));
  pair.push(seq('B', 1));
  if (o.addEosToken) pair.push(tok(o.eosToken!, 1));
  return { type: 'TemplateProcessing', single, pair, special_tokens: special };
}

/**
 * The `tokenizer.json` transformers builds from a SentencePiece model file (`LlamaConverter` for BPE models,
 * `SpmConverter` for Unigram models).
 *
 * @throws RangeError naming the file and field for models these converters cannot take (WORD/CHAR models, a BPE
 *   model without byte fallback pieces, an unknown id that is not an UNKNOWN piece).
 */
export function spmTokenizerJson(model: SentencePieceModel, o: SpmConvertOptions): JsonObject {
  const { pieces, trainerSpec: t, normalizerSpec: n, file } = model;
  const vocabIds = new Map<string, number>();
  pieces.forEach((p, i) => vocabIds.set(p.piece, i));
  if (pieces[t.unkId]!.type !== 'unknown') {
    throw new RangeError(`${file}: field 'pieces[${t.unkId}].type' (trainer_spec.unk_id) must be UNKNOWN, got ${pieces[t.unkId]!.type.toUpperCase()}`);
  }
  const added = addedTokens(model, o, vocabIds);
  const idOf = (tok: string) => (added.find((a) => a.content === tok)?.id as number | undefined) ?? vocabIds.get(tok);
  if (t.modelType === 'bpe') {
    // LlamaConverter: the first three pieces' scores are replaced by 0 before the merges are ordered.
    const scores = pieces.map((p, i) => (i < 3 ? 0 : p.score));
    for (let b = 0; b < 256; b++) {
      if (!vocabIds.has(byteToken(b))) throw new RangeError(`${file}: a BPE model converts with byte fallback (LlamaConverter), but piece ${byteToken(b)} is missing`);
    }
    const vocab: Record<string, number> = {};
    pieces.forEach((p, i) => {
      // The first three tokens are the slow tokenizer's (added_tokens_decoder may rename them).
      const content = i < 3 ? ((o.addedTokensDecoder.get(i)?.content as string | undefined) ?? p.piece) : p.piece;
      if (!(content in vocab)) vocab[content] = i;
    });
    const prefix = o.addPrefixSpace;
    return {
      version: '1.0',
      added_tokens: added,
      normalizer: o.legacy
        ? { type: 'Sequence', normalizers: [...(prefix ? [{ type: 'Prepend', prepend: SPACE_SYMBOL }] : []), { type: 'Replace', pattern: { String: ' ' }, content: SPACE_SYMBOL }] }
        : null,
      pre_tokenizer: o.legacy ? null : { type: 'Metaspace', replacement: SPACE_SYMBOL, prepend_scheme: prefix ? 'first' : 'never', split: false },
      model: {
        type: 'BPE', dropout: null, unk_token: t.unkPiece, continuing_subword_prefix: null, end_of_word_suffix: null,
        fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges: spmMerges(pieces, scores),
      },
      post_processor: llamaTemplate(o, file, idOf),
      decoder: {
        type: 'Sequence',
        decoders: [
          { type: 'Replace', pattern: { String: SPACE_SYMBOL }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' },
          ...(prefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
        ],
      },
    };
  }
  if (t.modelType !== 'unigram') {
    throw new RangeError(`${file}: field 'trainer_spec.model_type' must be UNIGRAM or BPE to convert, got ${t.modelType.toUpperCase()}`);
  }
  const scheme = o.addPrefixSpace ? (o.legacy ? 'always' : 'first') : 'never';
  const steps: JsonObject[] = [
    { type: 'Strip', strip_left: false, strip_right: true },
    { type: 'Replace', pattern: { Regex: ' {2,}' }, content: SPACE_SYMBOL },
  ];
  if (n.precompiledCharsmap.length > 0) {
    // Checked now, so a broken charsmap is an error when the folder loads, naming the field.
    new PrecompiledCharsmap(n.precompiledCharsmap, `${file}: field 'normalizer_spec.precompiled_charsmap'`);
    steps.unshift({ type: 'Precompiled', precompiled_charsmap: Buffer.from(n.precompiledCharsmap).toString('base64') });
  }
  return {
    version: '1.0',
    added_tokens: added,
    normalizer: { type: 'Sequence', normalizers: steps },
    pre_tokenizer: { type: 'Metaspace', replacement: SPACE_SYMBOL, prepend_scheme: scheme, split: true },
    model: { type: 'Unigram', unk_id: t.unkId, vocab: pieces.map((p) => [p.piece, p.score]), byte_fallback: false },
    post_processor: null,
    decoder: { type: 'Metaspace', replacement: SPACE_SYMBOL, prepend_scheme: scheme, split: true },
  };
}
