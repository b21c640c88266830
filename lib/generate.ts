/**
 * Greedy autoregressive decoding with key/value caches.
 *
 * One driver ({@link greedy}) serves every model: it asks a model-specific
 * "stepper" for the logits of the first step (which encodes the source / runs
 * the prompt) and of every later step, picks the arg-max token per sequence
 * in JS, and handles end-of-sequence. The stepper's work is a thunk, so the
 * sync form runs it directly and the async form runs each step in its own
 * `runAsync`, awaiting it before the arg-max reads the logits: no JS ever
 * reads a kernel output inside a recording.
 *
 * Token-id layout everywhere: the model's own, i.e. `[T, N]` sequence-first
 * or `[N, T]` with `batchFirst`, `[T]` for unbatched input.
 */
import { Tensor } from './tensor';
import { runAsync } from './async';
import { noGrad } from './autograd/grad-mode';
import { checkInt, formatShape } from './errors';
import type { Embedding } from './nn/sparse';
import type { Linear } from './nn/linear';
import { Transformer } from './nn/transformer';
import type { MaskTensor } from './nn/multihead-attention';
import type { DecoderCache } from './nn/kv-cache';
import type { Backend } from './backend/backend';
import { checkOptions } from './nn/options';

/** Options of greedy generation. */
export interface GenerateOptions {
  /** Most tokens to generate per sequence (the result has at most this many positions). */
  maxNewTokens: number;
  /**
   * End-of-sequence id: a sequence that emits it is finished and emits
   * `padId` from then on; generation stops early once every sequence is
   * finished. Default: none (always `maxNewTokens` tokens).
   */
  eosId?: number | null;
  /** What finished sequences emit (default `eosId`). */
  padId?: number;
  /**
   * Use the key/value caches (default true). `false` recomputes the whole
   * decoder over the growing prefix at every step (with a causal mask): the
   * reference the cached path must equal, and the baseline of the benchmark.
   */
  useCache?: boolean;
}

/** Options of {@link generateSeq2Seq}. */
export interface Seq2SeqGenerateOptions extends GenerateOptions {
  /** Start token fed to the decoder at the first step. */
  bosId: number;
  /** [N, S] (or [S] unbatched): `true` marks padding in `src`; applied in the encoder and to the memory. */
  srcKeyPaddingMask?: MaskTensor | null;
}

/** The pieces of an encoder-decoder model such as the seed `TransformerModel`. */
export interface Seq2SeqModel {
  /** Embeds source ids, and target ids unless `tgtEmbedding` is given. */
  embedding: Pick<Embedding, 'forward'>;
  tgtEmbedding?: Pick<Embedding, 'forward'>;
  transformer: Transformer;
  /** The output projection to vocabulary logits. */
  fc: Pick<Linear, 'forward'>;
}

/**
 * A model-specific source of logits. Both methods do kernel work only (they
 * may run inside a recording) and return logits `[t, N, V]` (`[N, t, V]`
 * batch-first, `[t, V]` unbatched) whose last position predicts the next token.
 */
export interface Stepper {
  /** The first step: encodes / runs the prompt. */
  first(): Tensor<'float32'>;
  /** Every later step, given the tokens generated so far (one Int32Array of N ids per step, in order). */
  next(generated: readonly Int32Array[]): Tensor<'float32'>;
}

/** Shape facts the driver needs about the sequences being generated. */
export interface StepLayout {
  batch: number;
  batchFirst: boolean;
  unbatched: boolean;
}

interface ResolvedGenerate {
  maxNewTokens: number;
  eosId: number | null;
  padId: number;
  useCache: boolean;
}

const GENERATE_KEYS = ['maxNewTokens', 'eosId', 'padId', 'useCache'] as const;

/** Validates the options common to every generate function. */
export function resolveGenerateOptions(
  fn: string,
  o: GenerateOptions,
  extraKeys: readonly string[] = [],
): ResolvedGenerate {
  checkOptions(fn, o, [...GENERATE_KEYS, ...extraKeys]);
  const maxNewTokens = checkInt(fn, 'maxNewTokens', o.maxNewTokens, 0);
  const eosId = o.eosId === undefined || o.eosId === null ? null : checkInt(fn, 'eosId', o.eosId, 0);
  const padId = o.padId === undefined ? (eosId ?? 0) : checkInt(fn, 'padId', o.padId, 0);
  if (o.useCache !== undefined && typeof o.useCache !== 'boolean') {
    throw new TypeError(`${fn}: option 'useCache' must be a boolean, got ${typeof o.useCache}`);
  }
  return { maxNewTokens, eosId, padId, useCache: o.useCache ?? true };
}

/** Ids [L, N] / [N, L] / [L] from per-position rows of N ids. */
export function idsTensor(rows: readonly Int32Array[], layout: StepLayout): Tensor<'int32'> {
  const n = layout.batch;
  const l = rows.length;
  const data = new Int32Array(l * n);
  for (let p = 0; p < l; p++) {
    const r = rows[p]!;
    for (let b = 0; b < n; b++) data[layout.batchFirst ? b * l + p : p * n + b] = r[b]!;
  }
  const shape = layout.unbatched ? [l] : layout.batchFirst ? [n, l] : [l, n];
  return new Tensor(data, shape, 'int32');
}

/**
 * The greedy loop as a generator of kernel work: it yields thunks whose
 * results (logits) are sent back in, so the same loop runs sync
 * ({@link runSteps}) or one `runAsync` per step ({@link runStepsAsync}).
 */
export function* greedy(
  stepper: Stepper,
  layout: StepLayout,
  o: ResolvedGenerate,
): Generator<() => Tensor<'float32'>, Tensor<'int32'>, Tensor<'float32'>> {
  const n = layout.batch;
  const out: Int32Array[] = [];
  const finished = new Uint8Array(n);
  if (o.maxNewTokens > 0) {
    let logits = yield () => stepper.first();
    for (;;) {
      const next = argmaxLast(logits, layout);
      let done = 0;
      for (let b = 0; b < n; b++) {
        if (finished[b]) next[b] = o.padId;
        else if (next[b] === o.eosId) finished[b] = 1;
        done += finished[b]!;
      }
      out.push(next);
      if (out.length >= o.maxNewTokens || done === n) break;
      logits = yield () => stepper.next(out);
    }
  }
  return idsTensor(out, layout);
}

/** Arg-max over the vocabulary of each sequence's last position (first index on ties, as torch.argmax). */
function argmaxLast(logits: Tensor<'float32'>, layout: StepLayout): Int32Array {
  const v = logits.shape[logits.ndim - 1]!;
  const t = logits.shape[layout.unbatched ? 0 : layout.batchFirst ? 1 : 0]!;
  const n = layout.batch;
  const d = logits.data;
  const ids = new Int32Array(n);
  for (let b = 0; b < n; b++) {
    const row = layout.unbatched ? t - 1 : layout.batchFirst ? b * t + t - 1 : (t - 1) * n + b;
    let best = 0;
    let bestVal = -Infinity;
    for (let j = 0, o = row * v; j < v; j++) {
      const x = d[o + j]!;
      if (x > bestVal) {
        bestVal = x;
        best = j;
      }
    }
    ids[b] = best;
  }
  return ids;
}

/** Runs a work generator synchronously. */
export function runSteps<R>(gen: Generator<() => Tensor<'float32'>, R, Tensor<'float32'>>): R {
  // Decoding needs no gradients: grad mode off, whatever the parameters' requiresGrad.
  return noGrad(() => {
    let r = gen.next();
    while (!r.done) r = gen.next(r.value());
    return r.value;
  });
}

/**
 * Runs a work generator with each step's kernels off the JS thread (one
 * `runAsync` per step, awaited before the next step reads its logits). On the
 * JS backend, which cannot record, steps run synchronously.
 */
export async function runStepsAsync<R>(
  gen: Generator<() => Tensor<'float32'>, R, Tensor<'float32'>>,
  backend: Backend,
): Promise<R> {
  let r = noGrad(() => gen.next());
  while (!r.done) {
    const step = r.value;
    const logits = noGrad(() => (backend.name === 'js' ? step() : runAsync(step)));
    const value = logits instanceof Promise ? await logits : logits;
    r = noGrad(() => gen.next(value));
  }
  return r.value;
}

/** Batch layout of `src` ids for a seq2seq model, checked. */
function srcLayout(fn: string, src: Tensor<'int32'>, batchFirst: boolean): StepLayout {
  if (!(src instanceof Tensor) || src.dtype !== 'int32') {
    throw new TypeError(`${fn}: argument 'src' must be an int32 Tensor of token ids, got ${src instanceof Tensor ? src.dtype : typeof src}`);
  }
  if (src.ndim !== 1 && src.ndim !== 2) {
    throw new RangeError(`${fn}: argument 'src' must be [S, N] (${batchFirst ? '[N, S] batch-first' : 'or [N, S] batch-first'}) or [S], got ${formatShape(src.shape)}`);
  }
  const unbatched = src.ndim === 1;
  return { batch: unbatched ? 1 : src.shape[batchFirst ? 0 : 1]!, batchFirst, unbatched };
}

/** The stepper of an encoder-decoder model: cached, or recomputing the whole target prefix per step. */
function seq2seqStepper(
  model: Seq2SeqModel,
  src: Tensor<'int32'>,
  layout: StepLayout,
  o: ResolvedGenerate,
  bosId: number,
  kpm: MaskTensor | null,
): Stepper {
  const { transformer, fc, embedding } = model;
  const tgtEmbedding = model.tgtEmbedding ?? embedding;
  const bos = new Int32Array(layout.batch).fill(bosId);
  const encode = (): Tensor<'float32'> =>
    transformer.encoder.forward(embedding.forward(src), { srcKeyPaddingMask: kpm });
  if (o.useCache) {
    let cache: DecoderCache;
    const step = (ids: Int32Array): Tensor<'float32'> => {
      const x = tgtEmbedding.forward(idsTensor([ids], layout));
      return fc.forward(transformer.decoder.forwardStep(x, cache, { memoryKeyPaddingMask: kpm }));
    };
    return {
      first: () => {
        cache = transformer.decoder.createCache(encode(), { capacity: Math.max(1, o.maxNewTokens) });
        return step(bos);
      },
      next: (generated) => step(generated[generated.length - 1]!),
    };
  }
  let memory: Tensor<'float32'>;
  const full = (rows: readonly Int32Array[]): Tensor<'float32'> =>
    fc.forward(transformer.decoder.forward(tgtEmbedding.forward(idsTensor(rows, layout)), memory, {
      tgtMask: Transformer.generateSquareSubsequentMask(rows.length),
      memoryKeyPaddingMask: kpm,
    }));
  return {
    first: () => {
      memory = encode();
      return full([bos]);
    },
    next: (generated) => full([bos, ...generated]),
  };
}

function seq2seqSetup(fn: string, model: Seq2SeqModel, src: Tensor<'int32'>, options: Seq2SeqGenerateOptions) {
  const o = resolveGenerateOptions(fn, options, ['bosId', 'srcKeyPaddingMask']);
  const bosId = checkInt(fn, 'bosId', options.bosId, 0);
  if (!(model?.transformer instanceof Transformer)) {
    throw new TypeError(`${fn}: argument 'model' must have a 'transformer' (nn.Transformer)`);
  }
  const layout = srcLayout(fn, src, model.transformer.batchFirst);
  const stepper = seq2seqStepper(model, src, layout, o, bosId, options.srcKeyPaddingMask ?? null);
  return { gen: greedy(stepper, layout, o), backend: model.transformer.backend };
}

/**
 * Greedy decoding with an encoder-decoder model (embedding → `nn.Transformer`
 * → output projection, like the seed `TransformerModel`): encodes `src` once,
 * then runs one decoder step of one token per generated token, attending over
 * the self-attention caches and the cross-attention keys/values of the memory
 * (computed once). The first step's input is `bosId`.
 *
 * @param src token ids [S, N] ([N, S] when the transformer is batch-first; [S] unbatched).
 * @returns generated ids (without the bos) [T, N] ([N, T] batch-first, [T] unbatched), T ≤ maxNewTokens:
 *   fewer when every sequence emitted `eosId`; finished sequences are filled with `padId`.
 */
export function generateSeq2Seq(
  model: Seq2SeqModel,
  src: Tensor<'int32'>,
  options: Seq2SeqGenerateOptions,
): Tensor<'int32'> {
  return runSteps(seq2seqSetup('generateSeq2Seq', model, src, options).gen);
}

/**
 * {@link generateSeq2Seq} with each step's kernels off the JS thread (one
 * `runAsync` per step); the same tokens. `src` must not change until it settles.
 */
export async function generateSeq2SeqAsync(
  model: Seq2SeqModel,
  src: Tensor<'int32'>,
  options: Seq2SeqGenerateOptions,
): Promise<Tensor<'int32'>> {
  const { gen, backend } = seq2seqSetup('generateSeq2SeqAsync', model, src, options);
  return runStepsAsync(gen, backend);
}
