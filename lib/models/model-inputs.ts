/**
 * The two ways a model's `forward` is called: Hugging Face's keyword form,
 * `model.forward({ inputIds, attentionMask, tokenTypeIds })`, and the
 * positional form `model.forward(inputIds, { attentionMask, ... })` that
 * the rest of attnode (generation, pipelines) uses. Both reach one
 * implementation through {@link splitModelInputs}.
 */
import { Tensor } from '../tensor';

/** The keyword form: the ids plus the forward's options in one object. */
export type ModelInputs<O> = O & { inputIds: Tensor<'int32'> };

/**
 * `[inputIds, options]` from either calling form. The keyword form takes no
 * second argument; anything else that is not a Tensor is a TypeError naming
 * what was passed.
 */
export function splitModelInputs<O extends object>(
  fn: string, first: Tensor<'int32'> | ModelInputs<O>, second: O | undefined,
): [Tensor<'int32'>, O] {
  if (first instanceof Tensor) return [first, second === undefined ? ({} as O) : second];
  if (first === null || typeof first !== 'object' || Array.isArray(first) || !('inputIds' in first)) {
    const got = first === null ? 'null' : Array.isArray(first) ? 'an array' : typeof first === 'object' ? 'an object without inputIds' : typeof first;
    throw new TypeError(`${fn}: argument 'inputs' must be an int32 Tensor [batch, seq] or an object { inputIds, attentionMask?, ... }, got ${got}`);
  }
  if (second !== undefined) {
    throw new TypeError(`${fn}: with the keyword form forward({ inputIds, ... }) pass the options in that object, not as a second argument`);
  }
  const { inputIds, ...options } = first;
  return [inputIds, options as unknown as O];
}

/** True when `forward` was called in the keyword form (its result is then an output object). */
export const isKeywordForm = (first: unknown): boolean => !(first instanceof Tensor);

/** What a causal LM's keyword-form `forward` returns (Hugging Face's field name). */
export interface CausalLMOutput {
  /** [N, t, vocab] (or [N, 1, vocab] with `lastOnly`). */
  logits: Tensor<'float32'>;
}
