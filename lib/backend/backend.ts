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

/**
 * C = act(alpha · op(A) · op(B) + beta · C + bias), row-major, repeated over
 * `batch` (operand i starts at i · stride; a stride of 0 broadcasts).
 */
export interface GemmArgs {
  a: Float32Array;
  b: Float32Array;
  c: Float32Array;
  m: number;
  n: number;
  k: number;
  /** op(A) = Aᵀ; A is stored [k, m]. */
  transA: boolean;
  /** op(B) = Bᵀ; B is stored [n, k] (PyTorch Linear weight layout). */
  transB: boolean;
  alpha: number;
  /** 0: C is write-only. */
  beta: number;
  /** Length n, added to every row; or null. */
  bias: Float32Array | null;
  act: Activation;
  batch: number;
  strideA: number;
  strideB: number;
  strideC: number;
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
   */
  bPrecision?: WeightPrecision;
}

/**
 * Precision of a module's GEMM weights. 'float32' (default) is the reference;
 * 'bfloat16' halves weight memory traffic and doubles the dot-product rate on
 * CPUs with AVX512-BF16, at about 3 significant digits per product.
 */
export type WeightPrecision = 'float32' | 'bfloat16';

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
 * out = softmax(scale · q·kᵀ + masks) · v per (batch, head), with q, k, v and
 * out addressed by element strides over (batch, head, position) and a
 * contiguous feature axis, so head split/merge transposes are absorbed.
 */
export interface AttentionArgs {
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
   * When non-null, receives the softmax probabilities, contiguous
   * [batch, heads, lq, lk]. When null, no lq×lk matrix is ever materialised.
   */
  weights: Float32Array | null;
  /** Precision of the products (default 'float32'; see {@link AttentionPrecision}). */
  precision?: AttentionPrecision;
}

export interface Backend {
  readonly name: BackendName;
  gemm(args: GemmArgs): void;
  /** Stable softmax over each row of [rows, cols]. x and y may alias. */
  softmax(x: Float32Array, y: Float32Array, rows: number, cols: number): void;
  /** PyTorch LayerNorm over each row (biased variance). gamma/beta may be null. */
  layerNorm(
    x: Float32Array,
    gamma: Float32Array | null,
    beta: Float32Array | null,
    y: Float32Array,
    rows: number,
    cols: number,
    eps: number,
  ): void;
  /**
   * Residual add fused with LayerNorm: per row, s = x + r, y = layerNorm(s);
   * `sum` (optional) receives s. Results equal `binary(add)` then `layerNorm`.
   * y and sum may each be x or r (in place) but not each other.
   */
  addLayerNorm(
    x: Float32Array,
    r: Float32Array,
    gamma: Float32Array | null,
    beta: Float32Array | null,
    y: Float32Array,
    sum: Float32Array | null,
    rows: number,
    cols: number,
    eps: number,
  ): void;
  relu(x: Float32Array, y: Float32Array): void;
  gelu(x: Float32Array, y: Float32Array, tanhApprox: boolean): void;
  /**
   * y = a op b over index space `shape` (≤ 8 dims); strides in elements, 0
   * broadcasts. y is contiguous and must not alias a broadcast operand.
   */
  binary(
    op: BinaryOp,
    a: Float32Array,
    aStrides: readonly number[],
    b: Float32Array,
    bStrides: readonly number[],
    y: Float32Array,
    shape: readonly number[],
  ): void;
  /** out[i, :] = weight[ids[i], :]; ids already range-checked by ops. */
  embedding(weight: Float32Array, num: number, dim: number, ids: Int32Array, out: Float32Array): void;
  /** [d0, d1, d2, d3] → [d0, d2, d1, d3]. x and y must not alias. */
  permute0213(x: Float32Array, y: Float32Array, d0: number, d1: number, d2: number, d3: number): void;
  /**
   * Scaled dot-product attention (see AttentionArgs). A query row whose keys
   * are all masked out yields NaN, as PyTorch's softmax over all -inf does.
   */
  attention(args: AttentionArgs): void;
}

export type BackendName = 'native' | 'js';
