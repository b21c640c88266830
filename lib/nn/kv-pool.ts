/**
 * The key/value memory of continuous batching: one preallocated pool of
 * positions shared by every sequence being decoded, each sequence owning a
 * contiguous range of rows (its position 0 at some `start`). Unlike
 * {@link KVCache} (one buffer per batch of sequences that advance together,
 * growing by doubling), the pool never grows: its size is fixed at
 * construction, so its bytes are a hard cap, and its pages are touched once
 * there so later requests reuse memory instead of faulting in fresh pages.
 *
 * Layout: `data` is [layers, positions, 2·kvDim]; a row holds one position's
 * key then its value, as KVCache rows do, so one GEMM output row per token
 * is scattered into place (`ops.indexCopy`) and pooled attention reads keys
 * and values through strides (`ops.pooledAttention`). Which rows belong to
 * whom is the caller's bookkeeping (the serving engine's slot allocator).
 */
import { checkInt } from '../errors';
import { Tensor } from '../tensor';
import { boolOption, checkOptions } from './options';

/** Options of {@link KVPool}. */
export interface KVPoolOptions {
  /** Decoder layers (one K/V row per layer and position). */
  layers: number;
  /** Features of a key (and of a value): key/value heads × head size. */
  kvDim: number;
  /** Positions the pool holds, summed over every sequence it will hold at once. */
  positions: number;
  /**
   * Write every page once at construction (default true), so that no
   * request later pays for first-touch page faults (~11 µs per 4 KiB page
   * on the target VMs).
   */
  prefault?: boolean;
}

/** Most elements one pool may hold (the native ops address at most 2^31 − 1 elements of one array). */
const MAX_ELEMENTS = 2 ** 31 - 1;

/** A fixed pool of K/V rows for continuous batching (see the module comment). */
export class KVPool {
  readonly layers: number;
  readonly kvDim: number;
  readonly positions: number;
  /** [layers, positions, 2·kvDim]. Its contents are only final after pending async work has run. */
  readonly data: Float32Array;
  readonly #views: Tensor<'float32'>[];

  /** Bytes one position takes over all layers (keys and values, float32). */
  static bytesPerPosition(layers: number, kvDim: number): number {
    return layers * 2 * kvDim * 4;
  }

  /**
   * @throws TypeError for a non-object or unknown option; RangeError naming the option for a size that is not a
   * positive integer, or a pool past 2^31 − 1 elements.
   */
  constructor(options: KVPoolOptions) {
    const fn = 'KVPool';
    checkOptions(fn, options, ['layers', 'kvDim', 'positions', 'prefault']);
    this.layers = checkInt(fn, 'layers', options.layers, 0);
    this.kvDim = checkInt(fn, 'kvDim', options.kvDim, 1);
    this.positions = checkInt(fn, 'positions', options.positions, 1);
    const prefault = boolOption(fn, 'prefault', options.prefault, true);
    const row = 2 * this.kvDim;
    const total = this.layers * this.positions * row;
    if (total > MAX_ELEMENTS) {
      throw new RangeError(`${fn}: option 'positions' (${this.positions}) makes a pool of ${total} elements over ${this.layers} layers, expected at most ${MAX_ELEMENTS} (${KVPool.bytesPerPosition(this.layers, this.kvDim)} bytes per position)`);
    }
    this.data = new Float32Array(total);
    // A fresh allocation's pages are only mapped when first written: write them now, once.
    if (prefault) this.data.fill(0);
    this.#views = Array.from({ length: this.layers }, (_, l) =>
      new Tensor(this.data.subarray(l * this.positions * row, (l + 1) * this.positions * row), [this.positions, row], 'float32'));
  }

  /** Bytes the pool holds (its hard cap). */
  get bytes(): number {
    return this.data.byteLength;
  }

  /** Layer `i`'s rows, a [positions, 2·kvDim] view (keys in the first kvDim columns, values after). */
  layer(i: number): Tensor<'float32'> {
    checkInt('KVPool.layer', 'i', i, 0, this.layers - 1);
    return this.#views[i]!;
  }
}
