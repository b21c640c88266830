/**
 * The OpenAI routes (lib/serving/openai.ts) on the continuous-batching GenerationEngine as `attnode serve` builds
 * it (createServingEngine), driven by the official `openai` client on loopback: chat and text completions against
 * the PyTorch greedy reference of the llama-chat folder, concurrent streamed and non-streamed requests that equal
 * the same requests run one at a time, an aborted stream freeing its place and KV rows, a full queue answered with
 * 429 and Retry-After, and the KV cap: a request that can never fit the pool is refused (400 naming max_tokens),
 * requests that fit wait for room, and the pool never grows.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceServer } from '../lib/serving/http';
import { loadTextModel, type ServedGenerationModel } from '../lib/serving/served-model';
import { GenerationEngine } from '../lib/serving/engine';
import { createServingEngine, type ServingEngineOptions } from '../lib/serving/serving-engine';
import { KVPool } from '../lib/nn/kv-pool';

const CHAT_DIR = path.join(__dirname, 'fixtures', 'hf', 'llama-chat');
const ref = JSON.parse(readFileSync(path.join(CHAT_DIR, 'reference.json'), 'utf8')) as {
  chat: { messages: { role: 'system' | 'user'; content: string }[]; greedy: number[]; text: string };
  completion: { prompt: string; greedy: number[]; text: string };
};

interface Running {
  srv: InferenceServer;
  client: OpenAI;
  port: number;
  engine: GenerationEngine;
}

async function serve(model: ServedGenerationModel, options: ServingEngineOptions = {}): Promise<Running> {
  const served = createServingEngine(model.model, { maxRunning: 8, maxQueued: 64, prefillChunk: 8, ...options });
  if (served.kind !== 'continuous') throw new Error(`expected continuous batching, got ${served.description}`);
  const engine = served.engine;
  expect(engine).toBeInstanceOf(GenerationEngine);
  const srv = new InferenceServer({ openai: { model, engine } });
  const { port } = await srv.listen(0, '127.0.0.1');
  return { srv, engine, port, client: new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'x', maxRetries: 0 }) };
}

describe('OpenAI routes on the GenerationEngine (llama-chat folder)', () => {
  let model: ServedGenerationModel;
  let run: Running;

  beforeAll(async () => {
    model = (await loadTextModel(CHAT_DIR)) as ServedGenerationModel;
    run = await serve(model);
  });
  afterAll(async () => {
    await run.srv.shutdown(2_000);
  });

  it('chat and completions give the PyTorch greedy text', async () => {
    const chat = await run.client.chat.completions.create({ model: 'llama-chat', messages: ref.chat.messages, max_tokens: 12, temperature: 0 });
    expect(chat.choices[0]!.message.content).toBe(ref.chat.text);
    const comp = await run.client.completions.create({ model: 'llama-chat', prompt: ref.completion.prompt, max_tokens: 12, temperature: 0 });
    expect(comp.choices[0]!.text).toBe(ref.completion.text);
  });

  it('concurrent streams and plain requests equal the same requests run one at a time', async () => {
    const prompts = ['The cat', 'Once upon a time there was', 'A', 'Node.js is a runtime for', 'Hello, my name is', 'Why'];
    const one = async (prompt: string, i: number, stream: boolean): Promise<string> => {
      const body = { model: 'llama-chat', prompt, max_tokens: 10 + 3 * i, temperature: 0 };
      if (!stream) return (await run.client.completions.create(body)).choices[0]!.text;
      let text = '';
      for await (const c of await run.client.completions.create({ ...body, stream: true })) text += c.choices[0]?.text ?? '';
      return text;
    };
    const sequential: string[] = [];
    for (let i = 0; i < prompts.length; i++) sequential.push(await one(prompts[i]!, i, false));
    const concurrent = await Promise.all(prompts.map((p, i) => one(p, i, i % 2 === 0)));
    expect(concurrent).toEqual(sequential);
  });

  it('an aborted stream frees its place and its KV rows', async () => {
    const ac = new AbortController();
    const stream = await run.client.completions.create(
      { model: 'llama-chat', prompt: 'The cat', max_tokens: 100, temperature: 0, stream: true }, { signal: ac.signal });
    let n = 0;
    try {
      for await (const _ of stream) if (++n === 3) ac.abort();
    } catch {
      // The client may end the loop with an abort error or quietly; either way the request is gone.
    }
    expect(n).toBe(3);
    // Its place goes at once; its KV rows when the step in flight (which still writes them) has run.
    for (let i = 0; i < 200 && (run.engine.stats().running > 0 || run.engine.stats().kvBytesUsed > 0); i++) await new Promise((r) => setTimeout(r, 10));
    expect(run.engine.stats()).toMatchObject({ running: 0, queued: 0, kvBytesUsed: 0 });
  });

  it('a full queue is a 429 with Retry-After, and the server recovers', async () => {
    const small = await serve(model, { maxRunning: 1, maxQueued: 1 });
    try {
      const body = { model: 'llama-chat', prompt: 'The cat', max_tokens: 40, temperature: 0 };
      const running = small.client.completions.create(body);
      for (let i = 0; i < 200 && small.engine.stats().running === 0; i++) await new Promise((r) => setTimeout(r, 5));
      const queued = small.client.completions.create({ ...body, max_tokens: 2 });
      for (let i = 0; i < 200 && small.engine.stats().queued === 0; i++) await new Promise((r) => setTimeout(r, 5));
      const res = await fetch(`http://127.0.0.1:${small.port}/v1/completions`, { method: 'POST', body: JSON.stringify(body) });
      expect(res.status).toBe(429);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('overloaded');
      await Promise.all([running, queued]);
      expect((await small.client.completions.create({ ...body, max_tokens: 2 })).usage!.completion_tokens).toBe(2);
    } finally {
      await small.srv.shutdown(2_000);
    }
  });

  it('KV cap: a request that can never fit is refused, ones that fit wait for room, the pool never grows', async () => {
    // 64 positions: less than the model's 128, so the cap (not the context) limits a request to 65 tokens.
    const perPosition = KVPool.bytesPerPosition(2, 16);
    const capped = await serve(model, { kvCacheBytes: 64 * perPosition });
    try {
      const cap = capped.engine.stats().kvBytesCap;
      expect(cap).toBe(64 * perPosition);
      expect(capped.engine.maxRequestTokens).toBe(65);
      // prompt + max_tokens within the model's context but past the pool: refused before it runs, naming the field.
      let err: unknown;
      try {
        await capped.client.completions.create({ model: 'llama-chat', prompt: 'The cat', max_tokens: 100, temperature: 0 });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(OpenAI.APIError);
      const e = err as InstanceType<typeof OpenAI.APIError>;
      expect(e.status).toBe(400);
      expect(e.param).toBe('max_tokens');
      expect(e.code).toBe('context_length_exceeded');
      expect(e.message).toMatch(/the 65 tokens one request may hold in this server's KV cache \(the model's context is 128/);
      expect(capped.engine.stats()).toMatchObject({ running: 0, queued: 0, kvBytesUsed: 0, kvBytesCap: cap });
      // A chat without max_tokens gets the room the cap leaves after its 45-token prompt.
      const chat = await capped.client.chat.completions.create({ model: 'llama-chat', messages: ref.chat.messages, temperature: 0 });
      expect(chat.usage!.prompt_tokens).toBe(45);
      expect(chat.usage!.completion_tokens).toBeLessThanOrEqual(20);
      expect(chat.choices[0]!.message.content!.startsWith(ref.chat.text)).toBe(true);
      // Four requests of ~30 positions each: two fit at a time, the others wait for KV room (not for a place).
      const prompts = ['The cat', 'Once upon a time there was', 'A', 'Hello, my name is'];
      const body = (prompt: string) => ({ model: 'llama-chat', prompt, max_tokens: 24, temperature: 0 });
      const alone: string[] = [];
      for (const p of prompts) alone.push((await capped.client.completions.create(body(p))).choices[0]!.text);
      let maxUsed = 0;
      let sawWaiting = false;
      let done = false;
      const watch = (async () => {
        while (!done) {
          const s = capped.engine.stats();
          maxUsed = Math.max(maxUsed, s.kvBytesUsed);
          if (s.queued > 0 && s.running < 8) sawWaiting = true;
          expect(s.kvBytesCap).toBe(cap);
          await new Promise((r) => setImmediate(r));
        }
      })();
      const together = await Promise.all(prompts.map(async (p) => (await capped.client.completions.create(body(p))).choices[0]!.text));
      done = true;
      await watch;
      expect(together).toEqual(alone);
      expect(sawWaiting).toBe(true);
      expect(maxUsed).toBeGreaterThan(0);
      expect(maxUsed).toBeLessThanOrEqual(cap);
      expect(capped.engine.kvPositions).toBe(64);
    } finally {
      await capped.srv.shutdown(2_000);
    }
  });
});

describe('createServingEngine (the engine attnode serve builds)', () => {
  it('continuous batching for Llama, GPT-2 and llama2.c; bad options are errors naming them', async () => {
    const gpt2 = (await loadTextModel(path.join(__dirname, 'fixtures', 'hf', 'gpt2-tiny'))) as ServedGenerationModel;
    const c = createServingEngine(gpt2.model, { maxRunning: 3, prefillChunk: 5, maxQueued: 2 });
    expect(c.kind).toBe('continuous');
    expect(c.engine).toBeInstanceOf(GenerationEngine);
    expect((c.engine as GenerationEngine).limits).toMatchObject({ maxRunning: 3, prefillChunk: 5, maxQueued: 2 });
    await c.engine.close();
    const dir = path.join(__dirname, 'fixtures', 'llama2c');
    const l2c = (await loadTextModel(path.join(dir, 'model.bin'), { tokenizer: path.join(dir, 'tokenizer.bin') })) as ServedGenerationModel;
    const e = createServingEngine(l2c.model);
    expect(e.kind).toBe('continuous');
    await e.engine.close();
    expect(() => createServingEngine(gpt2.model, null as never)).toThrow(/argument 'options' must be an object, got null/);
    expect(() => createServingEngine(gpt2.model, { kvCacheBytes: 10 })).toThrow(/option 'kvCacheBytes' must hold at least one position \(\d+ bytes for this model\), got 10/);
    expect(() => createServingEngine(gpt2.model, { maxRunning: 0 })).toThrow(/option 'maxRunning' must be an integer >= 1, got 0/);
  });
});
