/**
 * MarianMT (Hugging Face's `MarianMTModel`, the Helsinki-NLP/opus-mt-*
 * translation models): an encoder-decoder Transformer with sinusoidal
 * positions, post-norm layers, token embeddings shared by encoder and decoder
 * (unless `shareEncoderDecoderEmbeddings` is false), an LM head tied to the
 * decoder's embeddings (unless `tieWordEmbeddings` is false) and the
 * `final_logits_bias` buffer.
 *
 * Property names are Hugging Face's keys in camelCase, so a checkpoint's
 * state dict (`model.encoder.layers.0.self_attn.q_proj.weight`, …) loads as
 * is. Everything runs on attnode's ops: the encoder layer is the BERT-family
 * post-norm layer (`encoderLayer` of bert.ts), the decoder writes its
 * self-attention keys and values straight into a {@link KVCache}, and each
 * decoder layer's cross-attention keys and values are projected from the
 * encoder output once per source batch ({@link MarianMTModel.createCache})
 * and reused at every step.
 */
import { Module } from '../nn/module';
import { ModuleList } from '../nn/container';
import { Embedding } from '../nn/sparse';
import { LayerNorm, Linear } from '../nn/linear';
import { DecoderCache, KVCache, type DecoderLayerCache, type MemoryKV } from '../nn/kv-cache';
import * as ops from '../ops';
import { Tensor, empty } from '../tensor';
import { checkInt, formatShape } from '../errors';
import { encoderLayer, feedForward, keyMask, PackedQkv, type FeedForwardActivation } from './bert';
import { stepPositionsAndMask } from './step-masks';
import {
  generate, generateAsync, type DecoderSession, type DecodingModel, type GenerationDefaults, type GenerationOptions,
  type StartDecodingOptions,
} from './generation';
import { generationDefaultsFrom } from './generation-config';
import { causalMaskFrom } from '../ops/multi-head-attention';
import { checkWeightShapes, dimOf } from './config-check';

type F32 = Tensor<'float32'>;
type I32 = Tensor<'int32'>;
type BoolMask = Tensor<'bool'>;

/** The feed-forward activations Marian checkpoints use ('silu' is transformers' 'swish'). */
export type MarianActivation = FeedForwardActivation;

/** A MarianMT configuration (Hugging Face's `MarianConfig` fields in camelCase). */
export interface MarianConfig {
  /** Source (and, when shared, target) vocabulary size. */
  vocabSize: number;
  /** Target vocabulary size when the embeddings are not shared (default vocabSize). */
  decoderVocabSize?: number;
  dModel: number;
  encoderLayers: number;
  decoderLayers: number;
  encoderAttentionHeads: number;
  decoderAttentionHeads: number;
  encoderFfnDim: number;
  decoderFfnDim: number;
  /** Rows of the sinusoidal position tables (default 1024). */
  maxPositionEmbeddings?: number;
  /** Default 'gelu' (transformers' default; the opus-mt checkpoints use 'swish', i.e. 'silu'). */
  activationFunction?: MarianActivation;
  /** Multiply token embeddings by sqrt(dModel) (default false; true in every opus-mt checkpoint). */
  scaleEmbedding?: boolean;
  /** One embedding table `model.shared` for encoder and decoder (default true). */
  shareEncoderDecoderEmbeddings?: boolean;
  /** The LM head is the decoder's embedding table (default true). */
  tieWordEmbeddings?: boolean;
  /** Default vocabSize - 1 (Marian's convention: the last id). */
  padTokenId?: number;
  /** Default 0. */
  eosTokenId?: number;
  /** The first decoder input (default padTokenId, as Marian does). */
  decoderStartTokenId?: number;
}

/** A config with every default filled in. */
export type ResolvedMarianConfig = Required<MarianConfig>;

/** Fills in defaults and checks the sizes fit together. */
export function resolveMarianConfig(c: MarianConfig): ResolvedMarianConfig {
  const fn = 'MarianConfig';
  if (c === null || typeof c !== 'object') throw new TypeError(`${fn}: argument 'config' must be an object, got ${c === null ? 'null' : typeof c}`);
  const vocabSize = checkInt(fn, 'vocabSize', c.vocabSize, 1);
  const share = c.shareEncoderDecoderEmbeddings ?? true;
  const pad = checkInt(fn, 'padTokenId', c.padTokenId ?? vocabSize - 1, 0);
  const act = c.activationFunction ?? 'gelu';
  if (!['silu', 'gelu', 'gelu_tanh', 'relu'].includes(act)) {
    throw new TypeError(`${fn}: field 'activationFunction' must be 'silu', 'gelu', 'gelu_tanh' or 'relu', got ${JSON.stringify(act)}`);
  }
  const r: ResolvedMarianConfig = {
    vocabSize,
    // Shared embeddings: the decoder reads the same table, so the target vocabulary is the source one.
    decoderVocabSize: share ? vocabSize : checkInt(fn, 'decoderVocabSize', c.decoderVocabSize ?? vocabSize, 1),
    dModel: checkInt(fn, 'dModel', c.dModel, 1),
    encoderLayers: checkInt(fn, 'encoderLayers', c.encoderLayers, 0),
    decoderLayers: checkInt(fn, 'decoderLayers', c.decoderLayers, 0),
    encoderAttentionHeads: checkInt(fn, 'encoderAttentionHeads', c.encoderAttentionHeads, 1),
    decoderAttentionHeads: checkInt(fn, 'decoderAttentionHeads', c.decoderAttentionHeads, 1),
    encoderFfnDim: checkInt(fn, 'encoderFfnDim', c.encoderFfnDim, 1),
    decoderFfnDim: checkInt(fn, 'decoderFfnDim', c.decoderFfnDim, 1),
    maxPositionEmbeddings: checkInt(fn, 'maxPositionEmbeddings', c.maxPositionEmbeddings ?? 1024, 1),
    activationFunction: act,
    scaleEmbedding: c.scaleEmbedding ?? false,
    shareEncoderDecoderEmbeddings: share,
    tieWordEmbeddings: c.tieWordEmbeddings ?? true,
    padTokenId: pad,
    eosTokenId: checkInt(fn, 'eosTokenId', c.eosTokenId ?? 0, 0),
    decoderStartTokenId: checkInt(fn, 'decoderStartTokenId', c.decoderStartTokenId ?? pad, 0),
  };
  for (const [heads, name] of [[r.encoderAttentionHeads, 'encoderAttentionHeads'], [r.decoderAttentionHeads, 'decoderAttentionHeads']] as const) {
    if (r.dModel % heads !== 0) throw new RangeError(`${fn}: dModel (${r.dModel}) must be divisible by ${name} (${heads})`);
  }
  for (const key of ['scaleEmbedding', 'shareEncoderDecoderEmbeddings', 'tieWordEmbeddings'] as const) {
    if (typeof r[key] !== 'boolean') throw new TypeError(`${fn}: field '${key}' must be a boolean, got ${typeof r[key]}`);
  }
  const target = r.decoderVocabSize;
  for (const key of ['padTokenId', 'eosTokenId', 'decoderStartTokenId'] as const) {
    if (r[key] >= target) throw new RangeError(`${fn}: field '${key}' (${r[key]}) must be below the target vocabulary size ${target}`);
  }
  return r;
}

/**
 * Marian's sinusoidal position table [numPositions, dim]: position p, column
 * i < ⌈dim/2⌉ holds sin(p / 10000^(2i/dim)), column ⌈dim/2⌉ + i holds
 * cos(p / 10000^(2i/dim)) (not interleaved; no padding offset), computed in
 * float64 and rounded once, as transformers' `_init_weight` does.
 */
export function marianSinusoidalTable(numPositions: number, dim: number): F32 {
  checkInt('marianSinusoidalTable', 'numPositions', numPositions, 0);
  checkInt('marianSinusoidalTable', 'dim', dim, 1);
  const out = new Float32Array(numPositions * dim);
  const sentinel = Math.ceil(dim / 2);
  const inv = Array.from({ length: sentinel }, (_, i) => Math.pow(10000, (2 * i) / dim));
  for (let p = 0; p < numPositions; p++) {
    const row = p * dim;
    for (let i = 0; i < sentinel; i++) out[row + i] = Math.sin(p / inv[i]!);
    for (let i = 0; sentinel + i < dim; i++) out[row + sentinel + i] = Math.cos(p / inv[i]!);
  }
  return new Tensor(out, [numPositions, dim], 'float32');
}

/** The position table as a module (key `embed_positions.weight`); rows are looked up by position. */
export class MarianSinusoidalPositionalEmbedding extends Module {
  weight: F32;
  constructor(table: F32) {
    super();
    this.weight = table;
  }

  /** The rows of positions `past` … `past + length − 1`, a [length, dim] view. */
  rows(fn: string, past: number, length: number): F32 {
    const n = this.weight.shape[0]!;
    if (past + length > n) throw new RangeError(`${fn}: position ${past + length - 1} exceeds the model's ${n} positions (maxPositionEmbeddings)`);
    return this.weight.narrow(0, past, length);
  }
}

/** q/k/v/out projections (all with bias) of Marian's encoder self-attention, decoder self- and cross-attention. */
export class MarianAttention extends Module {
  kProj: Linear;
  vProj: Linear;
  qProj: Linear;
  outProj: Linear;
  readonly numHeads: number;

  constructor(embedDim: number, numHeads: number) {
    super();
    this.kProj = new Linear({ inFeatures: embedDim, outFeatures: embedDim });
    this.vProj = new Linear({ inFeatures: embedDim, outFeatures: embedDim });
    this.qProj = new Linear({ inFeatures: embedDim, outFeatures: embedDim });
    this.outProj = new Linear({ inFeatures: embedDim, outFeatures: embedDim });
    this.numHeads = numHeads;
  }

  /**
   * Decoder self-attention: x [N, t, E]; the step's keys and values are
   * written into `cache`, and each query attends to the cached positions
   * allowed by `mask` (float32 [N, 1, t, S], added) or, without one, causally.
   */
  forwardCached(x: F32, cache: KVCache, mask: F32 | null): F32 {
    return this.inContext(() => {
      const [n, t, e] = x.shape as [number, number, number];
      const h = this.numHeads;
      const hd = e / h;
      const pos = cache.length;
      cache.reserve(this.backend, pos + t);
      const slot = cache.slot(pos, t).transpose(0, 1); // [N, t, 2E]: keys, then values
      const lin = { cacheWeight: true } as const;
      ops.linear(x, this.kProj.weight, this.kProj.bias, { ...lin, out: slot.narrow(-1, 0, e) });
      ops.linear(x, this.vProj.weight, this.vProj.bias, { ...lin, out: slot.narrow(-1, e, e) });
      cache.advance(t);
      const q = ops.linear(x, this.qProj.weight, this.qProj.bias, lin);
      const { k, v } = cache.keysValues(); // [S, N, E] views
      const s = k.shape[0]!;
      const heads = (m: F32): F32 => m.view(s, n, h, hd).permute(1, 2, 0, 3);
      const attn = empty([n, t, e]);
      ops.scaledDotProductAttention(q.view(n, t, h, hd).permute(0, 2, 1, 3), heads(k), heads(v), {
        out: attn.view(n, t, h, hd).permute(0, 2, 1, 3),
        ...(mask ? { attnMask: mask } : t > 1 && pos > 0 ? { attnMask: causalMaskFrom(pos, t) } : { isCausal: t > 1 }),
      });
      return this.outProj.forward(attn);
    }, false);
  }

  /** The keys and values of a fixed memory [N, S, E] (the encoder output), projected once for every later step. */
  projectMemory(memory: F32): MemoryKV {
    return this.inContext(() => {
      const [n, s, e] = memory.shape as [number, number, number];
      const kv = empty([n, s, 2 * e]);
      const lin = { cacheWeight: true } as const;
      ops.linear(memory, this.kProj.weight, this.kProj.bias, { ...lin, out: kv.narrow(-1, 0, e) });
      ops.linear(memory, this.vProj.weight, this.vProj.bias, { ...lin, out: kv.narrow(-1, e, e) });
      const seqFirst = kv.transpose(0, 1);
      return { batch: n, length: s, embedDim: e, k: seqFirst.narrow(-1, 0, e), v: seqFirst.narrow(-1, e, e) };
    }, false);
  }

  /**
   * Cross-attention: queries from x [N · expand, t, E] over `memory`'s keys
   * and values ([S, N, E]; rows `b · expand` … `b · expand + expand − 1` of x
   * all read memory row b, as the beams of one source do); `mask` [N, 1, 1, S]
   * true = token. The copies of a row are one attention call's queries
   * ([N, expand · t] per head), so the memory is never copied per beam.
   */
  forwardCross(x: F32, memory: MemoryKV, mask: BoolMask | null, expand = 1): F32 {
    return this.inContext(() => {
      const [rows, t, e] = x.shape as [number, number, number];
      const n = memory.batch;
      const h = this.numHeads;
      const hd = e / h;
      const s = memory.length;
      const q = ops.linear(x, this.qProj.weight, this.qProj.bias, { cacheWeight: true });
      const heads = (m: F32): F32 => m.view(s, n, h, hd).permute(1, 2, 0, 3);
      const attn = empty([rows, t, e]);
      const byMemoryRow = (m: F32): F32 => m.view(n, expand * t, h, hd).permute(0, 2, 1, 3);
      ops.scaledDotProductAttention(byMemoryRow(q), heads(memory.k), heads(memory.v), {
        out: byMemoryRow(attn),
        ...(mask ? { attnMask: mask } : {}),
      });
      return this.outProj.forward(attn);
    }, false);
  }
}

/** One post-norm encoder layer. Keys `model.encoder.layers.N.*`. */
export class MarianEncoderLayer extends Module {
  selfAttn: MarianAttention;
  selfAttnLayerNorm: LayerNorm;
  fc1: Linear;
  fc2: Linear;
  finalLayerNorm: LayerNorm;
  readonly #act: MarianActivation;
  readonly #packed = new PackedQkv();

  constructor(c: ResolvedMarianConfig) {
    super();
    const e = c.dModel;
    this.selfAttn = new MarianAttention(e, c.encoderAttentionHeads);
    this.selfAttnLayerNorm = new LayerNorm({ normalizedShape: e });
    this.fc1 = new Linear({ inFeatures: e, outFeatures: c.encoderFfnDim });
    this.fc2 = new Linear({ inFeatures: c.encoderFfnDim, outFeatures: e });
    this.finalLayerNorm = new LayerNorm({ normalizedShape: e });
    this.#act = c.activationFunction;
  }

  /** x [N, S, E]; `mask` [N, 1, 1, S] true = token, or null. */
  forward(x: F32, mask: BoolMask | null): F32 {
    return this.inContext(() => {
      const a = this.selfAttn;
      return encoderLayer({
        q: a.qProj, k: a.kProj, v: a.vProj, o: a.outProj, ln1: this.selfAttnLayerNorm,
        inter: this.fc1, out: this.fc2, ln2: this.finalLayerNorm,
      }, this.#packed, x, mask, a.numHeads, this.#act);
    });
  }
}

/** One post-norm decoder layer: self-attention, cross-attention, feed-forward. Keys `model.decoder.layers.N.*`. */
export class MarianDecoderLayer extends Module {
  selfAttn: MarianAttention;
  selfAttnLayerNorm: LayerNorm;
  encoderAttn: MarianAttention;
  encoderAttnLayerNorm: LayerNorm;
  fc1: Linear;
  fc2: Linear;
  finalLayerNorm: LayerNorm;
  readonly #act: MarianActivation;

  constructor(c: ResolvedMarianConfig) {
    super();
    const e = c.dModel;
    this.selfAttn = new MarianAttention(e, c.decoderAttentionHeads);
    this.selfAttnLayerNorm = new LayerNorm({ normalizedShape: e });
    this.encoderAttn = new MarianAttention(e, c.decoderAttentionHeads);
    this.encoderAttnLayerNorm = new LayerNorm({ normalizedShape: e });
    this.fc1 = new Linear({ inFeatures: e, outFeatures: c.decoderFfnDim });
    this.fc2 = new Linear({ inFeatures: c.decoderFfnDim, outFeatures: e });
    this.finalLayerNorm = new LayerNorm({ normalizedShape: e });
    this.#act = c.activationFunction;
  }

  /**
   * x [N · expand, t, E] continuing the layer's cached positions; `selfMask`
   * float32 [N · expand, 1, t, S] or null (causal), `memoryMask` [N, 1, 1,
   * S_src] or null; `expand` decoder rows per source row (beams).
   */
  forward(x: F32, cache: DecoderLayerCache, selfMask: F32 | null, memoryMask: BoolMask | null, expand = 1): F32 {
    return this.inContext(() => {
      const h = this.selfAttnLayerNorm.forwardAdd(this.selfAttn.forwardCached(x, cache.selfAttn, selfMask), x);
      const c = this.encoderAttnLayerNorm.forwardAdd(this.encoderAttn.forwardCross(h, cache.crossAttn, memoryMask, expand), h);
      return feedForward(c, this.fc1, this.fc2, this.finalLayerNorm, this.#act);
    }, false);
  }
}

/** A stack's pieces: its own token table (only when the embeddings are not shared), the positions, the layers. */
export abstract class MarianStack<L extends Module> extends Module {
  embedTokens: Embedding | null;
  embedPositions: MarianSinusoidalPositionalEmbedding;
  layers: ModuleList<L>;

  protected constructor(c: ResolvedMarianConfig, vocab: number, positions: F32, layers: L[]) {
    super();
    this.embedTokens = c.shareEncoderDecoderEmbeddings ? null : new Embedding({ numEmbeddings: vocab, embeddingDim: c.dModel });
    this.embedPositions = new MarianSinusoidalPositionalEmbedding(positions);
    this.layers = new ModuleList(layers);
  }
}

/** The encoder stack. Keys `model.encoder.*`. */
export class MarianEncoder extends MarianStack<MarianEncoderLayer> {
  constructor(c: ResolvedMarianConfig, positions: F32) {
    super(c, c.vocabSize, positions, Array.from({ length: c.encoderLayers }, () => new MarianEncoderLayer(c)));
  }
}

/** The decoder stack. Keys `model.decoder.*`. */
export class MarianDecoder extends MarianStack<MarianDecoderLayer> {
  constructor(c: ResolvedMarianConfig, positions: F32) {
    super(c, c.decoderVocabSize, positions, Array.from({ length: c.decoderLayers }, () => new MarianDecoderLayer(c)));
  }
}

/** Encoder and decoder with their embeddings. Keys `model.*` (`model.shared.weight` when shared). */
export class MarianModel extends Module {
  /** Inference only: runs with grad mode off (see Module.differentiable). */
  protected override get differentiable(): boolean {
    return false;
  }
  shared: Embedding | null;
  encoder: MarianEncoder;
  decoder: MarianDecoder;

  constructor(c: ResolvedMarianConfig) {
    super();
    // One table for both stacks; a checkpoint's own tables replace it when stored.
    const positions = marianSinusoidalTable(c.maxPositionEmbeddings, c.dModel);
    this.shared = c.shareEncoderDecoderEmbeddings ? new Embedding({ numEmbeddings: c.vocabSize, embeddingDim: c.dModel }) : null;
    this.encoder = new MarianEncoder(c, positions);
    this.decoder = new MarianDecoder(c, positions);
  }

  /** The encoder's token embedding table. */
  get encoderEmbedding(): F32 {
    return (this.shared ?? this.encoder.embedTokens!).weight;
  }

  /** The decoder's token embedding table (the LM head's weight when tied). */
  get decoderEmbedding(): F32 {
    return (this.shared ?? this.decoder.embedTokens!).weight;
  }
}

/**
 * The incremental-decoding state of {@link MarianMTModel}: per decoder layer
 * the self-attention {@link KVCache} and the cross-attention keys/values of
 * the encoder output, plus the source padding mask they are read with.
 */
export class MarianDecoderCache extends DecoderCache {
  /** [N, 1, 1, S] true = source token, or null when no source position is padding. */
  readonly memoryMask: BoolMask | null;
  /** Source sequences N. */
  readonly memoryBatch: number;
  /** Source positions S. */
  readonly memoryLength: number;
  /** Decoder rows per source row: rows `b · expand` … `b · expand + expand − 1` translate source b. */
  readonly expand: number;

  constructor(layers: readonly DecoderLayerCache[], memoryMask: BoolMask | null, memoryBatch: number, memoryLength: number, expand: number) {
    super(layers);
    this.memoryMask = memoryMask;
    this.memoryBatch = memoryBatch;
    this.memoryLength = memoryLength;
    this.expand = expand;
  }

  /** Decoder sequences: memoryBatch · expand. */
  get rows(): number {
    return this.memoryBatch * this.expand;
  }
}

/** The keyword inputs of {@link MarianMTModel.forward} (Hugging Face's names). */
export interface Seq2SeqInputs {
  /** Source ids [N, S]. */
  inputIds: I32;
  /** [N, S] 1 = token, 0 = padding. Default: every position is a token. */
  attentionMask?: I32 | null;
  /** Decoder ids [N, T] (starting with `decoderStartTokenId` for a translation). */
  decoderInputIds: I32;
  /** [N, T] 1 = token, 0 = padding, on top of the causal mask. Default: none. */
  decoderAttentionMask?: I32 | null;
}

/** What {@link MarianMTModel.forward} returns (Hugging Face's `Seq2SeqLMOutput` field names). */
export interface Seq2SeqLMOutput {
  /** [N, T, target vocab]. */
  logits: F32;
  /** [N, S, dModel]: the encoder output. */
  encoderLastHiddenState: F32;
}

/** Options of {@link MarianMTModel.decode}. */
export interface MarianDecodeOptions {
  /** [N, cached + t] 1 = token, 0 = padding over every decoder position so far. Default: none (causal only). */
  decoderAttentionMask?: I32 | null;
  /** Return logits for the last position only (what a decoding step needs). Default false. */
  lastOnly?: boolean;
}

/**
 * Options of {@link MarianMTModel.generate}: generate's options (greedy,
 * sampling or beam search, Hugging Face's logits processors), all optional;
 * what is not given comes from the model's {@link MarianMTModel.generationConfig}.
 */
export interface Seq2SeqGenerationOptions extends Partial<GenerationOptions> {
  /**
   * Hugging Face's `max_length`: the most decoder tokens, start token
   * included (so maxNewTokens = maxLength − 1). `maxNewTokens` wins when
   * both are given.
   */
  maxLength?: number;
  /** Hugging Face's `min_length`: no eos before this many decoder tokens, start token included. */
  minLength?: number;
}

const FORWARD_KEYS = ['inputIds', 'attentionMask', 'decoderInputIds', 'decoderAttentionMask'];

function describe(v: unknown): string {
  return v instanceof Tensor ? `${v.dtype} ${formatShape(v.shape)}` : v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

function checkIds(fn: string, what: string, ids: unknown): asserts ids is I32 {
  if (!(ids instanceof Tensor) || ids.dtype !== 'int32' || ids.ndim !== 2 || ids.shape[1] === 0) {
    throw new TypeError(`${fn}: ${what} must be an int32 Tensor [batch, seq] with seq >= 1, got ${describe(ids)}`);
  }
}

/**
 * MarianMT with its LM head: `model` + `lm_head` (tied to the decoder
 * embeddings unless configured otherwise) + `final_logits_bias`. A
 * {@link DecodingModel}: `generate` runs it through decoder sessions whose
 * first step encodes the source and projects every layer's cross-attention
 * keys and values once.
 */
export class MarianMTModel extends Module implements DecodingModel {
  /** Inference only: runs with grad mode off (see Module.differentiable). */
  protected override get differentiable(): boolean {
    return false;
  }
  readonly config: ResolvedMarianConfig;
  model: MarianModel;
  /** [1, target vocab], added to the logits. */
  finalLogitsBias!: F32;
  lmHead: Linear | null;
  /**
   * Defaults of {@link generate}'s options (Hugging Face's
   * `generation_config`): AutoModelForSeq2SeqLM sets them from the folder's
   * generation_config.json or config.json (e.g. opus-mt: 4 or 6 beams,
   * max_length 512, `badWordsIds` [[pad]], `forcedEosTokenId`); a model built
   * from a config gets greedy search, eos and pad from the config and 19 new
   * tokens (max_length 20).
   */
  generationConfig: GenerationDefaults;

  constructor(config: MarianConfig) {
    super();
    this.config = resolveMarianConfig(config);
    const c = this.config;
    this.model = new MarianModel(c);
    this.registerBuffer('finalLogitsBias', new Tensor(new Float32Array(c.decoderVocabSize), [1, c.decoderVocabSize], 'float32'));
    this.lmHead = c.tieWordEmbeddings ? null : new Linear({ inFeatures: c.dModel, outFeatures: c.decoderVocabSize, bias: false });
    this.generationConfig = generationDefaultsFrom({}, {
      eosTokenId: c.eosTokenId, padTokenId: c.padTokenId, maxPositions: c.maxPositionEmbeddings, prefixLength: 1,
    });
  }

  /**
   * A decoder session for `generate` over source ids [N, S]: `expand`
   * decoder rows per source (beams), each starting with
   * `decoderStartTokenId`. Its first step encodes the source and projects the
   * cross-attention keys and values (shared by a source's rows); every step
   * appends one token per row to the self-attention caches, and `reorder`
   * gathers their rows (beam search).
   */
  startDecoding(inputIds: I32, options: StartDecodingOptions): DecoderSession {
    const fn = 'MarianMTModel.startDecoding';
    checkIds(fn, "argument 'inputIds'", inputIds);
    const [n, s] = inputIds.shape as [number, number];
    const { attentionMask, expand, maxNewTokens } = options;
    if (s > this.config.maxPositionEmbeddings) {
      throw new RangeError(`${fn}: the source has ${s} tokens, more than the model's ${this.config.maxPositionEmbeddings} positions (maxPositionEmbeddings)`);
    }
    const rows = n * checkInt(fn, 'expand', expand, 1);
    const prefix = new Tensor(new Int32Array(rows).fill(this.config.decoderStartTokenId), [rows, 1], 'int32');
    let cache: MarianDecoderCache | null = null;
    return {
      rows,
      prefix,
      prefixMask: null,
      step: (ids) => {
        if (!cache) {
          const memory = this.encode(inputIds, { attentionMask });
          // Room for a typical sentence, grown by doubling: sizing for maxNewTokens up front (511 with opus-mt's
          // max_length) would allocate, and let each beam reorder gather, far more than a translation uses.
          cache = this.createCache(memory, { attentionMask, expand, capacity: Math.min(1 + maxNewTokens, 32) });
        }
        return this.decode(ids, cache, { lastOnly: true });
      },
      reorder: (rowIndices) => {
        if (!cache) throw new Error(`${fn}: reorder called before the first step`);
        cache.reorder(this.backend, rowIndices);
      },
    };
  }

  /**
   * Translates source ids [N, S] (`attentionMask` [N, S], 1 = token):
   * decoder ids [N · numReturnSequences, 1 + new], starting with
   * `decoderStartTokenId`, as Hugging Face's `generate` returns them
   * (finished rows padded with `padTokenId`). Options not given come from
   * {@link generationConfig} (for opus-mt folders: beam search, `badWordsIds`
   * [[pad]], forced eos at the length limit).
   */
  generate(inputIds: I32, options: Seq2SeqGenerationOptions = {}): I32 {
    return generate(this.#decodingModel(), inputIds, this.#generateOptions('MarianMTModel.generate', options));
  }

  /** {@link generate} with every step's kernels off the JS thread. */
  generateAsync(inputIds: I32, options: Seq2SeqGenerationOptions = {}): Promise<I32> {
    try {
      return generateAsync(this.#decodingModel(), inputIds, this.#generateOptions('MarianMTModel.generateAsync', options));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** generate's view of this model: logits cover the target vocabulary, which is what its token-id checks need. */
  #decodingModel(): DecodingModel {
    const self = this;
    return {
      config: { vocabSize: this.config.decoderVocabSize, maxPositionEmbeddings: this.config.maxPositionEmbeddings },
      generationConfig: this.generationConfig,
      get backend() {
        return self.backend;
      },
      startDecoding: (ids, o) => this.startDecoding(ids, o),
    };
  }

  /** `maxLength` / `minLength` (decoder lengths with the start token) as generate's new-token counts. */
  #generateOptions(fn: string, options: Seq2SeqGenerationOptions): GenerationOptions {
    if (options === null || typeof options !== 'object') throw new TypeError(`${fn}: argument 'options' must be an object, got ${describe(options)}`);
    const { maxLength, minLength, ...rest } = options;
    const out: Record<string, unknown> = { ...rest };
    if (maxLength !== undefined && rest.maxNewTokens === undefined) out['maxNewTokens'] = checkInt(fn, 'maxLength', maxLength, 1) - 1;
    if (minLength !== undefined && rest.minNewTokens === undefined) out['minNewTokens'] = Math.max(0, checkInt(fn, 'minLength', minLength, 0) - 1);
    out['maxNewTokens'] ??= this.generationConfig.maxNewTokens;
    return out as unknown as GenerationOptions;
  }

  /**
   * Source ids [N, S] → the encoder output [N, S, dModel]. `attentionMask`
   * [N, S] (1 = token) hides padding from every query.
   */
  encode(inputIds: I32, options: { attentionMask?: I32 | null } = {}): F32 {
    return this.inContext(() => {
      const fn = 'MarianMTModel.encode';
      checkIds(fn, "argument 'inputIds'", inputIds);
      const [n, s] = inputIds.shape as [number, number];
      const mask = keyMask(fn, options.attentionMask, n, s);
      let x = this.#embed(fn, inputIds, this.model.encoderEmbedding, this.model.encoder.embedPositions, 0);
      for (const layer of this.model.encoder.layers) x = layer.forward(x, mask);
      return x;
    });
  }

  /**
   * The decoding state for source batch `encoderHiddenStates` [N, S, dModel]
   * (from {@link encode}) with its `attentionMask`: every decoder layer's
   * cross-attention keys and values are projected here, once. `expand`
   * (default 1) decoder rows are decoded per source row, adjacent (beam
   * search), all reading that row's keys and values. `capacity` positions
   * are allocated for the self-attention caches up front (they grow by
   * doubling).
   */
  createCache(
    encoderHiddenStates: F32, options: { attentionMask?: I32 | null; capacity?: number; expand?: number } = {},
  ): MarianDecoderCache {
    return this.inContext(() => {
      const fn = 'MarianMTModel.createCache';
      const e = this.config.dModel;
      if (!(encoderHiddenStates instanceof Tensor) || encoderHiddenStates.dtype !== 'float32' || encoderHiddenStates.ndim !== 3 ||
        encoderHiddenStates.shape[2] !== e || encoderHiddenStates.shape[1] === 0) {
        throw new TypeError(`${fn}: argument 'encoderHiddenStates' must be a float32 Tensor [batch, seq, ${e}], got ${describe(encoderHiddenStates)}`);
      }
      const [n, s] = encoderHiddenStates.shape as [number, number];
      const capacity = checkInt(fn, 'capacity', options.capacity ?? 16, 1);
      const expand = checkInt(fn, 'expand', options.expand ?? 1, 1);
      const memoryMask = keyMask(fn, options.attentionMask, n, s);
      const layers = [...this.model.decoder.layers].map((l) => ({
        selfAttn: new KVCache({ batch: n * expand, embedDim: e, capacity }),
        crossAttn: l.encoderAttn.projectMemory(encoderHiddenStates),
      }));
      return new MarianDecoderCache(layers, memoryMask, n, s, expand);
    }, false);
  }

  /**
   * Decoder ids [N, t] continuing `cache`'s positions → logits [N, t, target
   * vocab] (or [N, 1, vocab] with `lastOnly`). The step's keys and values are
   * appended to the cache.
   */
  decode(decoderInputIds: I32, cache: MarianDecoderCache, options: MarianDecodeOptions = {}): F32 {
    return this.inContext(() => {
      const fn = 'MarianMTModel.decode';
      checkIds(fn, "argument 'decoderInputIds'", decoderInputIds);
      if (!(cache instanceof MarianDecoderCache) || cache.layers.length !== this.config.decoderLayers) {
        throw new TypeError(`${fn}: argument 'cache' must be a MarianDecoderCache from createCache (${this.config.decoderLayers} layers), got ${describe(cache)}`);
      }
      if (options === null || typeof options !== 'object') throw new TypeError(`${fn}: argument 'options' must be an object, got ${describe(options)}`);
      const [n, t] = decoderInputIds.shape as [number, number];
      if (cache.rows !== n) throw new RangeError(`${fn}: the cache holds ${cache.rows} sequences, decoderInputIds ${n}`);
      const pos = cache.length;
      const { mask } = stepPositionsAndMask(fn, options.decoderAttentionMask ?? null, n, t, pos);
      const dec = this.model.decoder;
      let x = this.#embed(fn, decoderInputIds, this.model.decoderEmbedding, dec.embedPositions, pos);
      let i = 0;
      for (const layer of dec.layers) x = layer.forward(x, cache.layers[i++]!, mask, cache.memoryMask, cache.expand);
      if (!dec.layers.length) cache.advanceEmpty(t);
      if (options.lastOnly && t > 1) x = x.narrow(1, t - 1, 1);
      const head = this.lmHead ? this.lmHead.weight : this.model.decoderEmbedding;
      return ops.linear(x, head, this.finalLogitsBias.view(this.config.decoderVocabSize), { cacheWeight: true });
    }, false);
  }

  /**
   * Hugging Face's keyword forward: `{ inputIds, attentionMask,
   * decoderInputIds, decoderAttentionMask }` (batch-first, 1 = token) →
   * `{ logits [N, T, target vocab], encoderLastHiddenState [N, S, dModel] }`,
   * the decoder causal over `decoderInputIds`.
   */
  forward(inputs: Seq2SeqInputs): Seq2SeqLMOutput {
    return this.inContext(() => {
      const fn = 'MarianMTModel.forward';
      if (inputs === null || typeof inputs !== 'object' || inputs instanceof Tensor || Array.isArray(inputs)) {
        throw new TypeError(`${fn}: argument 'inputs' must be an object { inputIds, attentionMask?, decoderInputIds, decoderAttentionMask? }, got ${describe(inputs)}`);
      }
      for (const k of Object.keys(inputs)) {
        if (!FORWARD_KEYS.includes(k)) throw new TypeError(`${fn}: unknown input '${k}' (inputs: ${FORWARD_KEYS.join(', ')})`);
      }
      checkIds(fn, "input 'inputIds'", inputs.inputIds);
      checkIds(fn, "input 'decoderInputIds'", inputs.decoderInputIds);
      const [n, t] = inputs.decoderInputIds.shape as [number, number];
      if (n !== inputs.inputIds.shape[0]) {
        throw new RangeError(`${fn}: input 'decoderInputIds' has ${n} rows, inputIds ${inputs.inputIds.shape[0]}`);
      }
      const encoderLastHiddenState = this.encode(inputs.inputIds, { attentionMask: inputs.attentionMask ?? null });
      const cache = this.createCache(encoderLastHiddenState, { attentionMask: inputs.attentionMask ?? null, capacity: t });
      const logits = this.decode(inputs.decoderInputIds, cache, { decoderAttentionMask: inputs.decoderAttentionMask ?? null });
      return { logits, encoderLastHiddenState };
    });
  }

  /** Token embeddings (× sqrt(dModel) when scaled) + the positions from `past` on. */
  #embed(fn: string, ids: I32, table: F32, positions: MarianSinusoidalPositionalEmbedding, past: number): F32 {
    const t = ids.shape[1]!;
    const rows = positions.rows(fn, past, t);
    const x = ops.embedding(ids, table);
    if (this.config.scaleEmbedding) ops.mul(x, Math.sqrt(this.config.dModel), { out: x });
    return ops.add(x, rows, { out: x });
  }
}

// ---------------------------------------------------------------------------
// Loading from a Hugging Face folder's parsed config.json and weights.

type Json = Record<string, unknown>;

/** transformers' `activation_function` names (ACT2FN) → the feed-forward activation. */
const ACTIVATION_FUNCTIONS: Record<string, MarianActivation> = {
  swish: 'silu', silu: 'silu', gelu: 'gelu', gelu_python: 'gelu', relu: 'relu',
  // The tanh approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), written differently.
  gelu_new: 'gelu_tanh', gelu_pytorch_tanh: 'gelu_tanh', gelu_fast: 'gelu_tanh',
};

/** The architecture fields of older Marian configs and the one value MarianMT computes for each. */
const MARIAN_ARCHITECTURE: readonly [string, unknown][] = [
  ['static_position_embeddings', true], ['normalize_before', false], ['normalize_embedding', false],
  ['add_final_layer_norm', false], ['add_bias_logits', false], ['layernorm_embedding', false],
];

/**
 * The configuration of a MarianMT `config.json` (`model_type: 'marian'`),
 * with transformers' `MarianConfig` defaults for absent fields. Errors name
 * `file` and the field.
 */
export function marianConfigFromJson(c: Json, file = 'config.json'): ResolvedMarianConfig {
  if (c['model_type'] !== 'marian') {
    throw new Error(`${file}: field 'model_type' ${JSON.stringify(c['model_type'])} is not 'marian'`);
  }
  const int = (key: string, min: number, dflt?: number): number => {
    const v = c[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
      throw new Error(`${file}: field '${key}' must be an integer >= ${min}, got ${JSON.stringify(c[key])}`);
    }
    return v;
  };
  const bool = (key: string, dflt: boolean): boolean => {
    const v = c[key] ?? dflt;
    if (typeof v !== 'boolean') throw new Error(`${file}: field '${key}' must be a boolean, got ${JSON.stringify(c[key])}`);
    return v;
  };
  // Fields of the BART-era configs the opus-mt conversions still carry. transformers' Marian code no longer reads
  // them and always computes static sinusoidal positions, post-norm layers, no embedding norm, no final norm and no
  // logits bias layer: a checkpoint that sets another value was trained as another architecture, refused here.
  for (const [key, marian] of MARIAN_ARCHITECTURE) {
    const v = c[key];
    if (v !== undefined && v !== null && v !== marian) {
      throw new Error(`${file}: field '${key}' ${JSON.stringify(v)} is not supported (MarianMT computes ${key} = ${JSON.stringify(marian)}, as transformers' MarianMTModel does whatever the field says)`);
    }
  }
  const actName = c['activation_function'] ?? 'gelu';
  if (typeof actName !== 'string' || !Object.prototype.hasOwnProperty.call(ACTIVATION_FUNCTIONS, actName)) {
    throw new Error(`${file}: field 'activation_function' ${JSON.stringify(actName)} is not supported (supported: ${Object.keys(ACTIVATION_FUNCTIONS).join(', ')})`);
  }
  const vocabSize = int('vocab_size', 1, 58101);
  const decoderVocab = c['decoder_vocab_size'];
  const pad = int('pad_token_id', 0, 58100);
  const raw: MarianConfig = {
    vocabSize,
    decoderVocabSize: decoderVocab === null || decoderVocab === undefined ? vocabSize : int('decoder_vocab_size', 1),
    dModel: int('d_model', 1, 1024),
    encoderLayers: int('encoder_layers', 0, 12),
    decoderLayers: int('decoder_layers', 0, 12),
    encoderAttentionHeads: int('encoder_attention_heads', 1, 16),
    decoderAttentionHeads: int('decoder_attention_heads', 1, 16),
    encoderFfnDim: int('encoder_ffn_dim', 1, 4096),
    decoderFfnDim: int('decoder_ffn_dim', 1, 4096),
    maxPositionEmbeddings: int('max_position_embeddings', 1, 1024),
    activationFunction: ACTIVATION_FUNCTIONS[actName]!,
    scaleEmbedding: bool('scale_embedding', false),
    shareEncoderDecoderEmbeddings: bool('share_encoder_decoder_embeddings', true),
    tieWordEmbeddings: bool('tie_word_embeddings', true),
    padTokenId: pad,
    eosTokenId: int('eos_token_id', 0, 0),
    decoderStartTokenId: int('decoder_start_token_id', 0, pad),
  };
  try {
    return resolveMarianConfig(raw);
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** A weight's shape, or null when absent. */
const shapeOf = (w: Record<string, Tensor>, key: string): readonly number[] | null => w[key]?.shape ?? null;

/**
 * A MarianMT checkpoint's tensors under {@link MarianMTModel}'s keys, checked
 * against the config (a contradiction is an Error naming `file` and the
 * field): the bare `MarianModel` keys of a checkpoint without the `model.`
 * prefix get it; of the tied copies transformers may save
 * (`model.shared.weight`, `model.encoder.embed_tokens.weight`,
 * `model.decoder.embed_tokens.weight`, `lm_head.weight`) the one the model
 * reads is kept; position tables transformers leaves out of the file are
 * computed, and a missing `final_logits_bias` is zeros (as transformers
 * initialises them).
 */
export function marianStateDict(weights: Record<string, Tensor>, c: ResolvedMarianConfig, file = 'config.json'): Record<string, Tensor> {
  const bare = !Object.keys(weights).some((k) => k.startsWith('model.'));
  const w: Record<string, Tensor> = {};
  for (const [key, t] of Object.entries(weights)) {
    w[bare && key !== 'final_logits_bias' && key !== 'lm_head.weight' ? `model.${key}` : key] = t;
  }
  const e = c.dModel;
  const embeddingKeys = ['model.shared.weight', 'model.encoder.embed_tokens.weight', 'model.decoder.embed_tokens.weight'];
  const table = (keys: string[], rows: number, rowsField: string): Tensor | undefined => {
    const key = keys.find((k) => w[k] !== undefined);
    if (key === undefined) return undefined;
    const s = shapeOf(w, key)!;
    if (s.length !== 2 || s[1] !== e) throw new Error(`${file}: field 'd_model' is ${e} but ${key} has shape ${formatShape(s)}`);
    if (s[0] !== rows) throw new Error(`${file}: field '${rowsField}' is ${rows} but ${key} has ${s[0]} rows`);
    return w[key];
  };
  if (c.shareEncoderDecoderEmbeddings) {
    const shared = table(embeddingKeys, c.vocabSize, 'vocab_size');
    for (const k of embeddingKeys) delete w[k];
    if (shared) w['model.shared.weight'] = shared;
  } else {
    const enc = table([embeddingKeys[1]!], c.vocabSize, 'vocab_size');
    const dec = table([embeddingKeys[2]!], c.decoderVocabSize, 'decoder_vocab_size');
    // Unshared embeddings have no `shared` table in transformers (a stale copy is not read).
    delete w['model.shared.weight'];
    if (!enc || !dec) {
      throw new Error(`${file}: field 'share_encoder_decoder_embeddings' is false but the weights have no ${!enc ? embeddingKeys[1] : embeddingKeys[2]} (a shared checkpoint stores model.shared.weight)`);
    }
  }
  if (c.tieWordEmbeddings) {
    delete w['lm_head.weight'];
  } else {
    if (!w['lm_head.weight']) throw new Error(`${file}: field 'tie_word_embeddings' is false but the weights have no lm_head.weight`);
    table(['lm_head.weight'], c.decoderVocabSize, c.shareEncoderDecoderEmbeddings ? 'vocab_size' : 'decoder_vocab_size');
  }
  const bias = shapeOf(w, 'final_logits_bias');
  if (bias === null) {
    w['final_logits_bias'] = new Tensor(new Float32Array(c.decoderVocabSize), [1, c.decoderVocabSize], 'float32');
  } else if (bias.length !== 2 || bias[0] !== 1 || bias[1] !== c.decoderVocabSize) {
    const field = c.shareEncoderDecoderEmbeddings ? 'vocab_size' : 'decoder_vocab_size';
    throw new Error(`${file}: field '${field}' is ${c.decoderVocabSize} but final_logits_bias has shape ${formatShape(bias)}`);
  }
  let positions: Tensor | null = null;
  for (const side of ['encoder', 'decoder'] as const) {
    const key = `model.${side}.embed_positions.weight`;
    const s = shapeOf(w, key);
    if (s === null) {
      w[key] = positions ??= marianSinusoidalTable(c.maxPositionEmbeddings, e);
    } else if (s.length !== 2 || s[0] !== c.maxPositionEmbeddings || s[1] !== e) {
      throw new Error(`${file}: fields 'max_position_embeddings' (${c.maxPositionEmbeddings}) and 'd_model' (${e}) do not fit ${key} of shape ${formatShape(s)}`);
    }
  }
  for (const side of ['encoder', 'decoder'] as const) {
    const field = `${side}_layers`;
    const layers = side === 'encoder' ? c.encoderLayers : c.decoderLayers;
    const found = new Set<number>();
    for (const k of Object.keys(w)) {
      const m = new RegExp(`^model\\.${side}\\.layers\\.(\\d+)\\.`).exec(k);
      if (m) found.add(Number(m[1]));
    }
    const count = found.size ? Math.max(...found) + 1 : 0;
    if (count !== layers) throw new Error(`${file}: field '${field}' is ${layers} but the weights have ${count} ${side} layers`);
    const ffn = side === 'encoder' ? c.encoderFfnDim : c.decoderFfnDim;
    const fc1 = shapeOf(w, `model.${side}.layers.0.fc1.weight`);
    if (fc1 && fc1.length === 2 && fc1[0] !== ffn) {
      throw new Error(`${file}: field '${side}_ffn_dim' is ${ffn} but model.${side}.layers.0.fc1.weight has ${fc1[0]} rows`);
    }
    const D = dimOf('d_model', e);
    const F = dimOf(`${side}_ffn_dim`, ffn);
    const L = `^model\\.${side}\\.layers\\.\\d+\\.`;
    checkWeightShapes(file, w, [
      [new RegExp(`${L}(self_attn|encoder_attn)\\.(q|k|v|out)_proj\\.weight$`), [D, D]],
      [new RegExp(`${L}fc1\\.weight$`), [F, D]],
      [new RegExp(`${L}fc1\\.bias$`), [F]],
      [new RegExp(`${L}fc2\\.weight$`), [D, F]],
      [new RegExp(`${L}.*\\.(bias|weight)$`), [D]],
    ]);
  }
  return w;
}
