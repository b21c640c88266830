/**
 * What `attnode serve --model <folder | model.bin>` serves: a Hugging Face
 * model folder or a llama2.c checkpoint, loaded with its tokenizer, and the
 * task its config implies. Encoder families (`bert`, `roberta`,
 * `xlm-roberta`, `distilbert`) serve embeddings (pooling and normalization
 * from the folder's sentence-transformers config, else mean pooling, not
 * normalized); causal LMs (`llama`, `mistral`, `qwen2`, `gpt2`, llama2.c)
 * serve completions and chat (the chat template from the folder).
 */
import { readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { AutoModel, AutoModelForCausalLM } from '../models/auto';
import type { CausalModel } from '../models/generation';
import type { EncoderModel } from '../models/bert';
import type { Module } from '../nn/module';
import { Tensor } from '../tensor';
import { createTokenizer, readTokenizerFolder, type PreTrainedTokenizer } from '../tokenizers';
import { loadLlama2c } from '../io/llama2c';
import { folderEos } from '../pipelines/text-generation';
import { sentenceTransformersDefaults, type SentencePooling } from '../pipelines/feature-extraction';
import { maxTokens } from '../pipelines/encoder';
import { ChatTemplate } from './chat-template';
import type { BatchEncoder } from './batcher';

/** A Batcher model over token ids with its sizes (what `/v1/encode` and `/v1/embeddings` run). */
export type ServedEncoder = BatchEncoder & { readonly vocabSize: number; readonly maxSeqLen: number; readonly outputDim: number };

/** Text ↔ token ids, as the OpenAI routes need them of any tokenizer. */
export interface TextCodec {
  /** Token ids of `text`, with the tokenizer's special tokens (BOS, [CLS] ...) when `addSpecialTokens`. */
  encode(text: string, addSpecialTokens: boolean): number[];
  /** The text of `ids`, special tokens left out. */
  decode(ids: readonly number[]): string;
  /** The text of one token, special tokens included (logprobs' `token`). */
  tokenString(id: number): string;
}

/** The parts every served model has. */
interface ServedBase {
  /** The name clients send as `model` (`--served-model-name`, default the folder or file name). */
  id: string;
  /** The folder or file it was loaded from. */
  source: string;
  /** `model_type` of the folder, or `llama2c`. */
  family: string;
  /** The module, for --precision and parameter counts. */
  module: Module;
  tokenizer: TextCodec;
  vocabSize: number;
}

/** An encoder serving embeddings. */
export interface ServedEmbeddingModel extends ServedBase {
  task: 'embeddings';
  /** The batched encoder (token ids → last hidden states) behind `/v1/embeddings` and `/v1/encode`. */
  encoder: ServedEncoder;
  pooling: SentencePooling;
  normalize: boolean;
  /** Longest input in tokens (special tokens included). */
  maxTokens: number;
  dim: number;
}

/** A causal LM serving completions and chat. */
export interface ServedGenerationModel extends ServedBase {
  task: 'generation';
  model: CausalModel & Module;
  /** null: the folder has no chat template (chat completions answer 400). */
  chatTemplate: ChatTemplate | null;
  eosTokenIds: number[];
  /** Prompt + new tokens at most (the model's positions). */
  contextLength: number;
}

export type ServedTextModel = ServedEmbeddingModel | ServedGenerationModel;

const utf8 = new TextDecoder('utf-8');
const ENCODER_TYPES = ['bert', 'roberta', 'xlm-roberta', 'distilbert'];
const CAUSAL_TYPES = ['llama', 'mistral', 'qwen2', 'gpt2'];

/** A BERT-family encoder as a Batcher model: padded ids + key padding mask → last hidden states [N, S, E]. */
export class HfEncoderAdapter implements ServedEncoder {
  readonly inputKind = 'ids' as const;
  readonly vocabSize: number;
  readonly maxSeqLen: number;
  readonly outputDim: number;
  readonly padId: number;

  constructor(readonly model: EncoderModel, maxSeqLen: number) {
    this.vocabSize = model.config.vocabSize;
    this.maxSeqLen = maxSeqLen;
    this.outputDim = model.config.hiddenSize;
    // RoBERTa counts positions over the non-padding ids: padding must be its padding id.
    this.padId = model.config.padTokenId;
  }

  forward(input: Tensor<'int32'> | Tensor<'float32'>, keyPaddingMask: Tensor<'bool'> | null): Tensor<'float32'> {
    let attentionMask: Tensor<'int32'> | null = null;
    if (keyPaddingMask) {
      const m = keyPaddingMask.data;
      const a = new Int32Array(m.length);
      for (let i = 0; i < m.length; i++) a[i] = m[i] ? 0 : 1;
      attentionMask = new Tensor(a, keyPaddingMask.shape.slice(), 'int32');
    }
    return this.model.forward(input as Tensor<'int32'>, { attentionMask }).lastHiddenState;
  }
}

function hfCodec(tok: PreTrainedTokenizer): TextCodec {
  return {
    encode: (text, addSpecialTokens) => tok.encode(text, { addSpecialTokens }),
    decode: (ids) => tok.decode(ids, { skipSpecialTokens: true }),
    tokenString: (id) => tok.decode([id]),
  };
}

async function readConfig(dir: string): Promise<Record<string, unknown>> {
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot be read (${(e as Error).message}); a Hugging Face model folder has a config.json`, { cause: e });
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${file}: is not valid JSON (${(e as Error).message})`, { cause: e });
  }
}

/** Options of {@link loadTextModel}. */
export interface LoadTextModelOptions {
  /** llama2.c's `tokenizer.bin` (required for a `.bin` checkpoint). */
  tokenizer?: string;
  /** The model name clients use (default the folder or file name). */
  id?: string;
}

/**
 * Loads a model folder or a llama2.c checkpoint for serving.
 * @throws Error naming the file and field when the folder does not fit (no tokenizer, an unsupported
 *   `model_type`, bad weights), TypeError for bad arguments
 */
export async function loadTextModel(modelPath: string, options: LoadTextModelOptions = {}): Promise<ServedTextModel> {
  if (typeof modelPath !== 'string' || modelPath === '') throw new TypeError(`loadTextModel: argument 'modelPath' must be a path, got ${JSON.stringify(modelPath)}`);
  const id = options.id ?? path.basename(path.resolve(modelPath));
  const isDir = (await stat(modelPath)).isDirectory();
  if (!isDir) {
    if (!options.tokenizer) throw new TypeError(`${modelPath}: a llama2.c checkpoint needs its tokenizer.bin (--tokenizer)`);
    const { model, tokenizer, config } = await loadLlama2c(modelPath, { tokenizer: options.tokenizer });
    const tok = tokenizer!;
    return {
      task: 'generation', id, source: modelPath, family: 'llama2c', module: model, model,
      tokenizer: {
        encode: (text, add) => tok.encode(text, { bos: add }),
        decode: (ids) => tok.decode(ids),
        tokenString: (tid) => utf8.decode(tok.pieceBytes(-1, tid)),
      },
      vocabSize: config.vocabSize, chatTemplate: null, eosTokenIds: [tok.eosId], contextLength: model.config.maxPositionEmbeddings,
    };
  }
  if (options.tokenizer) throw new TypeError(`--tokenizer is for llama2.c checkpoints; the folder ${modelPath} has its own tokenizer files`);
  const config = await readConfig(modelPath);
  const type = config['model_type'];
  const files = readTokenizerFolder(modelPath);
  if (!files) throw new Error(`${modelPath}: no tokenizer files (tokenizer.json, vocab.txt or vocab.json + merges.txt); serving text needs one`);
  const tok = createTokenizer(files);
  if (typeof type === 'string' && ENCODER_TYPES.includes(type)) {
    const model = await AutoModel.fromPretrained(modelPath);
    const st = (await sentenceTransformersDefaults(modelPath, model.config.hiddenSize)) ?? { pooling: 'mean' as const, normalize: false };
    if (st.doLowerCase) throw new Error(`${modelPath}: sentence_bert_config.json field 'do_lower_case' true is not supported when serving (the pipeline honours it)`);
    const limit = Math.min(maxTokens(model.config, tok), st.maxSeqLength ?? Infinity);
    return {
      task: 'embeddings', id, source: modelPath, family: type, module: model, tokenizer: hfCodec(tok),
      vocabSize: model.config.vocabSize, encoder: new HfEncoderAdapter(model, limit), pooling: st.pooling,
      normalize: st.normalize, maxTokens: limit, dim: model.config.hiddenSize,
    };
  }
  if (typeof type === 'string' && CAUSAL_TYPES.includes(type)) {
    const model = await AutoModelForCausalLM.fromPretrained(modelPath);
    const folder = await folderEos(modelPath);
    const eos = new Set<number>(folder === undefined || folder === null ? [] : typeof folder === 'number' ? [folder] : folder);
    if (tok.eosTokenId !== undefined) eos.add(tok.eosTokenId);
    return {
      task: 'generation', id, source: modelPath, family: type, module: model, model, tokenizer: hfCodec(tok),
      vocabSize: model.config.vocabSize, chatTemplate: ChatTemplate.fromFolder(modelPath, files.config),
      eosTokenIds: [...eos], contextLength: model.config.maxPositionEmbeddings,
    };
  }
  throw new Error(`${path.join(modelPath, 'config.json')}: field 'model_type' ${JSON.stringify(type)} cannot be served (encoders: ${ENCODER_TYPES.join(', ')}; causal LMs: ${CAUSAL_TYPES.join(', ')})`);
}
