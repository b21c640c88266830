/**
 * The OpenAI routes (lib/serving/openai.ts) with the continuous-batching GenerationEngine behind them instead of
 * the one-at-a-time SequentialEngine, driven by the official `openai` client on loopback: chat and text completions
 * against the PyTorch greedy reference of the llama-chat folder, concurrent streamed and non-streamed requests that
 * equal the same requests run one at a time, an aborted stream freeing its place and KV rows, and a full queue
 * answered with 429 and Retry-After. The engine contract is the one the routes were written against.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceServer } from '../lib/serving/http';
import { loadTextModel, type ServedGenerationModel } from '../lib/serving/served-model';
import { GenerationEngine } from '../lib/serving/engine';
import type { PackedCausalModel } from '../lib/models/packed-step';

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

async function serve(model: ServedGenerationModel, options: { maxRunning?: number; maxQueued?: number } = {}): Promise<Running> {
  const engine = new GenerationEngine(model.model as unknown as PackedCausalModel, { maxRunning: options.maxRunning ?? 8, maxQueued: options.maxQueued ?? 64, prefillChunk: 8 });
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
});
