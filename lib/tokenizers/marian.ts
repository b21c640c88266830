/**
 * transformers' MarianTokenizer (Helsinki-NLP/opus-mt-*): a slow tokenizer, so its rules are SentencePiece's and
 * its own, not a `tokenizer.json`'s:
 *
 * - encoding: the text is split at the added tokens (`</s>`, `<unk>`, `<pad>`, additional special tokens); in
 *   every other chunk a leading language code (`>>fra<<`, the regex `>>.+<<`, which also removes later matches) is
 *   kept as one token, the rest is segmented by `source.spm` (`target.spm` for target text) and each piece is
 *   mapped through `vocab.json` (`target_vocab.json` for target text with `separate_vocabs`), unknown pieces to
 *   `<unk>`; `</s>` is appended.
 * - decoding: ids → pieces through the vocabulary (the target one with `separate_vocabs`), special tokens
 *   written as they are with a space after them (or dropped with `skipSpecialTokens`), the pieces between them
 *   joined by `target.spm`'s decoder (`source.spm` with `useSourceTokenizer`), `▁` → space, and Python's
 *   `str.strip()`.
 *
 * Followed: transformers 4.x (`tokenization_marian.py`), with the `sentencepiece` library's encode/decode
 * (`spm.ts`). The optional Moses punctuation normaliser (`sacremoses`) is not applied: transformers applies it only
 * in its `normalize()` helper, never in `__call__`/`encode`.
 */
import type { MarianTokenizerFiles } from './load';
import { tokenContent, type JsonObject } from './load';
import { SpmProcessor } from './spm';

/** One added token of the slow tokenizer. */
interface Added {
  id: number;
  content: string;
  lstrip: boolean;
  rstrip: boolean;
  special: boolean;
}

/** What the common tokenizer wrapper needs from the Marian rules (see `TokenizerCore` in tokenizer.ts). */
export interface MarianCore {
  encodeText(text: string, target: boolean): number[];
  decode(ids: number[], skipSpecialTokens: boolean, cleanUp: boolean, useSource: boolean): string;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  /** One past the largest id that decodes. */
  readonly idLimit: number;
  readonly vocabSize: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  readonly unkTokenId: number;
  readonly specialIds: ReadonlySet<number>;
  readonly languageCodes: readonly string[];
}

/** Python's `str.isspace()` characters, for `str.strip()`. */
const PY_SPACE = /^[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g;

/** transformers' `clean_up_tokenization`. */
export function cleanUpTokenization(s: string): string {
  return s.replaceAll(' .', '.').replaceAll(' ?', '?').replaceAll(' !', '!').replaceAll(' ,', ',')
    .replaceAll(" ' ", "'").replaceAll(" n't", "n't").replaceAll(" 'm", "'m").replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve").replaceAll(" 're", "'re");
}

/** MarianTokenizer's `>>.+<<` (Python's `.` is anything but a newline). */
const LANG_CODE_START = /^>>[^\n]+<</;
const LANG_CODE_ALL = />>[^\n]+<</g;

/** Builds the Marian rules from a folder's files. Errors name the file and the setting. */
export function createMarianCore(files: MarianTokenizerFiles): MarianCore {
  const { config, vocab, targetVocab, dir } = files;
  const cfgFile = `${dir}/tokenizer_config.json`;
  const vocabFile = `${dir}/vocab.json`;
  const source = new SpmProcessor(files.sourceSpm);
  const target = new SpmProcessor(files.targetSpm);
  const tokenOf = (key: string, fallback: string): string => (key in config ? tokenContent(config[key]) : undefined) ?? fallback;
  const unk = tokenOf('unk_token', '<unk>');
  const eos = tokenOf('eos_token', '</s>');
  const pad = tokenOf('pad_token', '<pad>');
  for (const [name, t] of [['unk_token', unk], ['eos_token', eos], ['pad_token', pad]] as const) {
    if (!vocab.has(t)) throw new Error(`${vocabFile}: ${name} ${JSON.stringify(t)} (tokenizer_config.json) is not in the vocabulary`);
  }
  const additional = Array.isArray(config.additional_special_tokens)
    ? config.additional_special_tokens.map(tokenContent).filter((t): t is string => t !== undefined)
    : [];

  // Added tokens: added_tokens_decoder entries, then every special token at its vocab.json id.
  const added = new Map<string, Added>();
  const raw = config.added_tokens_decoder;
  if (raw !== undefined && raw !== null) {
    if (typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${cfgFile}: field 'added_tokens_decoder' must be an object mapping ids to tokens`);
    for (const [key, e] of Object.entries(raw as Record<string, JsonObject>)) {
      const id = Number(key);
      if (!/^\d+$/.test(key) || typeof e?.content !== 'string' || e.content === '') {
        throw new Error(`${cfgFile}: field 'added_tokens_decoder[${JSON.stringify(key)}]' must be an integer id mapped to { content: non-empty string }`);
      }
      added.set(e.content, { id, content: e.content, lstrip: e.lstrip === true, rstrip: e.rstrip === true, special: e.special === true });
    }
  }
  const specialTokens = [eos, unk, pad, ...additional];
  for (const t of specialTokens) {
    const prev = added.get(t);
    if (prev) {
      prev.special = true;
      continue;
    }
    const id = vocab.get(t);
    if (id === undefined) throw new Error(`${cfgFile}: additional special token ${JSON.stringify(t)} is not in ${vocabFile}`);
    added.set(t, { id, content: t, lstrip: false, rstrip: false, special: true });
  }
  const addedById = new Map<number, Added>([...added.values()].map((a) => [a.id, a]));
  const specialStrings = new Set(specialTokens);
  const specialIds = new Set(specialTokens.map((t) => added.get(t)!.id));
  let maxId = -1;
  for (const id of (targetVocab ?? vocab).values()) maxId = Math.max(maxId, id);
  for (const id of vocab.values()) maxId = Math.max(maxId, id);
  for (const a of added.values()) maxId = Math.max(maxId, a.id);
  const decoderMap = new Map<number, string>();
  for (const [t, id] of targetVocab ?? vocab) decoderMap.set(id, t);
  const addedList = [...added.keys()].sort((a, b) => b.length - a.length);
  // Added tokens that are not special are decoded apart from the pieces (transformers' legacy_added_tokens).
  const vocabSize = vocab.size;
  const legacyAdded = new Set([...added.values()].filter((a) => !specialStrings.has(a.content) || (additional.includes(a.content) && a.id >= vocabSize)).map((a) => a.content));

  /** The slow tokenizer's split at added tokens (longest match at the earliest position), with lstrip/rstrip. */
  function splitAdded(text: string): (string | Added)[] {
    const parts: (string | Added)[] = [];
    let start = 0;
    for (let i = 0; i < text.length;) {
      const hit = addedList.find((t) => text.startsWith(t, i));
      if (!hit) {
        i++;
        continue;
      }
      parts.push(text.slice(start, i), added.get(hit)!);
      i += hit.length;
      start = i;
    }
    parts.push(text.slice(start));
    for (let k = 0; k < parts.length; k++) {
      const a = parts[k];
      if (typeof a === 'string') continue;
      if (a.rstrip && typeof parts[k + 1] === 'string') parts[k + 1] = (parts[k + 1] as string).trimStart();
      if (a.lstrip && typeof parts[k - 1] === 'string') parts[k - 1] = (parts[k - 1] as string).trimEnd();
    }
    return parts;
  }

  function encodeText(text: string, useTarget: boolean): number[] {
    const spm = useTarget ? target : source;
    const encoder = useTarget && targetVocab ? targetVocab : vocab;
    const unkId = encoder.get(unk) ?? vocab.get(unk)!;
    const idOf = (t: string) => added.get(t)?.id ?? encoder.get(t) ?? unkId;
    const ids: number[] = [];
    for (const part of splitAdded(text)) {
      if (typeof part !== 'string') {
        ids.push(part.id);
        continue;
      }
      if (part === '') continue;
      const code = LANG_CODE_START.exec(part);
      if (code) ids.push(idOf(code[0]));
      for (const piece of spm.encode(part.replace(LANG_CODE_ALL, ''))) ids.push(idOf(piece));
    }
    return ids;
  }

  function toText(tokens: string[], spm: SpmProcessor): string {
    let out = '';
    let run: string[] = [];
    for (const t of tokens) {
      if (specialStrings.has(t)) {
        out += spm.decode(run) + t + ' ';
        run = [];
      } else run.push(t);
    }
    out += spm.decode(run);
    return out.replaceAll('\u2581', ' ').replace(PY_SPACE, '');
  }

  function decode(ids: number[], skipSpecialTokens: boolean, cleanUp: boolean, useSource: boolean): string {
    const spm = useSource ? source : target;
    const subTexts: string[] = [];
    let run: string[] = [];
    for (const id of ids) {
      if (skipSpecialTokens && specialIds.has(id)) continue;
      const token = addedById.get(id)?.content ?? decoderMap.get(id) ?? unk;
      if (legacyAdded.has(token)) {
        if (run.length > 0) {
          const s = toText(run, spm);
          if (s.length > 0) subTexts.push(s);
          run = [];
        }
        subTexts.push(token);
      } else run.push(token);
    }
    if (run.length > 0) subTexts.push(toText(run, spm));
    const text = subTexts.join(' ');
    return cleanUp ? cleanUpTokenization(text) : text;
  }

  return {
    encodeText,
    decode,
    tokenToId: (t) => added.get(t)?.id ?? vocab.get(t),
    idToToken: (id) => addedById.get(id)?.content ?? decoderMap.get(id),
    idLimit: maxId + 1,
    vocabSize,
    eosTokenId: added.get(eos)!.id,
    padTokenId: added.get(pad)!.id,
    unkTokenId: added.get(unk)!.id,
    specialIds,
    languageCodes: targetVocab ? [] : [...vocab.keys()].filter((k) => k.startsWith('>>') && k.endsWith('<<')),
  };
}
