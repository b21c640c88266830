/**
 * ops.rotaryEmbedding on every available backend: PyTorch/Hugging Face references (fixtures/llama_ops.safetensors:
 * rotate_half and interleaved pairs, partial rotary, per-row positions, Llama 3 frequencies at long positions),
 * a float32-step reference written here, views of a packed QKV projection read and written in place, the number
 * offset form, zero-size inputs, and the errors naming the argument.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadSafetensors, type SafetensorsFile } from '../lib/io/safetensors';
import * as ops from '../lib/ops';
import { Tensor, tensor, zeros } from '../lib/tensor';
import { backends } from './helpers/backends';
import { expectClose, randomData } from './helpers/reference';

const f = Math.fround;

function rnd(shape: number[], seed: number, scale = 1): Tensor<'float32'> {
  return tensor(randomData(shape.reduce((p, d) => p * d, 1), seed, scale), shape);
}

/**
 * HF's formula written out over a contiguous [N, L, H, D] copy, each float32 step rounded (angle, cos/sin, products,
 * sum): positions pos(b, l).
 */
function reference(x: Tensor<'float32'>, pos: (b: number, l: number) => number, invFreq: Float32Array, interleaved: boolean,
  rotaryDim: number): Float32Array {
  const [n, l, h, d] = x.shape as [number, number, number, number];
  const xc = x.contiguous().data;
  const y = Float32Array.from(xc);
  const half = rotaryDim / 2;
  for (let b = 0; b < n; b++) for (let t = 0; t < l; t++) for (let hh = 0; hh < h; hh++) {
    const o = ((b * l + t) * h + hh) * d;
    for (let i = 0; i < half; i++) {
      const a = f(f(pos(b, t)) * invFreq[i]!);
      const c = f(Math.cos(a));
      const s = f(Math.sin(a));
      const [i0, i1] = interleaved ? [2 * i, 2 * i + 1] : [i, i + half];
      const x0 = xc[o + i0]!;
      const x1 = xc[o + i1]!;
      y[o + i0] = f(x0 * c) - f(x1 * s);
      y[o + i1] = f(x1 * c) + f(x0 * s);
    }
  }
  return y;
}

describe.each(backends)('rotaryEmbedding on the %s backend', (backend) => {
  const opts = { backend } as const;

  for (const interleaved of [false, true]) {
    it(`${interleaved ? 'interleaved pairs' : 'rotate_half'}: every float32 step as PyTorch rounds it, shared and per-row positions`, () => {
      const x = rnd([2, 7, 3, 40], 1, 3);
      const inv = ops.rotaryInvFreq(40).data;
      const got = ops.rotaryEmbedding(x, { ...opts, positions: 5, interleaved });
      expectClose(got.data, reference(x, (_b, t) => 5 + t, inv, interleaved, 40), 0, 1e-6);
      const p = tensor(Int32Array.from([0, 0, 0, 1, 2, 3, 4, 10, 11, 12, 13, 14, 15, 16]), [2, 7], 'int32');
      const got2 = ops.rotaryEmbedding(x, { ...opts, positions: p, interleaved });
      expectClose(got2.data, reference(x, (b, t) => p.data[b * 7 + t]!, inv, interleaved, 40), 0, 1e-6);
      // The positions matter: another offset gives other values.
      const other = ops.rotaryEmbedding(x, { ...opts, positions: 6, interleaved });
      expect(Math.max(...Array.from(other.data, (v, i) => Math.abs(v - got.data[i]!)))).toBeGreaterThan(0.1);
    });
  }

  it('partial rotary (rotaryDim < D) copies the remaining features; theta and invFreq change the result', () => {
    const x = rnd([1, 4, 2, 32], 2, 2);
    const got = ops.rotaryEmbedding(x, { ...opts, positions: 3, rotaryDim: 12, theta: 500000 });
    const want = reference(x, (_b, t) => 3 + t, ops.rotaryInvFreq(12, 500000).data, false, 12);
    expectClose(got.data, want, 0, 1e-6);
    for (let r = 0; r < 8; r++) for (let j = 12; j < 32; j++) expect(got.data[r * 32 + j]).toBe(x.data[r * 32 + j]);
    const inv = tensor(Float32Array.from([1, 0.5, 0.25, 0.125, 0.01, 0.001]));
    const got2 = ops.rotaryEmbedding(x, { ...opts, positions: 3, rotaryDim: 12, invFreq: inv });
    expectClose(got2.data, reference(x, (_b, t) => 3 + t, inv.data, false, 12), 0, 1e-6);
  });

  it('rotates heads of a packed QKV projection where they lie: a view in, in place (out = x), and into an out view', () => {
    const [n, l, h, d] = [2, 5, 4, 16];
    const e = h * d;
    const qkv = rnd([n, l, 3 * e], 3, 2);
    const before = Float32Array.from(qkv.data);
    const k = qkv.narrow(-1, e, e).view(n, l, h, d);
    expect(k.isContiguous()).toBe(false);
    const want = reference(k, (_b, t) => 7 + t, ops.rotaryInvFreq(d).data, false, d);
    const fresh = ops.rotaryEmbedding(k, { ...opts, positions: 7 });
    expect(fresh.isContiguous()).toBe(true);
    expectClose(fresh.data, want, 0, 1e-6);
    expect(Array.from(qkv.data)).toEqual(Array.from(before));
    // In place: only k's columns change.
    expect(ops.rotaryEmbedding(k, { ...opts, positions: 7, out: k })).toBe(k);
    expectClose(k.contiguous().data, want, 0, 1e-6);
    for (let r = 0; r < n * l; r++) {
      for (let j = 0; j < 3 * e; j++) if (j < e || j >= 2 * e) expect(qkv.data[r * 3 * e + j]).toBe(before[r * 3 * e + j]);
    }
    // Into an out view (a cache slot laid out [N, H, L, D], viewed as [N, L, H, D]).
    const cache = zeros([n, h, l, d]);
    const slot = cache.permute(0, 2, 1, 3);
    ops.rotaryEmbedding(fresh, { ...opts, positions: 0, out: slot });
    expectClose(slot.contiguous().data, reference(fresh, (_b, t) => t, ops.rotaryInvFreq(d).data, false, d), 0, 1e-6);
  });

  it('a non-contiguous last dim is copied first; zero-size inputs work', () => {
    const x = rnd([1, 3, 2, 8], 4).transpose(2, 3).contiguous().transpose(2, 3);
    expect(x.strides[3]).not.toBe(1);
    expectClose(ops.rotaryEmbedding(x, { ...opts, positions: 1 }).data,
      reference(x, (_b, t) => 1 + t, ops.rotaryInvFreq(8).data, false, 8), 0, 1e-6);
    expect(ops.rotaryEmbedding(zeros([0, 3, 2, 8]), { ...opts, positions: 0 }).shape).toEqual([0, 3, 2, 8]);
    expect(ops.rotaryEmbedding(zeros([2, 0, 2, 8]), { ...opts, positions: zeros([2, 0]).astype('int32') }).size).toBe(0);
    expect(ops.rotaryEmbedding(zeros([1, 2, 2, 0]), { ...opts, positions: 0 }).size).toBe(0);
  });

  it('errors name the argument, the expected and the actual', () => {
    const x = zeros([1, 3, 2, 8]);
    expect(() => ops.rotaryEmbedding(zeros([3, 2, 8]), { ...opts, positions: 0 })).toThrow(/rotaryEmbedding: argument 'x' must have shape \[N, L, H, D\], got \[3, 2, 8\]/);
    expect(() => ops.rotaryEmbedding(x, undefined as never)).toThrow(TypeError);
    expect(() => ops.rotaryEmbedding(x, { ...opts } as never)).toThrow(/argument 'positions'/);
    expect(() => ops.rotaryEmbedding(x, { ...opts, positions: -1 })).toThrow(RangeError);
    expect(() => ops.rotaryEmbedding(x, { ...opts, positions: 1.5 })).toThrow(RangeError);
    expect(() => ops.rotaryEmbedding(x, { ...opts, positions: tensor([0, 1, 2]) as never })).toThrow(/'positions' must be an int32 Tensor/);
    expect(() => ops.rotaryEmbedding(x, { ...opts, positions: tensor(Int32Array.from([0, 1]), [2], 'int32') })).toThrow(/'positions' must have shape \[1, 3\] or \[3\], got \[2\]/);
    expect(() => ops.rotaryEmbedding(x, { ...opts, positions: tensor(Int32Array.from([0, -4, 2]), [3], 'int32') })).toThrow(/hold positions >= 0, got -4 at index 1/);
    expect(() => ops.rotaryEmbedding(x, { ...opts, positions: 0, rotaryDim: 5 })).toThrow(/'rotaryDim' must be even/);
    expect(() => ops.rotaryEmbedding(x, { ...opts, positions: 0, rotaryDim: 10 })).toThrow(RangeError);
    expect(() => ops.rotaryEmbedding(x, { ...opts, positions: 0, invFreq: zeros([3]) })).toThrow(/'invFreq' must have shape \[4\]/);
    expect(() => ops.rotaryEmbedding(x, { ...opts, positions: 0, out: zeros([1, 3, 2, 9]) })).toThrow(/'out' must have shape/);
    const big = zeros([1, 3, 2, 16]);
    expect(() => ops.rotaryEmbedding(big.narrow(-1, 0, 8), { ...opts, positions: 0, out: big.narrow(-1, 4, 8) })).toThrow(/'out' must be x itself/);
  });
});

describe.each(backends)('rotaryEmbedding vs PyTorch (fixtures/llama_ops.safetensors), %s backend', (backend) => {
  let file: SafetensorsFile;
  beforeAll(async () => {
    file = await loadSafetensors(join(__dirname, 'fixtures', 'llama_ops.safetensors'));
  });

  it('every RoPE case within float32 rounding of HF Llama (torch computes cos/sin in float32)', () => {
    const names = Object.keys(file.metadata).filter((k) => k.startsWith('rope.'));
    expect(names.length).toBe(6);
    for (const name of names) {
      const p = JSON.parse(file.metadata[name]!) as { theta: number; interleaved: boolean; rotaryDim: number; customInvFreq: boolean; offset?: number };
      const get = <D extends 'float32' | 'int32'>(k: string): Tensor<D> => file.tensors[`${name}.${k}`] as Tensor<D>;
      const x = get<'float32'>('x');
      const invFreq = get<'float32'>('inv_freq');
      const got = ops.rotaryEmbedding(x, {
        backend, positions: p.offset ?? get<'int32'>('positions'), theta: p.theta, interleaved: p.interleaved,
        rotaryDim: p.rotaryDim, invFreq: p.customInvFreq ? invFreq : null,
      });
      // One float32 ulp of cos/sin (torch's float32 cos vs a rounded double) times |x|, plus the sum's rounding.
      expectClose(got.data, get<'float32'>('out').data, 3e-7, 3e-6);
      if (!p.customInvFreq) {
        // The default frequencies are HF's float32 values bit for bit (at position 8000 one ulp moves the angle 5e-4).
        expect(Array.from(ops.rotaryInvFreq(p.rotaryDim, p.theta).data)).toEqual(Array.from(invFreq.data));
      }
    }
  });
});
