/**
 * The text-generation pipeline: Hugging Face's generated_text semantics on
 * the GPT-2 fixture folder (against the PyTorch greedy reference and the
 * model's own generate), left-padded batches, sampling, and streaming that
 * never splits a UTF-8 character, driven by a scripted model that emits the
 * byte tokens of multi-byte characters one by one.
 */
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { textGenerationPipeline } from '../lib/pipelines/text-generation';
import { GPT2LMHeadModel } from '../lib/models/gpt2';
import { AutoTokenizer, type PreTrainedTokenizer } from '../lib/tokenizers';
import { backends } from './helpers/backends';
import { byteLevelIds, scripted } from './helpers/scripted-model';
import { Tensor } from '../lib/tensor';

const DIR = path.join(__dirname, 'fixtures', 'hf', 'gpt2-tiny');
const ref = JSON.parse(readFileSync(path.join(DIR, 'reference.json'), 'utf8')) as {
  prompt: string; input_ids: number[]; greedy: number[];
  batch: { texts: string[]; greedy: number[][] };
};
const EOS = 316;

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const piece of it) out.push(piece);
  return out;
}

describe.each(backends)('textGenerationPipeline on the %s backend', (backend) => {
  it('generatedText is the prompt plus the decoded greedy reference tokens', async () => {
    const p = await textGenerationPipeline(DIR, { backend });
    const tok = p.tokenizer;
    const newText = tok.decode([...ref.input_ids, ...ref.greedy]).slice(tok.decode(ref.input_ids).length);
    expect(ref.greedy).not.toContain(EOS); // so eos handling cannot shorten this continuation
    expect(await p(ref.prompt, { maxNewTokens: 10 })).toEqual([{ generatedText: ref.prompt + newText }]);
    expect(await p(ref.prompt, { maxNewTokens: 10, returnFullText: false })).toEqual([{ generatedText: newText }]);
    expect(newText.length).toBeGreaterThan(0);
  });

  it('a batch of prompts is left-padded and each row matches the reference', async () => {
    const p = await textGenerationPipeline(DIR, { backend });
    const tok = p.tokenizer;
    const out = await p(ref.batch.texts, { maxNewTokens: 8, returnFullText: false, eosTokenId: null });
    expect(out).toHaveLength(2);
    ref.batch.texts.forEach((text, b) => {
      const ids = tok.encode(text);
      const want = tok.decode([...ids, ...ref.batch.greedy[b]!]).slice(tok.decode(ids).length);
      expect(out[b]).toEqual([{ generatedText: want }]);
    });
  });

  it('beam search returns numReturnSequences texts per prompt, the reference beams (scripts/gen_beam_fixtures.py)', async () => {
    const p = await textGenerationPipeline(DIR, { backend });
    const tok = p.tokenizer;
    const beams = (JSON.parse(readFileSync(path.join(__dirname, 'fixtures', 'beam_search.json'), 'utf8')) as {
      cases: { name: string; input_ids: number[][]; sequences: number[][] }[];
    }).cases.find((c) => c.name === 'beams4_batch_nrs2')!;
    // The fixture's prompts are these texts, left-padded; the pipeline pads with its own id (masked either way).
    const width = beams.input_ids[0]!.length;
    const out = await p(ref.batch.texts, { maxNewTokens: 8, numBeams: 4, numReturnSequences: 2, returnFullText: false, eosTokenId: null });
    expect(out).toHaveLength(2);
    ref.batch.texts.forEach((text, b) => {
      const ids = tok.encode(text);
      const want = [0, 1].map((j) => ({
        generatedText: tok.decode([...ids, ...beams.sequences[b * 2 + j]!.slice(width)]).slice(tok.decode(ids).length),
      }));
      expect(out[b]).toEqual(want);
    });
    await expect(collect(p.stream(ref.prompt, { maxNewTokens: 4, numBeams: 2 }))).rejects.toThrow(
      /options 'numBeams' and 'numReturnSequences' must be 1 when streaming/);
  });

  it('stops at the folder eos and samples reproducibly like the model', async () => {
    const p = await textGenerationPipeline(DIR, { backend });
    const model = p.model as GPT2LMHeadModel;
    const prompt = new Tensor(Int32Array.from(ref.input_ids), [1, ref.input_ids.length], 'int32');
    const opts = { doSample: true, seed: 11, topK: 40, topP: 0.95, temperature: 1.5, repetitionPenalty: 1.2 };
    // Every seed is compared with the model's own generate; at least one of them meets eos within 40 tokens
    // (9, 14 and 15 do with the draw over kept tokens in id order).
    let stoppedEarly = 0;
    for (const seed of [9, 10, 11, 12, 13, 14, 15, 16]) {
      const ids = await model.generateAsync(prompt, { ...opts, seed, maxNewTokens: 40, eosTokenId: EOS });
      const gen = Array.from(ids.data).slice(ref.input_ids.length);
      const cut = gen.indexOf(EOS);
      if (cut >= 0) stoppedEarly++;
      const kept = cut >= 0 ? gen.slice(0, cut) : gen;
      const want = p.tokenizer.decode([...ref.input_ids, ...kept]).slice(p.tokenizer.decode(ref.input_ids).length);
      const got = await p(ref.prompt, { ...opts, seed, maxNewTokens: 40, returnFullText: false });
      expect(got).toEqual([{ generatedText: want }]);
      expect(await p(ref.prompt, { ...opts, seed, maxNewTokens: 40, returnFullText: false })).toEqual(got);
    }
    expect(stoppedEarly).toBeGreaterThan(0);
  });

  it('stream pieces join to the returnFullText: false text', async () => {
    const p = await textGenerationPipeline(DIR, { backend });
    for (const seed of [1, 2, 3]) {
      const o = { doSample: true, seed, maxNewTokens: 30, eosTokenId: null };
      const pieces = await collect(p.stream(ref.prompt, o));
      const [{ generatedText }] = await p(ref.prompt, { ...o, returnFullText: false });
      expect(pieces.join('')).toBe(generatedText);
      expect(pieces.length).toBeGreaterThan(1);
    }
  });
});

describe('textGenerationPipeline.stream with multi-byte characters', () => {
  const tok = AutoTokenizer.fromPretrained(DIR) as PreTrainedTokenizer;
  const text = ' héllo 🙂 wörld ✓ 日本';

  it('never yields part of a character, and yields while generating', async () => {
    // One byte-level token per byte: the tokens split every multi-byte character.
    const byteTokens = byteLevelIds(tok);
    const ids = [...new TextEncoder().encode(text)].map((b) => byteTokens[b]!);
    // Decoding a prefix does end inside a character: what a naive per-token stream would emit.
    const prefixes = ids.map((_, i) => tok.decode(ids.slice(0, i + 1)));
    expect(prefixes.some((s) => s.endsWith('\ufffd'))).toBe(true);
    const model = scripted([...ids, EOS], tok.vocabSize);
    const p = await textGenerationPipeline({ model, tokenizer: tok, eosTokenId: EOS });
    const pieces: string[] = [];
    const callsAtPiece: number[] = [];
    for await (const piece of p.stream('The cat', { maxNewTokens: 60 })) {
      pieces.push(piece);
      callsAtPiece.push(model.calls);
    }
    expect(pieces.join('')).toBe(text);
    for (const piece of pieces) {
      expect(piece).not.toContain('\ufffd');
      expect(piece).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/); // no lone surrogate
    }
    expect(pieces).toContain('🙂');
    // The first piece arrives while tokens are still being generated.
    expect(callsAtPiece[0]!).toBeLessThan(ids.length);
    const [{ generatedText }] = await p('The cat', { maxNewTokens: 60 });
    expect(generatedText).toBe(`The cat${text}`);
  });

  it('stopping the iteration stops generation; errors reach the consumer', async () => {
    const byteTokens = byteLevelIds(tok);
    const ids = Array.from({ length: 40 }, (_, i) => byteTokens[97 + (i % 26)]!);
    const model = scripted(ids, tok.vocabSize);
    const p = await textGenerationPipeline({ model, tokenizer: tok });
    for await (const piece of p.stream('The', { maxNewTokens: 40 })) {
      expect(piece).toBe('a');
      break;
    }
    expect(model.calls).toBeLessThan(10);
    const broken = { ...scripted(ids, tok.vocabSize), forward: () => { throw new RangeError('kernel failed'); } };
    const q = await textGenerationPipeline({ model: broken, tokenizer: tok });
    await expect(collect(q.stream('The', { maxNewTokens: 5 }))).rejects.toThrow(/kernel failed/);
  });
});

describe('textGenerationPipeline bad input', () => {
  it('names the argument, option or file', async () => {
    const p = await textGenerationPipeline(DIR);
    await expect(p(5 as never)).rejects.toThrow(/argument 'prompts'/);
    await expect(p([] as string[])).rejects.toThrow(/argument 'prompts'/);
    await expect(p('hi', { maxTokens: 3 } as never)).rejects.toThrow(/unknown option 'maxTokens'/);
    await expect(p('hi', { returnFullText: 'no' } as never)).rejects.toThrow(/option 'returnFullText' must be a boolean/);
    await expect(p('hi', { maxNewTokens: -1 })).rejects.toThrow(/maxNewTokens/);
    await expect(p('hi', { maxNewTokens: 100 })).rejects.toThrow(/exceeds the model's 64 positions/);
    await expect(p('', { maxNewTokens: 2 })).rejects.toThrow(/prompt 0 encodes to no tokens/);
    await expect(p('hi', { doSample: true, temperature: 0 })).rejects.toThrow(/option 'temperature'/);
    await expect(collect(p.stream(7 as never))).rejects.toThrow(/argument 'prompt'/);
    await expect(textGenerationPipeline(DIR, { device: 'gpu' } as never)).rejects.toThrow(/unknown option 'device'/);
    await expect(textGenerationPipeline(42 as never)).rejects.toThrow(/argument 'source'/);
    // A model folder without tokenizer files.
    await expect(textGenerationPipeline(path.join(__dirname, 'fixtures', 'hf', 'llama-gqa'))).rejects.toThrow(/llama-gqa: no tokenizer files/);
  });
});

describe("pipeline('text-generation', dir)", () => {
  it('is the text-generation pipeline of the folder, with its options checked', async () => {
    const { pipeline } = await import('../lib/pipelines');
    const viaTask = await pipeline('text-generation', DIR, { backend: 'js' });
    const direct = await textGenerationPipeline(DIR, { backend: 'js' });
    const opts = { maxNewTokens: 6, returnFullText: false };
    expect(await viaTask('Once upon a time', opts)).toEqual(await direct('Once upon a time', opts));
    await expect(pipeline('text-generation', DIR, { batchSize: 4 } as never)).rejects.toThrow(/unknown option 'batchSize'/);
  });
});

describe("textGenerationPipeline follows the folder's generation settings", () => {
  const HF_DIR = path.join(__dirname, 'fixtures', 'hf');
  const copyWith = (edit: (dir: string) => void): string => {
    const d = mkdtempSync(path.join(tmpdir(), 'attnode-textgen-'));
    cpSync(path.join(HF_DIR, 'gpt2-tiny'), d, { recursive: true });
    edit(d);
    return d;
  };
  const setConfig = (d: string, change: (c: Record<string, unknown>) => void): void => {
    const file = path.join(d, 'config.json');
    const c = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    change(c);
    writeFileSync(file, JSON.stringify(c));
  };

  it("config.json's task_specific_params['text-generation'] (GPT-2's checkpoints set it) sets the pipeline's defaults", async () => {
    const d = copyWith((dir) => setConfig(dir, (c) => (c['task_specific_params'] = { 'text-generation': { max_length: 12, no_repeat_ngram_size: 1 } })));
    const p = await textGenerationPipeline(d);
    const plain = await textGenerationPipeline(path.join(HF_DIR, 'gpt2-tiny'));
    const promptIds = p.tokenizer.encode('The cat sat');
    // max_length counts the prompt, as transformers' pipeline applies it; the processor is used unless the call says otherwise.
    const [{ generatedText }] = (await p('The cat sat', { returnFullText: false, eosTokenId: null })) as { generatedText: string }[];
    const want = (await plain('The cat sat', { returnFullText: false, eosTokenId: null, maxNewTokens: 12 - promptIds.length, noRepeatNgramSize: 1 })) as { generatedText: string }[];
    expect(generatedText).toBe(want[0]!.generatedText);
    const longer = (await p('The cat sat', { returnFullText: false, eosTokenId: null, maxNewTokens: 12, noRepeatNgramSize: 0 })) as { generatedText: string }[];
    const plainLonger = (await plain('The cat sat', { returnFullText: false, eosTokenId: null, maxNewTokens: 12 })) as { generatedText: string }[];
    expect(longer[0]!.generatedText).toBe(plainLonger[0]!.generatedText);
  });

  it("generation_config.json's max_new_tokens is the default length; bad task params name the file and field", async () => {
    const d = copyWith((dir) => writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ max_new_tokens: 3, eos_token_id: null })));
    const p = await textGenerationPipeline(d);
    const [{ generatedText }] = (await p('The cat sat', { returnFullText: false })) as { generatedText: string }[];
    const plain = await textGenerationPipeline(path.join(HF_DIR, 'gpt2-tiny'));
    const want = (await plain('The cat sat', { returnFullText: false, maxNewTokens: 3, eosTokenId: null })) as { generatedText: string }[];
    expect(generatedText).toBe(want[0]!.generatedText);
    const bad = copyWith((dir) => setConfig(dir, (c) => (c['task_specific_params'] = { 'text-generation': { top_p: 3 } })));
    await expect(textGenerationPipeline(bad)).rejects.toThrow(/config.json \(task_specific_params.text-generation\): field 'top_p' must be a number in \(0, 1\]/);
  });
});
