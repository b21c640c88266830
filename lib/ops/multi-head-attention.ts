/**
 * Multi-head attention as functions on views: PyTorch's
 * `F.multi_head_attention_forward` and the pieces it is made of, shared by
 * `nn.MultiheadAttention`'s `forward`, `precomputeKV` and `forwardStep`.
 *
 * Inputs are sequence-first ([L, N, E], or [L, E] unbatched), as in
 * PyTorch's functional form; a batch-first caller passes `x.transpose(0, 1)`,
 * a view. Nothing is split or merged by copying: projections come out in the
 * inputs' memory order, heads are strides into them (`[L, N, E]` →
 * `[N, H, L, E/H]`), the fused kernel reads q, k and v where they lie and
 * writes each head into its columns of the output projection's input.
 */
import { Activation, type AttentionMask } from '../backend/backend';
import { resolveBackend } from '../backend/registry';
import { currentContext } from '../context';
import { allocateUninitialized } from '../dtype';
import { formatShape } from '../errors';
import type { OpOptions } from '../op-options';
import { Rng, Tensor, zeros } from '../tensor';
import { type F32 } from './checks';
import { cat } from './indexing';
import { add } from './elementwise';
import { needsGrad, recordOp } from '../autograd/graph';
import { runAttention, type AttentionDropout } from './attention-core';
import { scale } from './reduce';
import { defaultGenerator } from '../random';
import { linear } from './matmul';
import { stridesInOrder } from './rows';

/** The parameters of a multi-head attention, under PyTorch's names (camelCase). */
export interface MultiHeadAttentionParams {
  numHeads: number;
  /** [3E, E]: q, k and v projections stacked (kdim = vdim = E). */
  inProjWeight?: F32 | null;
  /** With separate feature sizes: [E, E], [E, kdim], [E, vdim]. */
  qProjWeight?: F32 | null;
  kProjWeight?: F32 | null;
  vProjWeight?: F32 | null;
  /** [3E]. */
  inProjBias?: F32 | null;
  /** [1, 1, E]: a learned key (value) row appended to every sequence. */
  biasK?: F32 | null;
  biasV?: F32 | null;
  /** Append a zero key/value row after them. */
  addZeroAttn?: boolean;
  /** [E, E] and [E]. */
  outProjWeight: F32;
  outProjBias?: F32 | null;
}

/** A mask tensor: bool (`true` = not allowed to attend) or float32 (added to the scores). */
export type AttentionMaskTensor = Tensor<'bool'> | Tensor<'float32'> | Tensor<'bool' | 'float32'>;

/** Options of {@link multiHeadAttentionForward}: PyTorch's keyword arguments. */
export interface MultiHeadAttentionForwardOptions extends OpOptions {
  /** [N, S] ([S] unbatched): `true` / -inf marks padding keys. */
  keyPaddingMask?: AttentionMaskTensor | null;
  /** Return the attention weights (default true). */
  needWeights?: boolean;
  /** [L, S] or [N·H, L, S] ([H, L, S] unbatched). */
  attnMask?: AttentionMaskTensor | null;
  /** Average the weights over heads (default true). */
  averageAttnWeights?: boolean;
  /** Query i sees keys j ≤ i, in addition to any attnMask. */
  isCausal?: boolean;
  /** Dropout on the attention probabilities when `training` (PyTorch's dropout_p; default 0). */
  dropoutP?: number;
  /** Apply `dropoutP` (PyTorch's `training` argument; default true, as in PyTorch). */
  training?: boolean;
  /** The generator dropout draws from (default the process-wide one, see `manualSeed`). */
  generator?: Rng;
}

/** Result of {@link multiHeadAttentionForward}. */
export interface MultiHeadAttentionResult {
  /** [L, N, E] ([L, E] unbatched), in the query's memory order. */
  output: F32;
  /** [N, L, S] averaged or [N, H, L, S] (without N unbatched), or null. */
  weights: F32 | null;
}

/**
 * PyTorch's `F.multi_head_attention_forward` (dropout on the probabilities when `training` and `dropoutP` > 0):
 * query [L, N, E], key [S, N, kdim], value [S, N, vdim] (or unbatched
 * [L, E], [S, kdim], [S, vdim]).
 */
export function multiHeadAttentionForward(
  query: F32, key: F32, value: F32, params: MultiHeadAttentionParams, options: MultiHeadAttentionForwardOptions = {},
): MultiHeadAttentionResult {
  const fn = 'multiHeadAttentionForward';
  checkMhaInputs(fn, query, key, value, checkParams(fn, params));
  return mhaForward('multiHeadAttentionForward', query, key, value, params, options);
}

/** {@link multiHeadAttentionForward} on checked inputs, naming `fn` in errors (nn.MultiheadAttention checks its own). */
export function mhaForward(
  fn: string, query: F32, key: F32, value: F32, params: MultiHeadAttentionParams, options: MultiHeadAttentionForwardOptions,
): MultiHeadAttentionResult {
  const batched = query.ndim === 3;
  const [q3, k3, v3] = batched ? [query, key, value] : [query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)];
  const [l, n] = q3.shape as [number, number, number];
  const h = params.numHeads;
  // PyTorch decides packing by identity: query is key is value → one GEMM.
  const same = key === value ? (query === key ? 'qkv' : 'kv') : 'none';
  let { q, k, v } = inProjection(q3, k3, v3, params, { same, ...backendOf(options) });
  let s = k.shape[0]!;
  let masks = collectMasks(fn, options, batched, n, h, l, s);
  const extra = (params.biasK ? 1 : 0) + (params.addZeroAttn ? 1 : 0);
  if (extra > 0) {
    k = appendRows(k, params.biasK ?? null, params.addZeroAttn === true, options);
    v = appendRows(v, params.biasV ?? null, params.addZeroAttn === true, options);
    masks = masks.map((m) => padMaskColumns(m, s, extra, h, l));
    s += extra;
  }
  const needWeights = options.needWeights ?? true;
  const attn = emptyInOrderOf(q3);
  const dropoutP = options.dropoutP ?? 0;
  if (typeof dropoutP !== 'number' || !(dropoutP >= 0 && dropoutP < 1)) {
    throw new RangeError(`${fn}: option 'dropoutP' must be a number in [0, 1), got ${String(dropoutP)}`);
  }
  const dropout = dropoutP > 0 && (options.training ?? true) ? { p: dropoutP, generator: options.generator ?? defaultGenerator() } : null;
  const weights = attendHeads(q, k, v, h, attn, {
    masks: masks.map((m) => m.mask), causal: options.isCausal ?? false, needWeights, dropout,
    ...(options.backend ? { backend: options.backend } : {}),
  });
  const out = linear(attn, params.outProjWeight, params.outProjBias ?? null, { cacheWeight: true, ...backendOf(options) });
  const output = batched ? out : out.squeeze(1);
  if (!weights) return { output, weights: null };
  const w = (options.averageAttnWeights ?? true) ? averageHeads(weights, options) : weights;
  return { output, weights: batched ? w : w.squeeze(0) };
}

/** Options of {@link inProjection}. */
export interface InProjectionOptions extends OpOptions {
  /** Which inputs are one tensor, sharing a GEMM: 'qkv' (self-attention), 'kv' (shared key/value), 'none'. */
  same: 'qkv' | 'kv' | 'none';
  /** Where the shared k/v projection goes ([S, N, 2E], e.g. a KV cache's free positions); default a new tensor. */
  kvOut?: F32;
}

/** The q, k, v projections of sequence-first views; `same` says which inputs are one tensor (shared GEMMs). */
export interface InProjection {
  q: F32;
  k: F32;
  v: F32;
}

/**
 * PyTorch's `_in_projection_packed` / `_in_projection`: q = query·Wqᵀ + bq
 * and likewise k, v, with one GEMM for inputs that are the same tensor
 * (`same`: 'qkv' self-attention, 'kv' shared key/value). Weight slices are
 * views of `inProjWeight`. `kvOut` ([S, N, 2E], e.g. a KV cache's free
 * positions) receives the shared k/v projection in place of a new tensor.
 * With `query` null only k and v are computed (q is returned empty).
 */
export function inProjection(
  query: F32 | null, key: F32, value: F32, p: MultiHeadAttentionParams, options: InProjectionOptions,
): InProjection {
  const { same, kvOut } = options;
  const e = p.outProjWeight.shape[0]!;
  const w = p.inProjWeight ?? null;
  const b = p.inProjBias ?? null;
  const rows = (t: F32 | null, from: number, count: number): F32 | null => (t ? t.narrow(0, from * e, count * e) : null);
  const opts = { cacheWeight: true, ...backendOf(options) } as const;
  if (w && same === 'qkv' && query && !kvOut) {
    const [q, k, v] = splitColumns(linear(query, w, b, opts), e, 3);
    return { q: q!, k: k!, v: v! };
  }
  const q = query ? projectQuery(query, p, options) : zeros([0, 1, e]);
  if (w && same !== 'none') {
    const kv = linear(key, rows(w, 1, 2)!, rows(b, 1, 2), kvOut ? { ...opts, out: kvOut } : opts);
    const [k, v] = splitColumns(kv, e, 2);
    return { q, k: k!, v: v! };
  }
  const k = linear(key, w ? rows(w, 1, 1)! : p.kProjWeight!, rows(b, 1, 1), opts);
  const v = linear(value, w ? rows(w, 2, 1)! : p.vProjWeight!, rows(b, 2, 1), opts);
  return { q, k, v };
}

/**
 * The `n` blocks of `e` columns of `t`'s last dim as views (a packed projection's q, k, v). In grad mode each is a
 * slice node of its own; the backward engine writes their gradients into one buffer of t's shape, each into its
 * columns, zero-filling nothing they cover (see ScatterInfo in lib/autograd/views.ts).
 */
function splitColumns(t: F32, e: number, n: number): F32[] {
  return Array.from({ length: n }, (_, i) => t.narrow(-1, i * e, e));
}

/** The query projection alone (cross-attention steps over precomputed keys and values). */
export function projectQuery(query: F32, p: MultiHeadAttentionParams, options: OpOptions = {}): F32 {
  const e = p.outProjWeight.shape[0]!;
  const w = p.inProjWeight ? p.inProjWeight.narrow(0, 0, e) : p.qProjWeight!;
  const b = p.inProjBias ? p.inProjBias.narrow(0, 0, e) : null;
  return linear(query, w, b, { cacheWeight: true, ...backendOf(options) });
}

/** Options of {@link attendHeads}. */
export interface AttendHeadsOptions extends OpOptions {
  masks?: readonly AttentionMask[];
  causal?: boolean;
  /** Return the probabilities [N, H, L, S]. */
  needWeights?: boolean;
  /** Dropout on the probabilities (training); null or absent: none. */
  dropout?: AttentionDropout | null;
}

/**
 * softmax(q·kᵀ/√d + masks)·v for every (sequence, head), with q [L, N, E],
 * k [S, N, E], v [S, N, Ev] sequence-first views whose last dim is split
 * into `numHeads` heads; the result goes into `out` [L, N, Ev] (any strides
 * with a contiguous last dim). Returns the weights when asked for.
 */
export function attendHeads(
  q: F32, k: F32, v: F32, numHeads: number, out: F32, options: AttendHeadsOptions = {},
): F32 | null {
  const [l, n, e] = q.shape as [number, number, number];
  const s = k.shape[0]!;
  const ev = v.shape[2]!;
  const hd = e / numHeads;
  const hv = ev / numHeads;
  const [qs, ks, vs] = [q, k, v].map((t) => (t.strides[2] === 1 ? t : t.contiguous(options.backend))) as [F32, F32, F32];
  // [L, N, H·d] → (batch, head, position) strides: N's stride, d, L's stride.
  const heads = (t: F32): [number, number, number] => [t.strides[1]!, t.shape[2]! / numHeads, t.strides[0]!];
  out._bumpVersion();
  return runAttention({
    q: qs, k: ks, v: vs, out, strides: heads,
    batch: n, heads: numHeads, kvHeads: numHeads, lq: l, lk: s, dk: hd, dv: hv, scale: 1 / Math.sqrt(hd),
    masks: options.masks ?? [], causal: options.causal ?? false, needWeights: options.needWeights === true,
    precision: currentContext().attentionPrecision, dropout: options.dropout ?? null,
    ...(options.backend ? { backend: options.backend } : {}),
  });
}

/** A mask as the kernel takes it, and which argument it came from (for widening). */
interface ShapedMask {
  mask: AttentionMask;
  kind: 'attn2d' | 'attn3d' | 'padding';
  tensor: AttentionMaskTensor;
}

/** The attnMask and keyPaddingMask of `options` as kernel masks over (N, H, L, S), read through their strides. */
export function collectMasks(
  fn: string, options: Pick<MultiHeadAttentionForwardOptions, 'attnMask' | 'keyPaddingMask'>, batched: boolean,
  n: number, h: number, l: number, s: number,
): ShapedMask[] {
  const out: ShapedMask[] = [];
  const am = options.attnMask;
  if (am !== undefined && am !== null) {
    const data = maskData(fn, 'attnMask', am);
    const lead = batched ? n * h : h;
    const st = am.strides;
    if (am.ndim === 2 && am.shape[0] === l && am.shape[1] === s) {
      out.push({ mask: { data, strides: [0, 0, st[0]!, st[1]!] }, kind: 'attn2d', tensor: am });
    } else if (am.ndim === 3 && am.shape[0] === lead && am.shape[1] === l && am.shape[2] === s) {
      // Row b·H + h of the [N·H, L, S] mask belongs to sequence b, head h.
      out.push({ mask: { data, strides: [h * st[0]!, st[0]!, st[1]!, st[2]!] }, kind: 'attn3d', tensor: am });
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
    const st = kpm.strides;
    out.push({ mask: { data, strides: batched ? [st[0]!, 0, 0, st[1]!] : [0, 0, 0, st[0]!] }, kind: 'padding', tensor: kpm });
  }
  return out;
}

function maskData(fn: string, arg: string, m: unknown): Float32Array | Uint8Array {
  if (!(m instanceof Tensor) || (m.dtype !== 'bool' && m.dtype !== 'float32')) {
    const got = m instanceof Tensor ? `a ${m.dtype} Tensor ${formatShape(m.shape)}` : m === null ? 'null' : typeof m;
    throw new TypeError(`${fn}: argument '${arg}' must be a bool or float32 Tensor, got ${got}`);
  }
  return m.data as Float32Array | Uint8Array;
}

/** The parameters' shapes (PyTorch's), or a TypeError/RangeError naming the one that is wrong; returns the feature sizes. */
function checkParams(fn: string, p: MultiHeadAttentionParams): MhaInputDims {
  const mat = (name: keyof MultiHeadAttentionParams, rows: number | null, cols: number | null): F32 => {
    const t = p[name];
    if (!(t instanceof Tensor) || t.dtype !== 'float32' || t.ndim !== 2 ||
      (rows !== null && t.shape[0] !== rows) || (cols !== null && t.shape[1] !== cols)) {
      const want = `[${rows ?? 'rows'}, ${cols ?? 'cols'}]`;
      throw new TypeError(`${fn}: params.${name} must be a float32 Tensor ${want}, got ${t instanceof Tensor ? formatShape(t.shape) : String(t)}`);
    }
    return t as F32;
  };
  const e = mat('outProjWeight', null, null).shape[0]!;
  mat('outProjWeight', e, e);
  if (!Number.isInteger(p.numHeads) || p.numHeads < 1 || e % p.numHeads !== 0) {
    throw new RangeError(`${fn}: params.numHeads must be a positive integer dividing embedDim ${e}, got ${p.numHeads}`);
  }
  if (p.inProjWeight) {
    mat('inProjWeight', 3 * e, e);
    return { embedDim: e, kdim: e, vdim: e, batchFirst: false };
  }
  mat('qProjWeight', e, e);
  return { embedDim: e, kdim: mat('kProjWeight', e, null).shape[1]!, vdim: mat('vProjWeight', e, null).shape[1]!, batchFirst: false };
}

/** Feature sizes and layout {@link checkMhaInputs} checks against. */
export interface MhaInputDims {
  embedDim: number;
  kdim: number;
  vdim: number;
  /** Inputs are [N, L, E] (nn.MultiheadAttention's batchFirst); the functional form is sequence-first. */
  batchFirst: boolean;
}

/** query [L, N, E], key [S, N, kdim], value [S, N, vdim] (batch-first or unbatched alike), or a TypeError/RangeError naming the argument. */
export function checkMhaInputs(fn: string, query: F32, key: F32, value: F32, dims: MhaInputDims): void {
  for (const [arg, t] of [['query', query], ['key', key], ['value', value]] as const) {
    if (!(t instanceof Tensor) || t.dtype !== 'float32') {
      const got = t instanceof Tensor ? `a ${t.dtype} Tensor ${formatShape(t.shape)}` : t === null ? 'null' : typeof t;
      throw new TypeError(`${fn}: argument '${arg}' must be a float32 Tensor, got ${got}`);
    }
  }
  const rank = query.ndim;
  if (rank !== 2 && rank !== 3) {
    throw new RangeError(`${fn}: argument 'query' must be 3-D (batched) or 2-D (unbatched), got shape ${formatShape(query.shape)}`);
  }
  for (const [arg, t, feat] of [['key', key, dims.kdim], ['value', value, dims.vdim]] as const) {
    if (t.ndim !== rank) {
      throw new RangeError(`${fn}: argument '${arg}' must be ${rank}-D like query ${formatShape(query.shape)}, got shape ${formatShape(t.shape)}`);
    }
    if (t.shape[rank - 1] !== feat) {
      throw new RangeError(`${fn}: argument '${arg}' must have ${feat} features (${arg === 'key' ? 'kdim' : 'vdim'}) in its last dim, got shape ${formatShape(t.shape)}`);
    }
  }
  if (query.shape[rank - 1] !== dims.embedDim) {
    throw new RangeError(`${fn}: argument 'query' must have embedDim = ${dims.embedDim} features in its last dim, got shape ${formatShape(query.shape)}`);
  }
  const seqAxis = rank === 3 && dims.batchFirst ? 1 : 0;
  const batchAxis = dims.batchFirst ? 0 : 1;
  if (rank === 3 && (key.shape[batchAxis] !== query.shape[batchAxis] || value.shape[batchAxis] !== query.shape[batchAxis])) {
    throw new RangeError(`${fn}: query, key and value must have the same batch size (dim ${batchAxis}), got ${formatShape(query.shape)}, ${formatShape(key.shape)}, ${formatShape(value.shape)}`);
  }
  if (value.shape[seqAxis] !== key.shape[seqAxis]) {
    throw new RangeError(`${fn}: key and value must have the same sequence length (dim ${seqAxis}), got ${formatShape(key.shape)} and ${formatShape(value.shape)}`);
  }
}

/**
 * An uninitialised tensor shaped like the [L, N, E] `like`, with its leading
 * dims in `like`'s memory order: the attention output of a batch-first input
 * is batch-first in memory, so the module returns it as a contiguous tensor.
 */
export function emptyInOrderOf(like: F32): F32 {
  const shape = like.shape as [number, number, number];
  const order = like.strides[0]! >= like.strides[1]! || shape[1] === 1 ? [0, 1] : [1, 0];
  const size = shape[0] * shape[1] * shape[2];
  return new Tensor(allocateUninitialized('float32', size), shape, 'float32', stridesInOrder(shape, order, shape[2]));
}

function backendOf(options: OpOptions): OpOptions {
  return options.backend ? { backend: options.backend } : {};
}

/**
 * [S, N, E] → [S + extra, N, E]: the rows, then `biasRow` ([1, 1, E]) for
 * every sequence, then a zero row when `zeroRow`. The copies are backend
 * calls (x + 0 through strides), so they stay in order inside runAsync.
 */
function appendRows(x: F32, biasRow: F32 | null, zeroRow: boolean, options: OpOptions): F32 {
  const [s, n, e] = x.shape as [number, number, number];
  if (needsGrad(x, biasRow)) {
    // In grad mode: cat, whose backward hands each part its slice of the gradient.
    const parts = [x];
    if (biasRow) parts.push(biasRow.reshape([1, 1, e]).expand([1, n, e]));
    if (zeroRow) parts.push(zeros([1, n, e]));
    return cat(parts, 0, backendOf(options));
  }
  const extra = (biasRow ? 1 : 0) + (zeroRow ? 1 : 0);
  const out = zeros([s + extra, n, e]);
  add(x, 0, { out: out.narrow(0, 0, s), ...backendOf(options) });
  if (biasRow) add(biasRow.reshape([1, 1, e]).expand([1, n, e]), 0, { out: out.narrow(0, s, 1), ...backendOf(options) });
  return out;
}

/** Widens a mask by `extra` key columns that never mask (PyTorch pads with 0 / false), copying it in JS. */
function padMaskColumns(m: ShapedMask, s: number, extra: number, h: number, l: number): ShapedMask {
  const t = m.tensor;
  const len = s + extra;
  // [rows, S] with rows of the mask in order: a 3-D mask's two leading dims are walked as one.
  const [d0, d1] = t.ndim === 3 ? [t.shape[0]!, t.shape[1]!] : t.ndim === 2 ? [1, t.shape[0]!] : [1, 1];
  const st = t.strides;
  const [s0, s1, sk] = t.ndim === 3 ? [st[0]!, st[1]!, st[2]!] : t.ndim === 2 ? [0, st[0]!, st[1]!] : [0, 0, st[0]!];
  const out = t.dtype === 'bool' ? new Uint8Array(d0 * d1 * len) : new Float32Array(d0 * d1 * len);
  // Masks are inputs, final when recorded: read them through their strides here.
  const src = t.data;
  for (let i = 0, r = 0; i < d0; i++) {
    for (let j = 0; j < d1; j++, r++) for (let c = 0; c < s; c++) out[r * len + c] = src[i * s0 + j * s1 + c * sk]!;
  }
  const strides: [number, number, number, number] =
    m.kind === 'attn2d' ? [0, 0, len, 1] : m.kind === 'attn3d' ? [h * l * len, l * len, len, 1] : [len, 0, 0, 1];
  return { mask: { data: out, strides }, kind: m.kind, tensor: t };
}

/** [N, H, L, S] → [N, L, S], the mean over heads: a (1 × H) row of 1/H times each sequence's (H × L·S) weights. */
function averageHeads(w: F32, options: OpOptions): F32 {
  const [n, h, l, s] = w.shape as [number, number, number, number];
  const per = l * s;
  const out = new Tensor(allocateUninitialized('float32', n * per), [n, l, s], 'float32');
  resolveBackend(options.backend).gemm({
    a: new Float32Array(h).fill(1), b: w.data, c: out.data, m: 1, n: per, k: h, alpha: 1 / h,
    act: Activation.None, batch: n, strideA: 0, strideB: h * per, strideC: per,
  });
  // Each head's weights get 1/H of the average's gradient.
  if (needsGrad(w)) recordOp('MeanBackward', [w], [out], ([g]) => [scale(g!, 1 / h, options.backend).unsqueeze(1).expand([n, h, l, s])]);
  return out;
}

/**
 * The causal mask of a step that continues `pos` cached positions: [t, pos + t],
 * query i (at position pos + i) sees keys up to its own position (-inf after).
 * The kernel's own `causal` flag is top-left aligned, which is this only for pos = 0.
 */
export function causalMaskFrom(pos: number, t: number): F32 {
  const s = pos + t;
  const m = new Float32Array(t * s);
  for (let i = 0; i < t; i++) m.fill(-Infinity, i * s + pos + i + 1, (i + 1) * s);
  return new Tensor(m, [t, s], 'float32');
}
