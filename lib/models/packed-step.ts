/**
 * One forward step over many sequences at different positions (continuous
 * batching), shared by the decoder families (Llama, GPT-2).
 *
 * A step packs every sequence's new tokens into one row of T tokens, so the
 * projections, the MLP and the LM head run as one GEMM over all of them;
 * only attention is per sequence: each reads its own keys and values where
 * they lie in the {@link KVPool}. Sequences with one new token (decoding)
 * are placed first and attend in one pooled call; each longer one (a prompt
 * chunk continuing its cached positions) attends in a call of its own with
 * a causal mask offset by its cached length.
 */
import type { KVPool } from '../nn/kv-pool';
import * as ops from '../ops';
import { Tensor } from '../tensor';
import type { CausalModel } from './generation';

type F32 = Tensor<'float32'>;

/** One sequence's part of a packed step. */
export interface PackedSequence {
  /** Pool position of the sequence's position 0 (its rows are start … start + cached + ids.length − 1). */
  start: number;
  /** Positions of the sequence already in the pool: the new tokens are at positions cached, cached + 1, … */
  cached: number;
  /** The new token ids (at least one). */
  ids: ArrayLike<number>;
  /** Compute logits for the last new token (default true; false for a prompt chunk that is not the last). */
  logits?: boolean;
}

/** A model that can run a packed step (LlamaForCausalLM, GPT2LMHeadModel). */
export interface PackedCausalModel extends CausalModel {
  /** A pool for this model's layers and key/value size, holding `positions` positions in all. */
  createKVPool(positions: number, options?: { prefault?: boolean }): KVPool;
  /**
   * Runs one packed step: every sequence's new tokens are appended to its rows of `pool` and attend to its
   * cached ones. Returns logits [rows, vocab], one row per sequence with `logits` (in the order given).
   */
  forwardPacked(seqs: readonly PackedSequence[], pool: KVPool): Tensor<'float32'>;
  /**
   * {@link forwardPacked} in stages of `layersPerStage` layers: each `next()` computes the next stage (the first
   * also checks `seqs` and embeds) and yields the hidden states; the last returns the logits. A caller records
   * each stage in its own `runAsync` call, so the executor starts on the first stage while JS records the next,
   * and the event loop is never blocked for a whole step's recording.
   */
  forwardPackedStages(seqs: readonly PackedSequence[], pool: KVPool, layersPerStage?: number): Generator<Tensor<'float32'>, Tensor<'float32'>, void>;
}

/**
 * The stage loop of forwardPackedStages: `embed()`, then `layers(x, from, to)` over groups of `layersPerStage`
 * layers (yielding the hidden states after each group but the last), then `head(x)` returned.
 */
export function* packedStages(
  count: number, layersPerStage: number, embed: () => F32, layers: (x: F32, from: number, to: number) => F32, head: (x: F32) => F32,
): Generator<F32, F32, void> {
  if (!(layersPerStage >= 1)) throw new RangeError(`forwardPackedStages: argument 'layersPerStage' must be >= 1, got ${layersPerStage}`);
  let x = embed();
  for (let i = 0; i < count; i += layersPerStage) {
    x = layers(x, i, Math.min(count, i + layersPerStage));
    if (i + layersPerStage < count) yield x;
  }
  return head(x);
}

/** Runs a stage generator to its end (the one-call form). */
export function runStages<T>(g: Generator<unknown, T, void>): T {
  let r = g.next();
  while (!r.done) r = g.next();
  return r.value;
}

/** A step's prompt chunk: sequence tokens [offset, offset + count) of the packed row. */
export interface PackedChunk {
  offset: number;
  count: number;
  /** The sequence's pool start and its key count after this step. */
  start: number;
  length: number;
  /** float32 [1, 1, count, length]: query i sees keys j <= cached + i. */
  mask: F32;
}

/** The checked, ordered layout of one packed step (what the layers need). */
export interface PackedStep {
  /** [1, T] the tokens, single-token sequences first. */
  ids: Tensor<'int32'>;
  /** [1, T] each token's position in its sequence. */
  positions: Tensor<'int32'>;
  /** [T] each token's pool row (where its key and value are written). */
  rows: Int32Array;
  /** The first `decode` tokens are whole sequences of one token, attending with `decodeStarts` / `decodeLengths`. */
  decode: number;
  decodeStarts: Int32Array;
  decodeLengths: Int32Array;
  /** The decode attention's bound on decodeLengths (pooledAttention's maxKvLength; default the longest entry). */
  decodeMaxLength?: number;
  chunks: PackedChunk[];
  /** [R] the packed-row index of each logits row's token, in the caller's order of sequences with logits. */
  logitRows: Tensor<'int32'>;
}

/**
 * Checks `seqs` against the pool and the model and lays the step out.
 * @throws TypeError naming `seqs[i]` or a field for a wrong kind of value, RangeError for positions outside the pool
 * or the model's context, token ids outside the vocabulary, or two sequences whose rows overlap.
 */
export function planPackedStep(
  fn: string, seqs: readonly PackedSequence[], pool: KVPool,
  model: { config: { vocabSize: number; maxPositionEmbeddings: number }; layers: number; kvDim: number },
): PackedStep {
  if (!Array.isArray(seqs) || seqs.length === 0) {
    throw new TypeError(`${fn}: argument 'seqs' must be a non-empty array of { start, cached, ids }, got ${Array.isArray(seqs) ? '[]' : typeof seqs}`);
  }
  if (pool === null || typeof pool !== 'object' || pool.layers !== model.layers || pool.kvDim !== model.kvDim) {
    const got = pool !== null && typeof pool === 'object' ? `${String(pool.layers)} layers × kvDim ${String(pool.kvDim)}` : typeof pool;
    throw new TypeError(`${fn}: argument 'pool' must be a KVPool of ${model.layers} layers × kvDim ${model.kvDim} (from createKVPool), got ${got}`);
  }
  const { vocabSize, maxPositionEmbeddings } = model.config;
  const int = (i: number, field: string, v: unknown, min: number): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
      throw new (typeof v === 'number' ? RangeError : TypeError)(`${fn}: 'seqs[${i}].${field}' must be an integer >= ${min}, got ${String(v)}`);
    }
    return v;
  };
  const spans: [number, number, number][] = [];
  let total = 0;
  for (let i = 0; i < seqs.length; i++) {
    const s = seqs[i];
    if (s === null || typeof s !== 'object') throw new TypeError(`${fn}: 'seqs[${i}]' must be an object { start, cached, ids }, got ${s === null ? 'null' : typeof s}`);
    const start = int(i, 'start', s.start, 0);
    const cached = int(i, 'cached', s.cached, 0);
    const ids = s.ids;
    if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number' || ids.length < 1) {
      throw new TypeError(`${fn}: 'seqs[${i}].ids' must be a non-empty array of token ids, got ${ids === null ? 'null' : typeof ids}`);
    }
    for (let j = 0; j < ids.length; j++) {
      const id = ids[j];
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw new RangeError(`${fn}: 'seqs[${i}].ids' must hold token ids in [0, ${vocabSize}), got ${String(id)} at index ${j}`);
      }
    }
    if (s.logits !== undefined && typeof s.logits !== 'boolean') throw new TypeError(`${fn}: 'seqs[${i}].logits' must be a boolean, got ${typeof s.logits}`);
    const end = cached + ids.length;
    if (end > maxPositionEmbeddings) {
      throw new RangeError(`${fn}: 'seqs[${i}]' reaches position ${end}, past the model's ${maxPositionEmbeddings} positions`);
    }
    if (start + end > pool.positions) {
      throw new RangeError(`${fn}: 'seqs[${i}]' needs pool rows [${start}, ${start + end}), past the pool's ${pool.positions} positions`);
    }
    spans.push([start, start + end, i]);
    total += ids.length;
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let k = 1; k < spans.length; k++) {
    if (spans[k]![0] < spans[k - 1]![1]) {
      throw new RangeError(`${fn}: 'seqs[${spans[k - 1]![2]}]' and 'seqs[${spans[k]![2]}]' overlap in the pool (rows [${spans[k - 1]![0]}, ${spans[k - 1]![1]}) and [${spans[k]![0]}, ${spans[k]![1]}))`);
    }
  }
  // Single-token sequences first (one pooled attention call), then the chunks.
  const order = seqs.map((_, i) => i);
  order.sort((a, b) => Number(seqs[a]!.ids.length > 1) - Number(seqs[b]!.ids.length > 1) || a - b);
  const ids = new Int32Array(total);
  const positions = new Int32Array(total);
  const rows = new Int32Array(total);
  const lastToken = new Int32Array(seqs.length);
  const chunks: PackedChunk[] = [];
  let decode = 0;
  let t = 0;
  for (const i of order) {
    const s = seqs[i]!;
    const n = s.ids.length;
    if (n === 1) decode++;
    else {
      const length = s.cached + n;
      const mask = new Float32Array(n * length);
      // Query r (position cached + r) sees keys 0 … cached + r.
      for (let r = 0; r < n; r++) mask.fill(-Infinity, r * length + s.cached + r + 1, (r + 1) * length);
      chunks.push({ offset: t, count: n, start: s.start, length, mask: new Tensor(mask, [1, 1, n, length], 'float32') });
    }
    for (let j = 0; j < n; j++) {
      ids[t] = s.ids[j]!;
      positions[t] = s.cached + j;
      rows[t] = s.start + s.cached + j;
      t++;
    }
    lastToken[i] = t - 1;
  }
  const decodeStarts = new Int32Array(decode);
  const decodeLengths = new Int32Array(decode);
  for (let k = 0; k < decode; k++) {
    const s = seqs[order[k]!]!;
    decodeStarts[k] = s.start;
    decodeLengths[k] = s.cached + 1;
  }
  const logitRows = Int32Array.from(seqs.map((s, i) => (s.logits === false ? -1 : lastToken[i]!)).filter((r) => r >= 0));
  return {
    ids: new Tensor(ids, [1, total], 'int32'),
    positions: new Tensor(positions, [1, total], 'int32'),
    rows, decode, decodeStarts, decodeLengths, chunks,
    logitRows: new Tensor(logitRows, [logitRows.length], 'int32'),
  };
}

/**
 * Attention of a packed step: `q` [T, H, D] (the step's queries, any strides with contiguous features) against
 * layer rows `kv` [P, 2·kvDim] of the pool (keys, then values, `kvHeads` heads each), into `out` [T, H, D].
 * The step's own keys and values must already be in the pool.
 */
export function attendPacked(q: F32, kv: F32, kvHeads: number, step: PackedStep, out: F32): void {
  const [, , d] = q.shape as [number, number, number];
  const p = kv.shape[0]!;
  const kvDim = kvHeads * d;
  const k = kv.narrow(-1, 0, kvDim).view(p, kvHeads, d);
  const v = kv.narrow(-1, kvDim, kvDim).view(p, kvHeads, d);
  // [n, H, D] rows → [1, H, n, D] (one sequence, n queries) or [n, H, 1, D] (n sequences, one query each).
  const oneSeq = (x: F32, off: number, n: number): F32 => x.narrow(0, off, n).permute(1, 0, 2).unsqueeze(0);
  const perSeq = (x: F32, n: number): F32 => x.narrow(0, 0, n).unsqueeze(2);
  if (step.decode > 0) {
    ops.pooledAttention(perSeq(q, step.decode), k, v, {
      kvStarts: step.decodeStarts, kvLengths: step.decodeLengths, out: perSeq(out, step.decode),
      ...(step.decodeMaxLength !== undefined ? { maxKvLength: step.decodeMaxLength } : {}),
    });
  }
  for (const c of step.chunks) {
    ops.pooledAttention(oneSeq(q, c.offset, c.count), k, v, {
      kvStarts: Int32Array.of(c.start), kvLengths: Int32Array.of(c.length), attnMask: c.mask, out: oneSeq(out, c.offset, c.count),
    });
  }
}
