/**
 * The model config of `attnode serve` / `attnode run` (README: "The model config of serve and run"): every bad
 * field is named with what it must hold and what it holds.
 */
import { describe, expect, it } from 'vitest';
import { CONFIG_FIELDS, parseConfig } from '../lib/cli/config';

const encoder = { vocabSize: 100, dModel: 16, nhead: 2, numLayers: 1 };
const seed = { ...encoder, numDecoderLayers: 1, dimFeedforward: 32, maxLen: 64, bosId: 1, eosId: 2 };

describe('parseConfig', () => {
  it('accepts every documented field of both kinds', () => {
    expect(parseConfig({ kind: 'encoder', options: { ...encoder, dimFeedforward: 32, maxLen: 64, activation: 'relu', normFirst: true, finalNorm: true, scaleEmbedding: false } }).kind).toBe('encoder');
    expect(parseConfig({ kind: 'seed', options: seed }).options).toEqual(seed);
    expect(Object.keys(CONFIG_FIELDS.seed).sort()).toEqual(Object.keys(seed).sort());
  });

  const cases: [string, unknown, ErrorConstructor, string][] = [
    ['not an object', [1], TypeError, 'c.json: expected a JSON object { "kind": "encoder" | "seed", "options": { ... } }, got [1]'],
    ['kind', { kind: 'decoder', options: encoder }, TypeError, 'c.json: field "kind": expected "encoder" or "seed", got "decoder"'],
    ['options missing', { kind: 'seed' }, TypeError, 'c.json: field "options": expected an object of model options, got nothing'],
    ['a top-level typo', { kind: 'seed', option: {}, options: seed }, TypeError, `c.json: field "option": unknown (did you mean 'options'?); a config has "kind" and "options"`],
    ['a string size', { kind: 'encoder', options: { ...encoder, dModel: '16' } }, TypeError, 'c.json: field "options.dModel": expected an integer >= 1, got "16"'],
    ['a fraction', { kind: 'encoder', options: { ...encoder, nhead: 1.5 } }, RangeError, 'c.json: field "options.nhead": expected an integer >= 1, got 1.5'],
    ['zero', { kind: 'seed', options: { ...seed, maxLen: 0 } }, RangeError, 'c.json: field "options.maxLen": expected an integer >= 1, got 0'],
    ['a missing size', { kind: 'seed', options: { ...seed, vocabSize: undefined } }, TypeError, 'c.json: field "options.vocabSize": expected an integer >= 1, got nothing'],
    ['activation', { kind: 'encoder', options: { ...encoder, activation: 'swish' } }, TypeError, 'c.json: field "options.activation": expected "relu" or "gelu", got "swish"'],
    ['a boolean', { kind: 'encoder', options: { ...encoder, normFirst: 'yes' } }, TypeError, 'c.json: field "options.normFirst": expected true or false, got "yes"'],
    ['an option of the other kind', { kind: 'encoder', options: { ...encoder, eosId: 2 } }, TypeError, 'c.json: field "options.eosId": not an encoder option'],
    ['snake_case', { kind: 'seed', options: { ...seed, d_model: 16 } }, TypeError, `c.json: field "options.d_model": not a seed option (did you mean 'dModel'?)`],
    ['dModel and nhead', { kind: 'encoder', options: { ...encoder, nhead: 3 } }, RangeError, 'c.json: field "options.dModel": expected a multiple of nhead (3), got 16'],
    ['eos beyond the vocabulary', { kind: 'seed', options: { ...seed, eosId: 100 } }, RangeError, 'c.json: field "options.eosId": expected a token id below vocabSize (100), got 100'],
  ];
  it.each(cases)('%s', (_name, config, type, message) => {
    expect(() => parseConfig(config, 'c.json')).toThrowError(new type(message));
  });

  it('several bad fields: one error, one line each', () => {
    expect(() => parseConfig({ kind: 'seed', options: { ...seed, dModel: -1, numDecoderLayers: 'two', bosID: 1 } }, 'c.json')).toThrowError(new TypeError([
      'c.json: 3 bad fields',
      `  field "options.bosID": not a seed option (did you mean 'bosId'?)`,
      '  field "options.dModel": expected an integer >= 1, got -1',
      '  field "options.numDecoderLayers": expected an integer >= 1, got "two"',
    ].join('\n')));
  });
});
