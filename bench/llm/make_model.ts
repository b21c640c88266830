/**
 * Writes a SmolLM-135M-shaped LlamaForCausalLM with seeded random weights as a
 * Hugging Face folder (config.json + model.safetensors, float32) and loads it
 * back with AutoModelForCausalLM.fromPretrained as a check.
 *
 *   npx tsx bench/llm/make_model.ts [--out bench/models/smollm-135m-random] [--seed 1]
 *
 * Shape (HuggingFaceTB/SmolLM-135M): hidden 576, intermediate 1536, 30 layers,
 * 9 heads, 3 kv heads, vocab 49152, tied embeddings, rope_theta 10000,
 * rms_norm_eps 1e-5, 2048 positions. Weights uniform with std 0.02, norms 1 ± 0.05.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { Tensor } from '../../lib';
import { saveSafetensors } from '../../lib/io/safetensors';
import { AutoModelForCausalLM } from '../../lib/models/auto';

export const SMOLLM_CONFIG = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 576,
  intermediate_size: 1536,
  num_hidden_layers: 30,
  num_attention_heads: 9,
  num_key_value_heads: 3,
  vocab_size: 49152,
  tie_word_embeddings: true,
  rope_theta: 10000,
  rms_norm_eps: 1e-5,
  max_position_embeddings: 2048,
  hidden_act: 'silu',
  attention_bias: false,
  torch_dtype: 'float32',
  bos_token_id: 1,
  eos_token_id: 2,
};

export const DEFAULT_DIR = path.join(__dirname, '..', 'models', 'smollm-135m-random');

/** xorshift32-based uniform generator (fast, seeded). */
function rng(seed: number): () => number {
  let s = (seed * 2654435761) >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}

function randomTensor(shape: number[], std: number, next: () => number, mean = 0): Tensor<'float32'> {
  const n = shape.reduce((a, b) => a * b, 1);
  const a = std * Math.sqrt(3); // uniform(-a, a) has std `std`
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = mean + (2 * next() - 1) * a;
  return new Tensor(d, shape, 'float32');
}

export function makeWeights(seed: number): Record<string, Tensor<'float32'>> {
  const c = SMOLLM_CONFIG;
  const next = rng(seed);
  const e = c.hidden_size;
  const hd = e / c.num_attention_heads;
  const kv = hd * c.num_key_value_heads;
  const w: Record<string, Tensor<'float32'>> = {};
  w['model.embed_tokens.weight'] = randomTensor([c.vocab_size, e], 0.02, next);
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    w[`${p}self_attn.q_proj.weight`] = randomTensor([e, e], 0.02, next);
    w[`${p}self_attn.k_proj.weight`] = randomTensor([kv, e], 0.02, next);
    w[`${p}self_attn.v_proj.weight`] = randomTensor([kv, e], 0.02, next);
    w[`${p}self_attn.o_proj.weight`] = randomTensor([e, e], 0.02, next);
    w[`${p}mlp.gate_proj.weight`] = randomTensor([c.intermediate_size, e], 0.02, next);
    w[`${p}mlp.up_proj.weight`] = randomTensor([c.intermediate_size, e], 0.02, next);
    w[`${p}mlp.down_proj.weight`] = randomTensor([e, c.intermediate_size], 0.02, next);
    w[`${p}input_layernorm.weight`] = randomTensor([e], 0.05, next, 1);
    w[`${p}post_attention_layernorm.weight`] = randomTensor([e], 0.05, next, 1);
  }
  w['model.norm.weight'] = randomTensor([e], 0.05, next, 1);
  return w;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { out: { type: 'string' }, seed: { type: 'string', default: '1' } } });
  const dir = path.resolve(values.out ?? DEFAULT_DIR);
  fs.mkdirSync(dir, { recursive: true });
  const t0 = performance.now();
  const weights = makeWeights(Number(values.seed));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(SMOLLM_CONFIG, null, 2) + '\n');
  await saveSafetensors(path.join(dir, 'model.safetensors'), weights, { format: 'pt' });
  const params = Object.values(weights).reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
  console.log(`wrote ${dir} (${(params / 1e6).toFixed(2)}M params, ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  // Check: loads back under HF key names, and a forward gives finite logits.
  const model = await AutoModelForCausalLM.fromPretrained(dir);
  const ids = new Tensor(Int32Array.from([1, 2, 3, 4]), [1, 4], 'int32');
  const logits = model.forward(ids);
  const d = logits.contiguous().data;
  let finite = true;
  for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i]!)) finite = false;
  console.log(`reload ok: ${model.constructor.name}, logits ${JSON.stringify(logits.shape)}, finite=${finite}`);
  if (!finite) process.exit(1);
}

if (require.main === module) void main();
