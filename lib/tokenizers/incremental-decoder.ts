/**
 * Incremental detokenisation: the text of a growing token sequence, piece by
 * piece as tokens arrive, where no piece ends inside a character.
 *
 * The text a token adds is not the decode of that token alone: byte-level BPE
 * splits a multi-byte character over tokens (a lone token decodes to U+FFFD),
 * and SentencePiece decoders drop the leading space of a sequence's first
 * token. So each step decodes a short window of recent tokens (the offsets of
 * vLLM's and text-generation-inference's detokenisers): the new text is
 * decode(ids[prefix:]) minus decode(ids[prefix:read]), where [prefix, read) are
 * the tokens whose text was emitted last (at first, the last few tokens of the
 * prompt), and it is held back while it ends in U+FFFD (an incomplete UTF-8
 * sequence: more bytes may complete it). Each step costs a decode of a few
 * tokens, not of the whole sequence.
 */

/** Decodes token ids to text (special tokens handled as the caller wants them). */
export type DecodeFn = (ids: readonly number[]) => string;

/** How many prompt tokens give the first generated tokens their context (vLLM's initial offset). */
const CONTEXT_TOKENS = 5;

/**
 * Turns tokens into text pieces as they arrive (see the module comment).
 *
 * @example
 * const dec = new IncrementalDecoder((ids) => tok.decode(ids, { skipSpecialTokens: true }), promptIds);
 * for (const id of newIds) process.stdout.write(dec.push(id));
 * process.stdout.write(dec.flush());
 */
export class IncrementalDecoder {
  readonly #decode: DecodeFn;
  readonly #ids: number[];
  #prefix: number;
  #read: number;
  #prefixText: string;
  #text = '';

  /**
   * @param decode the tokenizer's decode
   * @param context the tokens before the first pushed one (the prompt); its last few give the first pieces their context
   */
  constructor(decode: DecodeFn, context: readonly number[] = []) {
    if (typeof decode !== 'function') throw new TypeError(`IncrementalDecoder: argument 'decode' must be a function, got ${typeof decode}`);
    if (!Array.isArray(context)) throw new TypeError(`IncrementalDecoder: argument 'context' must be an array of token ids, got ${typeof context}`);
    this.#decode = decode;
    this.#ids = context.slice(Math.max(0, context.length - CONTEXT_TOKENS));
    this.#prefix = 0;
    this.#read = this.#ids.length;
    this.#prefixText = this.#ids.length ? decode(this.#ids) : '';
  }

  /** All the text emitted so far (the pieces `push` and `flush` returned, joined). */
  get text(): string {
    return this.#text;
  }

  /** True while tokens are pushed whose text has not been emitted yet. */
  get pending(): boolean {
    return this.#read < this.#ids.length;
  }

  /** Adds tokens; returns the text they settle ('' while it would end inside a character). */
  push(ids: number | readonly number[]): string {
    if (typeof ids === 'number') this.#ids.push(ids);
    else for (const id of ids) this.#ids.push(id);
    return this.#emit(false);
  }

  /** The held-back rest at the end of the sequence (even if it ends in U+FFFD: no more bytes will come). */
  flush(): string {
    return this.#emit(true);
  }

  #emit(final: boolean): string {
    if (this.#read === this.#ids.length) return '';
    const full = this.#decode(this.#ids.slice(this.#prefix));
    if (!final && full.endsWith('\ufffd')) return '';
    // A decode that rewrote the window's text (a clean-up across the boundary) is sliced by length, as vLLM does.
    const piece = full.length > this.#prefixText.length ? full.slice(this.#prefixText.length) : '';
    if (!piece && !final) return '';
    this.#prefixText = this.#decode(this.#ids.slice(this.#read));
    this.#prefix = this.#read;
    this.#read = this.#ids.length;
    // The window only needs its last tokens: drop what is before it so memory stays bounded.
    if (this.#prefix > 64) {
      this.#ids.splice(0, this.#prefix);
      this.#read -= this.#prefix;
      this.#prefix = 0;
    }
    this.#text += piece;
    return piece;
  }
}
