/**
 * BERT-family encoders: BERT (`model_type` 'bert'), RoBERTa and XLM-R
 * ('roberta', 'xlm-roberta': positions counted from padding_idx + 1 over the
 * non-padding ids, as transformers' create_position_ids_from_input_ids) and
 * DistilBERT ('distilbert': its own key names, no token types), with the
 * masked-LM heads (decoder tied to the word embeddings) and the
 * sequence-classification heads of each family.
 *
 * Property names are the Hugging Face keys in camelCase, so published
 * checkpoints load as they are. The one key that is not snake_case,
 * `LayerNorm` (BERT's and RoBERTa's `...attention.output.LayerNorm.weight`),
 * is kept by {@link HfModule}: its children keep the names listed in
 * `KEY_OVERRIDES` instead of `toStateKey`'s `_layer_norm`, without changing
 * how any other module names its keys.
 *
 * q, k and v are three GEMMs on the checkpoint's Linears by default. A packed
 * [3E, E] projection (`encoderOptions.packedQkv`: built once, q/k/v read as
 * column views through strides) measured no faster (E=768, 4 layers, 2
 * cores: 8×128 325 vs 329 ms, 1×16 17.4 vs 17.9 ms per forward) and holds a
 * second copy of the weights, so it is off. The residual add and LayerNorm
 * are fused (`addLayerNorm`), GELU is fused into the intermediate GEMM.
 */
import { Module, toStateKey, parameter } from '../nn/module';
import { ModuleList } from '../nn/container';
import { Embedding } from '../nn/sparse';
import { LayerNorm, Linear } from '../nn/linear';
import * as ops from '../ops';
import { Tensor, empty } from '../tensor';
import { checkInt, formatShape } from '../errors';
import { splitModelInputs, type ModelInputs } from './model-inputs';

type F32 = Tensor<'float32'>;
type I32 = Tensor<'int32'>;

/** Which published architecture a config describes. */
export type EncoderFamily = 'bert' | 'roberta' | 'distilbert';

/** The fused activations the GEMM supports, by Hugging Face's `hidden_act` names. */
export type EncoderActivation = 'gelu' | 'gelu_tanh' | 'relu';

/** A BERT-family configuration (Hugging Face's `BertConfig` fields in camelCase; DistilBERT's mapped onto them). */
export interface BertConfig {
  family?: EncoderFamily;
  vocabSize: number;
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  intermediateSize: number;
  /** Default 'gelu' (exact, erf); 'silu' is transformers' 'silu' / 'swish' (applied after the GEMM). */
  hiddenAct?: FeedForwardActivation;
  /** Default 512. */
  maxPositionEmbeddings?: number;
  /** Default 2 (RoBERTa: 1; DistilBERT: 0, no token-type embedding). */
  typeVocabSize?: number;
  /** Default 1e-12. */
  layerNormEps?: number;
  /** Default 0 (RoBERTa: 1). */
  padTokenId?: number;
  /** Labels of the classification head by index (default LABEL_0, LABEL_1). */
  id2label?: string[];
  /**
   * `problem_type`: how the text-classification pipeline turns logits into scores, as transformers' does
   * ('multi_label_classification': sigmoid per label; 'regression': the logits; single-label or null: softmax,
   * or sigmoid for a single-logit head). Default null.
   */
  problemType?: ProblemType | null;
}

/** transformers' `problem_type` values. */
export type ProblemType = 'single_label_classification' | 'multi_label_classification' | 'regression';
const PROBLEM_TYPES: readonly ProblemType[] = ['single_label_classification', 'multi_label_classification', 'regression'];

export type ResolvedBertConfig = Required<Omit<BertConfig, 'problemType'>> & { problemType: ProblemType | null };

/** Fills in defaults and checks the sizes fit together. */
export function resolveBertConfig(c: BertConfig): ResolvedBertConfig {
  const fn = 'BertConfig';
  const family = c.family ?? 'bert';
  if (family !== 'bert' && family !== 'roberta' && family !== 'distilbert') {
    throw new TypeError(`${fn}: field 'family' must be 'bert', 'roberta' or 'distilbert', got ${JSON.stringify(family)}`);
  }
  const act = c.hiddenAct ?? 'gelu';
  if (act !== 'gelu' && act !== 'gelu_tanh' && act !== 'relu' && act !== 'silu') {
    throw new TypeError(`${fn}: field 'hiddenAct' must be 'gelu', 'gelu_tanh', 'relu' or 'silu', got ${JSON.stringify(act)}`);
  }
  const id2label = c.id2label ?? ['LABEL_0', 'LABEL_1'];
  if (!Array.isArray(id2label) || id2label.length === 0 || id2label.some((l) => typeof l !== 'string')) {
    throw new TypeError(`${fn}: field 'id2label' must be a non-empty array of strings`);
  }
  const r: ResolvedBertConfig = {
    family,
    vocabSize: checkInt(fn, 'vocabSize', c.vocabSize, 1),
    hiddenSize: checkInt(fn, 'hiddenSize', c.hiddenSize, 1),
    numHiddenLayers: checkInt(fn, 'numHiddenLayers', c.numHiddenLayers, 0),
    numAttentionHeads: checkInt(fn, 'numAttentionHeads', c.numAttentionHeads, 1),
    intermediateSize: checkInt(fn, 'intermediateSize', c.intermediateSize, 1),
    hiddenAct: act,
    maxPositionEmbeddings: checkInt(fn, 'maxPositionEmbeddings', c.maxPositionEmbeddings ?? 512, 1),
    typeVocabSize: checkInt(fn, 'typeVocabSize', c.typeVocabSize ?? (family === 'distilbert' ? 0 : family === 'roberta' ? 1 : 2), 0),
    layerNormEps: c.layerNormEps ?? 1e-12,
    padTokenId: checkInt(fn, 'padTokenId', c.padTokenId ?? (family === 'roberta' ? 1 : 0), 0),
    id2label: [...id2label],
    problemType: c.problemType ?? null,
  };
  if (r.problemType !== null && !PROBLEM_TYPES.includes(r.problemType)) {
    throw new TypeError(`${fn}: field 'problemType' must be one of ${PROBLEM_TYPES.join(', ')} or null, got ${JSON.stringify(r.problemType)}`);
  }
  if (r.hiddenSize % r.numAttentionHeads !== 0) {
    throw new RangeError(`${fn}: hiddenSize (${r.hiddenSize}) must be divisible by numAttentionHeads (${r.numAttentionHeads})`);
  }
  if (family === 'distilbert' && r.typeVocabSize !== 0) throw new RangeError(`${fn}: DistilBERT has no token types (typeVocabSize must be 0)`);
  if (family !== 'distilbert' && r.typeVocabSize < 1) throw new RangeError(`${fn}: typeVocabSize must be >= 1 for ${family}`);
  if (!(typeof r.layerNormEps === 'number' && r.layerNormEps >= 0)) throw new RangeError(`${fn}: layerNormEps must be a number >= 0`);
  return r;
}

/** Child properties whose Hugging Face key is not their snake_case form. */
const KEY_OVERRIDES: Readonly<Record<string, string>> = { LayerNorm: 'LayerNorm' };

/**
 * A module whose children named in `KEY_OVERRIDES` keep that key
 * (`LayerNorm` → `LayerNorm`, not `_layer_norm`); every other name is
 * `toStateKey`'s. Only child modules need it: no parameter has such a name.
 */
export abstract class HfModule extends Module {
  /** Inference only: runs with grad mode off (see Module.differentiable). */
  protected override get differentiable(): boolean {
    return false;
  }
  override namedChildren(): [string, Module][] {
    const out: [string, Module][] = [];
    for (const [prop, value] of Object.entries(this)) {
      if (value instanceof Module) out.push([KEY_OVERRIDES[prop] ?? toStateKey(prop), value]);
    }
    return out;
  }
}

/** One post-norm encoder layer's pieces under a family's names (BERT's, DistilBERT's, Marian's). */
export interface LayerParts {
  q: Linear;
  k: Linear;
  v: Linear;
  o: Linear;
  ln1: LayerNorm;
  inter: Linear;
  out: Linear;
  ln2: LayerNorm;
}

/**
 * Switches the q/k/v projection between three GEMMs on the checkpoint's
 * Linears (false, the default) and one GEMM on a packed [3E, E] weight
 * (true; measured no faster, see the file comment). Exported for benchmarks
 * and tests.
 */
export const encoderOptions = { packedQkv: false };

/** The packed q/k/v weight of a layer, rebuilt when any of the three Linears' tensors changed. */
export class PackedQkv {
  #from: (F32 | null)[] = [];
  weight: F32 | null = null;
  bias: F32 | null = null;

  get(p: LayerParts): { weight: F32; bias: F32 | null } {
    const from = [p.q.weight, p.k.weight, p.v.weight, p.q.bias, p.k.bias, p.v.bias];
    if (!this.weight || from.some((t, i) => t !== this.#from[i])) {
      const e = p.q.weight.shape[1]!;
      const o = p.q.weight.shape[0]!;
      const w = new Float32Array(3 * o * e);
      [p.q, p.k, p.v].forEach((l, i) => w.set(l.weight.contiguous().data, i * o * e));
      this.weight = new Tensor(w, [3 * o, e], 'float32');
      if (p.q.bias && p.k.bias && p.v.bias) {
        const b = new Float32Array(3 * o);
        [p.q, p.k, p.v].forEach((l, i) => b.set(l.bias!.contiguous().data, i * o));
        this.bias = new Tensor(b, [3 * o], 'float32');
      } else {
        this.bias = null;
      }
      this.#from = from;
    }
    return { weight: this.weight, bias: this.bias };
  }
}

/** The activations of {@link feedForward}: the GEMM-fused ones, and SiLU (Marian's 'swish') applied after the GEMM. */
export type FeedForwardActivation = EncoderActivation | 'silu';

/** The post-norm feed-forward block LN(h + W2·act(W1·h)), the activation fused into W1's GEMM where it can be. */
export function feedForward(h: F32, inter: Linear, out: Linear, norm: LayerNorm, act: FeedForwardActivation): F32 {
  const lin = { cacheWeight: true } as const;
  let mid: F32;
  if (act === 'silu') {
    mid = ops.linear(h, inter.weight, inter.bias, lin);
    ops.silu(mid, { out: mid });
  } else {
    mid = ops.linear(h, inter.weight, inter.bias, { ...lin, activation: act });
  }
  return norm.forwardAdd(ops.linear(mid, out.weight, out.bias, lin), h);
}

/**
 * A post-norm encoder layer: LN(x + O·attn(x)), then LN(· + W2·act(W1·)).
 * `mask` is a bool key mask [N, 1, 1, S] (true = token) or null (no padding).
 */
export function encoderLayer(p: LayerParts, packed: PackedQkv, x: F32, mask: Tensor<'bool'> | null, heads: number, act: FeedForwardActivation): F32 {
  const [n, t, e] = x.shape as [number, number, number];
  const hd = e / heads;
  const lin = { cacheWeight: true } as const;
  let q: F32, k: F32, v: F32;
  if (encoderOptions.packedQkv) {
    const { weight, bias } = packed.get(p);
    const qkv = ops.linear(x, weight, bias, lin);
    [q, k, v] = [0, 1, 2].map((i) => qkv.narrow(-1, i * e, e)) as [F32, F32, F32];
  } else {
    [q, k, v] = [p.q, p.k, p.v].map((l) => ops.linear(x, l.weight, l.bias, lin)) as [F32, F32, F32];
  }
  const toHeads = (m: F32): F32 => m.view(n, t, heads, hd).permute(0, 2, 1, 3);
  const attn = empty([n, t, e]);
  ops.scaledDotProductAttention(toHeads(q), toHeads(k), toHeads(v), { out: toHeads(attn), ...(mask ? { attnMask: mask } : {}) });
  const h = p.ln1.forwardAdd(ops.linear(attn, p.o.weight, p.o.bias, lin), x);
  return feedForward(h, p.inter, p.out, p.ln2, act);
}

/** The key mask of Hugging Face's attention mask (1 = token), or null when nothing is padding. */
export function keyMask(fn: string, attentionMask: I32 | null | undefined, n: number, t: number): Tensor<'bool'> | null {
  if (attentionMask === undefined || attentionMask === null) return null;
  if (!(attentionMask instanceof Tensor) || attentionMask.dtype !== 'int32' || attentionMask.ndim !== 2 ||
    attentionMask.shape[0] !== n || attentionMask.shape[1] !== t) {
    throw new TypeError(`${fn}: option 'attentionMask' must be an int32 Tensor [batch, seq] = [${n}, ${t}], got ${describe(attentionMask)}`);
  }
  const am = attentionMask.contiguous().data;
  if (am.every((m) => m !== 0)) return null;
  const m = new Uint8Array(n * t);
  for (let b = 0; b < n; b++) {
    let any = false;
    for (let j = 0; j < t; j++) if ((m[b * t + j] = am[b * t + j] ? 1 : 0)) any = true;
    if (!any) throw new RangeError(`${fn}: option 'attentionMask' row ${b} has no token (every position is 0)`);
  }
  return new Tensor(m, [n, 1, 1, t], 'bool');
}

function describe(v: unknown): string {
  return v instanceof Tensor ? `${v.dtype} ${formatShape(v.shape)}` : v === null ? 'null' : typeof v;
}

function checkIds(fn: string, arg: string, ids: unknown, shape?: readonly number[]): asserts ids is I32 {
  if (!(ids instanceof Tensor) || ids.dtype !== 'int32' || ids.ndim !== 2 || (shape && (ids.shape[0] !== shape[0] || ids.shape[1] !== shape[1]))) {
    throw new TypeError(`${fn}: ${arg === 'inputIds' ? 'argument' : 'option'} '${arg}' must be an int32 Tensor [batch, seq]${shape ? ` = ${formatShape(shape)}` : ''}, got ${describe(ids)}`);
  }
}

/** Word + position (+ token type) embeddings, then LayerNorm. Keys `embeddings.*`. */
export class BertEmbeddings extends HfModule {
  wordEmbeddings: Embedding;
  positionEmbeddings: Embedding;
  tokenTypeEmbeddings: Embedding | null;
  LayerNorm: LayerNorm;
  readonly #c: ResolvedBertConfig;

  constructor(c: ResolvedBertConfig) {
    super();
    this.#c = c;
    // RoBERTa's table has padding_idx + 1 extra rows: positions start after the padding id.
    const positions = c.maxPositionEmbeddings;
    this.wordEmbeddings = new Embedding({ numEmbeddings: c.vocabSize, embeddingDim: c.hiddenSize });
    this.positionEmbeddings = new Embedding({ numEmbeddings: positions, embeddingDim: c.hiddenSize });
    this.tokenTypeEmbeddings = c.typeVocabSize > 0 ? new Embedding({ numEmbeddings: c.typeVocabSize, embeddingDim: c.hiddenSize }) : null;
    this.LayerNorm = new LayerNorm({ normalizedShape: c.hiddenSize, eps: c.layerNormEps });
  }

  /** Position ids [N, t]: 0..t-1, or RoBERTa's padding_idx + 1 + (count of tokens so far), padding at padding_idx. */
  positionIds(fn: string, ids: I32): I32 {
    const [n, t] = ids.shape as [number, number];
    const pos = new Int32Array(n * t);
    const pad = this.#c.padTokenId;
    const src = ids.contiguous().data;
    for (let b = 0; b < n; b++) {
      let count = 0;
      for (let j = 0; j < t; j++) {
        const i = b * t + j;
        pos[i] = this.#c.family === 'roberta' ? (src[i] !== pad ? pad + ++count : pad) : j;
      }
    }
    const max = this.#c.family === 'roberta' ? pad + t : t - 1;
    if (max >= this.#c.maxPositionEmbeddings) {
      throw new RangeError(`${fn}: sequence length ${t} exceeds the model's ${this.#c.maxPositionEmbeddings - (this.#c.family === 'roberta' ? pad + 1 : 0)} positions (maxPositionEmbeddings)`);
    }
    return new Tensor(pos, [n, t], 'int32');
  }

  forward(inputIds: I32, tokenTypeIds: I32 | null, fn = 'BertEmbeddings.forward'): F32 {
    return this.inContext(() => {
      const x = ops.embedding(inputIds, this.wordEmbeddings.weight);
      ops.add(x, ops.embedding(this.positionIds(fn, inputIds), this.positionEmbeddings.weight), { out: x });
      if (!this.tokenTypeEmbeddings) return this.LayerNorm.forward(x);
      const [n, t] = inputIds.shape as [number, number];
      const types = tokenTypeIds ?? new Tensor(new Int32Array(n * t), [n, t], 'int32');
      // The last add is fused into the norm.
      return this.LayerNorm.forwardAdd(ops.embedding(types, this.tokenTypeEmbeddings.weight), x);
    });
  }
}

export class BertSelfAttention extends HfModule {
  query: Linear;
  key: Linear;
  value: Linear;
  constructor(c: ResolvedBertConfig) {
    super();
    const e = c.hiddenSize;
    this.query = new Linear({ inFeatures: e, outFeatures: e });
    this.key = new Linear({ inFeatures: e, outFeatures: e });
    this.value = new Linear({ inFeatures: e, outFeatures: e });
  }
}

/** `dense` + `LayerNorm`: the output block after attention and after the feed-forward. */
export class BertDenseNorm extends HfModule {
  dense: Linear;
  LayerNorm: LayerNorm;
  constructor(c: ResolvedBertConfig, inFeatures: number) {
    super();
    this.dense = new Linear({ inFeatures, outFeatures: c.hiddenSize });
    this.LayerNorm = new LayerNorm({ normalizedShape: c.hiddenSize, eps: c.layerNormEps });
  }
}

export class BertAttention extends HfModule {
  self: BertSelfAttention;
  output: BertDenseNorm;
  constructor(c: ResolvedBertConfig) {
    super();
    this.self = new BertSelfAttention(c);
    this.output = new BertDenseNorm(c, c.hiddenSize);
  }
}

export class BertIntermediate extends HfModule {
  dense: Linear;
  constructor(c: ResolvedBertConfig) {
    super();
    this.dense = new Linear({ inFeatures: c.hiddenSize, outFeatures: c.intermediateSize });
  }
}

/** One BERT/RoBERTa layer. Keys `encoder.layer.N.*`. */
export class BertLayer extends HfModule {
  attention: BertAttention;
  intermediate: BertIntermediate;
  output: BertDenseNorm;
  readonly #c: ResolvedBertConfig;
  readonly #packed = new PackedQkv();

  constructor(c: ResolvedBertConfig) {
    super();
    this.#c = c;
    this.attention = new BertAttention(c);
    this.intermediate = new BertIntermediate(c);
    this.output = new BertDenseNorm(c, c.intermediateSize);
  }

  forward(x: F32, mask: Tensor<'bool'> | null): F32 {
    return this.inContext(() => {
      const a = this.attention;
      return encoderLayer({
        q: a.self.query, k: a.self.key, v: a.self.value, o: a.output.dense, ln1: a.output.LayerNorm,
        inter: this.intermediate.dense, out: this.output.dense, ln2: this.output.LayerNorm,
      }, this.#packed, x, mask, this.#c.numAttentionHeads, this.#c.hiddenAct);
    });
  }
}

export class BertEncoder extends HfModule {
  layer: ModuleList<BertLayer>;
  constructor(c: ResolvedBertConfig) {
    super();
    this.layer = new ModuleList(Array.from({ length: c.numHiddenLayers }, () => new BertLayer(c)));
  }
}

/** tanh(dense(hidden of the first token)). */
export class BertPooler extends HfModule {
  dense: Linear;
  constructor(c: ResolvedBertConfig) {
    super();
    this.dense = new Linear({ inFeatures: c.hiddenSize, outFeatures: c.hiddenSize });
  }

  forward(hidden: F32): F32 {
    return this.inContext(() => ops.tanh(this.dense.forward(hidden.select(1, 0))));
  }
}

/** Options of an encoder's forward. */
export interface EncoderForwardOptions {
  /** [N, t] Hugging Face convention: 1 = token, 0 = padding. Default: every position is a token. */
  attentionMask?: I32 | null;
  /** [N, t] segment ids (BERT); default zeros. DistilBERT ignores none: passing them is an error. */
  tokenTypeIds?: I32 | null;
}

/** What an encoder returns. */
export interface EncoderOutput {
  /** [N, t, hidden]. */
  lastHiddenState: F32;
  /** [N, hidden]: BERT's tanh pooler on the first token, when the model has one. */
  poolerOutput?: F32;
}

/** The encoders' common surface (BertModel, DistilBertModel). */
export interface EncoderModel extends Module {
  readonly config: ResolvedBertConfig;
  forward(inputs: I32 | ModelInputs<EncoderForwardOptions>, options?: EncoderForwardOptions): EncoderOutput;
}

/** BERT / RoBERTa / XLM-R encoder: embeddings, layers, optional pooler. Keys `embeddings.*`, `encoder.*`, `pooler.*`. */
export class BertModel extends HfModule implements EncoderModel {
  readonly config: ResolvedBertConfig;
  embeddings: BertEmbeddings;
  encoder: BertEncoder;
  pooler: BertPooler | null;

  constructor(config: BertConfig, options: { addPoolingLayer?: boolean } = {}) {
    super();
    this.config = resolveBertConfig(config);
    if (this.config.family === 'distilbert') throw new TypeError(`BertModel: family 'distilbert' is DistilBertModel`);
    this.embeddings = new BertEmbeddings(this.config);
    this.encoder = new BertEncoder(this.config);
    this.pooler = options.addPoolingLayer ?? true ? new BertPooler(this.config) : null;
  }

  /** input ids [N, t] → `{ lastHiddenState [N, t, E], poolerOutput [N, E] }` (pooler output when the model has a pooler). */
  forward(inputs: I32 | ModelInputs<EncoderForwardOptions>, opts?: EncoderForwardOptions): EncoderOutput {
    return this.inContext(() => {
      const fn = `${this.constructor.name}.forward`;
      const [inputIds, options] = splitModelInputs(fn, inputs, opts);
      checkIds(fn, 'inputIds', inputIds);
      const [n, t] = inputIds.shape as [number, number];
      if (options.tokenTypeIds !== undefined && options.tokenTypeIds !== null) checkIds(fn, 'tokenTypeIds', options.tokenTypeIds, [n, t]);
      const mask = keyMask(fn, options.attentionMask, n, t);
      let x = this.embeddings.forward(inputIds, options.tokenTypeIds ?? null, fn);
      for (const layer of this.encoder.layer) x = layer.forward(x, mask);
      return this.pooler ? { lastHiddenState: x, poolerOutput: this.pooler.forward(x) } : { lastHiddenState: x };
    });
  }
}

export class DistilBertAttention extends HfModule {
  qLin: Linear;
  kLin: Linear;
  vLin: Linear;
  outLin: Linear;
  constructor(c: ResolvedBertConfig) {
    super();
    const e = c.hiddenSize;
    this.qLin = new Linear({ inFeatures: e, outFeatures: e });
    this.kLin = new Linear({ inFeatures: e, outFeatures: e });
    this.vLin = new Linear({ inFeatures: e, outFeatures: e });
    this.outLin = new Linear({ inFeatures: e, outFeatures: e });
  }
}

export class DistilBertFFN extends HfModule {
  lin1: Linear;
  lin2: Linear;
  constructor(c: ResolvedBertConfig) {
    super();
    this.lin1 = new Linear({ inFeatures: c.hiddenSize, outFeatures: c.intermediateSize });
    this.lin2 = new Linear({ inFeatures: c.intermediateSize, outFeatures: c.hiddenSize });
  }
}

/** One DistilBERT block. Keys `transformer.layer.N.*`. */
export class DistilBertBlock extends HfModule {
  attention: DistilBertAttention;
  saLayerNorm: LayerNorm;
  ffn: DistilBertFFN;
  outputLayerNorm: LayerNorm;
  readonly #c: ResolvedBertConfig;
  readonly #packed = new PackedQkv();

  constructor(c: ResolvedBertConfig) {
    super();
    this.#c = c;
    this.attention = new DistilBertAttention(c);
    this.saLayerNorm = new LayerNorm({ normalizedShape: c.hiddenSize, eps: c.layerNormEps });
    this.ffn = new DistilBertFFN(c);
    this.outputLayerNorm = new LayerNorm({ normalizedShape: c.hiddenSize, eps: c.layerNormEps });
  }

  forward(x: F32, mask: Tensor<'bool'> | null): F32 {
    return this.inContext(() => {
      const a = this.attention;
      return encoderLayer({
        q: a.qLin, k: a.kLin, v: a.vLin, o: a.outLin, ln1: this.saLayerNorm,
        inter: this.ffn.lin1, out: this.ffn.lin2, ln2: this.outputLayerNorm,
      }, this.#packed, x, mask, this.#c.numAttentionHeads, this.#c.hiddenAct);
    });
  }
}

export class DistilBertTransformer extends HfModule {
  layer: ModuleList<DistilBertBlock>;
  constructor(c: ResolvedBertConfig) {
    super();
    this.layer = new ModuleList(Array.from({ length: c.numHiddenLayers }, () => new DistilBertBlock(c)));
  }
}

/** DistilBERT encoder. Keys `embeddings.*`, `transformer.*`. */
export class DistilBertModel extends HfModule implements EncoderModel {
  readonly config: ResolvedBertConfig;
  embeddings: BertEmbeddings;
  transformer: DistilBertTransformer;

  constructor(config: BertConfig) {
    super();
    this.config = resolveBertConfig({ ...config, family: 'distilbert' });
    this.embeddings = new BertEmbeddings(this.config);
    this.transformer = new DistilBertTransformer(this.config);
  }

  /** input ids [N, t] → `{ lastHiddenState [N, t, E] }`. */
  forward(inputs: I32 | ModelInputs<EncoderForwardOptions>, opts?: EncoderForwardOptions): EncoderOutput {
    return this.inContext(() => {
      const fn = 'DistilBertModel.forward';
      const [inputIds, options] = splitModelInputs(fn, inputs, opts);
      checkIds(fn, 'inputIds', inputIds);
      const [n, t] = inputIds.shape as [number, number];
      if (options.tokenTypeIds !== undefined && options.tokenTypeIds !== null) {
        // Tokenizers of BERT vocabularies return segment ids; DistilBERT has no embedding for them, so only zeros mean anything.
        checkIds(fn, 'tokenTypeIds', options.tokenTypeIds, [n, t]);
        if (options.tokenTypeIds.contiguous().data.some((v) => v !== 0)) throw new RangeError(`${fn}: option 'tokenTypeIds' must be all 0: DistilBERT has no token types`);
      }
      const mask = keyMask(fn, options.attentionMask, n, t);
      let x = this.embeddings.forward(inputIds, null, fn);
      for (const layer of this.transformer.layer) x = layer.forward(x, mask);
      return { lastHiddenState: x };
    });
  }
}

/** What the heads return: Hugging Face's output field names. */
export interface LogitsOutput {
  /** [N, t, vocab] (masked LM) or [N, numLabels] (classification). */
  logits: F32;
}

/** A head model: its encoder and its forward. */
export interface EncoderHeadModel extends Module {
  readonly config: ResolvedBertConfig;
  readonly encoderModel: EncoderModel;
  forward(inputs: I32 | ModelInputs<EncoderForwardOptions>, options?: EncoderForwardOptions): LogitsOutput;
}

/** dense, activation, LayerNorm, then the decoder tied to the word embeddings, + bias. */
function mlmLogits(h: F32, dense: Linear, norm: LayerNorm, act: FeedForwardActivation, words: F32, bias: F32): F32 {
  let mid: F32;
  if (act === 'silu') {
    mid = ops.linear(h, dense.weight, dense.bias, { cacheWeight: true });
    ops.silu(mid, { out: mid });
  } else {
    mid = ops.linear(h, dense.weight, dense.bias, { cacheWeight: true, activation: act });
  }
  return ops.linear(norm.forward(mid), words, bias, { cacheWeight: true });
}

export class BertPredictionHeadTransform extends HfModule {
  dense: Linear;
  LayerNorm: LayerNorm;
  constructor(c: ResolvedBertConfig) {
    super();
    this.dense = new Linear({ inFeatures: c.hiddenSize, outFeatures: c.hiddenSize });
    this.LayerNorm = new LayerNorm({ normalizedShape: c.hiddenSize, eps: c.layerNormEps });
  }
}

export class BertLMPredictionHead extends HfModule {
  transform: BertPredictionHeadTransform;
  bias: F32;
  constructor(c: ResolvedBertConfig) {
    super();
    this.transform = new BertPredictionHeadTransform(c);
    this.bias = parameter(new Tensor(new Float32Array(c.vocabSize), [c.vocabSize], 'float32'));
  }
}

export class BertOnlyMLMHead extends HfModule {
  predictions: BertLMPredictionHead;
  constructor(c: ResolvedBertConfig) {
    super();
    this.predictions = new BertLMPredictionHead(c);
  }
}

/** BERT with the masked-LM head. Keys `bert.*` (no pooler), `cls.predictions.*`. */
export class BertForMaskedLM extends HfModule implements EncoderHeadModel {
  readonly config: ResolvedBertConfig;
  bert: BertModel;
  cls: BertOnlyMLMHead;
  constructor(config: BertConfig) {
    super();
    this.bert = new BertModel({ ...config, family: 'bert' }, { addPoolingLayer: false });
    this.config = this.bert.config;
    this.cls = new BertOnlyMLMHead(this.config);
  }
  get encoderModel(): EncoderModel {
    return this.bert;
  }
  /** input ids [N, t] → `{ logits [N, t, vocab] }`. */
  forward(inputs: I32 | ModelInputs<EncoderForwardOptions>, options?: EncoderForwardOptions): LogitsOutput {
    return this.inContext(() => {
      const h = this.bert.forward(inputs, options).lastHiddenState;
      const p = this.cls.predictions;
      return { logits: mlmLogits(h, p.transform.dense, p.transform.LayerNorm, this.config.hiddenAct, this.bert.embeddings.wordEmbeddings.weight, p.bias) };
    });
  }
}

export class RobertaLMHead extends HfModule {
  dense: Linear;
  layerNorm: LayerNorm;
  bias: F32;
  constructor(c: ResolvedBertConfig) {
    super();
    this.dense = new Linear({ inFeatures: c.hiddenSize, outFeatures: c.hiddenSize });
    this.layerNorm = new LayerNorm({ normalizedShape: c.hiddenSize, eps: c.layerNormEps });
    this.bias = parameter(new Tensor(new Float32Array(c.vocabSize), [c.vocabSize], 'float32'));
  }
}

/** RoBERTa / XLM-R with the masked-LM head. Keys `roberta.*` (no pooler), `lm_head.*`. */
export class RobertaForMaskedLM extends HfModule implements EncoderHeadModel {
  readonly config: ResolvedBertConfig;
  roberta: BertModel;
  lmHead: RobertaLMHead;
  constructor(config: BertConfig) {
    super();
    this.roberta = new BertModel({ ...config, family: 'roberta' }, { addPoolingLayer: false });
    this.config = this.roberta.config;
    this.lmHead = new RobertaLMHead(this.config);
  }
  get encoderModel(): EncoderModel {
    return this.roberta;
  }
  forward(inputs: I32 | ModelInputs<EncoderForwardOptions>, options?: EncoderForwardOptions): LogitsOutput {
    return this.inContext(() => {
      const h = this.roberta.forward(inputs, options).lastHiddenState;
      const l = this.lmHead;
      // transformers' RobertaLMHead applies exact GELU whatever hidden_act says.
      return { logits: mlmLogits(h, l.dense, l.layerNorm, 'gelu', this.roberta.embeddings.wordEmbeddings.weight, l.bias) };
    });
  }
}

/** The tied projector: only its bias is a parameter (the weight is the word embedding). */
export class TiedProjector extends HfModule {
  bias: F32;
  constructor(c: ResolvedBertConfig) {
    super();
    this.bias = parameter(new Tensor(new Float32Array(c.vocabSize), [c.vocabSize], 'float32'));
  }
}

/** DistilBERT with the masked-LM head. Keys `distilbert.*`, `vocab_transform`, `vocab_layer_norm`, `vocab_projector.bias`. */
export class DistilBertForMaskedLM extends HfModule implements EncoderHeadModel {
  readonly config: ResolvedBertConfig;
  distilbert: DistilBertModel;
  vocabTransform: Linear;
  vocabLayerNorm: LayerNorm;
  vocabProjector: TiedProjector;
  constructor(config: BertConfig) {
    super();
    this.distilbert = new DistilBertModel(config);
    this.config = this.distilbert.config;
    const e = this.config.hiddenSize;
    this.vocabTransform = new Linear({ inFeatures: e, outFeatures: e });
    this.vocabLayerNorm = new LayerNorm({ normalizedShape: e, eps: this.config.layerNormEps });
    this.vocabProjector = new TiedProjector(this.config);
  }
  get encoderModel(): EncoderModel {
    return this.distilbert;
  }
  forward(inputs: I32 | ModelInputs<EncoderForwardOptions>, options?: EncoderForwardOptions): LogitsOutput {
    return this.inContext(() => {
      const h = this.distilbert.forward(inputs, options).lastHiddenState;
      return { logits: mlmLogits(h, this.vocabTransform, this.vocabLayerNorm, this.config.hiddenAct, this.distilbert.embeddings.wordEmbeddings.weight, this.vocabProjector.bias) };
    });
  }
}

/** BERT with the classification head on the pooler output. Keys `bert.*`, `classifier.*`. */
export class BertForSequenceClassification extends HfModule implements EncoderHeadModel {
  readonly config: ResolvedBertConfig;
  bert: BertModel;
  classifier: Linear;
  constructor(config: BertConfig) {
    super();
    this.bert = new BertModel({ ...config, family: 'bert' });
    this.config = this.bert.config;
    this.classifier = new Linear({ inFeatures: this.config.hiddenSize, outFeatures: this.config.id2label.length });
  }
  get encoderModel(): EncoderModel {
    return this.bert;
  }
  /** input ids [N, t] → `{ logits [N, numLabels] }`. */
  forward(inputs: I32 | ModelInputs<EncoderForwardOptions>, options?: EncoderForwardOptions): LogitsOutput {
    return this.inContext(() => ({ logits: this.classifier.forward(this.bert.forward(inputs, options).poolerOutput!) }));
  }
}

export class RobertaClassificationHead extends HfModule {
  dense: Linear;
  outProj: Linear;
  constructor(c: ResolvedBertConfig) {
    super();
    this.dense = new Linear({ inFeatures: c.hiddenSize, outFeatures: c.hiddenSize });
    this.outProj = new Linear({ inFeatures: c.hiddenSize, outFeatures: c.id2label.length });
  }
}

/** RoBERTa / XLM-R with the classification head on `<s>` (dense, tanh, out_proj). Keys `roberta.*` (no pooler), `classifier.*`. */
export class RobertaForSequenceClassification extends HfModule implements EncoderHeadModel {
  readonly config: ResolvedBertConfig;
  roberta: BertModel;
  classifier: RobertaClassificationHead;
  constructor(config: BertConfig) {
    super();
    this.roberta = new BertModel({ ...config, family: 'roberta' }, { addPoolingLayer: false });
    this.config = this.roberta.config;
    this.classifier = new RobertaClassificationHead(this.config);
  }
  get encoderModel(): EncoderModel {
    return this.roberta;
  }
  forward(inputs: I32 | ModelInputs<EncoderForwardOptions>, options?: EncoderForwardOptions): LogitsOutput {
    return this.inContext(() => {
      const first = this.roberta.forward(inputs, options).lastHiddenState.select(1, 0);
      const c = this.classifier;
      const h = ops.tanh(ops.linear(first, c.dense.weight, c.dense.bias, { cacheWeight: true }));
      return { logits: c.outProj.forward(h) };
    });
  }
}

/** DistilBERT with the classification head on [CLS] (pre_classifier, ReLU, classifier). */
export class DistilBertForSequenceClassification extends HfModule implements EncoderHeadModel {
  readonly config: ResolvedBertConfig;
  distilbert: DistilBertModel;
  preClassifier: Linear;
  classifier: Linear;
  constructor(config: BertConfig) {
    super();
    this.distilbert = new DistilBertModel(config);
    this.config = this.distilbert.config;
    const e = this.config.hiddenSize;
    this.preClassifier = new Linear({ inFeatures: e, outFeatures: e });
    this.classifier = new Linear({ inFeatures: e, outFeatures: this.config.id2label.length });
  }
  get encoderModel(): EncoderModel {
    return this.distilbert;
  }
  forward(inputs: I32 | ModelInputs<EncoderForwardOptions>, options?: EncoderForwardOptions): LogitsOutput {
    return this.inContext(() => {
      const first = this.distilbert.forward(inputs, options).lastHiddenState.select(1, 0);
      const h = ops.linear(first, this.preClassifier.weight, this.preClassifier.bias, { cacheWeight: true, activation: 'relu' });
      return { logits: this.classifier.forward(h) };
    });
  }
}

// ---------------------------------------------------------------------------
// Loading from a Hugging Face folder's parsed config.json and weights.

type Json = Record<string, unknown>;

/** The `model_type`s of {@link bertConfigFromJson}. */
export const ENCODER_MODEL_TYPES = ['bert', 'roberta', 'xlm-roberta', 'distilbert'] as const;

/** transformers' ACT2FN names → the activation computed (gelu_new, gelu_pytorch_tanh and gelu_fast are the same tanh formula). */
const ACTIVATIONS: Record<string, FeedForwardActivation> = {
  gelu: 'gelu', gelu_python: 'gelu', gelu_new: 'gelu_tanh', gelu_pytorch_tanh: 'gelu_tanh', gelu_fast: 'gelu_tanh', relu: 'relu',
  silu: 'silu', swish: 'silu',
};

/** The config of a BERT-family `config.json` (`file` names it in errors). */
export function bertConfigFromJson(c: Json, file = 'config.json'): ResolvedBertConfig {
  const type = c['model_type'];
  if (typeof type !== 'string' || !(ENCODER_MODEL_TYPES as readonly string[]).includes(type)) {
    throw new Error(`${file}: field 'model_type' ${JSON.stringify(type)} is not a supported encoder (supported: ${ENCODER_MODEL_TYPES.join(', ')})`);
  }
  const distil = type === 'distilbert';
  // Fields of BertConfig / RobertaConfig that change the architecture attnode computes (absolute positions, an
  // encoder without cross-attention): any other value is refused rather than computed as if it were the default.
  if (!distil) {
    const pet = c['position_embedding_type'];
    if (pet !== undefined && pet !== null && pet !== 'absolute') {
      throw new Error(`${file}: field 'position_embedding_type' ${JSON.stringify(pet)} is not supported (only 'absolute': relative_key and relative_key_query add learned distance embeddings attnode does not compute)`);
    }
    for (const key of ['is_decoder', 'add_cross_attention']) {
      if (c[key] !== undefined && c[key] !== null && c[key] !== false) {
        throw new Error(`${file}: field '${key}' ${JSON.stringify(c[key])} is not supported (the encoder is bidirectional without cross-attention: only false)`);
      }
    }
  }
  const int = (key: string, min: number, dflt?: number): number => {
    const v = c[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
      throw new Error(`${file}: field '${key}' must be an integer >= ${min}, got ${JSON.stringify(c[key])}`);
    }
    return v;
  };
  const actKey = distil ? 'activation' : 'hidden_act';
  const actName = c[actKey] ?? 'gelu';
  const act = typeof actName === 'string' && Object.prototype.hasOwnProperty.call(ACTIVATIONS, actName) ? ACTIVATIONS[actName] : undefined;
  if (!act) throw new Error(`${file}: field '${actKey}' ${JSON.stringify(actName)} is not supported (supported: ${Object.keys(ACTIVATIONS).join(', ')})`);
  // DistilBERT's LayerNorms are eps 1e-12 whatever the config says (its modeling code reads no eps field).
  const eps = distil ? 1e-12 : c['layer_norm_eps'] ?? 1e-12;
  if (typeof eps !== 'number' || !(eps >= 0)) throw new Error(`${file}: field 'layer_norm_eps' must be a number >= 0, got ${JSON.stringify(eps)}`);
  let id2label: string[] | undefined;
  const labels = c['id2label'];
  if (labels !== undefined && labels !== null) {
    if (typeof labels !== 'object' || Array.isArray(labels)) throw new Error(`${file}: field 'id2label' must be an object of index → label`);
    const entries = Object.entries(labels as Json);
    id2label = new Array<string>(entries.length);
    for (const [k, v] of entries) {
      const i = Number(k);
      if (!Number.isInteger(i) || i < 0 || i >= entries.length || typeof v !== 'string') {
        throw new Error(`${file}: field 'id2label' must map the indices 0..${entries.length - 1} to strings, got ${JSON.stringify(k)}: ${JSON.stringify(v)}`);
      }
      id2label[i] = v;
    }
  } else if (c['num_labels'] !== undefined) {
    id2label = Array.from({ length: int('num_labels', 1) }, (_, i) => `LABEL_${i}`);
  }
  const family: EncoderFamily = distil ? 'distilbert' : type === 'bert' ? 'bert' : 'roberta';
  const problem = c['problem_type'];
  if (problem !== undefined && problem !== null && !(PROBLEM_TYPES as readonly unknown[]).includes(problem)) {
    throw new Error(`${file}: field 'problem_type' ${JSON.stringify(problem)} is not supported (supported: ${PROBLEM_TYPES.join(', ')}, null)`);
  }
  const raw: BertConfig = {
    family,
    vocabSize: int('vocab_size', 1),
    hiddenSize: int(distil ? 'dim' : 'hidden_size', 1),
    numHiddenLayers: int(distil ? 'n_layers' : 'num_hidden_layers', 0),
    numAttentionHeads: int(distil ? 'n_heads' : 'num_attention_heads', 1),
    intermediateSize: int(distil ? 'hidden_dim' : 'intermediate_size', 1),
    hiddenAct: act,
    maxPositionEmbeddings: int('max_position_embeddings', 1, 512),
    typeVocabSize: distil ? 0 : int('type_vocab_size', 1, family === 'roberta' ? 1 : 2),
    layerNormEps: eps,
    padTokenId: int('pad_token_id', 0, family === 'roberta' ? 1 : 0),
    ...(id2label ? { id2label } : {}),
    problemType: (problem ?? null) as ProblemType | null,
  };
  try {
    return resolveBertConfig(raw);
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** What an Auto class builds. */
export type EncoderTask = 'base' | 'masked-lm' | 'sequence-classification';

const PREFIX: Record<EncoderFamily, string> = { bert: 'bert.', roberta: 'roberta.', distilbert: 'distilbert.' };

/**
 * The model of `task` for `config`, with `weights` (Hugging Face key names,
 * with or without the `bert.`/`roberta.`/`distilbert.` prefix for the base
 * model) loaded. Tied copies of the word embedding and position-id buffers
 * some checkpoints carry are dropped; everything else must match.
 */
export function encoderFromWeights(task: EncoderTask, config: ResolvedBertConfig, weights: Record<string, Tensor>): EncoderModel | EncoderHeadModel {
  const prefix = PREFIX[config.family];
  const w: Record<string, Tensor> = {};
  for (const [k, t] of Object.entries(weights)) {
    // Tied decoders (same values as the word embedding) and non-persistent buffers older checkpoints saved.
    if (/^(cls\.predictions\.decoder\.(weight|bias)|lm_head\.decoder\.(weight|bias)|vocab_projector\.weight)$/.test(k)) continue;
    if (/(^|\.)embeddings\.(position_ids|token_type_ids)$/.test(k)) continue;
    // BertForPreTraining checkpoints (bert-base-uncased) carry the next-sentence head, which no task here has
    // (transformers drops it as an unexpected key).
    if (/^cls\.seq_relationship\.(weight|bias)$/.test(k)) continue;
    w[k] = t;
  }
  let model: EncoderModel | EncoderHeadModel;
  if (task === 'base') {
    const prefixed = Object.keys(w).some((k) => k.startsWith(prefix));
    const base: Record<string, Tensor> = {};
    // A head checkpoint's encoder is the base model; its head weights are not part of it.
    for (const [k, t] of Object.entries(w)) {
      if (!prefixed) base[k] = t;
      else if (k.startsWith(prefix)) base[k.slice(prefix.length)] = t;
    }
    model = config.family === 'distilbert'
      ? new DistilBertModel(config)
      : new BertModel(config, { addPoolingLayer: 'pooler.dense.weight' in base });
    model.loadStateDict(base);
    // In eval mode, as transformers' from_pretrained returns models.
    model.eval();
    return model;
  }
  if (task === 'masked-lm') {
    model = config.family === 'bert' ? new BertForMaskedLM(config) : config.family === 'roberta' ? new RobertaForMaskedLM(config) : new DistilBertForMaskedLM(config);
    // transformers' BertForMaskedLM has no pooler; checkpoints converted from pretraining still carry one.
    delete w[`${prefix}pooler.dense.weight`];
    delete w[`${prefix}pooler.dense.bias`];
  } else {
    model = config.family === 'bert' ? new BertForSequenceClassification(config)
      : config.family === 'roberta' ? new RobertaForSequenceClassification(config) : new DistilBertForSequenceClassification(config);
    if (config.family === 'roberta') {
      delete w['roberta.pooler.dense.weight'];
      delete w['roberta.pooler.dense.bias'];
    }
  }
  model.loadStateDict(w);
  model.eval();
  return model;
}
