/**
 * The shared token picker (lib/models/sampling.ts) that generate and the serving engine use: its bucketed top-k /
 * top-p cut against a plain full-sort implementation of the same rules (temperature, top-k with its ties, top-p,
 * then one draw over the kept tokens in id order, as torch.multinomial) for many seeds and rows, the draw
 * frequencies against the softmax, greedy ties, the repetition penalty, log-probabilities, and option errors.
 */
import { describe, expect, it } from 'vitest';
import { logProbability, samplingParams, TokenPicker, type SamplingParams } from '../lib/models/sampling';
import { Rng } from '../lib/tensor';

/**
 * The picker's semantics with one full sort (what it must equal): temperature; top-k keeps every token at least as
 * likely as the k-th; top-p keeps the most likely kept tokens until their mass reaches p; one draw over the kept
 * tokens in id order.
 */
function reference(logits: Float32Array, p: SamplingParams, rng: Rng, seen: number[]): number {
  const v = logits.length;
  const row = Float64Array.from(logits);
  for (const t of new Set(seen)) row[t] = row[t]! < 0 ? row[t]! * p.repetitionPenalty : row[t]! / p.repetitionPenalty;
  if (!p.doSample) {
    let best = 0;
    for (let j = 1; j < v; j++) if (row[j]! > row[best]!) best = j;
    return best;
  }
  let max = -Infinity;
  for (let j = 0; j < v; j++) if (row[j]! > max) max = row[j]!;
  const prob = Array.from(row, (x) => Math.exp((x - max) * (1 / p.temperature)));
  const order = Array.from(prob.keys()).sort((a, b) => row[b]! - row[a]! || a - b);
  const keep = new Array<boolean>(v).fill(true);
  if (p.topK > 0 && p.topK < v) {
    const kth = row[order[p.topK - 1]!]!;
    for (let j = 0; j < v; j++) if (row[j]! < kth) keep[j] = false;
  }
  if (p.topP < 1) {
    const kept = order.filter((j) => keep[j]);
    const total = kept.reduce((s, j) => s + prob[j]!, 0);
    let acc = 0;
    let n = 0;
    while (n < kept.length && acc < p.topP * total) acc += prob[kept[n++]!]!;
    for (const j of kept.slice(n)) keep[j] = false;
  }
  let total = 0;
  for (let j = 0; j < v; j++) if (keep[j]) total += prob[j]!;
  let u = rng.uniform() * total;
  let last = -1;
  for (let j = 0; j < v; j++) {
    if (!keep[j]) continue;
    last = j;
    u -= prob[j]!;
    if (u < 0) return j;
  }
  return last;
}

function logitsRow(v: number, seed: number, spread: number): Float32Array {
  const r = new Rng(seed);
  // Some exact ties and -Infinity entries as well.
  return Float32Array.from({ length: v }, (_, j) => (j % 17 === 3 ? -Infinity : j % 11 === 5 ? 1.5 : r.normal() * spread));
}

describe('TokenPicker', () => {
  const params = (o: Partial<SamplingParams>): SamplingParams => ({ ...samplingParams('test', {}), doSample: true, ...o });

  it.each([
    ['temperature only', { temperature: 0.7 }],
    ['top-k', { topK: 40, temperature: 1.3 }],
    ['top-p', { topP: 0.9 }],
    ['top-k and top-p with a penalty', { topK: 50, topP: 0.8, repetitionPenalty: 1.3 }],
    ['top-k of 1', { topK: 1 }],
    ['top-p 0.3 after top-k 200', { topK: 200, topP: 0.3, temperature: 0.5 }],
  ] as const)('%s: the same tokens as a full sort, draw by draw', (_, o) => {
    const picker = new TokenPicker();
    const p = params(o);
    for (const [v, spread] of [[300, 1], [5000, 3], [2000, 0.05]] as const) {
      for (let seed = 0; seed < 40; seed++) {
        const row = logitsRow(v, seed * 7 + v, spread);
        const seen = [1, 2, 5, 5, 9, 40];
        // A few rows of one buffer: the picker reads at an offset.
        const buf = new Float32Array(3 * v);
        buf.set(row, v);
        expect(picker.pick(buf, v, v, p, new Rng(seed), seen)).toBe(reference(row, p, new Rng(seed), seen));
      }
    }
  });

  it('draws tokens at the softmax frequencies', () => {
    const logits = Float32Array.from([2, 1, 0.5, -1, 0, 1]);
    const probs = Array.from(logits, (x) => Math.exp(x / 0.8));
    const z = probs.reduce((s, x) => s + x, 0);
    const picker = new TokenPicker();
    const rng = new Rng(3);
    const counts = new Array<number>(6).fill(0);
    const n = 20000;
    for (let i = 0; i < n; i++) counts[picker.pick(logits, 0, 6, params({ temperature: 0.8 }), rng, null)]!++;
    counts.forEach((c, j) => expect(Math.abs(c / n - probs[j]! / z)).toBeLessThan(0.01));
  });

  it('greedy takes the first maximum after the penalty; the penalty divides positive and multiplies negative logits', () => {
    const picker = new TokenPicker();
    const g = samplingParams('test', {});
    expect(picker.pick(Float32Array.from([1, 3, 3, 2]), 0, 4, g, new Rng(1), null)).toBe(1);
    const pen = samplingParams('test', { repetitionPenalty: 2 });
    expect(picker.pick(Float32Array.from([1, 3, 3, 2]), 0, 4, pen, new Rng(1), [1, 2])).toBe(3);
    expect(picker.pick(Float32Array.from([-1, -3, -0.6, -2]), 0, 4, pen, new Rng(1), new Set([0, 2]))).toBe(2);
  });

  it('a row of -Infinity gives a token instead of NaN trouble', () => {
    const picker = new TokenPicker();
    expect(picker.pick(new Float32Array(5).fill(-Infinity), 0, 5, params({}), new Rng(1), null)).toBe(0);
  });

  it('logProbability is log softmax of the raw row', () => {
    const row = Float32Array.from([0.5, -1, 2, 0]);
    const z = Array.from(row).reduce((s, x) => s + Math.exp(x), 0);
    expect(logProbability(row, 0, 4, 2)).toBeCloseTo(2 - Math.log(z), 12);
    const buf = new Float32Array(8);
    buf.set(row, 4);
    expect(logProbability(buf, 4, 4, 1)).toBeCloseTo(-1 - Math.log(z), 12);
  });

  it('samplingParams names the option (or field) that is wrong', () => {
    expect(() => samplingParams('f', { temperature: 0 })).toThrow(/f: option 'temperature' must be a finite number > 0/);
    expect(() => samplingParams('f', { topP: 1.5 }, 'field')).toThrow(/f: field 'topP' must be in \(0, 1\]/);
    expect(() => samplingParams('f', { topK: 2.5 })).toThrow(/option 'topK' must be an integer >= 0/);
    expect(() => samplingParams('f', { repetitionPenalty: -1 })).toThrow(/option 'repetitionPenalty'/);
    expect(() => samplingParams('f', { doSample: 1 as unknown as boolean })).toThrow(TypeError);
    expect(samplingParams('f', {})).toEqual({ doSample: false, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1 });
  });
});
