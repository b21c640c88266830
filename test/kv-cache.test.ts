/**
 * Incremental decoding building blocks: MultiheadAttention.forwardStep with a
 * KVCache (self-attention) or MemoryKV (cross-attention), the layer and stack
 * step APIs, cache growth / truncation, async recording, and that a step's
 * work does not depend on how many positions are already cached.
 */
import { describe, expect, it } from 'vitest';
import * as nn from '../lib/nn';
import { randn, tensor, Tensor } from '../lib/tensor';
import { manualSeed } from '../lib/nn/init';
import { runAsync } from '../lib/async';
import { addon } from '../lib/backend/native';
import { getBackend } from '../lib/backend/registry';
import type { Backend, GemmArgs } from '../lib/backend/backend';
import { backends } from './helpers/backends';

const tol = { js: 1e-5, native: 1e-4 } as const;

/** Positions [from, from + count) of x [T, N, E] / [N, T, E] / [T, E] as a new tensor of the same layout. */
function slicePositions(x: Tensor<'float32'>, from: number, count: number, batchFirst: boolean): Tensor<'float32'> {
  const e = x.shape[x.ndim - 1]!;
  if (x.ndim === 2) return new Tensor(x.data.slice(from * e, (from + count) * e), [count, e], 'float32');
  const bf = batchFirst;
  const n = x.shape[bf ? 0 : 1]!;
  const t = x.shape[bf ? 1 : 0]!;
  const out = new Float32Array(n * count * e);
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < count; i++) {
      const src = bf ? (b * t + from + i) * e : ((from + i) * n + b) * e;
      const dst = bf ? (b * count + i) * e : (i * n + b) * e;
      out.set(x.data.subarray(src, src + e), dst);
    }
  }
  return new Tensor(out, bf ? [n, count, e] : [count, n, e], 'float32');
}

function expectClose(got: Tensor<'float32'>, want: Tensor<'float32'>, rtol: number): void {
  expect(got.shape).toEqual(want.shape);
  let scale = 0;
  for (const v of want.data) scale = Math.max(scale, Math.abs(v));
  let diff = 0;
  for (let i = 0; i < got.size; i++) diff = Math.max(diff, Math.abs(got.data[i]! - want.data[i]!));
  expect(diff).toBeLessThanOrEqual(rtol * Math.max(1, scale));
}

/** Runs `step` over `chunks` of x's positions and checks each chunk's output against the same rows of `full`. */
function checkChunks(
  x: Tensor<'float32'>,
  full: Tensor<'float32'>,
  chunks: number[],
  batchFirst: boolean,
  step: (chunk: Tensor<'float32'>) => Tensor<'float32'>,
  rtol: number,
): void {
  let p = 0;
  for (const c of chunks) {
    const out = step(slicePositions(x, p, c, batchFirst));
    expectClose(out, slicePositions(full, p, c, batchFirst), rtol);
    p += c;
  }
}

describe.each(backends)('%s backend', (backend) => {
  const rtol = tol[backend];

  describe('MultiheadAttention.forwardStep', () => {
    it.each([
      ['seq-first', false, [9, 3]],
      ['batch-first', true, [9, 3]],
      ['batch 1', false, [9, 1]],
      ['unbatched', false, [9]],
    ] as const)('with a KVCache equals causal forward on the prefix (%s)', (_, batchFirst, dims) => {
      manualSeed(11);
      const mha = new nn.MultiheadAttention({ embedDim: 16, numHeads: 4, batchFirst }).useBackend(backend);
      const t = dims[0];
      const n = dims[1] ?? 1;
      const shape = dims.length === 1 ? [t, 16] : batchFirst ? [n, t, 16] : [t, n, 16];
      const x = randn(shape, { seed: 5 });
      const full = mha.forward(x, x, x, { isCausal: true, needWeights: false }).output;
      // Capacity 1 forces growth (1 → 4 → 8 → 16) while positions are cached; the chunks cover a whole prompt
      // (causal flag), single tokens and a multi-token chunk after cached positions (offset causal mask).
      const cache = mha.createCache({ batch: n, capacity: 1 });
      checkChunks(x, full, [3, 1, 1, 3, 1], batchFirst, (c) => mha.forwardStep(c, cache), rtol);
      expect(cache.length).toBe(9);
      expect(cache.capacity).toBe(16);
    });

    it('with a KVCache and a key padding mask over all keys equals forward with the same masks', () => {
      manualSeed(12);
      const mha = new nn.MultiheadAttention({ embedDim: 16, numHeads: 2 }).useBackend(backend);
      const x = randn([6, 2, 16], { seed: 6 });
      const pad = [[true, false, false, false, false, false], [false, false, true, false, false, false]];
      const kpm = tensor(pad);
      const full = mha.forward(x, x, x, { isCausal: true, keyPaddingMask: kpm, needWeights: false }).output;
      const cache = mha.createCache({ batch: 2 });
      let p = 0;
      for (const c of [2, 1, 3]) {
        const mask = tensor(pad.map((r) => r.slice(0, p + c)));
        const out = mha.forwardStep(slicePositions(x, p, c, false), cache, { keyPaddingMask: mask });
        const want = slicePositions(full, p, c, false);
        // Sequence 0's first query sees only a padded key: NaN in both, as PyTorch gives.
        for (let i = 0; i < out.size; i++) {
          if (Number.isNaN(want.data[i]!)) expect(out.data[i]).toBeNaN();
          else expect(Math.abs(out.data[i]! - want.data[i]!)).toBeLessThanOrEqual(rtol * 10);
        }
        p += c;
      }
    });

    it.each([false, true])('with a MemoryKV equals forward(query, memory, memory) (batchFirst %s)', (batchFirst) => {
      manualSeed(13);
      const mha = new nn.MultiheadAttention({ embedDim: 16, numHeads: 4, batchFirst }).useBackend(backend);
      const q = randn(batchFirst ? [3, 2, 16] : [2, 3, 16], { seed: 7 });
      const mem = randn(batchFirst ? [3, 5, 16] : [5, 3, 16], { seed: 8 });
      const kpm = tensor([[false, false, false, true, true], [false, false, false, false, false], [true, false, false, false, false]]);
      const kv = mha.precomputeKV(mem);
      expect([kv.batch, kv.length]).toEqual([3, 5]);
      const want = mha.forward(q, mem, mem, { keyPaddingMask: kpm, needWeights: false }).output;
      expectClose(mha.forwardStep(q, kv, { keyPaddingMask: kpm }), want, rtol);
      // Reused: the same keys/values again, nothing appended.
      expectClose(mha.forwardStep(q, kv, { keyPaddingMask: kpm }), want, rtol);
    });

    it('with a MemoryKV supports kdim/vdim different from embedDim', () => {
      manualSeed(14);
      const mha = new nn.MultiheadAttention({ embedDim: 8, numHeads: 2, kdim: 6, vdim: 10 }).useBackend(backend);
      const q = randn([2, 2, 8], { seed: 9 });
      const k = randn([4, 2, 6], { seed: 10 });
      const v = randn([4, 2, 10], { seed: 11 });
      expectClose(mha.forwardStep(q, mha.precomputeKV(k, v)), mha.forward(q, k, v, { needWeights: false }).output, rtol);
    });

    it('rejects what it cannot do', () => {
      const withBias = new nn.MultiheadAttention({ embedDim: 8, numHeads: 2, addBiasKv: true }).useBackend(backend);
      expect(() => withBias.forwardStep(randn([1, 1, 8]), withBias.createCache())).toThrow(/addBiasKv/);
      const mha = new nn.MultiheadAttention({ embedDim: 8, numHeads: 2 }).useBackend(backend);
      expect(() => mha.forwardStep(randn([1, 2, 8]), mha.createCache({ batch: 3 }))).toThrow(/batch 2/);
      expect(() => mha.forwardStep(randn([1, 2, 8]), mha.createCache({ batch: 2 }), { keyPaddingMask: tensor([[false], [false], [false]]) }))
        .toThrow(/keyPaddingMask/);
      const cross = new nn.MultiheadAttention({ embedDim: 8, numHeads: 2, kdim: 4 }).useBackend(backend);
      expect(() => cross.forwardStep(randn([1, 1, 8]), cross.createCache())).toThrow(/kdim/);
    });
  });

  describe.each([false, true])('layers and stacks (normFirst %s)', (normFirst) => {
    it.each([false, true])('TransformerDecoder.forwardStep equals forward with tgtIsCausal (batchFirst %s)', (batchFirst) => {
      manualSeed(21);
      const dec = new nn.TransformerDecoder({
        layer: { dModel: 16, nhead: 4, dimFeedforward: 32, normFirst, batchFirst, activation: 'gelu' },
        numLayers: 3,
        norm: true,
      }).eval().useBackend(backend);
      const tgt = randn(batchFirst ? [2, 7, 16] : [7, 2, 16], { seed: 22 });
      const mem = randn(batchFirst ? [2, 4, 16] : [4, 2, 16], { seed: 23 });
      const mkpm = tensor([[false, false, true, true], [false, false, false, false]]);
      const full = dec.forward(tgt, mem, { tgtIsCausal: true, memoryKeyPaddingMask: mkpm });
      const cache = dec.createCache(mem, { capacity: 2 });
      checkChunks(tgt, full, [1, 1, 4, 1], batchFirst, (c) => dec.forwardStep(c, cache, { memoryKeyPaddingMask: mkpm }), rtol);
      expect(cache.length).toBe(7);
      // Truncate and redo the tail: the same rows again.
      cache.truncate(2);
      checkChunks(slicePositions(tgt, 2, 5, batchFirst), slicePositions(full, 2, 5, batchFirst), [2, 3], batchFirst,
        (c) => dec.forwardStep(c, cache, { memoryKeyPaddingMask: mkpm }), rtol);
    });

    it('TransformerEncoder.forwardStep equals forward with isCausal', () => {
      manualSeed(24);
      const enc = new nn.TransformerEncoder({ layer: { dModel: 16, nhead: 2, dimFeedforward: 24, normFirst }, numLayers: 2, norm: true }).eval()
        .useBackend(backend);
      const x = randn([6, 3, 16], { seed: 25 });
      const cache = enc.createCache({ batch: 3 });
      checkChunks(x, enc.forward(x, { isCausal: true }), [2, 1, 1, 2], false, (c) => enc.forwardStep(c, cache), rtol);
      expect(cache.length).toBe(6);
    });

    it('TransformerDecoderLayer.forwardStep handles unbatched input', () => {
      manualSeed(26);
      const layer = new nn.TransformerDecoderLayer({ dModel: 16, nhead: 4, dimFeedforward: 32, normFirst }).eval().useBackend(backend);
      const tgt = randn([5, 16], { seed: 27 });
      const mem = randn([3, 16], { seed: 28 });
      const cache = layer.createCache(mem);
      checkChunks(tgt, layer.forward(tgt, mem, { tgtIsCausal: true }), [2, 1, 2], false, (c) => layer.forwardStep(c, cache), rtol);
    });
  });

  it('a step costs the same GEMM work at position 1 and position 60 (nothing earlier is recomputed)', () => {
    manualSeed(31);
    let flops = 0;
    const inner = getBackend(backend);
    const gemm = (g: GemmArgs): void => {
      flops += g.m * g.n * g.k * (g.batch ?? 1);
      inner.gemm(g);
    };
    // A proxy over an empty target: backends may be frozen, and a proxy of a frozen object must not change a method.
    const counting = new Proxy({}, {
      get: (_, prop) => {
        if (prop === 'gemm') return gemm;
        const value: unknown = Reflect.get(inner, prop);
        return typeof value === 'function' ? value.bind(inner) : value;
      },
    }) as Backend;
    const dec = new nn.TransformerDecoder({ layer: { dModel: 16, nhead: 2, dimFeedforward: 32 }, numLayers: 2 }).eval().useBackend(counting);
    const mem = randn([4, 2, 16], { seed: 32 });
    const cache = dec.createCache(mem, { capacity: 64 });
    const perStep: number[] = [];
    for (let i = 0; i < 61; i++) {
      flops = 0;
      dec.forwardStep(randn([1, 2, 16], { seed: 100 + i }), cache);
      perStep.push(flops);
    }
    expect(perStep[60]).toBe(perStep[1]);
    expect(cache.length).toBe(61);
  });
});

describe.runIf(addon !== null)('forwardStep inside runAsync (native)', () => {
  it('gives exactly the sync results, including a capacity doubling inside the recording', async () => {
    manualSeed(41);
    const dec = new nn.TransformerDecoder({ layer: { dModel: 16, nhead: 4, dimFeedforward: 32 }, numLayers: 2, norm: true }).eval()
      .useBackend('native');
    const tgt = randn([6, 2, 16], { seed: 42 });
    const mem = randn([3, 2, 16], { seed: 43 });
    const syncCache = dec.createCache(mem, { capacity: 1 });
    const asyncCache = await runAsync(() => dec.createCache(mem, { capacity: 1 }));
    for (const [p, c] of [[0, 2], [2, 1], [3, 3]] as const) {
      const chunk = slicePositions(tgt, p, c, false);
      const want = dec.forwardStep(chunk, syncCache);
      const got = await runAsync(() => dec.forwardStep(chunk, asyncCache));
      expect(Array.from(got.data)).toEqual(Array.from(want.data));
    }
  });
});

/** A cache of `batch` rows and `len` positions whose every value encodes (row, position, feature). */
function filledCache(batch: number, len: number, embedDim: number, capacity: number): nn.KVCache {
  const cache = new nn.KVCache({ batch, embedDim, capacity });
  const row = 2 * embedDim;
  for (let b = 0; b < batch; b++) {
    for (let p = 0; p < len; p++) {
      for (let f = 0; f < row; f++) cache.data[(b * capacity + p) * row + f] = b * 1000 + p * 10 + f / 100;
    }
  }
  cache.advance(len);
  return cache;
}

/** The cached rows of sequence b, [len, 2·embedDim] flat. */
function cachedRows(cache: nn.KVCache, b: number): number[] {
  const row = 2 * cache.embedDim;
  const start = b * cache.capacity * row;
  return Array.from(cache.data.subarray(start, start + cache.length * row));
}

describe.each(backends)('KVCache.reorder on the %s backend (beam search)', (backend) => {
  const be = getBackend(backend);

  it('gives each sequence the cached positions of the sequence it names', () => {
    const cache = filledCache(4, 3, 2, 5);
    const before = [0, 1, 2, 3].map((b) => cachedRows(cache, b));
    cache.reorder(be, Int32Array.from([2, 2, 0, 1]));
    expect([0, 1, 2, 3].map((b) => cachedRows(cache, b))).toEqual([before[2], before[2], before[0], before[1]]);
    expect(cache.length).toBe(3);
    // A second reorder uses the other buffer; growing afterwards keeps the reordered rows.
    cache.reorder(be, Int32Array.from([3, 0, 1, 2]));
    const after = [0, 1, 2, 3].map((b) => cachedRows(cache, b));
    expect(after).toEqual([before[1], before[2], before[2], before[0]]);
    cache.reserve(be, 11);
    expect(cache.capacity).toBe(20);
    expect([0, 1, 2, 3].map((b) => cachedRows(cache, b))).toEqual(after);
    cache.reorder(be, Int32Array.from([0, 0, 0, 0]));
    expect([0, 1, 2, 3].map((b) => cachedRows(cache, b))).toEqual([after[0], after[0], after[0], after[0]]);
  });

  it('reorders every layer of the stack caches, and rejects bad indices naming them', () => {
    const layers = [filledCache(2, 2, 3, 4), filledCache(2, 2, 3, 4)];
    const rows0 = layers.map((c) => cachedRows(c, 0));
    new nn.SelfAttentionCache(layers).reorder(be, Int32Array.from([0, 0]));
    layers.forEach((c, i) => expect(cachedRows(c, 1)).toEqual(rows0[i]));
    const dec = new nn.DecoderCache([{ selfAttn: filledCache(2, 1, 1, 2), crossAttn: null as never }]);
    const first = cachedRows(dec.layers[0]!.selfAttn, 1);
    dec.reorder(be, Int32Array.from([1, 1]));
    expect(cachedRows(dec.layers[0]!.selfAttn, 0)).toEqual(first);
    const c = filledCache(2, 1, 1, 2);
    expect(() => c.reorder(be, Int32Array.from([0]))).toThrow(/'rowIndices' must be an Int32Array of 2 row indices.*got 1 entries/);
    expect(() => c.reorder(be, [0, 1] as never)).toThrow(TypeError);
    expect(() => c.reorder(be, Int32Array.from([0, 2]))).toThrow(/'rowIndices' must hold rows in \[0, 2\), got 2 at position 1/);
  });
});

describe.runIf(addon !== null)('KVCache.reorder inside runAsync (native)', () => {
  it('runs in order with the recorded steps around it', async () => {
    manualSeed(7);
    const mha = new nn.MultiheadAttention({ embedDim: 8, numHeads: 2, batchFirst: true });
    const x = randn([3, 5, 8], { seed: 3 });
    const idx = Int32Array.from([1, 1, 0]);
    const be = getBackend('native');
    // Steps 0..4 with a reorder before step 2 (and one before step 4 after the cache grew), sync ...
    const run = (cache: nn.KVCache): Tensor<'float32'>[] => [0, 1, 2, 3, 4].map((p) => {
      if (p === 2 || p === 4) cache.reorder(be, idx);
      const step = slicePositions(x, p, 1, true);
      return mha.forwardStep(step, cache);
    });
    const want = run(mha.createCache({ batch: 3, capacity: 2 }));
    // ... and all recorded in one runAsync: the gathers must run after the projections recorded before them.
    const got = await runAsync(() => run(mha.createCache({ batch: 3, capacity: 2 })));
    got.forEach((g, i) => expect(Array.from(g.contiguous().data)).toEqual(Array.from(want[i]!.contiguous().data)));
  });
});
