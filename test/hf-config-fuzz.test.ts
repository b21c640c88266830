/**
 * config.json readers of every family under mutation: a mutated config is
 * either read (into a config whose sizes fit together) or an Error whose
 * message starts with the file's name, never a TypeError from inside a reader
 * or a config that fails later. Mutations touch the fields the families read,
 * including the conformance fields (head_dim, rope_scaling, sliding_window,
 * position_embedding_type, problem_type, activation names, …).
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { llamaConfigFromJson } from '../lib/models/auto';
import { resolveLlamaConfig } from '../lib/models/llama';
import { bertConfigFromJson } from '../lib/models/bert';
import { gpt2ConfigFromJson, resolveGPT2Config } from '../lib/models/gpt2';
import { generationConfigFromJson } from '../lib/models/generation-config';

const HF = path.join(__dirname, 'fixtures', 'hf');
const config = (name: string): Record<string, unknown> => JSON.parse(readFileSync(path.join(HF, name, 'config.json'), 'utf8')) as Record<string, unknown>;

const value = fc.oneof(
  fc.constant(null), fc.constant(undefined), fc.boolean(), fc.integer({ min: -5, max: 5000 }), fc.double(), fc.string(),
  fc.constant([]), fc.constant({}), fc.constant([1, 2]),
  fc.constantFrom('silu', 'gelu', 'gelu_new', 'relu', 'swish', 'tanh', 'absolute', 'relative_key', 'llama', 'mistral', 'qwen2', 'gemma',
    'multi_label_classification', 'regression'),
  fc.record({ rope_type: fc.constantFrom('llama3', 'linear', 'dynamic', 'yarn', 'default'), factor: fc.oneof(fc.double(), fc.integer()) }),
  fc.record({ type: fc.constantFrom('linear', 'dynamic', 'su'), factor: fc.integer({ min: -1, max: 8 }) }),
);

/** Runs `read` on mutations of `base` (existing and extra fields); `check` validates what it returns. */
function fuzz(base: Record<string, unknown>, extra: string[], read: (c: Record<string, unknown>) => void, seed: number): void {
  const fields = [...Object.keys(base), ...extra];
  fc.assert(fc.property(fc.array(fc.tuple(fc.constantFrom(...fields), value), { minLength: 1, maxLength: 4 }), (edits) => {
    const c: Record<string, unknown> = { ...base };
    for (const [k, v] of edits) c[k] = v;
    try {
      read(c);
    } catch (err) {
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/^fuzz\/config.json/);
    }
  }), { numRuns: 300, seed });
}

describe('config.json readers under mutation: a config or an Error naming the file', () => {
  it.each(['llama-gqa', 'llama-headdim-bias', 'mistral-window', 'qwen2-bias'])('Llama family (%s)', (name) => {
    fuzz(config(name), ['head_dim', 'rope_scaling', 'partial_rotary_factor', 'hidden_act', 'sliding_window', 'use_sliding_window',
      'max_window_layers', 'attention_bias', 'mlp_bias'], (c) => {
      const raw = llamaConfigFromJson(c, 'fuzz/config.json');
      let r;
      try {
        r = resolveLlamaConfig(raw);
      } catch (err) {
        // Sizes that do not fit together are named by the resolver (AutoModelForCausalLM prefixes the file).
        expect(err).toBeInstanceOf(RangeError);
        return;
      }
      expect(r.headDim * r.numAttentionHeads).toBeGreaterThan(0);
      expect(r.numAttentionHeads % r.numKeyValueHeads).toBe(0);
    }, 21);
  });

  it.each(['bert-cls', 'roberta-xlmr-cls', 'distilbert-cls', 'bert-silu-mlm'])('BERT family (%s)', (name) => {
    fuzz(config(name), ['position_embedding_type', 'is_decoder', 'add_cross_attention', 'problem_type', 'sinusoidal_pos_embds'], (c) => {
      const r = bertConfigFromJson(c, 'fuzz/config.json');
      expect(r.hiddenSize % r.numAttentionHeads).toBe(0);
    }, 22);
  });

  it('GPT-2', () => {
    fuzz(config('gpt2-tiny'), ['scale_attn_by_inverse_layer_idx', 'reorder_and_upcast_attn', 'add_cross_attention', 'tie_word_embeddings'], (c) => {
      const raw = gpt2ConfigFromJson(c, 'fuzz/config.json');
      try {
        resolveGPT2Config(raw);
      } catch (err) {
        expect(err).toBeInstanceOf(RangeError);
      }
    }, 23);
  });

  it('generation config', () => {
    fuzz({ eos_token_id: [1, 2], do_sample: true, top_k: 20, max_new_tokens: 5 }, ['typical_p', 'suppress_tokens', 'bad_words_ids', 'num_beams'],
      (c) => void generationConfigFromJson(c, 'fuzz/config.json'), 24);
  });
});
