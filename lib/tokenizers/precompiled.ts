/**
 * SentencePiece's compiled normalisation rules (`normalizer_spec.precompiled_charsmap`, e.g. `nmt_nfkc`) and the
 * two ways of applying them that attnode must reproduce:
 *
 * - {@link PrecompiledCharsmap.normalizeSpm}: SentencePiece's own `Normalizer::Normalize` (what
 *   `sentencepiece.SentencePieceProcessor.encode` runs, hence transformers' slow tokenizers such as
 *   MarianTokenizer): at every byte position the longest rule that matches wins; then leading, trailing and
 *   repeated spaces are removed, a dummy-prefix space is added and spaces become U+2581.
 * - {@link PrecompiledCharsmap.normalizeLikeTokenizers}: Hugging Face `tokenizers`' `Precompiled` normalizer
 *   (what a fast tokenizer converted by `convert_slow_tokenizer` runs): text is cut into grapheme clusters; a
 *   cluster shorter than 6 UTF-8 bytes is replaced as a whole by the *first* (shortest) rule matching its start,
 *   otherwise each character is looked up alone.
 *
 * `@huggingface/tokenizers` (the engine) has a `Precompiled` normalizer that ignores the charsmap and runs NFKC
 * plus a few replacements instead; this class reads the rules themselves, so models with other rule sets
 * (`nmt_nfkc_cf`, custom TSV rules, `identity`) normalise as they were trained.
 *
 * Format (sentencepiece normalizer.cc, EncodePrecompiledCharsMap): a little-endian uint32 with the trie's byte
 * size, the trie (darts-clone double-array units, uint32 each), then the replacement strings, each ending in NUL.
 * A trie value is the byte offset of a replacement string.
 */
import { Normalizer } from '@huggingface/tokenizers';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const SPACE_SYMBOL = '\u2581';

/** One rule match: the replacement's offset in the string blob and the number of input bytes it covers. */
interface Match {
  value: number;
  length: number;
}

/** The compiled rules of one model. Construction checks the layout; lookups check every unit they read. */
export class PrecompiledCharsmap {
  private readonly units: Uint32Array;
  private readonly strings: Uint8Array;
  private readonly cache = new Map<number, string>();

  /**
   * @param blob the `precompiled_charsmap` bytes.
   * @param where names the file and field in error messages.
   * @throws RangeError when the trie size is not a multiple of 4, or exceeds the blob.
   */
  constructor(blob: Uint8Array, readonly where: string) {
    if (blob.byteLength <= 4) throw new RangeError(`${where}: a precompiled charsmap is a 4-byte trie size, a trie and replacement strings; got ${blob.byteLength} bytes`);
    const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    const trieBytes = view.getUint32(0, true);
    if (trieBytes % 4 !== 0 || trieBytes === 0 || trieBytes > blob.byteLength - 4) {
      throw new RangeError(`${where}: the trie size must be a positive multiple of 4 and at most ${blob.byteLength - 4} bytes (the rest of the blob), got ${trieBytes}`);
    }
    this.units = new Uint32Array(trieBytes / 4);
    for (let i = 0; i < this.units.length; i++) this.units[i] = view.getUint32(4 + 4 * i, true);
    this.strings = blob.subarray(4 + trieBytes);
  }

  private unit(i: number): number {
    const u = this.units[i];
    if (u === undefined) throw new RangeError(`${this.where}: the trie refers to unit ${i}, beyond its ${this.units.length} units (malformed charsmap)`);
    return u;
  }

  /**
   * darts-clone's `commonPrefixSearch`: every rule whose key is a prefix of `bytes[start, end)`, shortest first.
   * Stops at a NUL byte (no key contains one). `first` returns after the first match.
   */
  private search(bytes: Uint8Array, start: number, end: number, first: boolean): Match[] {
    const out: Match[] = [];
    let u = this.unit(0);
    let node = offset(u);
    for (let i = start; i < end; i++) {
      const c = bytes[i]!;
      if (c === 0) break;
      node ^= c;
      u = this.unit(node);
      // A value unit has bit 31 set, so it never equals a byte label.
      if (((u & 0x800000ff) >>> 0) !== c) break;
      node ^= offset(u);
      if ((u >>> 8) & 1) {
        out.push({ value: this.unit(node) & 0x7fffffff, length: i - start + 1 });
        if (first) break;
      }
    }
    return out;
  }

  /** The replacement string at a trie value (a NUL-terminated UTF-8 string in the blob). */
  private replacement(value: number): string {
    let s = this.cache.get(value);
    if (s !== undefined) return s;
    if (value >= this.strings.length) {
      throw new RangeError(`${this.where}: a rule points at byte ${value} of the replacement strings, which have ${this.strings.length} bytes (malformed charsmap)`);
    }
    let end = value;
    while (end < this.strings.length && this.strings[end] !== 0) end++;
    try {
      s = decoder.decode(this.strings.subarray(value, end));
    } catch {
      throw new RangeError(`${this.where}: the replacement string at byte ${value} is not valid UTF-8 (malformed charsmap)`);
    }
    this.cache.set(value, s);
    return s;
  }

  /** The longest rule matching at `bytes[pos]` (SentencePiece's choice), or null. */
  longestMatch(bytes: Uint8Array, pos: number): { replacement: string; length: number } | null {
    const all = this.search(bytes, pos, bytes.length, false);
    if (all.length === 0) return null;
    const m = all[all.length - 1]!;
    return { replacement: this.replacement(m.value), length: m.length };
  }

  /** Hugging Face's `transform`: the replacement of the first (shortest) rule matching the start of `s`, or null. */
  private transform(s: string): string | null {
    const bytes = encoder.encode(s);
    const m = this.search(bytes, 0, bytes.length, true);
    return m.length === 0 ? null : this.replacement(m[0]!.value);
  }

  /**
   * Hugging Face `tokenizers`' `Precompiled` normalizer (spm_precompiled's `normalize_string`), clusters from
   * `Intl.Segmenter` (UAX #29 extended grapheme clusters, as the Rust `unicode-segmentation` crate).
   */
  normalizeLikeTokenizers(text: string): string {
    let out = '';
    // ASCII text needs no segmenter: every character is a cluster of its own, except CR LF.
    if (/^[\x00-\x7f]*$/.test(text)) {
      const table = this.asciiTable();
      let start = 0;
      for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        const crlf = c === 13 && text.charCodeAt(i + 1) === 10;
        const r = crlf ? this.cluster('\r\n') : table[c]!;
        if (r === null) continue;
        out += text.slice(start, i) + r;
        if (crlf) i++;
        start = i + 1;
      }
      return start === 0 ? text : out + text.slice(start);
    }
    for (const { segment } of graphemes.segment(text)) out += this.cluster(segment);
    return out;
  }

  private readonly clusters = new Map<string, string>();
  private ascii: (string | null)[] | null = null;

  /** Each ASCII character's replacement, or null where it stays as it is. */
  private asciiTable(): (string | null)[] {
    if (this.ascii === null) {
      this.ascii = Array.from({ length: 128 }, (_, c) => {
        const r = this.cluster(String.fromCharCode(c));
        return r === String.fromCharCode(c) ? null : r;
      });
    }
    return this.ascii;
  }

  /** One grapheme cluster's replacement (memoised: text repeats its clusters). */
  private cluster(segment: string): string {
    let out = this.clusters.get(segment);
    if (out !== undefined) return out;
    out = encoder.encode(segment).length < 6 ? this.transform(segment) ?? undefined : undefined;
    if (out === undefined) {
      out = '';
      for (const ch of segment) out += this.transform(ch) ?? ch;
    }
    if (this.clusters.size >= 65536) this.clusters.clear();
    this.clusters.set(segment, out);
    return out;
  }
}

const graphemes = new Intl.Segmenter('und', { granularity: 'grapheme' });

/** darts-clone's unit offset: bits 10..31, shifted by 8 more when bit 9 is set. */
function offset(u: number): number {
  return (u >>> 10) * ((u & 0x200) !== 0 ? 256 : 1);
}

/** The parts of a model's `normalizer_spec` / `trainer_spec` that {@link normalizeSpm} follows. */
export interface SpmNormalizerOptions {
  charsmap: PrecompiledCharsmap | null;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
  treatWhitespaceAsSuffix: boolean;
  /** USER_DEFINED pieces: copied as they are, never normalised (SentencePiece's prefix matcher). */
  userDefined: readonly string[];
}

/** Longest-match lookup of user-defined symbols on UTF-8 bytes. */
class PrefixMatcher {
  private readonly keys = new Set<string>();
  private readonly lengths: number[];

  constructor(symbols: readonly string[]) {
    const lens = new Set<number>();
    for (const s of symbols) {
      const b = encoder.encode(s);
      this.keys.add(latin1(b, 0, b.length));
      lens.add(b.length);
    }
    this.lengths = [...lens].sort((a, b) => b - a);
  }

  match(bytes: Uint8Array, pos: number): number {
    for (const len of this.lengths) {
      if (pos + len <= bytes.length && this.keys.has(latin1(bytes, pos, pos + len))) return len;
    }
    return 0;
  }
}

function latin1(b: Uint8Array, start: number, end: number): string {
  let s = '';
  for (let i = start; i < end; i++) s += String.fromCharCode(b[i]!);
  return s;
}

/** The length of the valid UTF-8 character at `b[pos]`, or 0 when it is not one (SentencePiece's IsValidDecodeUTF8). */
export function validUtf8Char(b: Uint8Array, pos: number): number {
  const c = b[pos]!;
  if (c < 0x80) return 1;
  const need = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
  if (need === 0 || pos + need > b.length) return 0;
  for (let i = 1; i < need; i++) if ((b[pos + i]! & 0xc0) !== 0x80) return 0;
  const c1 = b[pos + 1]!;
  // Overlong forms, surrogates and code points above U+10FFFF are not valid.
  if (c === 0xe0 && c1 < 0xa0) return 0;
  if (c === 0xed && c1 >= 0xa0) return 0;
  if (c === 0xf0 && c1 < 0x90) return 0;
  if (c === 0xf4 && c1 >= 0x90) return 0;
  return need;
}

const matcherCache = new WeakMap<readonly string[], PrefixMatcher>();

/**
 * SentencePiece's `Normalizer::Normalize`: the text a SentencePiece model segments (spaces as U+2581 when
 * `escapeWhitespaces`). Empty when the text is empty or only whitespace (with `removeExtraWhitespaces`).
 */
export function normalizeSpm(text: string, o: SpmNormalizerOptions): string {
  if (text.length === 0) return '';
  const input = encoder.encode(text);
  let matcher = matcherCache.get(o.userDefined);
  if (!matcher) {
    matcher = new PrefixMatcher(o.userDefined);
    matcherCache.set(o.userDefined, matcher);
  }
  const m = matcher;
  // NormalizePrefix: the replacement of the text at `pos` and the number of bytes it consumes.
  const prefix = (pos: number): [string, number] => {
    const ud = m.match(input, pos);
    if (ud > 0) return [decoder.decode(input.subarray(pos, pos + ud)), ud];
    const rule = o.charsmap?.longestMatch(input, pos);
    if (rule) return [rule.replacement, rule.length];
    const len = validUtf8Char(input, pos);
    // Malformed UTF-8 (only after a rule that ended inside a character) is U+FFFD for one byte, as in SentencePiece.
    if (len === 0) return ['\ufffd', 1];
    return [decoder.decode(input.subarray(pos, pos + len)), len];
  };
  let pos = 0;
  if (o.removeExtraWhitespaces) {
    while (pos < input.length) {
      const [r, len] = prefix(pos);
      if (r !== ' ') break;
      pos += len;
    }
  }
  if (pos >= input.length) return '';
  const space = o.escapeWhitespaces ? SPACE_SYMBOL : ' ';
  let out = '';
  if (!o.treatWhitespaceAsSuffix && o.addDummyPrefix) out += space;
  let prevSpace = o.removeExtraWhitespaces;
  while (pos < input.length) {
    const [r, len] = prefix(pos);
    let sp = r;
    while (prevSpace && sp.startsWith(' ')) sp = sp.slice(1);
    if (sp.length > 0) {
      out += o.escapeWhitespaces ? sp.replaceAll(' ', SPACE_SYMBOL) : sp;
      prevSpace = sp.endsWith(' ');
    }
    pos += len;
    if (!o.removeExtraWhitespaces) prevSpace = false;
  }
  if (o.removeExtraWhitespaces) {
    while (out.endsWith(space)) out = out.slice(0, out.length - space.length);
  }
  if (o.treatWhitespaceAsSuffix && o.addDummyPrefix) out += space;
  return out;
}

/**
 * The engine's normalizer slot filled with {@link PrecompiledCharsmap.normalizeLikeTokenizers}, for
 * `tokenizer.json` files (converted or shipped) whose normalizer is `Precompiled`.
 */
export class PrecompiledNormalizer extends Normalizer {
  constructor(private readonly charsmap: PrecompiledCharsmap) {
    super({ type: 'Precompiled' } as never);
  }

  normalize(text: string): string {
    return this.charsmap.normalizeLikeTokenizers(text);
  }
}
