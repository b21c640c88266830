/**
 * Request bodies of the OpenAI routes, checked field by field against
 * OpenAI's API (the `openai` package's `EmbeddingCreateParams`,
 * `CompletionCreateParams`, `ChatCompletionCreateParams`): every mistake is a
 * 400 naming the field (`param`), the expected and the actual value. `null`
 * means "not given", as in OpenAI's API. Fields a local model cannot honour
 * (tools, penalties, logit bias, ...) are accepted only at their neutral value;
 * fields that change nothing here (user, metadata, store, ...) are ignored;
 * any other field is refused, so a misspelt option is never silently ignored.
 */
import { badField, HttpError } from './http-error';
import type { ChatMessage } from './chat-template';

export type Body = Record<string, unknown>;

const show = (v: unknown): string => (v === undefined ? 'nothing' : JSON.stringify(v) ?? String(v));

/** Fields that change nothing for a local model (accepted and ignored). */
const IGNORED = ['user', 'metadata', 'store', 'service_tier', 'safety_identifier', 'prompt_cache_key', 'prompt_cache_retention',
  'prompt_cache_options', 'parallel_tool_calls'];

/** Fields accepted only at a neutral value: name → (is the value neutral?, what is supported). */
type Neutral = Record<string, [(v: unknown) => boolean, string]>;

const isEmptyObject = (v: unknown): boolean => v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0;

const COMMON_NEUTRAL: Neutral = {
  frequency_penalty: [(v) => v === 0, 'only 0 (use repetition_penalty)'],
  presence_penalty: [(v) => v === 0, 'only 0 (use repetition_penalty)'],
  logit_bias: [isEmptyObject, 'only {}'],
};

const CHAT_NEUTRAL: Neutral = {
  ...COMMON_NEUTRAL,
  tools: [(v) => Array.isArray(v) && v.length === 0, 'no tools: this server does not call functions'],
  tool_choice: [(v) => v === 'none', "only 'none'"],
  functions: [(v) => Array.isArray(v) && v.length === 0, 'no functions'],
  function_call: [(v) => v === 'none', "only 'none'"],
  response_format: [(v) => (v as { type?: unknown })?.type === 'text', "only { type: 'text' }"],
  modalities: [(v) => Array.isArray(v) && v.length === 1 && v[0] === 'text', "only ['text']"],
  audio: [() => false, 'no audio output'],
  prediction: [() => false, 'no predicted outputs'],
  web_search_options: [() => false, 'no web search'],
  moderation: [() => false, 'no moderation'],
  reasoning_effort: [() => false, 'no reasoning models'],
  verbosity: [() => false, 'no verbosity control'],
};

const COMPLETION_NEUTRAL: Neutral = {
  ...COMMON_NEUTRAL,
  echo: [(v) => v === false, 'only false'],
  suffix: [(v) => v === '', "only ''"],
  best_of: [(v) => v === 1, 'only 1 (use n for several choices)'],
};

/** Refuses unknown fields and non-neutral values of unsupported ones; `known` are the fields the route reads. */
export function checkFields(body: Body, known: readonly string[], neutral: Neutral = {}): void {
  for (const [k, v] of Object.entries(body)) {
    if (known.includes(k) || IGNORED.includes(k) || v === null) continue;
    const n = neutral[k];
    if (n) {
      if (!n[0](v)) throw badField(k, `'${k}' ${show(v)} is not supported: ${n[1]}`, 'unsupported_parameter');
      continue;
    }
    throw badField(k, `unknown field '${k}'; this route reads ${known.join(', ')}`, 'unknown_parameter');
  }
}

/** The `model` field: it must name the served model. */
export function checkModel(body: Body, id: string): void {
  const m = body.model;
  if (typeof m !== 'string' || m === '') throw badField('model', `'model' must be a string naming the model ('${id}'), got ${show(m)}`);
  if (m !== id) throw new HttpError(404, 'model_not_found', `the model '${m}' does not exist; this server serves '${id}' (GET /v1/models)`, {}, 'model');
}

/** An optional integer field in [min, max] (undefined when absent or null). */
export function optInt(body: Body, name: string, min: number, max: number): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw badField(name, `'${name}' must be an integer in [${min}, ${max}], got ${show(v)}`);
  }
  return v;
}

/** An optional number field in [min, max] (`min` exclusive with `openMin`). */
export function optNum(body: Body, name: string, min: number, max: number, openMin = false): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || (openMin ? v <= min : v < min) || v > max) {
    throw badField(name, `'${name}' must be a number in ${openMin ? '(' : '['}${min}, ${max}], got ${show(v)}`);
  }
  return v;
}

/** An optional boolean field. */
export function optBool(body: Body, name: string): boolean | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw badField(name, `'${name}' must be true or false, got ${show(v)}`);
  return v;
}

/** Token ids: integers in [0, vocabSize), at least one. */
export function tokenIds(v: unknown, where: string, vocabSize: number): number[] {
  if (!Array.isArray(v) || v.length === 0) throw badField(where, `'${where}' must be a non-empty array of token ids, got ${show(v)}`);
  for (let i = 0; i < v.length; i++) {
    const t = v[i];
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t >= vocabSize) {
      throw badField(where, `'${where}[${i}]' must be a token id in [0, ${vocabSize}), got ${show(t)}`, 'token_out_of_range');
    }
  }
  return v as number[];
}

/**
 * A text-or-tokens input field (`input` of embeddings, `prompt` of completions): a string, an array of strings, a
 * token array or an array of token arrays → one entry per text.
 */
export function textsOrTokens(body: Body, name: string, vocabSize: number, maxItems: number): (string | number[])[] {
  const v = body[name];
  const fail = (): never => {
    throw badField(name, `'${name}' must be a string, an array of strings, an array of token ids or an array of token-id arrays, got ${show(v)}`);
  };
  if (typeof v === 'string') {
    if (v === '') throw badField(name, `'${name}' is an empty string`);
    return [v];
  }
  if (!Array.isArray(v) || v.length === 0) return fail();
  let items: (string | number[])[];
  if (v.every((x) => typeof x === 'number')) items = [tokenIds(v, name, vocabSize)];
  else if (v.every((x) => typeof x === 'string')) {
    v.forEach((x, i) => {
      if (x === '') throw badField(name, `'${name}[${i}]' is an empty string`);
    });
    items = v as string[];
  } else if (v.every((x) => Array.isArray(x))) items = v.map((x, i) => tokenIds(x, `${name}[${i}]`, vocabSize));
  else return fail();
  if (items.length > maxItems) throw badField(name, `'${name}' holds ${items.length} items; the limit is ${maxItems}`, 'too_many_inputs');
  return items;
}

/** The generation options of a completions or chat request, checked. */
export interface GenerationParams {
  /** Undefined: the route's default. */
  maxTokens: number | undefined;
  /** Which field gave maxTokens (for messages). */
  maxTokensField: string;
  /** 0: greedy. Default 1, as OpenAI. */
  temperature: number;
  topP: number;
  topK: number | undefined;
  repetitionPenalty: number | undefined;
  seed: number | undefined;
  n: number;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
  logprobs: boolean;
}

/** Reads the options both generation routes share, and refuses the unsupported ones (`kind` picks the tables). */
export function generationParams(body: Body, kind: 'chat' | 'completions', known: readonly string[], maxChoices: number): GenerationParams {
  checkFields(body, known, kind === 'chat' ? CHAT_NEUTRAL : COMPLETION_NEUTRAL);
  const maxTokensField = kind === 'chat' && body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
  const maxTokens = optInt(body, maxTokensField, 1, 2 ** 31 - 1);
  const stopV = body.stop;
  let stop: string[] = [];
  if (typeof stopV === 'string') stop = [stopV];
  else if (Array.isArray(stopV)) stop = stopV as string[];
  else if (stopV !== undefined && stopV !== null) throw badField('stop', `'stop' must be a string or an array of up to 4 strings, got ${show(stopV)}`);
  if (stop.length > 4) throw badField('stop', `'stop' holds ${stop.length} strings; at most 4 are allowed`);
  stop.forEach((s, i) => {
    if (typeof s !== 'string' || s === '') throw badField('stop', `'stop[${i}]' must be a non-empty string, got ${show(s)}`);
  });
  const stream = optBool(body, 'stream') ?? false;
  const so = body.stream_options;
  let includeUsage = false;
  if (so !== undefined && so !== null) {
    if (!stream) throw badField('stream_options', "'stream_options' is only allowed with 'stream': true");
    if (typeof so !== 'object' || Array.isArray(so)) throw badField('stream_options', `'stream_options' must be an object, got ${show(so)}`);
    for (const k of Object.keys(so)) {
      if (k !== 'include_usage' && k !== 'include_obfuscation') throw badField('stream_options', `unknown field 'stream_options.${k}' (include_usage)`);
    }
    const iu = (so as Body).include_usage;
    if (iu !== undefined && iu !== null && typeof iu !== 'boolean') throw badField('stream_options', `'stream_options.include_usage' must be a boolean, got ${show(iu)}`);
    includeUsage = iu === true;
  }
  let logprobs: boolean;
  if (kind === 'chat') {
    logprobs = optBool(body, 'logprobs') ?? false;
    const top = optInt(body, 'top_logprobs', 0, 20);
    if (top !== undefined && top > 0) {
      throw badField('top_logprobs', `'top_logprobs' ${top} is not supported: only the chosen token's log-probability is computed (0)`, 'unsupported_parameter');
    }
  } else {
    const lp = optInt(body, 'logprobs', 0, 5);
    if (lp !== undefined && lp > 0) {
      throw badField('logprobs', `'logprobs' ${lp} is not supported: only the chosen token's log-probability is computed (0)`, 'unsupported_parameter');
    }
    logprobs = lp === 0;
  }
  const topK = optInt(body, 'top_k', -1, 2 ** 31 - 1);
  return {
    maxTokens, maxTokensField,
    temperature: optNum(body, 'temperature', 0, 2) ?? 1,
    topP: optNum(body, 'top_p', 0, 1, true) ?? 1,
    topK: topK === undefined || topK <= 0 ? undefined : topK,
    repetitionPenalty: optNum(body, 'repetition_penalty', 0, 100, true),
    seed: optInt(body, 'seed', -(2 ** 53) + 1, 2 ** 53 - 1),
    n: optInt(body, 'n', 1, maxChoices) ?? 1,
    stop, stream, includeUsage, logprobs,
  };
}

const ROLES = ['system', 'developer', 'user', 'assistant', 'tool'];

/** `messages` of a chat request → the template's messages (text parts joined; `developer` becomes `system`). */
export function chatMessages(body: Body): ChatMessage[] {
  const v = body.messages;
  if (!Array.isArray(v) || v.length === 0) throw badField('messages', `'messages' must be a non-empty array of messages, got ${show(v)}`);
  return v.map((m: unknown, i) => {
    const where = `messages[${i}]`;
    if (m === null || typeof m !== 'object' || Array.isArray(m)) throw badField('messages', `'${where}' must be an object { role, content }, got ${show(m)}`);
    const msg = m as Body;
    const role = msg.role;
    if (typeof role !== 'string' || !ROLES.includes(role)) {
      throw badField('messages', `'${where}.role' must be one of ${ROLES.join(', ')}, got ${show(role)}`);
    }
    let content: string;
    const c = msg.content;
    if (typeof c === 'string') content = c;
    else if (c === null || c === undefined) {
      if (role !== 'assistant') throw badField('messages', `'${where}.content' must be a string or an array of text parts, got ${show(c)}`);
      content = '';
    } else if (Array.isArray(c)) {
      content = c.map((p: unknown, j) => {
        const part = p as Body | null;
        if (part?.type !== 'text' || typeof part.text !== 'string') {
          throw badField('messages', `'${where}.content[${j}]' must be a text part { type: 'text', text }, got ${part?.type === undefined ? show(p) : `type ${show(part.type)}`} (only text is supported)`);
        }
        return part.text;
      }).join('');
    } else throw badField('messages', `'${where}.content' must be a string or an array of text parts, got ${show(c)}`);
    const out: ChatMessage = { role: role === 'developer' ? 'system' : role, content };
    if (typeof msg.name === 'string') out.name = msg.name;
    return out;
  });
}
