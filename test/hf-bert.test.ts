/**
 * BERT-family Hugging Face folders (BERT, RoBERTa, XLM-R, DistilBERT) through
 * AutoModel, AutoModelForMaskedLM and AutoModelForSequenceClassification,
 * against a PyTorch implementation of the published architectures
 * (scripts/gen_bert_fixtures.py) on a right-padded batch of two sequences.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification } from '../lib/models/auto';
import { BertForMaskedLM, encoderOptions, type EncoderForwardOptions } from '../lib/models/bert';
import { Tensor } from '../lib/tensor';
import { copyHfFolder, editConfig } from './helpers/hf-folder-copy';
import { backends } from './helpers/backends';
import { maxAbsDiff as maxDiff } from './helpers/reference';

const HF = path.join(__dirname, 'fixtures', 'hf');

interface Ref {
  input_ids: number[][];
  attention_mask: number[][];
  token_type_ids: number[][];
  last_hidden_state: number[];
  pooler_output?: number[];
  logits?: number[];
}

const readRef = (name: string): Ref => JSON.parse(readFileSync(path.join(HF, name, 'reference.json'), 'utf8')) as Ref;
const ids = (rows: number[][]): Tensor<'int32'> => new Tensor(Int32Array.from(rows.flat()), [rows.length, rows[0]!.length], 'int32');
const inputs = (ref: Ref, types = true): EncoderForwardOptions => ({
  attentionMask: ids(ref.attention_mask), ...(types ? { tokenTypeIds: ids(ref.token_type_ids) } : {}),
});

const HEADS: [string, 'masked-lm' | 'sequence-classification'][] = [
  ['bert-mlm', 'masked-lm'], ['bert-cls', 'sequence-classification'], ['roberta-mlm', 'masked-lm'],
  ['roberta-xlmr-cls', 'sequence-classification'], ['distilbert-mlm', 'masked-lm'], ['distilbert-cls', 'sequence-classification'],
  // config.json conformance: hidden_act silu with layer_norm_eps 1e-5 and one token type; RoBERTa's gelu_new layers
  // under its always-exact-GELU LM head.
  ['bert-silu-mlm', 'masked-lm'], ['roberta-gelu-new-mlm', 'masked-lm'],
];

describe.each(backends)('BERT-family folders on the %s backend', (backend) => {
  // distilbert-sinusoidal: sinusoidal_pos_embds with the table absent from the file, activation relu.
  it.each(['bert-st', 'distilbert-sinusoidal', ...HEADS.map(([n]) => n)])('%s: AutoModel hidden states (and pooler) within 1e-4 of PyTorch', async (name) => {
    const ref = readRef(name);
    const model = (await AutoModel.fromPretrained(path.join(HF, name))).useBackend(backend);
    const out = model.forward(ids(ref.input_ids), inputs(ref, !name.startsWith('distilbert')));
    expect(maxDiff(out.lastHiddenState, ref.last_hidden_state)).toBeLessThan(1e-4);
    if (ref.pooler_output) expect(maxDiff(out.poolerOutput!, ref.pooler_output)).toBeLessThan(1e-4);
    else expect(out.poolerOutput).toBeUndefined();
  });

  it.each(HEADS)('%s: %s logits within 1e-4 of PyTorch', async (name, task) => {
    const ref = readRef(name);
    const auto = task === 'masked-lm' ? AutoModelForMaskedLM : AutoModelForSequenceClassification;
    const model = (await auto.fromPretrained(path.join(HF, name))).useBackend(backend);
    const { logits } = model.forward(ids(ref.input_ids), inputs(ref, !name.startsWith('distilbert')));
    expect(maxDiff(logits, ref.logits!)).toBeLessThan(1e-4);
  });

  it.each(['bert-cls', 'roberta-mlm', 'distilbert-mlm'])('%s: a padded row equals the same sequence run alone', async (name) => {
    const ref = readRef(name);
    const model = (await AutoModel.fromPretrained(path.join(HF, name))).useBackend(backend);
    const batch = model.forward(ids(ref.input_ids), inputs(ref, !name.startsWith('distilbert'))).lastHiddenState.contiguous();
    const [, t, e] = batch.shape as [number, number, number];
    const len = ref.attention_mask[0]!.reduce((a, b) => a + b, 0);
    expect(len).toBeLessThan(t); // row 0 is the padded one
    const alone = model.forward(ids([ref.input_ids[0]!.slice(0, len)]), name.startsWith('distilbert') ? {} : { tokenTypeIds: ids([ref.token_type_ids[0]!.slice(0, len)]) })
      .lastHiddenState.contiguous();
    let worst = 0;
    for (let i = 0; i < len * e; i++) worst = Math.max(worst, Math.abs(alone.data[i]! - batch.data[i]!));
    expect(worst).toBeLessThan(1e-5);
  });

  it('packed q/k/v and three projections agree, and forwardAsync equals forward', async () => {
    const ref = readRef('bert-mlm');
    const model = (await AutoModelForMaskedLM.fromPretrained(path.join(HF, 'bert-mlm'))).useBackend(backend);
    const a = model.forward(ids(ref.input_ids), inputs(ref)).logits.contiguous();
    encoderOptions.packedQkv = true;
    try {
      const b = model.forward(ids(ref.input_ids), inputs(ref)).logits.contiguous();
      expect(maxDiff(b, Array.from(a.data))).toBeLessThan(1e-5);
    } finally {
      encoderOptions.packedQkv = false;
    }
    const c = (await model.forwardAsync(ids(ref.input_ids), inputs(ref))).logits;
    expect(maxDiff(c, Array.from(a.data))).toBe(0);
  });
});

describe('BERT-family checkpoints', () => {
  it('keeps Hugging Face key names (LayerNorm with a capital L) and drops the tied decoder', async () => {
    const model = (await AutoModelForMaskedLM.fromPretrained(path.join(HF, 'bert-mlm'))) as BertForMaskedLM;
    const keys = Object.keys(model.stateDict());
    expect(keys).toContain('bert.embeddings.LayerNorm.weight');
    expect(keys).toContain('bert.encoder.layer.0.attention.self.query.weight');
    expect(keys).toContain('bert.encoder.layer.1.attention.output.LayerNorm.bias');
    expect(keys).toContain('cls.predictions.transform.LayerNorm.weight');
    expect(keys).toContain('cls.predictions.bias');
    expect(keys.some((k) => k.includes('_layer_norm') || k.includes('decoder'))).toBe(false);
    // The decoder is the word embedding itself, not a copy.
    expect(model.bert.embeddings.wordEmbeddings.weight.shape).toEqual([model.config.vocabSize, 32]);
    const distil = await AutoModelForMaskedLM.fromPretrained(path.join(HF, 'distilbert-mlm'));
    expect(Object.keys(distil.stateDict())).toContain('distilbert.transformer.layer.0.attention.q_lin.weight');
    expect(Object.keys(distil.stateDict())).toContain('distilbert.transformer.layer.1.sa_layer_norm.weight');
  });

  it('labels come from id2label', async () => {
    const m = await AutoModelForSequenceClassification.fromPretrained(path.join(HF, 'roberta-xlmr-cls'));
    expect(m.config.id2label).toEqual(['NEG', 'POS']);
    expect(m.config.family).toBe('roberta');
  });

  const copy = copyHfFolder;

  it('bad folders are errors naming the file and the field', async () => {
    const empty = mkdtempSync(path.join(tmpdir(), 'attnode-bert-'));
    await expect(AutoModel.fromPretrained(empty)).rejects.toThrow(/config.json: not found/);
    let d = copy('bert-cls');
    editConfig(d, (c) => (c['model_type'] = 'electra'));
    await expect(AutoModel.fromPretrained(d)).rejects.toThrow(/config.json: field 'model_type' "electra" is not a supported encoder/);
    d = copy('bert-cls');
    editConfig(d, (c) => (c['hidden_size'] = 48));
    await expect(AutoModel.fromPretrained(d)).rejects.toThrow(
      /config.json: field 'hidden_size' \(48\) does not fit tensor bert.embeddings.LayerNorm.bias: expected shape \[48\] from the config, the weights have \[32\]/);
    d = copy('bert-cls');
    editConfig(d, (c) => (c['num_attention_heads'] = 5));
    await expect(AutoModel.fromPretrained(d)).rejects.toThrow(/config.json: .*hiddenSize \(32\) must be divisible by numAttentionHeads \(5\)/);
    d = copy('bert-cls');
    editConfig(d, (c) => (c['hidden_act'] = 'tanh'));
    await expect(AutoModel.fromPretrained(d)).rejects.toThrow(/config.json: field 'hidden_act' "tanh" is not supported \(supported: gelu, gelu_python, gelu_new, gelu_pytorch_tanh, gelu_fast, relu, silu, swish\)/);
    d = copy('distilbert-cls');
    editConfig(d, (c) => delete c['dim']);
    await expect(AutoModel.fromPretrained(d)).rejects.toThrow(/config.json: field 'dim' must be an integer/);
    d = copy('bert-cls');
    editConfig(d, (c) => (c['id2label'] = { 0: 'a', 5: 'b' }));
    await expect(AutoModelForSequenceClassification.fromPretrained(d)).rejects.toThrow(/field 'id2label' must map the indices 0..1/);
    d = copy('bert-cls');
    editConfig(d, (c) => (c['id2label'] = { 0: 'a', 1: 'b', 2: 'c', 3: 'd' }));
    await expect(AutoModelForSequenceClassification.fromPretrained(d)).rejects.toThrow(
      /field 'id2label' \(4\) does not fit tensor classifier.bias: expected shape \[4\] from the config, the weights have \[3\]/);
    // A base checkpoint has no head: the head's weights are missing.
    await expect(AutoModelForMaskedLM.fromPretrained(path.join(HF, 'bert-st'))).rejects.toThrow(/42 missing keys, 39 unexpected keys[^]*prefix 'bert\.'[^]*missing besides: cls\.predictions\.bias/);
    d = copy('bert-cls');
    writeFileSync(path.join(d, 'model.safetensors'), readFileSync(path.join(d, 'model.safetensors')).subarray(0, 5000));
    await expect(AutoModel.fromPretrained(d)).rejects.toThrow(/model.safetensors/);
    await expect(AutoModel.fromPretrained(5 as never)).rejects.toThrow(TypeError);
  });

  it('bad inputs name the argument', async () => {
    const model = await AutoModel.fromPretrained(path.join(HF, 'bert-cls'));
    const x = ids([[2, 208, 279, 3]]);
    expect(() => model.forward(new Tensor(new Float32Array(4), [1, 4], 'float32') as never)).toThrow(/argument 'inputIds' must be an int32 Tensor/);
    expect(() => model.forward(x, { attentionMask: ids([[1, 1, 1]]) })).toThrow(/option 'attentionMask' must be an int32 Tensor \[batch, seq\] = \[1, 4\]/);
    expect(() => model.forward(x, { attentionMask: ids([[0, 0, 0, 0]]) })).toThrow(/row 0 has no token/);
    expect(() => model.forward(x, { tokenTypeIds: ids([[0, 0, 2, 0]]) })).toThrow(RangeError);
    expect(() => model.forward(ids([Array.from({ length: 65 }, () => 5)]))).toThrow(/sequence length 65 exceeds the model's 64 positions/);
    expect(() => model.forward(ids([[2, 9999, 3]]))).toThrow(RangeError);
    const rob = await AutoModel.fromPretrained(path.join(HF, 'roberta-mlm'));
    expect(() => rob.forward(ids([Array.from({ length: 65 }, () => 5)]))).toThrow(/exceeds the model's 64 positions/);
    expect(rob.forward(ids([Array.from({ length: 64 }, () => 5)])).lastHiddenState.shape).toEqual([1, 64, 32]);
    const distil = await AutoModel.fromPretrained(path.join(HF, 'distilbert-cls'));
    expect(() => distil.forward(x, { tokenTypeIds: ids([[0, 1, 1, 0]]) })).toThrow(/DistilBERT has no token types/);
  });
});

describe('BERT-family config.json conformance', () => {
  const load = (name: string, edit: (c: Record<string, unknown>) => void, auto: { fromPretrained(d: string): Promise<unknown> } = AutoModel): Promise<unknown> => {
    const d = copyHfFolder(name);
    editConfig(d, edit);
    return auto.fromPretrained(d);
  };

  it('rejects fields that change the architecture, naming the field and value', async () => {
    await expect(load('bert-cls', (c) => (c['position_embedding_type'] = 'relative_key'))).rejects.toThrow(
      /config.json: field 'position_embedding_type' "relative_key" is not supported \(only 'absolute'/);
    await expect(load('roberta-mlm', (c) => (c['position_embedding_type'] = 'relative_key_query'))).rejects.toThrow(
      /field 'position_embedding_type' "relative_key_query" is not supported/);
    await expect(load('bert-cls', (c) => (c['is_decoder'] = true))).rejects.toThrow(/field 'is_decoder' true is not supported/);
    await expect(load('bert-cls', (c) => (c['add_cross_attention'] = true))).rejects.toThrow(/field 'add_cross_attention' true is not supported/);
    await expect(load('bert-mlm', (c) => (c['tie_word_embeddings'] = false), AutoModelForMaskedLM)).rejects.toThrow(
      /field 'tie_word_embeddings' false is not supported for masked-LM heads/);
    await expect(load('distilbert-cls', (c) => (c['activation'] = 'tanh'))).rejects.toThrow(/field 'activation' "tanh" is not supported/);
    await expect(load('distilbert-cls', (c) => (c['hidden_dim'] = 48))).rejects.toThrow(
      /field 'hidden_dim' \(48\) does not fit tensor distilbert.transformer.layer.0.ffn.lin1.bias: expected shape \[48\] from the config, the weights have \[64\]/);
    await expect(load('distilbert-cls', (c) => (c['n_layers'] = 1))).rejects.toThrow(/field 'n_layers' is 1 but the weights have 2 layers/);
    await expect(load('bert-cls', (c) => (c['type_vocab_size'] = 1))).rejects.toThrow(
      /field 'type_vocab_size' \(1\) does not fit tensor bert.embeddings.token_type_embeddings.weight: expected shape \[1, 32\] from the config, the weights have \[2, 32\]/);
    await expect(load('bert-cls', (c) => (c['max_position_embeddings'] = 128))).rejects.toThrow(
      /field 'max_position_embeddings' \(128\) does not fit tensor bert.embeddings.position_embeddings.weight/);
    // Accepted: the defaults spelled out, and fields with no effect at inference.
    await expect(load('bert-cls', (c) => Object.assign(c, { position_embedding_type: 'absolute', is_decoder: false, classifier_dropout: 0.3, use_cache: true }))).resolves.toBeDefined();
  });

  it("BertForPreTraining checkpoints (bert-base-uncased's layout: the next-sentence head too) load as masked LMs", async () => {
    const d = copyHfFolder('bert-mlm');
    const { loadSafetensors, saveSafetensors } = await import('../lib/io/safetensors');
    const file = path.join(d, 'model.safetensors');
    const { tensors } = await loadSafetensors(file);
    tensors['cls.seq_relationship.weight'] = new Tensor(new Float32Array(64), [2, 32], 'float32');
    tensors['cls.seq_relationship.bias'] = new Tensor(new Float32Array(2), [2], 'float32');
    await saveSafetensors(file, tensors);
    const ref = readRef('bert-mlm');
    const model = await AutoModelForMaskedLM.fromPretrained(d);
    expect(maxDiff(model.forward(ids(ref.input_ids), inputs(ref)).logits, ref.logits!)).toBeLessThan(1e-4);
  });

  it('each honoured field changes the outputs (the fixtures would catch it being ignored)', async () => {
    const ref = readRef('bert-silu-mlm');
    for (const edit of [(c: Record<string, unknown>) => (c['hidden_act'] = 'gelu'), (c: Record<string, unknown>) => (c['layer_norm_eps'] = 1e-12)]) {
      const model = (await load('bert-silu-mlm', edit, AutoModelForMaskedLM)) as Awaited<ReturnType<typeof AutoModelForMaskedLM.fromPretrained>>;
      expect(maxDiff(model.forward(ids(ref.input_ids), inputs(ref)).logits, ref.logits!)).toBeGreaterThan(1e-4);
    }
  });
});
