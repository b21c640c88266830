/**
 * Dynamic batching: padded + masked batches give each request exactly what
 * running it alone gives, the queue is bounded, aborts work per request, and
 * stats add up.
 */
import { describe, expect, it } from 'vitest';
import { addon } from '../lib/backend/native';
import { Batcher, BatcherClosedError, QueueFullError, padBatch, type BatchEncoder } from '../lib/serving/batcher';
import { EncoderModel } from '../lib/serving/encoder-model';
import { manualSeed } from '../lib/nn/init';
import * as nn from '../lib/nn';
import { randn, tensor, type Tensor } from '../lib/tensor';
import { loadServedModel } from '../lib/cli/config';
import { bufferPoolCounters, clearBufferPool, setPoolPoisoning } from '../lib/workspace';

function makeModel(seed = 1): EncoderModel {
  manualSeed(seed);
  return new EncoderModel({ vocabSize: 50, dModel: 32, nhead: 4, numLayers: 2, dimFeedforward: 64, maxLen: 64 }).eval();
}

function ids(len: number, seed: number): number[] {
  return Array.from({ length: len }, (_, j) => (j * 7 + seed * 13) % 50);
}

function alone(model: EncoderModel, tokens: number[]): Tensor<'float32'> {
  const out = model.forward(tensor(Int32Array.from(tokens), [1, tokens.length], 'int32'), null);
  return out.reshape([tokens.length, model.dModel]);
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

const backends = addon ? (['native', 'js'] as const) : (['js'] as const);

describe.each(backends)('Batcher (%s backend)', (backend) => {
  it('resolves each request with its own unpadded rows, equal to running it alone', async () => {
    const model = makeModel().useBackend(backend);
    const batcher = new Batcher(model, { maxBatchSize: 8, maxDelayMs: 5, maxQueue: 64 });
    const lengths = [3, 17, 1, 9, 9, 30, 5, 12, 2, 21];
    const results = await Promise.all(lengths.map((l, i) => batcher.submit(ids(l, i))));
    results.forEach((r, i) => {
      expect(r.shape).toEqual([lengths[i], 32]);
      expect(maxDiff(r.data, alone(model, ids(lengths[i]!, i)).data)).toBeLessThan(1e-6);
    });
    const st = batcher.stats();
    expect(st.completed).toBe(lengths.length);
    expect(st.batches).toBeLessThan(lengths.length); // requests were really batched
    expect(st.meanBatchSize).toBeCloseTo(lengths.length / st.batches);
    expect(st.maxBatchSizeSeen).toBeLessThanOrEqual(8);
    expect(st.paddingRatio).toBeGreaterThan(0);
    expect(st.queueDepth).toBe(0);
    await batcher.close();
  });
});

describe.runIf(addon !== null)('Batcher.release', () => {
  it('a batch whose rows were all released goes back to the pool: the next batch of the same shape allocates nothing', async () => {
    const model = makeModel();
    const batcher = new Batcher(model, { maxBatchSize: 4, maxDelayMs: 20, idleDispatch: 'wait' });
    const batch = (): Promise<Tensor<'float32'>[]> => Promise.all([0, 1, 2, 3].map((i) => batcher.submit(ids(40, i))));
    clearBufferPool();
    // Warm-up: the pool learns the batch's intermediates.
    for (const r of await batch()) batcher.release(r);
    const fresh = (): number => bufferPoolCounters().freshBytes;
    const before = fresh();
    const rows = await batch();
    expect(new Set(rows.map((r) => r.data.buffer)).size).toBe(1); // one batch
    const expected = rows.map((r) => Array.from(r.data));
    expect(fresh() - before).toBe(0);
    // Three of four released (one twice): the output stays out of the pool, so the next batch takes a fresh one,
    // and the unreleased row keeps its values.
    batcher.release(rows[0]!);
    batcher.release(rows[0]!);
    batcher.release(rows[1]!);
    batcher.release(rows[2]!);
    setPoolPoisoning(true);
    const again = await batch();
    setPoolPoisoning(false);
    expect(fresh() - before).toBeGreaterThan(0);
    expect(Array.from(rows[3]!.data)).toEqual(expected[3]);
    expect(again.map((r) => Array.from(r.data))).toEqual(expected);
    // A tensor the batcher never handed out is ignored.
    batcher.release(tensor(new Float32Array(4), [2, 2]));
    await batcher.close();
  });
});

describe.runIf(addon !== null)('Batcher with the seed model served by attnode serve', () => {
  it('padded, masked batches of the seed encoder equal each request run alone (sequence-first model, transposed in and out)', async () => {
    const served = await loadServedModel({
      config: { kind: 'seed', options: { vocabSize: 60, dModel: 32, nhead: 4, numLayers: 2, numDecoderLayers: 1, dimFeedforward: 48 } },
      seed: 5,
    });
    const batcher = new Batcher(served.encoder, { maxBatchSize: 6, maxDelayMs: 20, idleDispatch: 'wait' });
    const lengths = [4, 11, 1, 7, 11, 2];
    const toks = lengths.map((l, i) => Array.from({ length: l }, (_, j) => (j * 11 + i * 5 + 1) % 60));
    const batched = await Promise.all(toks.map((t) => batcher.submit(t)));
    expect(batcher.stats().batches).toBe(1);
    const solo = new Batcher(served.encoder, { maxBatchSize: 1 });
    for (const [i, t] of toks.entries()) {
      const want = await solo.submit(t);
      expect(batched[i]!.shape).toEqual([lengths[i], 32]);
      expect(maxDiff(batched[i]!.data, want.data)).toBeLessThan(1e-5);
    }
    await Promise.all([batcher.close(), solo.close()]);
  });
});

describe('Batcher', () => {
  it('padBatch pads ids and marks padding in the mask; no mask when lengths agree', () => {
    const { input, mask, maxLen } = padBatch('ids', [Int32Array.of(1, 2), Int32Array.of(3, 4, 5)], [2, 3], 0, 7);
    expect(maxLen).toBe(3);
    expect(Array.from(input.data)).toEqual([1, 2, 7, 3, 4, 5]);
    expect(Array.from(mask!.data)).toEqual([0, 0, 1, 0, 0, 0]);
    expect(padBatch('ids', [Int32Array.of(1), Int32Array.of(2)], [1, 1]).mask).toBeNull();
  });

  it('batches float feature rows for a features model (a bare TransformerEncoder)', async () => {
    manualSeed(4);
    const enc = new nn.TransformerEncoder({ layer: { dModel: 16, nhead: 2, dimFeedforward: 32, batchFirst: true }, numLayers: 2 }).eval();
    const model: BatchEncoder = {
      inputKind: 'features',
      inputDim: 16,
      forward: (x, mask) => enc.forward(x as Tensor<'float32'>, { srcKeyPaddingMask: mask }),
    };
    const batcher = new Batcher(model, { maxBatchSize: 4, maxDelayMs: 5, idleDispatch: 'wait' });
    const xs = [4, 11, 7].map((l, i) => randn([l, 16], { seed: 10 + i }));
    const got = await Promise.all(xs.map((x) => batcher.submit(x)));
    got.forEach((g, i) => {
      const want = enc.forward(xs[i]!.reshape([1, xs[i]!.shape[0]!, 16])).reshape(g.shape);
      expect(maxDiff(g.data, want.data)).toBeLessThan(1e-6);
    });
    expect(batcher.stats().batches).toBe(1);
  });

  it('rejects beyond maxQueue at once with QueueFullError', async () => {
    const batcher = new Batcher(makeModel(), { maxBatchSize: 8, maxDelayMs: 50, maxQueue: 3, maxInFlight: 1, idleDispatch: 'wait' });
    const accepted = [1, 2, 3].map((i) => batcher.submit(ids(4, i)));
    const t0 = performance.now();
    await expect(batcher.submit(ids(4, 9))).rejects.toBeInstanceOf(QueueFullError);
    expect(performance.now() - t0).toBeLessThan(20);
    expect(batcher.stats().rejectedQueueFull).toBe(1);
    await Promise.all(accepted);
  });

  it('rejects bad inputs per request without failing the batch', async () => {
    const batcher = new Batcher(makeModel(), { maxBatchSize: 8, maxDelayMs: 5 });
    const good = batcher.submit(ids(5, 1));
    await expect(batcher.submit([1, 2, 50])).rejects.toThrow(/outside \[0, 50\)/);
    await expect(batcher.submit([1.5])).rejects.toThrow(TypeError);
    await expect(batcher.submit([])).rejects.toThrow(/empty/);
    await expect(batcher.submit(ids(65, 1))).rejects.toThrow(/maximum 64/);
    expect((await good).shape).toEqual([5, 32]);
  });

  it('an aborted request leaves the queue; the others still complete', async () => {
    const model = makeModel();
    const batcher = new Batcher(model, { maxBatchSize: 8, maxDelayMs: 20, idleDispatch: 'wait' });
    const ac = new AbortController();
    const a = batcher.submit(ids(6, 1));
    const b = batcher.submit(ids(8, 2), { signal: ac.signal });
    const c = batcher.submit(ids(3, 3));
    expect(batcher.queueDepth).toBe(3);
    ac.abort();
    await expect(b).rejects.toMatchObject({ name: 'AbortError' });
    expect(batcher.queueDepth).toBe(2);
    const [ra, rc] = await Promise.all([a, c]);
    expect(maxDiff(ra.data, alone(model, ids(6, 1)).data)).toBeLessThan(1e-6);
    expect(rc.shape).toEqual([3, 32]);
    expect(batcher.stats()).toMatchObject({ aborted: 1, completed: 2, batches: 1 });
    const pre = new AbortController();
    pre.abort();
    await expect(batcher.submit(ids(2, 1), { signal: pre.signal })).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('dispatches at once when idle (default), else waits at most maxDelayMs for a fuller batch', async () => {
    const eager = new Batcher(makeModel(), { maxBatchSize: 4, maxDelayMs: 200 });
    const te = performance.now();
    await eager.submit(ids(3, 1));
    expect(performance.now() - te).toBeLessThan(100);
    const batcher = new Batcher(makeModel(), { maxBatchSize: 4, maxDelayMs: 40, idleDispatch: 'wait' });
    const t0 = performance.now();
    await batcher.submit(ids(3, 1));
    const waited = performance.now() - t0;
    expect(waited).toBeGreaterThanOrEqual(35);
    const t1 = performance.now();
    await Promise.all([1, 2, 3, 4].map((i) => batcher.submit(ids(3, i))));
    expect(performance.now() - t1).toBeLessThan(35);
    expect(batcher.stats().batches).toBe(2);
  });

  it('groups by length bucket', async () => {
    const batcher = new Batcher(makeModel(), { maxBatchSize: 8, maxDelayMs: 5, buckets: [8, 64], idleDispatch: 'wait' });
    await Promise.all([2, 40, 3, 50, 4].map((l, i) => batcher.submit(ids(l, i))));
    const st = batcher.stats();
    expect(st.batches).toBe(2);
    expect(st.paddingRatio).toBeLessThan(0.2);
  });

  it('maxBatchSize 1 runs every request alone', async () => {
    const batcher = new Batcher(makeModel(), { maxBatchSize: 1, maxDelayMs: 0 });
    await Promise.all([3, 5, 7].map((l, i) => batcher.submit(ids(l, i))));
    expect(batcher.stats()).toMatchObject({ batches: 3, meanBatchSize: 1, paddingRatio: 0 });
  });

  it('close() drains queued requests, then refuses new ones', async () => {
    const batcher = new Batcher(makeModel(), { maxBatchSize: 4, maxDelayMs: 10_000, idleDispatch: 'wait' });
    const pending = [batcher.submit(ids(3, 1)), batcher.submit(ids(5, 2))];
    await batcher.close();
    expect((await Promise.all(pending)).map((t) => t.shape[0])).toEqual([3, 5]);
    await expect(batcher.submit(ids(3, 1))).rejects.toBeInstanceOf(BatcherClosedError);
    expect(batcher.capacity).toBe(0);
  });

  it('a model error fails only the request that caused it', async () => {
    const model = makeModel();
    const flaky: BatchEncoder = {
      inputKind: 'ids',
      forward(input, mask) {
        if ((input.data as Int32Array).includes(49)) throw new Error('poison token');
        return model.forward(input as Tensor<'int32'>, mask);
      },
    };
    const batcher = new Batcher(flaky, { maxBatchSize: 4, maxDelayMs: 5 });
    const [ok, bad] = await Promise.allSettled([batcher.submit([1, 2, 3]), batcher.submit([49, 2])]);
    expect(ok.status).toBe('fulfilled');
    expect(bad).toMatchObject({ status: 'rejected', reason: { message: 'poison token' } });
    expect(batcher.stats()).toMatchObject({ completed: 1, failed: 1 });
  });

  it('checks its options', () => {
    const m = makeModel();
    expect(() => new Batcher(m, { maxBatchSize: 0 })).toThrow(/maxBatchSize/);
    expect(() => new Batcher(m, { maxDelayMs: -1 })).toThrow(/maxDelayMs/);
    expect(() => new Batcher(m, { buckets: [8, 4] })).toThrow(/buckets/);
  });
});
