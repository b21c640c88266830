/**
 * `scaledDotProductAttention`, PyTorch's `F.scaled_dot_product_attention` on
 * Tensors: softmax(q·kᵀ·scale + mask) · v over the last two axes, with the
 * fused backend kernel (no L×S matrix is materialised).
 *
 * Mask semantics are F.scaled_dot_product_attention's, which differ from
 * nn.MultiheadAttention's: here a bool mask's `true` means "may attend"
 * (PyTorch: "take part in attention"); a float mask is added to the scores.
 */
import { Rng, Tensor, empty } from './tensor';
import { runAttention } from './ops/attention-core';
import { defaultGenerator } from './random';
import { formatShape } from './errors';
import type { AttentionMask, AttentionPrecision } from './backend/backend';
import { currentContext } from './context';
import type { OpOptions } from './op-options';
import { checkOutForGrad } from './ops/checks';
import { resolveBackend } from './backend/registry';
import { needsGrad } from './autograd/graph';

/** Options of {@link scaledDotProductAttention}. */
export interface ScaledDotProductAttentionOptions extends OpOptions {
  /** Broadcastable to [..., L, S]: bool (`true` = may attend) or float32 (added). */
  attnMask?: Tensor<'bool'> | Tensor<'float32'> | null;
  /** Query i sees keys j ≤ i (top-left aligned, as PyTorch). Default false. */
  isCausal?: boolean;
  /** Default 1/√E. */
  scale?: number;
  /**
   * Dropout on the attention probabilities, applied whenever > 0 (as PyTorch's functional form does; modules pass
   * it only in training mode), drawn from `generator` or the process-wide generator (`manualSeed`). Default 0.
   */
  dropoutP?: number;
  /** The generator dropout draws from (default the process-wide one). */
  generator?: Rng;
  /**
   * Grouped-query attention (PyTorch 2.5's `enable_gqa`): k and v may have fewer heads (dim −3) than q, a divisor
   * of q's; query head h attends with key/value head ⌊h / (Hq / Hkv)⌋, read in place (never repeated). Default
   * false: mismatched head counts are an error.
   */
  enableGqa?: boolean;
  /** Write the result here ([..., L, Ev], any strides with a contiguous last dim, e.g. a head view of a larger buffer). */
  out?: Tensor<'float32'>;
  /**
   * Precision of q·kᵀ and probabilities·v (default the execution context's, float32 unless a module set it). 'bfloat16'
   * applies when L > 8 (see {@link AttentionPrecision}); the JS backend
   * emulates it. On the native backend it needs a CPU with AVX512-BF16: on
   * others the call throws a RangeError (whatever L), and on a kernel path
   * lowered by setIsa it runs float32.
   */
  precision?: AttentionPrecision;
}

/**
 * q [..., L, E], k [..., S, E], v [..., S, Ev] with equal leading dims (at most
 * two: batch and heads) → [..., L, Ev].
 */
export function scaledDotProductAttention(
  q: Tensor<'float32'>,
  k: Tensor<'float32'>,
  v: Tensor<'float32'>,
  opts: ScaledDotProductAttentionOptions = {},
): Tensor<'float32'> {
  const fn = 'scaledDotProductAttention';
  for (const [arg, t] of [['q', q], ['k', k], ['v', v]] as const) {
    if (!(t instanceof Tensor) || t.dtype !== 'float32') {
      throw new TypeError(`${fn}: argument '${arg}' must be a float32 Tensor, got ${t instanceof Tensor ? `dtype ${t.dtype}` : typeof t}`);
    }
    if (t.ndim < 2 || t.ndim > 4) {
      throw new RangeError(`${fn}: argument '${arg}' must be 2-D to 4-D ([batch, heads, seq, features]), got ${formatShape(t.shape)}`);
    }
  }
  const r = q.ndim;
  const enableGqa = opts.enableGqa ?? false;
  if (typeof enableGqa !== 'boolean') throw new TypeError(`${fn}: option 'enableGqa' must be a boolean, got ${typeof enableGqa}`);
  // The heads dim (−3) may differ under enableGqa; every other leading dim must match.
  const headsDim = r >= 3 ? r - 3 : -1;
  if (k.ndim !== r || v.ndim !== r ||
    q.shape.slice(0, r - 2).some((d, i) => i !== headsDim && (d !== k.shape[i] || d !== v.shape[i])) ||
    (headsDim >= 0 && k.shape[headsDim] !== v.shape[headsDim])) {
    throw new RangeError(`${fn}: q, k and v must have the same leading dims, got ${formatShape(q.shape)}, ${formatShape(k.shape)}, ${formatShape(v.shape)}`);
  }
  let kvHeads = headsDim >= 0 ? k.shape[headsDim]! : 1;
  if (headsDim >= 0 && kvHeads !== q.shape[headsDim]) {
    const hq = q.shape[headsDim]!;
    if (!enableGqa) {
      throw new RangeError(`${fn}: q has ${hq} heads (dim -3) and k, v have ${kvHeads}: q ${formatShape(q.shape)}, ` +
        `k ${formatShape(k.shape)}, v ${formatShape(v.shape)} (pass enableGqa: true for grouped-query attention)`);
    }
    if (kvHeads === 0 || hq % kvHeads !== 0) {
      throw new RangeError(`${fn}: with enableGqa, q's heads (${hq}) must be a multiple of k's and v's (${kvHeads}), got ` +
        `q ${formatShape(q.shape)}, k ${formatShape(k.shape)}`);
    }
  }
  if (headsDim < 0) kvHeads = 1;
  const [l, e] = q.shape.slice(r - 2) as [number, number];
  const [s, ek] = k.shape.slice(r - 2) as [number, number];
  const [sv, ev] = v.shape.slice(r - 2) as [number, number];
  if (ek !== e) throw new RangeError(`${fn}: k must have q's feature size ${e} in its last dim, got ${formatShape(k.shape)}`);
  if (sv !== s) throw new RangeError(`${fn}: v must have k's sequence length ${s} (dim -2), got ${formatShape(v.shape)}`);
  const lead = [1, 1, ...q.shape.slice(0, r - 2)].slice(-2) as [number, number];
  const [batch, heads] = lead;
  const scale = opts.scale ?? 1 / Math.sqrt(e);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new TypeError(`${fn}: option 'scale' must be a finite number, got ${scale}`);
  // The option, else the execution context's (a module's useAttentionPrecision).
  const precision = opts.precision ?? currentContext().attentionPrecision;
  if (precision !== 'float32' && precision !== 'bfloat16') {
    throw new TypeError(`${fn}: option 'precision' must be 'float32' or 'bfloat16', got ${String(precision)}`);
  }
  const masks: AttentionMask[] = [];
  const m = opts.attnMask;
  if (m !== undefined && m !== null) masks.push(sdpaMask(fn, m, batch, heads, l, s));
  // Views are read where they lie: the kernel takes strides over (batch, head, position) and needs only the
  // feature axis contiguous; a view without that is copied.
  const [qs, ks, vs] = [q, k, v].map((t) => (t.strides[r - 1] === 1 || t.shape[r - 1]! <= 1 ? t : t.contiguous(opts.backend))) as [
    Tensor<'float32'>, Tensor<'float32'>, Tensor<'float32'>,
  ];
  const dropoutP = opts.dropoutP ?? 0;
  if (typeof dropoutP !== 'number' || !(dropoutP >= 0 && dropoutP < 1)) {
    throw new RangeError(`${fn}: option 'dropoutP' must be a number in [0, 1), got ${String(dropoutP)}`);
  }
  if (opts.generator !== undefined && !(opts.generator instanceof Rng)) {
    throw new TypeError(`${fn}: option 'generator' must be an Rng, got ${typeof opts.generator}`);
  }
  const outShape = [...q.shape.slice(0, r - 1), ev];
  const out = opts.out === undefined ? empty(outShape, 'float32') : checkAttentionOut(fn, opts.out, outShape, [qs, ks, vs]);
  runAttention({
    q: qs, k: ks, v: vs, out, strides: headStrides,
    batch, heads, kvHeads: kvHeads !== heads && heads > 0 ? kvHeads : heads, lq: l, lk: s, dk: e, dv: ev, scale, masks,
    causal: opts.isCausal ?? false, needWeights: false, precision,
    dropout: dropoutP > 0 ? { p: dropoutP, generator: opts.generator ?? defaultGenerator() } : null,
    ...(opts.backend ? { backend: opts.backend } : {}),
  });
  return out;
}

/** Strides over (batch, head, position) of a [..., positions, features] tensor with at most two leading dims. */
export function headStrides(t: Tensor): [number, number, number] {
  const r = t.ndim;
  const st = t.strides;
  return [r === 4 ? st[0]! : 0, r >= 3 ? st[r - 3]! : 0, st[r - 2]!];
}

/** A caller's `out` for attention: float32, the result shape, features contiguous, not overlapping the inputs. */
function checkAttentionOut(fn: string, out: unknown, shape: readonly number[], inputs: readonly Tensor[]): Tensor<'float32'> {
  if (!(out instanceof Tensor) || out.dtype !== 'float32') {
    throw new TypeError(`${fn}: option 'out' must be a float32 Tensor, got ${out instanceof Tensor ? `dtype ${out.dtype}` : typeof out}`);
  }
  if (out.ndim !== shape.length || out.shape.some((d, i) => d !== shape[i])) {
    throw new RangeError(`${fn}: option 'out' must have shape ${formatShape(shape)}, got ${formatShape(out.shape)}`);
  }
  if (out.strides[out.ndim - 1] !== 1 && shape[shape.length - 1]! > 1) {
    throw new RangeError(`${fn}: option 'out' must have a contiguous last dim, got strides ${formatShape(out.strides)}`);
  }
  for (const t of inputs) {
    const a = out.data;
    const b = t.data;
    if (a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength) {
      throw new RangeError(`${fn}: option 'out' must not overlap q, k or v`);
    }
  }
  checkOutForGrad(fn, 'out', out);
  out._bumpVersion();
  return out as Tensor<'float32'>;
}

/** Broadcast strides of a mask over (batch, heads, L, S); bool masks are inverted to the backend's "true = masked". */
function sdpaMask(fn: string, m: Tensor, batch: number, heads: number, l: number, s: number): AttentionMask {
  if (!(m instanceof Tensor) || (m.dtype !== 'bool' && m.dtype !== 'float32')) {
    throw new TypeError(`${fn}: option 'attnMask' must be a bool or float32 Tensor`);
  }
  const target = [batch, heads, l, s];
  if (m.ndim > 4) throw new RangeError(`${fn}: option 'attnMask' must have at most 4 dims, got ${formatShape(m.shape)}`);
  const shape = [...Array(4 - m.ndim).fill(1), ...m.shape] as number[];
  const strides: number[] = [0, 0, 0, 0];
  const lead = 4 - m.ndim;
  for (let d = 3; d >= 0; d--) {
    if (shape[d] !== target[d] && shape[d] !== 1) {
      throw new RangeError(`${fn}: option 'attnMask' of shape ${formatShape(m.shape)} does not broadcast to [${target.join(', ')}]`);
    }
    // A view's own strides: the kernel reads masks through strides, so no copy.
    strides[d] = shape[d] === 1 ? 0 : m.strides[d - lead]!;
  }
  let data = m.data as Float32Array | Uint8Array;
  if (m.dtype === 'bool') {
    // Inverted slot by slot over the whole span, so the strides still address the same elements.
    const inv = new Uint8Array(data.length);
    for (let i = 0; i < inv.length; i++) inv[i] = data[i] ? 0 : 1;
    data = inv;
  }
  return { data, strides: strides as unknown as [number, number, number, number] };
}

/** Options of {@link pooledAttention}. */
export interface PooledAttentionOptions extends OpOptions {
  /** [B] int32: the pool position of each sequence's first key (its position 0). */
  kvStarts: Tensor<'int32'> | Int32Array;
  /** [B] int32: how many keys each sequence has (start + length must stay inside the pool). */
  kvLengths: Tensor<'int32'> | Int32Array;
  /**
   * Broadcastable to [B, H, L, max(kvLengths)], indexed by each sequence's own key positions: bool (`true` = may
   * attend) or float32 (added). E.g. the causal mask of a prompt chunk that continues a cached sequence.
   */
  attnMask?: Tensor<'bool'> | Tensor<'float32'> | null;
  /** Default 1/√E. */
  scale?: number;
  /** Write the result here ([B, H, L, Ev], any strides with a contiguous last dim). */
  out?: Tensor<'float32'>;
  /**
   * The longest kvLengths entry the call may see when it runs (default: the longest given; at most P). For a
   * recorded call replayed with `kvLengths` rewritten between runs (lib/models/decode-program.ts): the kernel reads
   * the entries when it runs and checks them against this bound and the pool.
   */
  maxKvLength?: number;
}

function int32Entries(fn: string, name: string, x: unknown, b: number): Int32Array {
  const data = x instanceof Tensor && x.dtype === 'int32' && x.ndim === 1 ? (x as Tensor<'int32'>).contiguous().data : x;
  if (!(data instanceof Int32Array)) {
    throw new TypeError(`${fn}: option '${name}' must be a 1-D int32 Tensor or an Int32Array, got ${x instanceof Tensor ? `${x.dtype} ${formatShape(x.shape)}` : typeof x}`);
  }
  if (data.length !== b) throw new RangeError(`${fn}: option '${name}' must have one entry per sequence (${b}), got ${data.length}`);
  return data;
}

/**
 * Attention of B sequences whose keys and values live in one pool of positions (the KV pool of continuous
 * batching): sequence b's queries q[b] attend to pool positions kvStarts[b] … kvStarts[b] + kvLengths[b] − 1 of
 * k and v. Each sequence has its own key count, and the pool is read in place (no gather). Grouped-query
 * attention when k and v have fewer heads than q (a divisor of q's). Computes in float32.
 *
 * q [B, H, L, E] (any strides, contiguous features), k [P, Hkv, E] and v [P, Hkv, Ev] (position-major views of
 * the pool, e.g. `pool.narrow(-1, 0, kvDim).view(P, Hkv, E)`) → [B, H, L, Ev].
 * @throws TypeError for wrong dtypes or index arrays, RangeError for shapes or ranges (naming the option/argument);
 *   Error in grad mode on inputs that require grad (no backward: run it under noGrad()).
 */
export function pooledAttention(
  q: Tensor<'float32'>,
  k: Tensor<'float32'>,
  v: Tensor<'float32'>,
  opts: PooledAttentionOptions,
): Tensor<'float32'> {
  const fn = 'pooledAttention';
  if (needsGrad(q, k, v)) {
    // A decoding-side op (continuous batching over a KV pool): no backward.
    throw new Error(`${fn}: has no backward (it serves decoding); run it under noGrad() or on tensors that do not require grad`);
  }
  for (const [arg, t, nd] of [['q', q, 4], ['k', k, 3], ['v', v, 3]] as const) {
    if (!(t instanceof Tensor) || t.dtype !== 'float32') {
      throw new TypeError(`${fn}: argument '${arg}' must be a float32 Tensor, got ${t instanceof Tensor ? `dtype ${t.dtype}` : typeof t}`);
    }
    if (t.ndim !== nd) {
      throw new RangeError(`${fn}: argument '${arg}' must be ${nd}-D (${nd === 4 ? '[batch, heads, queries, features]' : '[positions, kvHeads, features]'}), got ${formatShape(t.shape)}`);
    }
  }
  if (opts === null || typeof opts !== 'object') throw new TypeError(`${fn}: argument 'opts' must be an object with kvStarts and kvLengths, got ${opts === null ? 'null' : typeof opts}`);
  const [batch, heads, l, e] = q.shape as [number, number, number, number];
  const [p, kvHeads, ek] = k.shape as [number, number, number];
  const [pv, kvHeadsV, ev] = v.shape as [number, number, number];
  if (ek !== e) throw new RangeError(`${fn}: k must have q's feature size ${e} in its last dim, got ${formatShape(k.shape)}`);
  if (pv !== p || kvHeadsV !== kvHeads) throw new RangeError(`${fn}: v must have k's positions and heads [${p}, ${kvHeads}, …], got ${formatShape(v.shape)}`);
  if (kvHeads === 0 || heads % kvHeads !== 0) {
    throw new RangeError(`${fn}: q's heads (${heads}) must be a multiple of k's and v's (${kvHeads})`);
  }
  const starts = int32Entries(fn, 'kvStarts', opts.kvStarts, batch);
  const lengths = int32Entries(fn, 'kvLengths', opts.kvLengths, batch);
  let lk = 0;
  for (let b = 0; b < batch; b++) {
    const s = starts[b]!;
    const n = lengths[b]!;
    if (s < 0 || n < 0 || s + n > p) {
      throw new RangeError(`${fn}: sequence ${b} reads pool positions [${s}, ${s + n}), outside the pool's [0, ${p}) (options 'kvStarts', 'kvLengths')`);
    }
    if (n > lk) lk = n;
  }
  if (opts.maxKvLength !== undefined) {
    const m = opts.maxKvLength;
    if (typeof m !== 'number' || !Number.isInteger(m) || m < lk || m > p) {
      throw new (typeof m === 'number' ? RangeError : TypeError)(`${fn}: option 'maxKvLength' must be an integer in [${lk}, ${p}] (the longest kvLengths entry, the pool's positions), got ${String(m)}`);
    }
    lk = m;
  }
  const scale = opts.scale ?? 1 / Math.sqrt(e);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new TypeError(`${fn}: option 'scale' must be a finite number, got ${scale}`);
  const masks: AttentionMask[] = [];
  const m = opts.attnMask;
  if (m !== undefined && m !== null) masks.push(sdpaMask(fn, m, batch, heads, l, lk));
  const [qs, ks, vs] = [q, k, v].map((t) => (t.strides[t.ndim - 1] === 1 || t.shape[t.ndim - 1]! <= 1 ? t : t.contiguous(opts.backend))) as [
    Tensor<'float32'>, Tensor<'float32'>, Tensor<'float32'>,
  ];
  const out = opts.out === undefined ? empty([batch, heads, l, ev], 'float32') : checkAttentionOut(fn, opts.out, [batch, heads, l, ev], [qs, ks, vs]);
  // k, v as (batch, head, position) strides: the batch stride is unused (kvStarts places each sequence).
  const poolStrides = (t: Tensor): [number, number, number] => [0, t.strides[1]!, t.strides[0]!];
  resolveBackend(opts.backend).attention({
    q: qs.data, k: ks.data, v: vs.data, out: out.data,
    qStrides: headStrides(qs), kStrides: poolStrides(ks), vStrides: poolStrides(vs), outStrides: headStrides(out),
    batch, heads, lq: l, lk, dk: e, dv: ev, scale, masks,
    ...(kvHeads !== heads ? { kvHeads } : {}),
    causal: false,
    weights: null,
    kvStarts: starts,
    kvLengths: lengths,
  });
  return out;
}
