/**
 * Ops on tensor views: kernels that take strides (GEMM leading dimensions,
 * row strides, attention's q/k/v strides) read views where they lie, others
 * copy visibly through the backend; every result equals the op on a
 * contiguous copy. Multi-head attention runs on views end to end.
 */
import { describe, expect, it } from 'vitest';
import * as ops from '../lib/ops';
import * as nn from '../lib/nn';
import type { Backend, OpName } from '../lib/backend/backend';
import { getBackend } from '../lib/backend/registry';
import { Tensor, randn, zeros } from '../lib/tensor';
import { backends, tolerance } from './helpers/backends';
import { noGrad } from '../lib/autograd/index';

type F32 = Tensor<'float32'>;

/** A backend that counts its calls per op, forwarding to `inner`. */
function counting(inner: Backend): { backend: Backend; calls: Record<string, number> } {
  const calls: Record<string, number> = {};
  const backend = { name: inner.name } as Record<string, unknown>;
  for (const op of Object.keys(inner).filter((k) => k !== 'name') as OpName[]) {
    backend[op] = (args: never): void => {
      calls[op] = (calls[op] ?? 0) + 1;
      (inner[op] as (a: never) => void)(args);
    };
  }
  return { backend: backend as unknown as Backend, calls };
}

function expectSame(got: F32, want: F32, rtol: number): void {
  expect(got.shape).toEqual(want.shape);
  const g = got.contiguous().data;
  const w = want.contiguous().data;
  for (let i = 0; i < w.length; i++) {
    if (!(Math.abs(g[i]! - w[i]!) <= rtol * Math.max(1, Math.abs(w[i]!)))) {
      expect.fail(`element ${i}: got ${g[i]}, want ${w[i]}`);
    }
  }
}

describe.each(backends)('ops on views (%s)', (name) => {
  const rtol = tolerance[name];

  it('linear reads a transposed input in place and returns the result in its memory order', () => {
    const { backend, calls } = counting(getBackend(name));
    const x = randn([4, 3, 16], { seed: 1 }); // batch-first storage
    const w = randn([8, 16], { seed: 2 });
    const b = randn([8], { seed: 3 });
    const view = x.transpose(0, 1); // [3, 4, 16] sequence-first view
    const y = ops.linear(view, w, b, { backend });
    expect(calls).toEqual({ gemm: 1 });
    expect(y.shape).toEqual([3, 4, 8]);
    expect(y.transpose(0, 1).isContiguous()).toBe(true);
    expectSame(y, ops.linear(view.contiguous(), w, b, { backend: name }), rtol);
  });

  it('linear reads a column slice through lda and a row slice of the weight through ldb', () => {
    const { backend, calls } = counting(getBackend(name));
    const packed = randn([5, 2, 24], { seed: 4 });
    const x = packed.narrow(-1, 8, 8); // like k = qkv[..., E:2E]
    const wAll = randn([12, 8], { seed: 5 });
    const w = wAll.narrow(0, 4, 6);
    const y = ops.linear(x, w, null, { backend });
    expect(calls).toEqual({ gemm: 1 });
    expectSame(y, ops.linear(x.contiguous(), w.contiguous(), null, { backend: name }), rtol);
  });

  it("linear writes into a strided 'out' (a KV cache's next positions) with one batched GEMM", () => {
    const { backend, calls } = counting(getBackend(name));
    const cache = zeros([3, 10, 12]); // [batch, capacity, 2E]
    const x = randn([2, 3, 6], { seed: 6 }); // [t, batch, E] sequence-first
    const w = randn([12, 6], { seed: 7 });
    const slot = cache.narrow(1, 4, 2).transpose(0, 1); // [t, batch, 2E]
    const y = ops.linear(x, w, null, { backend, out: slot });
    expect(y).toBe(slot);
    expect(calls).toEqual({ gemm: 1 });
    expectSame(slot, ops.linear(x, w, null, { backend: name }), rtol);
    // Nothing outside the slot was written.
    expect(cache.narrow(1, 0, 4).contiguous().data.every((v) => v === 0)).toBe(true);
    expect(cache.narrow(1, 6, 4).contiguous().data.every((v) => v === 0)).toBe(true);
  });

  it('row-wise ops read and write row-strided views', () => {
    const { backend, calls } = counting(getBackend(name));
    const big = randn([6, 40], { seed: 8 });
    const x = big.narrow(1, 5, 30);
    const w = randn([30], { seed: 9 });
    const want = (f: (t: F32, be: typeof backend | typeof name) => F32): void => {
      expectSame(f(x, backend), f(x.contiguous(), name), rtol);
    };
    want((t, be) => ops.softmax(t, -1, { backend: be }));
    want((t, be) => ops.layerNorm(t, 30, w, null, 1e-5, { backend: be }));
    want((t, be) => ops.rmsNorm(t, 30, w, 1e-6, { backend: be }));
    expect(calls).toEqual({ softmax: 1, layerNorm: 1, rmsNorm: 1 });
  });

  it('element-wise ops run over dense views in place; binary reads strides', () => {
    const { backend, calls } = counting(getBackend(name));
    const x = randn([3, 5, 7], { seed: 10 }).permute(2, 0, 1);
    const r = ops.relu(x, { backend });
    const g = ops.gelu(x, { backend });
    expect(r.strides).toEqual(x.strides);
    const s = ops.add(x, randn([7, 1, 1], { seed: 11 }).expand(7, 3, 5), { backend });
    expect(calls).toEqual({ relu: 1, gelu: 1, binary: 1 });
    expectSame(r, ops.relu(x.contiguous(), { backend: name }), rtol);
    expectSame(g, ops.gelu(x.contiguous(), { backend: name }), rtol);
    expectSame(s, ops.add(x.contiguous(), randn([7, 1, 1], { seed: 11 }), { backend: name }), rtol);
  });

  it('a view a kernel cannot address is copied, visibly, through the backend; a broadcast row is not', () => {
    const { backend, calls } = counting(getBackend(name));
    const x = randn([16, 4], { seed: 12 }).t(); // [4, 16] with features 4 apart: no GEMM layout reads it
    const w = randn([3, 16], { seed: 13 });
    const y = ops.linear(x, w, null, { backend });
    expect(calls).toEqual({ binary: 1, gemm: 1 });
    expectSame(y, ops.linear(x.contiguous(), w, null, { backend: name }), rtol);
    // One row expanded to four: a batch of four GEMMs over the same row (batch stride 0), no copy.
    const row = randn([1, 16], { seed: 18 });
    const z = ops.linear(row.expand(4, 16), w, null, { backend });
    expect(calls).toEqual({ binary: 1, gemm: 2 });
    expectSame(z, ops.linear(row.expand(4, 16).contiguous(), w, null, { backend: name }), rtol);
  });

  it('matmul takes k.transpose(-2, -1) without a copy', () => {
    const { backend, calls } = counting(getBackend(name));
    const q = randn([2, 5, 8], { seed: 14 });
    const k = randn([2, 6, 8], { seed: 15 });
    const y = ops.matmul(q, k.transpose(-2, -1), { backend });
    expect(calls).toEqual({ gemm: 1 });
    expectSame(y, ops.matmul(q, k, { backend: name, transB: true }), rtol);
  });

  it('scaledDotProductAttention reads head views and writes into a strided out', () => {
    const { backend, calls } = counting(getBackend(name));
    const qkv = randn([5, 2, 3 * 16], { seed: 16 }); // [L, N, 3E], 4 heads of 4
    const heads = (i: number): F32 => qkv.narrow(-1, i * 16, 16).view(5, 2, 4, 4).permute(1, 2, 0, 3);
    const outBuf = zeros([5, 2, 16]);
    const out = outBuf.view(5, 2, 4, 4).permute(1, 2, 0, 3);
    const y = ops.scaledDotProductAttention(heads(0), heads(1), heads(2), { backend, out, isCausal: true });
    expect(y).toBe(out);
    expect(calls).toEqual({ attention: 1 });
    const want = ops.scaledDotProductAttention(heads(0).contiguous(), heads(1).contiguous(), heads(2).contiguous(),
      { backend: name, isCausal: true });
    expectSame(y, want, rtol);
  });

  it('multiHeadAttentionForward equals nn.MultiheadAttention, and a batch-first forward copies nothing', () => {
    nn.manualSeed(3);
    const mha = new nn.MultiheadAttention({ embedDim: 16, numHeads: 4, batchFirst: true }).useBackend(name);
    const x = randn([2, 5, 16], { seed: 17 });
    const viaModule = mha.forward(x, x, x, { needWeights: false });
    const seqFirst = x.transpose(0, 1);
    const { output } = ops.multiHeadAttentionForward(seqFirst, seqFirst, seqFirst, {
      numHeads: 4, inProjWeight: mha.inProjWeight, inProjBias: mha.inProjBias,
      outProjWeight: mha.outProj.weight, outProjBias: mha.outProj.bias,
    }, { needWeights: false, backend: name });
    expectSame(viaModule.output, output.transpose(0, 1), rtol);
    // Batch-first in, batch-first out, contiguous, with one QKV GEMM, one attention and one output GEMM.
    expect(viaModule.output.isContiguous()).toBe(true);
    const { backend, calls } = counting(getBackend(name));
    mha.useBackend(backend).forward(x, x, x, { needWeights: false });
    expect(calls).toEqual({ gemm: 2, attention: 1 });
    // The functional form runs every kernel, copies included, on the backend its options name.
    const { backend: fb, calls: fcalls } = counting(getBackend(name));
    // Inference (grad mode off; in grad mode the appended rows are a differentiable cat instead).
    noGrad(() => ops.multiHeadAttentionForward(seqFirst, seqFirst, seqFirst, {
      numHeads: 4, inProjWeight: mha.inProjWeight, inProjBias: mha.inProjBias, biasK: randn([1, 1, 16], { seed: 19 }),
      biasV: randn([1, 1, 16], { seed: 20 }), addZeroAttn: true, outProjWeight: mha.outProj.weight,
      outProjBias: mha.outProj.bias,
    }, { needWeights: true, backend: fb }));
    expect(fcalls).toEqual({ gemm: 3, binary: 4, attention: 1 });
  });
});

describe('multiHeadAttentionForward arguments', () => {
  const e = 8;
  const params = (): ops.MultiHeadAttentionParams => ({
    numHeads: 2, inProjWeight: randn([3 * e, e], { seed: 1 }), outProjWeight: randn([e, e], { seed: 2 }),
  });
  const x = randn([3, 2, e], { seed: 3 });

  it('bad parameters and inputs are TypeErrors/RangeErrors naming them', () => {
    expect(() => ops.multiHeadAttentionForward(x, x, x, { ...params(), numHeads: 3 })).toThrowError(
      /multiHeadAttentionForward: params.numHeads must be a positive integer dividing embedDim 8, got 3/);
    expect(() => ops.multiHeadAttentionForward(x, x, x, { ...params(), inProjWeight: randn([8, 8]) })).toThrowError(
      /params.inProjWeight must be a float32 Tensor \[24, 8\], got \[8, 8\]/);
    expect(() => ops.multiHeadAttentionForward(x, x, x, { numHeads: 2, outProjWeight: randn([e, e]) })).toThrowError(
      /params.qProjWeight must be a float32 Tensor/);
    expect(() => ops.multiHeadAttentionForward(x, randn([3, 1, e]), x, params())).toThrowError(
      /query, key and value must have the same batch size \(dim 1\)/);
    expect(() => ops.multiHeadAttentionForward(x, x, x, params(), { attnMask: zeros([3, 4]) })).toThrowError(
      /multiHeadAttentionForward: argument 'attnMask' must have shape \[L, S\] = \[3, 3\]/);
  });

  it('unbatched input equals the batch of one, with weights per head when asked', () => {
    const p = params();
    const one = x.select(1, 0);
    const a = ops.multiHeadAttentionForward(one, one, one, p, { averageAttnWeights: false });
    const b = ops.multiHeadAttentionForward(x.narrow(1, 0, 1), x.narrow(1, 0, 1), x.narrow(1, 0, 1), p,
      { averageAttnWeights: false });
    expect(a.output.shape).toEqual([3, e]);
    expect(a.weights!.shape).toEqual([2, 3, 3]);
    expect(Array.from(a.output.contiguous().data)).toEqual(Array.from(b.output.contiguous().data));
    expect(Array.from(a.weights!.data)).toEqual(Array.from(b.weights!.data));
  });
});
