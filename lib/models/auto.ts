/**
 * Models from Hugging Face model folders: `config.json` picks the family by
 * `model_type`, the weights come from `model.safetensors`, the shards of
 * `model.safetensors.index.json`, `pytorch_model.bin` or the shards of
 * `pytorch_model.bin.index.json` (F32, F16 and BF16 stored weights, read as
 * float32), and load under Hugging Face's own key names.
 *
 * Families: Llama-style decoders (`llama`, `mistral`, `qwen2`), GPT-2 (`gpt2`); BERT-family
 * encoders (`bert`, `roberta`, `xlm-roberta`, `distilbert`); MarianMT
 * (`marian`). A folder that does not fit is an error naming the file and the
 * field.
 */
import { readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { loadSafetensors } from '../io/safetensors';
import { loadTorchCheckpoint } from '../io/torch/checkpoint';
import { Tensor as TensorClass, type Tensor } from '../tensor';
import { LlamaForCausalLM, resolveLlamaConfig, type LlamaConfig, type ResolvedLlamaConfig, type RopeScaling } from './llama';
import { checkLayerCount, checkWeightShapes, dimOf, dimProduct, type ShapeRule } from './config-check';
import { GPT2LMHeadModel, gpt2ConfigFromJson, gpt2StateDict, resolveGPT2Config, type GPT2Config, type ResolvedGPT2Config } from './gpt2';
import { bertConfigFromJson, encoderFromWeights, type EncoderHeadModel, type EncoderModel, type EncoderTask, type ResolvedBertConfig } from './bert';
import { MarianMTModel, marianConfigFromJson, marianStateDict } from './marian';
import { causalGenerationDefaults, generationDefaultsFrom, loadGenerationConfig } from './generation-config';
import type { GenerationDefaults } from './generation';

type Json = Record<string, unknown>;

/** Reads and parses a JSON file of the folder, or null when it does not exist. */
async function readJson(dir: string, name: string): Promise<Json | null> {
  const file = path.join(dir, name);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error(`${file}: cannot be read (${(err as Error).message})`, { cause: err });
  }
  try {
    const v: unknown = JSON.parse(text);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Json;
  } catch (err) {
    throw new Error(`${file}: is not valid JSON (${(err as Error).message})`, { cause: err });
  }
}

/** The folder's config.json (its path for error messages, and its fields); a folder without one is an error. */
async function folderConfig(fn: string, dir: string): Promise<{ file: string; json: Json }> {
  if (typeof dir !== 'string') throw new TypeError(`${fn}: argument 'dir' must be a string, got ${typeof dir}`);
  const file = path.join(dir, 'config.json');
  const json = await readJson(dir, 'config.json');
  if (!json) throw new Error(`${file}: not found (a Hugging Face model folder has a config.json)`);
  return { file, json };
}

/** A config field: an integer ≥ min (or absent with a default). */
function int(file: string, c: Json, key: string, min: number, dflt?: number, prefix = ''): number {
  const v = c[key] ?? dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw new Error(`${file}: field '${prefix}${key}' must be an integer >= ${min}, got ${JSON.stringify(c[key])}`);
  }
  return v;
}

function num(file: string, c: Json, key: string, dflt: number, prefix = ''): number {
  const v = c[key] ?? dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new Error(`${file}: field '${prefix}${key}' must be a positive number, got ${JSON.stringify(c[key])}`);
  }
  return v;
}

/** The `hidden_act` names of transformers' ACT2FN that are SiLU (the SwiGLU gate of every Llama-family checkpoint). */
const LLAMA_ACTIVATIONS = ['silu', 'swish'];

/**
 * The Llama configuration of a Llama-family `config.json` (`model_type`
 * llama, mistral, qwen2), read as transformers' modeling code reads each
 * family: a field that changes outputs is either honoured or an Error naming
 * `file`, the field and its value.
 */
export function llamaConfigFromJson(c: Json, file = 'config.json'): LlamaConfig {
  const type = c['model_type'];
  if (type !== 'llama' && type !== 'mistral' && type !== 'qwen2') {
    throw new Error(`${file}: field 'model_type' ${JSON.stringify(type)} is not a Llama-family model (supported: llama, mistral, qwen2)`);
  }
  let ropeScaling: RopeScaling | null = null;
  const rs = c['rope_scaling'];
  if (rs !== undefined && rs !== null) {
    if (typeof rs !== 'object' || Array.isArray(rs)) throw new Error(`${file}: field 'rope_scaling' must be an object or null, got ${JSON.stringify(rs)}`);
    const s = rs as Json;
    // transformers reads `rope_type`, or the legacy `type` of older configs.
    const kindField = s['rope_type'] !== undefined ? 'rope_type' : 'type';
    const kind = s[kindField];
    if (kind === 'llama3') {
      ropeScaling = {
        ropeType: 'llama3', factor: num(file, s, 'factor', NaN, 'rope_scaling.'), lowFreqFactor: num(file, s, 'low_freq_factor', NaN, 'rope_scaling.'),
        highFreqFactor: num(file, s, 'high_freq_factor', NaN, 'rope_scaling.'),
        originalMaxPositionEmbeddings: int(file, s, 'original_max_position_embeddings', 1, undefined, 'rope_scaling.'),
      };
    } else if (kind === 'linear') {
      ropeScaling = { ropeType: 'linear', factor: num(file, s, 'factor', NaN, 'rope_scaling.') };
    } else if (kind === 'dynamic') {
      // Dynamic NTK scaling changes the frequencies only for sequences longer than max_position_embeddings, which
      // attnode refuses (forward and generate check the length): within it transformers uses the default ones.
      num(file, s, 'factor', NaN, 'rope_scaling.');
    } else if (kind !== 'default') {
      throw new Error(`${file}: field 'rope_scaling.${kindField}' ${JSON.stringify(kind)} is not supported (supported: 'default', 'linear', 'dynamic', 'llama3')`);
    }
  }
  const prf = c['partial_rotary_factor'];
  if (prf !== undefined && prf !== null && prf !== 1) {
    throw new Error(`${file}: field 'partial_rotary_factor' ${JSON.stringify(prf)} is not supported (the ${String(type)} architecture rotates every feature of a head: only 1)`);
  }
  const act = c['hidden_act'] ?? 'silu';
  if (typeof act !== 'string' || !LLAMA_ACTIVATIONS.includes(act)) {
    throw new Error(`${file}: field 'hidden_act' ${JSON.stringify(act)} is not supported (the SwiGLU MLP is computed with SiLU: ${LLAMA_ACTIVATIONS.join(', ')})`);
  }
  const bool = (key: string): boolean => {
    const v = c[key] ?? false;
    if (typeof v !== 'boolean') throw new Error(`${file}: field '${key}' must be a boolean, got ${JSON.stringify(c[key])}`);
    return v;
  };
  // Which layers slide: Mistral's every layer when sliding_window is set; Qwen2's layers from max_window_layers on
  // when use_sliding_window is true. Llama has no sliding window.
  let slidingWindow: number | null = null;
  // An absent sliding_window is MistralConfig's and Qwen2Config's default, 4096; null turns it off.
  const window = c['sliding_window'];
  if (window !== null && (type === 'mistral' || (type === 'qwen2' && bool('use_sliding_window')))) {
    slidingWindow = int(file, c, 'sliding_window', 1, 4096);
    if (type === 'qwen2' && int(file, c, 'max_window_layers', 0, 28) >= int(file, c, 'num_hidden_layers', 0)) slidingWindow = null;
  }
  const heads = int(file, c, 'num_attention_heads', 1);
  const headDim = c['head_dim'];
  // Only Llama reads attention_bias (q/k/v and o) and mlp_bias; Qwen2 always has q/k/v biases and no others;
  // Mistral has none, whatever its config says (transformers' MistralAttention and MistralMLP are bias-free).
  const llama = type === 'llama';
  return {
    vocabSize: int(file, c, 'vocab_size', 1),
    hiddenSize: int(file, c, 'hidden_size', 1),
    intermediateSize: int(file, c, 'intermediate_size', 1),
    numHiddenLayers: int(file, c, 'num_hidden_layers', 0),
    numAttentionHeads: heads,
    numKeyValueHeads: int(file, c, 'num_key_value_heads', 1, heads),
    // Each family's config class default when the field is absent.
    maxPositionEmbeddings: int(file, c, 'max_position_embeddings', 1, type === 'mistral' ? 131072 : type === 'qwen2' ? 32768 : 2048),
    rmsNormEps: num(file, c, 'rms_norm_eps', 1e-6),
    ropeTheta: num(file, c, 'rope_theta', 10000),
    ropeScaling,
    tieWordEmbeddings: bool('tie_word_embeddings'),
    attentionBias: type === 'qwen2' || (llama && bool('attention_bias')),
    outputBias: llama && bool('attention_bias'),
    mlpBias: llama && bool('mlp_bias'),
    ...(headDim !== undefined && headDim !== null ? { headDim: int(file, c, 'head_dim', 2) } : {}),
    slidingWindow,
  };
}

/**
 * The shape every Llama-family tensor must have under the config: a
 * contradiction names the field(s), the tensor, and both shapes.
 */
function llamaShapeRules(c: ResolvedLlamaConfig, explicitHeadDim: boolean): ShapeRule[] {
  const hd = c.headDim;
  const E = dimOf('hidden_size', c.hiddenSize);
  const V = dimOf('vocab_size', c.vocabSize);
  const I = dimOf('intermediate_size', c.intermediateSize);
  const headField = explicitHeadDim ? 'head_dim' : 'hidden_size / num_attention_heads';
  const Q = dimProduct([['num_attention_heads', c.numAttentionHeads], [headField, hd]]);
  const KV = dimProduct([['num_key_value_heads', c.numKeyValueHeads], [headField, hd]]);
  const L = String.raw`^model\.layers\.\d+\.`;
  return [
    [/^(model\.embed_tokens|lm_head)\.weight$/, [V, E]],
    [/^model\.norm\.weight$/, [E]],
    [new RegExp(`${L}(input_layernorm|post_attention_layernorm)\\.weight$`), [E]],
    [new RegExp(`${L}self_attn\\.q_proj\\.weight$`), [Q, E]],
    [new RegExp(`${L}self_attn\\.q_proj\\.bias$`), [Q]],
    [new RegExp(`${L}self_attn\\.[kv]_proj\\.weight$`), [KV, E]],
    [new RegExp(`${L}self_attn\\.[kv]_proj\\.bias$`), [KV]],
    [new RegExp(`${L}self_attn\\.o_proj\\.weight$`), [E, Q]],
    [new RegExp(`${L}self_attn\\.o_proj\\.bias$`), [E]],
    [new RegExp(`${L}mlp\\.(gate|up)_proj\\.weight$`), [I, E]],
    [new RegExp(`${L}mlp\\.(gate|up)_proj\\.bias$`), [I]],
    [new RegExp(`${L}mlp\\.down_proj\\.weight$`), [E, I]],
    [new RegExp(`${L}mlp\\.down_proj\\.bias$`), [E]],
  ];
}

/** A GPT-2 config resolved, a contradiction (heads not dividing n_embd, …) an Error naming `file`. */
function resolveGPT2ConfigIn(file: string, c: GPT2Config): ResolvedGPT2Config {
  try {
    return resolveGPT2Config(c);
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** The shape every GPT-2 tensor must have under the config (Conv1D weights are [in, out]). */
function gpt2ShapeRules(c: ResolvedGPT2Config, explicitInner: boolean): ShapeRule[] {
  const E = dimOf('n_embd', c.hiddenSize);
  const I = explicitInner ? dimOf('n_inner', c.intermediateSize) : dimProduct([['4', 4], ['n_embd', c.hiddenSize]]);
  const E3 = dimProduct([['3', 3], ['n_embd', c.hiddenSize]]);
  const L = String.raw`^transformer\.h\.\d+\.`;
  return [
    [/^transformer\.wte\.weight$/, [dimOf('vocab_size', c.vocabSize), E]],
    [/^transformer\.wpe\.weight$/, [dimOf('n_positions', c.maxPositionEmbeddings), E]],
    [new RegExp(`${L}attn\\.c_attn\\.weight$`), [E, E3]],
    [new RegExp(`${L}attn\\.c_attn\\.bias$`), [E3]],
    [new RegExp(`${L}attn\\.c_proj\\.weight$`), [E, E]],
    [new RegExp(`${L}mlp\\.c_fc\\.weight$`), [E, I]],
    [new RegExp(`${L}mlp\\.c_fc\\.bias$`), [I]],
    [new RegExp(`${L}mlp\\.c_proj\\.weight$`), [I, E]],
    [/^transformer\.(h\.\d+\.(ln_\d|attn\.c_proj|mlp\.c_proj)|ln_f)\.(weight|bias)$/, [E]],
  ];
}

/** A reader of one weight file: its tensors by name. */
type WeightReader = (file: string) => Promise<Record<string, Tensor>>;

const readSafetensors: WeightReader = async (file) => (await loadSafetensors(file)).tensors;
const readTorchBin: WeightReader = async (file) => (await loadTorchCheckpoint(file)).tensors;

/**
 * The weight files of a folder in the order Hugging Face's `from_pretrained`
 * looks for them: safetensors first (one file, then shards), then
 * `pytorch_model.bin` (one file, then shards). The first that exists is read.
 */
const WEIGHT_FILES: readonly { name: string; sharded: boolean; read: WeightReader }[] = [
  { name: 'model.safetensors', sharded: false, read: readSafetensors },
  { name: 'model.safetensors.index.json', sharded: true, read: readSafetensors },
  { name: 'pytorch_model.bin', sharded: false, read: readTorchBin },
  { name: 'pytorch_model.bin.index.json', sharded: true, read: readTorchBin },
];

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new Error(`${file}: cannot be read (${(err as Error).message})`, { cause: err });
  }
}

/** The tensors of every shard an index's `weight_map` names, each shard read once. */
async function readShards(dir: string, indexName: string, read: WeightReader): Promise<Record<string, Tensor>> {
  const file = path.join(dir, indexName);
  const index = (await readJson(dir, indexName))!;
  const map = index['weight_map'];
  if (map === null || typeof map !== 'object' || Array.isArray(map)) {
    throw new Error(`${file}: field 'weight_map' must be an object of shard names`);
  }
  const shards = [...new Set(Object.values(map as Json))];
  // Every name is checked before any shard is read: a bad index fails as itself, not as a missing file.
  for (const shard of shards) {
    if (typeof shard !== 'string' || shard === '' || shard.includes('/') || shard.includes('\\') || shard === '.' || shard === '..') {
      throw new Error(`${file}: field 'weight_map' names a shard ${JSON.stringify(shard)}, expected a file name in the folder`);
    }
  }
  const out: Record<string, Tensor> = Object.create(null) as Record<string, Tensor>;
  for (const shard of shards as string[]) Object.assign(out, await read(path.join(dir, shard)));
  return out;
}

/**
 * Every tensor of a Hugging Face folder's weights: `model.safetensors`,
 * the shards of `model.safetensors.index.json`, `pytorch_model.bin` (a
 * torch.save file, read by {@link loadTorchCheckpoint} without running any
 * pickled code) or the shards of `pytorch_model.bin.index.json`, the first
 * that exists in that order (Hugging Face's). A weight stored as a
 * non-contiguous view (a transposed torch tensor) is made contiguous once
 * here, so the layers pack it as they pack any other.
 * @throws Error naming the folder when it has none of these files, and the
 *   readers' errors (naming the file and the field) for a bad one.
 */
export async function loadFolderWeights(dir: string): Promise<Record<string, Tensor>> {
  if (typeof dir !== 'string') throw new TypeError(`loadFolderWeights: argument 'dir' must be a string, got ${typeof dir}`);
  for (const { name, sharded, read } of WEIGHT_FILES) {
    if (!(await exists(path.join(dir, name)))) continue;
    const tensors = sharded ? await readShards(dir, name, read) : await read(path.join(dir, name));
    for (const [key, t] of Object.entries(tensors)) if (!t.isContiguous()) tensors[key] = t.contiguous();
    return tensors;
  }
  throw new Error(`${dir}: no weights found (expected ${WEIGHT_FILES.map((w) => w.name).join(', ')})`);
}

const CAUSAL_LM_TYPES = ['llama', 'mistral', 'qwen2', 'gpt2'] as const;

/** A decoder-only folder's generate defaults (generation_config.json, else config.json; errors name the one read). */
async function causalDefaultsOf(dir: string): Promise<GenerationDefaults> {
  const own = path.join(dir, 'generation_config.json');
  return causalGenerationDefaults(await loadGenerationConfig(dir), (await exists(own)) ? own : path.join(dir, 'config.json'));
}

/** Causal language models from Hugging Face folders. */
export const AutoModelForCausalLM = {
  /**
   * Loads the folder's model (`model_type` llama, mistral, qwen2 or gpt2) with its
   * weights. Throws an Error naming the file and field when the folder does
   * not fit (a missing or unknown `model_type`, weights whose shapes
   * contradict the config, missing or unexpected weights).
   */
  async fromPretrained(dir: string): Promise<LlamaForCausalLM | GPT2LMHeadModel> {
    const { file, json: config } = await folderConfig('AutoModelForCausalLM.fromPretrained', dir);
    const type = config['model_type'];
    if (typeof type !== 'string' || !(CAUSAL_LM_TYPES as readonly string[]).includes(type)) {
      throw new Error(`${file}: field 'model_type' ${JSON.stringify(type)} is not a supported causal LM (supported: ${CAUSAL_LM_TYPES.join(', ')})`);
    }
    if (type === 'gpt2') {
      const gc = resolveGPT2ConfigIn(file, gpt2ConfigFromJson(config, file));
      const weights = gpt2StateDict(await loadFolderWeights(dir));
      checkLayerCount(file, weights, /^transformer\.h\.(\d+)\./, 'n_layer', gc.numHiddenLayers);
      checkWeightShapes(file, weights, gpt2ShapeRules(gc, config['n_inner'] !== undefined && config['n_inner'] !== null));
      const gpt2 = new GPT2LMHeadModel(gc);
      gpt2.generationConfig = await causalDefaultsOf(dir);
      try {
        gpt2.loadStateDict(weights);
      } catch (err) {
        throw new Error(`${dir}: the weights do not fit ${file}: ${(err as Error).message}`, { cause: err });
      }
      // In eval mode, as transformers' from_pretrained returns models.
      return gpt2.eval();
    }
    let resolved: ResolvedLlamaConfig;
    try {
      resolved = resolveLlamaConfig(llamaConfigFromJson(config, file));
    } catch (err) {
      if (err instanceof Error && err.message.startsWith(file)) throw err;
      throw new Error(`${file}: ${(err as Error).message}`, { cause: err });
    }
    const weights = await loadFolderWeights(dir);
    // Tied checkpoints sometimes still carry lm_head.weight (a copy of the embedding): not a parameter here. Older
    // transformers saved each layer's rotary inv_freq buffer, which from_pretrained ignores (it is recomputed).
    if (resolved.tieWordEmbeddings) delete weights['lm_head.weight'];
    for (const k of Object.keys(weights)) if (/\.rotary_emb\.inv_freq$/.test(k)) delete weights[k];
    checkLayerCount(file, weights, /^model\.layers\.(\d+)\./, 'num_hidden_layers', resolved.numHiddenLayers);
    checkWeightShapes(file, weights, llamaShapeRules(resolved, config['head_dim'] !== undefined && config['head_dim'] !== null));
    const model = new LlamaForCausalLM(resolved);
    model.generationConfig = await causalDefaultsOf(dir);
    try {
      model.loadStateDict(weights);
    } catch (err) {
      throw new Error(`${dir}: the weights do not fit ${file}: ${(err as Error).message}`, { cause: err });
    }
    return model.eval();
  },
};

/** The shape every BERT-family tensor must have under the config (keys with or without the family's prefix). */
function encoderShapeRules(c: ResolvedBertConfig): ShapeRule[] {
  const distil = c.family === 'distilbert';
  const E = dimOf(distil ? 'dim' : 'hidden_size', c.hiddenSize);
  const I = dimOf(distil ? 'hidden_dim' : 'intermediate_size', c.intermediateSize);
  const V = dimOf('vocab_size', c.vocabSize);
  const labels = dimOf('id2label', c.id2label.length);
  const P = dimOf('max_position_embeddings', c.maxPositionEmbeddings);
  const pre = String.raw`^(?:(?:bert|roberta|distilbert)\.)?`;
  const rx = (body: string): RegExp => new RegExp(pre + body);
  const emb: ShapeRule[] = [
    [rx(String.raw`embeddings\.word_embeddings\.weight$`), [V, E]],
    [rx(String.raw`embeddings\.position_embeddings\.weight$`), [P, E]],
    [rx(String.raw`embeddings\.token_type_embeddings\.weight$`), [dimOf('type_vocab_size', c.typeVocabSize), E]],
    [rx(String.raw`embeddings\.LayerNorm\.(weight|bias)$`), [E]],
  ];
  if (distil) {
    const L = String.raw`transformer\.layer\.\d+\.`;
    return [...emb,
      [rx(L + String.raw`attention\.(q|k|v|out)_lin\.weight$`), [E, E]],
      [rx(L + String.raw`attention\.(q|k|v|out)_lin\.bias$`), [E]],
      [rx(L + String.raw`ffn\.lin1\.weight$`), [I, E]],
      [rx(L + String.raw`ffn\.lin1\.bias$`), [I]],
      [rx(L + String.raw`ffn\.lin2\.weight$`), [E, I]],
      [rx(L + String.raw`(ffn\.lin2\.bias|(sa|output)_layer_norm\.(weight|bias))$`), [E]],
      [/^(vocab_transform\.weight|pre_classifier\.weight)$/, [E, E]],
      [/^vocab_projector\.bias$/, [V]],
      [/^classifier\.weight$/, [labels, E]],
      [/^classifier\.bias$/, [labels]],
    ];
  }
  const L = String.raw`encoder\.layer\.\d+\.`;
  return [...emb,
    [rx(L + String.raw`attention\.(self\.(query|key|value)|output\.dense)\.weight$`), [E, E]],
    [rx(L + String.raw`intermediate\.dense\.weight$`), [I, E]],
    [rx(L + String.raw`intermediate\.dense\.bias$`), [I]],
    [rx(L + String.raw`output\.dense\.weight$`), [E, I]],
    [rx(L + String.raw`.*\.(bias|LayerNorm\.weight)$`), [E]],
    [rx(String.raw`pooler\.dense\.weight$`), [E, E]],
    [/^(cls\.predictions\.bias|lm_head\.bias)$/, [V]],
    [/^(cls\.predictions\.transform\.dense|lm_head\.dense|classifier\.dense)\.weight$/, [E, E]],
    [/^(classifier|classifier\.out_proj)\.weight$/, [labels, E]],
    [/^(classifier|classifier\.out_proj)\.bias$/, [labels]],
  ];
}

/**
 * DistilBERT's sinusoidal position table (`sinusoidal_pos_embds`), as transformers' create_sinusoidal_embeddings
 * writes it: column j of position p is sin (even j) or cos (odd j) of p / 10000^(2·⌊j/2⌋ / dim).
 */
export function distilbertSinusoidalTable(positions: number, dim: number): Tensor<'float32'> {
  const out = new Float32Array(positions * dim);
  for (let p = 0; p < positions; p++) {
    for (let j = 0; j < dim; j++) {
      const angle = p / Math.pow(10000, (2 * Math.floor(j / 2)) / dim);
      out[p * dim + j] = j % 2 === 0 ? Math.sin(angle) : Math.cos(angle);
    }
  }
  return new TensorClass(out, [positions, dim], 'float32');
}

/** Reads a BERT-family folder's config and weights and builds the model of `task`. */
async function loadEncoder(fn: string, task: EncoderTask, dir: string): Promise<EncoderModel | EncoderHeadModel> {
  const { file, json } = await folderConfig(fn, dir);
  const config = bertConfigFromJson(json, file);
  if (task === 'masked-lm' && json['tie_word_embeddings'] === false) {
    throw new Error(`${file}: field 'tie_word_embeddings' false is not supported for masked-LM heads (the decoder is the word embedding table)`);
  }
  const weights = await loadFolderWeights(dir);
  const distil = config.family === 'distilbert';
  if (distil && json['sinusoidal_pos_embds'] === true) {
    // save_pretrained stores the table (a parameter); a checkpoint without it gets the one transformers initialises.
    const prefixed = Object.keys(weights).some((k) => k.startsWith('distilbert.'));
    const key = `${prefixed ? 'distilbert.' : ''}embeddings.position_embeddings.weight`;
    weights[key] ??= distilbertSinusoidalTable(config.maxPositionEmbeddings, config.hiddenSize);
  }
  checkLayerCount(file, weights, distil ? /^(?:distilbert\.)?transformer\.layer\.(\d+)\./ : /^(?:(?:bert|roberta)\.)?encoder\.layer\.(\d+)\./,
    distil ? 'n_layers' : 'num_hidden_layers', config.numHiddenLayers);
  checkWeightShapes(file, weights, encoderShapeRules(config));
  try {
    return encoderFromWeights(task, config, weights);
  } catch (err) {
    throw new Error(`${dir}: the weights do not fit ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Encoders from Hugging Face folders (`model_type` bert, roberta,
 * xlm-roberta, distilbert): the bare model of any checkpoint of the family
 * (its keys with or without the `bert.`/`roberta.`/`distilbert.` prefix; a
 * head checkpoint's head is left out). Errors name the file and field.
 */
export const AutoModel = {
  fromPretrained(dir: string): Promise<EncoderModel> {
    return loadEncoder('AutoModel.fromPretrained', 'base', dir) as Promise<EncoderModel>;
  },
};

/** BERT-family sequence classifiers (`...ForSequenceClassification` checkpoints; labels from `id2label`). */
export const AutoModelForSequenceClassification = {
  fromPretrained(dir: string): Promise<EncoderHeadModel> {
    return loadEncoder('AutoModelForSequenceClassification.fromPretrained', 'sequence-classification', dir) as Promise<EncoderHeadModel>;
  },
};

/** BERT-family masked language models (`...ForMaskedLM` checkpoints; the decoder tied to the word embeddings). */
export const AutoModelForMaskedLM = {
  fromPretrained(dir: string): Promise<EncoderHeadModel> {
    return loadEncoder('AutoModelForMaskedLM.fromPretrained', 'masked-lm', dir) as Promise<EncoderHeadModel>;
  },
};

const SEQ2SEQ_TYPES = ['marian'] as const;

/** Encoder-decoder (sequence-to-sequence) language models from Hugging Face folders. */
export const AutoModelForSeq2SeqLM = {
  /**
   * Loads the folder's model (`model_type` marian: the Helsinki-NLP/opus-mt-*
   * translation models) with its weights. Throws an Error naming the file
   * and field when the folder does not fit (a missing or unknown
   * `model_type`, config fields the weights contradict, missing or
   * unexpected weights).
   */
  async fromPretrained(dir: string): Promise<MarianMTModel> {
    const { file, json } = await folderConfig('AutoModelForSeq2SeqLM.fromPretrained', dir);
    const type = json['model_type'];
    if (typeof type !== 'string' || !(SEQ2SEQ_TYPES as readonly string[]).includes(type)) {
      throw new Error(`${file}: field 'model_type' ${JSON.stringify(type)} is not a supported sequence-to-sequence model (supported: ${SEQ2SEQ_TYPES.join(', ')})`);
    }
    // generate starts the decoder with the generation config's decoder_start_token_id, else config.json's.
    const generation = await loadGenerationConfig(dir);
    const start = generation.decoderStartTokenId;
    const config = marianConfigFromJson(start === undefined || start === null ? json : { ...json, decoder_start_token_id: start }, file);
    const weights = marianStateDict(await loadFolderWeights(dir), config, file);
    const model = new MarianMTModel(config);
    try {
      model.loadStateDict(weights);
    } catch (err) {
      throw new Error(`${dir}: the weights do not fit ${file}: ${(err as Error).message}`, { cause: err });
    }
    model.generationConfig = generationDefaultsFrom(generation, {
      eosTokenId: config.eosTokenId, padTokenId: config.padTokenId, maxPositions: config.maxPositionEmbeddings, prefixLength: 1,
    });
    return model.eval();
  },
};
