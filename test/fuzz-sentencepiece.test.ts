/**
 * Fuzzing the SentencePiece readers: random well-formed ModelProto files round-trip; truncated, bit-flipped and
 * spliced model files either parse into a consistent model or throw a RangeError whose message starts with the
 * file name and names a field. The same holds one level further: a model that parses and is then used (the
 * charsmap normalisers, the SentencePiece search, the tokenizer.json converters) fails only with an Error that
 * names the file, never with a TypeError from inside, and never hangs.
 *
 * FUZZ_RUNS / FUZZ_SEED as in helpers/fuzz.ts; test/fuzz-corpus entries of kind 'sentencepiece' are replayed.
 */
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseSentencePieceModel, type SentencePieceModel } from '../lib/io/sentencepiece';
import { PrecompiledCharsmap, normalizeSpm } from '../lib/tokenizers/precompiled';
import { SpmProcessor, spmTokenizerJson } from '../lib/tokenizers/spm';
import { fcParams, loadCorpus } from './helpers/fuzz';

const FIX = resolve(__dirname, 'fixtures/spm');
const LLAMA = new Uint8Array(readFileSync(resolve(FIX, 'llama-bpe/tokenizer.model')));
const MARIAN = new Uint8Array(readFileSync(resolve(FIX, 'marian-en-de/source.spm')));
const FILE = 'fuzz.model';

// ---- a minimal protobuf writer (the test's own, independent of the reader) ----
function varint(v: bigint): number[] {
  let x = BigInt.asUintN(64, v);
  const out: number[] = [];
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x !== 0n) b |= 0x80;
    out.push(b);
  } while (x !== 0n);
  return out;
}
const tag = (field: number, wire: number) => varint(BigInt((field << 3) | wire));
const lenField = (field: number, payload: number[]) => [...tag(field, 2), ...varint(BigInt(payload.length)), ...payload];
const strField = (field: number, s: string) => lenField(field, Array.from(new TextEncoder().encode(s)));
const intField = (field: number, v: number) => [...tag(field, 0), ...varint(BigInt(v))];
function floatField(field: number, v: number): number[] {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, v, true);
  return [...tag(field, 5), ...b];
}

const TYPES = ['normal', 'unknown', 'control', 'user_defined', 'unused', 'byte'] as const;

interface Spec {
  pieces: { piece: string; score: number; type: number }[];
  modelType: number;
  unkId: number;
  padId: number;
  byteFallback: boolean;
  name: string;
  addDummyPrefix: boolean;
  unknownField: boolean;
}

function encodeSpec(s: Spec): Uint8Array {
  const out: number[] = [];
  for (const p of s.pieces) {
    const body = [...strField(1, p.piece), ...floatField(2, p.score), ...(p.type === 1 ? [] : intField(3, p.type))];
    out.push(...lenField(1, body));
  }
  const trainer = [...intField(3, s.modelType), ...intField(40, s.unkId), ...intField(41, -1), ...intField(42, -1), ...intField(43, s.padId),
    ...intField(35, s.byteFallback ? 1 : 0), ...strField(45, '<unk>')];
  // Fields the reader does not know (a repeated string, a fixed64) must be skipped.
  if (s.unknownField) trainer.push(...strField(1, 'corpus.txt'), ...tag(99, 1), 1, 2, 3, 4, 5, 6, 7, 8);
  out.push(...lenField(2, trainer));
  out.push(...lenField(3, [...strField(1, s.name), ...intField(3, s.addDummyPrefix ? 1 : 0)]));
  return Uint8Array.from(out);
}

const specArb: fc.Arbitrary<Spec> = fc.uniqueArray(fc.string({ minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 12 })
  .chain((names) => fc.record({
    pieces: fc.tuple(...names.map((piece) => fc.record({
      piece: fc.constant(piece),
      score: fc.float({ noNaN: true, min: -20, max: 0 }),
      type: fc.integer({ min: 1, max: 6 }),
    }))),
    modelType: fc.integer({ min: 1, max: 4 }),
    unkId: fc.integer({ min: 0, max: names.length - 1 }),
    padId: fc.integer({ min: -1, max: names.length - 1 }),
    byteFallback: fc.boolean(),
    name: fc.constantFrom('', 'identity', 'nmt_nfkc'),
    addDummyPrefix: fc.boolean(),
    unknownField: fc.boolean(),
  }));

/** Parses; the outcome must be a consistent model or a RangeError naming the file. Returns the model or the error class. */
function parseClean(bytes: Uint8Array, file = FILE): SentencePieceModel | string {
  try {
    const m = parseSentencePieceModel(bytes, file);
    expect(m.pieces.length).toBeGreaterThan(0);
    for (const p of m.pieces) {
      expect(typeof p.piece).toBe('string');
      expect(p.piece.length).toBeGreaterThan(0);
      expect(TYPES).toContain(p.type);
    }
    expect(m.trainerSpec.unkId).toBeLessThan(m.pieces.length);
    return m;
  } catch (e) {
    const err = e as Error;
    expect(err.constructor.name, `${err.constructor.name}: ${err.message}`).toBe('RangeError');
    expect(err.message.startsWith(`${file}: `), err.message).toBe(true);
    expect(err.message).toMatch(/field '[^']+'/);
    return 'RangeError';
  }
}

/** Uses a parsed model; only Errors naming the file are allowed. */
function useClean(m: SentencePieceModel, texts: string[]): void {
  const attempt = (what: string, fn: () => void) => {
    try {
      fn();
    } catch (e) {
      const err = e as Error;
      expect(['RangeError', 'Error'], `${what}: ${err.constructor.name}: ${err.message}`).toContain(err.constructor.name);
      expect(err.message.startsWith(`${m.file}: `), `${what}: ${err.message}`).toBe(true);
    }
  };
  attempt('SpmProcessor', () => {
    const p = new SpmProcessor(m);
    for (const t of texts) {
      const pieces = p.encode(t);
      expect(typeof p.decode(pieces)).toBe('string');
    }
  });
  attempt('spmTokenizerJson', () => {
    spmTokenizerJson(m, {
      legacy: true, addPrefixSpace: true, addBosToken: false, addEosToken: false, bosToken: undefined, eosToken: undefined,
      specialTokens: [], addedTokensDecoder: new Map(),
    });
  });
}

const TEXTS = ['Hello world', '  ＡＢＣ ﬁ e\u0301 😀 你好\t\n', '', 'x\u0000y'];

describe('SentencePiece model fuzz', () => {
  it('well-formed random models round-trip exactly', () => {
    fc.assert(fc.property(specArb, (s) => {
      const m = parseSentencePieceModel(encodeSpec(s), FILE);
      expect(m.pieces).toEqual(s.pieces.map((p) => ({ piece: p.piece, score: Math.fround(p.score), type: TYPES[p.type - 1] })));
      expect(m.trainerSpec.modelType).toBe(['unigram', 'bpe', 'word', 'char'][s.modelType - 1]);
      expect(m.trainerSpec.unkId).toBe(s.unkId);
      expect(m.trainerSpec.padId).toBe(s.padId);
      expect(m.trainerSpec.bosId).toBe(-1);
      expect(m.trainerSpec.byteFallback).toBe(s.byteFallback);
      expect(m.normalizerSpec.name).toBe(s.name);
      expect(m.normalizerSpec.addDummyPrefix).toBe(s.addDummyPrefix);
      expect(m.normalizerSpec.removeExtraWhitespaces).toBe(true);
      useClean(m, TEXTS);
    }), fcParams(2));
  });

  it('truncated model files throw a RangeError naming the file and field (or parse when cut between fields)', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: LLAMA.length - 1 }), (n) => {
      const r = parseClean(LLAMA.subarray(0, n));
      if (typeof r !== 'string') useClean(r, TEXTS);
    }), fcParams(4));
    // The large Marian file (a charsmap of 237 kB) cut anywhere inside its normalizer_spec.
    fc.assert(fc.property(fc.integer({ min: 0, max: MARIAN.length - 1 }), (n) => {
      parseClean(MARIAN.subarray(0, n));
    }), fcParams(1));
  });

  it('bit flips, byte runs and splices parse consistently or throw a clean RangeError; parsed models use cleanly', () => {
    const mutation = fc.record({
      at: fc.nat(),
      kind: fc.constantFrom('flip', 'set', 'insert', 'delete', 'splice'),
      value: fc.integer({ min: 0, max: 255 }),
      len: fc.integer({ min: 1, max: 12 }),
    });
    fc.assert(fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (muts) => {
      let b = Array.from(LLAMA);
      for (const m of muts) {
        const at = m.at % (b.length + 1);
        if (m.kind === 'flip' && at < b.length) b[at] = b[at]! ^ (1 << (m.value % 8));
        else if (m.kind === 'set') b.splice(at, Math.min(m.len, b.length - at), ...new Array<number>(m.len).fill(m.value));
        else if (m.kind === 'insert') b.splice(at, 0, ...new Array<number>(m.len).fill(m.value));
        else if (m.kind === 'delete') b.splice(at, m.len);
        else b = b.concat(b.slice(at, at + m.len * 16));
      }
      const r = parseClean(Uint8Array.from(b));
      if (typeof r !== 'string') useClean(r, TEXTS);
    }), fcParams(4));
  });

  const model = parseSentencePieceModel(MARIAN, 'source.spm');
  const blob = model.normalizerSpec.precompiledCharsmap;
  const where = "source.spm: field 'normalizer_spec.precompiled_charsmap'";
  type CharsmapCase = { mutations: { at: number; value: number }[]; text: string; cut: boolean };

  /** Mutates the charsmap (mostly its trie: the first 4 kB hold the size, the root and the Latin branches), normalises. */
  function charsmapClean({ mutations, text, cut }: CharsmapCase): void {
    const b = blob.slice();
    for (const m of mutations) b[m.at % Math.min(b.length, 4096)] = m.value;
    const bytes = cut ? b.subarray(0, (mutations[0]!.at % b.length) + 1) : b;
    try {
      const cm = new PrecompiledCharsmap(bytes, where);
      const opts = { charsmap: cm, addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true, treatWhitespaceAsSuffix: false, userDefined: [] };
      expect(typeof normalizeSpm(text, opts)).toBe('string');
      expect(typeof cm.normalizeLikeTokenizers(text)).toBe('string');
    } catch (e) {
      expect((e as Error).constructor.name, (e as Error).message).toBe('RangeError');
      expect((e as Error).message.startsWith(`${where}: `), (e as Error).message).toBe(true);
    }
  }

  it('a corrupted precompiled charsmap normalises or throws a RangeError naming the field', () => {
    // Code units, not code points: lone surrogates are input too.
    const texts = fc.string({ unit: fc.constantFrom(...'aZ ＡｶﾞﬁΩ\u0301\u00a0\u3000😀你\t'.split(''), 'e\u0301'), maxLength: 12 });
    const mutations = fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 6 });
    fc.assert(fc.property(mutations, texts, fc.boolean(), (m, text, cut) => charsmapClean({ mutations: m, text, cut })), fcParams(4));
  });

  for (const [file, entry] of loadCorpus<CharsmapCase>('sentencepiece-charsmap')) {
    it(`corpus ${file}: ${entry.note}`, () => charsmapClean(entry.case));
  }

  for (const [file, entry] of loadCorpus<{ base64: string; expect: string }>('sentencepiece')) {
    it(`corpus ${file}: ${entry.note}`, () => {
      const r = parseClean(new Uint8Array(Buffer.from(entry.case.base64, 'base64')));
      expect(typeof r === 'string' ? r : 'ok').toBe(entry.case.expect);
    });
  }
});
