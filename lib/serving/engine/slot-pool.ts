/**
 * Which rows of the KV pool belong to whom: each running sequence holds one
 * contiguous range of pool positions (its prompt plus its most new tokens,
 * reserved when it is admitted, so it never grows), taken first-fit from a
 * free list and given back (merged with free neighbours) when it leaves.
 * Pure bookkeeping: the memory itself is the model's KVPool.
 */
import { checkInt } from '../../errors';

/** A first-fit allocator of contiguous ranges in [0, capacity). */
export class SlotPool {
  readonly capacity: number;
  /** Free ranges [start, length], sorted by start, never adjacent (merged). */
  #free: [number, number][];
  /** Length of each taken range, by start. */
  #taken = new Map<number, number>();
  #used = 0;

  constructor(capacity: number) {
    this.capacity = checkInt('SlotPool', 'capacity', capacity, 1);
    this.#free = [[0, this.capacity]];
  }

  /** Positions taken. */
  get used(): number {
    return this.#used;
  }

  /** Ranges taken. */
  get count(): number {
    return this.#taken.size;
  }

  /** The longest range that could be taken now. */
  get largestFree(): number {
    let best = 0;
    for (const [, len] of this.#free) if (len > best) best = len;
    return best;
  }

  /** Takes `length` contiguous positions (>= 1); returns the start, or null when no free range is long enough. */
  allocate(length: number): number | null {
    checkInt('SlotPool.allocate', 'length', length, 1);
    for (let i = 0; i < this.#free.length; i++) {
      const [start, len] = this.#free[i]!;
      if (len < length) continue;
      if (len === length) this.#free.splice(i, 1);
      else this.#free[i] = [start + length, len - length];
      this.#taken.set(start, length);
      this.#used += length;
      return start;
    }
    return null;
  }

  /** Gives back the range that starts at `start`. */
  release(start: number): void {
    const length = this.#taken.get(start);
    if (length === undefined) throw new RangeError(`SlotPool.release: argument 'start' must be the start of a taken range, got ${start}`);
    this.#taken.delete(start);
    this.#used -= length;
    // Insert in order, merging with the free neighbours.
    let i = 0;
    while (i < this.#free.length && this.#free[i]![0] < start) i++;
    const prev = i > 0 ? this.#free[i - 1]! : null;
    const next = i < this.#free.length ? this.#free[i]! : null;
    const end = start + length;
    if (prev && prev[0] + prev[1] === start) {
      prev[1] += length;
      if (next && next[0] === end) {
        prev[1] += next[1];
        this.#free.splice(i, 1);
      }
    } else if (next && next[0] === end) {
      next[0] = start;
      next[1] += length;
    } else {
      this.#free.splice(i, 0, [start, length]);
    }
  }
}
