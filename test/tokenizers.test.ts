/**
 * AutoTokenizer against reference ids from an independent implementation: Hugging Face's Rust `tokenizers`
 * (npm `tokenizers`), run once by scripts/gen_tokenizer_refs.ts into test/fixtures/tokenizers/refs/*.json.
 * The wrapped engine is the pure-JavaScript `@huggingface/tokenizers`, so every id compared here comes from two
 * different code bases.
 *
 * - Real files (read-only, in ../shared/real/tokenizers beside the project): GPT-2 and Llama 3 byte-level BPE.
 * - Small folders trained by the Rust trainers (test/fixtures/tokenizers): BERT WordPiece, RoBERTa byte-level BPE,
 *   Llama 2-style BPE with byte fallback, Marian-style Unigram with byte fallback and Metaspace; the BERT and
 *   RoBERTa ones also in the older vocab.txt and vocab.json + merges.txt formats.
 */
import fc from 'fast-check';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AutoTokenizer, type PreTrainedTokenizer } from '../lib';
import { loadTokenizer, readRefs } from './helpers/tokenizer-fixtures';
import { fcParams } from './helpers/fuzz';
import { missingPrecondition } from './helpers/preconditions';

const FIX = resolve(__dirname, 'fixtures/tokenizers');
/** The real files, relative to the project root: shared/ lies beside the repository. */
const REAL = resolve(__dirname, '..', '..', 'shared/real/tokenizers');

interface Refs {
  name: string;
  texts: { text: string; ids: number[]; idsNoSpecial: number[]; decoded: string; decodedSkipSpecial: string }[];
  prefixDecodes: { ids: number[]; decoded: string }[];
  pairs: { a: string; b: string; ids: number[]; typeIds: number[] }[];
  truncation: { a: string; b: string | null; maxLength: number; ids: number[] }[];
  padding: null | { texts: string[]; side: 'left' | 'right'; ids: number[][]; attentionMask: number[][]; typeIds: number[][] };
}

const refs = (name: string): Refs => readRefs<Refs>(FIX, name);
const load = loadTokenizer;

const rows = (t: { shape: readonly number[]; data: ArrayLike<number> }): number[][] => {
  const [B, L] = t.shape as [number, number];
  return Array.from({ length: B }, (_, b) => Array.from(t.data).slice(b * L, (b + 1) * L));
};

/** The checks every tokenizer must pass against its Rust references. */
function referenceSuite(label: string, dir: () => string, r: Refs, opts: { roundTrip: boolean; pairTruncation?: string }): void {
  describe(label, () => {
    let tok: PreTrainedTokenizer;
    it('loads', () => {
      tok = load(dir());
      expect(tok.vocabSize).toBeGreaterThan(100);
    });

    it.each(r.texts.map((t, i) => [i, JSON.stringify(t.text).slice(0, 40), t] as const))('ids of text %i %s', (_i, _d, t) => {
      expect(tok.encode(t.text)).toEqual(t.ids);
      expect(tok.encode(t.text, { addSpecialTokens: false })).toEqual(t.idsNoSpecial);
    });

    it('decodes as the reference decoder does (with and without special tokens)', () => {
      for (const t of r.texts) {
        expect(tok.decode(t.ids, { cleanUpTokenizationSpaces: false }), JSON.stringify(t.text)).toBe(t.decoded);
        expect(tok.decode(t.ids, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false }), JSON.stringify(t.text)).toBe(t.decodedSkipSpecial);
      }
    });

    it('decodes prefixes that cut UTF-8 sequences (U+FFFD as the reference places it)', () => {
      for (const c of r.prefixDecodes) expect(tok.decode(c.ids, { cleanUpTokenizationSpaces: false }), c.ids.join(',')).toBe(c.decoded);
    });

    if (opts.roundTrip) {
      it('decode(encode(x)) gives x back wherever the reference does', () => {
        let checked = 0;
        for (const t of r.texts) {
          if (t.decodedSkipSpecial !== t.text) continue;
          checked++;
          expect(tok.decode(tok.encode(t.text, { addSpecialTokens: false }), { cleanUpTokenizationSpaces: false })).toBe(t.text);
        }
        expect(checked).toBeGreaterThan(r.texts.length / 2);
      });
    }

    it('sentence pairs: ids and token type ids', () => {
      for (const p of r.pairs) {
        expect(tok.encode(p.a, { textPair: p.b }), `${p.a} | ${p.b}`).toEqual(p.ids);
        const out = tok(p.a, { textPair: p.b });
        expect(rows(out.inputIds)[0]).toEqual(p.ids);
        if (tok.returnsTokenTypeIds) expect(rows(out.tokenTypeIds!)[0]).toEqual(p.typeIds);
      }
    });

    it('truncation (longest first) to several lengths', () => {
      for (const c of r.truncation) {
        if (opts.pairTruncation && c.b !== null) continue;
        const got = tok.encode(c.a, { textPair: c.b ?? undefined, truncation: true, maxLength: c.maxLength });
        expect(got, `${c.maxLength}: ${c.a} | ${c.b}`).toEqual(c.ids);
      }
    });

    if (opts.pairTruncation) it.skip(`skipped: pair truncation: ${opts.pairTruncation}`, () => {});

    if (r.padding) {
      const pad = r.padding;
      it(`batch padding (${pad.side}) to a [B, L] int32 tensor`, () => {
        expect(tok.paddingSide).toBe(pad.side);
        const out = tok(pad.texts, { padding: true });
        expect(out.inputIds.dtype).toBe('int32');
        expect(out.inputIds.shape).toEqual([pad.texts.length, pad.ids[0]!.length]);
        expect(rows(out.inputIds)).toEqual(pad.ids);
        expect(rows(out.attentionMask)).toEqual(pad.attentionMask);
        if (tok.returnsTokenTypeIds) expect(rows(out.tokenTypeIds!)).toEqual(pad.typeIds);
      });
    }
  });
}

describe('real tokenizer files (../shared/real/tokenizers)', () => {
  for (const name of ['gpt2', 'llama3']) {
    const file = join(REAL, name, 'tokenizer.json');
    if (!existsSync(file)) {
      describe(name, () => missingPrecondition(`${file} is missing (the real ${name} tokenizer; see shared/real/README.md)`));
      continue;
    }
    referenceSuite(name, () => join(REAL, name), refs(name), { roundTrip: true });
  }
});

describe('trained fixture folders (tokenizer.json)', () => {
  referenceSuite('BERT WordPiece', () => join(FIX, 'bert-wordpiece'), refs('bert-wordpiece'), { roundTrip: false });
  referenceSuite('RoBERTa byte-level BPE', () => join(FIX, 'roberta-bpe'), refs('roberta-bpe'), { roundTrip: true });
  referenceSuite('Llama 2-style BPE, byte fallback', () => join(FIX, 'llama2-bpe'), refs('llama2-bpe'), { roundTrip: true });
  referenceSuite('Marian-style Unigram, byte fallback, Metaspace', () => join(FIX, 'marian-unigram'), refs('marian-unigram'), {
    roundTrip: false,
    // Measured: Rust splits an odd budget between two long sequences differently for this Unigram folder
    // (budget 7 of 14+44 tokens → 4+3, budget 9 → 4+5), which its documented rule and this wrapper do not reproduce.
    pairTruncation: 'Rust splits odd budgets between two long Unigram/byte-fallback sequences differently (open question, README)',
  });
});

describe('older formats give the same ids as tokenizer.json', () => {
  referenceSuite('BERT vocab.txt', () => join(FIX, 'bert-wordpiece-legacy'), refs('bert-wordpiece'), { roundTrip: false });
  referenceSuite('RoBERTa vocab.json + merges.txt', () => join(FIX, 'roberta-bpe-legacy'), refs('roberta-bpe'), { roundTrip: true });
});

describe('SentencePiece Unigram with the nmt_nfkc charsmap (Precompiled normalizer)', () => {
  // The engine's own Precompiled ignores the charsmap (NFKC instead); these ids need the charsmap's rules.
  referenceSuite('tokenizer.json (SpmConverter layout)', () => join(FIX, 'spm-unigram'), refs('spm-unigram'), { roundTrip: false });
  referenceSuite('tokenizer.model alone, converted as SpmConverter does', () => join(FIX, 'spm-unigram-model'), refs('spm-unigram'), { roundTrip: false });
});

describe('calling the tokenizer', () => {
  const bert = () => load(join(FIX, 'bert-wordpiece'));

  it('returns inputIds, attentionMask, tokenTypeIds for BERT, [B, L] int32', () => {
    const tok = bert();
    const out = tok(['hello world', 'the quick brown fox jumps'], { padding: 'longest' });
    expect(out.inputIds.shape[0]).toBe(2);
    expect(out.attentionMask.dtype).toBe('int32');
    expect(out.tokenTypeIds?.dtype).toBe('int32');
    const ids = rows(out.inputIds);
    const mask = rows(out.attentionMask);
    expect(ids[0]).toEqual([...tok.encode('hello world'), ...new Array(ids[0]!.length - tok.encode('hello world').length).fill(tok.padTokenId)]);
    expect(mask[1]!.every((v) => v === 1)).toBe(true);
    expect(mask[0]!.filter((v) => v === 1).length).toBe(tok.encode('hello world').length);
  });

  it("padding 'max_length' pads to maxLength; model_max_length caps truncation", () => {
    const tok = bert();
    const out = tok('hello', { padding: 'max_length', maxLength: 10 });
    expect(out.inputIds.shape).toEqual([1, 10]);
    expect(tok.modelMaxLength).toBe(32);
    const long = 'the quick brown fox '.repeat(40);
    expect(tok(long, { truncation: true }).inputIds.shape).toEqual([1, 32]);
    expect(tok(long).inputIds.shape[1]).toBeGreaterThan(32);
  });

  it('a single text equals a batch of one; padding false with unequal lengths is a RangeError', () => {
    const tok = bert();
    expect(rows(tok('hello world').inputIds)).toEqual(rows(tok(['hello world']).inputIds));
    expect(() => tok(['hello', 'hello world again'])).toThrow(RangeError);
    expect(() => tok(['hello', 'hello world again'])).toThrow(/padding/);
  });

  const gpt2Missing = !existsSync(join(REAL, 'gpt2', 'tokenizer.json'));
  it.skipIf(gpt2Missing)(`asking to pad without a pad token names the missing pad_token${gpt2Missing ? ' (skipped: ../shared/real/tokenizers/gpt2/tokenizer.json is missing)' : ''}`, () => {
    const tok = load(join(REAL, 'gpt2'));
    expect(() => tok(['a', 'a b c'], { padding: true })).toThrow(/pad_token/);
  });

  it('left padding from tokenizer_config.json (Llama 2-style folder)', () => {
    const tok = load(join(FIX, 'llama2-bpe'));
    const out = tok(['Hello', 'Hello world, again'], { padding: true });
    const r = rows(out.inputIds)[0]!;
    const m = rows(out.attentionMask)[0]!;
    expect(m[0]).toBe(0);
    expect(m[m.length - 1]).toBe(1);
    expect(r[0]).toBe(tok.padTokenId);
    expect(r.slice(m.indexOf(1))).toEqual(tok.encode('Hello'));
  });

  const llama3Missing = !existsSync(join(REAL, 'llama3', 'tokenizer.json'));
  it.skipIf(llama3Missing)(`special tokens in text are matched; skipSpecialTokens drops them${llama3Missing ? ' (skipped: ../shared/real/tokenizers/llama3/tokenizer.json is missing)' : ''}`, () => {
    const tok = load(join(REAL, 'llama3'));
    const ids = tok.encode('<|begin_of_text|>Hi<|eot_id|>', { addSpecialTokens: false });
    expect(ids[0]).toBe(128000);
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('Hi');
    expect(tok.decode(ids)).toBe('<|begin_of_text|>Hi<|eot_id|>');
  });
});

describe('bad input', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'attnode-tok-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  let n = 0;
  const folder = (files: Record<string, string>): string => {
    const dir = join(tmp, `case${n++}`);
    mkdirSync(dir);
    for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
    return dir;
  };
  const good = readFileSync(join(FIX, 'bert-wordpiece', 'tokenizer.json'), 'utf8');

  it('a folder without tokenizer files gives null', () => {
    expect(AutoTokenizer.fromPretrained(folder({ 'config.json': '{}' }))).toBeNull();
  });

  it('a missing folder or a non-string path', () => {
    expect(() => AutoTokenizer.fromPretrained(join(tmp, 'nope'))).toThrow(/must be an existing folder/);
    expect(() => AutoTokenizer.fromPretrained(42 as unknown as string)).toThrow(TypeError);
  });

  it('a truncated tokenizer.json names the file', () => {
    const dir = folder({ 'tokenizer.json': good.slice(0, good.length / 2) });
    expect(() => AutoTokenizer.fromPretrained(dir)).toThrow(/tokenizer\.json: not valid JSON/);
  });

  it('an unknown model type names model.type', () => {
    const j = JSON.parse(good);
    j.model.type = 'Morfessor';
    expect(() => AutoTokenizer.fromPretrained(folder({ 'tokenizer.json': JSON.stringify(j) }))).toThrow(/tokenizer\.json: field 'model\.type'.*"Morfessor"/);
  });

  it('a missing vocab names model.vocab; a bad merge names model.merges[i]', () => {
    const j = JSON.parse(good);
    delete j.model.vocab;
    expect(() => AutoTokenizer.fromPretrained(folder({ 'tokenizer.json': JSON.stringify(j) }))).toThrow(/field 'model\.vocab'.*missing/);
    const b = JSON.parse(readFileSync(join(FIX, 'roberta-bpe', 'tokenizer.json'), 'utf8'));
    b.model.merges[3] = 7;
    expect(() => AutoTokenizer.fromPretrained(folder({ 'tokenizer.json': JSON.stringify(b) }))).toThrow(/field 'model\.merges\[3\]'/);
  });

  it('vocab.json without merges.txt, and a malformed tokenizer_config.json', () => {
    expect(() => AutoTokenizer.fromPretrained(folder({ 'vocab.json': '{"a":0}' }))).toThrow(/no merges\.txt/);
    expect(() => AutoTokenizer.fromPretrained(folder({ 'tokenizer.json': good, 'tokenizer_config.json': '{"pad' }))).toThrow(/tokenizer_config\.json: not valid JSON/);
    const dir = folder({ 'vocab.txt': 'a\nb\n' });
    expect(() => AutoTokenizer.fromPretrained(dir)).toThrow(/vocab\.txt: unk_token "\[UNK\]" is not in the vocabulary/);
  });

  it('non-string text is a TypeError naming the argument; bad ids a RangeError', () => {
    const tok = load(join(FIX, 'bert-wordpiece'));
    expect(() => tok.encode(5 as unknown as string)).toThrow(/encode: argument 'text' must be a string/);
    expect(() => tok(['ok', null as unknown as string])).toThrow(/argument 'text\[1\]' must be a string/);
    expect(() => tok('a', { textPair: 3 as unknown as string })).toThrow(TypeError);
    expect(() => tok.decode('12' as unknown as number[])).toThrow(TypeError);
    expect(() => tok.decode([1, -1])).toThrow(RangeError);
    expect(() => tok.decode([1e9])).toThrow(/argument 'ids'/);
    expect(() => tok('a', { maxLength: 0, truncation: true })).toThrow(/maxLength/);
    expect(() => tok('a', { padding: 'longer' as 'longest' })).toThrow(/padding/);
  });

  it('fuzz: truncated and mutated tokenizer.json files load or throw a clean Error naming the file', () => {
    const small = readFileSync(join(FIX, 'roberta-bpe', 'tokenizer.json'), 'utf8');
    const dir = join(tmp, 'fuzz');
    mkdirSync(dir);
    copyFileSync(join(FIX, 'roberta-bpe', 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), ch: fc.constantFrom('"', '{', '}', '[', ']', ',', ':', '0', '-1', 'null', 'x', '') }),
      fc.record({ kind: fc.constant('field' as const), path: fc.constantFrom('model', 'model.type', 'model.vocab', 'model.merges', 'added_tokens', 'pre_tokenizer', 'decoder', 'post_processor', 'normalizer', 'model.unk_token'),
        value: fc.constantFrom<unknown>(null, 0, -3, 'BPE', 'Unigram', 'WordPiece', [], {}, [['a', 'b']], { type: 'Nope' }, 'x y') }),
    );
    fc.assert(fc.property(mutation, (m) => {
      let text: string;
      if (m.kind === 'truncate') text = small.slice(0, m.at % small.length);
      else if (m.kind === 'replace') { const at = m.at % small.length; text = small.slice(0, at) + m.ch + small.slice(at + 1); }
      else {
        const j = JSON.parse(small);
        const parts = m.path.split('.');
        let o = j;
        for (const p of parts.slice(0, -1)) o = o[p];
        o[parts[parts.length - 1]!] = m.value;
        text = JSON.stringify(j);
      }
      writeFileSync(join(dir, 'tokenizer.json'), text);
      let tok: PreTrainedTokenizer | null;
      try {
        tok = AutoTokenizer.fromPretrained(dir);
      } catch (e) {
        expect(e).toBeInstanceOf(Error);
        expect((e as Error).message).toMatch(/tokenizer\.json/);
        return;
      }
      expect(tok).not.toBeNull();
      // A file that loads must tokenize without crashing (an Error naming the file is allowed).
      try {
        const ids = tok!.encode('Hello world, café 你好 🙂');
        expect(Array.isArray(ids)).toBe(true);
      } catch (e) {
        expect(e).toBeInstanceOf(Error);
      }
    }), fcParams(8));
  });
});
