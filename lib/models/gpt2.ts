/**
 * GPT-2 (Hugging Face's `GPT2LMHeadModel`): learned position embeddings,
 * pre-norm blocks with LayerNorm, one packed q/k/v projection, a GELU MLP and
 * an LM head tied to the token embedding.
 *
 * Property names give Hugging Face's keys (`transformer.h.0.attn.c_attn.weight`,
 * …). GPT-2's projections are `Conv1D`s: the weight is stored [in, out] and
 * y = x·W + b. Each is re-laid once at load into [out, in] rows (the state
 * dict still shows the [in, out] view), so the GEMM packs it like any Linear
 * weight, and the key/value rows of `c_attn` are a row slice that one GEMM
 * writes straight into the KV cache.
 */
import { Module, parameter } from '../nn/module';
import { ModuleList } from '../nn/container';
import { Embedding } from '../nn/sparse';
import { LayerNorm } from '../nn/linear';
import { normal_ } from '../nn/init';
import { KVCache, SelfAttentionCache } from '../nn/kv-cache';
import { KVPool } from '../nn/kv-pool';
import * as ops from '../ops';
import type { FusedActivation } from '../ops/matmul';
import { Tensor, empty, zeros } from '../tensor';
import { checkInt, formatShape } from '../errors';
import { generate, generateAsync, type GenerationDefaults, type GenerationOptions } from './generation';
import { stepPositionsAndMask } from './step-masks';
import { isKeywordForm, splitModelInputs, type CausalLMOutput, type ModelInputs } from './model-inputs';
import { attendPacked, packedStages, planPackedStep, runStages, type PackedCausalModel, type PackedSequence, type PackedStep } from './packed-step';
import { causalMaskFrom } from '../ops/multi-head-attention';
import { ReplayedDecode } from './decode-program';

type F32 = Tensor<'float32'>;

/** A GPT-2 configuration (Hugging Face's `GPT2Config` fields in camelCase, with the shared generation names). */
export interface GPT2Config {
  vocabSize: number;
  /** n_embd. */
  hiddenSize: number;
  /** n_layer. */
  numHiddenLayers: number;
  /** n_head. */
  numAttentionHeads: number;
  /** n_positions. Default 1024. */
  maxPositionEmbeddings?: number;
  /** n_inner: the MLP width. Default 4 · hiddenSize. */
  intermediateSize?: number;
  /** layer_norm_epsilon. Default 1e-5. */
  layerNormEps?: number;
  /** The MLP activation fused into c_fc's GEMM. Default 'gelu_tanh' (Hugging Face's 'gelu_new'). */
  activation?: Exclude<FusedActivation, 'none'>;
}

/** A config with every default filled in. */
export type ResolvedGPT2Config = Required<GPT2Config>;

/** Fills in defaults and checks the sizes fit together. */
export function resolveGPT2Config(c: GPT2Config): ResolvedGPT2Config {
  const fn = 'GPT2Config';
  if (c === null || typeof c !== 'object') throw new TypeError(`${fn}: argument 'config' must be an object, got ${c === null ? 'null' : typeof c}`);
  const hidden = checkInt(fn, 'hiddenSize', c.hiddenSize, 1);
  const r: ResolvedGPT2Config = {
    vocabSize: checkInt(fn, 'vocabSize', c.vocabSize, 1),
    hiddenSize: hidden,
    numHiddenLayers: checkInt(fn, 'numHiddenLayers', c.numHiddenLayers, 0),
    numAttentionHeads: checkInt(fn, 'numAttentionHeads', c.numAttentionHeads, 1),
    maxPositionEmbeddings: checkInt(fn, 'maxPositionEmbeddings', c.maxPositionEmbeddings ?? 1024, 1),
    intermediateSize: checkInt(fn, 'intermediateSize', c.intermediateSize ?? 4 * hidden, 1),
    layerNormEps: c.layerNormEps ?? 1e-5,
    activation: c.activation ?? 'gelu_tanh',
  };
  if (typeof r.layerNormEps !== 'number' || !(r.layerNormEps > 0)) {
    throw new RangeError(`${fn}: option 'layerNormEps' must be a positive number, got ${String(r.layerNormEps)}`);
  }
  if (!['relu', 'gelu', 'gelu_tanh'].includes(r.activation)) {
    throw new RangeError(`${fn}: option 'activation' must be 'relu', 'gelu' or 'gelu_tanh', got ${JSON.stringify(r.activation)}`);
  }
  if (r.hiddenSize % r.numAttentionHeads !== 0) {
    throw new RangeError(`${fn}: hiddenSize (${r.hiddenSize}) must be divisible by numAttentionHeads (${r.numAttentionHeads})`);
  }
  return r;
}

/**
 * GPT-2's `Conv1D(nf, nx)`: y = x·W + b with `weight` [nx, nf] (the transpose
 * of a Linear's). State dict: `weight` [in, out], `bias` [out].
 */
export class Conv1D extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** [in, out]: after a load, the transposed view of {@link rows}. */
  weight: F32;
  bias: F32;

  constructor(inFeatures: number, outFeatures: number) {
    super();
    this.inFeatures = checkInt('Conv1D', 'inFeatures', inFeatures, 1);
    this.outFeatures = checkInt('Conv1D', 'outFeatures', outFeatures, 1);
    // Hugging Face initialises with N(0, 0.02) and zero bias; loading a checkpoint replaces both.
    this.weight = parameter(normal_(zeros([outFeatures, inFeatures]), 0, 0.02).t());
    this.bias = parameter(new Tensor(new Float32Array(outFeatures), [outFeatures], 'float32'));
  }

  /** The weight as Linear rows [out, in], contiguous (what the GEMM packs once and reuses). */
  get rows(): F32 {
    return this.weight.t();
  }

  /** A loaded [in, out] weight is copied once into [out, in] rows, so every GEMM on it is a packed trans-B GEMM. */
  protected override stateChanged(): void {
    if (!this.weight.t().isContiguous()) {
      const src = this.weight.contiguous().data;
      const nIn = this.inFeatures;
      const nOut = this.outFeatures;
      const rows = new Float32Array(nIn * nOut);
      for (let i = 0; i < nIn; i++) for (let o = 0; o < nOut; o++) rows[o * nIn + i] = src[i * nOut + o]!;
      this.weight = new Tensor(rows, [nOut, nIn], 'float32').t();
    }
  }

  /** x [..., in] → [..., out], with `activation` fused into the GEMM. */
  forward(x: F32, activation: FusedActivation = 'none'): F32 {
    return this.inContext(() => ops.linear(x, this.rows, this.bias, { cacheWeight: true, activation }), false);
  }
}

/** Causal self-attention with GPT-2's packed q/k/v projection `c_attn` and output projection `c_proj`. */
export class GPT2Attention extends Module {
  cAttn: Conv1D;
  cProj: Conv1D;
  readonly #c: ResolvedGPT2Config;

  constructor(c: ResolvedGPT2Config) {
    super();
    this.cAttn = new Conv1D(c.hiddenSize, 3 * c.hiddenSize);
    this.cProj = new Conv1D(c.hiddenSize, c.hiddenSize);
    this.#c = c;
  }

  /**
   * x [N, t, E]; the step's keys and values are appended to `cache`, and each
   * query attends to every cached key allowed by `mask` (float32 [N, 1, t, S],
   * added) or, without one, causally.
   */
  forward(x: F32, cache: KVCache, mask: F32 | null): F32 {
    return this.inContext(() => {
      const c = this.#c;
      const [n, t] = x.shape as [number, number];
      const e = c.hiddenSize;
      const h = c.numAttentionHeads;
      const hd = e / h;
      const rows = this.cAttn.rows; // [3E, E]: q rows, then k, then v
      const bias = this.cAttn.bias;
      const pos = cache.length;
      cache.reserve(this.backend, pos + t);
      // The k and v rows are adjacent, as the cache lays out a position's [k | v]: one GEMM fills the slot.
      const slot = cache.slot(pos, t).transpose(0, 1); // [N, t, 2E]
      ops.linear(x, rows.narrow(0, e, 2 * e), bias.narrow(0, e, 2 * e), { cacheWeight: true, out: slot });
      cache.advance(t);
      const q = ops.linear(x, rows.narrow(0, 0, e), bias.narrow(0, 0, e), { cacheWeight: true });
      const { k, v } = cache.keysValues(); // [S, N, E] views
      const s = k.shape[0]!;
      const heads = (m: F32, len: number): F32 => m.view(len, n, h, hd).permute(1, 2, 0, 3);
      const attn = empty([n, t, e]);
      ops.scaledDotProductAttention(q.view(n, t, h, hd).permute(0, 2, 1, 3), heads(k, s), heads(v, s), {
        out: attn.view(n, t, h, hd).permute(0, 2, 1, 3),
        ...(mask ? { attnMask: mask } : t > 1 && pos > 0 ? { attnMask: causalMaskFrom(pos, t) } : { isCausal: t > 1 }),
      });
      return this.cProj.forward(attn);
    }, false);
  }

  /**
   * A packed step (continuous batching): x [1, T, E] holds the new tokens of several sequences at their own
   * positions (`step`, from planPackedStep); their keys and values go to their rows of this layer's pool rows
   * `kv` [P, 2E], and each sequence's queries attend to its own cached keys there.
   */
  forwardPacked(x: F32, kv: F32, step: PackedStep): F32 {
    return this.inContext(() => {
      const c = this.#c;
      const t = x.shape[1]!;
      const e = c.hiddenSize;
      const h = c.numAttentionHeads;
      const rows = this.cAttn.rows;
      const bias = this.cAttn.bias;
      // One GEMM for the k and v rows of every token, then each row to its sequence's pool row.
      const kvNew = ops.linear(x, rows.narrow(0, e, 2 * e), bias.narrow(0, e, 2 * e), { cacheWeight: true });
      ops.indexCopy(kv, 0, step.rows, kvNew.view(t, 2 * e));
      const q = ops.linear(x, rows.narrow(0, 0, e), bias.narrow(0, 0, e), { cacheWeight: true });
      const attn = empty([1, t, e]);
      attendPacked(q.view(t, h, e / h), kv, h, step, attn.view(t, h, e / h));
      return this.cProj.forward(attn);
    }, false);
  }
}

/** The feed-forward: c_proj(act(c_fc(x))), the activation fused into c_fc's GEMM. */
export class GPT2MLP extends Module {
  cFc: Conv1D;
  cProj: Conv1D;
  readonly #activation: FusedActivation;

  constructor(c: ResolvedGPT2Config) {
    super();
    this.cFc = new Conv1D(c.hiddenSize, c.intermediateSize);
    this.cProj = new Conv1D(c.intermediateSize, c.hiddenSize);
    this.#activation = c.activation;
  }

  forward(x: F32): F32 {
    return this.inContext(() => this.cProj.forward(this.cFc.forward(x, this.#activation)), false);
  }
}

/** One pre-norm block: x + attn(ln_1(x)), then + mlp(ln_2(·)). */
export class GPT2Block extends Module {
  // Hugging Face's keys are `ln_1`/`ln_2`, which no camelCase name maps to.
  ln_1: LayerNorm;
  attn: GPT2Attention;
  ln_2: LayerNorm;
  mlp: GPT2MLP;

  constructor(c: ResolvedGPT2Config) {
    super();
    this.ln_1 = new LayerNorm({ normalizedShape: c.hiddenSize, eps: c.layerNormEps });
    this.attn = new GPT2Attention(c);
    this.ln_2 = new LayerNorm({ normalizedShape: c.hiddenSize, eps: c.layerNormEps });
    this.mlp = new GPT2MLP(c);
  }

  /** `residual` is the stream entering the block; returns the stream leaving it. */
  forward(residual: F32, cache: KVCache, mask: F32 | null): F32 {
    return this.#block(residual, (h) => this.attn.forward(h, cache, mask));
  }

  /** {@link forward} for a packed step over this block's pool rows `kv` (see GPT2Attention.forwardPacked). */
  forwardPacked(residual: F32, kv: F32, step: PackedStep): F32 {
    return this.#block(residual, (h) => this.attn.forwardPacked(h, kv, step));
  }

  #block(residual: F32, attend: (normed: F32) => F32): F32 {
    return this.inContext(() => {
      const attn = attend(this.ln_1.forward(residual));
      const stream = empty(residual.shape);
      // The residual add and ln_2 in one pass; the sum is the stream the MLP adds to.
      const normed = this.ln_2.forwardAdd(attn, residual, stream);
      return ops.add(stream, this.mlp.forward(normed), { out: stream });
    }, false);
  }
}

/** The decoder stack: token and position embeddings, blocks, final norm. Keys `transformer.*`. */
export class GPT2Model extends Module {
  /** Inference only: runs with grad mode off (see Module.differentiable). */
  protected override get differentiable(): boolean {
    return false;
  }
  wte: Embedding;
  wpe: Embedding;
  h: ModuleList<GPT2Block>;
  lnF: LayerNorm;

  constructor(c: ResolvedGPT2Config) {
    super();
    this.wte = new Embedding({ numEmbeddings: c.vocabSize, embeddingDim: c.hiddenSize });
    this.wpe = new Embedding({ numEmbeddings: c.maxPositionEmbeddings, embeddingDim: c.hiddenSize });
    this.h = new ModuleList(Array.from({ length: c.numHiddenLayers }, () => new GPT2Block(c)));
    this.lnF = new LayerNorm({ normalizedShape: c.hiddenSize, eps: c.layerNormEps });
  }
}

/** Options of {@link GPT2LMHeadModel.forward}. */
export interface GPT2ForwardOptions {
  /** [N, S] Hugging Face convention: 1 = token, 0 = padding, over every cached position plus this step's. */
  attentionMask?: Tensor<'int32'> | null;
  /** Caches to append to (from {@link GPT2LMHeadModel.createCache}); default a fresh one (a full forward). */
  cache?: SelfAttentionCache;
  /** Return logits for the last position only (what a decoding step needs). Default false. */
  lastOnly?: boolean;
}

/** GPT-2 with its language-model head (the token embedding, transposed). */
export class GPT2LMHeadModel extends Module implements PackedCausalModel {
  /** Inference only: runs with grad mode off (see Module.differentiable). */
  protected override get differentiable(): boolean {
    return false;
  }
  readonly config: ResolvedGPT2Config;
  transformer: GPT2Model;
  /**
   * Defaults for `generate`'s options (Hugging Face's generation_config: eos list, pad, sampling and beam fields,
   * logits processors), set by AutoModelForCausalLM from the folder; options given to `generate` win.
   */
  generationConfig?: GenerationDefaults;
  /** The recorded one-token step of the last batch-1 cache decoded (lib/models/decode-program.ts). */
  readonly #replayed = new ReplayedDecode();

  constructor(config: GPT2Config) {
    super();
    this.config = resolveGPT2Config(config);
    this.transformer = new GPT2Model(this.config);
  }

  /** Empty KV caches for `batch` sequences, room for `capacity` positions (they grow by doubling). */
  createCache(batch = 1, capacity = 64): SelfAttentionCache {
    const e = this.config.hiddenSize;
    return new SelfAttentionCache(
      Array.from({ length: this.config.numHiddenLayers }, () => new KVCache({ batch, embedDim: e, capacity })),
    );
  }

  /** A K/V pool of `positions` positions for {@link forwardPacked} (continuous batching), preallocated and prefaulted. */
  createKVPool(positions: number, options: { prefault?: boolean } = {}): KVPool {
    return new KVPool({ layers: this.config.numHiddenLayers, kvDim: this.config.hiddenSize, positions, ...options });
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
    const step = planPackedStep('GPT2LMHeadModel.forwardPacked', seqs, pool, { config: c, layers: c.numHiddenLayers, kvDim: c.hiddenSize });
    const tr = this.transformer;
    return yield* packedStages(
      tr.h.length, layersPerStage,
      () => this.inContext(() => ops.add(tr.wte.forward(step.ids), tr.wpe.forward(step.positions)), false),
      (x, from, to) => this.inContext(() => {
        for (let i = from; i < to; i++) x = tr.h.at(i).forwardPacked(x, pool.layer(i), step);
        return x;
      }, false),
      (x) => this.inContext(() => {
        if (step.logitRows.shape[0] === 0) return empty([0, c.vocabSize]);
        const last = ops.embedding(step.logitRows, x.view(x.shape[1]!, c.hiddenSize));
        return ops.linear(tr.lnF.forward(last), tr.wte.weight, null, { cacheWeight: true });
      }, false),
    );
  }

  /**
   * input ids [N, t] (batch-first) → logits [N, t, vocab] (or [N, 1, vocab]
   * with `lastOnly`). With a cache, the ids continue the cached sequences.
   * Positions come from `attentionMask` when given (a left-padded row's first
   * token is at position 0, as Hugging Face's generate numbers them), else
   * they continue the cache.
   */
  forward(inputs: ModelInputs<GPT2ForwardOptions>): CausalLMOutput;
  forward(inputIds: Tensor<'int32'>, options?: GPT2ForwardOptions): F32;
  forward(first: Tensor<'int32'> | ModelInputs<GPT2ForwardOptions>, second?: GPT2ForwardOptions): F32 | CausalLMOutput {
    const [inputIds, options] = splitModelInputs('GPT2LMHeadModel.forward', first, second);
    const logits = this.#logits(inputIds, options);
    return isKeywordForm(first) ? { logits } : logits;
  }

  #logits(inputIds: Tensor<'int32'>, options: GPT2ForwardOptions): F32 {
    return this.inContext(() => {
      const fn = 'GPT2LMHeadModel.forward';
      if (!(inputIds instanceof Tensor) || inputIds.dtype !== 'int32' || inputIds.ndim !== 2) {
        throw new TypeError(`${fn}: argument 'inputIds' must be an int32 Tensor [batch, seq], got ${inputIds instanceof Tensor ? `${inputIds.dtype} ${formatShape(inputIds.shape)}` : typeof inputIds}`);
      }
      if (options === null || typeof options !== 'object') throw new TypeError(`${fn}: argument 'options' must be an object, got ${options === null ? 'null' : typeof options}`);
      const [n, t] = inputIds.shape as [number, number];
      const cache = options.cache ?? this.createCache(n, t);
      if (!(cache instanceof SelfAttentionCache) || cache.layers.length !== this.config.numHiddenLayers) {
        throw new TypeError(`${fn}: option 'cache' must be a SelfAttentionCache from createCache (${this.config.numHiddenLayers} layers)`);
      }
      const pos = cache.length;
      if (cache.layers.length && cache.layers[0]!.batch !== n) {
        throw new RangeError(`${fn}: the cache holds ${cache.layers[0]!.batch} sequences, inputIds ${n}`);
      }
      if (pos + t > this.config.maxPositionEmbeddings) {
        throw new RangeError(`${fn}: position ${pos + t} exceeds n_positions ${this.config.maxPositionEmbeddings}`);
      }
      if (n === 1 && t === 1 && !options.attentionMask) {
        // One token of one sequence: the recorded step replayed (lib/models/decode-program.ts), when it applies.
        const tr = this.transformer;
        const logits = this.#replayed.step(this.backend, inputIds, cache, tr.h.length, this.parameters(), this.config.vocabSize, (s, kv) => {
          let x = ops.add(tr.wte.forward(s.ids), tr.wpe.forward(s.positions));
          for (let i = 0; i < tr.h.length; i++) x = tr.h.at(i).forwardPacked(x, kv[i]!, s);
          return ops.linear(tr.lnF.forward(x.view(1, this.config.hiddenSize)), tr.wte.weight, null, { cacheWeight: true });
        });
        if (logits) return logits;
      }
      const stepped = stepPositionsAndMask(fn, options.attentionMask ?? null, n, t, pos);
      const { mask } = stepped;
      // Learned positions are looked up by id, so without a mask they are pos … pos + t − 1 for every row.
      const positions = stepped.positions ?? new Tensor(Int32Array.from({ length: n * t }, (_, k) => pos + (k % t)), [n, t], 'int32');
      const tr = this.transformer;
      let x = ops.add(tr.wte.forward(inputIds), tr.wpe.forward(positions));
      let i = 0;
      for (const block of tr.h) x = block.forward(x, cache.layers[i++]!, mask);
      if (!tr.h.length) cache.advanceEmpty(t);
      if (options.lastOnly && t > 1) x = x.narrow(1, t - 1, 1);
      return ops.linear(tr.lnF.forward(x), tr.wte.weight, null, { cacheWeight: true });
    }, false);
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

type Json = Record<string, unknown>;

/** Hugging Face `activation_function` names → the activation fused into c_fc's GEMM. */
const ACTIVATION_FUNCTIONS: Record<string, Exclude<FusedActivation, 'none'>> = {
  // All three are the tanh approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), written differently.
  gelu_new: 'gelu_tanh', gelu_pytorch_tanh: 'gelu_tanh', gelu_fast: 'gelu_tanh',
  gelu: 'gelu', gelu_python: 'gelu', relu: 'relu',
};

/**
 * The GPT-2 configuration of a `config.json` (`model_type: 'gpt2'`). Fields
 * attnode does not compute (cross-attention, per-layer attention scaling)
 * are errors naming the field rather than silently different outputs.
 */
export function gpt2ConfigFromJson(c: Json, file = 'config.json'): GPT2Config {
  const int = (key: string, min: number, dflt?: number): number => {
    const v = c[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
      throw new Error(`${file}: field '${key}' must be an integer >= ${min}, got ${JSON.stringify(c[key])}`);
    }
    return v;
  };
  const eps = c['layer_norm_epsilon'] ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0) || !Number.isFinite(eps)) {
    throw new Error(`${file}: field 'layer_norm_epsilon' must be a positive number, got ${JSON.stringify(c['layer_norm_epsilon'])}`);
  }
  const actName = c['activation_function'] ?? 'gelu_new';
  const activation = typeof actName === 'string' ? ACTIVATION_FUNCTIONS[actName] : undefined;
  if (!activation || !Object.prototype.hasOwnProperty.call(ACTIVATION_FUNCTIONS, actName as string)) {
    throw new Error(`${file}: field 'activation_function' ${JSON.stringify(actName)} is not supported (supported: ${Object.keys(ACTIVATION_FUNCTIONS).join(', ')})`);
  }
  // Attention scaled other than by 1/√head_dim (unscaled, or also by 1/(layer + 1)), cross-attention and an untied head
  // change the outputs: refused. reorder_and_upcast_attn only moves the float32 scaling (attnode computes in float32
  // throughout), so either value gives the same result.
  for (const [key, ok] of [['scale_attn_weights', true], ['scale_attn_by_inverse_layer_idx', false], ['add_cross_attention', false], ['tie_word_embeddings', true]] as const) {
    if (c[key] !== undefined && c[key] !== null && c[key] !== ok) {
      throw new Error(`${file}: field '${key}' ${JSON.stringify(c[key])} is not supported (only ${String(ok)})`);
    }
  }
  if (c['reorder_and_upcast_attn'] !== undefined && typeof c['reorder_and_upcast_attn'] !== 'boolean') {
    throw new Error(`${file}: field 'reorder_and_upcast_attn' must be a boolean, got ${JSON.stringify(c['reorder_and_upcast_attn'])}`);
  }
  const hidden = int('n_embd', 1, 768);
  const inner = c['n_inner'];
  return {
    vocabSize: int('vocab_size', 1, 50257),
    hiddenSize: hidden,
    numHiddenLayers: int('n_layer', 0, 12),
    numAttentionHeads: int('n_head', 1, 12),
    maxPositionEmbeddings: int('n_positions', 1, 1024),
    intermediateSize: inner === null || inner === undefined ? 4 * hidden : int('n_inner', 1),
    layerNormEps: eps,
    activation,
  };
}

/**
 * A GPT-2 checkpoint's tensors under {@link GPT2LMHeadModel}'s keys: the
 * bare `GPT2Model` keys of OpenAI's checkpoints (`h.0.…`, `wte.weight`) get the
 * `transformer.` prefix, and what is not a parameter here is dropped: the
 * tied `lm_head.weight` copy and the causal-mask buffers older checkpoints
 * saved (`h.N.attn.bias` [1, 1, P, P], `h.N.attn.masked_bias`).
 */
export function gpt2StateDict(weights: Record<string, Tensor>): Record<string, Tensor> {
  const bare = !Object.keys(weights).some((k) => k.startsWith('transformer.'));
  const out: Record<string, Tensor> = {};
  for (const [key, t] of Object.entries(weights)) {
    if (key === 'lm_head.weight') continue;
    const k = bare ? `transformer.${key}` : key;
    if (/^transformer\.h\.\d+\.attn\.(masked_bias|bias)$/.test(k)) continue;
    out[k] = t;
  }
  return out;
}
