/**
 * Key/value caches for incremental (token-by-token) decoding.
 *
 * - {@link KVCache}: the growing keys and values of one self-attention module.
 *   Each step's new key/value rows are written by the projection GEMM straight
 *   into the cache buffer; attention then reads the first `length` rows
 *   through strides. Nothing already cached is ever recomputed or copied,
 *   except once per capacity doubling.
 * - {@link MemoryKV}: the projected keys and values of a fixed sequence (the
 *   encoder memory of cross-attention), computed once per sequence.
 * - {@link DecoderCache} / {@link SelfAttentionCache}: one of those per layer
 *   of a decoder stack / of a causal (decoder-only) stack of encoder layers.
 *
 * All data movement goes through backend ops, never JS loops over values, so
 * a step recorded inside `runAsync` stays correct: when the recording runs,
 * the copies happen in order after the kernels that produce their inputs.
 */
import { BinaryOp, type Backend } from '../backend/backend';
import { checkInt } from '../errors';
import { Tensor } from '../tensor';
import { checkOptions } from './options';

/** A one-element zero used as the broadcast right operand of a strided copy (x + 0). */
const ZERO = new Float32Array(1);

/** Options of {@link KVCache}. */
export interface KVCacheOptions {
  /** Sequences decoded side by side (1 for unbatched input). */
  batch: number;
  /** Features of a key (and of a value): the attention's `embedDim`. */
  embedDim: number;
  /**
   * Positions allocated up front (default 16). Appending beyond it doubles the
   * capacity (one copy of the cached rows); set it to the final length to
   * avoid that.
   */
  capacity?: number;
}

/**
 * The keys and values of one self-attention module for the positions decoded
 * so far. Layout: `data` is [batch, capacity, 2·embedDim], batch-first, each
 * row the position's key followed by its value, so one GEMM (with the
 * `[k; v]` rows of `in_proj_weight`) writes both, and the attention kernel
 * reads keys and values of the first `length` rows through strides.
 *
 * Created by {@link MultiheadAttention.createCache} (or directly), filled by
 * `MultiheadAttention.forwardStep`. A cache belongs to one module and one
 * batch of sequences; {@link reset} reuses it for a new batch of the same size.
 */
export class KVCache {
  readonly batch: number;
  readonly embedDim: number;
  #capacity: number;
  #length = 0;
  #data: Float32Array;
  /** The gather target of {@link reorder} (the previous buffer, kept for the next reorder). */
  #spare: Float32Array | null = null;

  constructor(options: KVCacheOptions) {
    const name = 'KVCache';
    checkOptions(name, options, ['batch', 'embedDim', 'capacity']);
    this.batch = checkInt(name, 'batch', options.batch, 1);
    this.embedDim = checkInt(name, 'embedDim', options.embedDim, 1);
    this.#capacity = options.capacity === undefined ? 16 : checkInt(name, 'capacity', options.capacity, 1);
    this.#data = new Float32Array(this.batch * this.#capacity * 2 * this.embedDim);
  }

  /** Positions cached so far. */
  get length(): number {
    return this.#length;
  }

  /** Positions that fit before the buffer must grow. */
  get capacity(): number {
    return this.#capacity;
  }

  /**
   * The buffer, [batch, capacity, 2·embedDim]. Replaced (not resized) when the
   * capacity grows, so do not hold on to it across appends. Its contents are
   * only final after pending async work has run.
   */
  get data(): Float32Array {
    return this.#data;
  }

  /**
   * Positions `pos` .. `pos + count` of the buffer as a [count, batch,
   * 2·embedDim] view (keys then values in each row), for the projection that
   * fills them. Valid until the capacity next grows.
   */
  slot(pos: number, count: number): Tensor<'float32'> {
    checkInt('KVCache.slot', 'pos', pos, 0, this.#capacity);
    checkInt('KVCache.slot', 'count', count, 0, this.#capacity - pos);
    return this.#buffer().narrow(1, pos, count).transpose(0, 1);
  }

  /** The cached keys and values, each a [length, batch, embedDim] view of the buffer. Valid until the capacity grows. */
  keysValues(): { k: Tensor<'float32'>; v: Tensor<'float32'> } {
    const e = this.embedDim;
    const rows = this.#buffer().narrow(1, 0, this.#length).transpose(0, 1);
    return { k: rows.narrow(2, 0, e), v: rows.narrow(2, e, e) };
  }

  #buffer(): Tensor<'float32'> {
    return new Tensor(this.#data, [this.batch, this.#capacity, 2 * this.embedDim], 'float32');
  }

  /**
   * Ensures room for `total` positions, doubling the capacity as needed. The
   * cached rows move to the new buffer through backend copies (`be`), so this
   * is safe inside a recording.
   */
  reserve(be: Backend, total: number): void {
    checkInt('KVCache.reserve', 'total', total, 0);
    if (total <= this.#capacity) return;
    let cap = this.#capacity;
    while (cap < total) cap *= 2;
    const row = 2 * this.embedDim;
    const next = new Float32Array(this.batch * cap * row);
    const len = this.#length;
    if (len > 0) {
      const old = this.#data;
      const oldCap = this.#capacity;
      for (let b = 0; b < this.batch; b++) {
        const src = old.subarray(b * oldCap * row, (b * oldCap + len) * row);
        be.binary({ op: BinaryOp.Add, a: src, aStrides: [1], b: ZERO, bStrides: [0], y: next.subarray(b * cap * row, (b * cap + len) * row), shape: [len * row] });
      }
    }
    this.#data = next;
    this.#spare = null;
    this.#capacity = cap;
  }

  /**
   * Marks `count` more positions as cached (after their rows were written).
   * Used by `MultiheadAttention.forwardStep`; call it yourself only when
   * writing rows into {@link data} by other means.
   */
  advance(count: number): void {
    checkInt('KVCache.advance', 'count', count, 0, this.#capacity - this.#length);
    this.#length += count;
  }

  /** Forgets positions from `length` on (e.g. to roll back a rejected draft); the buffer is kept. */
  truncate(length: number): void {
    this.#length = checkInt('KVCache.truncate', 'length', length, 0, this.#length);
  }

  /**
   * Sequence `i` continues from the cached positions of sequence
   * `rowIndices[i]`, for every `i` at once (beam search's cache reorder; an
   * index may repeat or be left out). One backend gather (`be.embedding` over
   * the batch rows, strided: only the cached positions are copied) into a
   * second buffer, then the two swap, so this is safe inside a recording and
   * allocates only the first time.
   */
  reorder(be: Backend, rowIndices: Int32Array): void {
    checkRowIndices('KVCache.reorder', rowIndices, this.batch);
    if (this.#length === 0) return;
    if (this.#spare?.length !== this.#data.length) this.#spare = new Float32Array(this.#data.length);
    const next = this.#spare;
    // Only the cached positions move: rows of `length` positions, a sequence's capacity apart.
    const seqStride = this.#capacity * 2 * this.embedDim;
    be.embedding({
      weight: this.#data, num: this.batch, dim: this.#length * 2 * this.embedDim, ids: Int32Array.from(rowIndices), out: next,
      weightRowStride: seqStride, outRowStride: seqStride,
    });
    this.#spare = this.#data;
    this.#data = next;
  }

  /** Empties the cache for a new batch of sequences; the buffer is kept. */
  reset(): void {
    this.#length = 0;
  }
}

/**
 * The projected keys and values of a fixed sequence, e.g. the encoder memory
 * a decoder's cross-attention reads at every step: computed once by
 * {@link MultiheadAttention.precomputeKV}, then reused by every
 * `forwardStep`. Keys and values are addressed by element strides over
 * (batch, head, position) with a contiguous feature axis, like
 * `Backend.attention` takes them.
 */
export interface MemoryKV {
  /** Sequences (1 for unbatched input). */
  readonly batch: number;
  /** Key/value positions. */
  readonly length: number;
  readonly embedDim: number;
  /** Projected keys, [length, batch, embedDim] (a sequence-first view; any strides). */
  readonly k: Tensor<'float32'>;
  /** Projected values, like `k`. */
  readonly v: Tensor<'float32'>;
}

/** The caches of one decoder layer: its self-attention keys/values and its cross-attention memory keys/values. */
export interface DecoderLayerCache {
  readonly selfAttn: KVCache;
  readonly crossAttn: MemoryKV;
}

/** Checks beam-reorder indices: an Int32Array of `batch` entries in [0, batch). */
function checkRowIndices(fn: string, rowIndices: unknown, batch: number): asserts rowIndices is Int32Array {
  if (!(rowIndices instanceof Int32Array) || rowIndices.length !== batch) {
    throw new TypeError(`${fn}: argument 'rowIndices' must be an Int32Array of ${batch} row indices (the cache's batch), got ${rowIndices instanceof Int32Array ? `${rowIndices.length} entries` : typeof rowIndices}`);
  }
  for (let i = 0; i < batch; i++) {
    const r = rowIndices[i]!;
    if (r < 0 || r >= batch) throw new RangeError(`${fn}: argument 'rowIndices' must hold rows in [0, ${batch}), got ${r} at position ${i}`);
  }
}

/** Positions cached, checked equal across layers (they advance together). */
function commonLength(caches: readonly KVCache[]): number {
  return caches.length === 0 ? 0 : caches[0]!.length;
}

/**
 * The state of incremental decoding through a `TransformerDecoder`: one
 * {@link DecoderLayerCache} per layer. Created by
 * `TransformerDecoder.createCache(memory)`, advanced by
 * `TransformerDecoder.forwardStep`.
 */
export class DecoderCache {
  readonly layers: readonly DecoderLayerCache[];
  /** Target positions decoded when the stack has no layers (otherwise the layers' self-attention caches say). */
  #emptyLength = 0;

  constructor(layers: readonly DecoderLayerCache[]) {
    this.layers = layers;
  }

  /** Target positions decoded so far. */
  get length(): number {
    return this.layers.length ? commonLength(this.layers.map((l) => l.selfAttn)) : this.#emptyLength;
  }

  /** @internal Advances the length of a stack without layers. */
  advanceEmpty(count: number): void {
    this.#emptyLength += count;
  }

  /**
   * Sequence `i` continues from sequence `rowIndices[i]` in every layer's
   * self-attention cache (beam search). The cross-attention memory does not
   * move: it must be the same for every sequence an index maps between (the
   * beams of one input share their input's memory).
   */
  reorder(be: Backend, rowIndices: Int32Array): void {
    for (const l of this.layers) l.selfAttn.reorder(be, rowIndices);
  }

  /** Forgets target positions from `length` on in every layer. */
  truncate(length: number): void {
    for (const l of this.layers) l.selfAttn.truncate(length);
    if (!this.layers.length) {
      this.#emptyLength = checkInt('DecoderCache.truncate', 'length', length, 0, this.#emptyLength);
    }
  }
}

/**
 * The state of incremental decoding through a causal stack of self-attention
 * layers (`TransformerEncoder` used decoder-only): one {@link KVCache} per
 * layer. Created by `TransformerEncoder.createCache`, advanced by
 * `TransformerEncoder.forwardStep`.
 */
export class SelfAttentionCache {
  readonly layers: readonly KVCache[];
  #emptyLength = 0;

  constructor(layers: readonly KVCache[]) {
    this.layers = layers;
  }

  /** Positions decoded so far. */
  get length(): number {
    return this.layers.length ? commonLength(this.layers) : this.#emptyLength;
  }

  /** @internal Advances the length of a stack without layers. */
  advanceEmpty(count: number): void {
    this.#emptyLength += count;
  }

  /** Sequence `i` continues from sequence `rowIndices[i]` in every layer (beam search); see {@link KVCache.reorder}. */
  reorder(be: Backend, rowIndices: Int32Array): void {
    for (const c of this.layers) c.reorder(be, rowIndices);
  }

  /** Forgets positions from `length` on in every layer. */
  truncate(length: number): void {
    for (const c of this.layers) c.truncate(length);
    if (!this.layers.length) {
      this.#emptyLength = checkInt('SelfAttentionCache.truncate', 'length', length, 0, this.#emptyLength);
    }
  }

  /** Empties every layer's cache. */
  reset(): void {
    for (const c of this.layers) c.reset();
    this.#emptyLength = 0;
  }
}
