/**
 * The model config of `attnode run` / `attnode serve` (`--config c.json`): which
 * model to build and its constructor options. Weights come from `--model
 * m.safetensors` (a state dict with PyTorch's key names, loaded strictly), or
 * are random with `--seed` when no file is given.
 *
 * Format (JSON):
 *
 * ```json
 * { "kind": "encoder",
 *   "options": { "vocabSize": 1000, "dModel": 128, "nhead": 4, "numLayers": 2,
 *                "dimFeedforward": 512, "maxLen": 256, "activation": "gelu",
 *                "normFirst": false, "finalNorm": false, "scaleEmbedding": true } }
 * ```
 *
 * - `"encoder"`: {@link EncoderModel} (embedding → positional encoding →
 *   TransformerEncoder); required options `vocabSize`, `dModel`, `nhead`,
 *   `numLayers`; state dict `embedding.weight`, `pos_encoder.pe`, `encoder.layers.<i>.*` (+ `encoder.norm.*`).
 * - `"seed"`: the article's seed model ({@link TransformerModel}: embedding →
 *   nn.Transformer → linear), options `vocabSize`, `dModel`, `nhead`,
 *   `numLayers`, `numDecoderLayers` (default 6), `dimFeedforward` (default
 *   2048), `maxLen` (longest input accepted, default 512). Encoding serves its
 *   encoder half (`embedding` → `transformer.encoder`: the memory).
 */
import { readFile } from 'node:fs/promises';
import * as nn from '../nn';
import * as ops from '../ops';
import { Tensor } from '../tensor';
import { loadSafetensors } from '../io/safetensors';
import { closestMatch } from './args';
import { EncoderModel, type EncoderModelOptions } from '../serving/encoder-model';
import type { BatchEncoder } from '../serving/batcher';
import type { GenerateFn } from '../serving/http';
import { TransformerModel } from './seed-model';

/** Options of a `"seed"` config. */
export interface SeedModelConfigOptions {
  vocabSize: number;
  dModel: number;
  nhead: number;
  numLayers: number;
  numDecoderLayers?: number;
  dimFeedforward?: number;
  maxLen?: number;
  /** Start token of `POST /v1/generate` (default 0). */
  bosId?: number;
  /** End-of-sequence token of generation (default none: always maxNewTokens). */
  eosId?: number;
}

/** A parsed config file. */
export type ModelConfig =
  | { kind: 'encoder'; options: EncoderModelOptions }
  | { kind: 'seed'; options: SeedModelConfigOptions };

/** What the server and `attnode run` need from a model: a batchable encoder plus its sizes. */
export interface ServedModel {
  config: ModelConfig;
  /** The batchable encoder: ids [N, S] + key padding mask → [N, S, dModel]. */
  encoder: BatchEncoder & { readonly vocabSize: number; readonly maxSeqLen: number; readonly outputDim: number };
  /** The whole module (for stateDict / numParameters). */
  module: nn.Module;
  /** `'file'` when loaded from safetensors, else `'random'`. */
  weights: 'file' | 'random';
  /** Greedy generation with a KV cache (seed models: TransformerModel.generateAsync, lib/generate.ts). */
  generate?: GenerateFn;
}


/** The config used when none is given: a small encoder that runs fast on a laptop. */
export const DEFAULT_CONFIG: ModelConfig = {
  kind: 'encoder',
  options: { vocabSize: 1000, dModel: 128, nhead: 4, numLayers: 2, dimFeedforward: 512, maxLen: 256 },
};

/** What a config field must hold: an integer with a minimum, a boolean, or one of some strings. */
type FieldRule = { int: number; required?: boolean } | { bool: true } | { oneOf: readonly string[] };

const SIZE = { int: 1, required: true } as const;
/** The fields of each kind's options and what each must hold (README: "The model config of serve and run"). */
export const CONFIG_FIELDS: Record<ModelConfig['kind'], Record<string, FieldRule>> = {
  encoder: {
    vocabSize: SIZE, dModel: SIZE, nhead: SIZE, numLayers: SIZE, dimFeedforward: { int: 1 }, maxLen: { int: 1 },
    activation: { oneOf: ['relu', 'gelu'] }, normFirst: { bool: true }, finalNorm: { bool: true }, scaleEmbedding: { bool: true },
  },
  seed: {
    vocabSize: SIZE, dModel: SIZE, nhead: SIZE, numLayers: SIZE, numDecoderLayers: { int: 1 }, dimFeedforward: { int: 1 },
    maxLen: { int: 1 }, bosId: { int: 0 }, eosId: { int: 0 },
  },
};

/** ` (did you mean 'x'?)` for a near name, else ''. */
function hint(word: string, names: readonly string[]): string {
  const near = closestMatch(word, names);
  return near ? ` (did you mean '${near}'?)` : '';
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  return JSON.stringify(value) ?? String(value);
}

/** What is wrong with one field, or null. */
function fieldProblem(rule: FieldRule, value: unknown): string | null {
  if ('int' in rule) {
    return typeof value === 'number' && Number.isInteger(value) && value >= rule.int ? null : `an integer >= ${rule.int}`;
  }
  if ('bool' in rule) return typeof value === 'boolean' ? null : 'true or false';
  return rule.oneOf.includes(value as string) ? null : rule.oneOf.map((v) => JSON.stringify(v)).join(' or ');
}

/**
 * Validates a config object (as parsed from JSON). Every bad field is named with what it must hold and what it
 * holds, one line each, in one error.
 * @throws TypeError (a field of the wrong type, an unknown or missing field) or RangeError (only values out of range)
 */
export function parseConfig(value: unknown, source = 'config'): ModelConfig {
  const kinds = Object.keys(CONFIG_FIELDS) as ModelConfig['kind'][];
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError(`${source}: expected a JSON object { "kind": ${kinds.map((k) => `"${k}"`).join(' | ')}, "options": { ... } }, got ${describe(value)}`);
  }
  const v = value as Record<string, unknown>;
  const problems: string[] = [];
  let typeProblem = false;
  for (const key of Object.keys(v)) {
    if (key !== 'kind' && key !== 'options') {
      problems.push(`field "${key}": unknown${hint(key, ['kind', 'options'])}; a config has "kind" and "options"`);
      typeProblem = true;
    }
  }
  const kind = v.kind as ModelConfig['kind'];
  if (!kinds.includes(kind)) {
    problems.push(`field "kind": expected ${kinds.map((k) => `"${k}"`).join(' or ')}, got ${describe(v.kind)}`);
    typeProblem = true;
  }
  const options = v.options;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    problems.push(`field "options": expected an object of model options, got ${describe(options)}`);
    typeProblem = true;
  } else if (kinds.includes(kind)) {
    const rules = CONFIG_FIELDS[kind];
    const o = options as Record<string, unknown>;
    for (const key of Object.keys(o)) {
      if (!(key in rules)) {
        problems.push(`field "options.${key}": not a${kind === 'encoder' ? 'n' : ''} ${kind} option${hint(key, Object.keys(rules))}`);
        typeProblem = true;
      }
    }
    for (const [key, rule] of Object.entries(rules)) {
      if (o[key] === undefined && !('required' in rule && rule.required)) continue;
      const expected = fieldProblem(rule, o[key]);
      if (expected) {
        problems.push(`field "options.${key}": expected ${expected}, got ${describe(o[key])}`);
        if (typeof o[key] !== 'number' || !('int' in rule)) typeProblem = true;
      }
    }
    if (!problems.length) {
      const n = o as { dModel: number; nhead: number; vocabSize: number; bosId?: number; eosId?: number };
      if (n.dModel % n.nhead !== 0) problems.push(`field "options.dModel": expected a multiple of nhead (${n.nhead}), got ${n.dModel}`);
      for (const id of ['bosId', 'eosId'] as const) {
        if (n[id] !== undefined && n[id]! >= n.vocabSize) problems.push(`field "options.${id}": expected a token id below vocabSize (${n.vocabSize}), got ${n[id]}`);
      }
    }
  }
  if (problems.length) {
    const Err = typeProblem ? TypeError : RangeError;
    throw new Err(problems.length === 1 ? `${source}: ${problems[0]}` : `${source}: ${problems.length} bad fields\n  ${problems.join('\n  ')}`);
  }
  return { kind, options } as ModelConfig;
}

/** Reads and validates a config file. */
export async function readConfig(path: string): Promise<ModelConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read config ${path}: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  return parseConfig(json, path);
}

/**
 * The seed model's encoder half as a batch-first {@link BatchEncoder}: the
 * seed model is sequence-first, so ids are transposed in JS before the
 * forward pass and the memory [S, N, E] is permuted to [N, S, E] by a native
 * kernel (splitHeads on [1, S, N·E] with N "heads"), so the whole pass stays
 * recordable by runAsync.
 */
class SeedEncoder implements BatchEncoder {
  readonly inputKind = 'ids' as const;
  constructor(readonly model: TransformerModel, readonly maxSeqLen: number) {}

  get vocabSize(): number {
    return this.model.embedding.numEmbeddings;
  }

  get outputDim(): number {
    return this.model.transformer.dModel;
  }

  forward(input: Tensor<'int32'> | Tensor<'float32'>, keyPaddingMask: Tensor<'bool'> | null): Tensor<'float32'> {
    const [n, s] = input.shape as [number, number];
    const ids = input.data as Int32Array;
    const t = new Int32Array(n * s);
    for (let i = 0; i < n; i++) for (let j = 0; j < s; j++) t[j * n + i] = ids[i * s + j]!;
    const m = this.model;
    const memory = m.transformer.encoder.forward(m.embedding.forward(new Tensor(t, [s, n], 'int32')), {
      srcKeyPaddingMask: keyPaddingMask,
    });
    const e = this.outputDim;
    return ops.splitHeads(memory.reshape([1, s, n * e]), n, { backend: m.backend }).reshape([n, s, e]);
  }
}

/** Options of {@link loadServedModel}. */
export interface LoadModelOptions {
  /** Config file; default {@link DEFAULT_CONFIG}. */
  configPath?: string;
  /** Already-parsed config (wins over configPath). */
  config?: ModelConfig;
  /** safetensors state dict; random weights (seeded) when absent. */
  modelPath?: string;
  /** Seed of the random weights (default 0). */
  seed?: number;
}

/** Builds the model a config describes and loads its weights. */
export async function loadServedModel(options: LoadModelOptions = {}): Promise<ServedModel> {
  const config = options.config ?? (options.configPath ? await readConfig(options.configPath) : DEFAULT_CONFIG);
  nn.manualSeed(options.seed ?? 0);
  let module: nn.Module;
  let encoder: ServedModel['encoder'];
  let generate: GenerateFn | undefined;
  if (config.kind === 'encoder') {
    const m = new EncoderModel(config.options);
    module = m;
    encoder = m;
  } else {
    const o = config.options;
    const m = new TransformerModel(o.vocabSize, o.dModel, o.nhead, o.numLayers, o.numDecoderLayers ?? 6, o.dimFeedforward ?? 2048);
    module = m;
    encoder = new SeedEncoder(m, o.maxLen ?? 512);
    generate = async (tokens, { maxNewTokens }) => {
      const src = new Tensor(Int32Array.from(tokens), [tokens.length], 'int32'); // unbatched [S]
      const out = await m.generateAsync(src, { maxNewTokens, bosId: o.bosId ?? 0, eosId: o.eosId ?? null });
      return Array.from(out.data);
    };
  }
  if (options.modelPath) {
    const { tensors } = await loadSafetensors(options.modelPath);
    try {
      module.loadStateDict(tensors);
    } catch (e) {
      // Name the file and the config beside loadStateDict's account of what differs.
      const source = options.configPath ?? (options.config ? 'the given config' : 'the default config');
      const Err = e instanceof RangeError ? RangeError : e instanceof TypeError ? TypeError : Error;
      throw new Err(`${options.modelPath}: the weights do not fit the "${config.kind}" model of ${source}: ${(e as Error).message}`, { cause: e });
    }
  }
  // Served for inference: dropout off.
  module.eval();
  return { config, encoder, module, weights: options.modelPath ? 'file' : 'random', ...(generate ? { generate } : {}) };
}
