/**
 * Synchronous forwards lend their intermediates from the buffer pool
 * (lib/workspace.ts withForwardScope): results a caller holds are never
 * reused, the pool stays flat across calls, nested layers recycle per layer,
 * a forward that throws returns what it took, and async calls in flight are
 * unaffected. On both backends: the scope is in the modules, not the kernels.
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import * as nn from '../lib/nn';
import { addon } from '../lib/backend/native';
import { pooledBufferBytes, clearBufferPool } from '../lib/workspace';
import { randn, tensor } from '../lib/tensor';
import { setGradEnabled } from '../lib/autograd/index';
import { setForwardProgramEnabled } from '../lib/forward-program';

// Inference behaviour (buffer pooling, reduced-precision attention) is that of forwards without an autograd graph:
// parameters require grad (as in PyTorch), so these tests run with grad mode off, as inference code does. The
// eager forward's scopes are what is tested: repeated encoder calls would otherwise be replayed programs, which
// keep their buffers (test/forward-program.test.ts checks those).
let programWas = true;
beforeAll(() => {
  setGradEnabled(false);
  programWas = setForwardProgramEnabled(false);
});
afterAll(() => {
  setGradEnabled(true);
  setForwardProgramEnabled(programWas);
});

const backends = addon ? (['native', 'js'] as const) : (['js'] as const);

describe.each(backends)('forward scopes (%s)', (backend) => {
  const layerOpts = { dModel: 64, nhead: 4, dimFeedforward: 256 };

  it('never reuses a result the caller still holds, and keeps the pool flat', () => {
    nn.manualSeed(1);
    const enc = new nn.TransformerEncoder({ layer: layerOpts, numLayers: 2 }).eval().useBackend(backend);
    const xs = [0, 1, 2, 3].map((i) => randn([40, 2, 64], { seed: 20 + i }));
    clearBufferPool();
    const results = xs.map((x) => enc.forward(x));
    const copies = results.map((r) => Float32Array.from(r.data));
    expect(pooledBufferBytes()).toBeGreaterThan(0);
    const warm = pooledBufferBytes();
    for (const x of xs) enc.forward(x);
    expect(pooledBufferBytes()).toBe(warm); // same shapes: the same buffers go round
    results.forEach((r, i) => expect(Array.from(r.data)).toEqual(Array.from(copies[i]!)));
    // Recomputing gives the same values from recycled buffers.
    expect(Array.from(enc.forward(xs[0]!).data)).toEqual(Array.from(copies[0]!));
  });

  it('keeps attention weights returned next to the output', () => {
    const mha = new nn.MultiheadAttention({ embedDim: 32, numHeads: 4 }).useBackend(backend);
    const x = randn([30, 2, 32], { seed: 5 });
    const a = mha.forward(x, x, x);
    const w = Float32Array.from(a.weights!.data);
    const o = Float32Array.from(a.output.data);
    mha.forward(randn([30, 2, 32], { seed: 6 }), x, x);
    expect(Array.from(a.weights!.data)).toEqual(Array.from(w));
    expect(Array.from(a.output.data)).toEqual(Array.from(o));
  });

  it('nested layers recycle per layer: six layers pool about what one does', () => {
    nn.manualSeed(2);
    const x = randn([50, 2, 64], { seed: 7 });
    clearBufferPool();
    new nn.TransformerEncoder({ layer: layerOpts, numLayers: 1 }).eval().useBackend(backend).forward(x);
    const one = pooledBufferBytes();
    clearBufferPool();
    new nn.TransformerEncoder({ layer: layerOpts, numLayers: 6 }).eval().useBackend(backend).forward(x);
    // One layer's intermediates plus the five inner layer outputs, not six layers' worth.
    expect(pooledBufferBytes()).toBeLessThan(2 * one);
  });

  it('a forward that throws part-way returns the buffers it took', () => {
    const mha = new nn.MultiheadAttention({ embedDim: 64, numHeads: 4 }).useBackend(backend);
    const x = randn([40, 2, 64], { seed: 8 });
    mha.forward(x, x, x); // warm the pool
    const before = pooledBufferBytes();
    // The key padding mask is checked after the projections have taken their buffers.
    const bad = tensor(Array.from({ length: 3 * 40 }, () => false), [3, 40], 'bool');
    expect(() => mha.forward(x, x, x, { keyPaddingMask: bad })).toThrowError(RangeError);
    expect(pooledBufferBytes()).toBe(before);
  });
});

describe.runIf(addon !== null)('forward scopes and async calls', () => {
  it('a sync forward while async calls are in flight leaves their buffers alone', async () => {
    nn.manualSeed(3);
    const layer = new nn.TransformerEncoderLayer({ dModel: 64, nhead: 4, dimFeedforward: 128 }).eval().useBackend('native');
    const xs = [0, 1, 2].map((i) => randn([33, 3, 64], { seed: 40 + i }));
    const want = xs.map((x) => Array.from(layer.forward(x).data));
    const pending = xs.map((x) => layer.forwardAsync(x));
    const sync = xs.map((x) => Array.from(layer.forward(x).data)); // runs while the lists are queued
    const got = await Promise.all(pending);
    got.forEach((g, i) => expect(Array.from(g.data)).toEqual(want[i]));
    expect(sync).toEqual(want);
  });
});
