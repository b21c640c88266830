/**
 * The compute interface both backends implement: the native addon
 * (lib/backend/native.ts) and pure TypeScript (lib/backend/js/).
 *
 * Backends work on flat typed arrays plus sizes, never on `Tensor`s: shape
 * and dtype checks happen once, in `lib/ops.ts`, before a backend is called.
 * Outputs are passed in (callers own allocation), so buffers can be reused.
 * The native backend re-validates every length and size anyway: native code
 * never trusts JS.
 */

/** Activation fused into the store of a GEMM. Values match native/kernels/gemm.h. */
export enum Activation {
  None = 0,
  Relu = 1,
  Gelu = 2,
  GeluTanh = 3,
}

/** Element-wise binary operators. Values match native/kernels/layer_ops.h. */
export enum BinaryOp {
  Add = 0,
  Sub = 1,
  Mul = 2,
  Div = 3,
}

/** Element-wise maps of {@link Backend.unary}. Values match native/kernels/elementwise/elementwise.h. */
export enum UnaryOp {
  /** x / (1 + exp(−x)) (PyTorch's SiLU formula). */
  Silu = 0,
  /** 1 / (1 + exp(−x)). */
  Sigmoid = 1,
  Tanh = 2,
}

/**
 * C = act(alpha · op(A) · op(B) + beta · C + bias), row-major, repeated over
 * `batch` (operand i starts at i · stride; a stride of 0 broadcasts). Every
 * field after k is optional, with the default given.
 */
export interface GemmArgs {
  a: Float32Array;
  b: Float32Array;
  c: Float32Array;
  m: number;
  n: number;
  k: number;
  /** op(A) = Aᵀ; A is stored [k, m] (default false). */
  transA?: boolean;
  /** op(B) = Bᵀ; B is stored [n, k], PyTorch's Linear weight layout (default false). */
  transB?: boolean;
  /** Row stride of A as stored (default: k, or m when transA): a row-strided view needs no copy. */
  lda?: number;
  /** Row stride of B as stored (default: n, or k when transB). */
  ldb?: number;
  /** Row stride of C (default n). */
  ldc?: number;
  /** Default 1. */
  alpha?: number;
  /** Default 0: C is write-only. */
  beta?: number;
  /** Length n, added to every row; null or absent for none. */
  bias?: Float32Array | null;
  /** Default Activation.None. */
  act?: Activation;
  /** Default 1. */
  batch?: number;
  /** Elements between consecutive batch items of A, B, C (default 0 = broadcast; C's must cover m rows). */
  strideA?: number;
  strideB?: number;
  strideC?: number;
  /**
   * B is a constant (a weight): a backend may pack it once into its GEMM
   * layout and reuse that across calls, keyed by the array's identity. The
   * array must then never be modified in place (replace the tensor instead,
   * as loadStateDict does).
   */
  cacheB?: boolean;
  /**
   * Precision B is multiplied in when `cacheB` is set (default 'float32').
   * 'bfloat16': B (and A, as it is packed) are rounded to bfloat16 and
   * multiplied with float32 accumulation; the native backend uses AVX512-BF16
   * dot products, the JS backend emulates the rounding (the reference).
   * 'int8': B quantized to int8 per output column once (per `bVersion`), A per
   * row at every call, products summed exactly in int32 and dequantized in
   * the store (native/kernels/qgemm/qgemm.h); the JS backend emulates it bit
   * for bit. Needs one B for every batch item (strideB 0).
   */
  bPrecision?: WeightPrecision;
  /**
   * With `cacheB`: the version of B's memory (`Tensor._version`, bumped by
   * in-place writes such as optimizer steps). A backend that keeps a packed
   * copy re-packs it when the version differs from the one it packed.
   * Default 0.
   */
  bVersion?: number;
  /**
   * Length m, optional: also writes rowSumsA[i] = alpha · Σ_k op(A)[i, k] + beta · rowSumsA[i] (beta 0: not
   * read), the product of op(A) with a column of ones beside C. A Linear's bias gradient next to its weight
   * gradient (op(A) = dYᵀ), summed from the A the GEMM reads anyway. Each row sums its k in order. Batch 1 only.
   */
  rowSumsA?: Float32Array | null;
}

/**
 * Independent GEMMs in one call (a Linear's data and weight gradients): each entry is a {@link GemmArgs}, and no
 * entry's outputs (c, rowSumsA) may overlap another entry's operands or outputs. The native backend runs them at
 * once, each whole on one thread, when there are at most two threads per GEMM (small products split over threads
 * lose to their shared packing and uneven tiles), else one after another; every product equals the one its own
 * `gemm` call gives, bit for bit. 1 to 8 entries, put the longest first (the calling thread starts on it).
 */
export interface GemmGroupArgs {
  gemms: GemmArgs[];
}

/**
 * Precision of a module's GEMM weights. 'float32' (default) is the reference;
 * 'bfloat16' halves weight memory traffic and doubles the dot-product rate on
 * CPUs with AVX512-BF16, at about 3 significant digits per product. 'int8'
 * quantizes weights per output channel (once) and activations per row (at
 * every call) to int8, multiplies exactly in int32 (AVX512-VNNI `vpdpbusd`,
 * AVX2, or portable code: every CPU) and dequantizes in the store: a quarter
 * of the weight bytes and up to 4x the multiply-adds per instruction, at
 * about 2 significant digits per input.
 */
export type WeightPrecision = 'float32' | 'bfloat16' | 'int8';

/**
 * Precision of attention's two products (q·kᵀ and probabilities·v).
 * 'float32' (default) is the reference. 'bfloat16' rounds q, k, v and the
 * probabilities to bfloat16 and accumulates in float32 (softmax, masks and
 * the output stay float32): on CPUs with AVX512-BF16 about twice the
 * throughput of long-sequence attention. It applies to calls without a
 * weights output and with more than {@link ATTENTION_SMALL_ROWS} queries;
 * other calls run float32.
 */
export type AttentionPrecision = 'float32' | 'bfloat16';

/**
 * Attention calls with at most this many queries (a decoding step) run the
 * few-rows path, always in float32 (the native kernel's kAttnSmallRows).
 */
export const ATTENTION_SMALL_ROWS = 8;

/**
 * A mask applied inside attention, broadcast over (batch, head, query, key)
 * by element strides (0 broadcasts). Float32 masks are added to the scaled
 * scores; Uint8 (bool) masks exclude a key where the value is non-zero, as
 * PyTorch's bool masks do (`true` = not allowed to attend).
 */
export interface AttentionMask {
  data: Float32Array | Uint8Array;
  strides: readonly [number, number, number, number];
}

/**
 * The fields of one attention call that {@link AttentionArgs} and {@link AttentionBackwardArgs} share: q, k, v and
 * out addressed by element strides over (batch, head, position) with a contiguous feature axis (so head
 * split/merge transposes are absorbed), the sizes, the scale, masks, causality and dropout.
 */
export interface AttentionOperands {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  out: Float32Array;
  qStrides: readonly [number, number, number];
  kStrides: readonly [number, number, number];
  vStrides: readonly [number, number, number];
  outStrides: readonly [number, number, number];
  batch: number;
  heads: number;
  /**
   * Key/value heads (grouped-query attention; default `heads`, must divide it): query head h reads key/value head
   * ⌊h / (heads / kvHeads)⌋, and kStrides/vStrides address kvHeads heads, so shared heads are never copied.
   */
  kvHeads?: number;
  /** Query positions. */
  lq: number;
  /** Key/value positions. */
  lk: number;
  /** Query/key feature size. */
  dk: number;
  /** Value feature size. */
  dv: number;
  scale: number;
  /** Up to two masks (e.g. an attention mask and a key padding mask); all apply. */
  masks: readonly AttentionMask[];
  /** Key j is visible to query i only when j <= i (PyTorch's top-left aligned is_causal). */
  causal: boolean;
  /**
   * Dropout on the probabilities (training; default 0): each (b, h, i, j) is zeroed with probability dropoutP and
   * kept ones are scaled by 1 / (1 − dropoutP). The mask is a hash of `dropoutSeed` (an integer in [0, 2^32)),
   * the row (b·heads + h)·lq + i and the key j (the same bits on every backend), so
   * {@link Backend.attentionBackward} given the same two regenerates it instead of storing it. Float32; not with
   * `weights` or kvStarts / kvLengths.
   */
  dropoutP?: number;
  dropoutSeed?: number;
}

/** out = softmax(scale · q·kᵀ + masks) · v per (batch, head) (see {@link AttentionOperands}). */
export interface AttentionArgs extends AttentionOperands {
  /**
   * When non-null, receives the softmax probabilities, contiguous
   * [batch, heads, lq, lk]. When null, no lq×lk matrix is ever materialised.
   */
  weights: Float32Array | null;
  /** Precision of the products (default 'float32'; see {@link AttentionPrecision}). */
  precision?: AttentionPrecision;
  /**
   * Pooled keys and values (continuous batching, each sequence's K/V rows at its own place in one pool): batch b
   * reads k and v from position kvStarts[b] (through kStrides[2] / vStrides[2]; kStrides[0] and vStrides[0] are
   * not used). `batch` entries, each >= 0.
   */
  kvStarts?: Int32Array | null;
  /**
   * Keys batch b sees: its first kvLengths[b] (in [0, lk]; 0 gives NaN rows). `batch` entries. With kvStarts or
   * kvLengths the call computes in float32 and `weights` must be null. Causal stays top-left aligned per entry.
   */
  kvLengths?: Int32Array | null;
  /**
   * When given, receives each query row's log-sum-exp of its (scaled, masked) scores, L = log Σ_j exp(s_j),
   * contiguous [batch, heads, lq] (NaN for a fully masked row): what {@link Backend.attentionBackward} recomputes
   * the probabilities from. The call then computes in float32. Not with kvStarts / kvLengths.
   */
  lse?: Float32Array | null;
}

/**
 * Arguments of {@link Backend.attentionBackward}: the gradients of one attention call (FlashAttention-2's
 * backward) from the gradient of its output, without an lq×lk matrix. With D_i = dO_i · O_i, per block of keys:
 * P = exp(scale·q·kᵀ + masks − L), dV += Pᵀ·dO, dP = dO·Vᵀ, dS = P ∘ (dP − D), dQ += scale·dS·K,
 * dK += scale·dSᵀ·Q; grouped-query heads sum into their shared K/V head. The forward's fields (with its dropout
 * and seed) are passed as {@link AttentionArgs} takes them (`out` its output, `lse` its log-sum-exp output), and
 * the result does not depend on the thread count.
 */
export interface AttentionBackwardArgs extends AttentionOperands {
  /** The forward's {@link AttentionArgs.lse}, [batch, heads, lq]. */
  lse: Float32Array;
  /** Gradient of out, (batch, head, position) strides, features contiguous. */
  dOut: Float32Array;
  dOutStrides: readonly [number, number, number];
  /** Receives dQ over [batch, heads, lq] + dk through gradQStrides, or null. */
  gradQ: Float32Array | null;
  /** Receives dK over [batch, kvHeads, lk] + dk through gradKStrides, or null. */
  gradK: Float32Array | null;
  /** Receives dV over [batch, kvHeads, lk] + dv through gradVStrides, or null. */
  gradV: Float32Array | null;
  gradQStrides?: readonly [number, number, number];
  gradKStrides?: readonly [number, number, number];
  gradVStrides?: readonly [number, number, number];
  /**
   * Optional one-entry output: the bytes of scratch the call used beyond its inputs and outputs: per-thread blocks
   * on the native backend, O(block · (dk + dv)); on the JS reference one tile × block plus one head's gradient
   * accumulators in double, O((lq + lk) · d). Never O(lq · lk).
   */
  workspaceBytes?: Int32Array | null;
}

/**
 * Arguments of {@link Backend.softmax}: a stable softmax over each row of [rows, cols], or with `log` the
 * log_softmax, (x − max) − log Σ exp(x − max) as PyTorch computes it. x and y may alias.
 */
export interface SoftmaxArgs {
  x: Float32Array;
  y: Float32Array;
  rows: number;
  cols: number;
  /** log_softmax instead of softmax (default false). */
  log?: boolean;
  /** Elements between the starts of consecutive rows of x (default cols): a row-strided view. */
  xRowStride?: number;
  /** Elements between the starts of consecutive rows of y (default cols). */
  yRowStride?: number;
}

/** Arguments of {@link Backend.layerNorm}: PyTorch's LayerNorm over each row (biased variance). x and y may alias. */
export interface LayerNormArgs {
  x: Float32Array;
  /** Length cols (PyTorch's weight, γ), or null. */
  weight: Float32Array | null;
  /** Length cols (PyTorch's bias, β), or null. */
  bias: Float32Array | null;
  y: Float32Array;
  rows: number;
  cols: number;
  eps: number;
  xRowStride?: number;
  yRowStride?: number;
}

/**
 * Arguments of {@link Backend.addLayerNorm}: residual add fused with LayerNorm; per row, s = x + residual,
 * y = layerNorm(s); `sum` (optional) receives s. Results equal `binary(add)` then `layerNorm`. y and sum may each
 * be x or residual (in place) but not each other. All contiguous.
 */
export interface AddLayerNormArgs {
  x: Float32Array;
  residual: Float32Array;
  weight: Float32Array | null;
  bias: Float32Array | null;
  y: Float32Array;
  sum: Float32Array | null;
  rows: number;
  cols: number;
  eps: number;
  /** Length rows, or null/absent: receives each row's 1/√(var + eps), for a backward from y (see {@link LayerNormBackwardArgs.rstd}). */
  rstd?: Float32Array | null;
}

/**
 * Arguments of {@link Backend.rmsNorm}: PyTorch's RMSNorm over each row, y = x / √(mean(x²) + eps) · weight.
 * x and y may alias.
 */
export interface RmsNormArgs {
  x: Float32Array;
  /** Length cols, or null (elementwise_affine = false). */
  weight: Float32Array | null;
  y: Float32Array;
  rows: number;
  cols: number;
  eps: number;
  xRowStride?: number;
  yRowStride?: number;
}

/**
 * Arguments of {@link Backend.addRmsNorm}: per row, s = x + residual, y = rmsNorm(s); `sum` (optional) receives s.
 * Aliasing as {@link AddLayerNormArgs}. All contiguous.
 */
export interface AddRmsNormArgs {
  x: Float32Array;
  residual: Float32Array;
  weight: Float32Array | null;
  y: Float32Array;
  sum: Float32Array | null;
  rows: number;
  cols: number;
  eps: number;
}

/** Arguments of {@link Backend.relu}: y = max(x, 0) over x.length elements; x and y may alias. */
export interface UnaryArgs {
  x: Float32Array;
  y: Float32Array;
}

/** Arguments of {@link Backend.gelu}: the exact erf form, or PyTorch's approximate='tanh'. */
export interface GeluArgs extends UnaryArgs {
  tanhApprox: boolean;
}

/** Arguments of {@link Backend.unary}: y = op(x) over x.length elements; x and y may alias exactly. */
export interface UnaryMapArgs {
  op: UnaryOp;
  x: Float32Array;
  y: Float32Array;
}

/**
 * Arguments of {@link Backend.siluMul}: SwiGLU's y = silu(gate) · up over gate.length elements, silu rounded to
 * float32 before the product (F.silu(gate) * up). up and y have gate's length; y may be gate or up exactly.
 */
export interface SiluMulArgs {
  gate: Float32Array;
  up: Float32Array;
  y: Float32Array;
}

/**
 * Arguments of {@link Backend.binary}: y = a op b over index space `shape` (≤ 8 dims); strides in elements, 0
 * broadcasts. y is contiguous and must not alias a broadcast operand.
 */
export interface BinaryArgs {
  op: BinaryOp;
  a: Float32Array;
  aStrides: readonly number[];
  b: Float32Array;
  bStrides: readonly number[];
  y: Float32Array;
  shape: readonly number[];
}

/**
 * Arguments of {@link Backend.copy}: y[i] = x[i] over index space `shape` (≤ 8 dims), both addressed by element
 * strides (y's elements distinct; x and y must not overlap unless they are the same view).
 */
export interface CopyArgs {
  x: Float32Array;
  xStrides: readonly number[];
  y: Float32Array;
  yStrides: readonly number[];
  shape: readonly number[];
}

/**
 * Arguments of {@link Backend.embedding}: out[i, :dim] = weight[ids[i], :dim]; ids already range-checked by ops.
 * With row strides it gathers the leading `dim` elements of rows of wider buffers (a KV cache's beam reorder).
 */
export interface EmbeddingArgs {
  weight: Float32Array;
  /** Rows of weight. */
  num: number;
  /** Columns gathered per row. */
  dim: number;
  ids: Int32Array;
  out: Float32Array;
  /** Elements between rows of weight (default dim). */
  weightRowStride?: number;
  /** Elements between rows of out (default dim). */
  outRowStride?: number;
}

/**
 * Arguments of {@link Backend.indexCopy}: row index[i] of y = row i of x (PyTorch's `index_copy_` along dim 0), for
 * every i < rows (index holds at least `rows` entries); rows of `cols` elements, x's `ldx` and y's `ldy` apart, y holding `yRows` rows. Indices
 * in [0, yRows) and distinct; x and y must not overlap.
 */
export interface IndexCopyArgs {
  x: Float32Array;
  ldx: number;
  y: Float32Array;
  ldy: number;
  yRows: number;
  rows: number;
  cols: number;
  index: Int32Array;
}

/** Arguments of {@link Backend.permute0213}: [d0, d1, d2, d3] → [d0, d2, d1, d3]. x and y must not alias. */
export interface Permute0213Args {
  x: Float32Array;
  y: Float32Array;
  d0: number;
  d1: number;
  d2: number;
  d3: number;
}

/**
 * Arguments of {@link Backend.rope}: rotary position embedding of x [batch, seq, heads, dim] into y (same shape),
 * both addressed by element strides over (batch, position, head) with a contiguous feature axis; y may be x itself
 * (same strides: in place). Per pair (x0, x1) with angle a = float32(float32(position) · invFreq[i]) and
 * c = float32(cos a), s = float32(sin a): y0 = x0·c − x1·s, y1 = x1·c + x0·s, each product rounded to float32
 * before the sum (PyTorch's `x * cos + rotate_half(x) * sin` in float32). Features past rotaryDim are copied.
 */
export interface RopeArgs {
  x: Float32Array;
  y: Float32Array;
  batch: number;
  seq: number;
  heads: number;
  dim: number;
  /** Even, at most dim: the first rotaryDim features are rotated (GPT-NeoX partial rotary). */
  rotaryDim: number;
  xStrides: readonly [number, number, number];
  yStrides: readonly [number, number, number];
  /** Absolute positions (each >= 0): entry b · positionsBatchStride + l is the position of (b, l). */
  positions: Int32Array;
  /** 0 (one row of seq positions for every batch row) or seq. */
  positionsBatchStride: number;
  /** rotaryDim / 2 frequencies. */
  invFreq: Float32Array;
  /** false: pairs (i, i + rotaryDim/2) (Hugging Face rotate_half); true: pairs (2i, 2i + 1) (GPT-J, Meta). */
  interleaved: boolean;
}

/**
 * Arguments of {@link Backend.softmaxBackward}: the backward of softmax (or with `log`, log_softmax) over rows, from
 * the forward's output y and its gradient dy: dx = y · (dy − Σ dy·y), or dx = dy − exp(y) · Σ dy. dx may be dy or
 * y only as the same view.
 */
export interface SoftmaxBackwardArgs {
  y: Float32Array;
  dy: Float32Array;
  dx: Float32Array;
  rows: number;
  cols: number;
  log?: boolean;
  yRowStride?: number;
  dyRowStride?: number;
  dxRowStride?: number;
}

/**
 * Arguments of {@link Backend.layerNormBackward}: the backward of LayerNorm over rows of x (the forward's input):
 * dx = rstd · (g − mean(g) − x̂ · mean(g·x̂)) with g = dy·weight, and (when not null) dweight = Σ_rows dy·x̂,
 * dbias = Σ_rows dy, both [cols] and overwritten. The row statistics are recomputed from x as the forward computes
 * them, unless `rstd` is given: then `x` is the forward's output y = x̂·weight + bias and x̂ = (y − bias)/weight.
 * Parameter gradients do not depend on the thread count (fixed chunks of rows, summed in order).
 */
export interface LayerNormBackwardArgs {
  x: Float32Array;
  weight: Float32Array | null;
  dy: Float32Array;
  dx: Float32Array;
  dweight: Float32Array | null;
  dbias: Float32Array | null;
  rows: number;
  cols: number;
  eps: number;
  xRowStride?: number;
  dyRowStride?: number;
  dxRowStride?: number;
  /**
   * Length rows: each row's 1/√(var + eps) as the forward computed it ({@link AddLayerNormArgs.rstd}). Given, `x`
   * holds the forward's output and eps is unused (the backward of a LayerNorm that kept its output, not its input).
   */
  rstd?: Float32Array | null;
  /** Length cols, or null: the forward's bias, read only with `rstd`. */
  bias?: Float32Array | null;
}

/** Arguments of {@link Backend.rmsNormBackward}: as {@link LayerNormBackwardArgs} for RMSNorm (no centring, no bias). */
export interface RmsNormBackwardArgs {
  x: Float32Array;
  weight: Float32Array | null;
  dy: Float32Array;
  dx: Float32Array;
  dweight: Float32Array | null;
  rows: number;
  cols: number;
  eps: number;
  xRowStride?: number;
  dyRowStride?: number;
  dxRowStride?: number;
}

/** Which activation {@link Backend.activationBackward} differentiates. Values match native/kernels/elementwise/elementwise.h. */
export enum ActivationGrad {
  /** x is the input: dy where x > 0. */
  Relu = 0,
  /** x is the input: exact (erf) GELU. */
  Gelu = 1,
  /** x is the input: PyTorch's approximate='tanh' GELU. */
  GeluTanh = 2,
  /** x is the input. */
  Silu = 3,
  /** x is the forward's output y: dy · y(1 − y). */
  Sigmoid = 4,
  /** x is the forward's output y: dy · (1 − y²). */
  Tanh = 5,
}

/** Arguments of {@link Backend.activationBackward}: dx = dy · f′ over x.length elements; dx may be x or dy exactly. */
export interface ActivationBackwardArgs {
  op: ActivationGrad;
  x: Float32Array;
  dy: Float32Array;
  dx: Float32Array;
}

/**
 * Arguments of {@link Backend.dropoutMask}: out[i] = 0 with probability p, else scale = float32(1 / (1 − p)), decided
 * by a counter-based hash of (key0, key1, i) (see `dropoutKeep` in lib/backend/js/random.ts): the same keys give the
 * same mask on every backend, kernel path and thread count, and the elements are independent of each other (a
 * native kernel fills them in parallel). Requires 0 ≤ p < 1 and out.length < 2^32.
 */
export interface DropoutMaskArgs {
  out: Float32Array;
  p: number;
  /** Two unsigned 32-bit keys (one call's draw from the random generator). */
  key0: number;
  key1: number;
  /**
   * Optional, as long as `out` (may be `out` itself): out[i] = x[i] · mask[i] instead of the mask, so dropout
   * and its backward (the output gradient times the same mask, regenerated from the same keys) are one pass each
   * and the mask is never stored.
   */
  x?: Float32Array | null;
}

/**
 * Arguments of {@link Backend.embeddingBackward}: dweight [num, dim] (overwritten) = scatter-add of the rows of
 * dy [ids.length, dim] by id, each element summed in order of position (thread-count independent); row
 * `paddingIdx` (−1: none) stays 0.
 */
export interface EmbeddingBackwardArgs {
  dy: Float32Array;
  ids: Int32Array;
  dweight: Float32Array;
  num: number;
  dim: number;
  paddingIdx: number;
  dyRowStride?: number;
}

/**
 * Arguments of {@link Backend.crossEntropy}: per row of logits [rows, cols] with target t (a class, or
 * `ignoreIndex`), loss = (1 − ε)·w[t]·(lse − x[t]) + (ε/cols)·Σ_c w[c]·(lse − x[c]) (w = 1 when `weight` is
 * null; 0 for an ignored row) and lse = log Σ exp(x), PyTorch 1.13's per-element cross-entropy.
 */
export interface CrossEntropyArgs {
  logits: Float32Array;
  target: Int32Array;
  weight: Float32Array | null;
  ignoreIndex: number;
  labelSmoothing: number;
  loss: Float32Array;
  lse: Float32Array;
  rows: number;
  cols: number;
  logitsRowStride?: number;
}

/**
 * Arguments of {@link Backend.crossEntropyBackward}: dlogits = ∂(Σ_i dloss_i · loss_i)/∂logits from the forward's
 * lse: dloss_i·((1 − ε)·w[t]·(p − onehot(t)) + (ε/cols)·(W·p − w)), p = exp(x − lse), W = Σ w; 0 for ignored rows.
 * `dlossStride` 0: one dloss for every row (a mean or sum reduction); 1: one per row.
 */
export interface CrossEntropyBackwardArgs {
  logits: Float32Array;
  lse: Float32Array;
  target: Int32Array;
  weight: Float32Array | null;
  ignoreIndex: number;
  labelSmoothing: number;
  dloss: Float32Array;
  dlossStride: 0 | 1;
  dlogits: Float32Array;
  rows: number;
  cols: number;
  logitsRowStride?: number;
  dlogitsRowStride?: number;
}

/**
 * Arguments of {@link Backend.sgdStep}: PyTorch 1.13's SGD update of every tensor of a parameter group, in place
 * (torch/optim/sgd.py, single-tensor path). Per element, in float32 with each scalar rounded to float32:
 * d = ±grads[i] (+ weightDecay·param, fused), with momentum ≠ 0 buf = initMomentum[i] ? d : fma(d, 1 − dampening,
 * momentum·buf) and d = nesterov ? fma(buf, momentum, d) : buf; param = fma(d, −lr, param). Every array of entry
 * i has params[i]'s length; no written array may share memory with another array of the call.
 */
export interface SgdStepArgs {
  params: readonly Float32Array[];
  grads: readonly Float32Array[];
  /** Read and written when momentum ≠ 0 (one per tensor); ignored otherwise. */
  momentumBuffers: readonly Float32Array[] | null;
  /** Per tensor, when momentum ≠ 0: 1 on its first step (the buffer becomes the gradient), else 0. */
  initMomentum: readonly number[] | null;
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
  maximize: boolean;
}

/**
 * Arguments of {@link Backend.adamStep}: PyTorch 1.13's Adam (or, with `decoupled`, AdamW) update of every tensor
 * of a parameter group, in place (torch/optim/adam.py and adamw.py, single-tensor path). Per tensor, with its
 * step count s = steps[i] (after the increment): bias corrections 1 − β^s in double, step size lr / (1 − β1^s);
 * per element in float32: g = ±grad (+ weightDecay·param fused, or param ·= 1 − lr·weightDecay when decoupled),
 * m = fma(g, 1 − β1, β1·m), v = fma((1 − β2)·g, g, β2·v), with amsgrad vmax = max(vmax, v) used for v,
 * param = param + (−stepSize·m) / (√v / √(1 − β2^s) + eps).
 */
export interface AdamStepArgs {
  params: readonly Float32Array[];
  grads: readonly Float32Array[];
  expAvgs: readonly Float32Array[];
  expAvgSqs: readonly Float32Array[];
  /** One per tensor with amsgrad; ignored otherwise. */
  maxExpAvgSqs: readonly Float32Array[] | null;
  /** Per tensor, its step count after this step (integers ≥ 1). */
  steps: readonly number[];
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
  maximize: boolean;
  /** AdamW's decoupled weight decay. */
  decoupled: boolean;
}

/**
 * Arguments of {@link Backend.clipGradNorm}: PyTorch 1.13's `clip_grad_norm_` over the gradients, in place. The
 * norm of order normType (> 0, or Infinity) of each gradient, rounded to float32, then the same norm of those (the
 * total, written to totalNorm[0]); every gradient is then multiplied in float32 by
 * min(1, float32(maxNorm) · (1 / (total + 1e-6))) (Python's float / tensor is a reciprocal times the float).
 */
export interface ClipGradNormArgs {
  grads: readonly Float32Array[];
  maxNorm: number;
  normType: number;
  totalNorm: Float32Array;
}

/**
 * Every op a backend implements, by name, with its one argument object. This
 * table is the op list: the native addon exports a function of the same name
 * taking the same object (native/binding/op_registry.cc), and the JS backend a
 * method of the same name. Adding an op adds one entry here.
 */
export interface OpArgs {
  gemm: GemmArgs;
  gemmGroup: GemmGroupArgs;
  softmax: SoftmaxArgs;
  layerNorm: LayerNormArgs;
  addLayerNorm: AddLayerNormArgs;
  rmsNorm: RmsNormArgs;
  addRmsNorm: AddRmsNormArgs;
  relu: UnaryArgs;
  gelu: GeluArgs;
  unary: UnaryMapArgs;
  siluMul: SiluMulArgs;
  binary: BinaryArgs;
  embedding: EmbeddingArgs;
  indexCopy: IndexCopyArgs;
  copy: CopyArgs;
  permute0213: Permute0213Args;
  attention: AttentionArgs;
  attentionBackward: AttentionBackwardArgs;
  rope: RopeArgs;
  softmaxBackward: SoftmaxBackwardArgs;
  layerNormBackward: LayerNormBackwardArgs;
  rmsNormBackward: RmsNormBackwardArgs;
  activationBackward: ActivationBackwardArgs;
  dropoutMask: DropoutMaskArgs;
  embeddingBackward: EmbeddingBackwardArgs;
  crossEntropy: CrossEntropyArgs;
  crossEntropyBackward: CrossEntropyBackwardArgs;
  sgdStep: SgdStepArgs;
  adamStep: AdamStepArgs;
  clipGradNorm: ClipGradNormArgs;
}

/** An op's name. */
export type OpName = keyof OpArgs;

/** The compute interface: one method per op, each taking its named arguments (outputs passed in). */
export type BackendOps = { [K in OpName]: (args: OpArgs[K]) => void };

export interface Backend extends BackendOps {
  readonly name: BackendName;
}

export type BackendName = 'native' | 'js';
