import { Module } from './module';
import { Linear } from './linear';
import { Tensor, zeros } from '../tensor';
import { allocateUninitialized } from '../dtype';
import { weightView } from './weight-views';
import { checkInt, formatShape } from '../errors';
import { Activation, BinaryOp, type AttentionMask, type Backend } from '../backend/backend';
import { currentContext } from '../context';
import { xavierNormal, xavierUniform } from './init';
import { boolOption, checkOptions } from './options';
import { KVCache, type MemoryKV } from './kv-cache';

/** Options of {@link MultiheadAttention}: PyTorch's `nn.MultiheadAttention` arguments in camelCase. */
export interface MultiheadAttentionOptions {
  embedDim: number;
  numHeads: number;
  /** Accepted for PyTorch parity; attnode runs inference, so dropout is never applied. */
  dropout?: number;
  /** Biases on the input and output projections (default true). */
  bias?: boolean;
  /** Learned key/value bias rows appended to the keys and values (default false). */
  addBiasKv?: boolean;
  /** A zero key/value row appended after them (default false). */
  addZeroAttn?: boolean;
  /** Feature size of `key` (default embedDim). */
  kdim?: number;
  /** Feature size of `value` (default embedDim). */
  vdim?: number;
  /** Inputs are [batch, seq, feature] instead of [seq, batch, feature] (default false). */
  batchFirst?: boolean;
}

/** A mask tensor: bool (`true` = not allowed to attend) or float32 (added to the scores). */
export type MaskTensor = Tensor<'bool'> | Tensor<'float32'> | Tensor<'bool' | 'float32'>;

/** Forward options of {@link MultiheadAttention}, as PyTorch's keyword arguments. */
export interface MultiheadAttentionForwardOptions {
  /** [batch, S] (or [S] unbatched): `true` / -inf marks padding keys. */
  keyPaddingMask?: MaskTensor | null;
  /** Return the attention weights (PyTorch's default: true). */
  needWeights?: boolean;
  /** [L, S] or [batch·numHeads, L, S] (unbatched: [numHeads, L, S]). */
  attnMask?: MaskTensor | null;
  /** Average the weights over heads (default true) instead of returning one map per head. */
  averageAttnWeights?: boolean;
  /** Apply a causal mask (query i sees keys j ≤ i), in addition to `attnMask` if one is given. */
  isCausal?: boolean;
}

/** Options of {@link MultiheadAttention.forwardStep}. */
export interface MultiheadAttentionStepOptions {
  /**
   * [batch, S] (or [S] unbatched) over every key the step attends to: all
   * cached positions plus the step's own (self-attention), or the memory
   * positions (a {@link MemoryKV}). `true` / -inf marks padding keys.
   */
  keyPaddingMask?: MaskTensor | null;
}

/** Options of {@link MultiheadAttention.createCache}. */
export interface MultiheadAttentionCacheOptions {
  /** Sequences decoded side by side (default 1; 1 for unbatched input). */
  batch?: number;
  /** Positions allocated up front (default 16); the cache doubles when it fills. */
  capacity?: number;
}

/** Result of {@link MultiheadAttention.forward}. */
export interface MultiheadAttentionOutput {
  /** Shaped like the query. */
  output: Tensor<'float32'>;
  /** [batch, L, S] averaged or [batch, numHeads, L, S]; without the batch axis for unbatched input; null unless asked for. */
  weights: Tensor<'float32'> | null;
}

/**
 * Multi-head attention, as PyTorch's `nn.MultiheadAttention`: same options,
 * defaults, mask semantics and state-dict keys (`in_proj_weight` or
 * `q_proj_weight`/`k_proj_weight`/`v_proj_weight` when kdim/vdim differ,
 * `in_proj_bias`, `bias_k`, `bias_v`, `out_proj.weight`, `out_proj.bias`).
 *
 * Heads are never split or merged by copying: the fused attention kernel
 * reads q, k, v in their projected layout through strides.
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
  inProjWeight: Tensor<'float32'> | null = null;
  qProjWeight: Tensor<'float32'> | null = null;
  kProjWeight: Tensor<'float32'> | null = null;
  vProjWeight: Tensor<'float32'> | null = null;
  inProjBias: Tensor<'float32'> | null = null;
  biasK: Tensor<'float32'> | null = null;
  biasV: Tensor<'float32'> | null = null;
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
    this.kdim = options.kdim === undefined ? e : checkInt(name, 'kdim', options.kdim, 1);
    this.vdim = options.vdim === undefined ? e : checkInt(name, 'vdim', options.vdim, 1);
    this.batchFirst = boolOption(name, 'batchFirst', options.batchFirst, false);
    this.addZeroAttn = boolOption(name, 'addZeroAttn', options.addZeroAttn, false);
    this.dropout = options.dropout ?? 0;
    const bias = boolOption(name, 'bias', options.bias, true);
    if (this.kdim === e && this.vdim === e) {
      this.inProjWeight = xavierUniform([3 * e, e]);
    } else {
      this.qProjWeight = xavierUniform([e, e]);
      this.kProjWeight = xavierUniform([e, this.kdim]);
      this.vProjWeight = xavierUniform([e, this.vdim]);
    }
    if (bias) this.inProjBias = zeros([3 * e]);
    if (boolOption(name, 'addBiasKv', options.addBiasKv, false)) {
      this.biasK = xavierNormal([1, 1, e]);
      this.biasV = xavierNormal([1, 1, e]);
    }
    this.outProj = new Linear({ inFeatures: e, outFeatures: e, bias });
    if (bias) this.outProj.bias!.data.fill(0);
  }

  /**
   * query [L, N, E] (or [N, L, E] with batchFirst, or [L, E] unbatched), key
   * [S, N, kdim], value [S, N, vdim] → `{ output, weights }`.
   */
  forward(
    query: Tensor<'float32'>,
    key: Tensor<'float32'>,
    value: Tensor<'float32'>,
    options: MultiheadAttentionForwardOptions = {},
  ): MultiheadAttentionOutput {
    return this.inContext(() => {
      const fn = 'MultiheadAttention.forward';
      checkOptions(fn, options, ['keyPaddingMask', 'needWeights', 'attnMask', 'averageAttnWeights', 'isCausal']);
      const needWeights = boolOption(fn, 'needWeights', options.needWeights, true);
      const average = boolOption(fn, 'averageAttnWeights', options.averageAttnWeights, true);
      const isCausal = boolOption(fn, 'isCausal', options.isCausal, false);
      const dims = this.#checkInputs(fn, query, key, value);
      const { batched, n, l, s } = dims;
      const e = this.embedDim;
      const h = this.numHeads;
      const hd = this.headDim;
      const be = this.backend;

      // Projections, into [rows, features] buffers in the inputs' own row order.
      const rowsQ = l * n;
      const rowsK = s * n;
      const w = this.inProjWeight;
      const bias = this.inProjBias?.data ?? null;
      const bslice = (i: number, count = 1): Float32Array | null => (bias ? bias.subarray(i * e, (i + count) * e) : null);
      let q: Strided;
      let k: Strided;
      let v: Strided;
      if (w && query === key && key === value) {
        const qkv = project(be, query.data, rowsQ, e, w.data, bias, 3 * e);
        q = { data: qkv, rowStride: 3 * e };
        k = { data: qkv.subarray(e), rowStride: 3 * e };
        v = { data: qkv.subarray(2 * e), rowStride: 3 * e };
      } else if (w && key === value) {
        q = { data: project(be, query.data, rowsQ, e, weightView(w.data, 0, e * e), bslice(0), e), rowStride: e };
        const kv = project(be, key.data, rowsK, e, weightView(w.data, e * e), bslice(1, 2), 2 * e);
        k = { data: kv, rowStride: 2 * e };
        v = { data: kv.subarray(e), rowStride: 2 * e };
      } else {
        const wq = w ? weightView(w.data, 0, e * e) : this.qProjWeight!.data;
        const wk = w ? weightView(w.data, e * e, 2 * e * e) : this.kProjWeight!.data;
        const wv = w ? weightView(w.data, 2 * e * e) : this.vProjWeight!.data;
        q = { data: project(be, query.data, rowsQ, e, wq, bslice(0), e), rowStride: e };
        k = { data: project(be, key.data, rowsK, this.kdim, wk, bslice(1), e), rowStride: e };
        v = { data: project(be, value.data, rowsK, this.vdim, wv, bslice(2), e), rowStride: e };
      }

      let masks = this.#collectMasks(fn, options, dims);
      // Input layout: row of (batch b, position p) is p·N + b, or b·L + p when batch-first.
      const bf = this.batchFirst || n === 1;
      let kLen = s;
      let kStrides = layoutStrides(bf, n, s, k.rowStride, hd);
      let vStrides = layoutStrides(bf, n, s, v.rowStride, hd);
      if (this.biasK || this.addZeroAttn) {
        // Extra key/value rows: materialise k, v batch-first with room for them, and widen the masks.
        const extra = (this.biasK ? 1 : 0) + (this.addZeroAttn ? 1 : 0);
        k = appendRows(be, k, kStrides, n, s, e, extra, this.biasK?.data ?? null);
        v = appendRows(be, v, vStrides, n, s, e, extra, this.biasV?.data ?? null);
        kLen = s + extra;
        kStrides = layoutStrides(true, n, kLen, e, hd);
        vStrides = kStrides;
        masks = masks.map((m) => padMask(m, n, h, l, s, extra));
      }

      const attn = allocateUninitialized('float32', rowsQ * e);
      const weights = needWeights ? allocateUninitialized('float32', n * h * l * kLen) : null;
      be.attention({
        q: q.data,
        k: k.data,
        v: v.data,
        out: attn,
        qStrides: layoutStrides(bf, n, l, q.rowStride, hd),
        kStrides,
        vStrides,
        outStrides: layoutStrides(bf, n, l, e, hd),
        batch: n,
        heads: h,
        lq: l,
        lk: kLen,
        dk: hd,
        dv: hd,
        scale: 1 / Math.sqrt(hd),
        masks: masks.map((m) => m.mask),
        causal: isCausal,
        weights,
        precision: currentContext().attentionPrecision,
      });
      const out = project(be, attn, rowsQ, e, this.outProj.weight.data, this.outProj.bias?.data ?? null, e);
      const output = new Tensor(out, query.shape.slice(), 'float32');
      if (!weights) return { output, weights: null };
      let wt: Float32Array = weights;
      if (average) wt = averageHeads(be, weights, n, h, l * kLen);
      const shape = average ? [n, l, kLen] : [n, h, l, kLen];
      return { output, weights: new Tensor(wt, batched ? shape : shape.slice(1), 'float32') };
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
  precomputeKV(key: Tensor<'float32'>, value: Tensor<'float32'> = key): MemoryKV {
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
    const batched = key.ndim === 3;
    const n = batched ? key.shape[this.batchFirst ? 0 : 1]! : 1;
    const s = key.shape[batched && this.batchFirst ? 1 : 0]!;
    const e = this.embedDim;
    const hd = this.headDim;
    const be = this.backend;
    const bf = this.batchFirst || n === 1;
    const w = this.inProjWeight;
    const bias = this.inProjBias?.data ?? null;
    const bslice = (i: number, count = 1): Float32Array | null => (bias ? bias.subarray(i * e, (i + count) * e) : null);
    if (w && key === value) {
      // One GEMM for both: the [k; v] rows of in_proj_weight, keys and values interleaved per row.
      const kv = project(be, key.data, n * s, e, weightView(w.data, e * e), bslice(1, 2), 2 * e);
      const strides = layoutStrides(bf, n, s, 2 * e, hd);
      return { batch: n, length: s, embedDim: e, k: kv, v: kv.subarray(e), kStrides: strides, vStrides: strides };
    }
    const wk = w ? weightView(w.data, e * e, 2 * e * e) : this.kProjWeight!.data;
    const wv = w ? weightView(w.data, 2 * e * e) : this.vProjWeight!.data;
    const strides = layoutStrides(bf, n, s, e, hd);
    return {
      batch: n,
      length: s,
      embedDim: e,
      k: project(be, key.data, n * s, this.kdim, wk, bslice(1), e),
      v: project(be, value.data, n * s, this.vdim, wv, bslice(2), e),
      kStrides: strides,
      vStrides: strides,
    };
  }

  /**
   * One incremental step: query [t, N, E] (batch-first or unbatched alike)
   * for the next t positions → output shaped like the query.
   *
   * With a {@link KVCache} (self-attention) the step's keys and values are
   * the query's own projections: they are appended to the cache (written by
   * the projection GEMM straight into the cache buffer), and each query
   * position attends to every cached position up to and including its own,
   * which is what `forward(x, x, x, { isCausal: true })` on the whole prefix
   * gives for the same rows. With a {@link MemoryKV} (cross-attention) the
   * query attends to all of the precomputed positions.
   *
   * Not supported with `addBiasKv` / `addZeroAttn` (their extra key rows
   * come after the sequence, which has no fixed end while decoding).
   */
  forwardStep(
    query: Tensor<'float32'>,
    cache: KVCache | MemoryKV,
    options: MultiheadAttentionStepOptions = {},
  ): Tensor<'float32'> {
    const fn = 'MultiheadAttention.forwardStep';
    checkOptions(fn, options, ['keyPaddingMask']);
    this.#checkStepSupported(fn);
    if (!(query instanceof Tensor) || query.dtype !== 'float32') {
      throw new TypeError(`${fn}: argument 'query' must be a float32 Tensor, got ${describe(query)}`);
    }
    const e = this.embedDim;
    if ((query.ndim !== 2 && query.ndim !== 3) || query.shape[query.ndim - 1] !== e) {
      throw new RangeError(`${fn}: argument 'query' must have shape [t, batch, ${e}] / [batch, t, ${e}] (or [t, ${e}] unbatched), got ${formatShape(query.shape)}`);
    }
    const batched = query.ndim === 3;
    const n = batched ? query.shape[this.batchFirst ? 0 : 1]! : 1;
    const t = query.shape[batched && this.batchFirst ? 1 : 0]!;
    if (cache === null || typeof cache !== 'object' || cache.embedDim !== e || cache.batch !== n) {
      const got = cache !== null && typeof cache === 'object'
        ? `batch ${cache.batch}, embedDim ${cache.embedDim}`
        : String(cache);
      throw new RangeError(`${fn}: argument 'cache' must be a KVCache or MemoryKV for batch ${n} and embedDim ${e}, got ${got}`);
    }
    const h = this.numHeads;
    const hd = this.headDim;
    const be = this.backend;
    const bf = this.batchFirst || n === 1;
    const rows = n * t;
    const w = this.inProjWeight;
    const bias = this.inProjBias?.data ?? null;
    const bslice = (i: number, count = 1): Float32Array | null => (bias ? bias.subarray(i * e, (i + count) * e) : null);
    const q = project(be, query.data, rows, e, w ? weightView(w.data, 0, e * e) : this.qProjWeight!.data, bslice(0), e);

    let k: Float32Array;
    let v: Float32Array;
    let kStrides: readonly [number, number, number];
    let vStrides: readonly [number, number, number];
    let lk: number;
    let causal = false;
    const masks: AttentionMask[] = [];
    if (cache instanceof KVCache) {
      if (!w) {
        throw new RangeError(`${fn}: a self-attention KVCache needs kdim = vdim = embedDim (${e}), got kdim ${this.kdim}, vdim ${this.vdim}`);
      }
      const pos = cache.length;
      cache.reserve(be, pos + t);
      const cap = cache.capacity;
      const row = 2 * e;
      const data = cache.data;
      const wkv = weightView(w.data, e * e);
      if (bf || t === 1) {
        // Each sequence's t input rows are contiguous (t·E apart across the batch): the GEMM writes its k/v rows
        // directly at positions pos.. of that sequence in the cache, one batch entry per sequence.
        be.gemm({
          a: query.data, b: wkv, c: data.subarray(pos * row), m: t, n: row, k: e, transA: false, transB: true, alpha: 1,
          beta: 0, bias: bslice(1, 2), act: Activation.None, batch: n, strideA: t * e, strideB: 0, strideC: cap * row, cacheB: true,
        });
      } else {
        // Sequence-first rows interleave the batch: project, then one strided copy per sequence.
        const kv = project(be, query.data, rows, e, wkv, bslice(1, 2), row);
        for (let b = 0; b < n; b++) {
          const src = kv.subarray(b * row, ((t - 1) * n + b) * row + row);
          const dst = data.subarray((b * cap + pos) * row, (b * cap + pos + t) * row);
          be.binary({ op: BinaryOp.Add, a: src, aStrides: [n * row, 1], b: ZERO, bStrides: [0, 0], y: dst, shape: [t, row] });
        }
      }
      cache.advance(t);
      lk = pos + t;
      k = data;
      v = data.subarray(e);
      kStrides = vStrides = [cap * row, hd, row];
      if (t > 1 && pos === 0) {
        causal = true;
      } else if (t > 1) {
        // The kernel's causal flag is top-left aligned (query i sees keys ≤ i); here query i is position pos + i.
        const m = new Float32Array(t * lk);
        for (let i = 0; i < t; i++) m.fill(-Infinity, i * lk + pos + i + 1, (i + 1) * lk);
        masks.push({ data: m, strides: [0, 0, lk, 1] });
      }
    } else {
      ({ k, v, kStrides, vStrides, length: lk } = cache);
    }
    const kpm = options.keyPaddingMask;
    if (kpm !== undefined && kpm !== null) {
      const data = maskData(fn, 'keyPaddingMask', kpm);
      const ok = batched ? kpm.ndim === 2 && kpm.shape[0] === n && kpm.shape[1] === lk : kpm.ndim === 1 && kpm.shape[0] === lk;
      if (!ok) {
        const expected = batched ? `[batch, S] = [${n}, ${lk}]` : `[S] = [${lk}]`;
        throw new RangeError(`${fn}: argument 'keyPaddingMask' must have shape ${expected} (every key attended to), got ${formatShape(kpm.shape)}`);
      }
      masks.push({ data, strides: [lk, 0, 0, 1] });
    }

    const attn = allocateUninitialized('float32', rows * e);
    be.attention({
      q,
      k,
      v,
      out: attn,
      qStrides: layoutStrides(bf, n, t, e, hd),
      kStrides,
      vStrides,
      outStrides: layoutStrides(bf, n, t, e, hd),
      batch: n,
      heads: h,
      lq: t,
      lk,
      dk: hd,
      dv: hd,
      scale: 1 / Math.sqrt(hd),
      masks,
      causal,
      weights: null,
      precision: currentContext().attentionPrecision,
    });
    const out = project(be, attn, rows, e, this.outProj.weight.data, this.outProj.bias?.data ?? null, e);
    return new Tensor(out, query.shape.slice(), 'float32');
  }

  #checkStepSupported(fn: string): void {
    if (this.biasK || this.addZeroAttn) {
      throw new RangeError(`${fn}: incremental decoding does not support addBiasKv or addZeroAttn`);
    }
  }

  #checkInputs(fn: string, query: Tensor<'float32'>, key: Tensor<'float32'>, value: Tensor<'float32'>): Dims {
    for (const [arg, t] of [['query', query], ['key', key], ['value', value]] as const) {
      if (!(t instanceof Tensor) || t.dtype !== 'float32') {
        throw new TypeError(`${fn}: argument '${arg}' must be a float32 Tensor, got ${describe(t)}`);
      }
    }
    const batched = query.ndim === 3;
    const rank = batched ? 3 : 2;
    if (query.ndim !== 2 && query.ndim !== 3) {
      throw new RangeError(`${fn}: argument 'query' must be 3-D (batched) or 2-D (unbatched), got shape ${formatShape(query.shape)}`);
    }
    for (const [arg, t, feat] of [['key', key, this.kdim], ['value', value, this.vdim]] as const) {
      if (t.ndim !== rank) {
        throw new RangeError(`${fn}: argument '${arg}' must be ${rank}-D like query ${formatShape(query.shape)}, got shape ${formatShape(t.shape)}`);
      }
      if (t.shape[rank - 1] !== feat) {
        throw new RangeError(`${fn}: argument '${arg}' must have ${feat} features (${arg === 'key' ? 'kdim' : 'vdim'}) in its last dim, got shape ${formatShape(t.shape)}`);
      }
    }
    if (query.shape[rank - 1] !== this.embedDim) {
      throw new RangeError(`${fn}: argument 'query' must have embedDim = ${this.embedDim} features in its last dim, got shape ${formatShape(query.shape)}`);
    }
    const seqAxis = batched && this.batchFirst ? 1 : 0;
    const batchAxis = this.batchFirst ? 0 : 1;
    const n = batched ? query.shape[batchAxis]! : 1;
    const l = query.shape[seqAxis]!;
    const s = key.shape[seqAxis]!;
    if (batched && (key.shape[batchAxis] !== n || value.shape[batchAxis] !== n)) {
      throw new RangeError(`${fn}: query, key and value must have the same batch size (dim ${batchAxis}), got ${formatShape(query.shape)}, ${formatShape(key.shape)}, ${formatShape(value.shape)}`);
    }
    if (value.shape[seqAxis] !== s) {
      throw new RangeError(`${fn}: key and value must have the same sequence length (dim ${seqAxis}), got ${formatShape(key.shape)} and ${formatShape(value.shape)}`);
    }
    return { batched, n, l, s };
  }

  #collectMasks(fn: string, options: MultiheadAttentionForwardOptions, dims: Dims): ShapedMask[] {
    const { batched, n, l, s } = dims;
    const h = this.numHeads;
    const out: ShapedMask[] = [];
    const am = options.attnMask;
    if (am !== undefined && am !== null) {
      const data = maskData(fn, 'attnMask', am);
      const lead = batched ? n * h : h;
      if (am.ndim === 2 && am.shape[0] === l && am.shape[1] === s) {
        out.push({ mask: { data, strides: [0, 0, s, 1] }, kind: 'attn2d' });
      } else if (am.ndim === 3 && am.shape[0] === lead && am.shape[1] === l && am.shape[2] === s) {
        out.push({ mask: { data, strides: [h * l * s, l * s, s, 1] }, kind: 'attn3d' });
      } else {
        const lead3 = batched ? `[batch·numHeads, L, S] = [${lead}, ${l}, ${s}]` : `[numHeads, L, S] = [${lead}, ${l}, ${s}]`;
        throw new RangeError(`${fn}: argument 'attnMask' must have shape [L, S] = [${l}, ${s}] or ${lead3}, got ${formatShape(am.shape)}`);
      }
    }
    const kpm = options.keyPaddingMask;
    if (kpm !== undefined && kpm !== null) {
      const data = maskData(fn, 'keyPaddingMask', kpm);
      const ok = batched ? kpm.ndim === 2 && kpm.shape[0] === n && kpm.shape[1] === s : kpm.ndim === 1 && kpm.shape[0] === s;
      if (!ok) {
        const expected = batched ? `[batch, S] = [${n}, ${s}]` : `[S] = [${s}]`;
        throw new RangeError(`${fn}: argument 'keyPaddingMask' must have shape ${expected}, got ${formatShape(kpm.shape)}`);
      }
      out.push({ mask: { data, strides: [s, 0, 0, 1] }, kind: 'padding' });
    }
    return out;
  }
}

interface Dims {
  batched: boolean;
  n: number;
  l: number;
  s: number;
}

/** A [rows, features] buffer whose rows are `rowStride` apart. */
interface Strided {
  data: Float32Array;
  rowStride: number;
}

interface ShapedMask {
  mask: AttentionMask;
  kind: 'attn2d' | 'attn3d' | 'padding';
}

function describe(t: unknown): string {
  return t instanceof Tensor ? `a ${t.dtype} Tensor ${formatShape(t.shape)}` : t === null ? 'null' : typeof t;
}

function maskData(fn: string, arg: string, m: Tensor): Float32Array | Uint8Array {
  if (!(m instanceof Tensor) || (m.dtype !== 'bool' && m.dtype !== 'float32')) {
    throw new TypeError(`${fn}: argument '${arg}' must be a bool or float32 Tensor, got ${describe(m)}`);
  }
  return m.data as Float32Array | Uint8Array;
}

/** y [rows, outF] = x [rows, inF] · wᵀ + b. */
export function project(
  be: Backend,
  x: Float32Array,
  rows: number,
  inF: number,
  w: Float32Array,
  b: Float32Array | null,
  outF: number,
  act: Activation = Activation.None,
): Float32Array {
  const y = allocateUninitialized('float32', rows * outF);
  be.gemm({
    a: x, b: w, c: y, m: rows, n: outF, k: inF, transA: false, transB: true, alpha: 1, beta: 0, bias: b, act,
    batch: 1, strideA: 0, strideB: 0, strideC: 0, cacheB: true,
    ...(currentContext().weightPrecision === 'bfloat16' ? { bPrecision: 'bfloat16' as const } : {}),
  });
  return y;
}

/** Strides over (batch, head, position) of a [rows, features] buffer in sequence-first or batch-first row order. */
function layoutStrides(batchFirst: boolean, n: number, len: number, rowStride: number, hd: number): [number, number, number] {
  return batchFirst ? [len * rowStride, hd, rowStride] : [rowStride, hd, n * rowStride];
}

/** A one-element zero used as the broadcast right operand of a strided copy (x + 0). */
const ZERO = new Float32Array(1);

/**
 * Copies k (or v) batch-first into [n, s + extra, e], then the bias row (if
 * any); the remaining rows stay zero (add_zero_attn). The copies are backend
 * calls (x + 0 with strides), not JS loops, so they stay in order inside
 * runAsync, where k is not computed yet when this runs.
 */
function appendRows(
  be: Backend,
  src: Strided,
  strides: readonly [number, number, number],
  n: number,
  s: number,
  e: number,
  extra: number,
  biasRow: Float32Array | null,
): Strided {
  const len = s + extra;
  const out = new Float32Array(n * len * e);
  for (let b = 0; b < n; b++) {
    const from = b * strides[0];
    const span = (s - 1) * strides[2] + e;
    be.binary({ op: BinaryOp.Add, a: src.data.subarray(from, from + span), aStrides: [strides[2], 1], b: ZERO, bStrides: [0, 0], y: out.subarray(b * len * e, (b * len + s) * e), shape: [s, e] });
    if (biasRow) be.binary({ op: BinaryOp.Add, a: biasRow, aStrides: [1], b: ZERO, bStrides: [0], y: out.subarray((b * len + s) * e, (b * len + s + 1) * e), shape: [e] });
  }
  return { data: out, rowStride: e };
}

/** Widens a mask by `extra` key columns that never mask (PyTorch pads with 0 / false). */
function padMask(m: ShapedMask, n: number, h: number, l: number, s: number, extra: number): ShapedMask {
  const len = s + extra;
  const src = m.mask.data;
  const rows = m.kind === 'attn2d' ? l : m.kind === 'attn3d' ? n * h * l : n;
  const out = src instanceof Uint8Array ? new Uint8Array(rows * len) : new Float32Array(rows * len);
  for (let r = 0; r < rows; r++) out.set(src.subarray(r * s, (r + 1) * s) as never, r * len);
  const strides: [number, number, number, number] =
    m.kind === 'attn2d' ? [0, 0, len, 1] : m.kind === 'attn3d' ? [h * l * len, l * len, len, 1] : [len, 0, 0, 1];
  return { mask: { data: out, strides }, kind: m.kind };
}

/** [n, h, per] → [n, per], mean over heads: per batch, a (1 × h) row of 1/h times the (h × per) weights. */
function averageHeads(be: Backend, w: Float32Array, n: number, h: number, per: number): Float32Array {
  const out = allocateUninitialized('float32', n * per);
  be.gemm({
    a: new Float32Array(h).fill(1), b: w, c: out, m: 1, n: per, k: h, transA: false, transB: false, alpha: 1 / h,
    beta: 0, bias: null, act: Activation.None, batch: n, strideA: 0, strideB: h * per, strideC: per,
  });
  return out;
}
