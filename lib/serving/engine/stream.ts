/**
 * The consumer side of one request: an async iterable of its tokens as the
 * engine produces them. The engine pushes without waiting for the consumer
 * (tokens queue here, at most the request's maxNewTokens), so a slow reader
 * never stalls the batch. Iterated once; leaving the loop early (`break`,
 * an exception) cancels the request like its AbortSignal would. After an
 * abort the consumer gets no further token, even one already produced.
 */

/** Why a stream ended: an eos token, maxNewTokens reached, or aborted (signal, early exit, engine closing). */
export type FinishReason = 'stop' | 'length' | 'abort';

/** One generated token. */
export interface EngineToken {
  tokenId: number;
  /** Its log-probability under the model (log softmax of the raw logits), when the request asked for logprobs. */
  logprob?: number;
}

/** The iterator's return value when the stream ends (also readable on the stream afterwards). */
export interface GenerationResult {
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
}

/** A request's tokens (see the module comment). */
export class GenerationStream implements AsyncIterable<EngineToken> {
  readonly promptTokens: number;
  #tokens: EngineToken[] = [];
  #head = 0;
  #completion = 0;
  #finish: FinishReason | null = null;
  #error: unknown = null;
  #wake: (() => void) | null = null;
  #iterated = false;
  readonly #cancel: () => void;

  /** @internal Made by the engine; `cancel` is called when the consumer leaves early. */
  constructor(promptTokens: number, cancel: () => void) {
    this.promptTokens = promptTokens;
    this.#cancel = cancel;
  }

  /** Why it ended, or null while it runs. */
  get finishReason(): FinishReason | null {
    return this.#finish;
  }

  /** Tokens produced so far (after an abort: those read before it). */
  get completionTokens(): number {
    return this.#completion;
  }

  /** @internal A new token. */
  push(token: EngineToken): void {
    if (this.#finish !== null || this.#error !== null) return;
    this.#tokens.push(token);
    this.#completion++;
    this.#signal();
  }

  /** @internal The end (ignored once ended). An abort drops the tokens not yet read. */
  finish(reason: FinishReason): void {
    if (this.#finish !== null || this.#error !== null) return;
    this.#finish = reason;
    if (reason === 'abort') {
      this.#completion -= this.#tokens.length - this.#head;
      this.#tokens = [];
      this.#head = 0;
    }
    this.#signal();
  }

  /** @internal Ends with an error the consumer's next() rejects with (after the tokens already queued). */
  fail(err: unknown): void {
    if (this.#finish !== null || this.#error !== null) return;
    this.#error = err ?? new Error('generation failed');
    this.#signal();
  }

  #signal(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  #result(): GenerationResult {
    return { finishReason: this.#finish ?? 'abort', promptTokens: this.promptTokens, completionTokens: this.#completion };
  }

  [Symbol.asyncIterator](): AsyncIterator<EngineToken, GenerationResult> {
    if (this.#iterated) throw new TypeError('GenerationStream: a stream can be iterated only once');
    this.#iterated = true;
    const next = async (): Promise<IteratorResult<EngineToken, GenerationResult>> => {
      for (;;) {
        if (this.#head < this.#tokens.length) {
          const value = this.#tokens[this.#head]!;
          this.#tokens[this.#head++] = undefined as unknown as EngineToken;
          if (this.#head > 1024 && this.#head * 2 > this.#tokens.length) {
            this.#tokens = this.#tokens.slice(this.#head);
            this.#head = 0;
          }
          return { done: false, value };
        }
        if (this.#error !== null) throw this.#error;
        if (this.#finish !== null) return { done: true, value: this.#result() };
        await new Promise<void>((resolve) => (this.#wake = resolve));
      }
    };
    const leave = async (): Promise<IteratorResult<EngineToken, GenerationResult>> => {
      if (this.#finish === null && this.#error === null) this.#cancel();
      this.finish('abort');
      return { done: true, value: this.#result() };
    };
    return { next, return: leave };
  }
}
