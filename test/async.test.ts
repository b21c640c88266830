/**
 * Async execution: forwardAsync / runAsync give exactly the sync results, many
 * calls in flight at once are safe, queued calls can be aborted, errors
 * surface as rejections, and the addon loads in several worker_threads.
 */
import { Worker } from 'node:worker_threads';
import * as path from 'node:path';
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import * as nn from '../lib/nn';
import * as ops from '../lib/ops';
import { addon } from '../lib/backend/native';
import { runAsync, pendingAsyncCalls, recordedAsyncCalls } from '../lib/async';
import { getNumThreads, setNumThreads } from '../lib/runtime';
import { pooledBufferBytes, sizeClass } from '../lib/workspace';
import { randn, tensor, type Tensor } from '../lib/tensor';
import { TransformerModel } from '../lib/cli/seed-model';
import { manualSeed } from '../lib/nn/init';
import { setGradEnabled } from '../lib/autograd/index';

// Inference behaviour (buffer pooling, reduced-precision attention) is that of forwards without an autograd graph:
// parameters require grad (as in PyTorch), so these tests run with grad mode off, as inference code does.
beforeAll(() => setGradEnabled(false));
afterAll(() => setGradEnabled(true));

describe.runIf(addon !== null)('async execution (native)', () => {
  manualSeed(1);
  const layer = new nn.TransformerEncoderLayer({ dModel: 64, nhead: 4, dimFeedforward: 128, activation: 'gelu' }).eval().useBackend('native');

  it('forwardAsync returns exactly what forward returns', async () => {
    const x = randn([9, 3, 64], { seed: 2 });
    const want = layer.forward(x);
    const got = await layer.forwardAsync(x);
    expect(got.shape).toEqual(want.shape);
    expect(Array.from(got.data)).toEqual(Array.from(want.data));
  });

  it('MultiheadAttention weights and add_bias_kv/add_zero_attn work inside runAsync', async () => {
    const mha = new nn.MultiheadAttention({ embedDim: 16, numHeads: 4, addBiasKv: true, addZeroAttn: true }).useBackend('native');
    const q = randn([5, 2, 16], { seed: 3 });
    const k = randn([7, 2, 16], { seed: 4 });
    const kpm = tensor([[false, false, true, false, false, false, true], [false, false, false, false, false, false, false]]);
    const want = mha.forward(q, k, k, { keyPaddingMask: kpm });
    const got = await mha.forwardAsync(q, k, k, { keyPaddingMask: kpm });
    expect(Array.from(got.output.data)).toEqual(Array.from(want.output.data));
    expect(Array.from(got.weights!.data)).toEqual(Array.from(want.weights!.data));
  });

  it('reuseBuffers recycles intermediates but never a result still held', async () => {
    const big = new nn.TransformerEncoderLayer({ dModel: 128, nhead: 4, dimFeedforward: 256 }).eval().useBackend('native');
    const xs = [randn([64, 4, 128], { seed: 11 }), randn([64, 4, 128], { seed: 12 }), randn([64, 4, 128], { seed: 13 })];
    const want = xs.map((x) => Array.from(big.forward(x).data));
    const first = await runAsync(() => big.forward(xs[0]!), { reuseBuffers: true });
    expect(pooledBufferBytes()).toBeGreaterThan(0); // intermediates went back to the pool
    // Later calls take pooled buffers; the first result must be left alone.
    const rest = await Promise.all(xs.slice(1).map((x) => runAsync(() => big.forward(x), { reuseBuffers: true })));
    expect(Array.from(first.data)).toEqual(want[0]);
    rest.forEach((r, i) => expect(Array.from(r.data)).toEqual(want[i + 1]));
    // A failed call returns everything it took.
    await expect(runAsync(() => big.forward(randn([3, 2, 127])), { reuseBuffers: true })).rejects.toThrowError(RangeError);
  });

  it('size classes: at most 25% slack, and shapes that vary per call reuse the same pooled buffers', async () => {
    for (const b of [1, 1024, 1025, 4096, 5000, 65536, 100_003, 3 << 20]) {
      const c = sizeClass(b);
      expect(c).toBeGreaterThanOrEqual(b);
      if (b > 1024) expect(c).toBeLessThanOrEqual(b * 1.25);
      expect(sizeClass(c)).toBe(c);
    }
    const layer2 = new nn.TransformerEncoderLayer({ dModel: 64, nhead: 4, dimFeedforward: 128 }).eval().useBackend('native');
    const run = async (s: number, n: number): Promise<void> => {
      const x = randn([s, n, 64], { seed: s * 10 + n });
      const want = Array.from(layer2.forward(x).data);
      const got = await runAsync(() => layer2.forward(x), { reuseBuffers: true });
      expect(Array.from(got.data)).toEqual(want);
    };
    for (const s of [40, 33]) await run(s, 8); // the largest and smallest shapes warm up their classes
    const warm = pooledBufferBytes();
    // Every shape in between is new: an exact-size pool would allocate afresh for each and grow.
    for (let s = 39; s >= 34; s--) await run(s, 8);
    expect(pooledBufferBytes()).toBeLessThanOrEqual(warm);
  });

  it('many concurrent calls of different sizes equal their sequential results', async () => {
    manualSeed(3);
    const model = new TransformerModel(40, 32, 4, 2, 2, 64).eval().useBackend('native');
    const inputs = Array.from({ length: 24 }, (_, i) => {
      const s = 3 + (i % 7);
      const ids = (len: number, seed: number): Tensor<'int32'> =>
        tensor(Int32Array.from({ length: len * 2 }, (_, j) => (j * 7 + seed) % 40), [len, 2], 'int32');
      return [ids(s, i), ids(s + 1, i + 5)] as const;
    });
    const sequential = inputs.map(([src, tgt]) => model.forward(src, tgt));
    const concurrent = await Promise.all(inputs.map(([src, tgt]) => model.forwardAsync(src, tgt)));
    concurrent.forEach((r, i) => expect(Array.from(r.data)).toEqual(Array.from(sequential[i]!.data)));
  });

  it('concurrent calls (several threads) equal their sequential results, settle in order, and a later exclusive call reads their outputs', async () => {
    manualSeed(4);
    const model = new TransformerModel(40, 32, 4, 2, 2, 64).eval().useBackend('native');
    const inputs = Array.from({ length: 12 }, (_, i) => {
      const s = 3 + ((i * 5) % 9);
      const ids = (len: number, seed: number): Tensor<'int32'> =>
        tensor(Int32Array.from({ length: len * 2 }, (_, j) => (j * 7 + seed) % 40), [len, 2], 'int32');
      return [ids(s, i), ids(s + 1, i + 5)] as const;
    });
    const before = getNumThreads();
    try {
      setNumThreads(2);
      const sequential = inputs.map(([src, tgt]) => model.forward(src, tgt));
      const settled: number[] = [];
      const calls = inputs.map(([src, tgt], i) => model.forwardAsyncWith({ concurrent: true }, src, tgt).then((r) => (settled.push(i), r)));
      // Enough recorded ahead to keep both lanes busy with one more ready (threads + 1), the rest queued unrecorded.
      expect(recordedAsyncCalls()).toBe(3);
      const got = await Promise.all(calls);
      got.forEach((r, i) => expect(Array.from(r.data)).toEqual(Array.from(sequential[i]!.data)));
      expect(settled).toEqual(inputs.map((_, i) => i));
      // An exclusive call made right after a concurrent one that writes what it reads runs only once that is done.
      const x = randn([1024, 1024], { seed: 9 });
      const y = ops.relu(x);
      const writer = runAsync(() => {
        for (let i = 0; i < 40; i++) ops.relu(ops.sub(ops.add(x, 1), 1), { out: y });
        ops.relu(x, { out: y });
        ops.mul(y, 2, { out: y });
      }, { concurrent: true });
      const reader = runAsync(() => ops.add(y, y));
      await writer;
      expect(Array.from((await reader).data)).toEqual(Array.from(x.data, (v) => Math.fround(Math.max(v, 0) * 2 * 2)));
      // Exclusive and concurrent calls mixed in one queue: each waits for what it must, results unchanged.
      const mixed = await Promise.all(inputs.map(([src, tgt], i) => model.forwardAsyncWith({ concurrent: i % 3 !== 0 }, src, tgt)));
      mixed.forEach((r, i) => expect(Array.from(r.data)).toEqual(Array.from(sequential[i]!.data)));
    } finally {
      setNumThreads(before);
    }
    await expect(runAsync(() => ops.relu(randn([4])), { concurrent: 'yes' } as never)).rejects.toThrow(/option 'concurrent' must be a boolean, got string/);
  });

  it('does the work off the JS thread: the call returns before the kernels have run', async () => {
    const big = new nn.TransformerEncoderLayer({ dModel: 256, nhead: 8, dimFeedforward: 1024 }).eval().useBackend('native');
    const x = randn([256, 4, 256], { seed: 5 });
    const p = big.forwardAsync(x);
    expect(pendingAsyncCalls()).toBeGreaterThan(0);
    await p;
    expect(pendingAsyncCalls()).toBe(0);
  });

  it('an AbortSignal cancels a queued call', async () => {
    const big = new nn.TransformerEncoderLayer({ dModel: 256, nhead: 8, dimFeedforward: 1024 }).eval().useBackend('native');
    const x = randn([256, 4, 256], { seed: 6 });
    const first = big.forwardAsync(x);
    const controller = new AbortController();
    const second = runAsync(() => big.forward(x), { signal: controller.signal });
    controller.abort();
    await expect(second).rejects.toMatchObject({ name: 'AbortError' });
    await first;
    const already = new AbortController();
    already.abort();
    await expect(runAsync(() => big.forward(x), { signal: already.signal })).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('validation errors reject the promise, and the JS backend is refused inside runAsync', async () => {
    await expect(layer.forwardAsync(randn([3, 2, 63]))).rejects.toThrowError(RangeError);
    await expect(runAsync(() => ops.relu(randn([4]), { backend: 'js' }))).rejects.toThrowError(/cannot run inside runAsync/);
    // The recording state is cleared after a failure.
    expect(ops.relu(randn([4]), { backend: 'js' }).shape).toEqual([4]);
  });

  it('the addon loads and runs in several worker_threads at once', async () => {
    const root = path.resolve(__dirname, '..');
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const a = require('node-gyp-build')(workerData.root);
      const n = 64, x = new Float32Array(n * n).map((_, i) => (i % 13) - 6), y = new Float32Array(n * n);
      a.gemm({ a: x, b: x, c: y, m: n, n, k: n, transB: true });
      const list = a.createCommandList();
      const z = new Float32Array(n * n);
      a.softmaxRecord(list, { x: y, y: z, rows: n, cols: n });
      a.submit(list).then(() => parentPort.postMessage(Array.from(z.subarray(0, 8))));`;
    const run = (): Promise<number[]> =>
      new Promise((resolve, reject) => {
        const w = new Worker(code, { eval: true, workerData: { root } });
        w.once('message', resolve);
        w.once('error', reject);
      });
    const results = await Promise.all([run(), run(), run()]);
    expect(results[1]).toEqual(results[0]);
    expect(results[2]).toEqual(results[0]);
    expect(results[0]!.every((v) => Number.isFinite(v))).toBe(true);
  });

  it('command lists check their argument and refuse reuse', async () => {
    const a = addon!;
    expect(() => a.submit({} as never)).toThrowError(TypeError);
    expect(() => a.reluRecord({} as never, { x: new Float32Array(1), y: new Float32Array(1) })).toThrowError(
      "attnode.reluRecord: argument 'list' must be a command list from createCommandList()");
    const list = a.createCommandList();
    const x = new Float32Array([-1, 2]);
    a.reluRecord(list, { x, y: x });
    // A call that does not validate is not recorded, and leaves the list usable.
    expect(() => a.reluRecord(list, { x, y: new Float32Array(3) })).toThrowError(RangeError);
    await a.submit(list);
    expect(Array.from(x)).toEqual([0, 2]);
    expect(() => a.submit(list)).toThrowError(/already submitted/);
    expect(() => a.reluRecord(list, { x, y: x })).toThrowError(/already submitted/);
  });
});
