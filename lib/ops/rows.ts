/**
 * How row-wise ops address a strided tensor without copying it.
 *
 * GEMM (linear) and the row-wise kernels (softmax, the norms) work on rows of
 * a contiguous last dim. A view's leading dims (all but the last) can still
 * be addressed with uniform strides when, taken in some order, each dim's
 * stride is the next one's stride times its size: then the leading dims are
 * `rows` rows `rowStride` apart (the kernels' leading dimension), and with
 * one dim set aside, `batch` such blocks `batchStride` apart (a batched
 * GEMM). The head split `[L, N, E] → [L, N, H, E/H]`, a transposed
 * batch-first input `[N, L, E] → [L, N, E]` and a column slice of a packed
 * projection (`qkv.narrow(-1, 0, E)`) all qualify, so none is copied.
 *
 * A fresh output takes the input's order of dims, so results come out in
 * the input's memory order (as PyTorch's element-wise ops do): values are
 * PyTorch's, strides may differ from a contiguous result.
 */
import type { Shape } from '../tensor';

/** Leading dims of one tensor as `batch` blocks of `rows` rows. */
export interface RowLayout {
  batch: number;
  batchStride: number;
  rows: number;
  /** Elements between consecutive rows; undefined when there is at most one row (any leading dimension works). */
  rowStride: number | undefined;
}

/** A plan for x (and its output y) over the leading dims of `shape`. */
export interface RowPlan {
  x: RowLayout;
  y: RowLayout;
  /** Strides of y for the whole shape (last dim `cols`), following the plan's order of dims. */
  yStrides: number[];
}

/**
 * Plans `x` → `y` over the leading dims of `shape` (every dim but the last),
 * given x's strides and, for a caller's `out`, y's (null: y is allocated in
 * the plan's order, contiguous in it, rows of `yCols` elements). With
 * `allowBatch`, one leading dim may be set aside as a batch dim. Returns null
 * when no order addresses both with uniform strides.
 */
export function planRows(
  shape: Shape, xStrides: readonly number[], yStrides: readonly number[] | null, yCols: number, allowBatch: boolean,
): RowPlan | null {
  const lead = shape.length - 1;
  const dims: number[] = [];
  for (let d = 0; d < lead; d++) if (shape[d]! !== 1) dims.push(d);
  // Outer to inner by x's strides; ties keep the logical order.
  const byX = (a: number, b: number): number => xStrides[b]! - xStrides[a]! || a - b;
  const tryPlan = (batchDim: number | null): RowPlan | null => {
    const rowDims = dims.filter((d) => d !== batchDim).sort(byX);
    const x = collapse(shape, xStrides, rowDims, batchDim);
    if (!x) return null;
    const order = batchDim === null ? rowDims : [batchDim, ...rowDims];
    const fresh = yStrides === null ? stridesInOrder(shape, order, yCols) : yStrides;
    const y = collapse(shape, fresh, rowDims, batchDim);
    return y ? { x, y, yStrides: fresh.slice() } : null;
  };
  const plan = tryPlan(null);
  if (plan || !allowBatch) return plan;
  // Of the batch dims that work, prefer one whose output blocks do not interleave (the native GEMM requires
  // it of C), then the one with the most rows per block (fewer, larger GEMMs).
  const separate = (p: RowPlan): boolean =>
    p.y.batch <= 1 || p.y.batchStride >= (p.y.rows - 1) * (p.y.rowStride ?? yCols) + yCols;
  let best: RowPlan | null = null;
  for (const b of dims) {
    const p = tryPlan(b);
    if (!p) continue;
    if (!best || (separate(p) && !separate(best)) || (separate(p) === separate(best) && p.x.rows > best.x.rows)) best = p;
  }
  return best;
}

/** `rowDims` (outer to inner) as uniform rows of `strides`, with `batchDim` as the batch; null if not uniform. */
function collapse(shape: Shape, strides: readonly number[], rowDims: readonly number[], batchDim: number | null): RowLayout | null {
  let rows = 1;
  for (let i = 0; i < rowDims.length; i++) {
    const d = rowDims[i]!;
    rows *= shape[d]!;
    const inner = rowDims[i + 1];
    if (inner !== undefined && strides[d] !== strides[inner]! * shape[inner]!) return null;
  }
  const innermost = rowDims[rowDims.length - 1];
  // A stride-0 (expanded) row dim repeats rows: kernels need distinct rows.
  if (innermost !== undefined && strides[innermost] === 0) return null;
  return {
    batch: batchDim === null ? 1 : shape[batchDim]!,
    batchStride: batchDim === null ? 0 : strides[batchDim]!,
    rows,
    rowStride: innermost === undefined ? undefined : strides[innermost]!,
  };
}

/** Strides of a tensor of `shape` laid out contiguously with its leading dims in `order` (outer first) and rows of `cols`. */
export function stridesInOrder(shape: Shape, order: readonly number[], cols: number): number[] {
  const nd = shape.length;
  const strides = new Array<number>(nd).fill(0);
  if (nd === 0) return strides;
  strides[nd - 1] = 1;
  let run = cols;
  // Size-1 dims are absent from `order`: give them the stride of a contiguous layout around them.
  const placed = new Set(order);
  const all = [...order, ...Array.from({ length: nd - 1 }, (_, d) => d).filter((d) => !placed.has(d))];
  for (let i = all.length - 1; i >= 0; i--) {
    const d = all[i]!;
    strides[d] = run;
    run *= shape[d]!;
  }
  return strides;
}

/**
 * Whether a tensor's elements fill exactly `size` consecutive slots in some
 * order of its dims (a permutation of a contiguous layout, no gaps, no
 * repeats): element-wise ops can then run over its data as one flat array.
 */
export function isDense(shape: Shape, strides: readonly number[]): boolean {
  const dims = shape.map((_, d) => d).filter((d) => shape[d] !== 1);
  dims.sort((a, b) => strides[b]! - strides[a]! || a - b);
  let expect = 1;
  for (let i = dims.length - 1; i >= 0; i--) {
    const d = dims[i]!;
    if (strides[d] !== expect) return false;
    expect *= shape[d]!;
  }
  return true;
}

/**
 * `t` seen as [...leading dims, cols] with its last `trailing` dims flattened
 * into one contiguous row of `cols` elements, or null when those dims are not
 * contiguous among themselves (a transposed pair, a column slice).
 */
export function flattenTrailing<T extends { shape: Shape; strides: readonly number[] }>(
  t: T, trailing: number,
): { shape: number[]; strides: number[] } | null {
  const nd = t.shape.length;
  const lead = nd - trailing;
  let expect = 1;
  for (let d = nd - 1; d >= lead; d--) {
    if (t.shape[d] !== 1 && t.strides[d] !== expect) return null;
    expect *= t.shape[d]!;
  }
  return { shape: [...t.shape.slice(0, lead), expect], strides: [...t.strides.slice(0, lead), 1] };
}
