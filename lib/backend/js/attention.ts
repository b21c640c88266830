/**
 * Scaled dot-product attention in plain TypeScript: the reference the native
 * kernel is tested against, and the JS baseline of the benchmarks.
 *
 * One query row at a time against all keys: memory is O(lk) per row (one
 * reused score buffer), never lq×lk unless the caller asked for the weights.
 * Scores are accumulated in JS doubles, so this is also the more accurate side.
 */
import { ATTENTION_SMALL_ROWS } from '../backend';
import type { AttentionArgs, AttentionMask } from '../backend';
import { bf16Bits, roundToBf16 } from './gemm';

/** Reused across calls; grows to the largest lk seen. */
let scoreScratch = new Float64Array(0);
let accScratch = new Float64Array(0);

export function attention(args: AttentionArgs): void {
  const pooled = !!args.kvStarts || !!args.kvLengths;
  if (pooled && args.weights) throw new RangeError("attention: argument 'weights' must be null when kvStarts or kvLengths is given");
  const lse = args.lse ?? null;
  if (pooled && lse) throw new RangeError("attention: argument 'lse' must be null when kvStarts or kvLengths is given");
  if (lse && lse.length < args.batch * args.heads * args.lq) {
    throw new RangeError(`attention: argument 'lse' has ${lse.length} elements, expected at least ${args.batch * args.heads * args.lq} (batch*heads*lq)`);
  }
  const drop = dropoutOf('attention', args.dropoutP, args.dropoutSeed);
  if (drop && (args.weights || pooled)) {
    throw new RangeError(`attention: argument 'dropoutP' must be 0 when ${args.weights ? 'weights are requested' : 'kvStarts or kvLengths is given'}, got ${args.dropoutP}`);
  }
  if (args.precision === 'bfloat16' && !pooled && !args.weights && !lse && !drop && args.lq > ATTENTION_SMALL_ROWS) {
    attentionBf16(args);
    return;
  }
  const { q, k, v, out, kStrides, vStrides, heads, lq, lk, dk, dv, scale, masks } = args;
  const weights = args.weights;
  if (scoreScratch.length < lk) scoreScratch = new Float64Array(lk);
  if (accScratch.length < dv) accScratch = new Float64Array(dv);
  const scores = scoreScratch;
  const acc = accScratch;

  forEachRow(args, (b, h, i, qi, kBase, vBase, oi, visible) => {
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
    const wRow = weights ? ((b * heads + h) * lq + i) * lk : 0;
    const lseAt = (b * heads + h) * lq + i;
    if (max === -Infinity || Number.isNaN(max)) {
      // Every key masked out: softmax over all -inf is NaN in PyTorch too.
      for (let d = 0; d < dv; d++) out[oi + d] = NaN;
      if (weights) weights.fill(NaN, wRow, wRow + lk);
      if (lse) lse[lseAt] = NaN;
      return;
    }
    let sum = 0;
    for (let j = 0; j < visible; j++) {
      const e = Math.exp(scores[j] - max);
      scores[j] = e;
      sum += e;
    }
    const inv = 1 / sum;
    if (lse) lse[lseAt] = max + Math.log(sum);
    acc.fill(0, 0, dv);
    const rowKey = drop ? dropoutRowKey(drop, (b * heads + h) * lq + i) : 0;
    for (let j = 0; j < visible; j++) {
      const p = drop ? scores[j] * inv * dropoutFactor(drop, rowKey, j) : scores[j] * inv;
      if (p === 0) continue;
      const vj = vBase + j * vStrides[2];
      for (let d = 0; d < dv; d++) acc[d] += p * v[vj + d];
    }
    for (let d = 0; d < dv; d++) out[oi + d] = acc[d];
    if (weights) {
      for (let j = 0; j < visible; j++) weights[wRow + j] = scores[j] * inv;
      weights.fill(0, wRow + visible, wRow + lk);
    }
  });
}

/**
 * Calls `row` for every (batch b, head h, query i) with the element offsets
 * of its q row, its head's first k and v rows and its out row, and how many
 * keys it sees (all, or j <= i when causal).
 */
function forEachRow(
  args: AttentionArgs,
  row: (b: number, h: number, i: number, qi: number, kBase: number, vBase: number, oi: number, visible: number) => void,
): void {
  const { qStrides, kStrides, vStrides, outStrides, batch, heads, lq, lk, causal } = args;
  const starts = args.kvStarts ?? null;
  const lengths = args.kvLengths ?? null;
  const kvHeads = args.kvHeads ?? heads;
  if (heads > 0 && !(Number.isInteger(kvHeads) && kvHeads >= 1 && heads % kvHeads === 0)) {
    throw new RangeError(`attention: argument 'kvHeads' must divide heads = ${heads}, got ${kvHeads}`);
  }
  // Grouped-query attention: `group` consecutive query heads share one key/value head.
  const group = heads > 0 ? heads / kvHeads : 1;
  for (let b = 0; b < batch; b++) {
    // Pooled K/V: the entry's keys start at its own position and it sees its own length.
    const kOff = starts ? starts[b]! * kStrides[2] : b * kStrides[0];
    const vOff = starts ? starts[b]! * vStrides[2] : b * vStrides[0];
    const len = lengths ? lengths[b]! : lk;
    if (!(len >= 0 && len <= lk)) throw new RangeError(`attention: argument 'kvLengths' must hold lengths in [0, lk = ${lk}], got ${len} at index ${b}`);
    if (starts && !(starts[b]! >= 0)) throw new RangeError(`attention: argument 'kvStarts' must hold positions >= 0, got ${starts[b]} at index ${b}`);
    for (let h = 0; h < heads; h++) {
      const hk = Math.floor(h / group);
      const kBase = kOff + hk * kStrides[1];
      const vBase = vOff + hk * vStrides[1];
      for (let i = 0; i < lq; i++) {
        const qi = b * qStrides[0] + h * qStrides[1] + i * qStrides[2];
        const oi = b * outStrides[0] + h * outStrides[1] + i * outStrides[2];
        row(b, h, i, qi, kBase, vBase, oi, causal ? Math.min(len, i + 1) : len);
      }
    }
  }
}

/** Dropout on the attention probabilities: the call's seed, threshold on the top 24 hash bits, and 1 / (1 − p). */
export interface AttentionDropoutBits {
  seed: number;
  threshold: number;
  keepScale: number;
}

/** The dropout of a call (null for p = 0), checking p and the seed; computed as the native kernel does. */
export function dropoutOf(fn: string, p: number | undefined, seed: number | undefined): AttentionDropoutBits | null {
  const pv = p ?? 0;
  if (typeof pv !== 'number' || !(pv >= 0 && pv < 1)) throw new RangeError(`${fn}: argument 'dropoutP' must be in [0, 1), got ${String(p)}`);
  const sv = seed ?? 0;
  if (!Number.isInteger(sv) || sv < 0 || sv > 0xffffffff) throw new RangeError(`${fn}: argument 'dropoutSeed' must be an integer in [0, 2^32), got ${String(seed)}`);
  if (pv === 0) return null;
  const pf = Math.fround(pv);
  return { seed: sv >>> 0, threshold: Math.floor(pf * 16777216 + 0.5), keepScale: Math.fround(1 / Math.fround(1 - pf)) };
}

/** lowbias32 (Wellons), as attention_tile.inc's mix32. */
function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b | 0);
  x ^= x >>> 16;
  return x >>> 0;
}

/** The per-row part of the dropout hash of row (b·heads + h)·lq + i. */
export function dropoutRowKey(d: AttentionDropoutBits, row: number): number {
  return mix32((mix32(row >>> 0) ^ d.seed) >>> 0);
}

/** The dropout factor (0 or 1 / (1 − p)) of key j in the row of `rowKey`: the native kernel's bits. */
export function dropoutFactor(d: AttentionDropoutBits, rowKey: number, j: number): number {
  const v = mix32((rowKey + Math.imul(j, 0x9e3779b9 | 0)) >>> 0);
  return v >>> 8 < d.threshold ? 0 : d.keepScale;
}

/** A score after one mask: a float mask added, a non-zero bool (Uint8) entry excluding the key (-inf). */
export function applyMask(mask: AttentionMask, s: number, b: number, h: number, i: number, j: number): number {
  const st = mask.strides;
  const value = mask.data[b * st[0] + h * st[1] + i * st[2] + j * st[3]];
  if (mask.data instanceof Uint8Array) return value ? -Infinity : s;
  return s + value;
}

/** Keys per block of the native kernel's online softmax (kAttnKeyBlock). */
const KEY_BLOCK = 64;
const bf16Scratch = new Float32Array(1);
const bf16ScratchBits = new Uint32Array(bf16Scratch.buffer);

/** One value rounded to bfloat16 as AVX512-BF16 does (see roundToBf16). */
function bf16(x: number): number {
  bf16Scratch[0] = x;
  bf16ScratchBits[0] = bf16Bits(bf16ScratchBits[0]!);
  return bf16Scratch[0]!;
}

/**
 * Reference of the native bfloat16 attention: q, k and v rounded to
 * bfloat16; per query row an online softmax over blocks of 64 keys, as the
 * kernel runs it, because the probabilities are rounded to bfloat16 against
 * the running maximum of their block (rounding after the final rescale would
 * give other values). Sums and the output stay float32-or-better.
 */
function attentionBf16(args: AttentionArgs): void {
  const { q, k, v, out, kStrides, vStrides, dk, dv, scale, masks } = args;
  const qr = roundToBf16(q);
  const kr = roundToBf16(k);
  const vr = roundToBf16(v);
  const p = new Float64Array(KEY_BLOCK);
  const acc = new Float64Array(dv);
  forEachRow(args, (b, h, i, qi, kBase, vBase, oi, visible) => {
    let m = -Infinity;
    let l = 0;
    let nan = false;
    acc.fill(0);
    for (let j0 = 0; j0 < visible; j0 += KEY_BLOCK) {
      const nk = Math.min(KEY_BLOCK, visible - j0);
      let bm = -Infinity;
      for (let jj = 0; jj < nk; jj++) {
        const kj = kBase + (j0 + jj) * kStrides[2];
        let dot = 0;
        for (let d = 0; d < dk; d++) dot += qr[qi + d]! * kr[kj + d]!;
        let s = Math.fround(dot * scale);
        for (let mi = 0; mi < masks.length; mi++) s = applyMask(masks[mi]!, s, b, h, i, j0 + jj);
        if (Number.isNaN(s)) nan = true;
        p[jj] = s;
        if (s > bm) bm = s;
      }
      const mn = bm > m ? bm : m;
      const mu = mn === -Infinity ? 0 : mn;
      const alpha = mn === m ? 1 : Math.exp(m - mu);
      m = mn;
      let sum = 0;
      for (let jj = 0; jj < nk; jj++) {
        const e = Math.fround(Math.exp(p[jj]! - mu));
        sum += e;
        p[jj] = bf16(e);
      }
      l = l * alpha + sum;
      for (let d = 0; d < dv; d++) acc[d]! *= alpha;
      for (let jj = 0; jj < nk; jj++) {
        const pj = p[jj]!;
        if (pj === 0) continue;
        const vj = vBase + (j0 + jj) * vStrides[2];
        for (let d = 0; d < dv; d++) acc[d]! += pj * vr[vj + d]!;
      }
    }
    // l == 0: every key excluded (or lk == 0); NaN like PyTorch's softmax over all -inf.
    const inv = nan || l === 0 ? NaN : 1 / l;
    for (let d = 0; d < dv; d++) out[oi + d] = acc[d]! * inv;
  });
}
