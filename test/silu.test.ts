/**
 * ops.silu, ops.sigmoid, ops.tanh and ops.siluMul (SwiGLU's silu(gate) * up) on every available backend: within
 * float32 rounding of PyTorch's formulas (a float64 evaluation here; PyTorch's own outputs in
 * llama-ops.test.ts), in place, on views, zero-size, and the errors naming the argument.
 */
import { describe, expect, it } from 'vitest';
import * as ops from '../lib/ops';
import { Tensor, tensor, zeros } from '../lib/tensor';
import { backends } from './helpers/backends';
import { expectClose, randomData } from './helpers/reference';

const silu = (x: number): number => x / (1 + Math.exp(-x));
const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

function rnd(shape: number[], seed: number, scale: number): Tensor<'float32'> {
  return tensor(randomData(shape.reduce((p, d) => p * d, 1), seed, scale), shape);
}

/** Inputs across the interesting range: tiny, moderate, large, the exp overflow region and specials. */
function inputs(): Tensor<'float32'> {
  const v = [0, -0, 1e-30, -1e-30, 1e-5, -1e-5, 0.3, -0.3, 0.62, 0.63, -0.7, 2, -2, 9, -9, 20, -20, 88, -88, 100, -100,
    1e4, -1e4, Infinity, -Infinity, NaN];
  const r = randomData(997, 5, 12);
  return tensor(Float32Array.from([...v, ...r]), [v.length + r.length]);
}

/** NaN where the reference is NaN, else |got − want| ≤ rel·|want| (+ a denormal-sized absolute slack). */
function expectUlps(got: Float32Array, x: Float32Array, f: (v: number) => number, rel: number): void {
  const want = Array.from(x, f);
  for (let i = 0; i < want.length; i++) {
    if (!Number.isFinite(want[i]!)) expect(Object.is(got[i], want[i]) || (Number.isNaN(got[i]!) && Number.isNaN(want[i]!)), `element ${i}`).toBe(true);
  }
  const finite = want.map((w, i) => (Number.isFinite(w) ? i : -1)).filter((i) => i >= 0);
  expectClose(finite.map((i) => got[i]!), finite.map((i) => want[i]!), rel, 1e-37);
}

describe.each(backends)('silu, sigmoid, tanh, siluMul on the %s backend', (backend) => {
  const opts = { backend } as const;

  it('silu, sigmoid and tanh are within a few float32 ulps of the float64 formulas, NaN and ±inf as PyTorch', () => {
    const x = inputs();
    expectUlps(ops.silu(x, opts).data, x.data, silu, 5e-7);
    expectUlps(ops.sigmoid(x, opts).data, x.data, sigmoid, 5e-7);
    expectUlps(ops.tanh(x, opts).data, x.data, Math.tanh, 5e-7);
    // PyTorch: silu(-inf) = -inf / inf = NaN, silu(+inf) = inf; sigmoid(±inf) = 1, 0; tanh(±inf) = ±1.
    const s = tensor([Infinity, -Infinity, NaN]);
    const y = ops.silu(s, opts).data;
    expect([y[0], Number.isNaN(y[1]!), Number.isNaN(y[2]!)]).toEqual([Infinity, true, true]);
    expect(Array.from(ops.sigmoid(s, opts).data).slice(0, 2)).toEqual([1, 0]);
    expect(Array.from(ops.tanh(s, opts).data).slice(0, 2)).toEqual([1, -1]);
  });

  it('siluMul rounds silu to float32 before the product (F.silu(gate) * up)', () => {
    const g = rnd([3, 5, 67], 1, 10);
    const u = rnd([3, 5, 67], 2, 3);
    const want = Array.from(g.data, (v, i) => Math.fround(silu(v)) * u.data[i]!);
    expectClose(ops.siluMul(g, u, opts).data, want, 6e-7, 1e-37);
    // The same as the two ops composed on this backend, within rounding.
    expectClose(ops.siluMul(g, u, opts).data, ops.mul(ops.silu(g, opts), u, opts).data, 6e-7, 1e-37);
  });

  it('run in place (out = the input) and into a caller\'s out', () => {
    const x = rnd([4, 33], 3, 5);
    const want = ops.tanh(x, opts);
    const y = ops.tanh(x, { ...opts, out: x });
    expect(y).toBe(x);
    expect(Array.from(x.data)).toEqual(Array.from(want.data));
    const g = rnd([4, 33], 4, 5);
    const u = rnd([4, 33], 5, 5);
    const ref = ops.siluMul(g, u, opts);
    const out = zeros([4, 33]);
    expect(ops.siluMul(g, u, { ...opts, out })).toBe(out);
    expect(Array.from(out.data)).toEqual(Array.from(ref.data));
    expect(ops.siluMul(g, u, { ...opts, out: u })).toBe(u);
    expect(Array.from(u.data)).toEqual(Array.from(ref.data));
  });

  it('read views: a transposed input keeps its layout; the two halves of a packed gate/up projection', () => {
    const x = rnd([6, 10], 6, 4);
    const xt = x.transpose(0, 1);
    const y = ops.silu(xt, opts);
    expect(y.shape).toEqual([10, 6]);
    expectClose(y.contiguous().data, Array.from(xt.contiguous().data, silu), 5e-7, 1e-37);
    // Llama's fused gate_up projection [T, 2F]: gate = [:, :F], up = [:, F:] are column slices (not dense).
    const packed = rnd([5, 16], 7, 6);
    const gate = packed.narrow(1, 0, 8);
    const up = packed.narrow(1, 8, 8);
    const got = ops.siluMul(gate, up, opts);
    const gc = gate.contiguous().data;
    const uc = up.contiguous().data;
    expectClose(got.contiguous().data, Array.from(gc, (v, i) => Math.fround(silu(v)) * uc[i]!), 6e-7, 1e-37);
  });

  it('zero-size inputs give zero-size outputs', () => {
    expect(ops.silu(zeros([0, 4]), opts).shape).toEqual([0, 4]);
    expect(ops.tanh(zeros([3, 0]), opts).size).toBe(0);
    expect(ops.siluMul(zeros([2, 0, 3]), zeros([2, 0, 3]), opts).shape).toEqual([2, 0, 3]);
  });

  it('errors name the argument, the expected and the actual', () => {
    expect(() => ops.silu([1, 2] as never, opts)).toThrow(/silu: argument 'x' must be a Tensor/);
    expect(() => ops.sigmoid(tensor([1, 2], [2], 'int32') as never, opts)).toThrow(TypeError);
    expect(() => ops.siluMul(zeros([2, 3]), zeros([3, 2]), opts)).toThrow(/siluMul: argument 'up' must have gate's shape \[2, 3\], got \[3, 2\]/);
    expect(() => ops.siluMul(zeros([2, 3]), zeros([2, 3]), { ...opts, out: zeros([6]) })).toThrow(RangeError);
    const g = zeros([8]);
    expect(() => ops.siluMul(g, zeros([8]), { ...opts, out: g.narrow(0, 1, 7).view(7) as never })).toThrow(RangeError);
  });
});
