/**
 * `scaledDotProductAttention`, PyTorch's `F.scaled_dot_product_attention` on
 * Tensors: softmax(q·kᵀ·scale + mask) · v over the last two axes, with the
 * fused backend kernel (no L×S matrix is materialised).
 *
 * Mask semantics are F.scaled_dot_product_attention's, which differ from
 * nn.MultiheadAttention's: here a bool mask's `true` means "may attend"
 * (PyTorch: "take part in attention"); a float mask is added to the scores.
 */
import { Tensor, empty } from './tensor';
import { formatShape } from './errors';
import type { AttentionMask, AttentionPrecision } from './backend/backend';
import { resolveBackend } from './backend/registry';
import { currentContext } from './context';
import type { OpOptions } from './op-options';

/** Options of {@link scaledDotProductAttention}. */
export interface ScaledDotProductAttentionOptions extends OpOptions {
  /** Broadcastable to [..., L, S]: bool (`true` = may attend) or float32 (added). */
  attnMask?: Tensor<'bool'> | Tensor<'float32'> | null;
  /** Query i sees keys j ≤ i (top-left aligned, as PyTorch). Default false. */
  isCausal?: boolean;
  /** Default 1/√E. */
  scale?: number;
  /** Accepted for parity; never applied (inference). */
  dropoutP?: number;
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
  const outShape = [...q.shape.slice(0, r - 1), ev];
  const out = opts.out === undefined ? empty(outShape, 'float32') : checkAttentionOut(fn, opts.out, outShape, [qs, ks, vs]);
  resolveBackend(opts.backend).attention({
    q: qs.data, k: ks.data, v: vs.data, out: out.data,
    qStrides: headStrides(qs), kStrides: headStrides(ks), vStrides: headStrides(vs), outStrides: headStrides(out),
    batch, heads, lq: l, lk: s, dk: e, dv: ev, scale, masks,
    ...(kvHeads !== heads && heads > 0 ? { kvHeads } : {}),
    causal: opts.isCausal ?? false,
    weights: null,
    ...(precision === 'bfloat16' ? { precision } : {}),
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
