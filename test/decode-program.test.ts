/**
 * The replayed batch-1 decode step (lib/models/decode-program.ts): one native call per token, recorded from the
 * model's own packed forward. It must give the eager step's logits (within 1e-5) and greedy tokens, follow cache
 * growth, weight changes and precision switches, and the replayed ops must re-check what JS may change between
 * runs (a bad value fails the run instead of reading or writing out of bounds).
 */
import { describe, expect, it, afterEach } from 'vitest';
import * as path from 'node:path';
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { AutoModelForCausalLM } from '../lib/models/auto';
import { LlamaForCausalLM } from '../lib/models/llama';
import { decodeProgramStats, setDecodeProgramEnabled } from '../lib/models/decode-program';
import { addon } from '../lib/backend/native';
import { Tensor, info, ops, withContext, noGrad } from '../lib';
import { manualSeed } from '../lib/nn/init';

const HF = path.join(__dirname, 'fixtures', 'hf');
const FOLDERS = ['llama-gqa', 'llama3-bf16-tied', 'qwen2-bias', 'gpt2-tiny'];
const hasNative = addon !== null;
const bf16 = hasNative && info().native?.bf16 === true;

afterEach(() => {
  setDecodeProgramEnabled(true);
});

/** What decode needs of a model (Llama and GPT-2 both have it). */
type Decoder = Pick<LlamaForCausalLM, 'forward' | 'createCache'> & { config: { vocabSize: number } };

/** Prefill `prompt`, then `steps` greedy tokens one at a time; each step's logits and the tokens. */
function decode(model: Decoder, prompt: number[], steps: number, capacity: number): { logits: Float32Array[]; tokens: number[] } {
  const cache = model.createCache(1, capacity);
  let l = model.forward(new Tensor(Int32Array.from(prompt), [1, prompt.length], 'int32'), { cache, lastOnly: true });
  const logits: Float32Array[] = [];
  const tokens: number[] = [];
  for (let s = 0; s < steps; s++) {
    const d = l.contiguous().data;
    let best = 0;
    for (let j = 1; j < d.length; j++) if (d[j]! > d[best]!) best = j;
    tokens.push(best);
    l = model.forward(new Tensor(Int32Array.of(best), [1, 1], 'int32'), { cache, lastOnly: true });
    logits.push(Float32Array.from(l.contiguous().data));
  }
  return { logits, tokens };
}

const maxDiff = (a: Float32Array[], b: Float32Array[]): number => {
  let worst = 0;
  a.forEach((row, i) => row.forEach((x, j) => (worst = Math.max(worst, Math.abs(x - b[i]![j]!)))));
  return worst;
};

function both(model: Decoder, prompt: number[], steps: number, capacity: number): [ReturnType<typeof decode>, ReturnType<typeof decode>] {
  setDecodeProgramEnabled(false);
  const before = decodeProgramStats();
  const eager = decode(model, prompt, steps, capacity);
  expect(decodeProgramStats()).toEqual(before);
  setDecodeProgramEnabled(true);
  const replayed = decode(model, prompt, steps, capacity);
  expect(decodeProgramStats().runs - before.runs).toBe(steps);
  return [eager, replayed];
}

describe.skipIf(!hasNative)('replayed decode step (native addon required)', () => {
  it.each(FOLDERS)('%s: the same logits (1e-5) and greedy tokens as the eager step, across cache growth', async (name) => {
    const model = (await AutoModelForCausalLM.fromPretrained(path.join(HF, name))) as unknown as Decoder & LlamaForCausalLM;
    model.useBackend('native');
    const prompt = [3, 17, 5, 40, 9];
    // Capacity 6: the cache doubles twice while decoding (new buffers, so the step is recorded again).
    const before = decodeProgramStats().recorded;
    const [eager, replayed] = both(model, prompt, 24, 6);
    // Recorded at capacity 6, then again at 12, 24 and 48 (5 + 24 positions).
    expect(decodeProgramStats().recorded - before).toBe(4);
    expect(replayed.tokens).toEqual(eager.tokens);
    expect(maxDiff(replayed.logits, eager.logits)).toBeLessThan(1e-5);
    // And it agrees with a full forward over the whole sequence.
    const seq = [...prompt, ...replayed.tokens];
    const full = model.forward(new Tensor(Int32Array.from(seq), [1, seq.length], 'int32')).contiguous();
    const v = model.config.vocabSize;
    const lastRow = full.data.subarray((seq.length - 1) * v, seq.length * v);
    expect(maxDiff([replayed.logits.at(-1)!], [Float32Array.from(lastRow)])).toBeLessThan(1e-4);
  });

  it('generate gives the same greedy tokens with and without the replayed step', async () => {
    const model = (await AutoModelForCausalLM.fromPretrained(path.join(HF, 'llama-gqa'))) as LlamaForCausalLM;
    model.useBackend('native');
    const ids = new Tensor(Int32Array.of(1, 2, 3, 4), [1, 4], 'int32');
    setDecodeProgramEnabled(false);
    const eager = model.generate(ids, { maxNewTokens: 20 });
    setDecodeProgramEnabled(true);
    const replayed = model.generate(ids, { maxNewTokens: 20 });
    expect(Array.from(replayed.data)).toEqual(Array.from(eager.data));
  });

  it.skipIf(!bf16)('bfloat16 weights: the same greedy tokens and logits as the eager bf16 step (CPU with AVX512-BF16)', () => {
    manualSeed(3);
    const model = new LlamaForCausalLM({
      vocabSize: 64, hiddenSize: 64, intermediateSize: 96, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2,
    }).useBackend('native');
    model.useWeightPrecision('bfloat16');
    const [eager, replayed] = noGrad(() => both(model, [1, 2, 3], 10, 32));
    expect(replayed.tokens).toEqual(eager.tokens);
    expect(maxDiff(replayed.logits, eager.logits)).toBeLessThan(1e-5);
  });

  it('follows weights written in place, replaced weights and precision switches (bf16 where the CPU has it, int8)', () => {
    manualSeed(4);
    const model = new LlamaForCausalLM({
      vocabSize: 48, hiddenSize: 32, intermediateSize: 40, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2,
    }).useBackend('native');
    noGrad(() => {
      const cacheA = model.createCache(1, 16);
      const cacheB = model.createCache(1, 16);
      const prompt = new Tensor(Int32Array.of(1, 2), [1, 2], 'int32');
      model.forward(prompt, { cache: cacheA });
      setDecodeProgramEnabled(false);
      model.forward(prompt, { cache: cacheB });
      let recorded = decodeProgramStats().recorded;
      const recordedAgain = (): boolean => {
        const now = decodeProgramStats().recorded;
        const again = now > recorded;
        recorded = now;
        return again;
      };
      const step = (cache: ReturnType<typeof model.createCache>, on: boolean): Float32Array => {
        setDecodeProgramEnabled(on);
        return Float32Array.from(model.forward(new Tensor(Int32Array.of(7), [1, 1], 'int32'), { cache }).contiguous().data);
      };
      expect(maxDiff([step(cacheA, true)], [step(cacheB, false)])).toBeLessThan(1e-5);
      expect(recordedAgain()).toBe(true);
      expect(maxDiff([step(cacheA, true)], [step(cacheB, false)])).toBeLessThan(1e-5);
      expect(recordedAgain()).toBe(false);
      // In place (the version moves): the recorded step's packed weights are stale, so it is recorded again.
      const down = model.model.layers.at(1).mlp.downProj.weight;
      ops.mul(down, 2, { out: down });
      expect(maxDiff([step(cacheA, true)], [step(cacheB, false)])).toBeLessThan(1e-5);
      expect(recordedAgain()).toBe(true);
      // Replaced (as loadStateDict does).
      model.model.norm.weight = new Tensor(new Float32Array(32).fill(0.5), [32], 'float32');
      expect(maxDiff([step(cacheA, true)], [step(cacheB, false)])).toBeLessThan(1e-5);
      expect(recordedAgain()).toBe(true);
      if (bf16) {
        model.useWeightPrecision('bfloat16');
        expect(maxDiff([step(cacheA, true)], [step(cacheB, false)])).toBeLessThan(1e-5);
        expect(recordedAgain()).toBe(true);
      }
      // int8 weights (every kernel path has int8 GEMMs).
      model.useWeightPrecision('int8');
      expect(maxDiff([step(cacheA, true)], [step(cacheB, false)])).toBeLessThan(1e-5);
      expect(recordedAgain()).toBe(true);
    });
  });

  it('inside runAsync (generateAsync) each token is one recorded call, with the same tokens as the eager steps', async () => {
    const model = (await AutoModelForCausalLM.fromPretrained(path.join(HF, 'llama-gqa'))) as LlamaForCausalLM;
    model.useBackend('native');
    const ids = new Tensor(Int32Array.of(5, 6, 7), [1, 3], 'int32');
    const runs = decodeProgramStats().runs;
    const a = await model.generateAsync(ids, { maxNewTokens: 8 });
    // The prompt runs eagerly; the 7 steps after it are replayed.
    expect(decodeProgramStats().runs - runs).toBe(7);
    setDecodeProgramEnabled(false);
    const b = await model.generateAsync(ids, { maxNewTokens: 8 });
    const c = model.generate(ids, { maxNewTokens: 8 });
    expect(Array.from(a.data)).toEqual(Array.from(b.data));
    expect(Array.from(a.data)).toEqual(Array.from(c.data));
  });
});

// A fresh process with --expose-gc: a decoded cache dropped by its caller must not stay alive through the
// model's program (whose command list refers to the cache's buffers).
const gcScript = `
const { setGradEnabled, Tensor, LlamaForCausalLM } = require(${JSON.stringify(path.resolve(__dirname, '..', 'lib', 'index.ts'))});
setGradEnabled(false);
const m = new LlamaForCausalLM({ vocabSize: 64, hiddenSize: 64, intermediateSize: 96, numHiddenLayers: 2, numAttentionHeads: 4 }).useBackend('native');
const mb = () => process.memoryUsage().arrayBuffers / 1048576;
const run = () => {
  const cache = m.createCache(1, 100000); // 2 layers x 100000 x 128 floats: ~98 MiB
  m.forward(new Tensor(Int32Array.of(1, 2), [1, 2], 'int32'), { cache });
  m.forward(new Tensor(Int32Array.of(3), [1, 1], 'int32'), { cache });
};
const before = mb();
run();
const held = mb() - before;
(async () => {
  for (let i = 0; i < 6; i++) { global.gc(); await new Promise((r) => setTimeout(r, 20)); }
  console.log(JSON.stringify({ held, after: mb() - before }));
})();
`;

describe.skipIf(!hasNative)('replayed decode step and memory (native addon required)', () => {
  it('a cache its caller dropped is freed with its program (fresh process, --expose-gc)', () => {
    const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', '-e', gcScript], { encoding: 'utf8', cwd: path.resolve(__dirname, '..') });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { held: number; after: number };
    expect(out.held).toBeGreaterThan(90);
    expect(out.after).toBeLessThan(10);
  });
});

describe.skipIf(!hasNative)('runList: a recorded command list replayed (native addon required)', () => {
  const a = addon!;

  /** One pooled attention call over a 4-position pool and an indexCopy into it, recorded into a list. */
  function recorded(): { list: ReturnType<typeof a.createCommandList>; lengths: Int32Array; rows: Int32Array; out: Tensor<'float32'>; pool: Tensor<'float32'> } {
    const list = a.createCommandList();
    const pool = new Tensor(Float32Array.from({ length: 4 * 2 * 4 }, (_, i) => Math.sin(i)), [4, 8], 'float32');
    const q = new Tensor(Float32Array.from({ length: 4 }, (_, i) => i / 4), [1, 1, 1, 4], 'float32');
    const lengths = Int32Array.of(1);
    const rows = Int32Array.of(0);
    const src = new Tensor(new Float32Array(8).fill(1), [1, 8], 'float32');
    const out = withContext({ recording: list, bufferScope: null }, () => {
      ops.indexCopy(pool, 0, rows, src);
      const k = pool.narrow(-1, 0, 4).view(4, 1, 4);
      const v = pool.narrow(-1, 4, 4).view(4, 1, 4);
      return ops.pooledAttention(q, k, v, { kvStarts: Int32Array.of(0), kvLengths: lengths, maxKvLength: 4 });
    });
    return { list, lengths, rows, out, pool };
  }

  it('runs again with the values the ops read when they run', () => {
    const r = recorded();
    a.runList(r.list);
    // One key (row 0, all ones): the output is that value row.
    expect(Array.from(r.out.data)).toEqual([1, 1, 1, 1]);
    r.rows[0] = 2;
    r.lengths[0] = 3;
    a.runList(r.list);
    const eager = ops.pooledAttention(
      new Tensor(Float32Array.from({ length: 4 }, (_, i) => i / 4), [1, 1, 1, 4], 'float32'),
      r.pool.narrow(-1, 0, 4).view(4, 1, 4), r.pool.narrow(-1, 4, 4).view(4, 1, 4),
      { kvStarts: Int32Array.of(0), kvLengths: Int32Array.of(3) },
    );
    expect(Array.from(r.out.data)).toEqual(Array.from(eager.data));
  });

  it('fails a run whose values left the validated bounds, naming the op and argument', () => {
    const r = recorded();
    r.lengths[0] = 5;
    expect(() => a.runList(r.list)).toThrow(/pooledAttention: argument 'kvLengths' must hold lengths in \[0, lk = 4\], got 5/);
    r.lengths[0] = -1;
    expect(() => a.runList(r.list)).toThrow(/kvLengths/);
    r.lengths[0] = 2;
    r.rows[0] = 4;
    expect(() => a.runList(r.list)).toThrow(/indexCopy: argument 'index' must hold rows in \[0, yRows = 4\), got 4/);
    r.rows[0] = 1;
    a.runList(r.list);
  });

  it('runListRecord: each recorded replay runs with the values it was recorded with', async () => {
    const r = recorded();
    const outer = a.createCommandList();
    const outs = [1, 3].map((len) => {
      a.runListRecord(outer, r.list, [r.rows, r.lengths], Int32Array.of(len - 1, len));
      const o = new Tensor(new Float32Array(4), [4], 'float32');
      withContext({ recording: outer }, () => ops.add(r.out.view(4), 0, { out: o }));
      return o;
    });
    // Nothing has run yet; the arrays keep what JS last wrote.
    expect(Array.from(r.lengths)).toEqual([1]);
    await a.submit(outer);
    const sync = recorded();
    sync.rows[0] = 0;
    a.runList(sync.list);
    expect(Array.from(outs[0]!.data)).toEqual(Array.from(sync.out.data));
    sync.rows[0] = 2;
    sync.lengths[0] = 3;
    a.runList(sync.list);
    expect(Array.from(outs[1]!.data)).toEqual(Array.from(sync.out.data));
    // A replayed list takes no more calls; bad arguments are named.
    expect(() => withContext({ recording: r.list }, () => ops.add(r.out, 0))).toThrow(/replayed/);
    const l = a.createCommandList();
    expect(() => a.runListRecord(l, r.list, [r.rows], Int32Array.of(1, 2))).toThrow(/'values' must hold 1 entries/);
    expect(() => a.runListRecord(l, r.list, [new Float32Array(1) as never], Int32Array.of(1))).toThrow(/'targets\[0\]' must be an Int32Array/);
    expect(() => a.runListRecord(l, l, [], new Int32Array(0))).toThrow(/must not be 'list' itself/);
    expect(() => a.runListRecord(l, {} as never, [], new Int32Array(0))).toThrow(/'program' must be a command list/);
  });

  it('keeps replayed and submitted lists apart, and refuses a detached buffer', async () => {
    const r = recorded();
    a.runList(r.list);
    expect(() => a.submit(r.list)).toThrow(/runList/);
    const s = recorded();
    await a.submit(s.list);
    expect(() => a.runList(s.list)).toThrow(/already submitted/);
    const t = recorded();
    const buf = t.out.data.buffer as ArrayBuffer;
    structuredClone(buf, { transfer: [buf] });
    expect(() => a.runList(t.list)).toThrow(/detached/);
    expect(() => a.runList({} as never)).toThrow(TypeError);
  });
});

it.skipIf(hasNative)('replayed decode step: skipped, the native addon is not loaded', () => {
  expect(existsSync(HF)).toBe(true);
});
