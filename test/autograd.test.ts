/**
 * The autograd core: the Tensor grad API (requiresGrad, grad, gradFn,
 * isLeaf, detach, backward, _version), grad mode (noGrad), the engine
 * (accumulation, retained and freed graphs, errors), view backward, and the
 * packed-weight cache following in-place weight updates.
 */
import { describe, expect, it, vi } from 'vitest';
import { enableGrad, isGradEnabled, noGrad, setGradEnabled } from '../lib/autograd/index';
import * as ops from '../lib/ops';
import * as nn from '../lib/nn';
import { Tensor, randn, tensor, zeros } from '../lib/tensor';
import { backends } from './helpers/backends';
import { gradcheck } from './helpers/gradcheck';
import { withContext } from '../lib/context';
import { getBackend } from '../lib/backend/registry';
import { addon } from '../lib/backend/native';

type F32 = Tensor<'float32'>;

const arr = (t: Tensor | null): number[] => Array.from(t!.contiguous().data);

describe('Tensor grad API', () => {
  it('requiresGrad defaults to false, is settable on float32 leaves, and requiresGrad_ returns the tensor', () => {
    const x = randn([2, 3], { seed: 1 });
    expect(x.requiresGrad).toBe(false);
    expect(x.isLeaf).toBe(true);
    expect(x.gradFn).toBeNull();
    expect(x.grad).toBeNull();
    expect(x.requiresGrad_()).toBe(x);
    expect(x.requiresGrad).toBe(true);
    x.requiresGrad_(false);
    expect(x.requiresGrad).toBe(false);
    x.requiresGrad = true;
    expect(x.requiresGrad).toBe(true);
  });

  it('refuses requiresGrad on int32/bool tensors and non-boolean flags, naming the argument', () => {
    const ids = tensor(new Int32Array([1, 2]), [2], 'int32');
    expect(() => ids.requiresGrad_()).toThrow(TypeError);
    expect(() => ids.requiresGrad_()).toThrow(/float32 Tensor/);
    expect(() => ((randn([2]) as unknown as { requiresGrad: unknown }).requiresGrad = 1)).toThrow(/'flag'/);
  });

  it('results of ops on tensors that require grad have a gradFn and are not leaves', () => {
    const a = randn([2, 3], { seed: 2 }).requiresGrad_();
    const y = ops.mul(a, 2);
    expect(y.requiresGrad).toBe(true);
    expect(y.isLeaf).toBe(false);
    expect(y.gradFn?.name).toBe('MulBackward');
    expect(y.gradFn?.nextFunctions[0]?.[0].name).toBe('AccumulateGrad');
    expect(() => (y.requiresGrad = false)).toThrow(/non-leaf/);
    // Nothing requires grad: nothing recorded.
    const z = ops.mul(randn([2, 3], { seed: 3 }), 2);
    expect(z.requiresGrad).toBe(false);
    expect(z.gradFn).toBeNull();
  });

  it('grad is settable to null or a float32 tensor of the same shape only', () => {
    const x = randn([2, 2], { seed: 4 }).requiresGrad_();
    x.grad = zeros([2, 2]);
    expect(arr(x.grad)).toEqual([0, 0, 0, 0]);
    x.grad = null;
    expect(x.grad).toBeNull();
    expect(() => (x.grad = zeros([4]))).toThrow(RangeError);
    expect(() => (x.grad = tensor(new Int32Array(4), [2, 2], 'int32') as unknown as F32)).toThrow(TypeError);
  });

  it('detach shares memory and version counter but no history', () => {
    const x = randn([3], { seed: 5 }).requiresGrad_();
    const y = ops.mul(x, 3);
    const d = y.detach();
    expect(d.requiresGrad).toBe(false);
    expect(d.isLeaf).toBe(true);
    expect(d.data).toBe(y.data);
    const v = y._version;
    d._bumpVersion();
    expect(y._version).toBe(v + 1);
    // Views share the counter of their base, and in-place ops bump it.
    const base = randn([4, 4], { seed: 6 });
    const view = base.narrow(0, 1, 2);
    ops.add(base, 1, { out: base });
    expect(view._version).toBe(base._version);
    expect(base._version).toBeGreaterThan(0);
    view.set([0, 0], 3);
    expect(base._version).toBe(view._version);
  });

  it('item reads a one-element tensor', () => {
    expect(tensor([2.5]).item()).toBe(2.5);
    const loss = ops.sum(ops.mul(tensor([1, 2, 3]).requiresGrad_(), 2));
    expect(loss.item()).toBe(12);
  });
});

describe('grad mode', () => {
  it('noGrad records nothing and restores the mode, also on throw', () => {
    const x = randn([2], { seed: 7 }).requiresGrad_();
    expect(isGradEnabled()).toBe(true);
    const y = noGrad(() => {
      expect(isGradEnabled()).toBe(false);
      return ops.mul(x, 2);
    });
    expect(y.requiresGrad).toBe(false);
    expect(y.gradFn).toBeNull();
    expect(() => noGrad(() => {
      throw new Error('boom');
    })).toThrow('boom');
    expect(isGradEnabled()).toBe(true);
    const z = noGrad(() => enableGrad(() => ops.mul(x, 2)));
    expect(z.requiresGrad).toBe(true);
    expect(() => noGrad(3 as unknown as () => void)).toThrow(/'fn'/);
  });

  it('setGradEnabled switches the root mode', () => {
    const x = randn([2], { seed: 8 }).requiresGrad_();
    setGradEnabled(false);
    try {
      expect(ops.mul(x, 2).requiresGrad).toBe(false);
    } finally {
      setGradEnabled(true);
    }
    expect(ops.mul(x, 2).requiresGrad).toBe(true);
  });

  it('views record only in grad mode', () => {
    const x = randn([2, 3], { seed: 9 }).requiresGrad_();
    expect(x.transpose(0, 1).gradFn?.name).toBe('TransposeBackward');
    expect(noGrad(() => x.transpose(0, 1)).gradFn).toBeNull();
    expect(withContext({ gradEnabled: false }, () => x.narrow(0, 0, 1)).requiresGrad).toBe(false);
  });
});

describe.each(backends)('backward (%s backend)', (backend) => {
  const be = { backend };

  it('computes the gradient of a one-element result and accumulates across calls', () => {
    const a = tensor([1, 2, 3]).requiresGrad_();
    const b = tensor([4, 5, 6]).requiresGrad_();
    const loss = () => ops.sum(ops.add(ops.mul(a, b, be), a, be), null, be);
    loss().backward();
    expect(arr(a.grad)).toEqual([5, 6, 7]);
    expect(arr(b.grad)).toEqual([1, 2, 3]);
    loss().backward();
    expect(arr(a.grad)).toEqual([10, 12, 14]);
    expect(arr(b.grad)).toEqual([2, 4, 6]);
    a.grad = null;
    loss().backward();
    expect(arr(a.grad)).toEqual([5, 6, 7]);
  });

  it('a leaf takes a gradient the backward made as its own, never one the caller or another leaf holds', () => {
    const n = 4096; // above the size the backward's buffer pool lends
    const a = randn([n], { seed: 31 }).requiresGrad_();
    const b = randn([n], { seed: 32 }).requiresGrad_();
    const g = randn([n], { seed: 33 });
    const g0 = arr(g);
    // add hands the caller's gradient to both inputs: both copy it.
    ops.add(a, b, be).backward(g);
    const buffers = new Set([g.data.buffer, a.grad!.data.buffer, b.grad!.data.buffer]);
    expect(buffers.size).toBe(3);
    g.data.fill(7);
    expect(arr(a.grad)).toEqual(g0);
    // mul makes a new gradient, which add hands to both: one leaf takes it, the other copies; each accumulates
    // into its own memory afterwards.
    a.grad = null;
    b.grad = null;
    const g3 = g0.map((v) => Math.fround(v * 3));
    for (let k = 1; k <= 2; k++) {
      ops.mul(ops.add(a, b, be), 3, be).backward(tensor(Float32Array.from(g0)));
      expect(a.grad!.data.buffer).not.toBe(b.grad!.data.buffer);
      expect(arr(a.grad)).toEqual(arr(b.grad));
      arr(a.grad).forEach((v, i) => expect(v).toBeCloseTo(k * g3[i]!, 4));
    }
  });

  it('takes gradOutput for a non-scalar and sums a tensor used twice', () => {
    const x = tensor([[1, 2], [3, 4]]).requiresGrad_();
    const y = ops.mul(x, x, be); // dy/dx = 2x
    y.backward(tensor([[1, 1], [2, 2]]));
    expect(arr(x.grad)).toEqual([2, 4, 12, 16]);
  });

  it('reduces broadcast operands (sum over broadcast dims)', () => {
    gradcheck(([a, b, c]) => ops.sum(ops.mul(ops.sub(ops.div(a!, c!, be), b!, be), a!, be), null, be), [
      randn([2, 3, 4], { seed: 11 }), randn([3, 1], { seed: 12 }), ops.add(ops.mul(randn([4], { seed: 13 }), 0.1), 2),
    ]);
  });

  it('backpropagates through every view method', () => {
    gradcheck(([x, w]) => {
      const t = x!.transpose(0, 2).permute(1, 0, 2).reshape(4, 6); // [3,2,4] → [2,4,3]→... copies where needed
      const s = t.narrow(1, 1, 4).slice(0, 0, 4, 2).select(1, 2).unsqueeze(0); // [1, 2]
      const e = s.expand(3, 2).contiguous().view(6);
      return ops.sum(ops.mul(ops.add(e, t.t().reshape(24).narrow(0, 3, 6), be), w!, be), null, be);
    }, [randn([4, 2, 3], { seed: 14 }), randn([6], { seed: 15 })]);
  });

  it('sum and mean over dims, with keepdim', () => {
    gradcheck(([x]) => ops.sum(ops.mul(ops.mean(x!, [0, 2], { keepdim: true, ...be }), ops.sum(x!, 1, be).reshape(2, 1, 4), be), null, be),
      [randn([2, 3, 4], { seed: 16 })]);
  });

  it('in-place ops on a tensor with history rebase it; modifying a saved tensor is an error', () => {
    const x = tensor([1, 2, 3]).requiresGrad_();
    const y = ops.mul(x, 2, be);
    ops.add(y, 1, { out: y, ...be }); // y = 2x + 1, recorded
    expect(y.gradFn?.name).toBe('AddBackward');
    ops.sum(ops.mul(y, y, be), null, be).backward(); // d/dx (2x+1)^2 = 4(2x+1)
    expect(arr(x.grad)).toEqual([12, 20, 28]);
    const a = tensor([1, 2]).requiresGrad_();
    const b = ops.mul(a, 1, be);
    const c = ops.mul(b, b, be); // saves b
    ops.add(b, 1, { out: b, ...be });
    expect(() => ops.sum(c, null, be).backward()).toThrow(/modified by an in-place operation/);
  });

  it('refuses an in-place write into a leaf that requires grad, unless in noGrad', () => {
    const w = tensor([1, 2]).requiresGrad_();
    expect(() => ops.add(w, 1, { out: w, ...be })).toThrow(/'out' must not be a leaf tensor that requires grad/);
    noGrad(() => ops.add(w, 1, { out: w, ...be }));
    expect(arr(w)).toEqual([2, 3]);
  });

  describe('gradients of several slices of one tensor (written into one buffer)', () => {
    // x is [4, 6] with values that do not matter (the loss is linear in x); each term of the loss is
    // sum(view · c) for a constant c, so x.grad is every c scattered to where its view lies, summed.
    const x0 = (): F32 => randn([4, 6], { seed: 40 }).requiresGrad_();
    const consts = (shape: number[], seed: number): F32 => randn(shape, { seed });
    const dot = (v: F32, c: F32): F32 => ops.sum(ops.mul(v, c, be), null, be);
    /** x.grad computed in JS from (region, c) pairs. */
    const expected = (parts: [(i: number, j: number) => [number, number] | null, F32][]): number[] => {
      const g = new Array<number>(24).fill(0);
      for (const [where, c] of parts) {
        const cd = c.contiguous().data;
        for (let i = 0; i < 4; i++) for (let j = 0; j < 6; j++) {
          const at = where(i, j);
          if (at) g[i * 6 + j]! += cd[at[0] * c.shape[1]! + at[1]]!;
        }
      }
      return g;
    };
    const close = (got: number[], want: number[]): void => want.forEach((w, i) => expect(got[i]).toBeCloseTo(w, 5));
    const cols = (lo: number, hi: number) => (i: number, j: number): [number, number] | null => (j >= lo && j < hi ? [i, j - lo] : null);
    const rows = (lo: number, hi: number) => (i: number, j: number): [number, number] | null => (i >= lo && i < hi ? [i - lo, j] : null);

    it('column slices covering the tensor (attention q, k, v of one projection)', () => {
      const x = x0();
      const [cq, ck, cv] = [consts([4, 2], 41), consts([4, 2], 42), consts([4, 2], 43)];
      const q = x.narrow(1, 0, 2), k = x.narrow(1, 2, 2), v = x.narrow(1, 4, 2);
      ops.add(ops.add(dot(v, cv), dot(q, cq), be), dot(k, ck), be).backward();
      close(arr(x.grad), expected([[cols(0, 2), cq], [cols(2, 4), ck], [cols(4, 6), cv]]));
    });

    it('slices leaving rows uncovered get zeros there, also in a pooled buffer; a later backward accumulates', () => {
      // [32, 64]: large enough (8 KiB) for the backward to take its buffers from the pool.
      const x = randn([32, 64], { seed: 44 }).requiresGrad_();
      const [c0, c3] = [consts([8, 64], 45), consts([8, 64], 46)];
      const loss = (): F32 => ops.add(dot(x.narrow(0, 0, 8), c0), dot(x.slice(0, 16, 24), c3), be);
      // Backwards whose intermediate gradients ([32, 64], nonzero) go back to the pool, so the slices' buffer may
      // be one of them: the uncovered rows must be zeroed, not left as found.
      for (let i = 0; i < 3; i++) dot(ops.mul(ops.mul(x, 2, be), 3, be), consts([32, 64], 47)).backward();
      x.grad = null;
      loss().backward();
      const want = new Array<number>(32 * 64).fill(0);
      const [d0, d3] = [c0.data, c3.data];
      for (let i = 0; i < 8 * 64; i++) {
        want[i] = d0[i]!;
        want[16 * 64 + i] = d3[i]!;
      }
      close(arr(x.grad), want);
      loss().backward();
      close(arr(x.grad), want.map((w) => 2 * w));
    });

    it('overlapping slices, slices along different dims, a select and the whole tensor add up', () => {
      const x = x0();
      const [a, b, c, d, e] = [consts([3, 6], 46), consts([2, 6], 47), consts([4, 1], 48), consts([4, 6], 49), consts([1, 6], 50)];
      const s = x.select(0, 1); // row 1, dim removed
      const loss = [dot(x.narrow(0, 0, 3), a), dot(x.narrow(0, 2, 2), b), dot(x.narrow(1, 5, 1), c), dot(x, d),
        dot(s, e.reshape(6))].reduce((p, q) => ops.add(p, q, be));
      loss.backward();
      close(arr(x.grad), expected([[rows(0, 3), a], [rows(2, 4), b], [cols(5, 6), c], [() => null, d],
        [(i, j) => [i, j], d], [rows(1, 2), e]]));
    });

    it('a slice of an intermediate (not a leaf) and a strided gradient', () => {
      const x = x0();
      const y = ops.mul(x, 3, be);
      const c1 = consts([2, 4], 51), c2 = consts([2, 4], 52);
      // Slices of a transposed view: each slice's gradient is written into a buffer of the view's shape, which
      // the transpose's backward hands on strided.
      const yt = y.t(); // [6, 4]
      const l = ops.add(dot(yt.narrow(0, 0, 4).narrow(1, 0, 2), c1.t()), dot(yt.narrow(0, 2, 4).narrow(1, 2, 2), c2.t()), be);
      l.backward();
      const want = expected([[(i, j) => (i < 2 && j < 4 ? [i, j] : null), c1], [(i, j) => (i >= 2 && j >= 2 ? [i - 2, j - 2] : null), c2]]);
      close(arr(x.grad), want.map((w) => 3 * w));
    });
  });
});

describe('backward errors', () => {
  it('a non-scalar without gradOutput names the argument', () => {
    const x = randn([2, 2], { seed: 20 }).requiresGrad_();
    expect(() => ops.mul(x, 2).backward()).toThrow(RangeError);
    expect(() => ops.mul(x, 2).backward()).toThrow(/'gradOutput'/);
    expect(() => ops.mul(x, 2).backward(zeros([3]))).toThrow(/'gradOutput' must have the shape/);
  });

  it('a tensor that does not require grad', () => {
    expect(() => ops.sum(randn([2], { seed: 21 })).backward()).toThrow(/backward: argument 'this' must require grad/);
  });

  it('a second backward through a freed graph names retainGraph; retainGraph keeps it', () => {
    const x = tensor([1, 2]).requiresGrad_();
    const loss = ops.sum(ops.mul(x, x));
    loss.backward();
    expect(() => loss.backward()).toThrow(/second time.*retainGraph/);
    x.grad = null;
    const loss2 = ops.sum(ops.mul(x, x));
    loss2.backward(undefined, { retainGraph: true });
    loss2.backward();
    expect(arr(x.grad)).toEqual([4, 8]);
    expect(() => loss2.backward()).toThrow(/second time/);
  });

  it('backward on a leaf itself fills its grad', () => {
    const x = tensor([3]).requiresGrad_();
    x.backward();
    expect(arr(x.grad)).toEqual([1]);
  });

  it('retainGrad keeps a non-leaf gradient', () => {
    const x = tensor([1, 2]).requiresGrad_();
    const y = ops.mul(x, 3).retainGrad();
    ops.sum(ops.mul(y, y)).backward();
    expect(arr(y.grad)).toEqual([6, 12]);
    expect(arr(x.grad)).toEqual([18, 36]);
  });
});

describe('modules', () => {
  it('parameters require grad, and loadStateDict keeps that on the loaded tensors', () => {
    const lin = new nn.Linear({ inFeatures: 3, outFeatures: 2 });
    expect(lin.parameters().every((p) => p.requiresGrad)).toBe(true);
    const mha = new nn.MultiheadAttention({ embedDim: 4, numHeads: 2 });
    expect(mha.parameters().every((p) => p.requiresGrad)).toBe(true);
    const state = { weight: randn([2, 3], { seed: 30 }), bias: randn([2], { seed: 31 }) };
    lin.loadStateDict(state);
    expect(lin.weight).toBe(state.weight);
    expect(lin.weight.requiresGrad).toBe(true);
    lin.weight.requiresGrad = false; // frozen
    lin.loadStateDict({ weight: randn([2, 3], { seed: 32 }), bias: randn([2], { seed: 33 }) });
    expect(lin.weight.requiresGrad).toBe(false);
    expect(lin.bias!.requiresGrad).toBe(true);
  });

  it('train/eval set training on the whole tree; modules start in training mode', () => {
    const layer = new nn.TransformerEncoderLayer({ dModel: 8, nhead: 2, dimFeedforward: 16 });
    expect(layer.training).toBe(true);
    expect(layer.eval()).toBe(layer);
    expect(layer.namedModules().every(([, m]) => !m.training)).toBe(true);
    layer.train();
    expect(layer.selfAttn.training).toBe(true);
    layer.train(false);
    expect(layer.linear1.training).toBe(false);
    expect(() => layer.train('yes' as unknown as boolean)).toThrow(/'mode'/);
  });
});

describe.skipIf(!backends.includes('native'))('packed weights follow in-place updates (native backend)', () => {
  it('a forward after an in-place weight update (version bump) uses the new weights', () => {
    const native = getBackend('native');
    const w = randn([6, 5], { seed: 40 });
    const x = randn([4, 5], { seed: 41 });
    const reference = (): number[] => arr(ops.linear(x, w, null, { backend: 'js' }));
    const y1 = ops.linear(x, w, null, { cacheWeight: true, backend: native }); // packs w (M = 4 ≥ 2)
    const want1 = reference();
    arr(y1).forEach((v, i) => expect(v).toBeCloseTo(want1[i]!, 4));
    ops.mul(w, -2, { out: w, backend: native }); // in place: bumps w's version
    const want2 = reference();
    const y2 = ops.linear(x, w, null, { cacheWeight: true, backend: native });
    arr(y2).forEach((v, i) => expect(v).toBeCloseTo(want2[i]!, 4));
    // A direct write into data followed by _bumpVersion() is seen too.
    w.data.fill(0.5);
    w._bumpVersion();
    const want3 = reference();
    arr(ops.linear(x, w, null, { cacheWeight: true, backend: native })).forEach((v, i) => expect(v).toBeCloseTo(want3[i]!, 4));
    // And a weight view (a row slice, as attention's in_proj slices) shares its base's version.
    const rows = w.narrow(0, 2, 3);
    ops.linear(x, rows, null, { cacheWeight: true, backend: native });
    ops.add(w, 1, { out: w, backend: native });
    const want4 = arr(ops.linear(x, rows, null, { backend: 'js' }));
    arr(ops.linear(x, rows, null, { cacheWeight: true, backend: native })).forEach((v, i) => expect(v).toBeCloseTo(want4[i]!, 4));
  });

  it('a weight written in place is packed on its second use at the new version, not its first (training uses each version once)', () => {
    const native = getBackend('native');
    const packs = vi.spyOn(addon!, 'packWeight');
    try {
      const w = randn([7, 5], { seed: 42 });
      const x = randn([4, 5], { seed: 43 });
      const run = (): void => {
        const want = arr(ops.linear(x, w, null, { backend: 'js' }));
        arr(ops.linear(x, w, null, { cacheWeight: true, backend: native })).forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 4));
      };
      run(); // version 0: packed on first use, as for inference
      run();
      expect(packs).toHaveBeenCalledTimes(1);
      for (let step = 0; step < 3; step++) {
        ops.mul(w, 0.5, { out: w, backend: native }); // an optimizer step: the stale copy is dropped
        run(); // first use at the new version: unpacked
        expect(packs).toHaveBeenCalledTimes(1);
      }
      run(); // second use at the same version: packed again
      run();
      expect(packs).toHaveBeenCalledTimes(2);
    } finally {
      packs.mockRestore();
    }
  });
});
