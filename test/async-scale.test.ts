/**
 * Many async calls in flight: runAsync's queue records at most
 * `maxRecordedAhead` calls ahead of the executor and keeps the rest
 * unrecorded, in FIFO order; results stay exactly those of sync calls; queued
 * calls can be aborted; the queue bound rejects with a documented code;
 * forwardAsyncWith takes options; a JS-backend module's forwardAsync runs
 * synchronously. No timing assertions: speed and event-loop stalls are
 * measured by bench/async/run.ts.
 */
import { afterEach, describe, expect, it, beforeAll, afterAll } from 'vitest';
import * as nn from '../lib/nn';
import * as ops from '../lib/ops';
import { addon } from '../lib/backend/native';
import { setBackend } from '../lib/backend/registry';
import {
  getAsyncLimits,
  pendingAsyncCalls,
  queuedAsyncCalls,
  recordedAsyncCalls,
  runAsync,
  setAsyncLimits,
} from '../lib/async';
import { clearBufferPool, pooledBufferBytes } from '../lib/workspace';
import { randn, type Tensor } from '../lib/tensor';
import { manualSeed } from '../lib/nn/init';
import { setGradEnabled } from '../lib/autograd/index';

// Inference behaviour (buffer pooling, reduced-precision attention) is that of forwards without an autograd graph:
// parameters require grad (as in PyTorch), so these tests run with grad mode off, as inference code does.
beforeAll(() => setGradEnabled(false));
afterAll(() => setGradEnabled(true));

const same = (a: Tensor, b: Tensor): void => {
  expect(a.shape).toEqual(b.shape);
  expect(Array.from(a.data)).toEqual(Array.from(b.data));
};

describe.runIf(addon !== null)('async queue (native)', () => {
  manualSeed(21);
  const layer = new nn.TransformerEncoderLayer({ dModel: 64, nhead: 4, dimFeedforward: 128, activation: 'gelu', batchFirst: true }).eval()
    .useBackend('native');
  const defaults = getAsyncLimits();

  afterEach(async () => {
    setAsyncLimits(defaults);
    setBackend(null);
    // Nothing a test left behind may leak into the next one's counts.
    while (recordedAsyncCalls() > 0 || queuedAsyncCalls() > 0) await new Promise((r) => setTimeout(r, 1));
  });

  it('defaults: two calls recorded ahead, an unbounded queue', () => {
    expect(defaults).toEqual({ maxRecordedAhead: 2, maxQueued: Infinity });
  });

  it('many calls in flight settle in FIFO order with exactly the sync results, K recorded at a time', async () => {
    const inputs = Array.from({ length: 40 }, (_, i) => randn([1 + (i % 3), 5 + (i % 11), 64], { seed: 100 + i }));
    const want = inputs.map((x) => layer.forward(x));
    const settled: number[] = [];
    const calls = inputs.map((x, i) =>
      layer.forwardAsync(x).then((r) => {
        settled.push(i);
        return r;
      }),
    );
    // Two lists went to the executor at the call; the other 38 wait unrecorded.
    expect(recordedAsyncCalls()).toBe(2);
    expect(queuedAsyncCalls()).toBe(38);
    expect(pendingAsyncCalls()).toBeLessThanOrEqual(2);
    let maxRecorded = 0;
    const watch = setInterval(() => (maxRecorded = Math.max(maxRecorded, recordedAsyncCalls(), pendingAsyncCalls())), 0);
    const got = await Promise.all(calls);
    clearInterval(watch);
    expect(maxRecorded).toBeLessThanOrEqual(2);
    expect(settled).toEqual(inputs.map((_, i) => i));
    got.forEach((r, i) => same(r, want[i]!));
    expect(queuedAsyncCalls()).toBe(0);
    expect(recordedAsyncCalls()).toBe(0);
  });

  it('a queued call records (runs fn) only when a slot frees, oldest first', async () => {
    setAsyncLimits({ maxRecordedAhead: 1 });
    const x = randn([2, 16, 64], { seed: 3 });
    const order: number[] = [];
    const calls = [0, 1, 2, 3].map((i) =>
      runAsync(() => {
        order.push(i);
        return layer.forward(x);
      }),
    );
    // Only the first was recorded; the others' fn has not run, so they allocated nothing.
    expect(order).toEqual([0]);
    expect(queuedAsyncCalls()).toBe(3);
    const want = layer.forward(x);
    const got = await Promise.all(calls);
    expect(order).toEqual([0, 1, 2, 3]);
    got.forEach((r) => same(r, want));
  });

  it('a later call waits behind queued ones even when a slot is free (FIFO), and raising the limit records them', async () => {
    setAsyncLimits({ maxRecordedAhead: 1 });
    const x = randn([1, 8, 64], { seed: 4 });
    const order: number[] = [];
    const mk = (i: number): Promise<Tensor<'float32'>> =>
      runAsync(() => {
        order.push(i);
        return layer.forward(x);
      });
    const calls = [mk(0), mk(1), mk(2)];
    expect(order).toEqual([0]);
    setAsyncLimits({ maxRecordedAhead: 3 });
    expect(order).toEqual([0, 1, 2]);
    expect(queuedAsyncCalls()).toBe(0);
    await Promise.all(calls);
  });

  it('past maxQueued a call is rejected with RangeError code ATTNODE_ASYNC_QUEUE_FULL; the others still run', async () => {
    setAsyncLimits({ maxRecordedAhead: 1, maxQueued: 2 });
    const x = randn([1, 8, 64], { seed: 5 });
    const ok = [layer.forwardAsync(x), layer.forwardAsync(x), layer.forwardAsync(x)];
    const full = layer.forwardAsync(x);
    await expect(full).rejects.toThrowError(RangeError);
    await expect(full).rejects.toMatchObject({ code: 'ATTNODE_ASYNC_QUEUE_FULL' });
    await expect(full).rejects.toThrowError(/at most 2 waiting calls/);
    const want = layer.forward(x);
    (await Promise.all(ok)).forEach((r) => same(r, want));
    // With maxQueued 0 every call beyond the ones recorded is refused.
    setAsyncLimits({ maxQueued: 0 });
    const first = layer.forwardAsync(x);
    await expect(layer.forwardAsync(x)).rejects.toMatchObject({ code: 'ATTNODE_ASYNC_QUEUE_FULL' });
    same(await first, want);
  });

  it('setAsyncLimits checks its argument', () => {
    expect(() => setAsyncLimits({ maxRecordedAhead: 0 })).toThrowError(/'maxRecordedAhead' must be an integer >= 1, got 0/);
    expect(() => setAsyncLimits({ maxRecordedAhead: 1.5 })).toThrowError(RangeError);
    expect(() => setAsyncLimits({ maxQueued: -1 })).toThrowError(/'maxQueued' must be an integer >= 0 or Infinity, got -1/);
    expect(() => setAsyncLimits(null as never)).toThrowError(TypeError);
    expect(getAsyncLimits()).toEqual(defaults); // a rejected change changes nothing
  });

  it('aborting a queued call rejects it with AbortError, never runs its fn, and leaves the others intact', async () => {
    const x = randn([2, 32, 64], { seed: 6 });
    const want = layer.forward(x);
    let abortedRan = false;
    const before = [layer.forwardAsync(x), layer.forwardAsync(x)];
    const controller = new AbortController();
    const aborted = runAsync(
      () => {
        abortedRan = true;
        return layer.forward(x);
      },
      { signal: controller.signal },
    );
    const after = layer.forwardAsync(x);
    expect(queuedAsyncCalls()).toBe(2);
    controller.abort();
    expect(queuedAsyncCalls()).toBe(1);
    await expect(aborted).rejects.toMatchObject({ name: 'AbortError' });
    const got = await Promise.all([...before, after]);
    expect(abortedRan).toBe(false);
    got.forEach((r) => same(r, want));
    // The abort reason, when it is an Error, is what the promise rejects with.
    const c2 = new AbortController();
    const hold = [layer.forwardAsync(x), layer.forwardAsync(x)];
    const withReason = layer.forwardAsyncWith({ signal: c2.signal }, x);
    c2.abort(new Error('client went away'));
    await expect(withReason).rejects.toThrowError('client went away');
    await Promise.all(hold);
  });

  it('nested runAsync inside a queued recording joins the enclosing list', async () => {
    const x = randn([1, 12, 64], { seed: 7 });
    const want = ops.relu(layer.forward(x));
    const hold = [layer.forwardAsync(x), layer.forwardAsync(x)];
    let innerRanDuringOuter = false;
    let recordedInside = -1;
    const outer = runAsync(() => {
      const y = layer.forward(x);
      let innerRunning = true;
      void runAsync(() => {
        innerRanDuringOuter = innerRunning;
        recordedInside = recordedAsyncCalls();
        return null;
      });
      innerRunning = false;
      return ops.relu(y);
    });
    expect(queuedAsyncCalls()).toBe(1);
    const got = await outer;
    // The inner call ran inside the outer fn, although the queue was full: no extra list, no deadlock.
    expect(innerRanDuringOuter).toBe(true);
    expect(recordedInside).toBeLessThanOrEqual(2);
    same(got, want);
    await Promise.all(hold);
  });

  it('module forwards recorded for runAsync recycle their intermediates when the call settles; results are never reused', async () => {
    clearBufferPool();
    const big = new nn.TransformerEncoderLayer({ dModel: 128, nhead: 4, dimFeedforward: 512, batchFirst: true }).eval().useBackend('native');
    const xs = Array.from({ length: 6 }, (_, i) => randn([2, 48, 128], { seed: 40 + i }));
    const want = xs.map((x) => Array.from(big.forward(x).data));
    clearBufferPool();
    const first = await big.forwardAsync(xs[0]!);
    expect(pooledBufferBytes()).toBeGreaterThan(0);
    // Later calls take the recycled buffers: the results already handed out must not change.
    const rest = await Promise.all(xs.slice(1).map((x) => big.forwardAsync(x)));
    expect(Array.from(first.data)).toEqual(want[0]);
    rest.forEach((r, i) => expect(Array.from(r.data)).toEqual(want[i + 1]));
  });

  it('forwardAsyncWith passes options and leaves forward\'s own trailing options alone', async () => {
    const x = randn([2, 10, 64], { seed: 8 });
    same(await layer.forwardAsyncWith({ reuseBuffers: true }, x), layer.forward(x));
    same(await layer.forwardAsyncWith({}, x, { isCausal: false }), layer.forward(x, { isCausal: false }));
    const done = new AbortController();
    done.abort();
    await expect(layer.forwardAsyncWith({ signal: done.signal }, x)).rejects.toMatchObject({ name: 'AbortError' });
    const mha = new nn.MultiheadAttention({ embedDim: 16, numHeads: 2, batchFirst: true }).useBackend('native');
    const q = randn([2, 5, 16], { seed: 9 });
    const want = mha.forward(q, q, q, { needWeights: false });
    const got = await mha.forwardAsyncWith({ reuseBuffers: true }, q, q, q, { needWeights: false });
    same(got.output, want.output);
    expect(got.weights).toBeNull();
    await expect(layer.forwardAsyncWith({ signal: 'stop' } as never, x)).rejects.toThrowError(
      /option 'signal' must be an AbortSignal, got string/,
    );
    await expect(layer.forwardAsyncWith(null as never, x)).rejects.toThrowError(TypeError);
    await expect(layer.forwardAsyncWith({ reuseBuffers: 1 } as never, x)).rejects.toThrowError(
      /option 'reuseBuffers' must be a boolean, got number/,
    );
  });

  it('forwardAsync / forwardAsyncWith misuse is a compile error', () => {
    const x = randn([1, 4, 64]);
    const never = (): void => {
      // @ts-expect-error options go first, in forwardAsyncWith; a signal is not a forward option
      void layer.forwardAsync(x, { signal: new AbortController().signal });
      // @ts-expect-error the first argument of forwardAsyncWith is the options, not the input
      void layer.forwardAsyncWith(x);
      // @ts-expect-error forward's arguments are type-checked after the options
      void layer.forwardAsyncWith({}, 'x');
    };
    expect(typeof never).toBe('function');
  });

  it('a JS-backend module\'s forwardAsync runs forward synchronously, ahead of the native queue', async () => {
    const jsLayer = new nn.TransformerEncoderLayer({ dModel: 64, nhead: 4, dimFeedforward: 128, activation: 'gelu', batchFirst: true }).eval()
      .useBackend('js');
    jsLayer.loadStateDict(layer.stateDict());
    const x = randn([1, 6, 64], { seed: 10 });
    const want = jsLayer.forward(x);
    const order: string[] = [];
    const native = [0, 1, 2, 3].map((i) => layer.forwardAsync(x).then(() => order.push(`native${i}`)));
    expect(queuedAsyncCalls()).toBe(2);
    const js = jsLayer.forwardAsync(x).then((r) => {
      order.push('js');
      return r;
    });
    // It did not join the queue.
    expect(queuedAsyncCalls()).toBe(2);
    same(await js, want);
    await Promise.all(native);
    expect(order[0]).toBe('js');
    // With JS selected globally, runAsync and forwardAsync of a module without its own choice run synchronously too.
    const plain = new nn.TransformerEncoderLayer({ dModel: 64, nhead: 4, dimFeedforward: 128, activation: 'gelu', batchFirst: true }).eval();
    plain.loadStateDict(layer.stateDict());
    setBackend('js');
    same(await runAsync(() => plain.forward(x)), want);
    same(await plain.forwardAsync(x), want);
    expect(recordedAsyncCalls()).toBe(0);
    // A module that chose native still goes through the executor when JS is the global default.
    const p = layer.forwardAsync(x);
    expect(recordedAsyncCalls()).toBe(1);
    same(await p, layer.forward(x));
  });
});
