/**
 * The engine's refusal: it cannot take a request now (its queue is full) or
 * any more (it is closing). Carries what an HTTP layer answers with: the
 * status (429 Too Many Requests / 503 Service Unavailable) and a
 * `Retry-After` estimate.
 */
export class EngineOverloadedError extends Error {
  readonly code = 'EENGINEOVERLOADED';

  /**
   * @param status 429 when the queue is full (retry after the estimate), 503 when the engine is closing.
   * @param retryAfterSeconds whole seconds, at least 1: a guess at when the queue will have room.
   */
  constructor(message: string, readonly status: 429 | 503, readonly retryAfterSeconds: number) {
    super(message);
    this.name = 'EngineOverloadedError';
  }
}
