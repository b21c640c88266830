import { Module } from './module';
import { Linear, LayerNorm } from './linear';
import { RMSNorm } from './rms-norm';
import { ReplayedForward } from '../forward-program';
import { ModuleList } from './container';
import { MultiheadAttention, type MaskTensor } from './multihead-attention';
import { Tensor } from '../tensor';
import { checkInt, formatShape } from '../errors';
import * as ops from '../ops';
import { xavierUniform_ } from './init';
import { boolOption, checkOptions, numberOption } from './options';
import { DecoderCache, KVCache, SelfAttentionCache, type DecoderLayerCache } from './kv-cache';

/** Feed-forward activation of the Transformer layers, by name (fused into the first feed-forward GEMM). */
export type TransformerActivation = 'relu' | 'gelu';

/**
 * A feed-forward activation as a function, as PyTorch takes a callable: `ops.relu` and `ops.gelu` are the named
 * activations (fused), any other function runs on the first feed-forward layer's output.
 */
export type ActivationFunction = (x: Tensor<'float32'>) => Tensor<'float32'>;

/** Options shared by {@link TransformerEncoderLayer} and {@link TransformerDecoderLayer} (PyTorch's, in camelCase). */
export interface TransformerLayerOptions {
  dModel: number;
  nhead: number;
  /** Default 2048. */
  dimFeedforward?: number;
  /**
   * Dropout in training mode, where PyTorch applies it: on the attention probabilities, after each attention and
   * feed-forward block (before the residual add), and inside the feed-forward block. Default 0.1, as PyTorch: call
   * `eval()` before inference.
   */
  dropout?: number;
  /** Default 'relu'; a function as PyTorch takes `F.gelu` or any callable (see {@link ActivationFunction}). */
  activation?: TransformerActivation | ActivationFunction;
  /** Default 1e-5. */
  layerNormEps?: number;
  /** Inputs are [batch, seq, feature] (default false: [seq, batch, feature]). */
  batchFirst?: boolean;
  /** Pre-norm (LayerNorm before attention and feed-forward) instead of post-norm (default false). */
  normFirst?: boolean;
  /** Biases in the linear layers and attention (default true). */
  bias?: boolean;
}

const LAYER_KEYS = [
  'dModel', 'nhead', 'dimFeedforward', 'dropout', 'activation', 'layerNormEps', 'batchFirst', 'normFirst', 'bias',
] as const;

/** The layer options with defaults applied and checked (an activation function of ops' own is its name). */
export interface ResolvedLayerOptions {
  dModel: number;
  nhead: number;
  dimFeedforward: number;
  dropout: number;
  activation: TransformerActivation | ActivationFunction;
  layerNormEps: number;
  batchFirst: boolean;
  normFirst: boolean;
  bias: boolean;
}

/** `activation` as a name or a function; ops' own relu and gelu become their names (the fused path). */
function activationOption(name: string, value: unknown): TransformerActivation | ActivationFunction {
  if (value === undefined) return 'relu';
  if (value === ops.relu) return 'relu';
  if (value === ops.gelu) return 'gelu';
  if (value === 'relu' || value === 'gelu' || typeof value === 'function') return value as TransformerActivation | ActivationFunction;
  throw new TypeError(`${name}: option 'activation' must be 'relu', 'gelu' or a function of a tensor, got ${JSON.stringify(value) ?? typeof value}`);
}

/** Applies the defaults to layer options and checks them (PyTorch's, in camelCase). @throws TypeError, RangeError */
export function resolveLayerOptions(name: string, o: TransformerLayerOptions): ResolvedLayerOptions {
  checkOptions(name, o, LAYER_KEYS);
  const activation = activationOption(name, o.activation);
  const dropout = numberOption(name, 'dropout', o.dropout, 0.1, { min: 0, max: 1, maxExclusive: true });
  const eps = numberOption(name, 'layerNormEps', o.layerNormEps, 1e-5, { min: 0 });
  return {
    dModel: checkInt(name, 'dModel', o.dModel, 1),
    nhead: checkInt(name, 'nhead', o.nhead, 1),
    dimFeedforward: o.dimFeedforward === undefined ? 2048 : checkInt(name, 'dimFeedforward', o.dimFeedforward, 1),
    dropout,
    activation,
    layerNormEps: eps,
    batchFirst: boolOption(name, 'batchFirst', o.batchFirst, false),
    normFirst: boolOption(name, 'normFirst', o.normFirst, false),
    bias: boolOption(name, 'bias', o.bias, true),
  };
}

/** A value's type for a message: `a Linear`, `null`, `number`, `an array`. */
function describeValue(v: unknown): string {
  if (v instanceof Module) return `a ${v.constructor.name}`;
  if (v === null) return 'null';
  return Array.isArray(v) ? 'an array' : typeof v;
}

/** A Transformer layer as the blocks below see it. */
interface LayerParts {
  linear1: Linear;
  linear2: Linear;
  activation: TransformerActivation | ActivationFunction;
  backend: Module['backend'];
  training: boolean;
  options: Readonly<ResolvedLayerOptions>;
}

/**
 * Whether an encoder layer's inference forward may be recorded and replayed (lib/forward-program.ts): its
 * activation is a named one (a function may do anything in JS, which a replay would skip).
 */
function replayable(layer: TransformerEncoderLayer): boolean {
  return typeof layer.activation === 'string';
}

/** PyTorch's dropout after a block (dropout1/2/3) and inside the feed-forward block: only in training mode. */
function drop(layer: LayerParts, x: Tensor<'float32'>): Tensor<'float32'> {
  return layer.training && layer.options.dropout > 0 ? ops.dropout(x, layer.options.dropout, { backend: layer.backend }) : x;
}

/**
 * The feed-forward block: dropout(linear2(dropout(act(linear1(x))))), a named activation fused into linear1's GEMM,
 * a function applied to its output.
 */
function feedForward(layer: LayerParts, x: Tensor<'float32'>): Tensor<'float32'> {
  const { weight, bias } = layer.linear1;
  const act = layer.activation;
  const hidden = typeof act === 'function'
    ? act(ops.linear(x, weight, bias, { backend: layer.backend, cacheWeight: true }))
    : ops.linear(x, weight, bias, { backend: layer.backend, activation: act, cacheWeight: true });
  return drop(layer, layer.linear2.forward(drop(layer, hidden)));
}

function checkInput(fn: string, arg: string, x: unknown, dModel: number): Tensor<'float32'> {
  if (!(x instanceof Tensor) || x.dtype !== 'float32') {
    throw new TypeError(`${fn}: argument '${arg}' must be a float32 Tensor, got ${x instanceof Tensor ? x.dtype : typeof x}`);
  }
  if ((x.ndim !== 2 && x.ndim !== 3) || x.shape[x.ndim - 1] !== dModel) {
    throw new RangeError(`${fn}: argument '${arg}' must have shape [seq, batch, ${dModel}] / [batch, seq, ${dModel}] (or [seq, ${dModel}] unbatched), got ${formatShape(x.shape)}`);
  }
  return x;
}

/** Options of the `createCache` methods: the size of the self-attention key/value caches. */
export interface StepCacheOptions {
  /** Positions allocated up front (default 16); a cache doubles when it fills. */
  capacity?: number;
}

/** Options of {@link TransformerEncoderLayer.createCache} / {@link TransformerEncoder.createCache}. */
export interface SelfAttentionCacheOptions extends StepCacheOptions {
  /** Sequences decoded side by side (default 1; 1 for unbatched input). */
  batch?: number;
}

/** Options of {@link TransformerEncoderLayer.forwardStep} / {@link TransformerEncoder.forwardStep}. */
export interface CausalStepOptions {
  /** [batch, S] over every position attended to (all cached ones plus the step's): `true` / -inf marks padding. */
  srcKeyPaddingMask?: MaskTensor | null;
}

/** Options of {@link TransformerDecoderLayer.forwardStep} / {@link TransformerDecoder.forwardStep}. */
export interface DecoderStepOptions {
  /** [batch, T] over every target position attended to (all cached ones plus the step's). */
  tgtKeyPaddingMask?: MaskTensor | null;
  /** [batch, S] over the memory positions, as in `forward`. */
  memoryKeyPaddingMask?: MaskTensor | null;
}

/** Forward options of {@link TransformerEncoderLayer} (PyTorch's keyword arguments). */
export interface EncoderLayerForwardOptions {
  srcMask?: MaskTensor | null;
  srcKeyPaddingMask?: MaskTensor | null;
  isCausal?: boolean;
}

/**
 * PyTorch's `nn.TransformerEncoderLayer`: self-attention and feed-forward
 * blocks with residual connections, post-norm or pre-norm (`normFirst`).
 * State dict: `self_attn.*`, `linear1.*`, `linear2.*`, `norm1.*`, `norm2.*`.
 */
export class TransformerEncoderLayer extends Module {
  readonly options: Readonly<ResolvedLayerOptions>;
  readonly activation: TransformerActivation | ActivationFunction;
  readonly normFirst: boolean;
  selfAttn: MultiheadAttention;
  linear1: Linear;
  linear2: Linear;
  norm1: LayerNorm;
  norm2: LayerNorm;
  /** Inference calls replayed as one native call (lib/forward-program.ts). */
  readonly #replayed = new ReplayedForward();

  constructor(options: TransformerLayerOptions) {
    super();
    const o = (this.options = Object.freeze(resolveLayerOptions('TransformerEncoderLayer', options)));
    this.activation = o.activation;
    this.normFirst = o.normFirst;
    this.selfAttn = new MultiheadAttention({ embedDim: o.dModel, numHeads: o.nhead, dropout: o.dropout, bias: o.bias, batchFirst: o.batchFirst });
    this.linear1 = new Linear({ inFeatures: o.dModel, outFeatures: o.dimFeedforward, bias: o.bias });
    this.linear2 = new Linear({ inFeatures: o.dimFeedforward, outFeatures: o.dModel, bias: o.bias });
    this.norm1 = new LayerNorm({ normalizedShape: o.dModel, eps: o.layerNormEps, bias: o.bias });
    this.norm2 = new LayerNorm({ normalizedShape: o.dModel, eps: o.layerNormEps, bias: o.bias });
  }

  /** src [S, N, E] ([N, S, E] with batchFirst, [S, E] unbatched) → same shape. */
  forward(src: Tensor<'float32'>, options: EncoderLayerForwardOptions = {}): Tensor<'float32'> {
    return this.inContext(() => {
      const fn = 'TransformerEncoderLayer.forward';
      checkOptions(fn, options, ['srcMask', 'srcKeyPaddingMask', 'isCausal']);
      checkInput(fn, 'src', src, this.options.dModel);
      const isCausal = options.isCausal ?? false;
      const body = (s: Tensor<'float32'>): Tensor<'float32'> => this.#block(s, (x) =>
        this.selfAttn.forward(x, x, x, {
          attnMask: options.srcMask ?? null,
          keyPaddingMask: options.srcKeyPaddingMask ?? null,
          needWeights: false,
          isCausal,
        }).output);
      const eligible = !options.srcMask && !options.srcKeyPaddingMask && replayable(this);
      return this.#replayed.forward(this, src, eligible, `causal=${isCausal}`, body);
    });
  }

  /** An empty self-attention cache for {@link forwardStep} (causal, decoder-only use of this layer). */
  createCache(options: SelfAttentionCacheOptions = {}): KVCache {
    checkOptions('TransformerEncoderLayer.createCache', options, ['batch', 'capacity']);
    return this.selfAttn.createCache(options);
  }

  /**
   * Causal incremental step (decoder-only use): src [t, N, E] holds the next t
   * positions; they attend to every cached position and causally among
   * themselves, exactly the rows `forward(prefix, { isCausal: true })` gives
   * for them. Their keys/values are appended to `cache`.
   */
  forwardStep(src: Tensor<'float32'>, cache: KVCache, options: CausalStepOptions = {}): Tensor<'float32'> {
    const fn = 'TransformerEncoderLayer.forwardStep';
    checkOptions(fn, options, ['srcKeyPaddingMask']);
    checkInput(fn, 'src', src, this.options.dModel);
    const keyPaddingMask = options.srcKeyPaddingMask ?? null;
    return this.inStep(() => this.#block(src, (x) => this.selfAttn.forwardStep(x, cache, { keyPaddingMask })));
  }

  /** The residual structure (post-norm or pre-norm) around a self-attention `sa` and the feed-forward block. */
  #block(src: Tensor<'float32'>, sa: (x: Tensor<'float32'>) => Tensor<'float32'>): Tensor<'float32'> {
    const be = { backend: this.backend };
    let x = src;
    if (this.normFirst) {
      // x += sa(norm1(x)); x += ff(norm2(x)), the first add fused with norm2. The sum overwrites the
      // attention output h in place (h is a fresh out_proj result used nowhere else).
      const h = drop(this, sa(this.norm1.forward(x)));
      const normed = this.norm2.forwardAdd(x, h, h);
      x = ops.add(h, feedForward(this, normed), be);
    } else {
      x = this.norm1.forwardAdd(x, drop(this, sa(x)));
      x = this.norm2.forwardAdd(x, feedForward(this, x));
    }
    return x;
  }
}

/** Forward options of {@link TransformerDecoderLayer} (PyTorch's keyword arguments). */
export interface DecoderLayerForwardOptions {
  tgtMask?: MaskTensor | null;
  memoryMask?: MaskTensor | null;
  tgtKeyPaddingMask?: MaskTensor | null;
  memoryKeyPaddingMask?: MaskTensor | null;
  tgtIsCausal?: boolean;
  memoryIsCausal?: boolean;
}

const DECODER_FORWARD_KEYS = [
  'tgtMask', 'memoryMask', 'tgtKeyPaddingMask', 'memoryKeyPaddingMask', 'tgtIsCausal', 'memoryIsCausal',
] as const;

/**
 * PyTorch's `nn.TransformerDecoderLayer`: self-attention, cross-attention over
 * the encoder memory, and feed-forward. State dict: `self_attn.*`,
 * `multihead_attn.*`, `linear1.*`, `linear2.*`, `norm1.*`, `norm2.*`, `norm3.*`.
 */
export class TransformerDecoderLayer extends Module {
  readonly options: Readonly<ResolvedLayerOptions>;
  readonly activation: TransformerActivation | ActivationFunction;
  readonly normFirst: boolean;
  selfAttn: MultiheadAttention;
  multiheadAttn: MultiheadAttention;
  linear1: Linear;
  linear2: Linear;
  norm1: LayerNorm;
  norm2: LayerNorm;
  norm3: LayerNorm;

  constructor(options: TransformerLayerOptions) {
    super();
    const o = (this.options = Object.freeze(resolveLayerOptions('TransformerDecoderLayer', options)));
    this.activation = o.activation;
    this.normFirst = o.normFirst;
    const mha = { embedDim: o.dModel, numHeads: o.nhead, dropout: o.dropout, bias: o.bias, batchFirst: o.batchFirst };
    this.selfAttn = new MultiheadAttention(mha);
    this.multiheadAttn = new MultiheadAttention(mha);
    this.linear1 = new Linear({ inFeatures: o.dModel, outFeatures: o.dimFeedforward, bias: o.bias });
    this.linear2 = new Linear({ inFeatures: o.dimFeedforward, outFeatures: o.dModel, bias: o.bias });
    this.norm1 = new LayerNorm({ normalizedShape: o.dModel, eps: o.layerNormEps, bias: o.bias });
    this.norm2 = new LayerNorm({ normalizedShape: o.dModel, eps: o.layerNormEps, bias: o.bias });
    this.norm3 = new LayerNorm({ normalizedShape: o.dModel, eps: o.layerNormEps, bias: o.bias });
  }

  /** tgt [T, N, E], memory [S, N, E] (batch-first or unbatched alike) → shape of tgt. */
  forward(tgt: Tensor<'float32'>, memory: Tensor<'float32'>, options: DecoderLayerForwardOptions = {}): Tensor<'float32'> {
    return this.inContext(() => {
      const fn = 'TransformerDecoderLayer.forward';
      checkOptions(fn, options, DECODER_FORWARD_KEYS);
      checkInput(fn, 'tgt', tgt, this.options.dModel);
      checkInput(fn, 'memory', memory, this.options.dModel);
      const sa = (x: Tensor<'float32'>): Tensor<'float32'> =>
        this.selfAttn.forward(x, x, x, {
          attnMask: options.tgtMask ?? null,
          keyPaddingMask: options.tgtKeyPaddingMask ?? null,
          needWeights: false,
          isCausal: options.tgtIsCausal ?? false,
        }).output;
      const ca = (x: Tensor<'float32'>): Tensor<'float32'> =>
        this.multiheadAttn.forward(x, memory, memory, {
          attnMask: options.memoryMask ?? null,
          keyPaddingMask: options.memoryKeyPaddingMask ?? null,
          needWeights: false,
          isCausal: options.memoryIsCausal ?? false,
        }).output;
      return this.#block(tgt, sa, ca);
    });
  }

  /**
   * The caches for incremental decoding against `memory` [S, N, E]: the
   * cross-attention keys/values of the memory, projected once here, and an
   * empty self-attention cache.
   */
  createCache(memory: Tensor<'float32'>, options: StepCacheOptions = {}): DecoderLayerCache {
    const fn = 'TransformerDecoderLayer.createCache';
    checkOptions(fn, options, ['capacity']);
    checkInput(fn, 'memory', memory, this.options.dModel);
    const crossAttn = this.multiheadAttn.precomputeKV(memory);
    return { selfAttn: this.selfAttn.createCache({ batch: crossAttn.batch, ...options }), crossAttn };
  }

  /**
   * Incremental step: tgt [t, N, E] holds the next t target positions; they
   * attend to every cached target position and causally among themselves,
   * then to the whole memory. Gives the rows `forward(prefix, memory,
   * { tgtIsCausal: true })` gives for them; their keys/values are appended to
   * `cache.selfAttn`.
   */
  forwardStep(tgt: Tensor<'float32'>, cache: DecoderLayerCache, options: DecoderStepOptions = {}): Tensor<'float32'> {
    const fn = 'TransformerDecoderLayer.forwardStep';
    checkOptions(fn, options, ['tgtKeyPaddingMask', 'memoryKeyPaddingMask']);
    checkInput(fn, 'tgt', tgt, this.options.dModel);
    const tgtPadding = options.tgtKeyPaddingMask ?? null;
    const memoryPadding = options.memoryKeyPaddingMask ?? null;
    const step = (): Tensor<'float32'> => this.#block(
      tgt,
      (x) => this.selfAttn.forwardStep(x, cache.selfAttn, { keyPaddingMask: tgtPadding }),
      (x) => this.multiheadAttn.forwardStep(x, cache.crossAttn, { keyPaddingMask: memoryPadding }),
    );
    return this.inStep(step);
  }

  /** The residual structure (post-norm or pre-norm) around self-attention `sa`, cross-attention `ca` and feed-forward. */
  #block(
    tgt: Tensor<'float32'>,
    sa: (x: Tensor<'float32'>) => Tensor<'float32'>,
    ca: (x: Tensor<'float32'>) => Tensor<'float32'>,
  ): Tensor<'float32'> {
    const be = { backend: this.backend };
    let x = tgt;
    if (this.normFirst) {
      // x += sa(norm1(x)); x += ca(norm2(x)); x += ff(norm3(x)), the first two adds fused with the next
      // norm, each sum stored in place over its (fresh, otherwise unused) attention output.
      const h1 = drop(this, sa(this.norm1.forward(x)));
      const n2 = this.norm2.forwardAdd(x, h1, h1);
      const h2 = drop(this, ca(n2));
      const n3 = this.norm3.forwardAdd(h1, h2, h2);
      x = ops.add(h2, feedForward(this, n3), be);
    } else {
      x = this.norm1.forwardAdd(x, drop(this, sa(x)));
      x = this.norm2.forwardAdd(x, drop(this, ca(x)));
      x = this.norm3.forwardAdd(x, feedForward(this, x));
    }
    return x;
  }
}

/** A module that can be a stack's final norm: any module mapping a tensor to one of the same shape (PyTorch takes any module). */
export type StackNorm = Module & { forward(x: Tensor<'float32'>): Tensor<'float32'> };

/**
 * A stack's final norm: a module as PyTorch takes it (`norm: new nn.LayerNorm({ normalizedShape: dModel })`, an
 * `nn.RMSNorm`, ...; used as it is, not copied), `true` (a LayerNorm with the layers' eps and bias, which is what
 * nn.Transformer builds) or the options of that LayerNorm (default eps 1e-5, with bias).
 */
export type StackNormOption = boolean | { eps?: number; bias?: boolean } | StackNorm;

/** Options of {@link TransformerEncoder} / {@link TransformerDecoder}. */
export interface TransformerStackOptions<L extends Module = Module> {
  /**
   * Options of every layer, or a layer to copy `numLayers` times (as PyTorch
   * deep-copies `encoder_layer`: every copy starts with that layer's weights).
   * With options, one layer is built from them and copied the same way, so
   * the layers start equal, as in PyTorch (nn.Transformer then redraws every
   * matrix, leaving the vectors equal across layers, as PyTorch's does).
   */
  layer: TransformerLayerOptions | L;
  numLayers: number;
  /** A final norm (state dict `norm.*`): a module, or true / LayerNorm options for a `LayerNorm(dModel)`. Default none. */
  norm?: StackNormOption | null;
}

/** Options of {@link TransformerEncoder}: the stack's, plus PyTorch's fast-path switches. */
export interface TransformerEncoderOptions extends TransformerStackOptions<TransformerEncoderLayer> {
  /** PyTorch's nested-tensor fast path for padded batches; accepted for PyTorch code, results do not depend on it. */
  enableNestedTensor?: boolean;
  /** PyTorch 2's check of masks for the fast path; accepted for PyTorch code, results do not depend on it. */
  maskCheck?: boolean;
}

/** The layer options and (when a layer instance was given) the state every copy starts from. */
function stackLayer<L extends TransformerEncoderLayer | TransformerDecoderLayer>(
  name: string,
  layer: TransformerLayerOptions | L,
  kind: new (o: TransformerLayerOptions) => L,
): { options: TransformerLayerOptions; make: () => L } {
  if (layer instanceof kind) {
    const state = layer.stateDict();
    return {
      options: layer.options,
      make: () => {
        const copy = new kind(layer.options);
        // detach(): a clone of a parameter in grad mode would be a non-leaf with a history; every copy's
        // tensors must be leaves of their own.
        copy.loadStateDict(Object.fromEntries(Object.entries(state).map(([k, t]) => [k, t.detach().clone()])));
        return copy;
      },
    };
  }
  if (layer instanceof Module || layer === null || typeof layer !== 'object' || Array.isArray(layer)) {
    const got = layer instanceof Module ? `a ${layer.constructor.name}` : layer === null ? 'null' : Array.isArray(layer) ? 'an array' : typeof layer;
    throw new TypeError(`${name}: option 'layer' must be a ${kind.name} or its options, got ${got}`);
  }
  // As PyTorch's stacks (_get_clones): one layer is built and every layer starts as a copy of it.
  let built: L;
  try {
    built = new kind(layer);
  } catch (e) {
    if (e instanceof TypeError) throw new TypeError(`${name}: option 'layer': ${e.message}`);
    if (e instanceof RangeError) throw new RangeError(`${name}: option 'layer': ${e.message}`);
    throw e;
  }
  return stackLayer(name, built, kind);
}

/** What both stacks are made of: `numLayers` copies of a layer and an optional final norm. */
function buildStack<L extends TransformerEncoderLayer | TransformerDecoderLayer>(
  name: string,
  options: TransformerStackOptions<L>,
  kind: new (o: TransformerLayerOptions) => L,
  extraKeys: readonly string[] = [],
): { numLayers: number; batchFirst: boolean; layers: L[]; norm: StackNorm | null } {
  checkOptions(name, options, ['layer', 'numLayers', 'norm', ...extraKeys]);
  for (const key of extraKeys) boolOption(name, key, (options as unknown as Record<string, unknown>)[key], true);
  const numLayers = checkInt(name, 'numLayers', options.numLayers, 0);
  const spec = stackLayer(name, options.layer, kind);
  const o = resolveLayerOptions(`${name}.layer`, spec.options);
  const layers = Array.from({ length: numLayers }, () => spec.make());
  return { numLayers, batchFirst: o.batchFirst, layers, norm: stackNorm(name, options.norm, o) };
}

function stackNorm(name: string, norm: StackNormOption | null | undefined, o: ResolvedLayerOptions): StackNorm | null {
  if (norm === undefined || norm === null || norm === false) return null;
  if (norm === true) return new LayerNorm({ normalizedShape: o.dModel, eps: o.layerNormEps, bias: o.bias });
  if (norm instanceof Module) {
    if (typeof (norm as { forward?: unknown }).forward !== 'function') {
      throw new TypeError(`${name}: option 'norm' must be a module with a forward(x), got a ${norm.constructor.name}`);
    }
    const shape = (norm as { normalizedShape?: unknown }).normalizedShape;
    if (Array.isArray(shape) && (shape.length !== 1 || shape[0] !== o.dModel)) {
      throw new RangeError(`${name}: option 'norm' normalizes shape [${shape.join(', ')}], but the layers' dModel is ${o.dModel}`);
    }
    return norm;
  }
  if (typeof norm === 'object' && !Array.isArray(norm)) {
    const what = `${name}: option 'norm'`;
    checkOptions(what, norm, ['eps', 'bias']);
    return new LayerNorm({
      normalizedShape: o.dModel, eps: numberOption(what, 'eps', norm.eps, 1e-5, { min: 0 }), bias: boolOption(what, 'bias', norm.bias, true),
    });
  }
  throw new TypeError(`${name}: option 'norm' must be a norm module, a boolean or { eps, bias }, got ${JSON.stringify(norm) ?? typeof norm}`);
}

/** Forward options of {@link TransformerEncoder} (PyTorch's keyword arguments). */
export interface EncoderForwardOptions {
  mask?: MaskTensor | null;
  srcKeyPaddingMask?: MaskTensor | null;
  isCausal?: boolean;
}

/** PyTorch's `nn.TransformerEncoder`: `numLayers` encoder layers and an optional final norm. State dict: `layers.<i>.*`, `norm.*`. */
export class TransformerEncoder extends Module {
  readonly numLayers: number;
  /** The layers' batchFirst: which axis of a step's input counts its positions. */
  readonly #batchFirst: boolean;
  layers: ModuleList<TransformerEncoderLayer>;
  norm: StackNorm | null;
  /** Inference calls replayed as one native call (lib/forward-program.ts). */
  readonly #replayed = new ReplayedForward();

  constructor(options: TransformerEncoderOptions) {
    super();
    const stack = buildStack('TransformerEncoder', options, TransformerEncoderLayer, ['enableNestedTensor', 'maskCheck']);
    this.numLayers = stack.numLayers;
    this.#batchFirst = stack.batchFirst;
    this.layers = new ModuleList(stack.layers);
    this.norm = stack.norm;
  }

  forward(src: Tensor<'float32'>, options: EncoderForwardOptions = {}): Tensor<'float32'> {
    return this.inContext(() => {
      checkOptions('TransformerEncoder.forward', options, ['mask', 'srcKeyPaddingMask', 'isCausal']);
      const isCausal = options.isCausal ?? false;
      const body = (s: Tensor<'float32'>): Tensor<'float32'> => {
        let x = s;
        for (const layer of this.layers) {
          x = layer.forward(x, {
            srcMask: options.mask ?? null,
            srcKeyPaddingMask: options.srcKeyPaddingMask ?? null,
            isCausal,
          });
        }
        return this.norm ? this.norm.forward(x) : x;
      };
      // Checked as the first layer checks it, so a bad input gets the same error on both paths.
      if (this.numLayers > 0) checkInput('TransformerEncoderLayer.forward', 'src', src, this.layers.at(0).options.dModel);
      const eligible = this.numLayers > 0 && !options.mask && !options.srcKeyPaddingMask &&
        [...this.layers].every(replayable) && (this.norm === null || this.norm instanceof LayerNorm || this.norm instanceof RMSNorm);
      return this.#replayed.forward(this, src, eligible, `causal=${isCausal}`, body);
    });
  }

  /** Empty per-layer caches for {@link forwardStep} (causal, decoder-only use of the stack). */
  createCache(options: SelfAttentionCacheOptions = {}): SelfAttentionCache {
    checkOptions('TransformerEncoder.createCache', options, ['batch', 'capacity']);
    return new SelfAttentionCache([...this.layers].map((l) => l.createCache(options)));
  }

  /**
   * Causal incremental step through every layer and the final norm: the rows
   * `forward(prefix, { isCausal: true })` gives for the step's t positions.
   */
  forwardStep(src: Tensor<'float32'>, cache: SelfAttentionCache, options: CausalStepOptions = {}): Tensor<'float32'> {
    const fn = 'TransformerEncoder.forwardStep';
    checkOptions(fn, options, ['srcKeyPaddingMask']);
    if (!(cache instanceof SelfAttentionCache) || cache.layers.length !== this.numLayers) {
      throw new TypeError(`${fn}: argument 'cache' must be a SelfAttentionCache from this stack's createCache()`);
    }
    return this.inStep(() => {
      let x = src;
      let i = 0;
      for (const layer of this.layers) x = layer.forwardStep(x, cache.layers[i++]!, options);
      if (this.numLayers === 0) cache.advanceEmpty(src.shape[src.ndim === 3 && this.#batchFirst ? 1 : 0]!);
      return this.norm ? this.norm.forward(x) : x;
    });
  }
}

/** PyTorch's `nn.TransformerDecoder`: `numLayers` decoder layers and an optional final norm. State dict: `layers.<i>.*`, `norm.*`. */
export class TransformerDecoder extends Module {
  readonly numLayers: number;
  /** The layers' batchFirst: which axis of a step's input counts its positions. */
  readonly #batchFirst: boolean;
  layers: ModuleList<TransformerDecoderLayer>;
  norm: StackNorm | null;

  constructor(options: TransformerStackOptions<TransformerDecoderLayer>) {
    super();
    const stack = buildStack('TransformerDecoder', options, TransformerDecoderLayer);
    this.numLayers = stack.numLayers;
    this.#batchFirst = stack.batchFirst;
    this.layers = new ModuleList(stack.layers);
    this.norm = stack.norm;
  }

  forward(tgt: Tensor<'float32'>, memory: Tensor<'float32'>, options: DecoderLayerForwardOptions = {}): Tensor<'float32'> {
    return this.inContext(() => {
      checkOptions('TransformerDecoder.forward', options, DECODER_FORWARD_KEYS);
      let x = tgt;
      for (const layer of this.layers) x = layer.forward(x, memory, options);
      return this.norm ? this.norm.forward(x) : x;
    });
  }

  /**
   * The caches for incremental decoding against `memory` [S, N, E] (the
   * encoder output): every layer's cross-attention keys/values of the memory,
   * projected once here, and empty self-attention caches.
   */
  createCache(memory: Tensor<'float32'>, options: StepCacheOptions = {}): DecoderCache {
    checkOptions('TransformerDecoder.createCache', options, ['capacity']);
    return new DecoderCache([...this.layers].map((l) => l.createCache(memory, options)));
  }

  /**
   * Incremental step through every layer and the final norm: tgt [t, N, E]
   * holds the next t target positions (the first step may hold a whole
   * prompt: it is causal within itself). Gives the rows `forward(prefix,
   * memory, { tgtIsCausal: true })` gives for them, attending over the cache
   * instead of recomputing earlier positions.
   */
  forwardStep(tgt: Tensor<'float32'>, cache: DecoderCache, options: DecoderStepOptions = {}): Tensor<'float32'> {
    const fn = 'TransformerDecoder.forwardStep';
    checkOptions(fn, options, ['tgtKeyPaddingMask', 'memoryKeyPaddingMask']);
    if (!(cache instanceof DecoderCache) || cache.layers.length !== this.numLayers) {
      throw new TypeError(`${fn}: argument 'cache' must be a DecoderCache from this stack's createCache()`);
    }
    return this.inStep(() => {
      let x = tgt;
      let i = 0;
      for (const layer of this.layers) x = layer.forwardStep(x, cache.layers[i++]!, options);
      if (this.numLayers === 0) cache.advanceEmpty(tgt.shape[tgt.ndim === 3 && this.#batchFirst ? 1 : 0]!);
      return this.norm ? this.norm.forward(x) : x;
    });
  }
}

/**
 * Options of {@link Transformer}: PyTorch's `nn.Transformer` arguments in
 * camelCase, with its defaults — the layer options (here `dModel` defaults to
 * 512 and `nhead` to 8) plus the two stack depths.
 */
export interface TransformerOptions extends Partial<TransformerLayerOptions> {
  /** Default 6 (unused with customEncoder). */
  numEncoderLayers?: number;
  /** Default 6 (unused with customDecoder). */
  numDecoderLayers?: number;
  /** PyTorch's custom_encoder: this encoder instead of one built from the options (null: build one). */
  customEncoder?: TransformerEncoder | null;
  /** PyTorch's custom_decoder: this decoder instead of one built from the options (null: build one). */
  customDecoder?: TransformerDecoder | null;
}

/** Forward options of {@link Transformer} (PyTorch's keyword arguments). */
export interface TransformerForwardOptions {
  srcMask?: MaskTensor | null;
  tgtMask?: MaskTensor | null;
  memoryMask?: MaskTensor | null;
  srcKeyPaddingMask?: MaskTensor | null;
  tgtKeyPaddingMask?: MaskTensor | null;
  memoryKeyPaddingMask?: MaskTensor | null;
  srcIsCausal?: boolean;
  tgtIsCausal?: boolean;
  memoryIsCausal?: boolean;
}

/**
 * PyTorch's `nn.Transformer`: an encoder and a decoder stack, each with a
 * final LayerNorm. State dict: `encoder.layers.<i>.*`, `encoder.norm.*`,
 * `decoder.layers.<i>.*`, `decoder.norm.*`.
 */
export class Transformer extends Module {
  readonly dModel: number;
  readonly nhead: number;
  readonly batchFirst: boolean;
  encoder: TransformerEncoder;
  decoder: TransformerDecoder;

  constructor(options: TransformerOptions = {}) {
    super();
    const name = 'Transformer';
    checkOptions(name, options, [...LAYER_KEYS, 'numEncoderLayers', 'numDecoderLayers', 'customEncoder', 'customDecoder']);
    const { numEncoderLayers = 6, numDecoderLayers = 6, customEncoder = null, customDecoder = null, ...rest } = options;
    const layer: TransformerLayerOptions = { ...rest, dModel: rest.dModel ?? 512, nhead: rest.nhead ?? 8 };
    const o = resolveLayerOptions(name, layer);
    checkInt(name, 'numEncoderLayers', numEncoderLayers, 0);
    checkInt(name, 'numDecoderLayers', numDecoderLayers, 0);
    if (customEncoder !== null && !(customEncoder instanceof TransformerEncoder)) {
      throw new TypeError(`${name}: option 'customEncoder' must be a TransformerEncoder or null, got ${describeValue(customEncoder)}`);
    }
    if (customDecoder !== null && !(customDecoder instanceof TransformerDecoder)) {
      throw new TypeError(`${name}: option 'customDecoder' must be a TransformerDecoder or null, got ${describeValue(customDecoder)}`);
    }
    this.dModel = o.dModel;
    this.nhead = o.nhead;
    this.batchFirst = o.batchFirst;
    this.encoder = customEncoder ?? new TransformerEncoder({ layer, numLayers: numEncoderLayers, norm: true });
    this.decoder = customDecoder ?? new TransformerDecoder({ layer, numLayers: numDecoderLayers, norm: true });
    // PyTorch's _reset_parameters: Xavier-uniform on every matrix.
    for (const p of this.parameters()) if (p.ndim > 1) xavierUniform_(p as Tensor<'float32'>);
  }

  /** src [S, N, E], tgt [T, N, E] (batch-first or unbatched alike) → [T, N, E]. */
  forward(src: Tensor<'float32'>, tgt: Tensor<'float32'>, options: TransformerForwardOptions = {}): Tensor<'float32'> {
    return this.inContext(() => {
      const fn = 'Transformer.forward';
      checkOptions(fn, options, [
        'srcMask', 'tgtMask', 'memoryMask', 'srcKeyPaddingMask', 'tgtKeyPaddingMask', 'memoryKeyPaddingMask',
        'srcIsCausal', 'tgtIsCausal', 'memoryIsCausal',
      ]);
      checkInput(fn, 'src', src, this.dModel);
      checkInput(fn, 'tgt', tgt, this.dModel);
      if (src.ndim !== tgt.ndim) {
        throw new RangeError(`${fn}: src and tgt must both be batched (3-D) or both unbatched (2-D), got ${formatShape(src.shape)} and ${formatShape(tgt.shape)}`);
      }
      const batchAxis = this.batchFirst ? 0 : 1;
      if (src.ndim === 3 && src.shape[batchAxis] !== tgt.shape[batchAxis]) {
        throw new RangeError(`${fn}: the batch number of src and tgt must be equal, got ${src.shape[batchAxis]} and ${tgt.shape[batchAxis]}`);
      }
      const memory = this.encoder.forward(src, {
        mask: options.srcMask ?? null,
        srcKeyPaddingMask: options.srcKeyPaddingMask ?? null,
        isCausal: options.srcIsCausal ?? false,
      });
      return this.decoder.forward(tgt, memory, {
        tgtMask: options.tgtMask ?? null,
        memoryMask: options.memoryMask ?? null,
        tgtKeyPaddingMask: options.tgtKeyPaddingMask ?? null,
        memoryKeyPaddingMask: options.memoryKeyPaddingMask ?? null,
        tgtIsCausal: options.tgtIsCausal ?? false,
        memoryIsCausal: options.memoryIsCausal ?? false,
      });
    });
  }

  /** PyTorch's `Transformer.generate_square_subsequent_mask(sz)`: float [sz, sz], -inf above the diagonal, 0 elsewhere. */
  static generateSquareSubsequentMask(sz: number): Tensor<'float32'> {
    checkInt('Transformer.generateSquareSubsequentMask', 'sz', sz, 0);
    const data = new Float32Array(sz * sz);
    for (let i = 0; i < sz; i++) data.fill(-Infinity, i * sz + i + 1, (i + 1) * sz);
    return new Tensor(data, [sz, sz], 'float32');
  }
}
