/**
 * A row-wise concatenation of a module's weights (or biases) that several projections of the same input read:
 * Llama's q/k/v (one [E + 2·kvDim, E] product instead of three) and gate/up (one [2·I, E] product instead of two).
 * One GEMM, one packed weight and one native call instead of two or three: at batch 1 each call's fixed cost is
 * a visible share of a decode step. Every output column is computed exactly as in the separate products (the
 * GEMM's and GEMV's per-column arithmetic depends only on K), so results are bit-identical.
 *
 * The fused copy is rebuilt when any part is replaced (loadStateDict) or written in place (its version moves),
 * so it never serves stale weights. It costs one extra copy of the parts' memory, except when the parts already
 * lie back to back in one buffer, in order: then the fused tensor is a view of that memory and costs nothing.
 * That is the case of gate_proj and up_proj loaded from a Hugging Face safetensors file (tensors are stored sorted
 * by name, views into the file's bytes): ~212 MB less for SmolLM-135M in float32. (q/k/v are stored k, o, q, v.)
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
    const adjacent = adjacentView(parts);
    if (adjacent) {
      // A new tensor over memory a previous fused view may have covered: its version must differ from any that
      // view had, or the GEMM's packed-weight cache (keyed by memory and version) would serve the old packing.
      // 1 + the parts' versions only grows as they change.
      const version = 1 + parts.reduce((n, p) => n + p._version, 0);
      for (let i = 0; i < version; i++) adjacent._bumpVersion();
      return this.#keep(parts, adjacent);
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
    return this.#keep(parts, new Tensor(data, [rows, ...trailing], 'float32'));
  }

  #keep(parts: readonly F32[], fused: F32): F32 {
    this.#parts = parts.slice();
    this.#versions = parts.map((p) => p._version);
    this.#fused = fused;
    return fused;
  }
}

/** `parts` joined as a view when each is contiguous and starts where the previous one ends in the same buffer; else null. */
function adjacentView(parts: readonly F32[]): F32 | null {
  const first = parts[0]!.data;
  let end = first.byteOffset;
  let rows = 0;
  for (const p of parts) {
    if (!p.isContiguous() || p.data.buffer !== first.buffer || p.data.byteOffset !== end) return null;
    end += p.size * 4;
    rows += p.shape[0]!;
  }
  const trailing = parts[0]!.shape.slice(1);
  return new Tensor(new Float32Array(first.buffer, first.byteOffset, (end - first.byteOffset) / 4), [rows, ...trailing], 'float32');
}
