/**
 * The server's error responses: `{ "error": { "code", "message", "type", "param" } }` with an HTTP status.
 * `code` and `message` are the server's own shape; `type` and `param` (the request field at fault, or null)
 * are what OpenAI's API adds and its client libraries read.
 */

/** An error answered with `status` and the JSON error body. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
    readonly param: string | null = null,
  ) {
    super(message);
    this.name = 'HttpError';
  }

  /** OpenAI's error type for the status. */
  get type(): string {
    if (this.status === 429) return 'rate_limit_error';
    if (this.status === 404) return 'not_found_error';
    return this.status >= 500 ? 'server_error' : 'invalid_request_error';
  }

  /** The JSON body. */
  body(): { error: { code: string; message: string; type: string; param: string | null } } {
    return { error: { code: this.code, message: this.message, type: this.type, param: this.param } };
  }
}

/** A 400 naming the request field at fault. */
export function badField(param: string, message: string, code = 'invalid_request'): HttpError {
  return new HttpError(400, code, message, {}, param);
}
