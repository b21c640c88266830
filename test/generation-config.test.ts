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
