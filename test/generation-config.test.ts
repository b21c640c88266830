/**
 * A folder's generation defaults: generation_config.json wins over config.json
 * (as transformers reads them), fields are checked and named, and the
 * conversion to generate's option defaults (max_length counting the decoder
 * start token, the positions limit, transformers' top_k default).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { generationConfigFromJson, generationDefaultsFrom, loadGenerationConfig } from '../lib/models/generation-config';
import { AutoModelForCausalLM } from '../lib/models/auto';
import { Tensor } from '../lib/tensor';
import { copyHfFolder, editConfig } from './helpers/hf-folder-copy';

const HF = path.join(__dirname, 'fixtures', 'hf');

function folder(files: Record<string, string>): string {
  const d = mkdtempSync(path.join(tmpdir(), 'attnode-gencfg-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(d, name), text);
  return d;
}

describe('loadGenerationConfig', () => {
  it('reads generation_config.json alone when present, else config.json, else nothing', async () => {
    const both = folder({
      'config.json': JSON.stringify({ model_type: 'marian', num_beams: 6, max_length: 512, eos_token_id: 0 }),
      'generation_config.json': JSON.stringify({ num_beams: 4, bad_words_ids: [[9]], renormalize_logits: true, early_stopping: 'never' }),
    });
    expect(await loadGenerationConfig(both)).toEqual({ numBeams: 4, badWordsIds: [[9]], renormalizeLogits: true, earlyStopping: 'never' });
    const configOnly = folder({ 'config.json': JSON.stringify({ num_beams: 6, max_length: 512, eos_token_id: [0, 3], pad_token_id: null }) });
    expect(await loadGenerationConfig(configOnly)).toEqual({ numBeams: 6, maxLength: 512, eosTokenId: [0, 3], padTokenId: null });
    expect(await loadGenerationConfig(folder({}))).toEqual({});
  });

  it('names the file and field of a bad value, and the file of bad JSON', async () => {
    const bad = folder({ 'generation_config.json': JSON.stringify({ num_beams: 0 }) });
    await expect(loadGenerationConfig(bad)).rejects.toThrow(`${path.join(bad, 'generation_config.json')}: field 'num_beams' must be an integer >= 1, got 0`);
    expect(() => generationConfigFromJson({ bad_words_ids: [[1], []] }, 'g.json')).toThrow(/g.json: field 'bad_words_ids' must be a list of non-empty lists of token ids/);
    expect(() => generationConfigFromJson({ top_p: 1.5 }, 'g.json')).toThrow(/field 'top_p' must be a number in \(0, 1\]/);
    expect(() => generationConfigFromJson({ early_stopping: 'sometimes' }, 'g.json')).toThrow(/field 'early_stopping'/);
    const truncated = folder({ 'generation_config.json': '{"num_beams": 4,' });
    await expect(loadGenerationConfig(truncated)).rejects.toThrow(/generation_config.json: is not valid JSON/);
    const array = folder({ 'generation_config.json': '[1, 2]' });
    await expect(loadGenerationConfig(array)).rejects.toThrow(/the top level must be a JSON object/);
  });
});

describe('generationDefaultsFrom', () => {
  const model = { eosTokenId: 0, padTokenId: 58100, maxPositions: 512, prefixLength: 1 };

  it('turns max_length / min_length into new-token counts after the prefix, within the positions', () => {
    expect(generationDefaultsFrom({ maxLength: 512, minLength: 3, numBeams: 4, badWordsIds: [[58100]], forcedEosTokenId: 0 }, model)).toEqual({
      maxNewTokens: 511, minNewTokens: 2, topK: 50, eosTokenId: 0, padTokenId: 58100, numBeams: 4, badWordsIds: [[58100]], forcedEosTokenId: 0,
    });
    // transformers' default max_length is 20; a max_length beyond the positions is cut to them.
    expect(generationDefaultsFrom({}, model).maxNewTokens).toBe(19);
    expect(generationDefaultsFrom({ maxLength: 1024 }, model).maxNewTokens).toBe(511);
    // max_new_tokens wins over max_length; the generation config's eos and pad over the model's.
    const d = generationDefaultsFrom({ maxLength: 100, maxNewTokens: 7, eosTokenId: [1, 2], padTokenId: 5, topK: 0 }, model);
    expect(d).toMatchObject({ maxNewTokens: 7, eosTokenId: [1, 2], padTokenId: 5, topK: 0 });
  });
});

describe('decoder-only folders: generate picks up the generation config as transformers does', () => {
  const prompt = (): Tensor<'int32'> => new Tensor(Int32Array.from([5, 17, 42, 9]), [1, 4], 'int32');

  it('generation_config.json sets eos (a list), pad, processors and max_new_tokens; options given win', async () => {
    const d = copyHfFolder('gpt2-tiny');
    const gen = { eos_token_id: [316, 7], pad_token_id: 316, bad_words_ids: [[11]], no_repeat_ngram_size: 2, repetition_penalty: 1.3, max_new_tokens: 6 };
    writeFileSync(path.join(d, 'generation_config.json'), JSON.stringify(gen));
    const model = await AutoModelForCausalLM.fromPretrained(d);
    expect(model.generationConfig).toEqual({
      topK: 50, maxNewTokens: 6, eosTokenId: [316, 7], padTokenId: 316, badWordsIds: [[11]], noRepeatNgramSize: 2, repetitionPenalty: 1.3,
    });
    const explicit = { maxNewTokens: 6, eosTokenId: [316, 7], padTokenId: 316, badWordsIds: [[11]], noRepeatNgramSize: 2, repetitionPenalty: 1.3 };
    const byDefault = model.generate(prompt(), {} as never);
    expect(Array.from(byDefault.data)).toEqual(Array.from(model.generate(prompt(), explicit).data));
    // The processors change the tokens (this fixture's greedy run differs without them), and a given option wins.
    const plain = model.generate(prompt(), { maxNewTokens: 6, eosTokenId: null, badWordsIds: [], noRepeatNgramSize: 0, repetitionPenalty: 1 });
    expect(Array.from(plain.data)).not.toEqual(Array.from(byDefault.data));
    expect(model.generate(prompt(), { maxNewTokens: 2 } as never).shape).toEqual([1, 6]);
  });

  it("config.json's eos_token_id when there is no generation_config.json; Llama folders too", async () => {
    expect((await AutoModelForCausalLM.fromPretrained(path.join(HF, 'gpt2-tiny'))).generationConfig).toEqual({ topK: 50, eosTokenId: 316 });
    const d = copyHfFolder('llama-gqa');
    writeFileSync(path.join(d, 'generation_config.json'), JSON.stringify({ do_sample: true, temperature: 0.6, top_p: 0.9, eos_token_id: [1, 2] }));
    expect((await AutoModelForCausalLM.fromPretrained(d)).generationConfig).toEqual({ topK: 50, doSample: true, temperature: 0.6, topP: 0.9, eosTokenId: [1, 2] });
  });

  it('generation fields generate does not compute are refused by file and field, their neutral values accepted', async () => {
    const d = copyHfFolder('gpt2-tiny');
    writeFileSync(path.join(d, 'generation_config.json'), JSON.stringify({ typical_p: 0.9 }));
    await expect(AutoModelForCausalLM.fromPretrained(d)).rejects.toThrow(
      `${path.join(d, 'generation_config.json')}: field 'typical_p' 0.9 is not supported (generate does not compute it; only 1 or absent)`);
    writeFileSync(path.join(d, 'generation_config.json'), JSON.stringify({ suppress_tokens: [3, 4] }));
    await expect(AutoModelForCausalLM.fromPretrained(d)).rejects.toThrow(/field 'suppress_tokens' \[3,4\] is not supported/);
    writeFileSync(path.join(d, 'generation_config.json'), JSON.stringify({ num_beam_groups: 2, diversity_penalty: 0.5 }));
    await expect(AutoModelForCausalLM.fromPretrained(d)).rejects.toThrow(/field 'diversity_penalty' 0.5 is not supported/);
    writeFileSync(path.join(d, 'generation_config.json'), JSON.stringify({ typical_p: 1.0, num_beam_groups: 1, diversity_penalty: 0.0, min_p: null, guidance_scale: 1 }));
    await expect(AutoModelForCausalLM.fromPretrained(d)).resolves.toBeDefined();
  });
});

describe('older config.json files with every generation field', () => {
  it('read null as unset (transformers\' None) and neutral values as no change; min_length > 0 on a decoder-only model is refused', async () => {
    const d = copyHfFolder('gpt2-tiny');
    // What transformers 4.x's save_pretrained wrote into config.json before generation_config.json existed.
    const legacy = {
      max_length: 20, min_length: 0, do_sample: false, early_stopping: false, num_beams: 1, num_beam_groups: 1, diversity_penalty: 0.0,
      temperature: 1.0, top_k: 50, top_p: 1.0, typical_p: 1.0, repetition_penalty: 1.0, length_penalty: 1.0, no_repeat_ngram_size: 0,
      encoder_no_repeat_ngram_size: 0, bad_words_ids: null, num_return_sequences: 1, forced_bos_token_id: null, forced_eos_token_id: null,
      exponential_decay_length_penalty: null, suppress_tokens: null, begin_suppress_tokens: null, max_new_tokens: null, pad_token_id: null,
    };
    editConfig(d, (c) => Object.assign(c, legacy));
    const model = await AutoModelForCausalLM.fromPretrained(d);
    expect(model.generationConfig).toEqual({
      topK: 50, eosTokenId: 316, doSample: false, earlyStopping: false, numBeams: 1, temperature: 1, topP: 1, repetitionPenalty: 1,
      lengthPenalty: 1, noRepeatNgramSize: 0, numReturnSequences: 1, forcedEosTokenId: null,
    });
    const greedy = model.generate(new Tensor(Int32Array.from([5, 17, 42]), [1, 3], 'int32'), { maxNewTokens: 5 });
    const plain = await AutoModelForCausalLM.fromPretrained(path.join(HF, 'gpt2-tiny'));
    expect(Array.from(greedy.data)).toEqual(Array.from(plain.generate(new Tensor(Int32Array.from([5, 17, 42]), [1, 3], 'int32'), { maxNewTokens: 5 }).data));
    editConfig(d, (c) => (c['min_length'] = 10));
    await expect(AutoModelForCausalLM.fromPretrained(d)).rejects.toThrow(
      `${path.join(d, 'config.json')}: field 'min_length' 10 is not supported for decoder-only models (it counts the prompt)`);
  });
});
