/**
 * Text generation for causal language models, as Hugging Face's
 * `model.generate` does it: greedy or sampled (temperature, top-k, top-p,
 * repetition penalty, reproducible for a seed), with the KV cache, left-padded
 * batches (`attentionMask`, 1 = token) and end-of-sequence handling. Returns
 * the prompt and the new tokens, `[batch, prompt + new]`, finished rows padded
 * with `padTokenId`.
 *
 * Each step's logits are computed by kernels (off the JS thread in the async
 * form) and only then read in JS to pick the next tokens.
 */
import { runAsyncOn } from '../async';
import type { Backend } from '../backend/backend';
import { Rng, Tensor } from '../tensor';
import { checkInt, formatShape } from '../errors';
import type { SelfAttentionCache } from '../nn/kv-cache';

/** What generation needs of a model. */
export interface CausalModel {
  createCache(batch: number, capacity: number): SelfAttentionCache;
  forward(
    inputIds: Tensor<'int32'>,
    options: { cache: SelfAttentionCache; attentionMask?: Tensor<'int32'> | null; lastOnly: boolean },
  ): Tensor<'float32'>;
  readonly config: { vocabSize: number; maxPositionEmbeddings: number };
  /** The backend the model computes on (a non-native one runs the async form synchronously). */
  readonly backend: Backend;
}

/** Options of {@link generate} (Hugging Face's names, camelCase). */
export interface GenerationOptions {
  /** Most new tokens per sequence. */
  maxNewTokens: number;
  /** [batch, prompt] 1 = token, 0 = padding (left padding). Default all ones. */
  attentionMask?: Tensor<'int32'> | null;
  /** Sample instead of taking the arg-max (default false). */
  doSample?: boolean;
  /** Divides the logits before sampling (default 1). */
  temperature?: number;
  /** Keep only the k most likely tokens (default 0: all). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (default 1: all). */
  topP?: number;
  /** > 1 discourages tokens already in the sequence (default 1: off). */
  repetitionPenalty?: number;
  /** Seed of the sampler: the same seed gives the same tokens. */
  seed?: number;
  /** Token(s) that end a sequence. */
  eosTokenId?: number | readonly number[] | null;
  /** What finished sequences are padded with (default the first eos id, else 0). */
  padTokenId?: number;
  /** Called with each step's new tokens (one per sequence) as soon as they are picked. */
  onToken?: (tokens: Int32Array) => void;
}

interface Plan {
  n: number;
  p: number;
  opts: Required<Omit<GenerationOptions, 'attentionMask' | 'seed' | 'eosTokenId' | 'onToken'>>;
  eos: Set<number>;
  rng: Rng;
  mask: Int32Array | null;
}

function plan(fn: string, model: CausalModel, inputIds: Tensor<'int32'>, o: GenerationOptions): Plan {
  if (!(inputIds instanceof Tensor) || inputIds.dtype !== 'int32' || inputIds.ndim !== 2 || inputIds.shape[1] === 0) {
    throw new TypeError(`${fn}: argument 'inputIds' must be an int32 Tensor [batch, prompt] with prompt >= 1, got ${inputIds instanceof Tensor ? `${inputIds.dtype} ${formatShape(inputIds.shape)}` : typeof inputIds}`);
  }
  const [n, p] = inputIds.shape as [number, number];
  const maxNew = checkInt(fn, 'maxNewTokens', o.maxNewTokens, 0);
  if (p + maxNew > model.config.maxPositionEmbeddings) {
    throw new RangeError(`${fn}: prompt (${p}) + maxNewTokens (${maxNew}) exceeds the model's ${model.config.maxPositionEmbeddings} positions`);
  }
  const num = (name: string, v: number | undefined, dflt: number, ok: (x: number) => boolean): number => {
    const x = v ?? dflt;
    if (typeof x !== 'number' || !ok(x)) throw new RangeError(`${fn}: option '${name}' is out of range, got ${String(x)}`);
    return x;
  };
  const eosList = o.eosTokenId === undefined || o.eosTokenId === null ? [] : typeof o.eosTokenId === 'number' ? [o.eosTokenId] : [...o.eosTokenId];
  let mask: Int32Array | null = null;
  if (o.attentionMask) {
    const m = o.attentionMask;
    if (!(m instanceof Tensor) || m.dtype !== 'int32' || m.ndim !== 2 || m.shape[0] !== n || m.shape[1] !== p) {
      throw new TypeError(`${fn}: option 'attentionMask' must be an int32 Tensor [${n}, ${p}] like inputIds`);
    }
    mask = Int32Array.from(m.contiguous().data);
  }
  return {
    n, p, eos: new Set(eosList), rng: new Rng(o.seed ?? 0), mask,
    opts: {
      maxNewTokens: maxNew,
      doSample: o.doSample ?? false,
      temperature: num('temperature', o.temperature, 1, (x) => x > 0),
      topK: num('topK', o.topK, 0, (x) => Number.isInteger(x) && x >= 0),
      topP: num('topP', o.topP, 1, (x) => x > 0 && x <= 1),
      repetitionPenalty: num('repetitionPenalty', o.repetitionPenalty, 1, (x) => x > 0),
      padTokenId: o.padTokenId ?? eosList[0] ?? 0,
    },
  };
}

/** The mask over `len` positions: the prompt's, then ones. */
function maskFor(pl: Plan, len: number): Tensor<'int32'> | null {
  if (!pl.mask) return null;
  const out = new Int32Array(pl.n * len).fill(1);
  for (let b = 0; b < pl.n; b++) out.set(pl.mask.subarray(b * pl.p, (b + 1) * pl.p), b * len);
  return new Tensor(out, [pl.n, len], 'int32');
}

/** Picks the next token of each sequence from logits [n, 1, V] (read in JS). */
function pick(pl: Plan, logits: Tensor<'float32'>, seqs: readonly number[][]): Int32Array {
  const v = logits.shape[logits.ndim - 1]!;
  const data = logits.contiguous().data;
  const next = new Int32Array(pl.n);
  const row = new Float64Array(v);
  const { doSample, temperature, topK, topP, repetitionPenalty } = pl.opts;
  for (let b = 0; b < pl.n; b++) {
    for (let j = 0; j < v; j++) row[j] = data[b * v + j]!;
    if (repetitionPenalty !== 1) {
      for (const t of new Set(seqs[b])) row[t] = row[t]! < 0 ? row[t]! * repetitionPenalty : row[t]! / repetitionPenalty;
    }
    if (!doSample) {
      let best = 0;
      for (let j = 1; j < v; j++) if (row[j]! > row[best]!) best = j;
      next[b] = best;
      continue;
    }
    next[b] = sample(row, temperature, topK, topP, pl.rng);
  }
  return next;
}

/** Hugging Face's sampling order: temperature, top-k, top-p, then one draw from the softmax. */
function sample(row: Float64Array, temperature: number, topK: number, topP: number, rng: Rng): number {
  const order = Array.from(row.keys()).sort((a, b) => row[b]! - row[a]! || a - b);
  let keep = topK > 0 ? Math.min(topK, order.length) : order.length;
  const max = row[order[0]!]! / temperature;
  const probs = order.slice(0, keep).map((j) => Math.exp(row[j]! / temperature - max));
  let total = probs.reduce((s, x) => s + x, 0);
  if (topP < 1) {
    // The smallest prefix whose mass reaches topP (at least one token).
    let acc = 0;
    for (let i = 0; i < keep; i++) {
      acc += probs[i]! / total;
      if (acc >= topP) {
        keep = i + 1;
        break;
      }
    }
    total = probs.slice(0, keep).reduce((s, x) => s + x, 0);
  }
  let u = rng.uniform() * total;
  for (let i = 0; i < keep; i++) {
    u -= probs[i]!;
    if (u < 0) return order[i]!;
  }
  return order[keep - 1]!;
}

/**
 * The generation loop as a generator: it yields each step's kernel work (a
 * thunk returning logits) and is resumed with the logits, so one loop serves
 * the sync driver and the async one (which runs each thunk in runAsync).
 */
function* loop(
  fn: string, model: CausalModel, inputIds: Tensor<'int32'>, o: GenerationOptions,
): Generator<() => Tensor<'float32'>, Tensor<'int32'>, Tensor<'float32'>> {
  const pl = plan(fn, model, inputIds, o);
  const { n, p } = pl;
  const cache = model.createCache(n, p + pl.opts.maxNewTokens);
  const ids = inputIds.contiguous().data;
  const seqs = Array.from({ length: n }, (_, b) => Array.from(ids.subarray(b * p, (b + 1) * p)) as number[]);
  const done = new Array<boolean>(n).fill(false);
  let stepIds: Tensor<'int32'> = inputIds;
  let len = p;
  for (let step = 0; step < pl.opts.maxNewTokens; step++) {
    const mask = maskFor(pl, len);
    const current = stepIds;
    const logits = yield () => model.forward(current, { cache, attentionMask: mask, lastOnly: true });
    const next = pick(pl, logits, seqs);
    for (let b = 0; b < n; b++) {
      if (done[b]) next[b] = pl.opts.padTokenId;
      else if (pl.eos.has(next[b]!)) done[b] = true;
      seqs[b]!.push(next[b]!);
    }
    o.onToken?.(next);
    if (done.every(Boolean)) break;
    stepIds = new Tensor(next, [n, 1], 'int32');
    len++;
  }
  const total = seqs[0]!.length;
  const out = new Int32Array(n * total);
  seqs.forEach((s, b) => out.set(s, b * total));
  return new Tensor(out, [n, total], 'int32');
}

/** Generates on the calling thread. */
export function generate(model: CausalModel, inputIds: Tensor<'int32'>, options: GenerationOptions): Tensor<'int32'> {
  const g = loop('generate', model, inputIds, options);
  let r = g.next();
  while (!r.done) r = g.next(r.value());
  return r.value;
}

/** Generates with every step's kernels off the JS thread (`runAsync`; on a non-native backend, synchronously). */
export async function generateAsync(
  model: CausalModel, inputIds: Tensor<'int32'>, options: GenerationOptions,
): Promise<Tensor<'int32'>> {
  const g = loop('generateAsync', model, inputIds, options);
  let r = g.next();
  while (!r.done) r = g.next(await runAsyncOn(model.backend, r.value));
  return r.value;
}
