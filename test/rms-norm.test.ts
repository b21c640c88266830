/**
 * RMSNorm (ops.rmsNorm, ops.addRmsNorm, nn.RMSNorm) on every available
 * backend, with PyTorch 2.4's semantics: y = x / √(mean(x²) + eps) · weight,
 * eps null = float32's machine epsilon; the residual form equals add then norm.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadSafetensors, type SafetensorsFile } from '../lib/io/safetensors';
import * as ops from '../lib/ops';
import * as nn from '../lib/nn';
import { Tensor, tensor, zeros } from '../lib/tensor';
import { backends, tolerance } from './helpers/backends';
import { expectClose as expectCloseArrays, randomData } from './helpers/reference';

function expectClose(got: Tensor | ArrayLike<number>, want: ArrayLike<number>, rtol: number, atol: number): void {
  expectCloseArrays(got instanceof Tensor ? got.data : got, want, rtol, atol);
}

function rnd(shape: number[], seed: number, scale = 1, offset = 0): Tensor<'float32'> {
  const t = tensor(randomData(shape.reduce((p, d) => p * d, 1), seed, scale), shape);
  if (offset !== 0) for (let i = 0; i < t.data.length; i++) t.data[i] = t.data[i]! + offset;
  return t;
}

/** Double-precision reference over the trailing `cols` elements of each row. */
function refRmsNorm(x: Float32Array, w: Float32Array | null, cols: number, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let o = 0; o < x.length; o += cols) {
    let sq = 0;
    for (let j = 0; j < cols; j++) sq += x[o + j]! * x[o + j]!;
    const r = 1 / Math.sqrt(sq / cols + eps);
    for (let j = 0; j < cols; j++) y[o + j] = x[o + j]! * r * (w ? w[j]! : 1);
  }
  return y;
}

describe.each(backends)('RMSNorm on the %s backend', (backend) => {
  const opts = { backend } as const;
  const rtol = tolerance[backend];

  for (const [rows, cols] of [[1, 1], [3, 7], [5, 16], [4, 33], [2, 768], [3, 4099]] as const) {
    it(`rmsNorm ${rows}x${cols}, with and without weight, matches a float64 reference`, () => {
      const x = rnd([rows, cols], rows * 31 + cols, 3);
      const w = rnd([cols], cols, 1, 1);
      expectClose(ops.rmsNorm(x, cols, w, 1e-6, opts), refRmsNorm(x.data, w.data, cols, 1e-6), rtol, 1e-6);
      expectClose(ops.rmsNorm(x, [cols], null, 1e-6, opts), refRmsNorm(x.data, null, cols, 1e-6), rtol, 1e-6);
    });
  }

  it('eps defaults to float32 machine epsilon (2^-23), as PyTorch for float32', () => {
    // An all-zero row would divide by √eps: 0 · (1/√eps) is 0 either way, so use tiny values where eps dominates.
    const x = tensor([[1e-4, -1e-4, 2e-4, 0]]);
    const want = refRmsNorm(x.data, null, 4, 2 ** -23);
    expectClose(ops.rmsNorm(x, 4, null, undefined, opts), want, 1e-6, 0);
    expectClose(ops.rmsNorm(x, 4, null, null, opts), want, 1e-6, 0);
    expect(ops.FLOAT32_EPS).toBe(1.1920928955078125e-7);
    // A different eps gives a visibly different result here: the default is really used.
    const other = ops.rmsNorm(x, 4, null, 1e-5, opts);
    expect(Math.abs(other.data[0]! - want[0]!)).toBeGreaterThan(1e-2);
  });

  it('normalizes over several trailing dims, and in place', () => {
    const x = rnd([2, 3, 5], 9, 2);
    const w = rnd([3, 5], 10, 0.5, 1);
    const want = refRmsNorm(x.data, w.data, 15, 1e-5);
    expectClose(ops.rmsNorm(x, [3, 5], w, 1e-5, opts), want, rtol, 1e-6);
    const y = ops.rmsNorm(x, [3, 5], w, 1e-5, { ...opts, out: x });
    expect(y).toBe(x);
    expectClose(x, want, rtol, 1e-6);
  });

  it('addRmsNorm equals rmsNorm(add(x, r)) bit for bit, and sumOut receives the sum', () => {
    const x = rnd([6, 40], 21, 2);
    const r = rnd([6, 40], 22, 2);
    const w = rnd([40], 23, 0.3, 1);
    const want = ops.rmsNorm(ops.add(x, r, opts), 40, w, 1e-6, opts);
    const sumOut = zeros([6, 40]);
    const got = ops.addRmsNorm(x, r, 40, w, 1e-6, { ...opts, sumOut });
    expect(Array.from(got.data)).toEqual(Array.from(want.data));
    expect(Array.from(sumOut.data)).toEqual(Array.from(ops.add(x, r, opts).data));
    // In place: out = x and sumOut = r, the pre-norm residual stream.
    const x2 = x.clone();
    const r2 = r.clone();
    ops.addRmsNorm(x2, r2, 40, w, 1e-6, { ...opts, out: x2, sumOut: r2 });
    expect(Array.from(x2.data)).toEqual(Array.from(want.data));
    expect(Array.from(r2.data)).toEqual(Array.from(sumOut.data));
  });

  it('NaN and infinity propagate per row only', () => {
    const x = tensor([[1, 2, NaN, 4], [1, 2, 3, 4], [Infinity, 1, 1, 1]]);
    const y = ops.rmsNorm(x, 4, null, 1e-6, opts);
    expect(Array.from(y.data.subarray(0, 4)).every(Number.isNaN)).toBe(true);
    expectClose(y.data.subarray(4, 8), refRmsNorm(x.data.subarray(4, 8), null, 4, 1e-6), rtol, 1e-6);
    expect(Number.isNaN(y.data[8])).toBe(true); // inf / inf
  });

  it('zero-size inputs give empty outputs', () => {
    expect(ops.rmsNorm(zeros([0, 4]), 4, null, null, opts).shape).toEqual([0, 4]);
    expect(ops.addRmsNorm(zeros([0, 4]), zeros([0, 4]), 4, null, null, opts).shape).toEqual([0, 4]);
  });

  it('bad arguments are TypeErrors/RangeErrors naming them', () => {
    const x = rnd([2, 4], 1);
    expect(() => ops.rmsNorm(x, 3, null, null, opts)).toThrowError(/rmsNorm: argument 'normalizedShape' must match the trailing dims/);
    expect(() => ops.rmsNorm(x, 4, rnd([3], 2), null, opts)).toThrowError(/rmsNorm: argument 'weight' must have shape \[4\]/);
    expect(() => ops.rmsNorm(x, 4, null, -1, opts)).toThrowError(RangeError);
    expect(() => ops.rmsNorm(x, 4, null, Number.NaN, opts)).toThrowError(/rmsNorm: argument 'eps'/);
    expect(() => ops.rmsNorm(tensor([1, 2], null, 'int32') as never, 2, null, null, opts)).toThrowError(TypeError);
    expect(() => ops.addRmsNorm(x, rnd([1, 4], 2), 4, null, null, opts)).toThrowError(
      "addRmsNorm: argument 'residual' must have shape [2, 4] (x's shape), got [1, 4]");
    const out = zeros([2, 4]);
    expect(() => ops.addRmsNorm(x, x.clone(), 4, null, null, { ...opts, out, sumOut: out })).toThrowError(/'sumOut' must not overlap 'out'/);
  });

  it('nn.RMSNorm: PyTorch options, defaults and state dict', () => {
    const m = new nn.RMSNorm({ normalizedShape: 8 }).useBackend(backend);
    expect(Object.keys(m.stateDict())).toEqual(['weight']);
    expect(Array.from(m.weight!.data)).toEqual(new Array(8).fill(1));
    expect(m.eps).toBeNull();
    const w = rnd([8], 5, 0.2, 1);
    m.loadStateDict({ weight: w });
    const x = rnd([3, 8], 6, 2);
    expectClose(m.forward(x), refRmsNorm(x.data, w.data, 8, 2 ** -23), rtol, 1e-6);
    const plain = new nn.RMSNorm({ normalizedShape: [8], eps: 1e-5, elementwiseAffine: false }).useBackend(backend);
    expect(plain.weight).toBeNull();
    expect(Object.keys(plain.stateDict())).toEqual([]);
    expectClose(plain.forward(x), refRmsNorm(x.data, null, 8, 1e-5), rtol, 1e-6);
    const r = rnd([3, 8], 7);
    expect(Array.from(m.forwardAdd(x, r).data)).toEqual(Array.from(m.forward(ops.add(x, r)).data));
    expect(() => new nn.RMSNorm({ normalizedShape: 0 })).toThrowError(new RangeError("RMSNorm: option 'normalizedShape[0]' must be an integer >= 1, got 0"));
    expect(() => new nn.RMSNorm({ normalizedShape: 4, bias: true } as never)).toThrowError(/RMSNorm/);
  });
});

describe.each(backends)('RMSNorm vs PyTorch 2.4 (fixtures/rms_norm.safetensors), %s backend', (backend) => {
  let file: SafetensorsFile;
  beforeAll(async () => {
    file = await loadSafetensors(join(__dirname, 'fixtures', 'rms_norm.safetensors'));
  });

  it('every case within float32 rounding of PyTorch', () => {
    const names = Object.keys(file.metadata).filter((k) => k.startsWith('rms_norm.')).map((k) => k.slice('rms_norm.'.length));
    expect(names.length).toBe(5);
    for (const name of names) {
      const params = JSON.parse(file.metadata[`rms_norm.${name}`]!) as { normalized_shape: number[]; eps: number | null };
      const get = (k: string): Tensor<'float32'> | undefined => file.tensors[`rms_norm.${name}.${k}`] as Tensor<'float32'> | undefined;
      const want = get('out')!;
      const got = ops.rmsNorm(get('x')!, params.normalized_shape, get('weight') ?? null, params.eps, { backend });
      expect(got.shape).toEqual(want.shape);
      let scale = 0;
      for (const v of want.data) scale = Math.max(scale, Math.abs(v));
      expectClose(got, want.data, 0, 2e-6 * scale);
    }
  });
});
