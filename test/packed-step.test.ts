/**
 * forwardPacked (continuous batching's step) on the Llama-family and GPT-2 fixture folders and the llama2.c
 * checkpoint, on every available backend: sequences at scattered pool places and different positions, prompts
 * in chunks interleaved with other sequences' decode tokens, a sequence leaving and its rows reused by a new one —
 * every logits row against `model.forward` over that sequence's whole history. Also the same steps recorded with
 * runAsync, the KVPool itself, and the errors naming the sequence and field.
 */
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runAsyncOn } from '../lib/async';
import { loadLlama2c } from '../lib/io/llama2c';
import { AutoModelForCausalLM } from '../lib/models/auto';
import type { PackedCausalModel, PackedSequence } from '../lib/models/packed-step';
import { KVPool } from '../lib/nn/kv-pool';
import { Tensor } from '../lib/tensor';
import { backends } from './helpers/backends';

const HF = path.join(__dirname, 'fixtures', 'hf');
const FOLDERS = ['llama-gqa', 'llama3-bf16-tied', 'qwen2-bias', 'gpt2-tiny'];

async function load(name: string, backend: string): Promise<PackedCausalModel & { useBackend(b: string): unknown }> {
  const model = name === 'stories260K'
    ? (await loadLlama2c(path.join(__dirname, 'fixtures', 'llama2c', 'model.bin'))).model
    : await AutoModelForCausalLM.fromPretrained(path.join(HF, name));
  model.useBackend(backend as 'js' | 'native');
  return model as unknown as PackedCausalModel & { useBackend(b: string): unknown };
}

/** Last-position logits of `ids` run through `model.forward` from scratch. */
function reference(model: PackedCausalModel, ids: number[]): Float32Array {
  return model.forward(new Tensor(Int32Array.from(ids), [1, ids.length], 'int32'), { cache: model.createCache(1, ids.length), lastOnly: true }).contiguous().data;
}

interface Seq { start: number; history: number[]; cached: number }

/**
 * The scenario: A's 11-token prompt in chunks of 4/4/3 while B (3-token prompt) and then C decode; B leaves and D
 * takes B's rows; steps run through `run` (sync or async). Each step's logits rows are checked against the
 * reference.
 */
async function scenario(model: PackedCausalModel, run: (seqs: PackedSequence[], pool: KVPool) => Promise<Tensor<'float32'>>): Promise<number> {
  const v = model.config.vocabSize;
  const pool = model.createKVPool(64);
  const tok = (k: number): number => (k * 37 + 11) % v;
  const a: Seq = { start: 30, history: Array.from({ length: 11 }, (_, k) => tok(k)), cached: 0 };
  const b: Seq = { start: 0, history: [tok(20), tok(21), tok(22)], cached: 0 };
  const c: Seq = { start: 45, history: [tok(30)], cached: 0 };
  let worst = 0;
  const step = async (parts: [Seq, number, boolean][]): Promise<void> => {
    const seqs = parts.map(([s, n, logits]) => ({ start: s.start, cached: s.cached, ids: s.history.slice(s.cached, s.cached + n), logits }));
    const out = await run(seqs, pool);
    const withLogits = parts.filter(([, , l]) => l);
    expect(out.shape).toEqual([withLogits.length, v]);
    const data = out.contiguous().data;
    parts.forEach(([s, n]) => (s.cached += n));
    withLogits.forEach(([s], r) => {
      const want = reference(model, s.history.slice(0, s.cached));
      for (let j = 0; j < v; j++) worst = Math.max(worst, Math.abs(data[r * v + j]! - want[j]!));
      // The next token: the arg-max, fed in the next step.
      let best = 0;
      for (let j = 1; j < v; j++) if (data[r * v + j]! > data[r * v + best]!) best = j;
      s.history.push(best);
    });
  };
  await step([[b, 3, true], [a, 4, false]]);
  await step([[a, 4, false], [b, 1, true], [c, 1, true]]);
  await step([[c, 1, true], [a, 3, true], [b, 1, true]]);
  await step([[a, 1, true], [b, 1, true], [c, 1, true]]);
  // B leaves; D reuses B's rows (stale keys beyond D's length must not be seen).
  const d: Seq = { start: 0, history: [tok(40), tok(41)], cached: 0 };
  await step([[d, 2, true], [c, 1, true], [a, 1, true]]);
  await step([[a, 1, true], [d, 1, true]]);
  return worst;
}

const CASES = [...FOLDERS, 'stories260K'];

describe.each(backends)('forwardPacked on the %s backend', (backend) => {
  it.each(CASES)('%s: every logits row equals forward over the sequence so far', async (name) => {
    const model = await load(name, backend);
    const worst = await scenario(model, async (seqs, pool) => model.forwardPacked(seqs, pool));
    expect(worst).toBeLessThan(1e-4);
  });

  it.each(['llama-gqa', 'gpt2-tiny'])('%s: recorded off the JS thread (runAsync) gives the same rows', async (name) => {
    const model = await load(name, backend);
    const worst = await scenario(model, (seqs, pool) => runAsyncOn(model.backend, () => model.forwardPacked(seqs, pool), { reuseBuffers: true }));
    expect(worst).toBeLessThan(1e-4);
  });

  it.each(['qwen2-bias', 'gpt2-tiny'])('%s: in stages of one layer, each recorded in its own runAsync call, gives the same rows', async (name) => {
    const model = await load(name, backend);
    let stagesSeen = 0;
    const worst = await scenario(model, async (seqs, pool) => {
      const g = model.forwardPackedStages(seqs, pool, 1);
      const calls: Promise<unknown>[] = [];
      let done = false;
      // A stage is recorded while the previous one may still run (their lists run in order on the executor);
      // one queued behind two in flight is awaited before the next is asked for.
      while (!done) {
        let ran = false;
        calls.push(runAsyncOn(model.backend, () => {
          ran = true;
          const r = g.next();
          done = r.done === true;
          return r.value;
        }));
        if (!ran) await calls[calls.length - 1];
      }
      stagesSeen = calls.length;
      const results = await Promise.all(calls);
      return results[results.length - 1] as Tensor<'float32'>;
    });
    expect(stagesSeen).toBe(2); // two layers: the first stage yields, the second returns the logits
    expect(worst).toBeLessThan(1e-4);
  });

  it('returns [0, vocab] when no sequence asks for logits, and fills the pool all the same', async () => {
    const model = await load('llama-gqa', backend);
    const pool = model.createKVPool(16, { prefault: false });
    const out = model.forwardPacked([{ start: 2, cached: 0, ids: [1, 2, 3], logits: false }], pool);
    expect(out.shape).toEqual([0, 96]);
    const next = model.forwardPacked([{ start: 2, cached: 3, ids: [4] }], pool).contiguous().data;
    const want = reference(model, [1, 2, 3, 4]);
    expect(Math.max(...Array.from(want, (w, j) => Math.abs(w - next[j]!)))).toBeLessThan(1e-4);
  });
});

describe('forwardPacked errors name the sequence and field', () => {
  it('checks sequences, ids, pool rows, positions and the pool', async () => {
    const model = await load('gpt2-tiny', 'js');
    const pool = model.createKVPool(40, { prefault: false });
    const f = (seqs: unknown, p: unknown = pool): unknown => model.forwardPacked(seqs as PackedSequence[], p as KVPool);
    expect(() => f([])).toThrow(/argument 'seqs' must be a non-empty array/);
    expect(() => f([{ start: 0, cached: 0, ids: [] }])).toThrow(/'seqs\[0\].ids' must be a non-empty array of token ids/);
    expect(() => f([{ start: 0, cached: 0, ids: [1, 317] }])).toThrow(/'seqs\[0\].ids' must hold token ids in \[0, 317\), got 317 at index 1/);
    expect(() => f([{ start: -1, cached: 0, ids: [1] }])).toThrow(/'seqs\[0\].start' must be an integer >= 0, got -1/);
    expect(() => f([{ start: 0, cached: '2', ids: [1] }])).toThrow(TypeError);
    expect(() => f([{ start: 35, cached: 3, ids: [1, 2, 3] }])).toThrow(/'seqs\[0\]' needs pool rows \[35, 41\), past the pool's 40 positions/);
    expect(() => f([{ start: 0, cached: 63, ids: [1, 2] }], model.createKVPool(100, { prefault: false }))).toThrow(/'seqs\[0\]' reaches position 65, past the model's 64 positions/);
    expect(() => f([{ start: 0, cached: 4, ids: [1] }, { start: 4, cached: 0, ids: [2] }])).toThrow(/'seqs\[0\]' and 'seqs\[1\]' overlap in the pool/);
    expect(() => f([{ start: 0, cached: 0, ids: [1], logits: 1 }])).toThrow(/'seqs\[0\].logits' must be a boolean/);
    expect(() => f([{ start: 0, cached: 0, ids: [1] }], new KVPool({ layers: 2, kvDim: 8, positions: 4 }))).toThrow(/argument 'pool' must be a KVPool of 2 layers × kvDim 32/);
    expect(() => model.forwardPackedStages([{ start: 0, cached: 0, ids: [1] }], pool, 0).next()).toThrow(/argument 'layersPerStage' must be >= 1, got 0/);
  });
});

describe('KVPool', () => {
  it('holds layers × positions × 2·kvDim floats, one [positions, 2·kvDim] view per layer over one buffer', () => {
    const pool = new KVPool({ layers: 3, kvDim: 4, positions: 10 });
    expect(pool.bytes).toBe(3 * 10 * 8 * 4);
    expect(KVPool.bytesPerPosition(3, 4)).toBe(3 * 8 * 4);
    const l1 = pool.layer(1);
    expect(l1.shape).toEqual([10, 8]);
    expect(l1.data.buffer).toBe(pool.data.buffer);
    expect(l1.data.byteOffset).toBe(10 * 8 * 4);
    expect(pool.layer(1)).toBe(l1);
  });

  it('names the option that is wrong', () => {
    expect(() => new KVPool({ layers: 2, kvDim: 0, positions: 4 })).toThrow(/KVPool: argument 'kvDim' must be >= 1, got 0/);
    expect(() => new KVPool({ layers: 2, kvDim: 4, positions: 1.5 })).toThrow(/argument 'positions' must be an integer/);
    expect(() => new KVPool({ layers: 2, kvDim: 4, positions: 4, prefault: 'yes' as unknown as boolean })).toThrow(/option 'prefault' must be a boolean/);
    expect(() => new KVPool({ layers: 2, kvDim: 4, positions: 4, size: 3 } as never)).toThrow(/unknown option 'size'/);
    expect(() => new KVPool({ layers: 30, kvDim: 4096, positions: 10_000 })).toThrow(/option 'positions' \(10000\) makes a pool of .* elements over 30 layers, expected at most 2147483647/);
    expect(() => new KVPool({ layers: 2, kvDim: 4, positions: 4 }).layer(2)).toThrow(RangeError);
  });
});
