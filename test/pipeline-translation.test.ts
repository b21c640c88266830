/**
 * The 'translation' pipeline on the MarianMT fixture folders: text → tokenizer
 * (ids from the Rust tokenizers) → generate with the folder's generation
 * defaults or the call's options → text, against the sequences the PyTorch
 * reference generated (scripts/gen_marian_fixtures.py), decoded by the same
 * tokenizer; the caller's order through length sorting and batching, and bad
 * input.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { pipeline } from '../lib/index';
import { AutoTokenizer } from '../lib/tokenizers';
import { HF, marianFolder } from './helpers/marian-folders';

interface GenerateCase { name: string; call: Record<string, number>; sequences: number[][] }
interface Reference { texts: string[]; generate: GenerateCase[]; translations?: Record<string, string[]> }
const ref = (name: string): Reference => JSON.parse(readFileSync(path.join(marianFolder(name), 'reference.json'), 'utf8')) as Reference;

/**
 * The texts of a reference case's sequences as the pipeline decodes them (special tokens dropped, no clean-up):
 * the reference's own decodes where the generator had an independent tokenizer (sentencepiece), else this
 * tokenizer's decode of the reference ids.
 */
function texts(name: string, caseName: string): string[] {
  const r = ref(name);
  if (r.translations) return r.translations[caseName]!;
  const tok = AutoTokenizer.fromPretrained(marianFolder(name))!;
  const c = r.generate.find((g) => g.name === caseName)!;
  return c.sequences.map((s) => tok.decode(s, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false }));
}

describe.each(['marian-tiny', 'marian-gelu-unshared', 'marian-opus-spm'])('translation pipeline on %s', (name) => {
  const dir = marianFolder(name);
  const r = ref(name);

  it('translates with the folder\'s generation defaults (generation_config.json, else config.json) as the reference does', async () => {
    const p = await pipeline('translation', dir);
    expect(p.task).toBe('translation');
    const out = await p(r.texts);
    expect(out).toEqual(texts(name, 'folder_defaults').map((translationText) => ({ translationText })));
    // Text, not only special tokens: the random model's tokens are pieces of the vocabulary.
    expect(out.some((o) => o.translationText.length > 0)).toBe(true);
  });

  it('takes generate options per call (greedy, beams) and keeps the caller\'s order for any batch size', async () => {
    const p = await pipeline('translation', dir, { batchSize: 2 });
    const greedy = texts(name, 'greedy');
    expect(await p(r.texts, { numBeams: 1, maxNewTokens: 12 })).toEqual(greedy.map((translationText) => ({ translationText })));
    const beams = texts(name, 'beams3');
    const reversed = [...r.texts].reverse();
    for (const batchSize of [1, 2, 3]) {
      const out = await p(reversed, { numBeams: 3, maxNewTokens: 10, batchSize });
      expect(out.map((o) => o.translationText)).toEqual([...beams].reverse());
    }
    // maxLength counts the decoder start token, as in transformers.
    expect(await p(r.texts, { numBeams: 3, maxLength: 11 })).toEqual(beams.map((translationText) => ({ translationText })));
    // A single string gives one result; an empty list none.
    expect(await p(r.texts[1]!, { numBeams: 3, maxNewTokens: 10 })).toEqual([{ translationText: beams[1] }]);
    expect(await p([])).toEqual([]);
  });

  it('keeps special tokens when asked', async () => {
    const p = await pipeline('translation', dir);
    const [out] = await p(r.texts[0]!, { numBeams: 1, maxNewTokens: 12, skipSpecialTokens: false });
    expect(out!.translationText.startsWith('<pad>')).toBe(true);
    expect(out!.translationText).toContain('</s>');
  });
});

describe('translation pipeline', () => {
  const dir = path.join(HF, 'marian-tiny');

  it('answers to transformers\' translation_<src>_to_<tgt> task names', async () => {
    const p = await pipeline('translation_en_to_de', dir);
    expect(p.task).toBe('translation');
    expect(await p('Hello world', { numBeams: 1, maxNewTokens: 12 })).toEqual([{ translationText: texts('marian-tiny', 'greedy')[1] }]);
  });

  it('rejects bad input naming the argument or option', async () => {
    const p = await pipeline('translation', dir);
    await expect(p(42 as never)).rejects.toThrow(/argument 'texts' must be a string or an array of strings/);
    await expect(p(['a', 3] as never)).rejects.toThrow(/argument 'texts'/);
    await expect(p('a', { beams: 2 } as never)).rejects.toThrow(/unknown option 'beams'/);
    await expect(p('a', { skipSpecialTokens: 'yes' } as never)).rejects.toThrow(/option 'skipSpecialTokens' must be a boolean/);
    await expect(p('a', { numBeams: 0 })).rejects.toThrow(/numBeams/);
    await expect(p('a', { maxNewTokens: 64 })).rejects.toThrow(/exceeds the model's 64 positions/);
    await expect(p('a', { batchSize: 0 })).rejects.toThrow(/batchSize/);
    await expect(pipeline('translation', dir, { beams: 2 } as never)).rejects.toThrow(/unknown option 'beams'/);
    await expect(pipeline('translation', path.join(HF, 'gpt2-tiny'))).rejects.toThrow(/field 'model_type' "gpt2" is not a supported sequence-to-sequence model/);
    // The opus-mt layout stored without its SentencePiece files: the model loads, the pipeline names what is missing.
    await expect(pipeline('translation', path.join(HF, 'marian-opus-spm'))).rejects.toThrow(/no tokenizer files \(.*source.spm \+ target.spm \+ vocab.json/);
  });
});
