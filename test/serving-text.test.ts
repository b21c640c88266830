/**
 * The pieces behind the OpenAI routes, one by one: incremental detokenisation
 * (pieces join to the whole decode, never end inside a character, stay cheap),
 * stop strings held back across pieces, chat templates from a folder's files
 * (raise_exception, named templates, the separate .jinja file), and the
 * one-at-a-time engine's contract (finish reasons, FIFO queue, overload, abort
 * of queued and running requests, early return).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { IncrementalDecoder } from '../lib/tokenizers/incremental-decoder';
import { AutoTokenizer, type PreTrainedTokenizer } from '../lib/tokenizers';
import { StopStringMatcher } from '../lib/serving/stop-strings';
import { ChatTemplate, ChatTemplateError } from '../lib/serving/chat-template';
import { EngineOverloadedError, SequentialEngine, isEngineOverloaded, type EngineToken } from '../lib/serving/sequential-engine';
import { byteLevelIds, scripted } from './helpers/scripted-model';

const HF = path.join(__dirname, 'fixtures', 'hf');

describe('IncrementalDecoder', () => {
  const tok = AutoTokenizer.fromPretrained(path.join(HF, 'gpt2-tiny')) as PreTrainedTokenizer;
  const decode = (ids: readonly number[]): string => tok.decode(ids, { skipSpecialTokens: true });

  it('pieces join to the decode of the new tokens and never end inside a character', () => {
    const text = ' The cat sat. héllo 🙂 wörld ✓ 日本!';
    const bytes = byteLevelIds(tok);
    const ids = [...new TextEncoder().encode(text)].map((b) => bytes[b]!);
    const prompt = tok.encode('Once upon a time');
    const d = new IncrementalDecoder(decode, prompt);
    const pieces: string[] = [];
    for (const id of ids) {
      const p = d.push(id);
      if (p) pieces.push(p);
    }
    const rest = d.flush();
    if (rest) pieces.push(rest);
    expect(pieces.join('')).toBe(text);
    expect(d.text).toBe(text);
    expect(pieces.some((p) => p.includes('\ufffd'))).toBe(false);
    expect(pieces).toContain('🙂');
    expect(pieces.length).toBeGreaterThan(10);
  });

  it('equals decode(prompt + new) minus decode(prompt) on BPE tokens with merges', () => {
    const prompt = tok.encode('The dog ran');
    const gen = tok.encode(' to the park, and the cat ran after the dog. They played');
    const d = new IncrementalDecoder(decode, prompt);
    let out = '';
    for (const id of gen) out += d.push(id);
    out += d.flush();
    expect(out).toBe(decode([...prompt, ...gen]).slice(decode(prompt).length));
  });

  it('decodes a window, not the whole sequence, per token', () => {
    const lengths: number[] = [];
    const d = new IncrementalDecoder((ids) => {
      lengths.push(ids.length);
      return decode(ids);
    }, tok.encode('The cat sat on the mat and looked at the sun'));
    for (let i = 0; i < 300; i++) d.push(tok.encode(' the')[0]!);
    expect(Math.max(...lengths)).toBeLessThan(12);
    expect(d.text).toBe(' the'.repeat(300));
  });

  it('flush releases an incomplete character at the end (as U+FFFD); bad arguments are TypeErrors', () => {
    const bytes = byteLevelIds(tok);
    const d = new IncrementalDecoder(decode);
    expect(d.push(bytes[0xe6]!)).toBe('');
    expect(d.pending).toBe(true);
    expect(d.flush()).toBe('\ufffd');
    expect(() => new IncrementalDecoder('x' as never)).toThrow(TypeError);
    expect(() => new IncrementalDecoder(decode, 5 as never)).toThrow(/argument 'context'/);
  });
});

describe('StopStringMatcher', () => {
  const feed = (stops: string[], pieces: string[]): { out: string; stopped: boolean } => {
    const m = new StopStringMatcher(stops);
    let out = '';
    for (const p of pieces) {
      out += m.push(p);
      if (m.stopped) return { out, stopped: true };
    }
    return { out: out + m.flush(), stopped: false };
  };

  it('cuts before a stop string spanning pieces, and holds back only possible prefixes', () => {
    expect(feed(['END'], ['Hello E', 'N', 'D and more'])).toEqual({ out: 'Hello ', stopped: true });
    const m = new StopStringMatcher(['END']);
    expect(m.push('Hello E')).toBe('Hello ');
    expect(m.push('x')).toBe('Ex');
    expect(feed(['\n\n', 'User:'], ['a\n', 'b\n', '\nUser: x'])).toEqual({ out: 'a\nb', stopped: true });
    expect(feed(['User:'], ['a Us', 'er', ': b'])).toEqual({ out: 'a ', stopped: true });
    expect(feed(['xyz'], ['abc x', 'y'])).toEqual({ out: 'abc xy', stopped: false });
    // The occurrence that starts first wins, whichever stop string it is.
    expect(feed(['cd', 'bcde'], ['abcdef'])).toEqual({ out: 'a', stopped: true });
    expect(feed([], ['a', 'b'])).toEqual({ out: 'ab', stopped: false });
  });

  it('never ends the output inside a surrogate pair; refuses empty stop strings', () => {
    const m = new StopStringMatcher(['🙂x']);
    const out = m.push('a🙂');
    expect(out).toBe('a');
    expect(m.push('y')).toBe('🙂y');
    expect(() => new StopStringMatcher([''])).toThrow(TypeError);
  });
});

describe('ChatTemplate', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'attnode-chat-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('renders messages with add_generation_prompt and the special-token strings', () => {
    const t = new ChatTemplate("{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}",
      'test', { bos_token: '<s>', eos_token: '</s>' });
    const msgs = [{ role: 'user', content: 'hi' }];
    expect(t.render(msgs)).toBe('<s>[user]hi</s>[assistant]');
    expect(t.render(msgs, { addGenerationPrompt: false })).toBe('<s>[user]hi</s>');
  });

  it("raise_exception is a ChatTemplateError carrying the template's message", () => {
    const t = new ChatTemplate("{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}ok", 'test');
    expect(() => t.render([{ role: 'system', content: 'x' }])).toThrow(ChatTemplateError);
    expect(() => t.render([{ role: 'system', content: 'x' }])).toThrow(/first must be user/);
    expect(() => new ChatTemplate('{% for %}', 'bad.jinja')).toThrow(/bad.jinja: the chat template does not parse/);
  });

  it('reads chat_template.jinja, then tokenizer_config named templates; none gives null', () => {
    expect(ChatTemplate.fromFolder(dir, {})).toBeNull();
    const named = ChatTemplate.fromFolder(dir, { chat_template: [{ name: 'tool_use', template: 'T' }, { name: 'default', template: 'D' }], bos_token: { content: '<s>' } });
    expect(named!.render([])).toBe('D');
    expect(named!.specialTokens.bos_token).toBe('<s>');
    expect(() => ChatTemplate.fromFolder(dir, { chat_template: [{ name: 'x', template: 'T' }] })).toThrow(/one named 'default'/);
    expect(() => ChatTemplate.fromFolder(dir, { chat_template: 5 })).toThrow(/chat_template'.*must be a string/);
    writeFileSync(path.join(dir, 'chat_template.jinja'), 'J{{ messages | length }}');
    expect(ChatTemplate.fromFolder(dir, { chat_template: 'C' })!.render([{ role: 'user', content: 'a' }])).toBe('J1');
  });
});

describe('SequentialEngine', () => {
  const collect = async (it: AsyncIterable<EngineToken>): Promise<{ ids: number[]; finish: string }> => {
    const iter = it[Symbol.asyncIterator]();
    const ids: number[] = [];
    for (;;) {
      const r = await iter.next();
      if (r.done) return { ids, finish: (r.value as { finishReason: string }).finishReason };
      ids.push(r.value.tokenId);
    }
  };

  it('yields the tokens with finish reasons stop (eos, yielded) and length', async () => {
    const e = new SequentialEngine(scripted([5, 6, 7, 9, 8], 16));
    expect(await collect(e.generate({ promptIds: [1, 2], maxNewTokens: 10, eosTokenIds: [9] }))).toEqual({ ids: [5, 6, 7, 9], finish: 'stop' });
    const e2 = new SequentialEngine(scripted([5, 6, 7, 9], 16));
    expect(await collect(e2.generate({ promptIds: [1], maxNewTokens: 2, eosTokenIds: [9] }))).toEqual({ ids: [5, 6], finish: 'length' });
    const withLp = new SequentialEngine(scripted([3], 16));
    const it = withLp.generate({ promptIds: [1], maxNewTokens: 1, logprobs: true })[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done).toBe(false);
    expect((first.value as EngineToken).logprob).toBeLessThanOrEqual(0);
  });

  it('runs one request at a time in FIFO order; a full queue is a 503 overload error', async () => {
    const model = scripted(Array.from({ length: 20 }, (_, i) => i % 16), 16);
    const e = new SequentialEngine(model, { maxQueued: 1, retryAfterSeconds: 2 });
    const a = collect(e.generate({ promptIds: [1], maxNewTokens: 5 }));
    const b = collect(e.generate({ promptIds: [1], maxNewTokens: 3 }));
    expect(e.stats()).toMatchObject({ running: 1, queued: 1 });
    let err: unknown;
    try {
      e.generate({ promptIds: [1], maxNewTokens: 3 });
    } catch (x) {
      err = x;
    }
    expect(err).toBeInstanceOf(EngineOverloadedError);
    expect(isEngineOverloaded(err)).toBe(true);
    expect(err).toMatchObject({ status: 503, retryAfterSeconds: 2 });
    expect((await a).ids).toHaveLength(5);
    expect((await b).ids).toHaveLength(3);
    expect(e.stats()).toMatchObject({ running: 0, queued: 0 });
    await e.close();
    expect(() => e.generate({ promptIds: [1], maxNewTokens: 1 })).toThrow(/shutting down/);
  });

  it('abort frees the slot: a queued request leaves the queue, a running one stops; so does an early return', async () => {
    const model = scripted(Array.from({ length: 60 }, () => 4), 16);
    const e = new SequentialEngine(model);
    const runningCtl = new AbortController();
    const queuedCtl = new AbortController();
    const running = e.generate({ promptIds: [1], maxNewTokens: 50, signal: runningCtl.signal })[Symbol.asyncIterator]();
    const queued = collect(e.generate({ promptIds: [1], maxNewTokens: 50, signal: queuedCtl.signal }));
    const third = collect(e.generate({ promptIds: [1], maxNewTokens: 2 }));
    queuedCtl.abort();
    expect(await queued).toEqual({ ids: [], finish: 'abort' });
    expect((await running.next()).done).toBe(false);
    runningCtl.abort();
    let r = await running.next();
    let n = 1;
    while (!r.done) {
      n++;
      r = await running.next();
    }
    expect(r.value).toEqual({ finishReason: 'abort' });
    expect(n).toBeLessThan(10);
    expect((await third).ids).toHaveLength(2);
    // Returning from the iteration (a consumer that stops reading) frees the slot too.
    const callsBefore = model.calls;
    for await (const t of e.generate({ promptIds: [1], maxNewTokens: 50 })) {
      expect(t.tokenId).toBe(4);
      break;
    }
    expect((await collect(e.generate({ promptIds: [1], maxNewTokens: 1 }))).ids).toHaveLength(1);
    expect(model.calls - callsBefore).toBeLessThan(10);
    expect(() => e.generate({ promptIds: [], maxNewTokens: 1 })).toThrow(/promptIds/);
    expect(() => new SequentialEngine(model, { maxQueued: -1 })).toThrow(/maxQueued/);
  });
});
