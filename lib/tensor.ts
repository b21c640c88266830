/**
 * The `Tensor` class and its factories.
 *
 * A tensor is a contiguous, row-major typed array plus a shape. There are no
 * views with strides: `reshape` shares the buffer, everything else that
 * changes layout (transpose, head split) copies. That keeps every backend
 * call a flat-array call with sizes, which is what the native kernels want.
 */
import { allocate, allocateUninitialized, DTYPES, dtypeOfArray, isDType } from './dtype';
import type { DType, DTypeMap, ElementOf } from './dtype';
import {
  argRangeError,
  argRangeErrorRaw,
  argTypeError,
  checkInt,
  checkNumber,
  checkShape,
  describeValue,
  formatShape,
} from './errors';

export type { DType, DTypeMap, ElementOf } from './dtype';

/** A tensor shape: one non-negative integer per dimension (`[]` is a scalar). */
export type Shape = readonly number[];

/** Nested JS arrays of `T`, as produced by {@link Tensor.toArray} (a bare `T` for 0-D tensors). */
export type NestedArray<T> = T | NestedArray<T>[];

/** Nested (readonly) arrays of numbers accepted by {@link tensor}. */
export type NestedNumbers = number | readonly NestedNumbers[];

/** Nested (readonly) arrays of booleans accepted by {@link tensor}. */
export type NestedBooleans = boolean | readonly NestedBooleans[];

/** Anything {@link tensor} can build a tensor from. */
export type TensorData =
  | NestedNumbers
  | NestedBooleans
  | Float32Array
  | Int32Array
  | Uint8Array
  | Float64Array
  | Int8Array
  | Int16Array
  | Uint16Array
  | Uint32Array
  | Uint8ClampedArray;

/** A shape argument: an array of dims, or a single number for a 1-D shape. */
export type ShapeLike = number | Shape;

/** Row-major (C order) strides, in elements, of a contiguous tensor of `shape`. */
export function contiguousStrides(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i]!;
  }
  return strides;
}

function toShape(fn: string, arg: string, shape: unknown): number[] {
  const arr = typeof shape === 'number' ? [shape] : shape;
  checkShape(fn, arg, arr);
  return (arr as number[]).slice();
}

function checkDType(fn: string, dtype: unknown): DType {
  if (!isDType(dtype)) throw argTypeError(fn, 'dtype', `be one of ${DTYPES.map((d) => `'${d}'`).join(', ')}`, dtype);
  return dtype;
}

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/**
 * An n-dimensional array of `float32`, `int32` or `bool` elements, stored
 * contiguously in row-major order in {@link Tensor.data}, whose typed-array
 * type follows the dtype (`Tensor<'float32'>` has `data: Float32Array`).
 *
 * Tensors are not immutable — `data` may be written (ops with `out` do) — but
 * `shape` is frozen: reshaping returns a new tensor sharing the buffer.
 */
export class Tensor<D extends DType = DType> {
  /** Dimensions, outermost first. Frozen. */
  readonly shape: Shape;
  /** Element type. */
  readonly dtype: D;
  /** The elements, contiguous row-major; `data.length === size`. */
  readonly data: DTypeMap[D];
  /** Number of elements (product of `shape`; 1 for a scalar). */
  readonly size: number;

  /**
   * Wraps `data` (no copy). Prefer the {@link tensor} factory, which also
   * accepts nested arrays.
   * @throws TypeError if `data` is not the typed array for `dtype`.
   * @throws RangeError if the shape is invalid or does not match `data.length`.
   */
  constructor(data: DTypeMap[D], shape: Shape, dtype: D) {
    checkDType('Tensor', dtype);
    if (dtypeOfArray(data) !== dtype) {
      throw argTypeError('Tensor', 'data', `be a ${allocate(dtype, 0).constructor.name} for dtype '${dtype}'`, data);
    }
    const size = checkShape('Tensor', 'shape', shape);
    if (data.length !== size) {
      throw argRangeErrorRaw(
        'Tensor',
        'data',
        `have ${size} elements to match shape ${formatShape(shape)}`,
        `${data.length} elements`,
      );
    }
    this.shape = Object.freeze(shape.slice());
    this.dtype = dtype;
    this.data = data;
    this.size = size;
  }

  /** Number of dimensions. */
  get ndim(): number {
    return this.shape.length;
  }

  /** Row-major strides in elements (fresh array each call). */
  get strides(): number[] {
    return contiguousStrides(this.shape);
  }

  /**
   * Same data, new shape. One entry may be -1 and is inferred. Shares the
   * buffer (writes through either tensor are visible in both).
   * @throws RangeError if the element count differs or the shape is invalid.
   */
  reshape(shape: Shape): Tensor<D>;
  reshape(...shape: number[]): Tensor<D>;
  reshape(...args: unknown[]): Tensor<D> {
    const raw: unknown = args.length === 1 && Array.isArray(args[0]) ? args[0] : args;
    if (!Array.isArray(raw)) throw argTypeError('reshape', 'shape', 'be an array of integers', raw);
    const shape = (raw as unknown[]).slice();
    let infer = -1;
    let known = 1;
    for (let i = 0; i < shape.length; i++) {
      const d = shape[i];
      if (d === -1) {
        if (infer >= 0) throw argRangeError('reshape', 'shape', 'contain at most one -1', shape);
        infer = i;
      } else {
        if (typeof d !== 'number') throw argTypeError('reshape', 'shape', 'be an array of integers', shape);
        if (!Number.isInteger(d) || d < 0) {
          throw argRangeError('reshape', 'shape', 'have non-negative integer entries (or one -1)', shape);
        }
        known *= d;
      }
    }
    if (infer >= 0) {
      // -1 with other dims multiplying to 0 is ambiguous (PyTorch rejects it too).
      if (known === 0 || this.size % known !== 0) {
        throw argRangeErrorRaw(
          'reshape',
          'shape',
          `be compatible with ${this.size} elements`,
          `${formatShape(shape as number[])} for a tensor of shape ${formatShape(this.shape)}`,
        );
      }
      shape[infer] = this.size / known;
    } else if (known !== this.size) {
      throw argRangeErrorRaw(
        'reshape',
        'shape',
        `have ${this.size} elements like the input`,
        `${formatShape(shape as number[])} (${known} elements) for a tensor of shape ${formatShape(this.shape)}`,
      );
    }
    return new Tensor(this.data, shape as number[], this.dtype);
  }

  /** Flat offset of a (possibly negative, PyTorch-style) multi-index; validates. */
  private offsetOf(fn: string, idx: readonly number[]): number {
    if (idx.length !== this.shape.length) {
      throw argRangeErrorRaw(fn, 'index', `have ${this.shape.length} entries for shape ${formatShape(this.shape)}`,
        describeValue(idx.slice()));
    }
    let off = 0;
    for (let i = 0; i < idx.length; i++) {
      const n = this.shape[i]!;
      let v = checkInt(fn, `index[${i}]`, idx[i]);
      if (v < -n || v >= n) throw argRangeError(fn, `index[${i}]`, `be in [${-n}, ${n - 1}] for dim ${i}`, v);
      if (v < 0) v += n;
      off = off * n + v;
    }
    return off;
  }

  /** Element at a multi-index (negative indices count from the end). Bool tensors give booleans. */
  get(...index: number[]): ElementOf<D> {
    const v = this.data[this.offsetOf('get', index)]!;
    return (this.dtype === 'bool' ? v !== 0 : v) as ElementOf<D>;
  }

  /** Writes one element at a multi-index (int32 values are truncated, like a typed-array store). */
  set(index: readonly number[], value: ElementOf<D> | number): void {
    this.data[this.offsetOf('set', index)] = Number(value);
  }

  /** The single element of a tensor with size 1. */
  item(): ElementOf<D> {
    if (this.size !== 1) throw argRangeErrorRaw('item', 'this', 'have exactly one element', formatShape(this.shape));
    const v = this.data[0]!;
    return (this.dtype === 'bool' ? v !== 0 : v) as ElementOf<D>;
  }

  /** Nested JS arrays mirroring the shape (a bare value for 0-D); bool elements become booleans. */
  toArray(): NestedArray<ElementOf<D>> {
    const data = this.data;
    const shape = this.shape;
    const asBool = this.dtype === 'bool';
    const build = (dim: number, offset: number, stride: number): NestedArray<ElementOf<D>> => {
      if (dim === shape.length) {
        const v = data[offset]!;
        return (asBool ? v !== 0 : v) as ElementOf<D>;
      }
      const n = shape[dim]!;
      const inner = n === 0 ? 0 : stride / n;
      const out = new Array<NestedArray<ElementOf<D>>>(n);
      for (let i = 0; i < n; i++) out[i] = build(dim + 1, offset + i * inner, inner);
      return out;
    };
    return build(0, 0, this.size);
  }

  /** A deep copy (new buffer, same shape and dtype). */
  clone(): Tensor<D> {
    return new Tensor(this.data.slice() as DTypeMap[D], this.shape, this.dtype);
  }

  /** A copy converted to `dtype` (float → int32 truncates toward zero; → bool is `x !== 0`). */
  astype<E extends DType>(dtype: E): Tensor<E> {
    checkDType('astype', dtype);
    if ((dtype as DType) === this.dtype) return this.clone() as unknown as Tensor<E>;
    const out = allocate(dtype, this.size);
    const src = this.data;
    if (dtype === 'bool') {
      for (let i = 0; i < src.length; i++) out[i] = src[i] !== 0 ? 1 : 0;
    } else {
      out.set(src);
    }
    return new Tensor(out, this.shape, dtype);
  }

  /**
   * `Tensor(float32, [2, 3]) [[1, 2, 3], [4, 5, 6]]`; tensors over 1000
   * elements print only their first and last few values.
   */
  toString(): string {
    const head = `Tensor(${this.dtype}, ${formatShape(this.shape)})`;
    const fmt = (v: number): string => (this.dtype === 'bool' ? String(v !== 0) : formatNumber(v));
    if (this.size <= 1000) {
      const render = (x: NestedArray<ElementOf<D>>): string =>
        Array.isArray(x) ? `[${x.map(render).join(', ')}]` : fmt(Number(x));
      return `${head} ${render(this.toArray())}`;
    }
    const d = this.data;
    const first = Array.from(d.subarray(0, 3), fmt).join(', ');
    const last = Array.from(d.subarray(d.length - 3), fmt).join(', ');
    return `${head} data=[${first}, ..., ${last}]`;
  }

  /** Makes `console.log(t)` print {@link Tensor.toString} in Node. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}

function formatNumber(v: number): string {
  if (Number.isInteger(v)) return String(v);
  // 6 significant digits like PyTorch's default print, without trailing zeros.
  return String(Number(v.toPrecision(6)));
}

/** Writes `value` (already validated as a number or boolean) into slot `i` of a new dtype array. */
function storeChecked(fn: string, out: DTypeMap[DType], dtype: DType, i: number, value: number): void {
  if (dtype === 'int32') {
    if (!Number.isInteger(value) || value < INT32_MIN || value > INT32_MAX) {
      throw argRangeError(fn, 'data', `hold integers in int32 range for dtype 'int32' (element ${i})`, value);
    }
  } else if (dtype === 'bool') {
    value = value !== 0 ? 1 : 0;
  }
  out[i] = value;
}

/** Flattens nested arrays into `leaves`, inferring and checking the shape. */
function flattenNested(data: unknown, shape: number[], leaves: unknown[]): void {
  // Infer the shape from the first element at each depth, then require every sibling to agree.
  let probe: unknown = data;
  while (Array.isArray(probe)) {
    shape.push(probe.length);
    probe = probe[0];
  }
  const walk = (x: unknown, depth: number, path: string): void => {
    if (depth === shape.length) {
      if (Array.isArray(x)) {
        throw argRangeErrorRaw('tensor', 'data', `be a regular nested array (found an extra level at ${path})`,
          `shape ${formatShape(shape)} from the first elements`);
      }
      leaves.push(x);
      return;
    }
    if (!Array.isArray(x) || x.length !== shape[depth]) {
      throw argRangeErrorRaw(
        'tensor',
        'data',
        `be a regular nested array (length ${shape[depth]} at depth ${depth}, like the first element)`,
        `${Array.isArray(x) ? `length ${x.length}` : describeValue(x)} at ${path || 'top level'}`,
      );
    }
    for (let i = 0; i < x.length; i++) walk(x[i], depth + 1, `${path}[${i}]`);
  };
  walk(data, 0, '');
}

/**
 * Builds a tensor.
 *
 * - Typed arrays of a tensor dtype (`Float32Array`, `Int32Array`, `Uint8Array` for bool) are wrapped
 *   **without copying**; other typed arrays (e.g. `Float64Array`) are copied into `dtype` (default float32).
 * - Nested arrays have their shape inferred; flat arrays need `shape` (or become 1-D).
 *   A given `shape` must have as many elements as the data (it then acts as a reshape).
 * - Without `dtype`: all-boolean data is `bool`, any number makes it `float32`.
 *   `int32` requires integer values in range (RangeError otherwise); `bool` maps non-zero to true.
 *
 * @throws TypeError for unsupported data or dtype, or a typed array that cannot back `dtype` without a copy.
 * @throws RangeError for ragged arrays, bad shapes and shape/length mismatches.
 */
export function tensor(data: Float32Array, shape?: Shape | null, dtype?: 'float32'): Tensor<'float32'>;
export function tensor(data: Int32Array, shape?: Shape | null, dtype?: 'int32'): Tensor<'int32'>;
export function tensor(data: Uint8Array, shape?: Shape | null, dtype?: 'bool'): Tensor<'bool'>;
export function tensor(data: NestedBooleans, shape?: Shape | null): Tensor<'bool'>;
export function tensor(data: TensorData, shape?: Shape | null): Tensor<'float32'>;
export function tensor<D extends DType>(data: TensorData, shape: Shape | null | undefined, dtype: D): Tensor<D>;
export function tensor(data: TensorData, shape?: Shape | null, dtype?: DType): Tensor {
  if (dtype !== undefined) checkDType('tensor', dtype);
  if (shape !== undefined && shape !== null) checkShape('tensor', 'shape', shape);

  if (ArrayBuffer.isView(data)) {
    if (data instanceof DataView || typeof (data as { length?: unknown }).length !== 'number') {
      throw argTypeError('tensor', 'data', 'be a number typed array or nested arrays', data);
    }
    if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
      throw argTypeError('tensor', 'data', 'be a number typed array (bigint arrays are not supported)', data);
    }
    const arr = data as unknown as ArrayLike<number>;
    const own = dtypeOfArray(arr);
    const finalShape = shape ?? [arr.length];
    const size = checkShape('tensor', 'shape', finalShape);
    if (size !== arr.length) {
      throw argRangeErrorRaw('tensor', 'shape', `have ${arr.length} elements to match data`,
        `${formatShape(finalShape)} (${size} elements)`);
    }
    if (own !== undefined && (dtype === undefined || dtype === own)) {
      return new Tensor(arr as DTypeMap[DType], finalShape, own);
    }
    if (own !== undefined) {
      // Converting would silently copy and break the documented zero-copy aliasing.
      throw argTypeError('tensor', 'data', `be a ${allocate(dtype!, 0).constructor.name} for dtype '${dtype}' ` +
        `(typed arrays are wrapped without copying; convert with .astype('${dtype}'))`, data);
    }
    const target = dtype ?? 'float32';
    const out = allocate(target, arr.length);
    for (let i = 0; i < arr.length; i++) storeChecked('tensor', out, target, i, arr[i]!);
    return new Tensor(out, finalShape, target);
  }

  if (typeof data !== 'number' && typeof data !== 'boolean' && !Array.isArray(data)) {
    throw argTypeError('tensor', 'data', 'be a number, boolean, nested array or typed array', data);
  }
  const inferred: number[] = [];
  const leaves: unknown[] = [];
  flattenNested(data, inferred, leaves);
  let sawNumber = false;
  for (let i = 0; i < leaves.length; i++) {
    const v = leaves[i];
    if (typeof v === 'number') sawNumber = true;
    else if (typeof v !== 'boolean') {
      throw argTypeError('tensor', 'data', `contain only numbers or booleans (element ${i})`, v);
    }
  }
  const target: DType = dtype ?? (sawNumber || leaves.length === 0 ? 'float32' : 'bool');
  const finalShape = shape ?? inferred;
  const size = checkShape('tensor', 'shape', finalShape);
  if (size !== leaves.length) {
    throw argRangeErrorRaw('tensor', 'shape', `have ${leaves.length} elements to match data`,
      `${formatShape(finalShape)} (${size} elements)`);
  }
  const out = allocate(target, size);
  for (let i = 0; i < size; i++) storeChecked('tensor', out, target, i, Number(leaves[i]));
  return new Tensor(out, finalShape, target);
}

/**
 * A tensor meant as an output buffer that will be fully overwritten: its
 * contents are unspecified (large ones are not zero-filled, which saves a pass
 * over memory per op). Use {@link zeros} when the values matter.
 */
export function empty(shape: ShapeLike): Tensor<'float32'>;
export function empty<D extends DType>(shape: ShapeLike, dtype: D): Tensor<D>;
export function empty<D extends DType>(shape: ShapeLike, dtype?: D): Tensor<D> {
  const dt = (dtype === undefined ? 'float32' : checkDType('empty', dtype)) as D;
  const s = toShape('empty', 'shape', shape);
  return new Tensor(allocateUninitialized(dt, checkShape('empty', 'shape', s)), s, dt);
}

/** A tensor of zeros. */
// Overloads rather than a defaulted type parameter: with `<D = 'float32'>`, a contextual type such as
// `Tensor<'float32'> | Tensor<'bool'>` would infer D as the union and make `zeros([2])` unassignable.
export function zeros(shape: ShapeLike): Tensor<'float32'>;
export function zeros<D extends DType>(shape: ShapeLike, dtype: D): Tensor<D>;
export function zeros<D extends DType>(shape: ShapeLike, dtype?: D): Tensor<D> {
  const dt = (dtype === undefined ? 'float32' : checkDType('zeros', dtype)) as D;
  const s = toShape('zeros', 'shape', shape);
  return new Tensor(allocate(dt, checkShape('zeros', 'shape', s)), s, dt);
}

/** A tensor of ones (`true` for bool). */
export function ones(shape: ShapeLike): Tensor<'float32'>;
export function ones<D extends DType>(shape: ShapeLike, dtype: D): Tensor<D>;
export function ones<D extends DType>(shape: ShapeLike, dtype?: D): Tensor<D> {
  const t = zeros(shape, (dtype ?? 'float32') as D);
  t.data.fill(1);
  return t;
}

/**
 * A tensor filled with `value`. Without `dtype`: a boolean value gives `bool`,
 * a number gives `float32`.
 */
export function full(shape: ShapeLike, value: number): Tensor<'float32'>;
export function full(shape: ShapeLike, value: boolean): Tensor<'bool'>;
export function full<D extends DType>(shape: ShapeLike, value: number | boolean, dtype: D): Tensor<D>;
export function full<D extends DType>(shape: ShapeLike, value: number | boolean, dtype?: D): Tensor<D> {
  if (typeof value !== 'number' && typeof value !== 'boolean') {
    throw argTypeError('full', 'value', 'be a number or boolean', value);
  }
  const dt = (dtype ?? (typeof value === 'boolean' ? 'bool' : 'float32')) as D;
  checkDType('full', dt);
  const t = zeros(shape, dt);
  if (t.size > 0) {
    storeChecked('full', t.data, dt, 0, Number(value));
    t.data.fill(t.data[0]!);
  }
  return t;
}

/**
 * `[start, end)` in steps of `step` (PyTorch `arange`). With one argument it
 * is `[0, start)`. Values are `start + i·step` (no accumulated rounding).
 * @throws RangeError for `step` 0, non-finite bounds, or non-integer values with dtype int32.
 */
export function arange(start: number, end?: number, step?: number): Tensor<'float32'>;
export function arange<D extends DType>(
  start: number, end: number | undefined, step: number | undefined, dtype: D,
): Tensor<D>;
export function arange<D extends DType>(start: number, end?: number, step = 1, dtype?: D): Tensor<D> {
  checkNumber('arange', 'start', start);
  if (end === undefined) {
    end = start;
    start = 0;
  } else {
    checkNumber('arange', 'end', end);
  }
  checkNumber('arange', 'step', step);
  if (step === 0) throw argRangeError('arange', 'step', 'be non-zero', step);
  const dt = (dtype === undefined ? 'float32' : checkDType('arange', dtype)) as D;
  if (dt === 'bool') throw argTypeError('arange', 'dtype', "be 'float32' or 'int32'", dt);
  const n = Math.max(0, Math.ceil((end - start) / step));
  const t = zeros([n], dt);
  for (let i = 0; i < n; i++) storeChecked('arange', t.data, dt, i, start + i * step);
  return t;
}

// ---------------------------------------------------------------------------
// Random numbers

/**
 * A small, fast, seedable PRNG: xoshiro128** (Blackman & Vigna), seeded
 * through splitmix32 so that nearby seeds give unrelated streams. Not
 * cryptographic. Same seed → same sequence on every platform.
 */
export class Rng {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;
  /** Second value of the last Box–Muller pair, or NaN when none is pending. */
  private spare = NaN;

  /** @param seed any finite number (integers up to 2^53 are distinct seeds); omitted → random. */
  constructor(seed?: number) {
    if (seed === undefined) {
      seed = Math.floor(Math.random() * 2 ** 32) * 2 ** 21 + Math.floor(Math.random() * 2 ** 21);
    }
    checkNumber('Rng', 'seed', seed);
    const hi = Math.floor(seed / 2 ** 32) | 0;
    let x = seed >>> 0;
    const next = (): number => {
      // splitmix32
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    // s0 determines the low 32 bits and s2 then the high ones, so distinct integer seeds
    // (below 2^53) give distinct states.
    this.s0 = next();
    this.s1 = next();
    this.s2 = (next() ^ hi) >>> 0;
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // all-zero state is a fixed point
  }

  /** A uniformly distributed unsigned 32-bit integer. */
  nextUint32(): number {
    const s1 = this.s1;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) on a 2^-24 grid, so it stays below 1 after rounding to float32. */
  uniform(): number {
    return (this.nextUint32() >>> 8) * 2 ** -24;
  }

  /** Standard normal (Box–Muller; both values of each pair are used). */
  normal(): number {
    const spare = this.spare;
    if (spare === spare) {
      this.spare = NaN;
      return spare;
    }
    // u1 in (0, 1] so log(u1) is finite.
    const u1 = (this.nextUint32() + 1) * 2 ** -32;
    const u2 = this.nextUint32() * 2 ** -32;
    const r = Math.sqrt(-2 * Math.log(u1));
    const theta = 2 * Math.PI * u2;
    this.spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** Options of {@link rand} and {@link randn}. */
export interface RandomOptions {
  /** Seed for a fresh {@link Rng}; omitted (and no `generator`) → random seed. */
  seed?: number;
  /** Draw from this generator instead (advances it); takes precedence over `seed`. */
  generator?: Rng;
}

function pickRng(fn: string, opts: RandomOptions | undefined): Rng {
  if (opts?.generator !== undefined) {
    if (!(opts.generator instanceof Rng)) throw argTypeError(fn, 'generator', 'be an Rng', opts.generator);
    return opts.generator;
  }
  return new Rng(opts?.seed);
}

/** float32 samples from N(0, 1); deterministic for a given seed. */
export function randn(shape: ShapeLike, opts?: RandomOptions): Tensor<'float32'> {
  const t = zeros(shape, 'float32');
  const rng = pickRng('randn', opts);
  const d = t.data;
  for (let i = 0; i < d.length; i++) d[i] = rng.normal();
  return t;
}

/** float32 samples uniform in [low, high) (default [0, 1)); deterministic for a given seed. */
export function rand(shape: ShapeLike, opts?: RandomOptions & { low?: number; high?: number }): Tensor<'float32'> {
  const low = opts?.low === undefined ? 0 : checkNumber('rand', 'low', opts.low);
  const high = opts?.high === undefined ? 1 : checkNumber('rand', 'high', opts.high);
  if (!(high >= low)) throw argRangeError('rand', 'high', `be >= low (${low})`, high);
  const t = zeros(shape, 'float32');
  const rng = pickRng('rand', opts);
  const d = t.data;
  const span = high - low;
  for (let i = 0; i < d.length; i++) d[i] = low + span * rng.uniform();
  return t;
}

/** True when `value` is a {@link Tensor} (optionally of `dtype`). */
export function isTensor<D extends DType>(value: unknown, dtype?: D): value is Tensor<D> {
  return value instanceof Tensor && (dtype === undefined || value.dtype === dtype);
}
