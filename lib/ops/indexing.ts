/**
 * Joining, selecting and masking: cat (PyTorch's torch.cat), indexCopy (Tensor.index_copy_), argmax, topk,
 * maskedFill.
 *
 * cat of float32 tensors runs on the backend (`copy`, strided on both sides), so inside runAsync it is recorded in
 * order with the kernels that produce its inputs. argmax, topk and maskedFill read element values in JS (they are
 * decoding-side helpers: a logits row to a token id, a mask for a prompt), and therefore refuse to run while a
 * command list is recording, where those values would not be computed yet.
 */
import { recordingList } from '../backend/recording';
import { resolveBackend } from '../backend/registry';
import { allocate, allocateUninitialized, type DType } from '../dtype';
import { argRangeErrorRaw, argTypeError, checkInt, formatShape, normalizeDim, shapeError } from '../errors';
import type { OpOptions } from '../op-options';
import { Tensor } from '../tensor';
import { broadcastStrides, checkFloat, checkOptions, checkOutForGrad, checkTensor, overlaps } from './checks';
import type { F32 } from './checks';
import { flattenTrailing } from './rows';
import { needsGrad, recordOp } from '../autograd/graph';

/** Dims the backend copy takes at once. */
const MAX_COPY_DIMS = 8;

function refuseRecording(fn: string): void {
  if (recordingList()) {
    throw new Error(`${fn}: reads element values in JS, which cannot run inside runAsync()/forwardAsync() ` +
      '(the values are not computed yet while a command list is recording); call it on the awaited result');
  }
}

/** Options of {@link cat}. */
export interface CatOptions<D extends DType = DType> extends OpOptions {
  /** Write the result here (the result's dtype and shape; any strides, e.g. a slice of a cache). */
  out?: Tensor<D>;
}

/** Copies `src` (any strides) into `dst` (any strides, same shape) in JS, for int32/bool. */
function copyJs(src: Tensor, dst: Tensor): void {
  const nd = src.ndim;
  const total = src.size;
  const idx = new Array<number>(nd).fill(0);
  let os = 0;
  let od = 0;
  const s = src.data;
  const d = dst.data;
  for (let i = 0; i < total; i++) {
    d[od] = s[os]!;
    for (let k = nd - 1; k >= 0; k--) {
      os += src.strides[k]!;
      od += dst.strides[k]!;
      if (++idx[k]! < src.shape[k]!) break;
      os -= src.strides[k]! * src.shape[k]!;
      od -= dst.strides[k]! * src.shape[k]!;
      idx[k] = 0;
    }
  }
}

/**
 * PyTorch's `torch.cat(tensors, dim)`: joins tensors of one dtype whose shapes agree except in `dim` (1-D empty
 * tensors are skipped, as PyTorch does). Inputs may be views. float32 copies run on the backend (recorded in order
 * inside runAsync); int32/bool copies run in JS (refused while recording).
 * @throws TypeError for non-tensors or mixed dtypes, RangeError for mismatched shapes (naming `tensors[i]`).
 */
export function cat<D extends DType>(tensors: readonly Tensor<D>[], dim = 0, opts?: CatOptions<D>): Tensor<D> {
  const fn = 'cat';
  if (!Array.isArray(tensors)) throw argTypeError(fn, 'tensors', 'be an array of Tensors', tensors);
  if (tensors.length === 0) throw argRangeErrorRaw(fn, 'tensors', 'be a non-empty array', '[]');
  checkOptions(fn, opts);
  tensors.forEach((t, i) => checkTensor(fn, `tensors[${i}]`, t));
  const dtype = tensors[0]!.dtype;
  tensors.forEach((t, i) => {
    if (t.dtype !== dtype) throw argTypeError(fn, `tensors[${i}]`, `have dtype '${dtype}' (the dtype of tensors[0])`, t);
  });
  // PyTorch's legacy rule: a 1-D tensor of size 0 is skipped whatever the others' shapes.
  const parts: [Tensor<D>, number][] = tensors.map((t, i): [Tensor<D>, number] => [t, i]).filter(([t]) => !(t.ndim === 1 && t.size === 0));
  if (parts.length === 0) return new Tensor(allocate(dtype, 0), [0], dtype) as Tensor<D>;
  const ref: Tensor<D> = parts[0]![0];
  if (ref.ndim === 0) throw argRangeErrorRaw(fn, `tensors[${parts[0]![1]}]`, 'have at least one dim (zero-dim tensors cannot be concatenated)', '[]');
  const d = normalizeDim(fn, 'dim', dim, ref.ndim);
  let total = 0;
  for (const [t, i] of parts) {
    if (t.ndim !== ref.ndim || t.shape.some((s: number, k: number) => k !== d && s !== ref.shape[k])) {
      throw argRangeErrorRaw(fn, `tensors[${i}]`, `have the shape of tensors[${parts[0]![1]}] ${formatShape(ref.shape)} except in dim ${d}`,
        formatShape(t.shape));
    }
    total += t.shape[d]!;
  }
  const shape: number[] = ref.shape.map((s: number, k: number) => (k === d ? total : s));
  if (ref.ndim > MAX_COPY_DIMS) throw argRangeErrorRaw(fn, 'tensors', `have at most ${MAX_COPY_DIMS} dims`, formatShape(ref.shape));
  let out: Tensor<D>;
  if (opts?.out !== undefined) {
    const o = checkTensor(fn, 'out', opts.out);
    if (o.dtype !== dtype) throw argTypeError(fn, 'out', `have dtype '${dtype}'`, o);
    if (o.ndim !== shape.length || o.shape.some((s, k) => s !== shape[k])) throw shapeError(fn, 'out', formatShape(shape), o.shape);
    for (const [t, i] of parts) {
      if (t.size > 0 && o.size > 0 && overlaps(o.data, t.data)) {
        throw argRangeErrorRaw(fn, 'out', `not overlap input 'tensors[${i}]'`, 'a tensor sharing its memory');
      }
    }
    checkOutForGrad(fn, 'out', o);
    o._bumpVersion();
    out = o as Tensor<D>;
  } else {
    out = new Tensor(allocateUninitialized(dtype, shape.reduce((p: number, s: number) => p * s, 1)), shape, dtype) as Tensor<D>;
  }
  if (dtype === 'float32' && needsGrad(...parts.map(([t]) => t))) {
    // Each input's gradient is its slice of the output's: a view, no copy.
    const sizes = parts.map(([t]) => t.shape[d]!);
    const skipped = tensors.map((t) => t.ndim === 1 && t.size === 0);
    recordOp('CatBackward', tensors, [out], ([g]) => {
      let off = 0;
      let k = 0;
      return tensors.map((_, i) => {
        if (skipped[i]) return null;
        const n = sizes[k++]!;
        const slice = (g as F32).narrow(d, off, n);
        off += n;
        return slice;
      });
    });
  }
  if (out.size === 0) return out;
  if (dtype !== 'float32') refuseRecording(fn);
  const backend = dtype === 'float32' ? resolveBackend(opts?.backend) : null;
  let off = 0;
  for (const [t] of parts) {
    const n = t.shape[d]!;
    if (t.size > 0) {
      const region = out.narrow(d, off, n);
      if (backend) {
        backend.copy({ x: t.data as Float32Array, xStrides: t.strides, y: region.data as Float32Array, yStrides: region.strides, shape: t.shape });
      } else {
        copyJs(t, region);
      }
    }
    off += n;
  }
  return out;
}

/** Options of {@link argmax}. */
export interface ArgmaxOptions {
  /** Keep the reduced dim with size 1 (default false). */
  keepdim?: boolean;
}

/** True when a ranks above b (PyTorch's max/topk: NaN above everything). */
function above(a: number, b: number): boolean {
  return (a !== a && b === b) || a > b;
}

/** The slices of x along dim: calls `visit(base, stride, outIndex)` for each, in output order. */
function forEachSlice(x: Tensor, d: number, visit: (base: number, stride: number, o: number) => void): void {
  const outer = x.shape.filter((_, k) => k !== d);
  const outerStrides = x.strides.filter((_, k) => k !== d);
  const count = outer.reduce((p, s) => p * s, 1);
  const idx = new Array<number>(outer.length).fill(0);
  let base = 0;
  for (let o = 0; o < count; o++) {
    visit(base, x.strides[d]!, o);
    for (let k = outer.length - 1; k >= 0; k--) {
      base += outerStrides[k]!;
      if (++idx[k]! < outer[k]!) break;
      base -= outerStrides[k]! * outer[k]!;
      idx[k] = 0;
    }
  }
}

/**
 * PyTorch's `self.index_copy_(dim, index, source)` along dim 0, in place: row `index[i]` of `self` becomes row `i`
 * of `source`; returns `self`. float32 `self` [N, ...rest] and `source` [n, ...rest]; `self` may be any view whose
 * trailing dims are contiguous (rows any stride apart, e.g. one layer of a KV pool), `source` any view (copied if
 * its trailing dims are not contiguous). `index` int32 [n] (a Tensor or an Int32Array) of distinct rows in [0, N).
 * Runs on the backend, so inside runAsync it is recorded in order with the kernels that produce `source`.
 * @throws TypeError for wrong dtypes, RangeError for shapes, a dim other than 0, or bad indices (naming the position).
 */
export function indexCopy(self: F32, dim: number, index: Tensor<'int32'> | Int32Array, source: F32, opts?: OpOptions): F32 {
  const fn = 'indexCopy';
  checkFloat(fn, 'self', self);
  checkFloat(fn, 'source', source);
  checkOptions(fn, opts);
  if (self.ndim === 0) throw argRangeErrorRaw(fn, 'self', 'have at least one dim', '[]');
  const d = normalizeDim(fn, 'dim', dim, self.ndim);
  if (d !== 0) throw argRangeErrorRaw(fn, 'dim', 'be 0 (only rows are copied)', String(dim));
  let idx: Int32Array;
  if (index instanceof Int32Array) idx = index;
  else if (index instanceof Tensor && index.dtype === 'int32' && index.ndim === 1) idx = index.contiguous().data;
  else throw argTypeError(fn, 'index', 'be a 1-D int32 Tensor or an Int32Array', index);
  const n = idx.length;
  if (source.ndim !== self.ndim || source.shape[0] !== n || source.shape.some((s, k) => k > 0 && s !== self.shape[k])) {
    throw argRangeErrorRaw(fn, 'source', `have shape [${n}, ${self.shape.slice(1).join(', ')}] (index's length, then self's trailing dims)`, formatShape(source.shape));
  }
  const rowsY = self.shape[0]!;
  const seen = new Set<number>();
  for (let i = 0; i < n; i++) {
    const r = idx[i]!;
    if (r < 0 || r >= rowsY) throw argRangeErrorRaw(fn, 'index', `hold rows in [0, ${rowsY})`, `${r} at position ${i}`);
    if (seen.has(r)) throw argRangeErrorRaw(fn, 'index', 'hold distinct rows', `${r} twice`);
    seen.add(r);
  }
  const yRows = flattenTrailing(self, self.ndim - 1);
  if (!yRows) throw argRangeErrorRaw(fn, 'self', 'have contiguous trailing dims (it is written in place)', `strides ${formatShape(self.strides)}`);
  let src = source;
  let xRows = flattenTrailing(src, src.ndim - 1);
  if (!xRows) {
    src = source.contiguous(opts?.backend);
    xRows = flattenTrailing(src, src.ndim - 1)!;
  }
  const cols = yRows.shape[1]!;
  if (n === 0 || cols === 0) return self;
  if (overlaps(self.data, src.data)) throw argRangeErrorRaw(fn, 'source', 'not overlap self', 'an overlapping view');
  resolveBackend(opts?.backend).indexCopy({
    x: src.data, ldx: n > 1 ? xRows.strides[0]! : cols, y: self.data, ldy: rowsY > 1 ? yRows.strides[0]! : cols,
    yRows: rowsY, rows: n, cols, index: idx,
  });
  return self;
}

/**
 * PyTorch's `torch.argmax(x, dim, keepdim)` → int32: the index of the first maximum along `dim` (NaN counts as the
 * maximum, as in PyTorch); without `dim`, the flat index over all elements (a 0-dim result). Reads values in JS:
 * refused inside runAsync.
 */
export function argmax(x: Tensor<'float32'> | Tensor<'int32'>, dim?: number | null, opts?: ArgmaxOptions): Tensor<'int32'> {
  const fn = 'argmax';
  const t = checkTensor(fn, 'x', x);
  if (t.dtype === 'bool') throw argTypeError(fn, 'x', 'be a float32 or int32 Tensor', t);
  checkOptions(fn, opts);
  const keepdim = opts?.keepdim ?? false;
  if (typeof keepdim !== 'boolean') throw argTypeError(fn, 'keepdim', 'be a boolean', keepdim);
  refuseRecording(fn);
  if (dim === undefined || dim === null) {
    if (t.size === 0) throw argRangeErrorRaw(fn, 'x', 'be non-empty when dim is not given', formatShape(t.shape));
    const flat = t.contiguous().data;
    let best = 0;
    for (let i = 1; i < flat.length; i++) if (above(flat[i]!, flat[best]!)) best = i;
    const shape = keepdim ? t.shape.map(() => 1) : [];
    return new Tensor(Int32Array.of(best), shape, 'int32');
  }
  const d = normalizeDim(fn, 'dim', dim, t.ndim);
  if (t.ndim === 0) return new Tensor(Int32Array.of(0), [], 'int32');
  const n = t.shape[d]!;
  const outShape = keepdim ? t.shape.map((s, k) => (k === d ? 1 : s)) : t.shape.filter((_, k) => k !== d);
  const size = outShape.reduce((p, s) => p * s, 1);
  if (n === 0 && size > 0) throw argRangeErrorRaw(fn, 'x', `have a non-empty dim ${d} to reduce`, formatShape(t.shape));
  const out = new Int32Array(size);
  const data = t.data;
  forEachSlice(t, d, (base, stride, o) => {
    let best = 0;
    let bv = data[base]!;
    for (let j = 1; j < n; j++) {
      const v = data[base + j * stride]!;
      if (above(v, bv)) {
        best = j;
        bv = v;
      }
    }
    out[o] = best;
  });
  return new Tensor(out, outShape, 'int32');
}

/** Options of {@link topk}. */
export interface TopkOptions {
  /** The k largest (default true) or smallest. */
  largest?: boolean;
  /** Results in order, best first (default true; the order is the same either way here). */
  sorted?: boolean;
}

/**
 * PyTorch's `torch.topk(x, k, dim = -1)`: the k largest (or smallest) values along `dim` and their int32 indices,
 * best first; NaN ranks above every number (as in PyTorch), ties keep the lower index first. Reads values in JS:
 * refused inside runAsync.
 */
export function topk(x: F32, k: number, dim = -1, opts?: TopkOptions): { values: F32; indices: Tensor<'int32'> } {
  const fn = 'topk';
  checkFloat(fn, 'x', x);
  checkOptions(fn, opts);
  const largest = opts?.largest ?? true;
  if (typeof largest !== 'boolean') throw argTypeError(fn, 'largest', 'be a boolean', largest);
  if (opts?.sorted !== undefined && typeof opts.sorted !== 'boolean') throw argTypeError(fn, 'sorted', 'be a boolean', opts.sorted);
  const d = normalizeDim(fn, 'dim', dim, x.ndim);
  const n = x.ndim === 0 ? 1 : x.shape[d]!;
  checkInt(fn, 'k', k, 0, n);
  refuseRecording(fn);
  if (x.ndim === 0) {
    return { values: new Tensor(Float32Array.from(x.data.subarray(0, k)), [], 'float32'), indices: new Tensor(new Int32Array(k), [], 'int32') };
  }
  const outShape = x.shape.map((s, j) => (j === d ? k : s));
  const size = outShape.reduce((p, s) => p * s, 1);
  const values = new Float32Array(size);
  const indices = new Int32Array(size);
  // Output slices are laid out [..outer, k, ..inner] like the input; element j of slice o sits at oBase + j·oStride.
  const vOut = new Tensor(values, outShape, 'float32');
  const oStrides = vOut.strides.filter((_, j) => j !== d);
  const oOuter = outShape.filter((_, j) => j !== d);
  const data = x.data;
  const order = new Array<number>(n);
  const vals = new Float64Array(n);
  forEachSlice(x, d, (base, stride, o) => {
    let rem = o;
    let oBase = 0;
    for (let j = oOuter.length - 1; j >= 0; j--) {
      oBase += (rem % oOuter[j]!) * oStrides[j]!;
      rem = Math.floor(rem / oOuter[j]!);
    }
    for (let j = 0; j < n; j++) {
      order[j] = j;
      vals[j] = data[base + j * stride]!;
    }
    // Smallest first ranks NaN last (it is the largest value), as PyTorch.
    const before = (a: number, b: number): boolean => (largest ? above(vals[a]!, vals[b]!) : above(vals[b]!, vals[a]!));
    order.sort((a, b) => (before(a, b) ? -1 : before(b, a) ? 1 : a - b));
    const kStride = vOut.strides[d]!;
    for (let j = 0; j < k; j++) {
      values[oBase + j * kStride] = vals[order[j]!]!;
      indices[oBase + j * kStride] = order[j]!;
    }
  });
  return { values: vOut, indices: new Tensor(indices, outShape, 'int32') };
}

/**
 * PyTorch's `x.masked_fill(mask, value)`: x where `mask` is false, `value` where it is true; `mask` a bool tensor
 * broadcastable to x's shape. Returns a new contiguous tensor of x's dtype. Reads values in JS: refused inside
 * runAsync (an attention mask belongs in the attention call's `attnMask` there).
 */
export function maskedFill<D extends 'float32' | 'int32'>(x: Tensor<D>, mask: Tensor<'bool'>, value: number): Tensor<D> {
  const fn = 'maskedFill';
  const t = checkTensor(fn, 'x', x);
  if (t.dtype === 'bool') throw argTypeError(fn, 'x', 'be a float32 or int32 Tensor', t);
  const m = checkTensor(fn, 'mask', mask);
  if (m.dtype !== 'bool') throw argTypeError(fn, 'mask', 'be a bool Tensor', m);
  if (typeof value !== 'number') throw argTypeError(fn, 'value', 'be a number', value);
  if (t.dtype === 'int32' && !(Number.isInteger(value) && value >= -(2 ** 31) && value < 2 ** 31)) {
    throw argRangeErrorRaw(fn, 'value', 'be an integer in int32 range for an int32 x', String(value));
  }
  if (m.ndim > t.ndim || m.shape.some((s, j) => s !== 1 && s !== t.shape[t.ndim - m.ndim + j])) {
    throw argRangeErrorRaw(fn, 'mask', `be broadcastable to x's shape ${formatShape(t.shape)}`, formatShape(m.shape));
  }
  refuseRecording(fn);
  const out = t.contiguous();
  const res = (out === t ? out.clone() : out) as Tensor<D>;
  const ms = broadcastStrides(m.shape, t.shape, m.strides);
  const nd = t.ndim;
  const idx = new Array<number>(nd).fill(0);
  let om = 0;
  const md = m.data;
  const yd = res.data;
  for (let i = 0; i < res.size; i++) {
    if (md[om]) yd[i] = value;
    for (let k = nd - 1; k >= 0; k--) {
      om += ms[k]!;
      if (++idx[k]! < t.shape[k]!) break;
      om -= ms[k]! * t.shape[k]!;
      idx[k] = 0;
    }
  }
  return res;
}
