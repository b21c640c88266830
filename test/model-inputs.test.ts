/**
 * Hugging Face's keyword calling form, `model.forward({ inputIds,
 * attentionMask, tokenTypeIds })`, on every family loaded from a folder: the
 * same numbers as the positional form, and Hugging Face's output field names.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSequenceClassification } from '../lib/models/auto';
import { Tensor } from '../lib/tensor';

const HF = path.join(__dirname, 'fixtures', 'hf');
const ids = (rows: number[][]): Tensor<'int32'> => new Tensor(Int32Array.from(rows.flat()), [rows.length, rows[0]!.length], 'int32');
const same = (a: Tensor<'float32'>, b: Tensor<'float32'>): void => {
  expect(a.shape).toEqual(b.shape);
  expect(Array.from(a.contiguous().data)).toEqual(Array.from(b.contiguous().data));
};

describe('forward({ inputIds, ... }) keyword form', () => {
  it('BERT encoder and heads: same outputs as forward(inputIds, options), HF field names', async () => {
    const ref = JSON.parse(readFileSync(path.join(HF, 'bert-mlm', 'reference.json'), 'utf8')) as {
      input_ids: number[][]; attention_mask: number[][]; token_type_ids: number[][]; last_hidden_state: number[];
    };
    const inputIds = ids(ref.input_ids);
    const attentionMask = ids(ref.attention_mask);
    const tokenTypeIds = ids(ref.token_type_ids);
    const enc = await AutoModel.fromPretrained(path.join(HF, 'bert-mlm'));
    const kw = enc.forward({ inputIds, attentionMask, tokenTypeIds });
    same(kw.lastHiddenState, enc.forward(inputIds, { attentionMask, tokenTypeIds }).lastHiddenState);
    const worst = Math.max(...Array.from(kw.lastHiddenState.contiguous().data, (g, i) => Math.abs(g - ref.last_hidden_state[i]!)));
    expect(worst).toBeLessThan(1e-4);
    const mlm = await AutoModelForMaskedLM.fromPretrained(path.join(HF, 'bert-mlm'));
    same(mlm.forward({ inputIds, attentionMask, tokenTypeIds }).logits, mlm.forward(inputIds, { attentionMask, tokenTypeIds }).logits);
    const cls = await AutoModelForSequenceClassification.fromPretrained(path.join(HF, 'distilbert-cls'));
    const r = JSON.parse(readFileSync(path.join(HF, 'distilbert-cls', 'reference.json'), 'utf8')) as { input_ids: number[][]; attention_mask: number[][] };
    const out = cls.forward({ inputIds: ids(r.input_ids), attentionMask: ids(r.attention_mask) });
    same(out.logits, cls.forward(ids(r.input_ids), { attentionMask: ids(r.attention_mask) }).logits);
  });

  it.each(['llama-gqa', 'gpt2-tiny'])('%s: { logits } equal to the positional form, with attentionMask', async (name) => {
    const model = await AutoModelForCausalLM.fromPretrained(path.join(HF, name));
    const inputIds = ids([[5, 7, 9, 11], [3, 4, 6, 8]]);
    const attentionMask = ids([[1, 1, 1, 1], [0, 1, 1, 1]]);
    const { logits } = model.forward({ inputIds, attentionMask });
    same(logits, model.forward(inputIds, { attentionMask }));
    expect(logits.shape).toEqual([2, 4, model.config.vocabSize]);
  });

  it('bad calls are TypeErrors naming the argument', async () => {
    const model = await AutoModelForCausalLM.fromPretrained(path.join(HF, 'llama-gqa'));
    const enc = await AutoModel.fromPretrained(path.join(HF, 'bert-st'));
    expect(() => model.forward({} as never)).toThrow(/argument 'inputs' must be an int32 Tensor .* or an object \{ inputIds.*got an object without inputIds/);
    expect(() => enc.forward(null as never)).toThrow(TypeError);
    expect(() => enc.forward({ inputIds: ids([[1, 2]]) }, { attentionMask: ids([[1, 1]]) })).toThrow(/pass the options in that object/);
    expect(() => model.forward({ inputIds: new Tensor(new Float32Array(2), [1, 2], 'float32') as never })).toThrow(/argument 'inputIds' must be an int32 Tensor/);
  });
});
