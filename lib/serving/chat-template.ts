/**
 * Chat templates as transformers' `apply_chat_template` renders them: the
 * folder's Jinja template (`chat_template.jinja`, else `chat_template.json`,
 * else `tokenizer_config.json`'s `chat_template`, a string or a list of named
 * templates of which `default` is used) rendered with `@huggingface/jinja`
 * over `messages`, `add_generation_prompt` and the special-token strings
 * (`bos_token`, `eos_token`, ...). The rendered text already holds the special
 * tokens the model expects, so it is tokenized without adding any.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Template } from '@huggingface/jinja';
import { tokenContent, type JsonObject } from '../tokenizers/load';

/** A chat message as the template sees it. */
export interface ChatMessage {
  role: string;
  content: string;
  name?: string;
}

/** The template failed (a `raise_exception` of the template, or a template error): a bad request. */
export class ChatTemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ChatTemplateError';
  }
}

const SPECIAL_KEYS = ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token'];

/** A compiled chat template with the folder's special-token strings. */
export class ChatTemplate {
  readonly source: string;
  readonly text: string;
  readonly specialTokens: Readonly<Record<string, string>>;
  readonly #template: Template;

  /**
   * @param text the Jinja source
   * @param source the file it came from (for messages)
   * @param specialTokens `bos_token`, `eos_token`, ... as strings
   * @throws Error naming `source` when the template does not parse
   */
  constructor(text: string, source: string, specialTokens: Record<string, string> = {}) {
    if (typeof text !== 'string' || text.length === 0) throw new TypeError(`${source}: the chat template must be a non-empty string`);
    this.text = text;
    this.source = source;
    this.specialTokens = { ...specialTokens };
    // Loaded with the first template: a program that imports the package root and serves no chat never needs it.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Template: Jinja } = require('@huggingface/jinja') as typeof import('@huggingface/jinja');
    try {
      this.#template = new Jinja(text);
    } catch (e) {
      throw new Error(`${source}: the chat template does not parse (${(e as Error).message})`, { cause: e });
    }
  }

  /**
   * The folder's chat template, or null when it has none. `config` is the
   * tokenizer configuration (tokenizer_config.json over special_tokens_map.json).
   * @throws Error naming the file and field for a malformed template entry
   */
  static fromFolder(dir: string, config: JsonObject): ChatTemplate | null {
    const specials: Record<string, string> = {};
    for (const k of SPECIAL_KEYS) {
      const t = tokenContent(config[k]);
      if (t !== undefined) specials[k] = t;
    }
    const jinjaFile = path.join(dir, 'chat_template.jinja');
    if (existsSync(jinjaFile)) return new ChatTemplate(readFileSync(jinjaFile, 'utf8'), jinjaFile, specials);
    const jsonFile = path.join(dir, 'chat_template.json');
    if (existsSync(jsonFile)) {
      let v: unknown;
      try {
        v = JSON.parse(readFileSync(jsonFile, 'utf8'));
      } catch (e) {
        throw new Error(`${jsonFile}: is not valid JSON (${(e as Error).message})`, { cause: e });
      }
      const t = (v as JsonObject | null)?.['chat_template'];
      if (typeof t !== 'string') throw new Error(`${jsonFile}: field 'chat_template' must be a string`);
      return new ChatTemplate(t, jsonFile, specials);
    }
    const t = config['chat_template'];
    const file = `${path.join(dir, 'tokenizer_config.json')} field 'chat_template'`;
    if (t === undefined || t === null) return null;
    if (typeof t === 'string') return new ChatTemplate(t, file, specials);
    if (Array.isArray(t)) {
      const named = t as { name?: unknown; template?: unknown }[];
      const d = named.find((x) => x?.name === 'default');
      if (!d || typeof d.template !== 'string') {
        throw new Error(`${file}: a list of named templates must hold one named 'default' (names: ${named.map((x) => JSON.stringify(x?.name)).join(', ')})`);
      }
      return new ChatTemplate(d.template, `${file} (default)`, specials);
    }
    throw new Error(`${file}: must be a string or a list of { name, template }, got ${typeof t}`);
  }

  /**
   * The prompt text of a conversation.
   * @throws ChatTemplateError when the template raises (e.g. a role it does not accept) or fails
   */
  render(messages: readonly ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    try {
      return this.#template.render({
        messages,
        add_generation_prompt: options.addGenerationPrompt ?? true,
        ...this.specialTokens,
      });
    } catch (e) {
      throw new ChatTemplateError(`the chat template (${this.source}) refused the messages: ${(e as Error)?.message ?? String(e)}`);
    }
  }
}
