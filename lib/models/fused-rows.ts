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
import * as ops from '../ops';
import { withContext } from '../context';
import type { Tensor } from '../tensor';

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
    // Detached: the fused copy is derived state of constant weights, never a node of an autograd graph. Outside
    // any buffer scope: it outlives the forward that builds it, so it must not come from the intermediates' pool.
    const fused = withContext({ bufferScope: null }, () => ops.cat(parts.map((p) => p.detach()), 0));
    this.#parts = parts.slice();
    this.#versions = parts.map((p) => p._version);
    this.#fused = fused;
    return fused;
  }
}
