import type { Tensor } from '../../lib/tensor';

/** The greedy pick of attnode's decode loops in run.ts and decode-only.ts: the first index of the largest logit, in JS. */
export function argmax(logits: Tensor<'float32'>): number {
  const d = logits.contiguous().data;
  let best = 0;
  for (let j = 1; j < d.length; j++) if (d[j]! > d[best]!) best = j;
  return best;
}
