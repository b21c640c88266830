import { describe, expect, it } from 'vitest';
import { Rng, Tensor, arange, empty, full, isTensor, ones, rand, randn, tensor, zeros } from '../lib/tensor';

describe('tensor()', () => {
  it('infers shape and float32 from nested numbers', () => {
    const t = tensor([[1, 2, 3], [4, 5, 6]]);
    expect(t.shape).toEqual([2, 3]);
    expect(t.dtype).toBe('float32');
    expect(t.data).toBeInstanceOf(Float32Array);
    expect(t.size).toBe(6);
    expect(t.ndim).toBe(2);
    expect(Array.from(t.data)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(Object.isFrozen(t.shape)).toBe(true);
  });

  it('infers bool from booleans and honours an explicit dtype', () => {
    const b = tensor([[true, false], [false, true]]);
    expect(b.dtype).toBe('bool');
    expect(b.data).toBeInstanceOf(Uint8Array);
    expect(b.toArray()).toEqual([[true, false], [false, true]]);
    const i = tensor([1, -2, 3], null, 'int32');
    expect(i.data).toBeInstanceOf(Int32Array);
    expect(Array.from(i.data)).toEqual([1, -2, 3]);
    expect(tensor([0, 2, -1], undefined, 'bool').toArray()).toEqual([false, true, true]);
  });

  it('wraps typed arrays without copying', () => {
    const f = new Float32Array([1, 2, 3, 4]);
    const t = tensor(f, [2, 2]);
    expect(t.data).toBe(f);
    f[3] = 9;
    expect(t.get(1, 1)).toBe(9);
    expect(tensor(new Int32Array(3)).dtype).toBe('int32');
    expect(tensor(new Uint8Array(2)).dtype).toBe('bool');
    expect(tensor(new Float32Array(5)).shape).toEqual([5]);
  });

  it('copies other typed arrays into the requested dtype', () => {
    const t = tensor(new Float64Array([0.5, 1.5]));
    expect(t.dtype).toBe('float32');
    expect(Array.from(t.data)).toEqual([0.5, 1.5]);
    expect(tensor(new Int16Array([1, 2]), null, 'int32').data).toBeInstanceOf(Int32Array);
  });

  it('reshapes flat arrays with a shape and builds scalars', () => {
    expect(tensor([1, 2, 3, 4, 5, 6], [3, 2]).toArray()).toEqual([[1, 2], [3, 4], [5, 6]]);
    const s = tensor(3.5);
    expect(s.shape).toEqual([]);
    expect(s.size).toBe(1);
    expect(s.toArray()).toBe(3.5);
    expect(s.item()).toBe(3.5);
  });

  it('allows zero-length dimensions', () => {
    const t = zeros([2, 0, 3]);
    expect(t.size).toBe(0);
    expect(t.toArray()).toEqual([[], []]);
    expect(tensor([]).shape).toEqual([0]);
    expect(tensor(new Float32Array(0), [0, 5]).shape).toEqual([0, 5]);
    expect(tensor([[], []]).shape).toEqual([2, 0]);
  });

  it('rejects bad data and shapes', () => {
    expect(() => tensor([[1, 2], [3]])).toThrow(RangeError);
    expect(() => tensor([1, 2, 3], [2, 2])).toThrow(RangeError);
    expect(() => tensor([1, 2], [-1, -2])).toThrow(RangeError);
    expect(() => tensor([1, 2], [2.5])).toThrow(RangeError);
    expect(() => tensor(['a'] as unknown as number[])).toThrow(TypeError);
    expect(() => tensor([1.5], null, 'int32')).toThrow(RangeError);
    expect(() => tensor([1], null, 'float64' as 'float32')).toThrow(TypeError);
    expect(() => tensor(new Float32Array(2), null, 'int32')).toThrow(TypeError);
    expect(() => zeros([65536, 65536])).toThrow(RangeError);
    expect(() => zeros([2 ** 31])).toThrow(RangeError);
    expect(() => new Tensor(new Float32Array(3), [2], 'float32')).toThrow(RangeError);
    expect(() => new Tensor(new Int32Array(2) as unknown as Float32Array, [2], 'float32')).toThrow(TypeError);
  });

  it('keeps data types in the static type', () => {
    const f: Float32Array = tensor(new Float32Array(2)).data;
    const i: Int32Array = zeros([2], 'int32').data;
    const b: Uint8Array = tensor([true]).data;
    const n: number = tensor([1, 2]).get(0);
    const bo: boolean = tensor([true]).get(0);
    expect([f.length, i.length, b.length, n, bo]).toEqual([2, 2, 1, 1, true]);
  });
});

describe('Tensor methods', () => {
  it('reshape infers -1, shares data and validates', () => {
    const t = arange(12);
    const r = t.reshape([3, -1]);
    expect(r.shape).toEqual([3, 4]);
    expect(r.data).toBe(t.data);
    expect(t.reshape(2, 2, 3).shape).toEqual([2, 2, 3]);
    expect(t.reshape(-1).shape).toEqual([12]);
    expect(zeros([0, 4]).reshape(0, 2, 2).shape).toEqual([0, 2, 2]);
    expect(tensor(5).reshape([1, 1]).shape).toEqual([1, 1]);
    expect(() => t.reshape(5, -1)).toThrow(RangeError);
    expect(() => t.reshape(-1, -1)).toThrow(RangeError);
    expect(() => t.reshape(3, 5)).toThrow(RangeError);
    expect(() => zeros([0, 4]).reshape(0, -1)).toThrow(RangeError);
  });

  it('get/set support negative indices and check bounds', () => {
    const t = arange(6).reshape(2, 3);
    expect(t.get(1, 2)).toBe(5);
    expect(t.get(-1, -3)).toBe(3);
    t.set([0, -1], 42);
    expect(t.get(0, 2)).toBe(42);
    expect(() => t.get(2, 0)).toThrow(RangeError);
    expect(() => t.get(0)).toThrow(RangeError);
    expect(() => t.get(0.5, 0)).toThrow(RangeError);
  });

  it('toArray, clone, astype, toString', () => {
    const t = tensor([[1.5, -2], [0, 4]]);
    expect(t.toArray()).toEqual([[1.5, -2], [0, 4]]);
    const c = t.clone();
    c.data[0] = 100;
    expect(t.get(0, 0)).toBe(1.5);
    expect(t.astype('int32').toArray()).toEqual([[1, -2], [0, 4]]);
    expect(t.astype('bool').toArray()).toEqual([[true, true], [false, true]]);
    expect(t.toString()).toBe('Tensor(float32, [2, 2]) [[1.5, -2], [0, 4]]');
    expect(tensor([true, false]).toString()).toBe('Tensor(bool, [2]) [true, false]');
    expect(zeros([2000]).toString()).toBe('Tensor(float32, [2000]) data=[0, 0, 0, ..., 0, 0, 0]');
    expect(isTensor(t)).toBe(true);
    expect(isTensor(t, 'int32')).toBe(false);
  });
});

describe('factories', () => {
  it('zeros / ones / full / empty', () => {
    expect(zeros(3).toArray()).toEqual([0, 0, 0]);
    expect(ones([2, 2], 'int32').toArray()).toEqual([[1, 1], [1, 1]]);
    expect(ones([2], 'bool').toArray()).toEqual([true, true]);
    expect(full([2], 7).toArray()).toEqual([7, 7]);
    expect(full([2], true).dtype).toBe('bool');
    expect(full([1], 0.1).get(0)).toBe(Math.fround(0.1));
    expect(() => full([1], 0.5, 'int32')).toThrow(RangeError);
    expect(empty([3, 0]).size).toBe(0);
  });

  it('arange', () => {
    expect(arange(5).toArray()).toEqual([0, 1, 2, 3, 4]);
    expect(arange(2, 5).toArray()).toEqual([2, 3, 4]);
    expect(arange(5, 0, -2).toArray()).toEqual([5, 3, 1]);
    expect(arange(0, 1, 0.25).toArray()).toEqual([0, 0.25, 0.5, 0.75]);
    expect(arange(3, 3).size).toBe(0);
    expect(arange(3, 0).size).toBe(0);
    expect(arange(0, 4, 1, 'int32').dtype).toBe('int32');
    expect(() => arange(0, 4, 0)).toThrow(RangeError);
    expect(() => arange(0, 1, 0.5, 'int32')).toThrow(RangeError);
  });

  it('randn is deterministic per seed and roughly standard normal', () => {
    const a = randn([10000], { seed: 42 });
    const b = randn([10000], { seed: 42 });
    const c = randn([10000], { seed: 43 });
    expect(a.data).toEqual(b.data);
    expect(a.data).not.toEqual(c.data);
    const mean = a.data.reduce((s, v) => s + v, 0) / a.size;
    const variance = a.data.reduce((s, v) => s + (v - mean) ** 2, 0) / a.size;
    expect(Math.abs(mean)).toBeLessThan(0.05);
    expect(Math.abs(variance - 1)).toBeLessThan(0.05);
    expect(a.data.every(Number.isFinite)).toBe(true);
    // Unseeded calls differ.
    expect(randn([8]).data).not.toEqual(randn([8]).data);
  });

  it('rand is uniform in [low, high) and reproducible through a shared generator', () => {
    const u = rand([10000], { seed: 1 });
    expect(u.data.every((v) => v >= 0 && v < 1)).toBe(true);
    const mean = u.data.reduce((s, v) => s + v, 0) / u.size;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.02);
    const r = rand([1000], { seed: 2, low: -3, high: -1 });
    expect(r.data.every((v) => v >= -3 && v < -1)).toBe(true);
    const g1 = new Rng(7);
    const g2 = new Rng(7);
    const x = [rand([3], { generator: g1 }), randn([3], { generator: g1 })];
    const y = [rand([3], { generator: g2 }), randn([3], { generator: g2 })];
    expect(x[1]!.data).toEqual(y[1]!.data);
    const stream = (seed: number): number[] => {
      const g = new Rng(seed);
      return [g.nextUint32(), g.nextUint32(), g.nextUint32(), g.nextUint32()];
    };
    // Seeds differing only above bit 32 still give different streams.
    expect(stream(2 ** 40)).not.toEqual(stream(2 ** 40 + 2 ** 33));
    expect(stream(2 ** 40)).not.toEqual(stream(0));
    expect(stream(123)).toEqual(stream(123));
  });
});
