/**
 * SentencePiece model files through AutoTokenizer, against references from an independent implementation:
 * Google's `sentencepiece` library (Debian python3-sentencepiece), run once by scripts/gen_spm_refs.py with the
 * tokenizer rules of transformers re-implemented there in Python (MarianTokenizer; LlamaTokenizerFast as
 * LlamaConverter builds it). attnode reads the same model files with its own protobuf reader, charsmap
 * normaliser and SentencePiece search, so every id compared here comes from two code bases.
 *
 * - Marian folders (source.spm + target.spm + vocab.json; one with separate_vocabs): source and target encoding,
 *   language codes, special tokens in text, pieces missing from vocab.json, decoding with both models.
 * - Llama-style folders (tokenizer.model, BPE with byte fallback, a user-defined symbol): legacy and non-legacy
 *   normalisation, <s> / </s> from tokenizer_config.json, pairs, ByteFallback decoding.
 *
 * Texts: Unicode normalisation (full-width, ligatures, composed and decomposed accents, NBSP, halfwidth kana),
 * emoji, characters outside the vocabulary, Chinese/Japanese/Korean, repeated, leading and trailing spaces,
 * control characters, and 160 random sentences per folder.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AutoTokenizer } from '../lib';
import { loadTokenizer, readRefs } from './helpers/tokenizer-fixtures';

const FIX = resolve(__dirname, 'fixtures/spm');

interface TextRef { text: string; ids: number[]; idsNoSpecial: number[]; decoded: string; decodedSkipSpecial: string; decodedSource?: string }
interface Refs {
  texts: TextRef[];
  targetTexts?: { text: string; ids: number[]; decodedSkipSpecial: string }[];
  idDecodes: { ids: number[]; decoded: string; decodedSkipSpecial: string }[];
  pairs?: { a: string; b: string; ids: number[] }[];
  vocabSize: number;
  eosId?: number;
  padId?: number;
  unkId?: number;
}

const refs = (name: string): Refs => readRefs<Refs>(FIX, name);
const load = loadTokenizer;

const label = (t: string) => JSON.stringify(t).slice(0, 40);

function idsSuite(name: string): void {
  const r = refs(name);
  describe(name, () => {
    const tok = load(join(FIX, name));

    it.each(r.texts.map((t, i) => [i, label(t.text), t] as const))('ids of text %i %s', (_i, _l, t) => {
      expect(tok.encode(t.text)).toEqual(t.ids);
      expect(tok.encode(t.text, { addSpecialTokens: false })).toEqual(t.idsNoSpecial);
    });

    it('decodes every reference encoding as the reference does (with and without special tokens)', () => {
      for (const t of r.texts) {
        expect(tok.decode(t.ids), label(t.text)).toBe(t.decoded);
        expect(tok.decode(t.ids, { skipSpecialTokens: true }), label(t.text)).toBe(t.decodedSkipSpecial);
      }
    });

    it('decode(encode(x)) gives x back wherever the reference does', () => {
      let checked = 0;
      for (const t of r.texts) {
        if (t.decodedSkipSpecial !== t.text) continue;
        checked++;
        expect(tok.decode(tok.encode(t.text), { skipSpecialTokens: true }), label(t.text)).toBe(t.text);
      }
      // With separate vocabularies source ids decode through target_vocab.json, so few texts come back.
      expect(checked).toBeGreaterThan(name === 'marian-separate-vocabs' ? 0 : 50);
    });

    it('decodes arbitrary id sequences (specials, byte pieces cut mid-character, pieces of the other side)', () => {
      for (const c of r.idDecodes) {
        expect(tok.decode(c.ids), c.ids.join(',')).toBe(c.decoded);
        expect(tok.decode(Int32Array.from(c.ids), { skipSpecialTokens: true }), c.ids.join(',')).toBe(c.decodedSkipSpecial);
      }
    });

    it('encodeBatch and calling the tokenizer give the same ids', () => {
      const texts = r.texts.slice(0, 12).map((t) => t.text);
      expect(tok.encodeBatch(texts)).toEqual(r.texts.slice(0, 12).map((t) => t.ids));
      if (tok.padTokenId === undefined) {
        // Llama 2-style folders set no pad token: one text at a time.
        expect(Array.from(tok(texts[1]!).inputIds.data)).toEqual(r.texts[1]!.ids);
        return;
      }
      const enc = tok(texts, { padding: true });
      const width = Math.max(...r.texts.slice(0, 12).map((t) => t.ids.length));
      expect(enc.inputIds.shape).toEqual([12, width]);
      const left = tok.paddingSide === 'left';
      r.texts.slice(0, 12).forEach((t, b) => {
        const row = Array.from(enc.inputIds.data.subarray(b * width, (b + 1) * width));
        const mask = Array.from(enc.attentionMask.data.subarray(b * width, (b + 1) * width));
        const off = left ? width - t.ids.length : 0;
        expect(row.slice(off, off + t.ids.length)).toEqual(t.ids);
        expect(mask.reduce((a, m) => a + m, 0)).toBe(t.ids.length);
      });
      expect(enc.tokenTypeIds).toBeUndefined();
    });
  });
}

describe('Marian folders (source.spm + target.spm + vocab.json)', () => {
  idsSuite('marian-en-de');
  idsSuite('marian-separate-vocabs');

  for (const name of ['marian-en-de', 'marian-separate-vocabs']) {
    describe(`${name}: the target side and the tokenizer's settings`, () => {
      const r = refs(name);
      const tok = load(join(FIX, name));

      it('encode(text, { target: true }) is transformers\' text_target (target.spm, target vocabulary)', () => {
        for (const c of r.targetTexts!) {
          expect(tok.encode(c.text, { target: true }), label(c.text)).toEqual(c.ids);
          expect(tok.decode(c.ids, { skipSpecialTokens: true }), label(c.text)).toBe(c.decodedSkipSpecial);
        }
        const call = tok(r.targetTexts!.slice(0, 3).map((c) => c.text), { target: true, padding: true });
        expect(Array.from(call.inputIds.data.subarray(0, r.targetTexts![0]!.ids.length))).toEqual(r.targetTexts![0]!.ids);
      });

      it('decode with useSourceTokenizer joins pieces with source.spm', () => {
        for (const t of r.texts) expect(tok.decode(t.ids, { skipSpecialTokens: true, useSourceTokenizer: true }), label(t.text)).toBe(t.decodedSource);
      });

      it('eos, pad, unk, vocabulary size, model_max_length, special ids', () => {
        expect(tok.hasTargetSide).toBe(true);
        expect(tok.eosTokenId).toBe(r.eosId);
        expect(tok.padTokenId).toBe(r.padId);
        expect(tok.unkTokenId).toBe(r.unkId);
        expect(tok.vocabSize).toBe(r.vocabSize);
        expect(tok.modelMaxLength).toBe(512);
        expect(tok.bosTokenId).toBeUndefined();
        expect([...tok.allSpecialIds]).toEqual([r.eosId!, r.unkId!, r.padId!].sort((a, b) => a - b));
        expect(tok.returnsTokenTypeIds).toBe(false);
        expect(tok.idToToken(r.eosId!)).toBe('</s>');
        expect(tok.tokenToId('<pad>')).toBe(r.padId);
      });

      it('truncation keeps room for </s>', () => {
        const long = r.texts[1]!;
        expect(tok.encode(long.text, { truncation: true, maxLength: 5 })).toEqual([...long.ids.slice(0, 4), r.eosId]);
      });
    });
  }

  it('language codes: the vocab.json entries >>xx<< are listed; a leading code is one token', () => {
    const tok = load(join(FIX, 'marian-en-de'));
    expect([...tok.languageCodes].sort()).toEqual(['>>de<<', '>>fr<<']);
    const ids = tok.encode('>>fr<< Hello world');
    expect(ids[0]).toBe(tok.tokenToId('>>fr<<'));
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('>>fr<< Hello world');
    expect(load(join(FIX, 'marian-separate-vocabs')).languageCodes).toEqual([]);
  });
});

describe('Llama-style folders (tokenizer.model, BPE with byte fallback)', () => {
  idsSuite('llama-bpe');
  idsSuite('llama-bpe-nonlegacy');

  for (const name of ['llama-bpe', 'llama-bpe-nonlegacy']) {
    it(`${name}: sentence pairs (<s> A [</s>] <s> B [</s>])`, () => {
      const tok = load(join(FIX, name));
      for (const p of refs(name).pairs!) expect(tok.encode(p.a, { textPair: p.b }), `${p.a} | ${p.b}`).toEqual(p.ids);
    });
  }

  it('bos/eos/unk ids, left padding with no pad token refuses to pad, no target side', () => {
    const tok = load(join(FIX, 'llama-bpe'));
    expect(tok.bosTokenId).toBe(1);
    expect(tok.eosTokenId).toBe(2);
    expect(tok.unkTokenId).toBe(0);
    expect(tok.padTokenId).toBeUndefined();
    expect(tok.hasTargetSide).toBe(false);
    expect(tok.vocabSize).toBe(refs('llama-bpe').vocabSize);
    expect(() => tok(['a', 'a longer text'], { padding: true })).toThrow(/pad_token/);
    expect(() => tok.encode('x', { target: true })).toThrow(TypeError);
    expect(() => tok.decode([1], { useSourceTokenizer: true })).toThrow(/target side/);
  });
});

describe('bad SentencePiece folders', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'attnode-spm-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  let n = 0;
  const folder = (files: Record<string, string | Uint8Array>): string => {
    const dir = join(tmp, `f${n++}`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    for (const [f, c] of Object.entries(files)) writeFileSync(join(dir, f), c);
    return dir;
  };
  const marian = join(FIX, 'marian-en-de');
  const read = (dir: string, f: string) => readFileSync(join(dir, f));

  it('a truncated tokenizer.model is a RangeError naming the file and the field', () => {
    const model = read(join(FIX, 'llama-bpe'), 'tokenizer.model');
    const dir = folder({ 'tokenizer.model': model.subarray(0, 1000) });
    expect(() => AutoTokenizer.fromPretrained(dir)).toThrow(RangeError);
    expect(() => AutoTokenizer.fromPretrained(dir)).toThrow(/tokenizer\.model: field 'pieces(\[\d+\])?(\.\w+)?'/);
  });

  it('a file that is not a SentencePiece model (JSON text) names the file', () => {
    const dir = folder({ 'tokenizer.model': '{"not": "protobuf"}' });
    expect(() => AutoTokenizer.fromPretrained(dir)).toThrow(/tokenizer\.model: /);
  });

  it('a Marian folder without target.spm or vocab.json names the missing file', () => {
    const dir = folder({ 'source.spm': read(marian, 'source.spm') });
    expect(() => AutoTokenizer.fromPretrained(dir)).toThrow(/no target\.spm/);
    const dir2 = folder({ 'source.spm': read(marian, 'source.spm'), 'target.spm': read(marian, 'target.spm') });
    expect(() => AutoTokenizer.fromPretrained(dir2)).toThrow(/no vocab\.json/);
  });

  it('a vocab.json without the unk token, or with a non-integer id, names vocab.json', () => {
    const base = { 'source.spm': read(marian, 'source.spm'), 'target.spm': read(marian, 'target.spm') };
    expect(() => AutoTokenizer.fromPretrained(folder({ ...base, 'vocab.json': '{"</s>": 0, "<pad>": 1}' }))).toThrow(/vocab\.json: unk_token "<unk>"/);
    expect(() => AutoTokenizer.fromPretrained(folder({ ...base, 'vocab.json': '{"</s>": 0.5}' }))).toThrow(/vocab\.json: field '"<\/s>"'/);
    expect(() => AutoTokenizer.fromPretrained(folder({ ...base, 'vocab.json': '{"</s>": 0, "<unk>": 1, "<pad>": 2', 'tokenizer_config.json': '{}' }))).toThrow(/vocab\.json: not valid JSON/);
  });

  it('separate_vocabs without target_vocab.json, and a non-boolean setting, name the file', () => {
    const base = { 'source.spm': read(marian, 'source.spm'), 'target.spm': read(marian, 'target.spm'), 'vocab.json': read(marian, 'vocab.json') };
    expect(() => AutoTokenizer.fromPretrained(folder({ ...base, 'tokenizer_config.json': '{"separate_vocabs": true}' }))).toThrow(/no target_vocab\.json/);
    expect(() => AutoTokenizer.fromPretrained(folder({ ...base, 'tokenizer_config.json': '{"separate_vocabs": "yes"}' }))).toThrow(/tokenizer_config\.json: field 'separate_vocabs' must be true or false/);
  });

  it('a BPE tokenizer.model under a tokenizer class that needs another converter names tokenizer_class', () => {
    const dir = folder({ 'tokenizer.model': read(join(FIX, 'llama-bpe'), 'tokenizer.model'), 'tokenizer_config.json': '{"tokenizer_class": "GemmaTokenizer"}' });
    expect(() => AutoTokenizer.fromPretrained(dir)).toThrow(/tokenizer_config\.json: field 'tokenizer_class'/);
  });

  it('bad arguments: target on a single-vocabulary tokenizer, ids outside the vocabulary', () => {
    const tok = load(marian);
    expect(() => tok.decode([tok.vocabSize + 5])).toThrow(RangeError);
    expect(() => tok.encode('x', { target: 'yes' as unknown as boolean })).toThrow(TypeError);
    expect(() => tok.encode(5 as unknown as string)).toThrow(TypeError);
  });

  it('added_tokens_decoder adds tokens past the model (a <pad> at 600), matched in text and used to pad', () => {
    const dir = folder({
      'tokenizer.model': read(join(FIX, 'llama-bpe'), 'tokenizer.model'),
      'tokenizer_config.json': JSON.stringify({
        tokenizer_class: 'LlamaTokenizer', pad_token: '<pad>', padding_side: 'left',
        added_tokens_decoder: { 600: { content: '<pad>', lstrip: false, rstrip: false, normalized: false, single_word: false, special: true } },
      }),
    });
    const tok = load(dir);
    const base = load(join(FIX, 'llama-bpe'));
    expect(tok.padTokenId).toBe(600);
    expect(tok.vocabSize).toBe(601);
    expect(tok.allSpecialIds).toContain(600);
    const piece = (t: string) => base.encode(t, { addSpecialTokens: false });
    // Legacy normalisation: the text after an added token gets its own '▁' prefix.
    expect(tok.encode('Hello<pad>world')).toEqual([1, ...piece('Hello'), 600, ...piece('world')]);
    expect(tok.decode(tok.encode('Hello<pad>world'), { skipSpecialTokens: true })).toBe('Hello world');
    const enc = tok(['Hello', 'Hello world again'], { padding: true });
    expect(Array.from(enc.inputIds.data.subarray(0, 2))).toEqual([600, 600]);
  });

  it('the Llama folder reads the same when copied (no hidden dependency on the fixture path)', () => {
    const dir = folder({});
    copyFileSync(join(FIX, 'llama-bpe', 'tokenizer.model'), join(dir, 'tokenizer.model'));
    expect(existsSync(join(dir, 'tokenizer.model'))).toBe(true);
    expect(load(dir).encode('Hello world')).toEqual(refs('llama-bpe').texts[0]!.ids);
  });
});
