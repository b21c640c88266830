import { Module, parameter } from './module';
import { Linear } from './linear';
import { Tensor, zeros } from '../tensor';
import { checkInt, formatShape } from '../errors';
import * as ops from '../ops';
import {
  attendHeads, causalMaskFrom, checkMhaInputs, collectMasks, emptyInOrderOf, inProjection, mhaForward, projectQuery,
  type MultiHeadAttentionParams,
} from '../ops/multi-head-attention';
import { constant_, xavierNormal_, xavierUniform_ } from './init';
import { boolOption, checkOptions, numberOption } from './options';
import { KVCache, type MemoryKV } from './kv-cache';
import type {
  MultiheadAttentionCacheOptions, MultiheadAttentionForwardOptions, MultiheadAttentionOptions, MultiheadAttentionOutput,
  MultiheadAttentionStepOptions,
} from './multihead-attention-options';

export type * from './multihead-attention-options';

type F32 = Tensor<'float32'>;

/**
 * Multi-head attention, as PyTorch's `nn.MultiheadAttention`: same options,
 * defaults, mask semantics and state-dict keys (`in_proj_weight` or
 * `q_proj_weight`/`k_proj_weight`/`v_proj_weight` when kdim/vdim differ,
 * `in_proj_bias`, `bias_k`, `bias_v`, `out_proj.weight`, `out_proj.bias`).
 *
 * The math is `ops.multiHeadAttentionForward` on sequence-first views: a
 * batch-first input is transposed as a view, never copied.
 */
export class MultiheadAttention extends Module {
  readonly embedDim: number;
  readonly numHeads: number;
  readonly headDim: number;
  readonly kdim: number;
  readonly vdim: number;
  readonly batchFirst: boolean;
  readonly addZeroAttn: boolean;
  readonly dropout: number;
  inProjWeight: F32 | null = null;
  qProjWeight: F32 | null = null;
  kProjWeight: F32 | null = null;
  vProjWeight: F32 | null = null;
  inProjBias: F32 | null = null;
  biasK: F32 | null = null;
  biasV: F32 | null = null;
  outProj: Linear;

  constructor(options: MultiheadAttentionOptions) {
    super();
    const name = 'MultiheadAttention';
    checkOptions(name, options, [
      'embedDim', 'numHeads', 'dropout', 'bias', 'addBiasKv', 'addZeroAttn', 'kdim', 'vdim', 'batchFirst',
    ]);
    const e = (this.embedDim = checkInt(name, 'embedDim', options.embedDim, 1));
    this.numHeads = checkInt(name, 'numHeads', options.numHeads, 1);
    if (e % this.numHeads !== 0) {
      throw new RangeError(`${name}: embedDim (${e}) must be divisible by numHeads (${this.numHeads})`);
    }
    this.headDim = e / this.numHeads;
    // null is PyTorch's kdim=None / vdim=None: embedDim.
    this.kdim = options.kdim === undefined || options.kdim === null ? e : checkInt(name, 'kdim', options.kdim, 1);
    this.vdim = options.vdim === undefined || options.vdim === null ? e : checkInt(name, 'vdim', options.vdim, 1);
    this.batchFirst = boolOption(name, 'batchFirst', options.batchFirst, false);
    this.addZeroAttn = boolOption(name, 'addZeroAttn', options.addZeroAttn, false);
    this.dropout = numberOption(name, 'dropout', options.dropout, 0, { min: 0, max: 1, maxExclusive: true });
    const bias = boolOption(name, 'bias', options.bias, true);
    if (this.kdim === e && this.vdim === e) {
      this.inProjWeight = parameter(xavierUniform_(zeros([3 * e, e])));
    } else {
      this.qProjWeight = parameter(xavierUniform_(zeros([e, e])));
      this.kProjWeight = parameter(xavierUniform_(zeros([e, this.kdim])));
      this.vProjWeight = parameter(xavierUniform_(zeros([e, this.vdim])));
    }
    if (bias) this.inProjBias = parameter(zeros([3 * e]));
    if (boolOption(name, 'addBiasKv', options.addBiasKv, false)) {
      this.biasK = parameter(xavierNormal_(zeros([1, 1, e])));
      this.biasV = parameter(xavierNormal_(zeros([1, 1, e])));
    }
    this.outProj = new Linear({ inFeatures: e, outFeatures: e, bias });
    if (bias) constant_(this.outProj.bias!, 0);
  }

  /**
   * query [L, N, E] (or [N, L, E] with batchFirst, or [L, E] unbatched), key
   * [S, N, kdim], value [S, N, vdim] → `{ output, weights }`.
   */
  forward(query: F32, key: F32, value: F32, options: MultiheadAttentionForwardOptions = {}): MultiheadAttentionOutput {
    return this.inContext(() => {
      const fn = 'MultiheadAttention.forward';
      checkOptions(fn, options, ['keyPaddingMask', 'needWeights', 'attnMask', 'averageAttnWeights', 'isCausal']);
      boolOption(fn, 'needWeights', options.needWeights, true);
      boolOption(fn, 'averageAttnWeights', options.averageAttnWeights, true);
      boolOption(fn, 'isCausal', options.isCausal, false);
      checkMhaInputs(fn, query, key, value, this);
      // Sequence-first views of the inputs; one view per distinct input, so shared projections stay shared.
      const [q, k, v] = this.#seqFirst(query, key, value);
      const { output, weights } = mhaForward(fn, q, k, v, this.#params(), { ...options, dropoutP: this.dropout, training: this.training });
      return { output: this.#fromSeqFirst(output), weights };
    });
  }

  /** An empty {@link KVCache} for {@link forwardStep} self-attention with this module. */
  createCache(options: MultiheadAttentionCacheOptions = {}): KVCache {
    checkOptions('MultiheadAttention.createCache', options, ['batch', 'capacity']);
    const { batch = 1, capacity } = options;
    return new KVCache({ batch, embedDim: this.embedDim, ...(capacity === undefined ? {} : { capacity }) });
  }

  /**
   * Projects a fixed key/value sequence once (e.g. a decoder's encoder
   * memory) for any number of {@link forwardStep} calls: key [S, N, kdim],
   * value [S, N, vdim] (batch-first or unbatched alike; value defaults to key).
   */
  precomputeKV(key: F32, value: F32 = key): MemoryKV {
    return this.inStep(() => {
      const fn = 'MultiheadAttention.precomputeKV';
      this.#checkStepSupported(fn);
      for (const [arg, t, feat] of [['key', key, this.kdim], ['value', value, this.vdim]] as const) {
        if (!(t instanceof Tensor) || t.dtype !== 'float32') {
          throw new TypeError(`${fn}: argument '${arg}' must be a float32 Tensor, got ${describe(t)}`);
        }
        if ((t.ndim !== 2 && t.ndim !== 3) || t.shape[t.ndim - 1] !== feat) {
          throw new RangeError(`${fn}: argument '${arg}' must have shape [S, batch, ${feat}] / [batch, S, ${feat}] (or [S, ${feat}] unbatched), got ${formatShape(t.shape)}`);
        }
      }
      if (key.ndim !== value.ndim || key.shape.slice(0, -1).some((d, i) => d !== value.shape[i])) {
        throw new RangeError(`${fn}: key and value must have the same sequence and batch sizes, got ${formatShape(key.shape)} and ${formatShape(value.shape)}`);
      }
      const [, k0, v0] = this.#seqFirst(null, key, value).map((t) => (key.ndim === 2 ? t.unsqueeze(1) : t));
      const { k, v } = inProjection(null, k0!, v0!, this.#params(), { same: key === value ? 'kv' : 'none' });
      return { batch: k.shape[1]!, length: k.shape[0]!, embedDim: this.embedDim, k, v };
    });
  }

  /**
   * One incremental step: query [t, N, E] (batch-first or unbatched alike)
   * for the next t positions → output shaped like the query.
   *
   * With a {@link KVCache} (self-attention) the step's keys and values are
   * the query's own projections, written by the projection GEMM straight into
   * the cache's next positions; each query position attends to every cached
   * position up to its own, which is what `forward(x, x, x, { isCausal: true })`
   * on the whole prefix gives for the same rows. With a {@link MemoryKV}
   * (cross-attention) the query attends to all of the precomputed positions.
   * Not supported with `addBiasKv` / `addZeroAttn` (their extra key rows come
   * after the sequence, which has no fixed end while decoding).
   */
  forwardStep(query: F32, cache: KVCache | MemoryKV, options: MultiheadAttentionStepOptions = {}): F32 {
    return this.inStep(() => {
      const fn = 'MultiheadAttention.forwardStep';
      checkOptions(fn, options, ['keyPaddingMask']);
      this.#checkStepSupported(fn);
      const e = this.embedDim;
      if (!(query instanceof Tensor) || query.dtype !== 'float32') {
        throw new TypeError(`${fn}: argument 'query' must be a float32 Tensor, got ${describe(query)}`);
      }
      if ((query.ndim !== 2 && query.ndim !== 3) || query.shape[query.ndim - 1] !== e) {
        throw new RangeError(`${fn}: argument 'query' must have shape [t, batch, ${e}] / [batch, t, ${e}] (or [t, ${e}] unbatched), got ${formatShape(query.shape)}`);
      }
      const batched = query.ndim === 3;
      const q0 = batched ? this.#seqFirst(query, query, query)[0] : query.unsqueeze(1);
      const [t, n] = q0.shape as [number, number];
      if (cache === null || typeof cache !== 'object' || cache.embedDim !== e || cache.batch !== n) {
        const got = cache !== null && typeof cache === 'object' ? `batch ${cache.batch}, embedDim ${cache.embedDim}` : String(cache);
        throw new RangeError(`${fn}: argument 'cache' must be a KVCache or MemoryKV for batch ${n} and embedDim ${e}, got ${got}`);
      }
      let q: F32;
      let k: F32;
      let v: F32;
      let causal = false;
      let offsetMask: F32 | null = null;
      if (cache instanceof KVCache) {
        if (!this.inProjWeight) {
          throw new RangeError(`${fn}: a self-attention KVCache needs kdim = vdim = embedDim (${e}), got kdim ${this.kdim}, vdim ${this.vdim}`);
        }
        const pos = cache.length;
        cache.reserve(this.backend, pos + t);
        // The k/v projection is written straight into the cache's next t positions.
        ({ q } = inProjection(q0, q0, q0, this.#params(), { same: 'kv', kvOut: cache.slot(pos, t) }));
        cache.advance(t);
        ({ k, v } = cache.keysValues());
        // The kernel's causal flag is top-left aligned (query i sees keys ≤ i); here query i is position pos + i.
        if (t > 1 && pos === 0) causal = true;
        else if (t > 1) offsetMask = causalMaskFrom(pos, t);
      } else {
        q = projectQuery(q0, this.#params());
        ({ k, v } = cache);
      }
      const masks = collectMasks(fn, { attnMask: offsetMask, keyPaddingMask: options.keyPaddingMask ?? null },
        batched, n, this.numHeads, t, k.shape[0]!).map((m) => m.mask);
      const attn = emptyInOrderOf(q0);
      attendHeads(q, k, v, this.numHeads, attn, { masks, causal });
      const out = ops.linear(attn, this.outProj.weight, this.outProj.bias, { cacheWeight: true });
      return batched ? this.#fromSeqFirst(out) : out.squeeze(1);
    });
  }

  /** The parameters as the functional form takes them. */
  #params(): MultiHeadAttentionParams {
    return {
      numHeads: this.numHeads, inProjWeight: this.inProjWeight, qProjWeight: this.qProjWeight, kProjWeight: this.kProjWeight,
      vProjWeight: this.vProjWeight, inProjBias: this.inProjBias, biasK: this.biasK, biasV: this.biasV,
      addZeroAttn: this.addZeroAttn, outProjWeight: this.outProj.weight, outProjBias: this.outProj.bias,
    };
  }

  /** Sequence-first views of batch-first inputs (the same input gives the same view); others as they are. */
  #seqFirst(query: F32 | null, key: F32, value: F32): [F32, F32, F32] {
    const t = (x: F32): F32 => (this.batchFirst && x.ndim === 3 ? x.transpose(0, 1) : x);
    const k = t(key);
    const v = value === key ? k : t(value);
    const q = query === null ? k : query === key ? k : query === value ? v : t(query);
    return [q, k, v];
  }

  #fromSeqFirst(x: F32): F32 {
    return this.batchFirst && x.ndim === 3 ? x.transpose(0, 1) : x;
  }

  #checkStepSupported(fn: string): void {
    if (this.biasK || this.addZeroAttn) {
      throw new RangeError(`${fn}: incremental decoding does not support addBiasKv or addZeroAttn`);
    }
  }
}

function describe(t: unknown): string {
  return t instanceof Tensor ? `a ${t.dtype} Tensor ${formatShape(t.shape)}` : t === null ? 'null' : typeof t;
}
