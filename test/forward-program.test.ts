/**
 * Replayed inference forwards of TransformerEncoder / TransformerEncoderLayer (lib/forward-program.ts): the same
 * outputs as the eager forward bit for bit, recorded on the second call with a shape, recorded again when weights,
 * precision or shape change, and never used where the recorded list would compute something else (autograd,
 * training mode, masks, the JS backend, runAsync, a custom activation).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { addon } from '../lib/backend/native';
import * as a from '../lib/index';
import { forwardProgramStats, setForwardProgramEnabled } from '../lib/forward-program';
import { bufferPoolCounters } from '../lib/workspace';

type F32 = a.Tensor<'float32'>;

const layerOptions = { dModel: 32, nhead: 4, dimFeedforward: 48, activation: 'gelu' as const, batchFirst: true, dropout: 0.1 };

/** The eager forward's output (program off), a contiguous copy. */
function eager(fn: () => F32): Float32Array {
  const was = setForwardProgramEnabled(false);
  try {
    return Float32Array.from(fn().contiguous().data);
  } finally {
    setForwardProgramEnabled(was);
  }
}

/** Runs `fn` with the program on and returns its output and how many programs were recorded and run meanwhile. */
function replayed(fn: () => F32): { out: Float32Array; recorded: number; runs: number } {
  const was = setForwardProgramEnabled(true);
  const s0 = forwardProgramStats();
  try {
    const out = Float32Array.from(fn().contiguous().data);
    const s1 = forwardProgramStats();
    return { out, recorded: s1.recorded - s0.recorded, runs: s1.runs - s0.runs };
  } finally {
    setForwardProgramEnabled(was);
  }
}

const threads0 = a.getNumThreads();

describe.skipIf(!addon)('replayed encoder forwards (skipped: native addon not loaded)', () => {
  afterEach(() => {
    a.setGradEnabled(true);
    a.setNumThreads(threads0);
  });

  it.each([
    ['post-norm gelu', {}],
    ['pre-norm relu', { normFirst: true, activation: 'relu' as const }],
  ])('a %s layer: recorded on the second call with a shape, then replayed, equal to the eager forward bit for bit', (_name, extra) => {
    a.manualSeed(1);
    const layer = new a.nn.TransformerEncoderLayer({ ...layerOptions, ...extra }).eval();
    const x = a.randn([2, 7, 32]);
    a.setGradEnabled(false);
    const ref = eager(() => layer.forward(x));
    const first = replayed(() => layer.forward(x));
    expect([first.recorded, first.runs]).toEqual([0, 0]);
    const second = replayed(() => layer.forward(x));
    expect([second.recorded, second.runs]).toEqual([1, 1]);
    const third = replayed(() => layer.forward(x));
    expect([third.recorded, third.runs]).toEqual([0, 1]);
    for (const r of [first, second, third]) expect(r.out).toEqual(ref);
  });

  it('a 3-layer encoder with a final norm and causal attention: one program for the stack, equal to eager', () => {
    a.manualSeed(2);
    const enc = new a.nn.TransformerEncoder({ layer: layerOptions, numLayers: 3, norm: true }).eval();
    const x = a.randn([5, 2, 32]).transpose(0, 1); // not contiguous: copied into the program's input
    a.setGradEnabled(false);
    for (const isCausal of [false, true]) {
      const ref = eager(() => enc.forward(x, { isCausal }));
      replayed(() => enc.forward(x, { isCausal }));
      const r = replayed(() => enc.forward(x, { isCausal }));
      expect([r.recorded, r.runs]).toEqual([1, 1]);
      expect(r.out).toEqual(ref);
    }
  });

  it('each output is a tensor of its own (the program\'s buffer is overwritten by the next call)', () => {
    a.manualSeed(3);
    const layer = new a.nn.TransformerEncoderLayer(layerOptions).eval();
    const x1 = a.randn([1, 6, 32]);
    const x2 = a.randn([1, 6, 32]);
    a.setGradEnabled(false);
    const ref1 = eager(() => layer.forward(x1));
    const ref2 = eager(() => layer.forward(x2));
    layer.forward(x1);
    const y1 = layer.forward(x1);
    const y2 = layer.forward(x2);
    expect(forwardProgramStats().runs).toBeGreaterThan(0);
    expect(Float32Array.from(y1.data)).toEqual(ref1);
    expect(Float32Array.from(y2.data)).toEqual(ref2);
  });

  it('records again for a new shape, weights written in place or replaced, another weight precision', () => {
    a.manualSeed(4);
    const enc = new a.nn.TransformerEncoder({ layer: layerOptions, numLayers: 2 }).eval();
    const x = a.randn([2, 6, 32]);
    const longer = a.randn([2, 9, 32]);
    a.setGradEnabled(false);
    const settle = (input: F32): ReturnType<typeof replayed> => {
      replayed(() => enc.forward(input));
      return replayed(() => enc.forward(input));
    };
    expect(settle(x).recorded).toBe(1);
    // Another shape: the first call with it runs eagerly, the second records.
    const other = replayed(() => enc.forward(longer));
    expect([other.recorded, other.runs]).toEqual([0, 0]);
    expect(other.out).toEqual(eager(() => enc.forward(longer)));
    expect(settle(longer).out).toEqual(eager(() => enc.forward(longer)));
    // In place (the version moves): the recorded GEMM's packed weight is stale.
    const w = enc.layers.at(1).linear1.weight;
    a.ops.mul(w, 2, { out: w });
    const afterInPlace = settle(x);
    expect(afterInPlace.recorded).toBe(1);
    expect(afterInPlace.out).toEqual(eager(() => enc.forward(x)));
    // Replaced, as loadStateDict does.
    enc.layers.at(0).norm2.weight = a.full([32], 0.5);
    const afterReplace = settle(x);
    expect(afterReplace.recorded).toBe(1);
    expect(afterReplace.out).toEqual(eager(() => enc.forward(x)));
    // Weights in bf16 where the CPU has it: the precision is part of what was recorded.
    if (a.info().native?.bf16) {
      enc.useWeightPrecision('bfloat16');
      const bf16 = settle(x);
      expect(bf16.recorded).toBe(1);
      expect(bf16.out).toEqual(eager(() => enc.forward(x)));
    }
  });

  it('a program takes its buffers from the shared pool and hands them back when it is replaced', () => {
    a.manualSeed(7);
    const enc = new a.nn.TransformerEncoder({ layer: layerOptions, numLayers: 2 }).eval();
    const x = a.randn([2, 8, 32]);
    a.setGradEnabled(false);
    setForwardProgramEnabled(true);
    enc.forward(x); // eager: its intermediates go to the pool
    enc.forward(x); // recorded from them
    // Two replayed calls allocate only their outputs, which the caller keeps.
    let fresh = bufferPoolCounters().freshBytes;
    enc.forward(x);
    enc.forward(x);
    const outputs = bufferPoolCounters().freshBytes - fresh;
    fresh = bufferPoolCounters().freshBytes;
    const recorded = forwardProgramStats().recorded;
    const w = enc.layers.at(0).linear2.weight;
    a.ops.mul(w, 0.5, { out: w });
    enc.forward(x); // the stale program is dropped (its buffers to the pool): eager from them
    enc.forward(x); // a new program recorded from the same buffers
    expect(forwardProgramStats().recorded).toBe(recorded + 1);
    expect(bufferPoolCounters().freshBytes - fresh).toBe(outputs);
  });

  it('replays at another thread count than it was recorded at, with the same results', () => {
    a.manualSeed(5);
    const layer = new a.nn.TransformerEncoderLayer({ ...layerOptions, dModel: 64, dimFeedforward: 256 }).eval();
    const x = a.randn([2, 40, 64]);
    a.setGradEnabled(false);
    a.setNumThreads(1);
    layer.forward(x);
    layer.forward(x);
    a.setNumThreads(2);
    const r = replayed(() => layer.forward(x));
    expect([r.recorded, r.runs]).toEqual([0, 1]);
    expect(r.out).toEqual(eager(() => layer.forward(x)));
  });

  it('runs eagerly with autograd, in training mode, with masks, on the JS backend, inside forwardAsync and with an activation function', async () => {
    a.manualSeed(6);
    const layer = new a.nn.TransformerEncoderLayer(layerOptions).eval();
    const x = a.randn([2, 5, 32]);
    const never = (fn: () => F32): Float32Array => {
      const r1 = replayed(fn);
      const r2 = replayed(fn);
      expect([r1.recorded + r2.recorded, r1.runs + r2.runs]).toEqual([0, 0]);
      return r2.out;
    };
    // Grad mode on and the parameters require grad: the graph is recorded, and backward reaches the weights.
    const y = layer.forward(x);
    expect(y.gradFn).not.toBeNull();
    never(() => layer.forward(x));
    a.setGradEnabled(false);
    const mask = a.tensor([[false, false, false, true, true], [false, false, false, false, false]]);
    expect(never(() => layer.forward(x, { srcKeyPaddingMask: mask }))).toEqual(eager(() => layer.forward(x, { srcKeyPaddingMask: mask })));
    layer.train();
    never(() => layer.forward(x));
    layer.eval();
    const asyncOut = await layer.forwardAsync(x);
    const s = forwardProgramStats();
    expect(Float32Array.from(asyncOut.data)).toEqual(eager(() => layer.forward(x)));
    await layer.forwardAsync(x);
    expect(forwardProgramStats()).toEqual(s);
    const js = new a.nn.TransformerEncoderLayer(layerOptions).eval().useBackend('js');
    never(() => js.forward(x));
    const custom = new a.nn.TransformerEncoderLayer({ ...layerOptions, activation: (t: F32) => a.ops.gelu(t) }).eval();
    never(() => custom.forward(x));
  });

  it('a bad input gets the eager forward\'s error', () => {
    const enc = new a.nn.TransformerEncoder({ layer: layerOptions, numLayers: 1 }).eval();
    a.setGradEnabled(false);
    expect(() => enc.forward(a.randn([2, 5, 16]))).toThrow(/TransformerEncoderLayer\.forward: argument 'src' must have shape/);
  });
});
