/** The benchmark's prompt: `len` pseudo-random token ids in [3, vocab) (same for every engine). */
export function promptIds(len: number, vocab: number, seed = 7): Int32Array {
  const d = new Int32Array(len);
  let s = seed >>> 0;
  for (let i = 0; i < len; i++) d[i] = 3 + (((s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 8) % (vocab - 3));
  return d;
}
