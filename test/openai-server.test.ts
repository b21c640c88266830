/**
 * The OpenAI-compatible routes driven by the official `openai` client on
 * loopback: embeddings (float and base64, token inputs, dimensions) on a
 * sentence-transformers BERT folder against the feature-extraction pipeline;
 * chat and text completions, streamed and not, on a random Llama chat folder
 * against the PyTorch greedy reference (scripts/gen_serving_fixtures.py);
 * stop strings that span token boundaries; n and seeds; logprobs; an aborted
 * stream freeing its slot; concurrent streams equal to the same requests run
 * one at a time; streamed text never splitting a UTF-8 character; bad
 * requests (400 naming the field); overload (429/503 with Retry-After); and a
 * llama2.c checkpoint. Generation runs on the engine `attnode serve` builds
 * (createServingEngine: continuous batching for Llama, llama2.c and GPT-2; the
 * one-at-a-time engine only for a model without packed steps).
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceServer } from '../lib/serving/http';
import { loadTextModel, type ServedGenerationModel, type ServedTextModel } from '../lib/serving/served-model';
import { createServingEngine, type ServingEngine } from '../lib/serving/serving-engine';
import { pipeline } from '../lib/pipelines';
import { AutoTokenizer, type PreTrainedTokenizer } from '../lib/tokenizers';
import { Llama2cTokenizer } from '../lib/io/llama2c';
import { byteLevelIds, scripted } from './helpers/scripted-model';

const HF = path.join(__dirname, 'fixtures', 'hf');
const CHAT_DIR = path.join(HF, 'llama-chat');
const ST_DIR = path.join(HF, 'bert-st');
const chatRef = JSON.parse(readFileSync(path.join(CHAT_DIR, 'reference.json'), 'utf8')) as {
  chat: { messages: { role: 'system' | 'user'; content: string }[]; input_ids: number[]; greedy: number[]; text: string };
  completion: { prompt: string; input_ids: number[]; greedy: number[]; text: string };
};

interface Running {
  srv: InferenceServer;
  client: OpenAI;
  port: number;
  /** The generation engine (null for an embeddings model). */
  served: ServingEngine | null;
  close(): Promise<void>;
}

async function serve(model: ServedTextModel, options: { maxQueued?: number; maxRunning?: number; requestTimeoutMs?: number } = {}): Promise<Running> {
  const served = model.task === 'generation'
    ? createServingEngine(model.model, { maxQueued: options.maxQueued ?? 64, ...(options.maxRunning ? { maxRunning: options.maxRunning } : {}) })
    : null;
  const engine = served?.engine;
  const srv = new InferenceServer({
    openai: { model, ...(engine ? { engine } : {}) },
    batcher: { maxBatchSize: 8, maxDelayMs: 5 },
    ...(options.requestTimeoutMs ? { requestTimeoutMs: options.requestTimeoutMs } : {}),
  });
  const { port } = await srv.listen(0, '127.0.0.1');
  const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'x', maxRetries: 0 });
  return { srv, client, port, served, close: () => srv.shutdown(2_000) };
}

/** The error a call rejects with (the test fails if it resolves). */
async function errorOf(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(OpenAI.APIError);
    return e as InstanceType<typeof OpenAI.APIError>;
  }
  throw new Error('expected the request to fail');
}

async function untilIdle(srv: InferenceServer): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const s = srv.openai!.stats();
    if (s.running === 0 && s.queued === 0 && s.activeChoices === 0) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`the engine did not become idle: ${JSON.stringify(srv.openai!.stats())}`);
}

describe('POST /v1/embeddings (sentence-transformers BERT folder)', () => {
  let run: Running;
  let model: ServedTextModel;
  const texts = ['the cat sat on the mat', 'a dog', 'hello world, this is a longer sentence about nothing'];
  let want: Float32Array[];

  beforeAll(async () => {
    model = await loadTextModel(ST_DIR);
    run = await serve(model);
    const fe = await pipeline('feature-extraction', ST_DIR);
    const t = await fe(texts);
    const d = t.shape[1]!;
    want = texts.map((_, i) => t.data.slice(i * d, (i + 1) * d));
  });
  afterAll(async () => run.close());

  it('float vectors equal the feature-extraction pipeline (mean pooling + normalize from modules.json)', async () => {
    expect(model.task).toBe('embeddings');
    const r = await run.client.embeddings.create({ model: 'bert-st', input: texts, encoding_format: 'float' });
    expect(r.object).toBe('list');
    expect(r.model).toBe('bert-st');
    expect(r.data.map((d) => d.index)).toEqual([0, 1, 2]);
    r.data.forEach((d, i) => {
      expect(d.object).toBe('embedding');
      expect(d.embedding).toHaveLength(32);
      d.embedding.forEach((v, j) => expect(Math.abs(v - want[i]![j]!)).toBeLessThan(1e-5));
    });
    const tok = AutoTokenizer.fromPretrained(ST_DIR)!;
    const tokens = texts.reduce((s, t) => s + tok.encode(t).length, 0);
    expect(r.usage).toEqual({ prompt_tokens: tokens, total_tokens: tokens });
  });

  it('base64 (the client default) decodes to the same float32 values; a token-array input works', async () => {
    const viaClient = await run.client.embeddings.create({ model: 'bert-st', input: texts[0]! });
    const raw = await fetch(`http://127.0.0.1:${run.port}/v1/embeddings`, {
      method: 'POST', body: JSON.stringify({ model: 'bert-st', input: texts[0], encoding_format: 'base64' }),
    }).then((r) => r.json() as Promise<{ data: { embedding: string }[] }>);
    expect(typeof raw.data[0]!.embedding).toBe('string');
    const b = Buffer.from(raw.data[0]!.embedding, 'base64');
    const decoded = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
    expect(Array.from(decoded)).toEqual(Array.from(viaClient.data[0]!.embedding));
    expect(Array.from(decoded)).toEqual(Array.from(want[0]!));
    const ids = AutoTokenizer.fromPretrained(ST_DIR)!.encode(texts[1]!);
    const byIds = await run.client.embeddings.create({ model: 'bert-st', input: ids, encoding_format: 'float' });
    byIds.data[0]!.embedding.forEach((v, j) => expect(Math.abs(v - want[1]![j]!)).toBeLessThan(1e-5));
  });

  it('dimensions truncates and renormalises; more than the model has is a 400 naming the field', async () => {
    const r = await run.client.embeddings.create({ model: 'bert-st', input: texts[2]!, dimensions: 8, encoding_format: 'float' });
    const v = r.data[0]!.embedding;
    expect(v).toHaveLength(8);
    const head = want[2]!.slice(0, 8);
    const norm = Math.hypot(...head);
    v.forEach((x, j) => expect(Math.abs(x - head[j]! / norm)).toBeLessThan(1e-5));
    const e = await errorOf(run.client.embeddings.create({ model: 'bert-st', input: 'x', dimensions: 33 }));
    expect(e.status).toBe(400);
    expect(e.param).toBe('dimensions');
    expect(e.message).toMatch(/at most the model's 32/);
  });

  it('bad requests: 400/404 JSON naming the field', async () => {
    const cases: [Record<string, unknown>, number, string, RegExp][] = [
      [{ model: 'bert-st', input: '' }, 400, 'input', /empty string/],
      [{ model: 'bert-st', input: [1, 'a'] }, 400, 'input', /must be a string, an array of strings/],
      [{ model: 'bert-st', input: [[1, 99999]] }, 400, 'input[0]', /token id in \[0, 562\)/],
      [{ model: 'bert-st', input: 'word '.repeat(40) }, 400, 'input', /at most 32/],
      [{ model: 'bert-st', input: 'a', encoding_format: 'int8' }, 400, 'encoding_format', /'float' or 'base64'/],
      [{ model: 'bert-st', input: 'a', pooling: 'cls' }, 400, 'pooling', /unknown field 'pooling'/],
      [{ model: 'other', input: 'a' }, 404, 'model', /serves 'bert-st'/],
    ];
    for (const [body, status, param, msg] of cases) {
      const e = await errorOf(run.client.embeddings.create(body as never));
      expect(e.status, JSON.stringify(body)).toBe(status);
      expect(e.param, JSON.stringify(body)).toBe(param);
      expect(e.message).toMatch(msg);
    }
    const chat = await errorOf(run.client.chat.completions.create({ model: 'bert-st', messages: [{ role: 'user', content: 'hi' }] }));
    expect(chat.status).toBe(400);
    expect(chat.param).toBe('model');
    expect(chat.message).toMatch(/embedding model/);
  });
});

describe('chat and text completions (random Llama chat folder)', () => {
  let run: Running;
  let model: ServedGenerationModel;

  beforeAll(async () => {
    model = (await loadTextModel(CHAT_DIR)) as ServedGenerationModel;
    run = await serve(model);
  });
  afterAll(async () => run.close());

  it('runs on the continuous-batching engine', () => {
    expect(run.served!.kind).toBe('continuous');
    expect(run.served!.description).toMatch(/^continuous batching \(GenerationEngine\): up to 8 sequences per step/);
  });

  it('GET /v1/models lists the served model', async () => {
    const list = await run.client.models.list();
    expect(list.data.map((m) => m.id)).toEqual(['llama-chat']);
    expect((await run.client.models.retrieve('llama-chat')).id).toBe('llama-chat');
    expect((await errorOf(run.client.models.retrieve('gpt-4'))).status).toBe(404);
  });

  it('chat.completions.create: the template-rendered prompt and the PyTorch greedy continuation', async () => {
    const r = await run.client.chat.completions.create({
      model: 'llama-chat', messages: chatRef.chat.messages, max_tokens: 12, temperature: 0,
    });
    expect(r.object).toBe('chat.completion');
    expect(r.id).toMatch(/^chatcmpl-/);
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0]!.message).toMatchObject({ role: 'assistant', content: chatRef.chat.text });
    expect(r.usage).toEqual({
      prompt_tokens: chatRef.chat.input_ids.length, completion_tokens: chatRef.chat.greedy.length,
      total_tokens: chatRef.chat.input_ids.length + chatRef.chat.greedy.length,
    });
    expect(r.choices[0]!.finish_reason).toBe(chatRef.chat.greedy.length < 12 ? 'stop' : 'length');
  });

  it('streamed chat: role first, the same text in pieces, finish_reason, then usage with include_usage', async () => {
    const stream = await run.client.chat.completions.create({
      model: 'llama-chat', messages: chatRef.chat.messages, max_tokens: 12, temperature: 0, stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0]!.id)).toBe(true);
    const content = chunks.flatMap((c) => c.choices.map((x) => x.delta.content ?? '')).join('');
    expect(content).toBe(chatRef.chat.text);
    expect(chunks.filter((c) => c.choices[0]?.delta.content).length).toBeGreaterThan(1);
    const finish = chunks.flatMap((c) => c.choices.filter((x) => x.finish_reason !== null));
    expect(finish).toHaveLength(1);
    const last = chunks[chunks.length - 1]!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({ prompt_tokens: chatRef.chat.input_ids.length, completion_tokens: chatRef.chat.greedy.length });
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
  });

  it('completions.create, non-streamed and streamed, equal the PyTorch greedy text', async () => {
    const { prompt, greedy, text, input_ids } = chatRef.completion;
    const r = await run.client.completions.create({ model: 'llama-chat', prompt, max_tokens: 12, temperature: 0 });
    expect(r.object).toBe('text_completion');
    expect(r.choices[0]!.text).toBe(text);
    expect(r.usage).toMatchObject({ prompt_tokens: input_ids.length, completion_tokens: greedy.length });
    const stream = await run.client.completions.create({ model: 'llama-chat', prompt, max_tokens: 12, temperature: 0, stream: true });
    const pieces: string[] = [];
    let finish: string | null = null;
    for await (const c of stream) {
      pieces.push(c.choices[0]!.text);
      finish = c.choices[0]!.finish_reason ?? finish;
    }
    expect(pieces.join('')).toBe(text);
    expect(finish).toBe(greedy.length < 12 ? 'stop' : 'length');
    // A token-array prompt is used as it is.
    const byIds = await run.client.completions.create({ model: 'llama-chat', prompt: input_ids, max_tokens: 12, temperature: 0 });
    expect(byIds.choices[0]!.text).toBe(text);
  });

  it('logprobs: one per generated token, in the chat and completions shapes', async () => {
    const chat = await run.client.chat.completions.create({
      model: 'llama-chat', messages: chatRef.chat.messages, max_tokens: 6, temperature: 0, logprobs: true,
    });
    const content = chat.choices[0]!.logprobs!.content!;
    expect(content).toHaveLength(chat.usage!.completion_tokens);
    for (const t of content) {
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(Number.isFinite(t.logprob)).toBe(true);
      expect(t.top_logprobs).toEqual([]);
      expect(t.bytes).toEqual([...Buffer.from(t.token, 'utf8')]);
    }
    const comp = await run.client.completions.create({ model: 'llama-chat', prompt: 'The cat', max_tokens: 5, temperature: 0, logprobs: 0 });
    const lp = comp.choices[0]!.logprobs!;
    expect(lp.tokens).toHaveLength(5);
    expect(lp.token_logprobs).toHaveLength(5);
    expect(lp.text_offset![0]).toBe(0);
  });

  it('stop strings spanning token boundaries cut the text before them, streamed or not', async () => {
    const base = await run.client.completions.create({
      model: 'llama-chat', prompt: chatRef.completion.prompt, max_tokens: 12, temperature: 0, logprobs: 0,
    });
    const text = base.choices[0]!.text;
    const toks = base.choices[0]!.logprobs!.tokens!;
    // A stop string made of the end of one token and the start of the next (both plain text).
    const plain = (s: string): boolean => s.length > 0 && !s.includes('\ufffd');
    const at = toks.findIndex((t, i) => i + 1 < toks.length && plain(t) && plain(toks[i + 1]!) && text.includes(t + toks[i + 1]!));
    expect(at).toBeGreaterThanOrEqual(0);
    const a = toks[at]!;
    const b = toks[at + 1]!;
    const stop = a.slice(-Math.min(2, a.length)) + b.slice(0, Math.min(2, b.length));
    const cut = text.indexOf(stop);
    expect(cut).toBeGreaterThanOrEqual(0);
    const r = await run.client.completions.create({
      model: 'llama-chat', prompt: chatRef.completion.prompt, max_tokens: 12, temperature: 0, stop: ['\u0000never', stop],
    });
    expect(r.choices[0]!.text).toBe(text.slice(0, cut));
    expect(r.choices[0]!.finish_reason).toBe('stop');
    const stream = await run.client.completions.create({
      model: 'llama-chat', prompt: chatRef.completion.prompt, max_tokens: 12, temperature: 0, stop, stream: true,
    });
    const pieces: string[] = [];
    let finish: string | null = null;
    for await (const c of stream) {
      pieces.push(c.choices[0]!.text);
      finish = c.choices[0]!.finish_reason ?? finish;
    }
    expect(pieces.join('')).toBe(text.slice(0, cut));
    expect(finish).toBe('stop');
    // A stop string that never occurs changes nothing, and the held-back text is released at the end.
    const none = await run.client.completions.create({
      model: 'llama-chat', prompt: chatRef.completion.prompt, max_tokens: 12, temperature: 0, stop: `${text.slice(-1)}\u0001\u0002`,
    });
    expect(none.choices[0]!.text).toBe(text);
  });

  it('n choices; a seed makes sampling reproducible; temperature 0 is greedy', async () => {
    const req = { model: 'llama-chat', prompt: 'The dog', max_tokens: 8, temperature: 1.2, top_p: 0.95, seed: 7, n: 3 };
    const a = await run.client.completions.create(req);
    const b = await run.client.completions.create(req);
    expect(a.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(b.choices.map((c) => c.text)).toEqual(a.choices.map((c) => c.text));
    expect(new Set(a.choices.map((c) => c.text)).size).toBeGreaterThan(1);
    const g = await run.client.completions.create({ ...req, temperature: 0, n: 2 });
    expect(g.choices[0]!.text).toBe(g.choices[1]!.text);
    // Streamed chat with n = 2: each choice's pieces under its index, each with its own role chunk and finish.
    const s = await run.client.chat.completions.create({
      model: 'llama-chat', messages: chatRef.chat.messages, max_tokens: 12, temperature: 0, n: 2, stream: true,
    });
    const texts = ['', ''];
    const roles = [0, 0];
    const finishes = [0, 0];
    for await (const c of s) {
      for (const ch of c.choices) {
        texts[ch.index] += ch.delta.content ?? '';
        if (ch.delta.role) roles[ch.index]!++;
        if (ch.finish_reason) finishes[ch.index]!++;
      }
    }
    expect(texts).toEqual([chatRef.chat.text, chatRef.chat.text]);
    expect(roles).toEqual([1, 1]);
    expect(finishes).toEqual([1, 1]);
  });

  it('concurrent streams equal the same requests run one at a time (greedy)', async () => {
    const prompts = ['The cat', 'Once upon a time there', 'In the morning the bird', 'We will go to the shop', 'Yes'];
    const alone: string[] = [];
    for (const prompt of prompts) {
      alone.push((await run.client.completions.create({ model: 'llama-chat', prompt, max_tokens: 10, temperature: 0 })).choices[0]!.text);
    }
    const together = await Promise.all(prompts.map(async (prompt) => {
      const s = await run.client.completions.create({ model: 'llama-chat', prompt, max_tokens: 10, temperature: 0, stream: true });
      let t = '';
      for await (const c of s) t += c.choices[0]?.text ?? '';
      return t;
    }));
    expect(together).toEqual(alone);
  });

  it('an aborted stream frees its slot at once: the request queued behind it runs', async () => {
    // One running place, so the second request waits for the first's.
    const one = await serve(model, { maxRunning: 1 });
    try {
      const controller = new AbortController();
      const long = await one.client.completions.create(
        { model: 'llama-chat', prompt: 'The cat', max_tokens: 100, temperature: 0, stream: true },
        { signal: controller.signal },
      );
      const queued = one.client.completions.create({ model: 'llama-chat', prompt: 'A dog', max_tokens: 3, temperature: 0 });
      for (let i = 0; i < 200 && one.srv.openai!.stats().queued === 0; i++) await new Promise((r) => setTimeout(r, 5));
      expect(one.srv.openai!.stats()).toMatchObject({ running: 1, queued: 1 });
      let received = 0;
      // The client ends the iteration quietly when its own signal aborts it.
      for await (const c of long) {
        received += c.choices.length;
        if (received >= 2) controller.abort();
      }
      expect(received).toBeLessThan(10);
      const short = await queued;
      expect(short.usage!.completion_tokens).toBe(3);
      await untilIdle(one.srv);
      // The long request stopped far short of its 100 tokens, and every KV row is back.
      expect(one.srv.openai!.stats().tokensGenerated).toBeLessThan(40);
      for (let i = 0; i < 200 && one.srv.openai!.stats().kvBytesUsed > 0; i++) await new Promise((r) => setTimeout(r, 5));
      expect(one.srv.openai!.stats().kvBytesUsed).toBe(0);
    } finally {
      await one.close();
    }
  });

  it('bad requests: 400 JSON naming the field', async () => {
    const msgs = [{ role: 'user' as const, content: 'hi' }];
    const cases: [() => Promise<unknown>, string, RegExp][] = [
      [() => run.client.chat.completions.create({ model: 'llama-chat', messages: [] }), 'messages', /non-empty array/],
      [() => run.client.chat.completions.create({ model: 'llama-chat', messages: [{ role: 'robot', content: 'x' }] as never }), 'messages', /role/],
      [() => run.client.chat.completions.create({ model: 'llama-chat', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }), 'messages', /only text/],
      [() => run.client.chat.completions.create({ model: 'llama-chat', messages: [{ role: 'tool', content: 'x', tool_call_id: '1' }] }), 'messages', /Conversation roles must be system, user or assistant/],
      [() => run.client.chat.completions.create({ model: 'llama-chat', messages: msgs, temperature: 3 }), 'temperature', /\[0, 2\]/],
      [() => run.client.chat.completions.create({ model: 'llama-chat', messages: msgs, top_p: 0 }), 'top_p', /\(0, 1\]/],
      [() => run.client.chat.completions.create({ model: 'llama-chat', messages: msgs, n: 0 }), 'n', /integer in \[1, 64\]/],
      [() => run.client.chat.completions.create({ model: 'llama-chat', messages: msgs, max_tokens: 1000 }), 'max_tokens', /context of 128 tokens/],
      [() => run.client.chat.completions.create({ model: 'llama-chat', messages: msgs, max_completion_tokens: 0 }), 'max_completion_tokens', /integer in \[1,/],
      [() => run.client.chat.completions.create({ model: 'llama-chat', messages: msgs, stop: ['a', 'b', 'c', 'd', 'e'] }), 'stop', /at most 4/],
      [() => run.client.chat.completions.create({ model: 'llama-chat', messages: msgs, stop: [''] }), 'stop', /non-empty string/],
      [() => run.client.chat.completions.create({ model: 'llama-chat', messages: msgs, top_logprobs: 3, logprobs: true }), 'top_logprobs', /not supported/],
      [() => run.client.chat.completions.create({ model: 'llama-chat', messages: msgs, frequency_penalty: 0.5 }), 'frequency_penalty', /only 0/],
      [() => run.client.chat.completions.create({ model: 'llama-chat', messages: msgs, tools: [{ type: 'function', function: { name: 'f' } }] }), 'tools', /not supported/],
      [() => run.client.chat.completions.create({ model: 'llama-chat', messages: msgs, stream_options: { include_usage: true } }), 'stream_options', /only allowed with 'stream': true/],
      [() => run.client.chat.completions.create({ model: 'llama-chat', messages: msgs, best_of: 2 } as never), 'best_of', /unknown field 'best_of'/],
      [() => run.client.completions.create({ model: 'llama-chat', prompt: 'x', logprobs: 2 }), 'logprobs', /only the chosen token/],
      [() => run.client.completions.create({ model: 'llama-chat', prompt: 'x', echo: true }), 'echo', /only false/],
      [() => run.client.completions.create({ model: 'llama-chat', prompt: [[1, 5000]] }), 'prompt[0]', /token id in \[0, 319\)/],
      [() => run.client.completions.create({ model: 'llama-chat', prompt: 'x', seed: 1.5 }), 'seed', /integer/],
      [() => run.client.embeddings.create({ model: 'llama-chat', input: 'x' }), 'model', /generation model/],
    ];
    for (const [call, param, msg] of cases) {
      const e = await errorOf(call());
      expect(e.status, param).toBe(400);
      expect(e.param, String(msg)).toBe(param);
      expect(e.message).toMatch(msg);
      expect(e.type).toBe('invalid_request_error');
    }
    const wrong = await errorOf(run.client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'x' }));
    expect(wrong.status).toBe(404);
    expect(wrong.code).toBe('model_not_found');
    // Not JSON at all: the server's own 400.
    const raw = await fetch(`http://127.0.0.1:${run.port}/v1/chat/completions`, { method: 'POST', body: '{"model":' });
    expect(raw.status).toBe(400);
    expect(((await raw.json()) as { error: { code: string } }).error.code).toBe('bad_json');
  });

  it('overload: a full queue answers 429 with Retry-After, and the server recovers', async () => {
    const small = await serve(model, { maxQueued: 1, maxRunning: 1 });
    try {
      const body = { model: 'llama-chat', prompt: 'The cat', max_tokens: 60, temperature: 0 };
      const running = small.client.completions.create({ ...body, stream: true }).then(async (s) => {
        let t = '';
        for await (const c of s) t += c.choices[0]?.text ?? '';
        return t;
      });
      // Wait until the first request runs, then fill the one queue slot.
      for (let i = 0; i < 200 && small.srv.openai!.stats().running === 0; i++) await new Promise((r) => setTimeout(r, 5));
      const queued = small.client.completions.create({ ...body, max_tokens: 2 });
      for (let i = 0; i < 200 && small.srv.openai!.stats().queued === 0; i++) await new Promise((r) => setTimeout(r, 5));
      const res = await fetch(`http://127.0.0.1:${small.port}/v1/completions`, { method: 'POST', body: JSON.stringify(body) });
      expect(res.status).toBe(429);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      const err = (await res.json()) as { error: { code: string; message: string } };
      expect(err.error.code).toBe('overloaded');
      expect(err.error.message).toMatch(/queue is full/);
      const viaClient = await errorOf(small.client.chat.completions.create({ model: 'llama-chat', messages: chatRef.chat.messages }));
      expect(viaClient.status).toBe(429);
      await Promise.all([running, queued]);
      const after = await small.client.completions.create({ ...body, max_tokens: 2 });
      expect(after.usage!.completion_tokens).toBe(2);
    } finally {
      await small.close();
    }
  });

  it('a request past the server deadline is a 504 and its generation stops', async () => {
    const slow = await serve(model, { requestTimeoutMs: 5 });
    try {
      const before = slow.srv.openai!.stats().tokensGenerated;
      const e = await errorOf(slow.client.completions.create({ model: 'llama-chat', prompt: 'The cat', max_tokens: 120, temperature: 0 }));
      expect(e.status).toBe(504);
      expect(e.code).toBe('timeout');
      await untilIdle(slow.srv);
      expect(slow.srv.openai!.stats().tokensGenerated - before).toBeLessThan(120);
    } finally {
      await slow.close();
    }
  });

  it('/metrics reports the generation engine; /v1/encode answers 501 on a generation model', async () => {
    const m = (await (await fetch(`http://127.0.0.1:${run.port}/metrics`)).json()) as { generation: Record<string, number>; requests: Record<string, number> };
    expect(m.generation).toMatchObject({ running: 0, queued: 0 });
    expect(m.generation.tokensGenerated).toBeGreaterThan(0);
    expect(m.requests['POST /v1/chat/completions 200']).toBeGreaterThan(0);
    const prom = await (await fetch(`http://127.0.0.1:${run.port}/metrics?format=prometheus`)).text();
    expect(prom).toMatch(/^attnode_generation_tokens_generated \d+$/m);
    expect(prom).toMatch(/^attnode_generation_queued 0$/m);
    const enc = await fetch(`http://127.0.0.1:${run.port}/v1/encode`, { method: 'POST', body: JSON.stringify({ tokens: [1] }) });
    expect(enc.status).toBe(501);
    const gen = await fetch(`http://127.0.0.1:${run.port}/v1/generate`, { method: 'POST', body: JSON.stringify({ tokens: [1] }) });
    expect(gen.status).toBe(501);
  });
});

describe('other folders and checkpoints', () => {
  it('a folder without a chat template: chat is a 400 naming it, completions work', async () => {
    const run = await serve(await loadTextModel(path.join(HF, 'gpt2-tiny')));
    try {
      expect(run.served!.kind).toBe('continuous');
      const e = await errorOf(run.client.chat.completions.create({ model: 'gpt2-tiny', messages: [{ role: 'user', content: 'hi' }] }));
      expect(e.status).toBe(400);
      expect(e.param).toBe('messages');
      expect(e.message).toMatch(/has no chat template/);
      const r = await run.client.completions.create({ model: 'gpt2-tiny', prompt: 'The cat sat on the mat', max_tokens: 10, temperature: 0 });
      const ref = JSON.parse(readFileSync(path.join(HF, 'gpt2-tiny', 'reference.json'), 'utf8')) as { input_ids: number[]; greedy: number[] };
      const tok = AutoTokenizer.fromPretrained(path.join(HF, 'gpt2-tiny'))!;
      const want = tok.decode([...ref.input_ids, ...ref.greedy], { skipSpecialTokens: true }).slice(tok.decode(ref.input_ids).length);
      expect(r.choices[0]!.text).toBe(want);
    } finally {
      await run.close();
    }
  });

  it('a llama2.c checkpoint with its tokenizer.bin: completions equal the PyTorch greedy reference', async () => {
    const dir = path.join(__dirname, 'fixtures', 'llama2c');
    const model = await loadTextModel(path.join(dir, 'model.bin'), { tokenizer: path.join(dir, 'tokenizer.bin') });
    const run = await serve(model);
    try {
      expect(run.served!.kind).toBe('continuous');
      const ref = JSON.parse(readFileSync(path.join(dir, 'reference.json'), 'utf8')) as { prompt: number[]; greedy: number[] };
      const r = await run.client.completions.create({ model: 'model.bin', prompt: ref.prompt, max_tokens: 12, temperature: 0 });
      const tok = Llama2cTokenizer.parse(new Uint8Array(readFileSync(path.join(dir, 'tokenizer.bin'))), 326);
      expect(r.choices[0]!.text).toBe(tok.decode([...ref.prompt, ...ref.greedy]).slice(tok.decode(ref.prompt).length));
      expect(r.usage!.completion_tokens).toBe(12);
      const text = await run.client.completions.create({ model: 'model.bin', prompt: 'Once upon a time', max_tokens: 12, temperature: 0 });
      expect(text.choices[0]!.text).toBe(r.choices[0]!.text);
      expect((await errorOf(run.client.chat.completions.create({ model: 'model.bin', messages: [{ role: 'user', content: 'hi' }] }))).param).toBe('messages');
    } finally {
      await run.close();
    }
  });

  it.skipIf(!existsReal())('stories260K.bin serves completions (skipped without ../shared/real/stories260K.bin and tok512.bin)', async () => {
    const real = path.join(__dirname, '..', '..', 'shared', 'real');
    const run = await serve(await loadTextModel(path.join(real, 'stories260K.bin'), { tokenizer: path.join(real, 'tok512.bin') }));
    try {
      const r = await run.client.completions.create({ model: 'stories260K.bin', prompt: 'Once upon a time', max_tokens: 20, temperature: 0 });
      expect(r.choices[0]!.text.length).toBeGreaterThan(0);
    } finally {
      await run.close();
    }
  });

  it('streamed text never splits a UTF-8 character (a model emitting one byte token at a time)', async () => {
    const tokDir = path.join(HF, 'gpt2-tiny');
    const tok = AutoTokenizer.fromPretrained(tokDir) as PreTrainedTokenizer;
    const text = ' héllo 🙂 wörld ✓ 日本';
    const bytes = byteLevelIds(tok);
    const ids = [...new TextEncoder().encode(text)].map((b) => bytes[b]!);
    const lm = scripted([...ids, 316], tok.vocabSize);
    const served = await loadTextModel(tokDir) as ServedGenerationModel;
    const run = await serve({ ...served, model: lm as never });
    try {
      // A model without packed steps is served one request at a time, and the engine says why.
      expect(run.served!.kind).toBe('sequential');
      expect(run.served!.description).toMatch(/^one request at a time \(SequentialEngine\): \w+ has no forwardPacked\/createKVPool/);
      const s = await run.client.completions.create({ model: 'gpt2-tiny', prompt: 'The cat', max_tokens: 60, temperature: 0, stream: true });
      const pieces: string[] = [];
      let finish: string | null = null;
      for await (const c of s) {
        if (c.choices[0]!.text) pieces.push(c.choices[0]!.text);
        finish = c.choices[0]!.finish_reason ?? finish;
      }
      expect(pieces.join('')).toBe(text);
      expect(pieces).toContain('🙂');
      for (const p of pieces) {
        expect(p).not.toContain('\ufffd');
        expect(p).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
      }
      expect(finish).toBe('stop');
    } finally {
      await run.close();
    }
  });
});

function existsReal(): boolean {
  try {
    readFileSync(path.join(__dirname, '..', '..', 'shared', 'real', 'stories260K.bin'));
    return true;
  } catch {
    return false;
  }
}
