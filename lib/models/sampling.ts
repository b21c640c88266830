/**
 * Picking the next token from a row of logits, as Hugging Face's `generate`
 * does: repetition penalty, then the arg-max (greedy) or a draw after
 * temperature, top-k and top-p. Shared by `generate` (lib/models/generation.ts)
 * and the serving engine, so both pick alike.
 *
 * A draw walks the kept tokens in id order, as torch.multinomial does, so it
 * needs no ordering; top-k and top-p need only the token where the cut
 * falls: tokens are bucketed by probability in one pass and only that
 * bucket is sorted, instead of sorting the whole vocabulary for every token
 * (~17 ms at 49k tokens).
 */
import type { Rng } from '../tensor';

/** How a token is picked (Hugging Face's generation options). */
export interface SamplingParams {
  /** Draw instead of taking the arg-max. */
  doSample: boolean;
  /** Divides the logits before a draw (> 0). */
  temperature: number;
  /** Keep only the k most likely tokens (0: all). */
  topK: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1: all). */
  topP: number;
  /** > 1 discourages tokens already in the sequence (1: off). */
  repetitionPenalty: number;
}

/** The options {@link samplingParams} reads (undefined: the default). */
export interface SamplingOptions {
  doSample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
}

/**
 * Checks sampling options and fills in defaults (greedy; temperature 1, topK 0, topP 1, penalty 1).
 * `what` names them in messages ('option' for generate's options, 'field' for a request's fields).
 * @throws TypeError for a non-boolean doSample, RangeError naming the option for a value out of range.
 */
export function samplingParams(fn: string, o: SamplingOptions, what = 'option'): SamplingParams {
  const num = (name: string, v: number | undefined, dflt: number, ok: (x: number) => boolean, want: string): number => {
    const x = v ?? dflt;
    if (typeof x !== 'number' || !ok(x)) throw new RangeError(`${fn}: ${what} '${name}' must be ${want}, got ${String(x)}`);
    return x;
  };
  const doSample = o.doSample ?? false;
  if (typeof doSample !== 'boolean') throw new TypeError(`${fn}: ${what} 'doSample' must be a boolean, got ${typeof doSample}`);
  return {
    doSample,
    temperature: num('temperature', o.temperature, 1, (x) => x > 0 && Number.isFinite(x), 'a finite number > 0 (out of range)'),
    topK: num('topK', o.topK, 0, (x) => Number.isInteger(x) && x >= 0, 'an integer >= 0 (out of range)'),
    topP: num('topP', o.topP, 1, (x) => x > 0 && x <= 1, 'in (0, 1] (out of range)'),
    repetitionPenalty: num('repetitionPenalty', o.repetitionPenalty, 1, (x) => x > 0 && Number.isFinite(x), 'a finite number > 0 (out of range)'),
  };
}

/** Probability buckets per unit of log-probability below the best token; the last bucket takes the rest. */
const BUCKETS_PER_UNIT = 64;
const BUCKETS = 64 * BUCKETS_PER_UNIT;

/**
 * Picks tokens from logits rows, reusing its scratch buffers between calls (one picker per loop; not shared
 * between concurrent users).
 */
export class TokenPicker {
  #row = new Float64Array(0);
  #prob = new Float64Array(0);
  #keep = new Uint8Array(0);
  #bucketOf = new Int32Array(0);
  #order = new Int32Array(0);
  #start = new Int32Array(BUCKETS + 1);
  #fill = new Int32Array(BUCKETS);

  /**
   * The next token from `logits[offset … offset + v)`. `seen` are the tokens the sequence holds so far (for the
   * repetition penalty; each distinct token counts once); `rng` is used only when sampling (one uniform per draw).
   */
  pick(logits: ArrayLike<number>, offset: number, v: number, p: SamplingParams, rng: Rng, seen: Iterable<number> | null): number {
    if (!p.doSample && (p.repetitionPenalty === 1 || !seen)) {
      // Plain greedy: the arg-max of the row as it is, no copy.
      let best = 0;
      for (let j = 1; j < v; j++) if (logits[offset + j]! > logits[offset + best]!) best = j;
      return best;
    }
    if (this.#row.length < v) this.#grow(v);
    const row = this.#row;
    for (let j = 0; j < v; j++) row[j] = logits[offset + j]!;
    if (p.repetitionPenalty !== 1 && seen) {
      const pen = p.repetitionPenalty;
      for (const t of seen instanceof Set ? seen : new Set(seen)) {
        if (t >= 0 && t < v) row[t] = row[t]! < 0 ? row[t]! * pen : row[t]! / pen;
      }
    }
    return this.choose(row, v, p, rng);
  }

  /**
   * The token from scores `row[0 … v)` already processed (penalties, bans): the arg-max (the first on ties), or a
   * draw. `row` is read, not changed. `p.repetitionPenalty` is not applied here.
   */
  choose(row: Float64Array, v: number, p: SamplingParams, rng: Rng): number {
    if (!p.doSample) {
      let best = 0;
      for (let j = 1; j < v; j++) if (row[j]! > row[best]!) best = j;
      return best;
    }
    if (this.#prob.length < v) this.#grow(v);
    return this.#draw(row, v, p, rng);
  }

  #grow(v: number): void {
    this.#row = new Float64Array(v);
    this.#prob = new Float64Array(v);
    this.#keep = new Uint8Array(v);
    this.#bucketOf = new Int32Array(v);
    this.#order = new Int32Array(v);
  }

  /**
   * Temperature, then top-k (every token at least as likely as the k-th: ties at the edge stay, as in
   * Hugging Face's TopKLogitsWarper), then top-p (the most likely tokens until their share of the kept mass
   * reaches p, at least one), then one draw over the kept tokens in id order (as torch.multinomial walks them).
   */
  #draw(row: Float64Array, v: number, p: SamplingParams, rng: Rng): number {
    const prob = this.#prob;
    const keep = this.#keep;
    const t = p.temperature;
    let max = -Infinity;
    let best = 0;
    for (let j = 0; j < v; j++) {
      if (row[j]! > max) {
        max = row[j]!;
        best = j;
      }
    }
    // Every logit -inf (or NaN): nothing to draw from; the arg-max is as good as any.
    if (!(max > -Infinity)) return best;
    const inv = 1 / t;
    for (let j = 0; j < v; j++) {
      prob[j] = Math.exp((row[j]! - max) * inv);
      keep[j] = 1;
    }
    if ((p.topK > 0 && p.topK < v) || p.topP < 1) this.#filter(row, v, p, max, inv);
    let total = 0;
    for (let j = 0; j < v; j++) if (keep[j]) total += prob[j]!;
    let u = rng.uniform() * total;
    let last = best;
    for (let j = 0; j < v; j++) {
      if (!keep[j]) continue;
      last = j;
      u -= prob[j]!;
      if (u < 0) return j;
    }
    return last;
  }

  /**
   * Clears `keep` for the tokens top-k and top-p remove. Tokens are bucketed by log-probability in one pass; only
   * the bucket where the cut falls is sorted, so no full sort of the vocabulary is needed.
   */
  #filter(row: Float64Array, v: number, p: SamplingParams, max: number, inv: number): void {
    const prob = this.#prob;
    const keep = this.#keep;
    const bucketOf = this.#bucketOf;
    const order = this.#order;
    const start = this.#start;
    const fill = this.#fill;
    start.fill(0);
    for (let j = 0; j < v; j++) {
      // prob = e^-d; bucket order is probability order (equal logits share a bucket).
      const d = (max - row[j]!) * inv;
      const b = d < BUCKETS / BUCKETS_PER_UNIT ? Math.floor(d * BUCKETS_PER_UNIT) : BUCKETS - 1;
      const bb = b >= 0 && b < BUCKETS ? b : BUCKETS - 1;
      bucketOf[j] = bb;
      start[bb + 1]!++;
    }
    for (let b = 0; b < BUCKETS; b++) start[b + 1]! += start[b]!;
    fill.set(start.subarray(0, BUCKETS));
    for (let j = 0; j < v; j++) order[fill[bucketOf[j]!]!++] = j;
    const byLogit = (a: number, b: number): number => row[b]! - row[a]! || a - b;
    // Tokens in buckets [0, cutBucket) are kept whole; in the cut bucket, its first `cutCount` by logit.
    let cutBucket = BUCKETS;
    let cutCount = 0;
    if (p.topK > 0 && p.topK < v) {
      let b = 0;
      while (start[b + 1]! < p.topK) b++;
      const members = order.subarray(start[b]!, start[b + 1]!);
      members.sort(byLogit);
      // Every token as likely as the k-th stays.
      const kth = row[members[p.topK - 1 - start[b]!]!]!;
      let n = p.topK - start[b]!;
      while (n < members.length && row[members[n]!]! === kth) n++;
      cutBucket = b;
      cutCount = n;
    }
    if (p.topP < 1) {
      let total = 0;
      for (let b = 0; b < cutBucket; b++) for (let i = start[b]!; i < start[b + 1]!; i++) total += prob[order[i]!]!;
      if (cutBucket < BUCKETS) for (let i = 0; i < cutCount; i++) total += prob[order[start[cutBucket]! + i]!]!;
      const target = p.topP * total;
      let acc = 0;
      for (let b = 0; b <= Math.min(cutBucket, BUCKETS - 1); b++) {
        const lo = start[b]!;
        const hi = b === cutBucket ? lo + cutCount : start[b + 1]!;
        let mass = 0;
        for (let i = lo; i < hi; i++) mass += prob[order[i]!]!;
        if (acc + mass < target) {
          acc += mass;
          continue;
        }
        // The cut falls in this bucket: its most likely tokens until the mass reaches p (at least one overall).
        const members = order.subarray(lo, hi);
        if (b !== cutBucket) members.sort(byLogit);
        let n = 0;
        // acc < target here, so at least one token is kept.
        while (n < members.length && acc < target) acc += prob[members[n++]!]!;
        cutBucket = b;
        cutCount = n;
        break;
      }
    }
    if (cutBucket >= BUCKETS) return;
    const lo = start[cutBucket]!;
    for (let i = lo + cutCount; i < v; i++) keep[order[i]!] = 0;
  }
}

/** log softmax(logits[offset … offset + v))[token]: the model's log-probability of `token` (before any sampling change). */
export function logProbability(logits: ArrayLike<number>, offset: number, v: number, token: number): number {
  let max = -Infinity;
  for (let j = 0; j < v; j++) if (logits[offset + j]! > max) max = logits[offset + j]!;
  let sum = 0;
  for (let j = 0; j < v; j++) sum += Math.exp(logits[offset + j]! - max);
  return logits[offset + token]! - max - Math.log(sum);
}
