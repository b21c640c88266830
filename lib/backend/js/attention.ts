/**
 * Scaled dot-product attention in plain TypeScript: the reference the native
 * kernel is tested against, and the JS baseline of the benchmarks.
 *
 * One query row at a time against all keys: memory is O(lk) per row (one
 * reused score buffer), never lq×lk unless the caller asked for the weights.
 * Scores are accumulated in JS doubles, so this is also the more accurate side.
 */
import type { AttentionArgs, AttentionMask } from '../backend';

/** Reused across calls; grows to the largest lk seen. */
let scoreScratch = new Float64Array(0);
let accScratch = new Float64Array(0);

export function attention(args: AttentionArgs): void {
  const { q, k, v, out, qStrides, kStrides, vStrides, outStrides, batch, heads, lq, lk, dk, dv, scale, masks, causal } =
    args;
  const weights = args.weights;
  if (scoreScratch.length < lk) scoreScratch = new Float64Array(lk);
  if (accScratch.length < dv) accScratch = new Float64Array(dv);
  const scores = scoreScratch;
  const acc = accScratch;

  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const qBase = b * qStrides[0] + h * qStrides[1];
      const kBase = b * kStrides[0] + h * kStrides[1];
      const vBase = b * vStrides[0] + h * vStrides[1];
      const oBase = b * outStrides[0] + h * outStrides[1];
      for (let i = 0; i < lq; i++) {
        const qi = qBase + i * qStrides[2];
        const visible = causal ? Math.min(lk, i + 1) : lk;
        let max = -Infinity;
        for (let j = 0; j < visible; j++) {
          const kj = kBase + j * kStrides[2];
          let dot = 0;
          for (let d = 0; d < dk; d++) dot += q[qi + d] * k[kj + d];
          let s = dot * scale;
          for (let m = 0; m < masks.length; m++) s = applyMask(masks[m], s, b, h, i, j);
          scores[j] = s;
          if (s > max) max = s;
        }
        const oi = oBase + i * outStrides[2];
        const wRow = weights ? ((b * heads + h) * lq + i) * lk : 0;
        if (max === -Infinity || Number.isNaN(max)) {
          // Every key masked out: softmax over all -inf is NaN in PyTorch too.
          for (let d = 0; d < dv; d++) out[oi + d] = NaN;
          if (weights) weights.fill(NaN, wRow, wRow + lk);
          continue;
        }
        let sum = 0;
        for (let j = 0; j < visible; j++) {
          const e = Math.exp(scores[j] - max);
          scores[j] = e;
          sum += e;
        }
        const inv = 1 / sum;
        acc.fill(0, 0, dv);
        for (let j = 0; j < visible; j++) {
          const p = scores[j] * inv;
          if (p === 0) continue;
          const vj = vBase + j * vStrides[2];
          for (let d = 0; d < dv; d++) acc[d] += p * v[vj + d];
        }
        for (let d = 0; d < dv; d++) out[oi + d] = acc[d];
        if (weights) {
          for (let j = 0; j < visible; j++) weights[wRow + j] = scores[j] * inv;
          weights.fill(0, wRow + visible, wRow + lk);
        }
      }
    }
  }
}

function applyMask(mask: AttentionMask, s: number, b: number, h: number, i: number, j: number): number {
  const st = mask.strides;
  const value = mask.data[b * st[0] + h * st[1] + i * st[2] + j * st[3]];
  if (mask.data instanceof Uint8Array) return value ? -Infinity : s;
  return s + value;
}
