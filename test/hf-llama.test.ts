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
import { AutoModelForCausalLM } from '../lib/models/auto';
import { Tensor } from '../lib/tensor';
import { copyHfFolder, editConfig } from './helpers/hf-folder-copy';
import { backends } from './helpers/backends';

const HF = path.join(__dirname, 'fixtures', 'hf');
const FOLDERS = ['llama-gqa', 'llama3-bf16-tied', 'qwen2-bias'];

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
    await expect(AutoModelForCausalLM.fromPretrained(d)).rejects.toThrow(/the weights do not fit .*config.json: [^]*size mismatch[^]*model\.embed_tokens\.weight/);
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
