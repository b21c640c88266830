/**
 * GPT-2 Hugging Face folders through AutoModelForCausalLM, against a PyTorch
 * implementation of the published architecture (scripts/gen_gpt2_fixtures.py):
 * logits, greedy continuations, a left-padded batch, the KV cache, and the
 * loader's errors for folders that do not fit.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AutoModelForCausalLM } from '../lib/models/auto';
import { GPT2LMHeadModel } from '../lib/models/gpt2';
import { AutoTokenizer } from '../lib/tokenizers';
import { loadSafetensors } from '../lib/io/safetensors';
import { Tensor } from '../lib/tensor';
import { copyHfFolder, editConfig } from './helpers/hf-folder-copy';
import { backends } from './helpers/backends';

const HF = path.join(__dirname, 'fixtures', 'hf');
// gpt2-relu-upcast: config.json conformance (ReLU MLP, n_inner 40, layer_norm_epsilon 1e-3, reorder_and_upcast_attn).
const FOLDERS = ['gpt2-tiny', 'gpt2-bare', 'gpt2-relu-upcast'];

interface Reference {
  prompt: string;
  input_ids: number[];
  logits: number[][];
  greedy: number[];
  batch: { texts: string[]; input_ids: number[][]; attention_mask: number[][]; greedy: number[][]; single_greedy: number[][] };
}

const ref = (name: string): Reference => JSON.parse(readFileSync(path.join(HF, name, 'reference.json'), 'utf8')) as Reference;
const ids2d = (rows: number[][]): Tensor<'int32'> => new Tensor(Int32Array.from(rows.flat()), [rows.length, rows[0]!.length], 'int32');

async function load(name: string, backend: string): Promise<GPT2LMHeadModel> {
  const model = await AutoModelForCausalLM.fromPretrained(path.join(HF, name));
  expect(model).toBeInstanceOf(GPT2LMHeadModel);
  return (model as GPT2LMHeadModel).useBackend(backend as 'js' | 'native');
}

function worstDiff(got: Float32Array, want: number[][], offset = 0): number {
  const v = want[0]!.length;
  let worst = 0;
  want.forEach((row, i) => row.forEach((w, j) => (worst = Math.max(worst, Math.abs(got[offset + i * v + j]! - w)))));
  return worst;
}

describe.each(backends)('GPT-2 folders on the %s backend', (backend) => {
  it.each(FOLDERS)('%s: the tokenizer gives the reference ids, and logits are within 1e-4 of PyTorch', async (name) => {
    const r = ref(name);
    const tok = AutoTokenizer.fromPretrained(path.join(HF, name))!;
    expect(tok.encode(r.prompt)).toEqual(r.input_ids);
    const model = await load(name, backend);
    const logits = model.forward(ids2d([r.input_ids])).contiguous();
    expect(logits.shape).toEqual([1, r.input_ids.length, model.config.vocabSize]);
    expect(worstDiff(logits.data, r.logits)).toBeLessThan(1e-4);
    // lastOnly is the last row of the full forward.
    const last = model.forward(ids2d([r.input_ids]), { lastOnly: true });
    expect(last.shape).toEqual([1, 1, model.config.vocabSize]);
    expect(worstDiff(last.contiguous().data, [r.logits.at(-1)!])).toBeLessThan(1e-4);
  });

  it.each(FOLDERS)('%s: greedy continuation is the reference tokens (sync and async)', async (name) => {
    const r = ref(name);
    const model = await load(name, backend);
    const prompt = ids2d([r.input_ids]);
    const out = model.generate(prompt, { maxNewTokens: 10 });
    expect(out.shape).toEqual([1, r.input_ids.length + 10]);
    expect(Array.from(out.data)).toEqual([...r.input_ids, ...r.greedy]);
    const streamed: number[] = [];
    const outAsync = await model.generateAsync(prompt, { maxNewTokens: 10, onToken: (t) => streamed.push(t[0]!) });
    expect(Array.from(outAsync.data)).toEqual([...r.input_ids, ...r.greedy]);
    expect(streamed).toEqual(r.greedy);
  });

  it.each(FOLDERS)('%s: a left-padded batch continues each row as a single run does', async (name) => {
    const r = ref(name);
    const model = await load(name, backend);
    const steps = r.batch.greedy[0]!.length;
    const width = r.batch.input_ids[0]!.length;
    const out = await model.generateAsync(ids2d(r.batch.input_ids), { maxNewTokens: steps, attentionMask: ids2d(r.batch.attention_mask) });
    expect(out.shape).toEqual([2, width + steps]);
    for (let b = 0; b < 2; b++) {
      const row = Array.from(out.data.subarray(b * (width + steps), (b + 1) * (width + steps)));
      expect(row.slice(width)).toEqual(r.batch.greedy[b]);
      // The same prompt alone, without padding.
      const own = r.batch.input_ids[b]!.filter((_, j) => r.batch.attention_mask[b]![j] === 1);
      const single = model.generate(ids2d([own]), { maxNewTokens: steps });
      expect(Array.from(single.data).slice(own.length)).toEqual(r.batch.single_greedy[b]);
      expect(row.slice(width)).toEqual(Array.from(single.data).slice(own.length));
    }
  });

  it.each(FOLDERS)('%s: cached steps give the logits of a full recompute', async (name) => {
    const r = ref(name);
    const model = await load(name, backend);
    const ids = r.input_ids;
    const t = ids.length;
    // Chunks of 3, 1, then the rest through one cache: every position's logits match the reference.
    const cache = model.createCache(1, 2); // small capacity: the cache grows while decoding
    const cuts = [0, 3, 4, t];
    for (let c = 0; c + 1 < cuts.length; c++) {
      const part = ids.slice(cuts[c], cuts[c + 1]);
      const logits = model.forward(ids2d([part]), { cache }).contiguous();
      expect(worstDiff(logits.data, r.logits.slice(cuts[c], cuts[c + 1]))).toBeLessThan(1e-4);
    }
    expect(cache.length).toBe(t);
    // A padded batch stepped through the cache matches the padded full forward at each new position.
    const mask = r.batch.attention_mask;
    const full = model.forward(ids2d(r.batch.input_ids), { attentionMask: ids2d(mask) }).contiguous();
    const w = mask[0]!.length;
    const v = model.config.vocabSize;
    const bc = model.createCache(2, w);
    const head = (rows: number[][], a: number, b: number) => rows.map((row) => row.slice(a, b));
    model.forward(ids2d(head(r.batch.input_ids, 0, w - 2)), { cache: bc, attentionMask: ids2d(head(mask, 0, w - 2)) });
    for (const p of [w - 2, w - 1]) {
      const step = model.forward(ids2d(head(r.batch.input_ids, p, p + 1)), { cache: bc, attentionMask: ids2d(head(mask, 0, p + 1)) });
      for (let b = 0; b < 2; b++) {
        let worst = 0;
        for (let j = 0; j < v; j++) worst = Math.max(worst, Math.abs(step.data[b * v + j]! - full.data[(b * w + p) * v + j]!));
        expect(worst).toBeLessThan(1e-4);
      }
    }
  });
});

describe('GPT2LMHeadModel', () => {
  it('keeps the Conv1D [in, out] layout in its state dict', async () => {
    const model = await load('gpt2-tiny', 'js');
    const file = (await loadSafetensors(path.join(HF, 'gpt2-tiny', 'model.safetensors'))).tensors;
    const sd = model.stateDict();
    expect(Object.keys(sd).sort()).toEqual(Object.keys(file).filter((k) => k !== 'lm_head.weight').sort());
    const key = 'transformer.h.1.attn.c_attn.weight';
    expect(sd[key]!.shape).toEqual([32, 96]);
    expect(Array.from(sd[key]!.contiguous().data)).toEqual(Array.from(file[key]!.contiguous().data));
  });

  it('rejects bad arguments naming them', async () => {
    const model = await load('gpt2-tiny', 'js');
    expect(() => model.forward(new Tensor(new Float32Array(3), [1, 3], 'float32') as never)).toThrow(/argument 'inputIds'/);
    expect(() => model.forward(ids2d([[1, 2]]), { attentionMask: ids2d([[1, 1, 1]]) })).toThrow(/option 'attentionMask'/);
    expect(() => model.forward(ids2d([Array.from({ length: 65 }, () => 1)]))).toThrow(/exceeds n_positions 64/);
    expect(() => model.forward(ids2d([[1]]), { cache: model.createCache(2, 4) })).toThrow(/cache holds 2 sequences/);
    expect(() => model.generate(ids2d([[1, 2]]), { maxNewTokens: 63 })).toThrow(/exceeds the model's 64 positions/);
    expect(() => new GPT2LMHeadModel({ vocabSize: 10, hiddenSize: 30, numHiddenLayers: 1, numAttentionHeads: 4 })).toThrow(/divisible/);
  });
});

describe('AutoModelForCausalLM bad GPT-2 folders', () => {
  const copy = (): string => copyHfFolder('gpt2-tiny');
  const edit = (f: (c: Record<string, unknown>) => void): string => {
    const d = copy();
    editConfig(d, f);
    return d;
  };

  it('names the file and the field', async () => {
    const at = (d: string) => AutoModelForCausalLM.fromPretrained(d);
    await expect(at(edit((c) => (c['n_embd'] = 48)))).rejects.toThrow(
      /config.json: fields '3' × 'n_embd' \(3 × 48\) do not fit tensor transformer.h.0.attn.c_attn.bias: expected shape \[144\] from the config, the weights have \[96\]/);
    await expect(at(edit((c) => (c['n_layer'] = 3)))).rejects.toThrow(/config.json: field 'n_layer' is 3 but the weights have 2 layers/);
    await expect(at(edit((c) => (c['n_layer'] = 1)))).rejects.toThrow(/config.json: field 'n_layer' is 1 but the weights have 2 layers/);
    await expect(at(edit((c) => (c['n_inner'] = 64)))).rejects.toThrow(
      /field 'n_inner' \(64\) does not fit tensor transformer.h.0.mlp.c_fc.bias: expected shape \[64\] from the config, the weights have \[128\]/);
    await expect(at(edit((c) => (c['n_positions'] = 128)))).rejects.toThrow(/field 'n_positions' \(128\) does not fit tensor transformer.wpe.weight: expected shape \[128, 32\]/);
    await expect(at(edit((c) => (c['vocab_size'] = 300)))).rejects.toThrow(/field 'vocab_size' \(300\) does not fit tensor transformer.wte.weight/);
    await expect(at(edit((c) => (c['scale_attn_weights'] = false)))).rejects.toThrow(/config.json: field 'scale_attn_weights' false is not supported \(only true\)/);
    await expect(at(edit((c) => (c['add_cross_attention'] = true)))).rejects.toThrow(/config.json: field 'add_cross_attention' true is not supported/);
    await expect(at(edit((c) => (c['reorder_and_upcast_attn'] = 'yes')))).rejects.toThrow(/field 'reorder_and_upcast_attn' must be a boolean/);
    await expect(at(edit((c) => (c['activation_function'] = 'quick_gelu')))).rejects.toThrow(/field 'activation_function' "quick_gelu" is not supported \(supported: gelu_new, gelu_pytorch_tanh, gelu_fast, gelu, gelu_python, relu\)/);
    await expect(at(edit((c) => (c['n_head'] = 'four')))).rejects.toThrow(/config.json: field 'n_head' must be an integer/);
    await expect(at(edit((c) => (c['n_head'] = 5)))).rejects.toThrow(/hiddenSize \(32\) must be divisible by numAttentionHeads \(5\)/);
    await expect(at(edit((c) => (c['activation_function'] = 'swish')))).rejects.toThrow(/config.json: field 'activation_function' "swish" is not supported/);
    await expect(at(edit((c) => (c['scale_attn_by_inverse_layer_idx'] = true)))).rejects.toThrow(/config.json: field 'scale_attn_by_inverse_layer_idx' true is not supported/);
    await expect(at(edit((c) => (c['layer_norm_epsilon'] = -1)))).rejects.toThrow(/config.json: field 'layer_norm_epsilon' must be a positive number/);
    await expect(at(edit((c) => (c['tie_word_embeddings'] = false)))).rejects.toThrow(/config.json: field 'tie_word_embeddings' false is not supported/);
    const d = copy();
    writeFileSync(path.join(d, 'model.safetensors'), readFileSync(path.join(d, 'model.safetensors')).subarray(0, 3000));
    await expect(at(d)).rejects.toThrow(/model.safetensors/);
  });
});
