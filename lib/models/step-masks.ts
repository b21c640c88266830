/**
 * Position ids and the additive attention mask of one forward step of a
 * causal LM over a KV cache, from Hugging Face's attention mask (1 = token):
 * shared by every decoder family (Llama, GPT-2).
 */
import { Tensor } from '../tensor';
import { formatShape } from '../errors';

/**
 * For a step of `t` new positions after `pos` cached ones: position ids
 * [N, t] counting the real tokens before each one (cumsum(mask) − 1, so a
 * left-padded row starts at 0; a padding position gets 1, as transformers
 * does, and is masked anyway) and a float32 mask [N, 1, t, pos + t] hiding
 * padding and the future. Without an attention mask both are null: positions
 * are pos … pos + t − 1 for every row and attention is plainly causal.
 */
export function stepPositionsAndMask(
  fn: string, attentionMask: Tensor<'int32'> | null, n: number, t: number, pos: number,
): { positions: Tensor<'int32'> | null; mask: Tensor<'float32'> | null } {
  if (attentionMask === null) return { positions: null, mask: null };
  const s = pos + t;
  if (!(attentionMask instanceof Tensor) || attentionMask.dtype !== 'int32' ||
    attentionMask.ndim !== 2 || attentionMask.shape[0] !== n || attentionMask.shape[1] !== s) {
    throw new TypeError(`${fn}: option 'attentionMask' must be an int32 Tensor [batch, cached + new] = [${n}, ${s}], got ${attentionMask instanceof Tensor ? `${attentionMask.dtype} ${formatShape(attentionMask.shape)}` : typeof attentionMask}`);
  }
  const am = attentionMask.contiguous().data;
  const positions = new Int32Array(n * t);
  const mask = new Float32Array(n * t * s);
  for (let b = 0; b < n; b++) {
    let count = 0;
    for (let j = 0; j < pos; j++) if (am[b * s + j]) count++;
    for (let i = 0; i < t; i++) {
      positions[b * t + i] = am[b * s + pos + i] ? count++ : 1;
      const row = (b * t + i) * s;
      for (let j = 0; j < s; j++) if (!am[b * s + j] || j > pos + i) mask[row + j] = -Infinity;
      // A padding query attends to itself only, so its row stays finite (its output is never used).
      if (!am[b * s + pos + i]) mask[row + pos + i] = 0;
    }
  }
  return { positions: new Tensor(positions, [n, t], 'int32'), mask: new Tensor(mask, [n, 1, t, s], 'float32') };
}
