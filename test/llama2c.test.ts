/**
 * llama2.c checkpoints and tokenizers through the Llama model, against
 * test/fixtures/llama2c/ (scripts/gen_llama_fixtures.py: a random checkpoint
 * with grouped-query attention and an unshared classifier, and reference
 * logits, greedy tokens and token ids from PyTorch/Python ports of run.c).
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Llama2cTokenizer, loadLlama2c, parseLlama2cHeader } from '../lib/io/llama2c';
import { Tensor } from '../lib/tensor';
import { backends } from './helpers/backends';
import { missingPrecondition } from './helpers/preconditions';

const DIR = path.join(__dirname, 'fixtures', 'llama2c');
const MODEL = path.join(DIR, 'model.bin');
const TOK = path.join(DIR, 'tokenizer.bin');
const ref = JSON.parse(readFileSync(path.join(DIR, 'reference.json'), 'utf8')) as {
  config: { vocab: number };
  encode: { text: string; ids: number[] }[];
  prompt: number[];
  logits: number[][];
  greedy: number[];
};

describe('llama2.c tokenizer', () => {
  const tok = Llama2cTokenizer.parse(new Uint8Array(readFileSync(TOK)), ref.config.vocab, TOK);

  it('encodes as run.c does (reference ids from a Python port), and decodes back', () => {
    for (const { text, ids } of ref.encode) {
      expect(tok.encode(text), text).toEqual(ids);
      expect(tok.decode(ids), text).toBe(text);
    }
    expect(tok.encode('the', { bos: false, eos: true }).at(-1)).toBe(2);
    // Hugging Face's option names: addSpecialTokens is BOS (Llama's tokenizer adds no EOS), skipSpecialTokens.
    const { text, ids } = ref.encode[0]!;
    expect(tok.encode(text, { addSpecialTokens: false })).toEqual(ids.slice(1));
    expect(ids[0]).toBe(tok.bosTokenId);
    expect(tok.decode([...ids, tok.eosTokenId], { skipSpecialTokens: false })).toBe(`${tok.vocab[1]}${text}${tok.vocab[2]}`);
    expect(tok.decode([...ids, tok.eosTokenId], { skipSpecialTokens: true })).toBe(text);
    expect(() => tok.encode('x', { addSpecialTokens: 'yes' as never })).toThrow(/option 'addSpecialTokens' must be a boolean, got string/);
  });

  it('a truncated or malformed file is a RangeError naming the file and what is wrong', () => {
    const buf = new Uint8Array(readFileSync(TOK));
    expect(() => Llama2cTokenizer.parse(buf.subarray(0, 100), ref.config.vocab, 'tok.bin')).toThrowError(/tok.bin: truncated at byte \d+ reading token \d+/);
    const bad = buf.slice();
    new DataView(bad.buffer).setInt32(8, 1e6, true); // token 0's length
    expect(() => Llama2cTokenizer.parse(bad, ref.config.vocab, 'tok.bin')).toThrowError(/tok.bin: token 0 has length 1000000/);
    expect(() => tok.encode(5 as never)).toThrowError(TypeError);
    expect(() => tok.decode([ref.config.vocab])).toThrowError(RangeError);
  });
});

describe('llama2.c checkpoint header', () => {
  it('bad headers and truncated weights are RangeErrors naming the file and field', () => {
    const buf = new Uint8Array(readFileSync(MODEL));
    expect(() => parseLlama2cHeader(buf.subarray(0, 10), 'm.bin')).toThrowError(/m.bin: a llama2.c checkpoint starts with 7 int32/);
    const bad = buf.slice(0, 28);
    new DataView(bad.buffer).setInt32(12, 3, true); // n_heads 3 does not divide dim 32
    expect(() => parseLlama2cHeader(bad, 'm.bin')).toThrowError(/m.bin: dim \(32\) must be divisible by n_heads \(3\)/);
    new DataView(bad.buffer).setInt32(0, 0, true);
    expect(() => parseLlama2cHeader(bad, 'm.bin')).toThrowError(/m.bin: header field dim must be positive, got 0/);
    const h = parseLlama2cHeader(buf, 'm.bin');
    expect(h).toMatchObject({ dim: 32, nHeads: 4, nKvHeads: 2, vocabSize: ref.config.vocab, sharedClassifier: false });
  });
});

describe.each(backends)('llama2.c model on the %s backend', (backend) => {
  it('logits of a prompt match the PyTorch port of run.c', async () => {
    const { model } = await loadLlama2c(MODEL);
    model.useBackend(backend);
    const ids = new Tensor(Int32Array.from(ref.prompt), [1, ref.prompt.length], 'int32');
    const logits = model.forward(ids).contiguous();
    const v = ref.config.vocab;
    let worst = 0;
    ref.logits.forEach((row, t) => row.forEach((want, j) => {
      worst = Math.max(worst, Math.abs(logits.data[t * v + j]! - want));
    }));
    expect(worst).toBeLessThan(1e-4);
  });

  it('greedy generation and cached steps give run.c\'s tokens', async () => {
    const { model, tokenizer } = await loadLlama2c(MODEL, { tokenizer: TOK });
    model.useBackend(backend);
    const ids = new Tensor(Int32Array.from(ref.prompt), [1, ref.prompt.length], 'int32');
    const out = model.generate(ids, { maxNewTokens: ref.greedy.length });
    expect(Array.from(out.data.subarray(ref.prompt.length))).toEqual(ref.greedy);
    expect(tokenizer!.decode(Array.from(out.data)).startsWith('Once upon a time')).toBe(true);
    const asyncOut = await model.generateAsync(ids, { maxNewTokens: ref.greedy.length });
    expect(Array.from(asyncOut.data)).toEqual(Array.from(out.data));
  });

  it('a left-padded batch generates what each prompt does alone', async () => {
    const { model } = await loadLlama2c(MODEL);
    model.useBackend(backend);
    const a = ref.prompt;
    const b = ref.prompt.slice(0, 4);
    const pad = a.length - b.length;
    const ids = new Tensor(Int32Array.from([...a, ...new Array<number>(pad).fill(0), ...b]), [2, a.length], 'int32');
    const mask = new Tensor(Int32Array.from([...a.map(() => 1), ...new Array<number>(pad).fill(0), ...b.map(() => 1)]), [2, a.length], 'int32');
    const both = model.generate(ids, { maxNewTokens: 6, attentionMask: mask });
    const alone = (p: number[]): number[] =>
      Array.from(model.generate(new Tensor(Int32Array.from(p), [1, p.length], 'int32'), { maxNewTokens: 6 }).data.subarray(p.length));
    expect(Array.from(both.data.subarray(a.length, a.length + 6))).toEqual(alone(a));
    expect(Array.from(both.data.subarray(a.length + 6 + a.length))).toEqual(alone(b));
  });

  it('sampling is reproducible for a seed and follows top-k', async () => {
    const { model } = await loadLlama2c(MODEL);
    model.useBackend(backend);
    const ids = new Tensor(Int32Array.from(ref.prompt), [1, ref.prompt.length], 'int32');
    const opts = { maxNewTokens: 8, doSample: true, temperature: 0.9, topK: 5, seed: 42 };
    const x = model.generate(ids, opts);
    expect(Array.from(model.generate(ids, opts).data)).toEqual(Array.from(x.data));
    const greedyFirst = ref.greedy[0];
    const topOne = model.generate(ids, { ...opts, topK: 1, maxNewTokens: 1 });
    expect(topOne.data[ref.prompt.length]).toBe(greedyFirst);
  });
});

describe('stories260K (the real llama2.c model)', () => {
  const real = path.resolve(__dirname, '..', '..', 'shared', 'real');
  const files = ['stories260K.bin', 'tok512.bin'].map((f) => path.join(real, f));
  if (!files.every(existsSync)) {
    // shared/real/README.md lists these files; in this workplace they are not there.
    missingPrecondition(`${files.filter((f) => !existsSync(f)).join(', ')} not found (see ../shared/real/README.md)`, false);
    return;
  }
  it('tells the story llama2.c documents, at temperature 0 from BOS', async () => {
    const { model, tokenizer } = await loadLlama2c(files[0]!, { tokenizer: files[1]! });
    const out = model.generate(new Tensor(Int32Array.of(1), [1, 1], 'int32'), { maxNewTokens: 40 });
    expect(tokenizer!.decode(Array.from(out.data))).toMatch(/^Once upon a time, there was a little girl named Lily\. She loved to play outside in the park\./);
  });
});
