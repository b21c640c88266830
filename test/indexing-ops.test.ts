/**
 * ops.cat (PyTorch torch.cat; float32 copies on every available backend, recorded in order inside runAsync),
 * ops.argmax, ops.topk and ops.maskedFill (JS, refused while recording): values, views, zero-size inputs,
 * PyTorch's NaN and tie rules, and the errors naming the argument.
 */
import { describe, expect, it } from 'vitest';
import { runAsync } from '../lib/async';
import { addon } from '../lib/backend/native';
import { withContext } from '../lib/context';
import { getBackend } from '../lib/backend/registry';
import * as ops from '../lib/ops';
import { Tensor, tensor, zeros } from '../lib/tensor';
import { backends } from './helpers/backends';
import { randomData } from './helpers/reference';

function rnd(shape: number[], seed: number): Tensor<'float32'> {
  return tensor(randomData(shape.reduce((p, d) => p * d, 1), seed, 3), shape);
}

/** Nested arrays of a tensor, read element by element through its strides. */
function nested(t: Tensor): unknown {
  return t.toArray();
}

describe.each(backends)('cat on the %s backend', (backend) => {
  const opts = { backend } as const;

  it('joins along every dim like torch.cat, from views, into a fresh or a caller\'s strided out', () => {
    const a = rnd([2, 3, 4], 1);
    const b = rnd([2, 5, 4], 2);
    const y = ops.cat([a, b], 1, opts);
    expect(y.shape).toEqual([2, 8, 4]);
    expect(y.isContiguous()).toBe(true);
    for (let i = 0; i < 2; i++) for (let j = 0; j < 8; j++) for (let k = 0; k < 4; k++) {
      expect(y.get(i, j, k)).toBe(j < 3 ? a.get(i, j, k) : b.get(i, j - 3, k));
    }
    const c = rnd([2, 3, 1], 3);
    const last = ops.cat([a, c, a.narrow(2, 1, 2)], -1, opts);
    expect(last.shape).toEqual([2, 3, 7]);
    expect(nested(last.narrow(2, 4, 1))).toEqual(nested(c));
    expect(nested(last.narrow(2, 5, 2))).toEqual(nested(a.narrow(2, 1, 2)));
    const t = rnd([4, 2, 3], 4).permute(1, 2, 0);  // a transposed view
    const first = ops.cat([t, t], 0, opts);
    expect(nested(first.narrow(0, 2, 2))).toEqual(nested(t));
    // out: a slice of a larger buffer (a KV cache's first rows), written where it lies.
    const cache = zeros([2, 10, 4]);
    const slot = cache.narrow(1, 0, 8);
    expect(ops.cat([a, b], 1, { ...opts, out: slot })).toBe(slot);
    expect(nested(cache.narrow(1, 0, 8))).toEqual(nested(y));
    expect(Array.from(cache.narrow(1, 8, 2).contiguous().data).every((v) => v === 0)).toBe(true);
  });

  it('skips 1-D empty tensors, joins zero-size tensors, and concatenates int32 and bool in JS', () => {
    const a = rnd([2, 3], 5);
    expect(nested(ops.cat([zeros([0]), a, zeros([0])], 0, opts))).toEqual(nested(a));
    expect(ops.cat([zeros([0, 3]), zeros([2, 3])], 0, opts).shape).toEqual([2, 3]);
    expect(ops.cat([zeros([2, 0]), zeros([2, 0])], 1, opts).shape).toEqual([2, 0]);
    const ids = ops.cat([tensor(Int32Array.from([1, 2]), [1, 2], 'int32'), tensor(Int32Array.from([3, 4, 5, 6]), [2, 2], 'int32')], 0, opts);
    expect(ids.dtype).toBe('int32');
    expect(nested(ids)).toEqual([[1, 2], [3, 4], [5, 6]]);
  });

  it('errors name the argument, the expected and the actual', () => {
    expect(() => ops.cat([], 0, opts)).toThrow(/cat: argument 'tensors' must be a non-empty array/);
    expect(() => ops.cat([zeros([2, 3]), zeros([2, 4])], 0, opts)).toThrow(/argument 'tensors\[1\]' must have the shape of tensors\[0\] \[2, 3\] except in dim 0, got \[2, 4\]/);
    expect(() => ops.cat([zeros([2, 3]), tensor(Int32Array.from([1, 2, 3]), [1, 3], 'int32')] as never, 0, opts)).toThrow(TypeError);
    expect(() => ops.cat([zeros([2, 3])], 2, opts)).toThrow(RangeError);
    expect(() => ops.cat([zeros([2, 3]), 5 as never], 0, opts)).toThrow(/'tensors\[1\]' must be a Tensor/);
    const a = zeros([2, 3]);
    expect(() => ops.cat([a, a], 0, { ...opts, out: zeros([4, 2]) })).toThrow(/'out' must have shape \[4, 3\]/);
    const big = zeros([4, 3]);
    expect(() => ops.cat([big.narrow(0, 0, 2), zeros([2, 3])], 0, { ...opts, out: big })).toThrow(/'out' must not overlap input 'tensors\[0\]'/);
  });
});

describe.runIf(addon !== null)('cat, argmax inside runAsync (native)', () => {
  it('cat is recorded after the kernels that produce its inputs; argmax refuses to read unfinished values', async () => {
    const x = rnd([3, 5], 9);
    const want = ops.cat([ops.relu(x, { backend: 'native' }), ops.gelu(x, { backend: 'native' })], 1, { backend: 'native' });
    const got = await withContext({ backend: getBackend('native') }, () =>
      runAsync(() => ops.cat([ops.relu(x), ops.gelu(x)], 1)));
    expect(Array.from(got.data)).toEqual(Array.from(want.data));
    await expect(withContext({ backend: getBackend('native') }, () => runAsync(() => ops.argmax(ops.relu(x), -1))))
      .rejects.toThrow(/argmax: reads element values in JS/);
  });
});

describe('argmax, topk, maskedFill', () => {
  it('argmax: first maximum, NaN counts as the maximum, keepdim, flat without dim', () => {
    const x = tensor([[1, 5, 5, 2], [NaN, 1, 9, NaN], [-3, -1, -2, -1]]);
    expect(nested(ops.argmax(x, 1))).toEqual([1, 0, 1]);
    expect(ops.argmax(x, 1).dtype).toBe('int32');
    expect(nested(ops.argmax(x, -1, { keepdim: true }))).toEqual([[1], [0], [1]]);
    expect(nested(ops.argmax(x, 0))).toEqual([1, 0, 1, 1]);
    expect(ops.argmax(tensor([[1, 7], [7, 2]])).item()).toBe(1);
    expect(ops.argmax(tensor([[1, 7], [7, 2]]), null, { keepdim: true }).shape).toEqual([1, 1]);
    // A logits row of a view (the last position of [N, L, V]).
    const logits = rnd([2, 4, 11], 3);
    const lastPos = logits.select(1, 3);
    const got = ops.argmax(lastPos, -1);
    for (let b = 0; b < 2; b++) {
      const row = Array.from(lastPos.select(0, b).contiguous().data);
      expect(got.data[b]).toBe(row.indexOf(Math.max(...row)));
    }
    expect(ops.argmax(zeros([0, 3]), 1).shape).toEqual([0]);
    expect(() => ops.argmax(zeros([3, 0]), 1)).toThrow(/argmax: argument 'x' must have a non-empty dim 1/);
    expect(() => ops.argmax(zeros([2]), 1)).toThrow(RangeError);
    expect(() => ops.argmax(tensor([1, 0], [2], 'bool') as never)).toThrow(TypeError);
  });

  it('topk: largest/smallest, best first, ties by lower index, NaN ranks highest, any dim', () => {
    const x = tensor([[3, 1, 4, 1, 5, 9, 2, 6], [NaN, 0, 2, 2, -1, 8, NaN, 3]]);
    const { values, indices } = ops.topk(x, 3);
    expect(nested(indices)).toEqual([[5, 7, 4], [0, 6, 5]]);
    expect(values.data[0]).toBe(9);
    expect(Number.isNaN(values.data[3]!)).toBe(true);
    const small = ops.topk(x, 2, -1, { largest: false });
    expect(nested(small.indices)).toEqual([[1, 3], [4, 1]]);
    expect(nested(small.values)).toEqual([[1, 1], [-1, 0]]);
    const col = ops.topk(x.transpose(0, 1), 1, 0);
    expect(col.values.shape).toEqual([1, 2]);
    expect(nested(col.indices)).toEqual([[5, 0]]);
    expect(ops.topk(x, 0).values.shape).toEqual([2, 0]);
    expect(() => ops.topk(x, 9)).toThrow(/topk: argument 'k' must be an integer in \[0, 8\], got 9/);
    expect(() => ops.topk(x, 1, 2)).toThrow(RangeError);
  });

  it('maskedFill: broadcast bool masks, float and int32 inputs, views', () => {
    const x = tensor([[1, 2, 3], [4, 5, 6]]);
    const causal = tensor([0, 1, 1], [1, 3], 'bool');
    expect(nested(ops.maskedFill(x, causal, -Infinity))).toEqual([[1, -Infinity, -Infinity], [4, -Infinity, -Infinity]]);
    expect(nested(ops.maskedFill(x.transpose(0, 1), tensor([1, 0], [2], 'bool'), 0))).toEqual([[0, 4], [0, 5], [0, 6]]);
    // The input is never written.
    expect(nested(x)).toEqual([[1, 2, 3], [4, 5, 6]]);
    const ids = tensor(Int32Array.from([5, 6, 7]), [3], 'int32');
    expect(nested(ops.maskedFill(ids, tensor([1, 0, 1], [3], 'bool'), -1))).toEqual([-1, 6, -1]);
    expect(ops.maskedFill(zeros([0, 3]), tensor([1, 0, 1], [3], 'bool'), 1).shape).toEqual([0, 3]);
    expect(() => ops.maskedFill(x, tensor([1, 0], [2], 'bool'), 0)).toThrow(/maskedFill: argument 'mask' must be broadcastable to x's shape \[2, 3\], got \[2\]/);
    expect(() => ops.maskedFill(x, zeros([3]) as never, 0)).toThrow(/'mask' must be a bool Tensor/);
    expect(() => ops.maskedFill(ids, tensor([1, 0, 1], [3], 'bool'), 0.5)).toThrow(RangeError);
  });
});
