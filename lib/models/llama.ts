/**
 * Llama-style decoders (Llama 2/3, Mistral, Qwen2, SmolLM, llama2.c's
 * TinyStories models): RMSNorm, rotary position embeddings, SwiGLU,
 * grouped-query attention, optional q/k/v biases, tied or untied head.
 *
 * Property names are Hugging Face's `LlamaForCausalLM` keys in camelCase, so
 * its state dict (`model.layers.0.self_attn.q_proj.weight`, …) loads as is.
 * Everything runs on attnode's ops: the k/v projections are written straight
 * into the KV cache, keys are rotated where they lie, and the fused attention
 * reads shared KV heads through strides (no head is copied).
 */
import { Module } from '../nn/module';
import { ModuleList } from '../nn/container';
import { Embedding } from '../nn/sparse';
import { Linear } from '../nn/linear';
import { RMSNorm } from '../nn/rms-norm';
import { KVCache, SelfAttentionCache } from '../nn/kv-cache';
import { KVPool } from '../nn/kv-pool';
import * as ops from '../ops';
import { Tensor, empty } from '../tensor';
import { checkInt, formatShape } from '../errors';
import { generate, generateAsync, type GenerationDefaults, type GenerationOptions } from './generation';
import { stepPositionsAndMask } from './step-masks';
import { isKeywordForm, splitModelInputs, type CausalLMOutput, type ModelInputs } from './model-inputs';
import { attendPacked, packedStages, planPackedStep, runStages, type PackedCausalModel, type PackedSequence, type PackedStep } from './packed-step';
import { causalMaskFrom } from '../ops/multi-head-attention';
import { FusedRows } from './fused-rows';
import { ReplayedDecode } from './decode-program';

type F32 = Tensor<'float32'>;

/** Llama 3's `rope_scaling` (`rope_type: 'llama3'`): long-context frequency rescaling. */
export interface Llama3RopeScaling {
  ropeType: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

/** Linear rope scaling (`rope_type: 'linear'`, position interpolation): every frequency divided by `factor`. */
export interface LinearRopeScaling {
  ropeType: 'linear';
  factor: number;
}

/** The `rope_scaling` kinds attnode computes. */
export type RopeScaling = Llama3RopeScaling | LinearRopeScaling;

/** A Llama-family configuration (Hugging Face's `LlamaConfig` fields in camelCase). */
export interface LlamaConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  /** Default numAttentionHeads (no grouping). */
  numKeyValueHeads?: number;
  /** Default 2048. */
  maxPositionEmbeddings?: number;
  /** Default 1e-6. */
  rmsNormEps?: number;
  /** Default 10000. */
  ropeTheta?: number;
  ropeScaling?: RopeScaling | null;
  /** The LM head shares the token embedding (default false). */
  tieWordEmbeddings?: boolean;
  /** Biases on q/k/v projections (Qwen2: true; default false). */
  attentionBias?: boolean;
  /** A bias on o_proj (Llama's `attention_bias` sets it with the q/k/v ones; Qwen2 has none). Default false. */
  outputBias?: boolean;
  /** Biases on gate/up/down projections (Llama's `mlp_bias`). Default false. */
  mlpBias?: boolean;
  /** Features per attention head (`head_dim`); default hiddenSize / numAttentionHeads. */
  headDim?: number;
  /**
   * Sliding-window attention span (Mistral's `sliding_window`, Qwen2's with `use_sliding_window`), or null. attnode
   * attends to every cached position, which equals the window while a sequence fits in it: longer ones are an error.
   */
  slidingWindow?: number | null;
  /** Rotate adjacent pairs (llama2.c, Meta's checkpoints) instead of Hugging Face's halves (default false). */
  ropeInterleaved?: boolean;
}

/** A config with every default filled in. */
export type ResolvedLlamaConfig = Required<Omit<LlamaConfig, 'ropeScaling' | 'slidingWindow'>> & {
  ropeScaling: RopeScaling | null;
  slidingWindow: number | null;
};

/** Fills in defaults and checks the sizes fit together. */
export function resolveLlamaConfig(c: LlamaConfig): ResolvedLlamaConfig {
  const fn = 'LlamaConfig';
  const r: ResolvedLlamaConfig = {
    vocabSize: checkInt(fn, 'vocabSize', c.vocabSize, 1),
    hiddenSize: checkInt(fn, 'hiddenSize', c.hiddenSize, 1),
    intermediateSize: checkInt(fn, 'intermediateSize', c.intermediateSize, 1),
    numHiddenLayers: checkInt(fn, 'numHiddenLayers', c.numHiddenLayers, 0),
    numAttentionHeads: checkInt(fn, 'numAttentionHeads', c.numAttentionHeads, 1),
    numKeyValueHeads: checkInt(fn, 'numKeyValueHeads', c.numKeyValueHeads ?? c.numAttentionHeads, 1),
    maxPositionEmbeddings: checkInt(fn, 'maxPositionEmbeddings', c.maxPositionEmbeddings ?? 2048, 1),
    rmsNormEps: c.rmsNormEps ?? 1e-6,
    ropeTheta: c.ropeTheta ?? 10000,
    ropeScaling: c.ropeScaling ?? null,
    tieWordEmbeddings: c.tieWordEmbeddings ?? false,
    attentionBias: c.attentionBias ?? false,
    outputBias: c.outputBias ?? false,
    mlpBias: c.mlpBias ?? false,
    headDim: 0,
    slidingWindow: c.slidingWindow === undefined || c.slidingWindow === null ? null : checkInt(fn, 'slidingWindow', c.slidingWindow, 1),
    ropeInterleaved: c.ropeInterleaved ?? false,
  };
  if (c.headDim !== undefined && c.headDim !== null) {
    r.headDim = checkInt(fn, 'headDim', c.headDim, 2);
    if (r.headDim % 2 !== 0) throw new RangeError(`${fn}: headDim (${r.headDim}) must be even (rotary embeddings rotate pairs)`);
  } else if (r.hiddenSize % r.numAttentionHeads !== 0) {
    throw new RangeError(`${fn}: hiddenSize (${r.hiddenSize}) must be divisible by numAttentionHeads (${r.numAttentionHeads})`);
  } else {
    r.headDim = r.hiddenSize / r.numAttentionHeads;
  }
  if (r.numAttentionHeads % r.numKeyValueHeads !== 0) {
    throw new RangeError(`${fn}: numAttentionHeads (${r.numAttentionHeads}) must be divisible by numKeyValueHeads (${r.numKeyValueHeads})`);
  }
  return r;
}

/**
 * The rotary inverse frequencies 1 / θ^(2i/d), with Llama 3's rescaling:
 * wavelengths above `original / lowFreqFactor` are divided by `factor`,
 * those below `original / highFreqFactor` kept, the band between blended.
 */
export function ropeInvFreq(headDim: number, theta: number, scaling: RopeScaling | null): F32 {
  const base = ops.rotaryInvFreq(headDim, theta);
  if (!scaling) return base;
  const out = new Float32Array(base.data);
  if (scaling.ropeType === 'linear') {
    // transformers' _compute_linear_scaling_rope_parameters: inv_freq / factor (positions / factor).
    for (let i = 0; i < out.length; i++) out[i] = out[i]! / scaling.factor;
    return new Tensor(out, [out.length], 'float32');
  }
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: orig } = scaling;
  for (let i = 0; i < out.length; i++) {
    const f = out[i]!;
    const wavelen = (2 * Math.PI) / f;
    if (wavelen > orig / lowFreqFactor) {
      out[i] = f / factor;
    } else if (wavelen >= orig / highFreqFactor) {
      const smooth = (orig / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
      out[i] = (1 - smooth) * (f / factor) + smooth * f;
    }
  }
  return new Tensor(out, [out.length], 'float32');
}

/**
 * Sliding-window attention (Mistral, Qwen2 with use_sliding_window) sees only the last `slidingWindow` keys; attnode
 * attends to all of them, which is the same while a sequence fits in the window. A longer one is refused here
 * rather than computed differently.
 */
function checkWindow(fn: string, c: ResolvedLlamaConfig, length: number): void {
  if (c.slidingWindow !== null && length > c.slidingWindow) {
    throw new RangeError(`${fn}: sequence length ${length} exceeds the model's sliding window of ${c.slidingWindow} positions (config.json 'sliding_window'): sliding-window attention is not supported`);
  }
}

/** q/k/v/o projections with grouped-query attention and rotary embeddings. */
export class LlamaAttention extends Module {
  qProj: Linear;
  kProj: Linear;
  vProj: Linear;
  oProj: Linear;
  readonly #c: ResolvedLlamaConfig;
  readonly #invFreq: F32;
  readonly #qkvWeight = new FusedRows();
  readonly #qkvBias = new FusedRows();

  constructor(c: ResolvedLlamaConfig, invFreq: F32) {
    super();
    const e = c.hiddenSize;
    const qDim = c.headDim * c.numAttentionHeads;
    const kv = c.headDim * c.numKeyValueHeads;
    this.qProj = new Linear({ inFeatures: e, outFeatures: qDim, bias: c.attentionBias });
    this.kProj = new Linear({ inFeatures: e, outFeatures: kv, bias: c.attentionBias });
    this.vProj = new Linear({ inFeatures: e, outFeatures: kv, bias: c.attentionBias });
    this.oProj = new Linear({ inFeatures: qDim, outFeatures: e, bias: c.outputBias });
    this.#c = c;
    this.#invFreq = invFreq;
  }

  /**
   * x [N, t, E] (batch-first) for positions `positions` ([N, t] int32, or the
   * offset of a batch without padding); the step's keys and values are
   * appended to `cache`, and each query attends to every cached key allowed by
   * `mask` (float32 [N, 1, t, S], added) or, without one, causally.
   */
  forward(x: F32, cache: KVCache, positions: Tensor<'int32'> | number, mask: F32 | null): F32 {
    return this.inContext(() => {
      const c = this.#c;
      const [n, t] = x.shape as [number, number];
      const h = c.numAttentionHeads;
      const hkv = c.numKeyValueHeads;
      const hd = c.headDim;
      const pos = cache.length;
      cache.reserve(this.backend, pos + t);
      const e = h * hd; // the queries' features (hiddenSize unless head_dim says otherwise)
      const kvDim = hkv * hd;
      // One product for q, k and v, rotated in place; keys and values then go to the cache's next t positions.
      const qkv = this.#projectQKV(x, positions);
      ops.cat([qkv.narrow(-1, e, 2 * kvDim)], -1, { out: cache.slot(pos, t).transpose(0, 1) });
      cache.advance(t);
      const q = qkv.narrow(-1, 0, e).view(n, t, h, hd);
      const { k, v } = cache.keysValues(); // [S, N, kvDim] views
      const s = k.shape[0]!;
      const heads = (m: F32, len: number, count: number): F32 => m.view(len, n, count, hd).permute(1, 2, 0, 3);
      const attn = empty([n, t, e]);
      ops.scaledDotProductAttention(q.permute(0, 2, 1, 3), heads(k, s, hkv), heads(v, s, hkv), {
        out: attn.view(n, t, h, hd).permute(0, 2, 1, 3),
        enableGqa: hkv !== h,
        ...(mask ? { attnMask: mask } : { isCausal: t > 1 && pos === 0 }),
        ...(mask === null && t > 1 && pos > 0 ? { attnMask: causalMaskFrom(pos, t) } : {}),
      });
      return this.oProj.forward(attn);
    }, false);
  }

  /**
   * A packed step (continuous batching): x [1, T, E] holds the new tokens of several sequences at their own
   * positions (`step`, from planPackedStep); their keys and values go to their rows of this layer's pool rows
   * `kv` [P, 2·kvDim], and each sequence's queries attend to its own cached keys there.
   */
  forwardPacked(x: F32, kv: F32, step: PackedStep): F32 {
    return this.inContext(() => {
      const c = this.#c;
      const t = x.shape[1]!;
      const h = c.numAttentionHeads;
      const hd = c.headDim;
      const e = h * hd;
      const kvDim = c.numKeyValueHeads * hd;
      // Projected and rotated in one [1, T, E + 2·kvDim] product, then each token's keys and values to its
      // sequence's pool row.
      const qkv = this.#projectQKV(x, step.positions);
      ops.indexCopy(kv, 0, step.rows, qkv.narrow(-1, e, 2 * kvDim).view(t, 2 * kvDim));
      const attn = empty([1, t, e]);
      attendPacked(qkv.narrow(-1, 0, e).view(t, h, hd), kv, c.numKeyValueHeads, step, attn.view(t, h, hd));
      return this.oProj.forward(attn);
    }, false);
  }

  #rope(positions: Tensor<'int32'> | number): ops.RotaryEmbeddingOptions {
    const c = this.#c;
    return { positions, theta: c.ropeTheta, interleaved: c.ropeInterleaved, invFreq: this.#invFreq };
  }

  /**
   * q, k and v of x [N, t, E] in one product → [N, t, E + 2·kvDim] (each row: queries, keys, values), the query
   * and key heads rotated in place (one rotary call: they are adjacent heads of the same positions).
   */
  #projectQKV(x: F32, positions: Tensor<'int32'> | number): F32 {
    const c = this.#c;
    const [n, t] = x.shape as [number, number];
    const hd = c.headDim;
    const { qProj, kProj, vProj } = this;
    const weight = this.#qkvWeight.of([qProj.weight, kProj.weight, vProj.weight]);
    const bias = qProj.bias && kProj.bias && vProj.bias ? this.#qkvBias.of([qProj.bias, kProj.bias, vProj.bias]) : null;
    if (!bias && (qProj.bias || kProj.bias || vProj.bias)) {
      throw new RangeError('LlamaAttention: q_proj, k_proj and v_proj must all have a bias or none (attentionBias)');
    }
    const qkv = ops.linear(x, weight, bias, { cacheWeight: true });
    const heads = qkv.narrow(-1, 0, (c.numAttentionHeads + c.numKeyValueHeads) * hd).view(n, t, c.numAttentionHeads + c.numKeyValueHeads, hd);
    ops.rotaryEmbedding(heads, { ...this.#rope(positions), out: heads });
    return qkv;
  }
}

/** SwiGLU feed-forward: down(silu(gate(x)) · up(x)). */
export class LlamaMLP extends Module {
  gateProj: Linear;
  upProj: Linear;
  downProj: Linear;

  constructor(c: ResolvedLlamaConfig) {
    super();
    this.gateProj = new Linear({ inFeatures: c.hiddenSize, outFeatures: c.intermediateSize, bias: c.mlpBias });
    this.upProj = new Linear({ inFeatures: c.hiddenSize, outFeatures: c.intermediateSize, bias: c.mlpBias });
    this.downProj = new Linear({ inFeatures: c.intermediateSize, outFeatures: c.hiddenSize, bias: c.mlpBias });
  }

  readonly #gateUp = new FusedRows();
  readonly #gateUpBias = new FusedRows();

  forward(x: F32): F32 {
    return this.inContext(() => {
      // gate and up in one [.., 2·I] product (see FusedRows).
      const i = this.gateProj.weight.shape[0]!;
      const { gateProj, upProj } = this;
      if (!gateProj.bias !== !upProj.bias) throw new RangeError('LlamaMLP: gate_proj and up_proj must both have a bias or neither (mlpBias)');
      const bias = gateProj.bias && upProj.bias ? this.#gateUpBias.of([gateProj.bias, upProj.bias]) : null;
      const gateUp = ops.linear(x, this.#gateUp.of([gateProj.weight, upProj.weight]), bias, { cacheWeight: true });
      return this.downProj.forward(ops.siluMul(gateUp.narrow(-1, 0, i), gateUp.narrow(-1, i, i)));
    });
  }
}

/** One pre-norm decoder layer: x + attn(norm(x)), then + mlp(norm(·)). */
export class LlamaDecoderLayer extends Module {
  selfAttn: LlamaAttention;
  mlp: LlamaMLP;
  inputLayernorm: RMSNorm;
  postAttentionLayernorm: RMSNorm;

  constructor(c: ResolvedLlamaConfig, invFreq: F32) {
    super();
    this.selfAttn = new LlamaAttention(c, invFreq);
    this.mlp = new LlamaMLP(c);
    this.inputLayernorm = new RMSNorm({ normalizedShape: c.hiddenSize, eps: c.rmsNormEps });
    this.postAttentionLayernorm = new RMSNorm({ normalizedShape: c.hiddenSize, eps: c.rmsNormEps });
  }

  /** `residual` is the stream entering the layer; returns the stream leaving it. */
  forward(residual: F32, cache: KVCache, positions: Tensor<'int32'> | number, mask: F32 | null): F32 {
    return this.#joined(residual, (h) => this.selfAttn.forward(h, cache, positions, mask));
  }

  /**
   * {@link forward} with the residual adds left to the neighbours' norms: the stream entering the layer is
   * `stream + pending` (`pending`, the previous layer's MLP output, is added by this layer's input norm in the
   * same pass, or null), and the stream leaving it is returned as `[stream, mlp]`, its two terms, for the next
   * layer (or the final norm) to add the same way. One native call fewer per layer; the sums are the same
   * (addRmsNorm is bit-identical to add then rmsNorm).
   */
  forwardSplit(
    stream: F32, pending: F32 | null, cache: KVCache, positions: Tensor<'int32'> | number, mask: F32 | null,
  ): [F32, F32] {
    return this.#split(stream, pending, (h) => this.selfAttn.forward(h, cache, positions, mask));
  }

  /** {@link forward} for a packed step over this layer's pool rows `kv` (see LlamaAttention.forwardPacked). */
  forwardPacked(residual: F32, kv: F32, step: PackedStep): F32 {
    return this.#joined(residual, (h) => this.selfAttn.forwardPacked(h, kv, step));
  }

  #joined(residual: F32, attend: (normed: F32) => F32): F32 {
    return this.inContext(() => {
      const [stream, mlp] = this.#split(residual, null, attend);
      return ops.add(stream, mlp, { out: stream });
    }, false);
  }

  #split(stream: F32, pending: F32 | null, attend: (normed: F32) => F32): [F32, F32] {
    return this.inContext((): [F32, F32] => {
      let normed: F32;
      if (pending) {
        const sum = empty(stream.shape);
        normed = this.inputLayernorm.forwardAdd(pending, stream, sum);
        stream = sum;
      } else {
        normed = this.inputLayernorm.forward(stream);
      }
      const attn = attend(normed);
      const next = empty(stream.shape);
      // The residual add and the next norm in one pass; the sum is the stream the MLP adds to.
      const normed2 = this.postAttentionLayernorm.forwardAdd(attn, stream, next);
      return [next, this.mlp.forward(normed2)];
    }, false);
  }
}

/** The decoder stack: embeddings, layers, final norm. Keys `model.*`. */
export class LlamaModel extends Module {
  /** Inference only: runs with grad mode off (see Module.differentiable). */
  protected override get differentiable(): boolean {
    return false;
  }
  embedTokens: Embedding;
  layers: ModuleList<LlamaDecoderLayer>;
  norm: RMSNorm;

  constructor(c: ResolvedLlamaConfig) {
    super();
    const invFreq = ropeInvFreq(c.headDim, c.ropeTheta, c.ropeScaling);
    this.embedTokens = new Embedding({ numEmbeddings: c.vocabSize, embeddingDim: c.hiddenSize });
    this.layers = new ModuleList(Array.from({ length: c.numHiddenLayers }, () => new LlamaDecoderLayer(c, invFreq)));
    this.norm = new RMSNorm({ normalizedShape: c.hiddenSize, eps: c.rmsNormEps });
  }
}

/** Options of {@link LlamaForCausalLM.forward}. */
export interface LlamaForwardOptions {
  /** [N, S] Hugging Face convention: 1 = token, 0 = padding, over every cached position plus this step's. */
  attentionMask?: Tensor<'int32'> | null;
  /** Caches to append to (from {@link LlamaForCausalLM.createCache}); default a fresh one (a full forward). */
  cache?: SelfAttentionCache;
  /** Return logits for the last position only (what a decoding step needs). Default false. */
  lastOnly?: boolean;
}

/** A Llama-family causal language model: `model` + `lm_head` (tied to the embedding when configured). */
export class LlamaForCausalLM extends Module implements PackedCausalModel {
  /** Inference only: runs with grad mode off (see Module.differentiable). */
  protected override get differentiable(): boolean {
    return false;
  }
  readonly config: ResolvedLlamaConfig;
  model: LlamaModel;
  lmHead: Linear | null;
  /**
   * Defaults for `generate`'s options (Hugging Face's generation_config: eos list, pad, sampling and beam fields,
   * logits processors), set by AutoModelForCausalLM from the folder; options given to `generate` win.
   */
  generationConfig?: GenerationDefaults;
  /** The recorded one-token step of the last batch-1 cache decoded (see #decodeStep). */
  readonly #replayed = new ReplayedDecode();

  constructor(config: LlamaConfig) {
    super();
    this.config = resolveLlamaConfig(config);
    this.model = new LlamaModel(this.config);
    this.lmHead = this.config.tieWordEmbeddings
      ? null
      : new Linear({ inFeatures: this.config.hiddenSize, outFeatures: this.config.vocabSize, bias: false });
  }

  /** Empty KV caches for `batch` sequences, room for `capacity` positions (they grow by doubling). */
  createCache(batch = 1, capacity = 64): SelfAttentionCache {
    const c = this.config;
    const kvDim = c.headDim * c.numKeyValueHeads;
    return new SelfAttentionCache(
      Array.from({ length: c.numHiddenLayers }, () => new KVCache({ batch, embedDim: kvDim, capacity })),
    );
  }

  /** Key/value features per layer: key/value heads × head size. */
  get kvDim(): number {
    const c = this.config;
    return c.headDim * c.numKeyValueHeads;
  }

  /** A K/V pool of `positions` positions for {@link forwardPacked} (continuous batching), preallocated and prefaulted. */
  createKVPool(positions: number, options: { prefault?: boolean } = {}): KVPool {
    return new KVPool({ layers: this.config.numHiddenLayers, kvDim: this.kvDim, positions, ...options });
  }

  /**
   * One step over several sequences at different positions (continuous batching): each sequence's new tokens
   * are appended to its rows of `pool` and attend to its own cached positions; all tokens share one GEMM per
   * projection. Returns logits [R, vocab] for the last new token of each sequence with `logits` (default true),
   * in the order given. `generate` and `forward` are unaffected (they use per-batch caches).
   * @throws TypeError/RangeError naming `seqs[i]` and the field (see planPackedStep), or `pool`.
   */
  forwardPacked(seqs: readonly PackedSequence[], pool: KVPool): F32 {
    return runStages(this.forwardPackedStages(seqs, pool));
  }

  /** {@link forwardPacked} in stages of `layersPerStage` layers (see PackedCausalModel.forwardPackedStages). */
  *forwardPackedStages(seqs: readonly PackedSequence[], pool: KVPool, layersPerStage = Infinity): Generator<F32, F32, void> {
    const c = this.config;
    const step = planPackedStep('LlamaForCausalLM.forwardPacked', seqs, pool, { config: c, layers: c.numHiddenLayers, kvDim: this.kvDim });
    for (const [i, s] of seqs.entries()) checkWindow(`LlamaForCausalLM.forwardPacked: seqs[${i}]`, c, s.cached + s.ids.length);
    const layers = this.model.layers;
    return yield* packedStages(
      layers.length, layersPerStage,
      () => this.inContext(() => this.model.embedTokens.forward(step.ids), false),
      (x, from, to) => this.inContext(() => {
        for (let i = from; i < to; i++) x = layers.at(i).forwardPacked(x, pool.layer(i), step);
        return x;
      }, false),
      (x) => this.inContext(() => {
        if (step.logitRows.shape[0] === 0) return empty([0, c.vocabSize]);
        const h = this.model.norm.forward(ops.embedding(step.logitRows, x.view(x.shape[1]!, c.hiddenSize)));
        return ops.linear(h, this.lmHead ? this.lmHead.weight : this.model.embedTokens.weight, null, { cacheWeight: true });
      }, false),
    );
  }

  /**
   * input ids [N, t] (batch-first) → logits [N, t, vocab] (or [N, 1, vocab]
   * with `lastOnly`). With a cache, the ids continue the cached sequences.
   */
  forward(inputs: ModelInputs<LlamaForwardOptions>): CausalLMOutput;
  forward(inputIds: Tensor<'int32'>, options?: LlamaForwardOptions): F32;
  forward(first: Tensor<'int32'> | ModelInputs<LlamaForwardOptions>, second?: LlamaForwardOptions): F32 | CausalLMOutput {
    const [inputIds, options] = splitModelInputs('LlamaForCausalLM.forward', first, second);
    const logits = this.#logits(inputIds, options);
    return isKeywordForm(first) ? { logits } : logits;
  }

  #logits(inputIds: Tensor<'int32'>, options: LlamaForwardOptions): F32 {
    return this.inContext(() => {
      const fn = 'LlamaForCausalLM.forward';
      if (!(inputIds instanceof Tensor) || inputIds.dtype !== 'int32' || inputIds.ndim !== 2) {
        throw new TypeError(`${fn}: argument 'inputIds' must be an int32 Tensor [batch, seq], got ${inputIds instanceof Tensor ? `${inputIds.dtype} ${formatShape(inputIds.shape)}` : typeof inputIds}`);
      }
      const [n, t] = inputIds.shape as [number, number];
      const cache = options.cache ?? this.createCache(n, t);
      const pos = cache.length;
      if (cache.layers.length && cache.layers[0]!.batch !== n) {
        throw new RangeError(`${fn}: the cache holds ${cache.layers[0]!.batch} sequences, inputIds ${n}`);
      }
      if (pos + t > this.config.maxPositionEmbeddings) {
        throw new RangeError(`${fn}: position ${pos + t} exceeds maxPositionEmbeddings ${this.config.maxPositionEmbeddings}`);
      }
      checkWindow(fn, this.config, pos + t);
      if (n === 1 && t === 1 && !options.attentionMask) {
        const logits = this.#decodeStep(inputIds, cache);
        if (logits) return logits;
      }
      const stepped = stepPositionsAndMask(fn, options.attentionMask ?? null, n, t, pos);
      const positions = stepped.positions ?? pos;
      const { mask } = stepped;
      let x = this.model.embedTokens.forward(inputIds);
      // The stream is x + pending between layers (see LlamaDecoderLayer.forwardSplit).
      let pending: F32 | null = null;
      let i = 0;
      for (const layer of this.model.layers) [x, pending] = layer.forwardSplit(x, pending, cache.layers[i++]!, positions, mask);
      if (!this.model.layers.length) cache.advanceEmpty(t);
      if (options.lastOnly && t > 1) {
        x = x.narrow(1, t - 1, 1);
        pending = pending && pending.narrow(1, t - 1, 1);
      }
      const h = pending ? this.model.norm.forwardAdd(pending, x, empty(x.shape)) : this.model.norm.forward(x);
      const head = this.lmHead ? this.lmHead.weight : this.model.embedTokens.weight;
      return ops.linear(h, head, null, { cacheWeight: true });
    }, false);
  }

  /**
   * One token of one sequence as one native call (lib/models/decode-program.ts): the step is recorded once per
   * cache (again when the cache grows into new buffers, the weights change or the precision does) from this
   * model's own packed forward, then replayed per token (inside runAsync: one call in the recorded list). Null
   * when it does not apply (no native backend, bf16 attention), so the caller runs the eager forward. The same ops and kernels as
   * forwardPacked; logits within rounding of the eager step (pooled rather than strided attention).
   */
  #decodeStep(inputIds: Tensor<'int32'>, cache: SelfAttentionCache): F32 | null {
    const c = this.config;
    const layers = this.model.layers;
    return this.#replayed.step(this.backend, inputIds, cache, layers.length, this.#stepParams(), c.vocabSize, (s, kv) => {
      const head = this.lmHead ? this.lmHead.weight : this.model.embedTokens.weight;
      let x = this.model.embedTokens.forward(s.ids);
      for (let i = 0; i < layers.length; i++) x = layers.at(i).forwardPacked(x, kv[i]!, s);
      return ops.linear(this.model.norm.forward(x.view(1, c.hiddenSize)), head, null, { cacheWeight: true });
    });
  }

  /** Every tensor a decode step reads (cheaper than parameters()'s walk, checked per token by the program). */
  #stepParams(): (Tensor | null)[] {
    const out: (Tensor | null)[] = [this.model.embedTokens.weight, this.model.norm.weight];
    if (this.lmHead) out.push(this.lmHead.weight);
    for (const l of this.model.layers) {
      const { qProj, kProj, vProj, oProj } = l.selfAttn;
      for (const lin of [qProj, kProj, vProj, oProj, l.mlp.gateProj, l.mlp.upProj, l.mlp.downProj]) {
        out.push(lin.weight);
        if (lin.bias) out.push(lin.bias);
      }
      out.push(l.inputLayernorm.weight, l.postAttentionLayernorm.weight);
    }
    return out;
  }

  /** Hugging Face's `generate`: prompt ids [N, P] → [N, P + new] (greedy, or sampled with `doSample`). */
  generate(inputIds: Tensor<'int32'>, options: GenerationOptions): Tensor<'int32'> {
    return generate(this, inputIds, options);
  }

  /** {@link generate} with each step's kernels off the JS thread. */
  generateAsync(inputIds: Tensor<'int32'>, options: GenerationOptions): Promise<Tensor<'int32'>> {
    return generateAsync(this, inputIds, options);
  }
}

