/**
 * Llama-family Hugging Face folders (config.json + model.safetensors) through
 * AutoModelForCausalLM, against logits of a PyTorch implementation of the
 * published architecture (scripts/gen_llama_fixtures.py): grouped-query
 * attention, Llama 3 rope scaling with tied embeddings and BF16 weights,
 * Qwen2's q/k/v biases with F16 weights.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AutoModelForCausalLM, llamaConfigFromJson } from '../lib/models/auto';
import { Tensor } from '../lib/tensor';
import { copyHfFolder, editConfig } from './helpers/hf-folder-copy';
import { backends } from './helpers/backends';

const HF = path.join(__dirname, 'fixtures', 'hf');
// llama-headdim-bias: head_dim 12 ≠ hidden/heads, attention_bias (q/k/v and o_proj), mlp_bias, legacy `type: linear`
// rope scaling; mistral-window: Mistral's head_dim 16, a sliding window the reference fits in, dynamic rope scaling,
// and an attention_bias Mistral ignores.
const FOLDERS = ['llama-gqa', 'llama3-bf16-tied', 'qwen2-bias', 'llama-headdim-bias', 'mistral-window'];

describe.each(backends)('Hugging Face Llama-family folders on the %s backend', (backend) => {
  it.each(FOLDERS)('%s: logits within 1e-4 of PyTorch, and cached steps agree', async (name) => {
    const dir = path.join(HF, name);
    const ref = JSON.parse(readFileSync(path.join(dir, 'reference.json'), 'utf8')) as { input_ids: number[]; logits: number[][] };
    const model = (await AutoModelForCausalLM.fromPretrained(dir)).useBackend(backend);
    const t = ref.input_ids.length;
    const logits = model.forward(new Tensor(Int32Array.from(ref.input_ids), [1, t], 'int32')).contiguous();
    const v = ref.logits[0]!.length;
    let worst = 0;
    ref.logits.forEach((row, i) => row.forEach((want, j) => (worst = Math.max(worst, Math.abs(logits.data[i * v + j]! - want)))));
    expect(worst).toBeLessThan(1e-4);
    // The same positions fed in two chunks through the KV cache give the same last logits.
    const cache = model.createCache(1, t);
    model.forward(new Tensor(Int32Array.from(ref.input_ids.slice(0, 5)), [1, 5], 'int32'), { cache });
    const last = model.forward(new Tensor(Int32Array.from(ref.input_ids.slice(5)), [1, t - 5], 'int32'), { cache, lastOnly: true });
    const want = ref.logits[t - 1]!;
    expect(Math.max(...want.map((w, j) => Math.abs(last.data[j]! - w)))).toBeLessThan(1e-4);
    // One token at a time (the decode step generate runs, replayed on the native backend) gives the same logits.
    const steps = model.createCache(1, t);
    let row: Tensor<'float32'> | null = null;
    for (const id of ref.input_ids) row = model.forward(new Tensor(Int32Array.of(id), [1, 1], 'int32'), { cache: steps }).contiguous();
    expect(Math.max(...want.map((w, j) => Math.abs(row!.data[j]! - w)))).toBeLessThan(1e-4);
  });
});

describe('AutoModelForCausalLM bad folders', () => {
  const copy = copyHfFolder;

  it('names the file and the field', async () => {
    const empty = mkdtempSync(path.join(tmpdir(), 'attnode-hf-'));
    await expect(AutoModelForCausalLM.fromPretrained(empty)).rejects.toThrow(/config.json: not found/);
    let d = copy('llama-gqa');
    editConfig(d, (c) => (c['model_type'] = 'gpt-neo'));
    await expect(AutoModelForCausalLM.fromPretrained(d)).rejects.toThrow(/config.json: field 'model_type' "gpt-neo" is not a supported causal LM/);
    d = copy('llama-gqa');
    editConfig(d, (c) => (c['hidden_size'] = 48));
    await expect(AutoModelForCausalLM.fromPretrained(d)).rejects.toThrow(
      /config.json: field 'hidden_size' \(48\) does not fit tensor lm_head.weight: expected shape \[96, 48\] from the config, the weights have \[96, 32\]/);
    d = copy('llama-gqa');
    editConfig(d, (c) => (c['num_key_value_heads'] = 3));
    await expect(AutoModelForCausalLM.fromPretrained(d)).rejects.toThrow(/numAttentionHeads \(4\) must be divisible by numKeyValueHeads \(3\)/);
    d = copy('llama-gqa');
    editConfig(d, (c) => (c['rope_scaling'] = { rope_type: 'yarn', factor: 2 }));
    await expect(AutoModelForCausalLM.fromPretrained(d)).rejects.toThrow(/field 'rope_scaling.rope_type' "yarn" is not supported/);
    d = copy('llama-gqa');
    writeFileSync(path.join(d, 'model.safetensors'), readFileSync(path.join(d, 'model.safetensors')).subarray(0, 5000));
    await expect(AutoModelForCausalLM.fromPretrained(d)).rejects.toThrow(/model.safetensors/);
    d = copy('llama-gqa');
    writeFileSync(path.join(d, 'config.json'), '{"model_type": "llama",');
    await expect(AutoModelForCausalLM.fromPretrained(d)).rejects.toThrow(/config.json: is not valid JSON/);
    await expect(AutoModelForCausalLM.fromPretrained(5 as never)).rejects.toThrow(TypeError);
  });
});

describe('Llama-family config.json conformance', () => {
  const load = (edit: (c: Record<string, unknown>) => void, name = 'llama-gqa'): Promise<unknown> => {
    const d = copyHfFolder(name);
    editConfig(d, edit);
    return AutoModelForCausalLM.fromPretrained(d);
  };

  it('rejects fields it does not compute, naming the field and value', async () => {
    for (const [edit, msg] of [
      [(c) => (c['model_type'] = 'gemma'), /field 'model_type' "gemma" is not a supported causal LM \(supported: llama, mistral, qwen2, gpt2\)/],
      [(c) => (c['model_type'] = 'phi'), /field 'model_type' "phi" is not a supported causal LM/],
      [(c) => (c['rope_scaling'] = { type: 'yarn', factor: 4 }), /field 'rope_scaling.type' "yarn" is not supported \(supported: 'default', 'linear', 'dynamic', 'llama3'\)/],
      [(c) => (c['rope_scaling'] = { rope_type: 'longrope' }), /field 'rope_scaling.rope_type' "longrope" is not supported/],
      [(c) => (c['rope_scaling'] = { rope_type: 'linear' }), /field 'rope_scaling.factor' must be a positive number, got undefined/],
      [(c) => (c['rope_scaling'] = 'linear'), /field 'rope_scaling' must be an object or null/],
      [(c) => (c['partial_rotary_factor'] = 0.5), /field 'partial_rotary_factor' 0.5 is not supported/],
      [(c) => (c['hidden_act'] = 'gelu'), /field 'hidden_act' "gelu" is not supported \(the SwiGLU MLP is computed with SiLU: silu, swish\)/],
      [(c) => (c['tie_word_embeddings'] = 'yes'), /field 'tie_word_embeddings' must be a boolean, got "yes"/],
      [(c) => (c['head_dim'] = 6), /fields 'num_key_value_heads' × 'head_dim' \(2 × 6\) do not fit tensor model.layers.0.self_attn.k_proj.weight: expected shape \[12, 32\] from the config, the weights have \[16, 32\]/],
      [(c) => (c['num_hidden_layers'] = 3), /field 'num_hidden_layers' is 3 but the weights have 2 layers/],
      [(c) => (c['intermediate_size'] = 64), /field 'intermediate_size' \(64\) does not fit tensor model.layers.0.mlp.down_proj.weight: expected shape \[32, 64\] from the config, the weights have \[32, 56\]/],
      [(c) => (c['vocab_size'] = 100), /field 'vocab_size' \(100\) does not fit tensor lm_head.weight: expected shape \[100, 32\]/],
      [(c) => (c['num_key_value_heads'] = 4), /fields 'num_key_value_heads' × 'hidden_size \/ num_attention_heads' \(4 × 8\) do not fit tensor model.layers.0.self_attn.k_proj.weight: expected shape \[32, 32\] from the config, the weights have \[16, 32\]/],
      // Llama reads attention_bias / mlp_bias: a config that sets them for bias-free weights is a missing-bias error.
      [(c) => (c['mlp_bias'] = true), /the weights do not fit[^]*missing[^]*mlp.(gate|up|down)_proj.bias/],
    ] as [(c: Record<string, unknown>) => void, RegExp][]) {
      await expect(load(edit)).rejects.toThrow(msg);
    }
  });

  it('a sliding window is honoured while the sequence fits and refused beyond it', async () => {
    const model = await AutoModelForCausalLM.fromPretrained(path.join(HF, 'mistral-window'));
    expect(model.config).toMatchObject({ slidingWindow: 16, headDim: 16, attentionBias: false, outputBias: false });
    const ids = (n: number): Tensor<'int32'> => new Tensor(Int32Array.from({ length: n }, (_, i) => i % 90), [1, n], 'int32');
    expect(model.forward(ids(16)).shape).toEqual([1, 16, 96]);
    expect(() => model.forward(ids(17))).toThrow(/sequence length 17 exceeds the model's sliding window of 16 positions \(config.json 'sliding_window'\)/);
    // A cache continuing past the window is refused the same way.
    const cache = model.createCache(1, 20);
    model.forward(ids(16), { cache });
    expect(() => model.forward(ids(1), { cache })).toThrow(/sliding window/);
  });

  it('sliding_window counts only where the family reads it', async () => {
    // Mistral without the field: MistralConfig's default 4096. null: none.
    const cfg = (edit: (c: Record<string, unknown>) => void, name: string): Record<string, unknown> => {
      const c = JSON.parse(readFileSync(path.join(HF, name, 'config.json'), 'utf8')) as Record<string, unknown>;
      edit(c);
      return c;
    };
    const window = (c: Record<string, unknown>): number | null | undefined => llamaConfigFromJson(c).slidingWindow;
    expect(window(cfg((c) => delete c['sliding_window'], 'mistral-window'))).toBe(4096);
    expect(window(cfg((c) => (c['sliding_window'] = null), 'mistral-window'))).toBeNull();
    // Llama never slides; Qwen2 only with use_sliding_window, and only when some layer is at or past max_window_layers.
    expect(window(cfg((c) => (c['sliding_window'] = 4), 'llama-gqa'))).toBeNull();
    expect(window(cfg((c) => (c['sliding_window'] = 4), 'qwen2-bias'))).toBeNull();
    expect(window(cfg((c) => Object.assign(c, { sliding_window: 4, use_sliding_window: true, max_window_layers: 1 }), 'qwen2-bias'))).toBe(4);
    expect(window(cfg((c) => Object.assign(c, { sliding_window: 4, use_sliding_window: true, max_window_layers: 2 }), 'qwen2-bias'))).toBeNull();
  });

  it('checkpoints with rotary inv_freq buffers (older transformers) load', async () => {
    const d = copyHfFolder('llama-gqa');
    const { loadSafetensors, saveSafetensors } = await import('../lib/io/safetensors');
    const file = path.join(d, 'model.safetensors');
    const { tensors } = await loadSafetensors(file);
    tensors['model.layers.0.self_attn.rotary_emb.inv_freq'] = new Tensor(new Float32Array(4), [4], 'float32');
    await saveSafetensors(file, tensors);
    const model = await AutoModelForCausalLM.fromPretrained(d);
    expect(model.config.numHiddenLayers).toBe(2);
  });
});
