/**
 * A row-wise concatenation of a module's weights (or biases) that several projections of the same input read:
 * Llama's q/k/v (one [E + 2·kvDim, E] product instead of three) and gate/up (one [2·I, E] product instead of two).
 * One GEMM, one packed weight and one native call instead of two or three: at batch 1 each call's fixed cost is
 * a visible share of a decode step. Every output column is computed exactly as in the separate products (the
 * GEMM's and GEMV's per-column arithmetic depends only on K), so results are bit-identical.
 *
 * The fused copy is rebuilt when any part is replaced (loadStateDict) or written in place (its version moves),
 * so it never serves stale weights. It costs one extra copy of the parts' memory.
 */
import { gatherJs } from '../strided';
import { Tensor } from '../tensor';

type F32 = Tensor<'float32'>;

export class FusedRows {
  #parts: readonly F32[] = [];
  #versions: number[] = [];
  #fused: F32 | null = null;

  /** `parts` ([rows_i, ...] each, the same trailing dims) joined along dim 0, reused while the parts are unchanged. */
  of(parts: readonly F32[]): F32 {
    const cached = this.#fused;
    if (cached !== null && parts.length === this.#parts.length &&
      parts.every((p, i) => p === this.#parts[i] && p._version === this.#versions[i])) {
      return cached;
    }
    // Copied in JS, now: inside runAsync or a recorded step a backend op would only be recorded, and the GEMM's
    // packing (done when the call is recorded) would read the copy before it was written. A fresh buffer outside
    // the intermediates' pool (it outlives the forward that builds it), never part of an autograd graph.
    const rows = parts.reduce((n, p) => n + p.shape[0]!, 0);
    const trailing = parts[0]!.shape.slice(1);
    const rowSize = trailing.reduce((n, d) => n * d, 1);
    const data = new Float32Array(rows * rowSize);
    let off = 0;
    for (const p of parts) {
      if (p.isContiguous()) data.set(p.data.subarray(0, p.size), off);
      else gatherJs(p.data, p.shape, p.strides, data.subarray(off, off + p.size));
      off += p.size;
    }
    const fused = new Tensor(data, [rows, ...trailing], 'float32');
    this.#parts = parts.slice();
    this.#versions = parts.map((p) => p._version);
    this.#fused = fused;
    return fused;
  }
}
