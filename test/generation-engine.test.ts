/**
 * GenerationEngine (continuous batching) on the small random Llama and GPT-2 fixture folders, on every available
 * backend: concurrent requests of different lengths give exactly the tokens `model.generate` gives each alone
 * (greedy; and seeded sampling, whatever the batch company), with requests joining and leaving mid-flight, prompts
 * read in chunks while others decode, requests waiting for KV room under a small cap; aborts (signal, leaving
 * the loop, before start, while queued), overload (429) and close (503), logprobs, stats, and bad requests and
 * options failing with errors that name the field.
 */
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AutoModelForCausalLM } from '../lib/models/auto';
import type { PackedCausalModel } from '../lib/models/packed-step';
import { EngineOverloadedError, GenerationEngine, SlotPool, type EngineRequest, GenerationStream } from '../lib/serving/engine';
import { checkRequest } from '../lib/serving/engine/request';
import { Scheduler, Sequence } from '../lib/serving/engine/scheduler';
import { Tensor } from '../lib/tensor';
import { backends } from './helpers/backends';

const HF = path.join(__dirname, 'fixtures', 'hf');

type Model = PackedCausalModel & { generate(ids: Tensor<'int32'>, o: object): Tensor<'int32'> };

async function load(name: string, backend: string): Promise<Model> {
  const model = await AutoModelForCausalLM.fromPretrained(path.join(HF, name));
  model.useBackend(backend as 'js' | 'native');
  return model as unknown as Model;
}

/** The new tokens `model.generate` gives one prompt alone, cut after the first eos (generate pads after it). */
function alone(model: Model, prompt: number[], o: { maxNewTokens: number; eosTokenIds?: number[] } & Record<string, unknown>): number[] {
  const { eosTokenIds, ...rest } = o;
  const out = model.generate(new Tensor(Int32Array.from(prompt), [1, prompt.length], 'int32'), { ...rest, eosTokenId: eosTokenIds ?? null });
  const gen = Array.from(out.data).slice(prompt.length);
  const cut = gen.findIndex((t) => eosTokenIds?.includes(t));
  return cut >= 0 ? gen.slice(0, cut + 1) : gen;
}

async function collect(stream: GenerationStream): Promise<number[]> {
  const tokens: number[] = [];
  for await (const t of stream) tokens.push(t.tokenId);
  return tokens;
}

/** Eight prompts of different lengths (1 … 23 tokens) over a vocabulary of `v`. */
function prompts(v: number): number[][] {
  return [5, 1, 12, 3, 23, 8, 2, 17].map((n, i) => Array.from({ length: n }, (_, k) => (k * 31 + i * 7 + 3) % v));
}

const MODELS = ['llama-gqa', 'gpt2-tiny'];

describe.each(backends)('GenerationEngine on the %s backend', (backend) => {
  it.each(MODELS)('%s: 8 concurrent greedy requests equal the same requests run one at a time', async (name) => {
    const model = await load(name, backend);
    const engine = new GenerationEngine(model, { maxRunning: 8, prefillChunk: 16 });
    const ps = prompts(model.config.vocabSize);
    const maxNew = [20, 7, 15, 30, 4, 11, 25, 9];
    const got = await Promise.all(ps.map((p, i) => collect(engine.generate({ promptIds: p, maxNewTokens: maxNew[i]! }))));
    ps.forEach((p, i) => expect(got[i]).toEqual(alone(model, p, { maxNewTokens: maxNew[i]! })));
    expect(engine.stats()).toMatchObject({ running: 0, queued: 0, kvBytesUsed: 0 });
    await engine.close();
  });

  it.each(MODELS)('%s: requests join and leave mid-flight, wait for places and KV room, and stop at eos', async (name) => {
    const model = await load(name, backend);
    const v = model.config.vocabSize;
    const ps = prompts(v);
    // Tokens greedy decoding reaches: each request stops at one of them (or its maxNewTokens).
    const eos = [alone(model, ps[0]!, { maxNewTokens: 6 })[5]!, alone(model, ps[3]!, { maxNewTokens: 9 })[8]!];
    // Room for ~3 requests' KV at once and 3 running places: the rest queue; prompts are read 4 tokens a step.
    const probe = model.createKVPool(1, { prefault: false });
    const perPosition = probe.layers * 2 * probe.kvDim * 4;
    const engine = new GenerationEngine(model, { maxRunning: 3, prefillChunk: 4, kvCacheBytes: 90 * perPosition });
    let peak = 0;
    const watch = setInterval(() => (peak = Math.max(peak, engine.stats().kvBytesUsed)), 0);
    const results: Promise<number[]>[] = [];
    const req = (i: number, maxNewTokens: number): EngineRequest => ({ promptIds: ps[i]!, maxNewTokens, eosTokenIds: eos });
    // Three first; the others join while the first ones are decoding (after A's 3rd token).
    const first = engine.generate(req(0, 25));
    const firstTokens: number[] = [];
    results.push((async () => {
      for await (const t of first) {
        firstTokens.push(t.tokenId);
        if (firstTokens.length === 3) for (let i = 3; i < 8; i++) results.push(collect(engine.generate(req(i, 5 + 3 * i))));
      }
      return firstTokens;
    })());
    results.push(collect(engine.generate(req(1, 12))), collect(engine.generate(req(2, 18))));
    await results[0];
    const got = await Promise.all(results);
    clearInterval(watch);
    // results[i] is request i: 1 and 2 were pushed before the loop of request 0 ran.
    const maxNew = [25, 12, 18, 14, 17, 20, 23, 26];
    expect(got).toHaveLength(8);
    got.forEach((tokens, i) => expect(tokens, `request ${i}`).toEqual(alone(model, ps[i]!, { maxNewTokens: maxNew[i]!, eosTokenIds: eos })));
    // Some stopped at eos before maxNewTokens, some ran to it.
    expect(got.some((t, i) => t.length < maxNew[i]! && eos.includes(t[t.length - 1]!))).toBe(true);
    expect(got.some((t, i) => t.length === maxNew[i]!)).toBe(true);
    expect(peak).toBeLessThanOrEqual(engine.stats().kvBytesCap);
    expect(engine.stats()).toMatchObject({ running: 0, queued: 0, kvBytesUsed: 0 });
    await engine.close();
  });

  it('a long prompt is read in chunks while a running stream keeps getting a token every step', async () => {
    const model = await load('llama-gqa', backend);
    const engine = new GenerationEngine(model, { maxRunning: 4, prefillChunk: 4 });
    const running = engine.generate({ promptIds: [1, 2, 3], maxNewTokens: 60 });
    let seen = 0;
    let atFirstToken = -1;
    let atSubmit = -1;
    const long = Array.from({ length: 40 }, (_, k) => (k * 13 + 5) % 96);
    let longTokens: Promise<number[]> | null = null;
    for await (const _ of running) {
      seen++;
      if (seen === 2) {
        atSubmit = seen;
        const s = engine.generate({ promptIds: long, maxNewTokens: 3 });
        longTokens = (async () => {
          const out: number[] = [];
          for await (const t of s) {
            if (atFirstToken < 0) atFirstToken = seen;
            out.push(t.tokenId);
          }
          return out;
        })();
      }
    }
    // 40 prompt tokens at 4 per step: 10 steps, each of which also gave the running stream a token.
    expect(atFirstToken - atSubmit).toBeGreaterThanOrEqual(9);
    expect(await longTokens).toEqual(alone(model, long, { maxNewTokens: 3 }));
    await engine.close();
  });

  it('seeded sampling gives a request the same tokens alone, in company, and as model.generate', async () => {
    const model = await load('gpt2-tiny', backend);
    const engine = new GenerationEngine(model, { maxRunning: 6, prefillChunk: 8 });
    const v = model.config.vocabSize;
    const target = { promptIds: [10, 20, 30, 40], maxNewTokens: 24, doSample: true, seed: 1234, temperature: 1.3, topK: 50, topP: 0.9, repetitionPenalty: 1.1 };
    const aloneTokens = await collect(engine.generate(target));
    const company = prompts(v).slice(0, 5).map((p, i) => engine.generate({ promptIds: p, maxNewTokens: 10 + 5 * i, doSample: true, seed: i }));
    const [withCompany] = await Promise.all([collect(engine.generate(target)), ...company.map(collect)]);
    expect(withCompany).toEqual(aloneTokens);
    const { promptIds, ...o } = target;
    expect(aloneTokens).toEqual(alone(model, promptIds, o));
    // Another seed gives other tokens (the seed is really used).
    expect(await collect(engine.generate({ ...target, seed: 99 }))).not.toEqual(aloneTokens);
    // temperature 0 is greedy whatever doSample says.
    expect(await collect(engine.generate({ ...target, temperature: 0 }))).toEqual(alone(model, promptIds, { maxNewTokens: 24, repetitionPenalty: 1.1 }));
    await engine.close();
  });

  it('logprobs are the log-softmax of the logits that picked each token', async () => {
    const model = await load('llama-gqa', backend);
    const engine = new GenerationEngine(model, {});
    const prompt = [4, 8, 15, 16];
    const stream = engine.generate({ promptIds: prompt, maxNewTokens: 5, logprobs: true });
    const seq = [...prompt];
    for await (const t of stream) {
      const logits = model.forward(new Tensor(Int32Array.from(seq), [1, seq.length], 'int32'), { cache: model.createCache(1, seq.length), lastOnly: true }).data;
      const max = Math.max(...logits);
      const lse = max + Math.log(logits.reduce((s, x) => s + Math.exp(x - max), 0));
      expect(t.logprob).toBeCloseTo(logits[t.tokenId]! - lse, 4);
      seq.push(t.tokenId);
    }
    expect(stream.finishReason).toBe('length');
    expect(stream.completionTokens).toBe(5);
    await engine.close();
  });

  it('aborts: by signal mid-stream, by leaving the loop, before start and while queued; the others are unaffected', async () => {
    const model = await load('llama-gqa', backend);
    const engine = new GenerationEngine(model, { maxRunning: 2, maxQueued: 4 });
    const ps = prompts(96);
    const ac = new AbortController();
    const aborted = engine.generate({ promptIds: ps[0]!, maxNewTokens: 50, signal: ac.signal });
    const other = collect(engine.generate({ promptIds: ps[1]!, maxNewTokens: 30 }));
    const queuedAc = new AbortController();
    const queued = engine.generate({ promptIds: ps[2]!, maxNewTokens: 10, signal: queuedAc.signal });
    expect(engine.stats().queued).toBe(1);
    queuedAc.abort();
    expect(engine.stats().queued).toBe(0);
    expect(await collect(queued)).toEqual([]);
    expect(queued.finishReason).toBe('abort');
    let n = 0;
    for await (const _ of aborted) if (++n === 4) ac.abort();
    expect(n).toBe(4);
    expect(aborted.finishReason).toBe('abort');
    // Leaving the loop early is an abort too.
    const left = engine.generate({ promptIds: ps[3]!, maxNewTokens: 40 });
    for await (const _ of left) break;
    expect(left.finishReason).toBe('abort');
    const pre = new AbortController();
    pre.abort();
    const never = engine.generate({ promptIds: ps[4]!, maxNewTokens: 5, signal: pre.signal });
    expect(await collect(never)).toEqual([]);
    expect(await other).toEqual(alone(model, ps[1]!, { maxNewTokens: 30 }));
    // Every KV range came back.
    await new Promise((r) => setTimeout(r, 20));
    expect(engine.stats()).toMatchObject({ running: 0, queued: 0, kvBytesUsed: 0 });
    await engine.close();
  });
});

describe('GenerationEngine limits and errors', () => {
  it('refuses past maxQueued with 429 and after close with 503; close({ abort: true }) ends what runs with abort', async () => {
    const model = await load('llama-gqa', 'js');
    const engine = new GenerationEngine(model, { maxRunning: 1, maxQueued: 1 });
    const a = engine.generate({ promptIds: [1, 2], maxNewTokens: 40 });
    const b = engine.generate({ promptIds: [3], maxNewTokens: 40 });
    expect(engine.stats()).toMatchObject({ running: 1, queued: 1 });
    let err: unknown;
    try {
      engine.generate({ promptIds: [4], maxNewTokens: 4 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EngineOverloadedError);
    expect((err as EngineOverloadedError).status).toBe(429);
    expect((err as EngineOverloadedError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect((err as Error).message).toMatch(/the generation queue is full \(1 requests waiting, option maxQueued\)/);
    const aTokens = collect(a);
    await engine.close({ abort: true });
    await aTokens;
    expect(a.finishReason).toBe('abort');
    expect(b.finishReason).toBe('abort');
    expect(() => engine.generate({ promptIds: [4], maxNewTokens: 4 })).toThrow(expect.objectContaining({ status: 503, name: 'EngineOverloadedError' }));
  });

  it('close() lets the running and queued requests finish, refusing new ones meanwhile', async () => {
    const model = await load('llama-gqa', 'js');
    const engine = new GenerationEngine(model, { maxRunning: 1, maxQueued: 4 });
    const a = engine.generate({ promptIds: [1, 2], maxNewTokens: 6 });
    const b = engine.generate({ promptIds: [3], maxNewTokens: 5 });
    const tokens = Promise.all([collect(a), collect(b)]);
    const closed = engine.close();
    expect(() => engine.generate({ promptIds: [4], maxNewTokens: 4 })).toThrow(/shutting down/);
    await closed;
    const [ta, tb] = await tokens;
    expect([a.finishReason, b.finishReason]).toEqual(['length', 'length']);
    expect(ta).toEqual(alone(model, [1, 2], { maxNewTokens: 6 }));
    expect(tb).toEqual(alone(model, [3], { maxNewTokens: 5 }));
  });

  it('bad requests fail synchronously, naming the field', async () => {
    const model = await load('gpt2-tiny', 'js');
    const probe = model.createKVPool(1, { prefault: false });
    const engine = new GenerationEngine(model, { kvCacheBytes: 40 * probe.layers * 2 * probe.kvDim * 4 });
    const g = (r: unknown): unknown => engine.generate(r as EngineRequest);
    const ok = { promptIds: [1, 2], maxNewTokens: 3 };
    expect(() => g(null)).toThrow(/argument 'request' must be an object/);
    expect(() => g({ ...ok, promptIds: [] })).toThrow(RangeError);
    expect(() => g({ ...ok, promptIds: 'hi' })).toThrow(/field 'promptIds' must be an array of token ids/);
    expect(() => g({ ...ok, promptIds: [1, 2, 317] })).toThrow(/field 'promptIds\[2\]' must be a token id in \[0, 317\), got 317/);
    expect(() => g({ ...ok, promptIds: [1, '2'] })).toThrow(TypeError);
    expect(() => g({ ...ok, maxNewTokens: -1 })).toThrow(/field 'maxNewTokens' must be an integer >= 0, got -1/);
    expect(() => g({ ...ok, maxNewTokens: '3' })).toThrow(TypeError);
    expect(() => g({ ...ok, maxNewTokens: 63 })).toThrow(/field 'maxNewTokens' \(63\) plus the prompt's 2 tokens exceeds the model's 64 positions/);
    expect(() => g({ ...ok, maxNewTokens: 50 })).toThrow(/needs 51 KV positions, but the engine's pool holds 40 \(option kvCacheBytes\)/);
    expect(() => g({ ...ok, temperature: -1 })).toThrow(/field 'temperature' must be a finite number >= 0, got -1/);
    expect(() => g({ ...ok, topP: 2 })).toThrow(/field 'topP' must be in \(0, 1\]/);
    expect(() => g({ ...ok, topK: -3 })).toThrow(/field 'topK'/);
    expect(() => g({ ...ok, repetitionPenalty: 'high' })).toThrow(/field 'repetitionPenalty' must be a number/);
    expect(() => g({ ...ok, doSample: 'yes' })).toThrow(/field 'doSample' must be a boolean/);
    expect(() => g({ ...ok, seed: Infinity })).toThrow(/field 'seed' must be a finite number/);
    expect(() => g({ ...ok, eosTokenIds: [5, 400] })).toThrow(/field 'eosTokenIds\[1\]' must be a token id in \[0, 317\), got 400/);
    expect(() => g({ ...ok, eosTokenIds: 5 })).toThrow(/field 'eosTokenIds' must be an array/);
    expect(() => g({ ...ok, logprobs: 1 })).toThrow(/field 'logprobs' must be a boolean/);
    expect(() => g({ ...ok, signal: {} })).toThrow(/field 'signal' must be an AbortSignal/);
    expect(() => g({ ...ok, max_tokens: 4 })).toThrow(/unknown request field 'max_tokens'/);
    expect(engine.stats()).toMatchObject({ running: 0, queued: 0 });
    // maxNewTokens 0: nothing to do.
    const none = engine.generate({ ...ok, maxNewTokens: 0 });
    expect(await collect(none)).toEqual([]);
    expect(none.finishReason).toBe('length');
    await engine.close();
  });

  it('bad options fail naming the option', async () => {
    const model = await load('gpt2-tiny', 'js');
    expect(() => new GenerationEngine({} as PackedCausalModel)).toThrow(/argument 'model' must be a causal LM with forwardPacked/);
    expect(() => new GenerationEngine(model, { maxRunning: 0 })).toThrow(/option 'maxRunning' must be an integer >= 1, got 0/);
    expect(() => new GenerationEngine(model, { maxQueued: -1 })).toThrow(/option 'maxQueued' must be an integer >= 0/);
    expect(() => new GenerationEngine(model, { prefillChunk: 1.5 })).toThrow(/option 'prefillChunk'/);
    expect(() => new GenerationEngine(model, { kvCacheBytes: 100 })).toThrow(/option 'kvCacheBytes' must hold at least one position \(512 bytes for this model\), got 100/);
    expect(() => new GenerationEngine(model, { maxBatch: 4 } as never)).toThrow(/unknown option 'maxBatch'/);
    expect(() => new GenerationEngine(model, { kvCacheBytes: '1G' as unknown as number })).toThrow(TypeError);
  });

  it('a stream is iterated once', async () => {
    const model = await load('gpt2-tiny', 'js');
    const engine = new GenerationEngine(model);
    const s = engine.generate({ promptIds: [1], maxNewTokens: 2 });
    await collect(s);
    expect(() => s[Symbol.asyncIterator]()).toThrow(/can be iterated only once/);
    await engine.close();
  });
});

describe('SlotPool', () => {
  it('takes ranges first-fit and merges freed neighbours', () => {
    const p = new SlotPool(10);
    expect(p.allocate(4)).toBe(0);
    expect(p.allocate(3)).toBe(4);
    expect(p.allocate(4)).toBeNull();
    expect(p.allocate(3)).toBe(7);
    expect(p.used).toBe(10);
    p.release(4);
    expect(p.largestFree).toBe(3);
    p.release(0);
    expect(p.largestFree).toBe(7);
    expect(p.allocate(6)).toBe(0);
    p.release(7);
    p.release(0);
    expect(p.largestFree).toBe(10);
    expect(p.used).toBe(0);
    expect(p.count).toBe(0);
  });

  it('names the bad argument', () => {
    const p = new SlotPool(4);
    expect(() => p.allocate(0)).toThrow(RangeError);
    expect(() => p.release(2)).toThrow(/argument 'start' must be the start of a taken range, got 2/);
    expect(() => new SlotPool(0)).toThrow(RangeError);
  });
});

describe('Scheduler', () => {
  let id = 0;
  const seq = (prompt: number, maxNewTokens: number): Sequence => {
    const req = checkRequest('test', { promptIds: Array.from({ length: prompt }, (_, k) => k % 50), maxNewTokens }, 50, 1000);
    return new Sequence(id++, req, new GenerationStream(prompt, () => {}));
  };

  it('admits the queue head while a place and a KV range are free, first come first served', () => {
    const slots = new SlotPool(30);
    const s = new Scheduler(slots, { maxRunning: 3, maxQueued: 10, prefillChunk: 8 });
    const [a, b, c] = [seq(10, 11), seq(5, 6), seq(2, 3)]; // need 20, 10, 4
    [a, b, c].forEach((x) => s.enqueue(x));
    expect(s.admit()).toEqual([a, b]);
    // c would fit a place but not the KV left (0 of 30 free): it waits although only 2 of 3 places are taken.
    expect(s.running).toBe(2);
    expect(s.queued).toBe(1);
    s.remove(b);
    expect(s.admit()).toEqual([c]);
    expect(slots.used).toBe(24);
  });

  it('builds steps from every pending token plus prompt chunks within the budget, logits only for a prompt end', () => {
    const s = new Scheduler(new SlotPool(200), { maxRunning: 4, maxQueued: 10, prefillChunk: 8 });
    const [a, b, c] = [seq(3, 5), seq(6, 5), seq(20, 5)];
    [a, b, c].forEach((x) => s.enqueue(x));
    s.admit();
    let step = s.nextStep();
    expect(step.map((e) => [e.seq.id, e.ids.length, e.logits])).toEqual([[a.id, 3, true], [b.id, 5, false]]);
    // a decodes; b reads its last token and c its first 7.
    a.cached = 3;
    a.pending = 7;
    b.cached = 5;
    step = s.nextStep();
    expect(step.map((e) => [e.seq.id, Array.from(e.ids), e.logits])).toEqual([[a.id, [7], true], [b.id, [5], true], [c.id, [0, 1, 2, 3, 4, 5, 6], false]]);
  });

  it('a sequence removed while in a step keeps its KV range until the step settles', () => {
    const slots = new SlotPool(50);
    const s = new Scheduler(slots, { maxRunning: 2, maxQueued: 10, prefillChunk: 8 });
    const a = seq(4, 4);
    s.enqueue(a);
    s.admit();
    const step = s.nextStep();
    step.forEach((e) => (e.seq.inStep = true));
    s.remove(a);
    expect(s.running).toBe(0);
    expect(slots.used).toBe(7);
    s.settle(step);
    expect(slots.used).toBe(0);
  });
});
