/**
 * OpenAI's `stop` sequences on generated text: the text is cut before the
 * first occurrence of any stop string, which is not part of the output.
 * Matching is on the detokenised text, so a stop string may span any number
 * of tokens: text that could be the start of a stop string is held back until
 * the next piece shows whether it is one.
 */

/** Holds back possible stop-string prefixes and cuts the text at the first stop string. */
export class StopStringMatcher {
  readonly stops: readonly string[];
  #held = '';
  #stopped = false;

  /** @param stops non-empty strings (an empty list never stops) */
  constructor(stops: readonly string[]) {
    if (!Array.isArray(stops) || stops.some((s) => typeof s !== 'string' || s.length === 0)) {
      throw new TypeError('StopStringMatcher: argument \'stops\' must be an array of non-empty strings');
    }
    this.stops = stops;
  }

  /** True once a stop string was found (later pieces are ignored). */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** Adds a piece of text; returns the text that is certainly output (before any stop string). */
  push(piece: string): string {
    if (this.#stopped) return '';
    if (this.stops.length === 0) return piece;
    const text = this.#held + piece;
    let cut = -1;
    for (const s of this.stops) {
      const i = text.indexOf(s);
      if (i !== -1 && (cut === -1 || i < cut)) cut = i;
    }
    if (cut !== -1) {
      this.#stopped = true;
      this.#held = '';
      return text.slice(0, cut);
    }
    // Hold back the longest suffix that begins some stop string.
    let keep = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, text.length); k > keep; k--) {
        if (text.endsWith(s.slice(0, k))) {
          keep = k;
          break;
        }
      }
    }
    let at = text.length - keep;
    // Never end the output between the two halves of a surrogate pair.
    if (at > 0 && at < text.length && /[\uD800-\uDBFF]/.test(text[at - 1]!)) at--;
    this.#held = text.slice(at);
    return text.slice(0, at);
  }

  /** The held-back text at the end of generation (it turned out not to start a stop string). */
  flush(): string {
    const rest = this.#stopped ? '' : this.#held;
    this.#held = '';
    return rest;
  }
}
