/**
 * What a generation request is (the engine ↔ API contract) and its checks:
 * every field is validated when the request arrives, so a bad one fails
 * alone, synchronously, with a TypeError/RangeError naming the field,
 * before it can take a queue place or a KV slot.
 */
import { Rng } from '../../tensor';
import { samplingParams, type SamplingParams } from '../../models/sampling';

/** One generation request. Sampling fields follow Hugging Face's `generate`. */
export interface EngineRequest {
  /** The prompt, already tokenized (chat template applied by the caller); at least one token (an Int32Array is taken too). */
  promptIds: readonly number[];
  /** Most tokens to generate (>= 0; 0 finishes at once with 'length'). */
  maxNewTokens: number;
  /** Divides the logits before a draw (>= 0; 0 means greedy). Default 1. */
  temperature?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p, in (0, 1]. Default 1. */
  topP?: number;
  /** Keep the k most likely tokens (0: all). Default 0. */
  topK?: number;
  /** Seed of this request's own generator: the same seed gives the same tokens whatever else runs. Default random. */
  seed?: number;
  /** > 1 discourages tokens already in the prompt or the output (Hugging Face's repetition_penalty). Default 1. */
  repetitionPenalty?: number;
  /** Draw tokens (true) or take the arg-max (false, the default, as in Hugging Face). Greedy when temperature is 0. */
  doSample?: boolean;
  /** Tokens that end the sequence (finish reason 'stop'; the eos token is the last one yielded). */
  eosTokenIds?: readonly number[];
  /** Report each token's log-probability under the model (log softmax of its raw logits). */
  logprobs?: boolean;
  /** Aborting ends the stream with finish reason 'abort' and frees the request's KV rows. */
  signal?: AbortSignal;
}

/** A request after its checks, with its sampler state. */
export interface CheckedRequest {
  prompt: Int32Array;
  maxNewTokens: number;
  sampling: SamplingParams;
  rng: Rng;
  eos: ReadonlySet<number>;
  logprobs: boolean;
  signal: AbortSignal | null;
}

const KNOWN = new Set(['promptIds', 'maxNewTokens', 'temperature', 'topP', 'topK', 'seed', 'repetitionPenalty', 'doSample',
  'eosTokenIds', 'logprobs', 'signal']);

/**
 * Checks a request against the model (vocabulary, context length).
 * @throws TypeError for a wrong kind of value or an unknown field, RangeError for one out of range; each names the
 * field (`promptIds[3]`, `eosTokenIds[0]`, …) with what was expected and what was given.
 */
export function checkRequest(fn: string, req: EngineRequest, vocabSize: number, maxPositions: number): CheckedRequest {
  if (req === null || typeof req !== 'object' || Array.isArray(req)) {
    throw new TypeError(`${fn}: argument 'request' must be an object { promptIds, maxNewTokens, … }, got ${req === null ? 'null' : Array.isArray(req) ? 'an array' : typeof req}`);
  }
  for (const key of Object.keys(req)) {
    if (!KNOWN.has(key) && (req as unknown as Record<string, unknown>)[key] !== undefined) {
      throw new TypeError(`${fn}: unknown request field '${key}'; known fields: ${[...KNOWN].join(', ')}`);
    }
  }
  const ids = req.promptIds as unknown;
  if (!(Array.isArray(ids) || ids instanceof Int32Array)) {
    throw new TypeError(`${fn}: field 'promptIds' must be an array of token ids, got ${ids === null ? 'null' : typeof ids}`);
  }
  if (ids.length === 0) throw new RangeError(`${fn}: field 'promptIds' must hold at least one token, got []`);
  const prompt = new Int32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (typeof id !== 'number') throw new TypeError(`${fn}: field 'promptIds[${i}]' must be a token id (number), got ${typeof id}`);
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new RangeError(`${fn}: field 'promptIds[${i}]' must be a token id in [0, ${vocabSize}), got ${id}`);
    }
    prompt[i] = id;
  }
  const maxNew = req.maxNewTokens;
  if (typeof maxNew !== 'number') throw new TypeError(`${fn}: field 'maxNewTokens' must be an integer >= 0, got ${typeof maxNew}`);
  if (!Number.isInteger(maxNew) || maxNew < 0) throw new RangeError(`${fn}: field 'maxNewTokens' must be an integer >= 0, got ${maxNew}`);
  if (prompt.length + maxNew > maxPositions) {
    throw new RangeError(`${fn}: field 'maxNewTokens' (${maxNew}) plus the prompt's ${prompt.length} tokens exceeds the model's ${maxPositions} positions`);
  }
  const t = req.temperature;
  if (t !== undefined && typeof t !== 'number') throw new TypeError(`${fn}: field 'temperature' must be a number >= 0, got ${typeof t}`);
  if (t !== undefined && !(t >= 0 && Number.isFinite(t))) throw new RangeError(`${fn}: field 'temperature' must be a finite number >= 0, got ${t}`);
  for (const f of ['topP', 'topK', 'repetitionPenalty', 'seed'] as const) {
    if (req[f] !== undefined && typeof req[f] !== 'number') throw new TypeError(`${fn}: field '${f}' must be a number, got ${typeof req[f]}`);
  }
  // temperature 0 is greedy (OpenAI's convention); the sampler's own check wants a positive one.
  const sampling = samplingParams(fn, {
    doSample: req.doSample === undefined ? undefined : req.doSample,
    temperature: t === 0 ? undefined : t,
    topP: req.topP,
    topK: req.topK,
    repetitionPenalty: req.repetitionPenalty,
  }, 'field');
  if (t === 0) sampling.doSample = false;
  const seed = req.seed;
  if (seed !== undefined && !Number.isFinite(seed)) throw new RangeError(`${fn}: field 'seed' must be a finite number, got ${seed}`);
  const eosIds = req.eosTokenIds ?? [];
  if (!Array.isArray(eosIds)) throw new TypeError(`${fn}: field 'eosTokenIds' must be an array of token ids, got ${typeof eosIds}`);
  eosIds.forEach((id, i) => {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new (typeof id === 'number' ? RangeError : TypeError)(`${fn}: field 'eosTokenIds[${i}]' must be a token id in [0, ${vocabSize}), got ${String(id)}`);
    }
  });
  if (req.logprobs !== undefined && typeof req.logprobs !== 'boolean') {
    throw new TypeError(`${fn}: field 'logprobs' must be a boolean, got ${typeof req.logprobs}`);
  }
  const signal = req.signal ?? null;
  if (signal !== null && !(signal instanceof AbortSignal)) {
    throw new TypeError(`${fn}: field 'signal' must be an AbortSignal, got ${typeof signal}`);
  }
  return {
    prompt, maxNewTokens: maxNew, sampling, rng: seed === undefined ? new Rng() : new Rng(seed),
    eos: new Set(eosIds), logprobs: req.logprobs ?? false, signal,
  };
}
