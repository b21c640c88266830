/**
 * The flash-attention backward (attention's grad path without dropout or returned weights): gradients equal the
 * materialised path's (the same call with the weights returned, which keeps P and differentiates it with GEMMs and
 * the softmax backward) for every mask kind, causal with lq ≠ lk, grouped kv heads and sizes off the 32 / 64
 * block boundaries, on both backends and every native kernel path; with dropout (a mask hashed from one seed, which
 * the backward regenerates) the gradients match finite differences and both backends draw the same mask; the
 * native op equals the JS reference, does not
 * depend on the thread count and refuses bad arguments by name; and at 4096 tokens the graph keeps no lq × lk
 * matrix and the backward's scratch is a few blocks (O(seq), not O(seq²)).
 */
import { afterAll, describe, expect, it } from 'vitest';
import '../lib/autograd/index';
import * as ops from '../lib/ops';
import { Rng, Tensor, randn, tensor } from '../lib/tensor';
import { gradcheck } from './helpers/gradcheck';
import { runAttention, lastAttentionBackwardWorkspaceBytes, type AttentionCall } from '../lib/ops/attention-core';
import type { AttentionBackwardArgs, AttentionMask, BackendName } from '../lib/backend/backend';
import { getBackend } from '../lib/backend/registry';
import { getNumThreads, info, setIsa, setNumThreads } from '../lib/runtime';
import { backends } from './helpers/backends';

type F32 = Tensor<'float32'>;

interface Shape {
  name: string;
  batch: number;
  heads: number;
  kvHeads: number;
  lq: number;
  lk: number;
  d: number;
  dv: number;
  causal: boolean;
  /** 'float' [lq, lk] added; 'bool' [batch, heads, lq, lk]; 'padding' [batch, lk] bool; 'float+padding'. */
  mask: 'none' | 'float' | 'bool' | 'padding' | 'float+padding';
}

const shapes: Shape[] = [
  { name: 'no mask, blocks', batch: 1, heads: 2, kvHeads: 2, lq: 70, lk: 130, d: 12, dv: 20, causal: false, mask: 'none' },
  { name: 'float mask', batch: 2, heads: 2, kvHeads: 2, lq: 33, lk: 65, d: 8, dv: 8, causal: false, mask: 'float' },
  { name: 'bool mask', batch: 2, heads: 2, kvHeads: 2, lq: 40, lk: 70, d: 8, dv: 8, causal: false, mask: 'bool' },
  { name: 'key padding', batch: 2, heads: 2, kvHeads: 2, lq: 20, lk: 66, d: 8, dv: 12, causal: false, mask: 'padding' },
  { name: 'float + key padding, causal lq < lk', batch: 2, heads: 2, kvHeads: 2, lq: 37, lk: 90, d: 8, dv: 8, causal: true, mask: 'float+padding' },
  { name: 'causal lq > lk', batch: 1, heads: 2, kvHeads: 2, lq: 80, lk: 50, d: 8, dv: 8, causal: true, mask: 'none' },
  { name: 'grouped kv heads, causal, bool mask', batch: 1, heads: 4, kvHeads: 2, lq: 45, lk: 45, d: 8, dv: 8, causal: true, mask: 'bool' },
  { name: 'one query row', batch: 1, heads: 2, kvHeads: 1, lq: 1, lk: 70, d: 8, dv: 8, causal: false, mask: 'padding' },
  // Every key in one 64-key block: the key-block tasks also write dq (no separate dq pass).
  { name: 'one key block (dq with dk, dv), grouped, key padding', batch: 2, heads: 4, kvHeads: 2, lq: 70, lk: 64, d: 8, dv: 12, causal: false, mask: 'padding' },
  { name: 'one key block, causal, float mask', batch: 2, heads: 2, kvHeads: 2, lq: 32, lk: 32, d: 16, dv: 8, causal: true, mask: 'float' },
];

function masksOf(s: Shape, seed: number): AttentionMask[] {
  const fl = randn([s.lq, s.lk], { seed }).data;
  const bool = (n: number, rowLen: number): Uint8Array => {
    const r = randn([n], { seed: seed + 1 }).data;
    // Key 0 stays visible in every row, so no row is fully masked.
    return Uint8Array.from(r, (x, i) => (i % rowLen !== 0 && x > 0.5 ? 1 : 0));
  };
  const float: AttentionMask = { data: fl, strides: [0, 0, s.lk, 1] };
  const padding: AttentionMask = { data: bool(s.batch * s.lk, s.lk), strides: [s.lk, 0, 0, 1] };
  switch (s.mask) {
    case 'none': return [];
    case 'float': return [float];
    case 'bool': return [{ data: bool(s.batch * s.heads * s.lq * s.lk, s.lk), strides: [s.heads * s.lq * s.lk, s.lq * s.lk, s.lk, 1] }];
    case 'padding': return [padding];
    case 'float+padding': return [float, padding];
  }
}

/** q, k, v as [batch, heads, L, d] leaves requiring grad; the call of `runAttention` over them. */
function makeCall(s: Shape, backend: BackendName, needWeights: boolean, seed: number): { call: AttentionCall; leaves: F32[] } {
  const q = randn([s.batch, s.heads, s.lq, s.d], { seed }).requiresGrad_();
  const k = randn([s.batch, s.kvHeads, s.lk, s.d], { seed: seed + 1 }).requiresGrad_();
  const v = randn([s.batch, s.kvHeads, s.lk, s.dv], { seed: seed + 2 }).requiresGrad_();
  const out = new Tensor(new Float32Array(s.batch * s.heads * s.lq * s.dv), [s.batch, s.heads, s.lq, s.dv], 'float32');
  const call: AttentionCall = {
    q, k, v, out, strides: (t) => [t.strides[0]!, t.strides[1]!, t.strides[2]!],
    batch: s.batch, heads: s.heads, kvHeads: s.kvHeads, lq: s.lq, lk: s.lk, dk: s.d, dv: s.dv, scale: 1 / Math.sqrt(s.d),
    masks: masksOf(s, seed + 3), causal: s.causal, needWeights, precision: 'float32', dropout: null, backend,
  };
  return { call, leaves: [q, k, v] };
}

/** Gradients of q, k, v through runAttention (flash when needWeights is false) from a fixed output gradient. */
function grads(s: Shape, backend: BackendName, needWeights: boolean): Float32Array[] {
  const { call, leaves } = makeCall(s, backend, needWeights, 100);
  runAttention(call);
  expect(call.out.gradFn?.name).toBe('ScaledDotProductAttentionBackward');
  call.out.backward(randn(call.out.shape, { seed: 7 }));
  return leaves.map((t) => t.grad!.contiguous().data as Float32Array);
}

function maxRelError(a: Float32Array, e: Float32Array): number {
  let scale = 1e-30;
  let worst = 0;
  for (let i = 0; i < e.length; i++) scale = Math.max(scale, Math.abs(e[i]!));
  for (let i = 0; i < e.length; i++) worst = Math.max(worst, Math.abs(a[i]! - e[i]!));
  return worst / scale;
}

const hasNative = backends.includes('native');
const order = ['portable', 'avx2', 'avx512'] as const;
const nativeIsas = hasNative ? order.filter((isa) => order.indexOf(isa) <= order.indexOf(info().native!.detectedIsa)) : [];
const threads = hasNative ? getNumThreads() : 1;
const runs: [string, BackendName, string | null][] = [
  ['js', 'js', null],
  ...nativeIsas.map((isa): [string, BackendName, string] => [`native ${isa}`, 'native', isa]),
];

afterAll(() => {
  if (!hasNative) return;
  setIsa(info().native!.detectedIsa);
  setNumThreads(threads);
});

describe.each(runs)('flash backward equals the materialised backward (%s)', (_label, backend, isa) => {
  it.each(shapes.map((s) => [s.name, s] as const))('%s', (_name, s) => {
    if (isa) setIsa(isa as (typeof order)[number]);
    const flash = grads(s, backend, false);
    const materialised = grads(s, backend, true);
    ['q', 'k', 'v'].forEach((n, i) => {
      const e = maxRelError(flash[i]!, materialised[i]!);
      expect(e, `d${n}: max error ${e}`).toBeLessThanOrEqual(1e-5);
    });
  });
});

describe.each(backends)('dropout inside the fused attention (%s backend)', (backend) => {
  const s = shapes[4]!;  // float + key padding, causal, lq < lk: two key blocks
  const call = (leaves: F32[], p: number, seed: number): AttentionCall => ({
    ...makeCall(s, backend, false, 100).call, q: leaves[0]!, k: leaves[1]!, v: leaves[2]!,
    out: new Tensor(new Float32Array(s.batch * s.heads * s.lq * s.dv), [s.batch, s.heads, s.lq, s.dv], 'float32'),
    dropout: { p, generator: new Rng(seed) },
  });

  it('gradients match finite differences (the same seed gives the same mask in forward and backward)', () => {
    const small: Shape = { ...s, lq: 5, lk: 70, d: 4, dv: 3, batch: 1 };
    const w = randn([1, small.heads, small.lq, small.dv], { seed: 9 });
    const leaves = [randn([1, small.heads, small.lq, small.d], { seed: 1 }), randn([1, small.kvHeads, small.lk, small.d], { seed: 2 }),
      randn([1, small.kvHeads, small.lk, small.dv], { seed: 3 })];
    gradcheck((xs) => {
      const c: AttentionCall = { ...makeCall(small, backend, false, 100).call, q: xs[0]!, k: xs[1]!, v: xs[2]!, dropout: { p: 0.4, generator: new Rng(21) } };
      runAttention(c);
      return ops.sum(ops.mul(c.out, w, { backend }), null, { backend });
    }, leaves, { eps: 1e-2, rtol: 3e-2 });
  });

  it('drops about p of the probabilities: the output differs from p = 0, and p → 0 recovers it', () => {
    const leaves = makeCall(s, backend, false, 100).leaves;
    const outs = [0, 0.5].map((p) => {
      const c = call(leaves, p, 3);
      runAttention(c);
      return c.out.data;
    });
    expect(maxRelError(outs[1]!, outs[0]!)).toBeGreaterThan(0.05);
  });
});

describe.skipIf(!hasNative || !backends.includes('js'))('dropout masks are the same bits on both backends', () => {
  it('forward outputs and gradients with dropout agree between native and JS', () => {
    const s = shapes[6]!;  // grouped kv heads, causal, bool mask
    const run = (backend: BackendName): Float32Array[] => {
      const { call, leaves } = makeCall(s, backend, false, 100);
      runAttention({ ...call, dropout: { p: 0.3, generator: new Rng(17) } });
      call.out.backward(randn(call.out.shape, { seed: 7 }));
      return [call.out.data, ...leaves.map((t) => t.grad!.contiguous().data as Float32Array)];
    };
    const [js, nat] = [run('js'), run('native')];
    js.forEach((e, i) => expect(maxRelError(nat[i]!, e), `output ${i}`).toBeLessThanOrEqual(1e-5));
  });
});

/** The arguments of one attentionBackward call over strided (packed [L, batch, 3·heads·d]) q, k, v. */
function opArgs(lq: number, heads: number, kvHeads: number, d: number, causal: boolean): AttentionBackwardArgs {
  const batch = 2;
  const width = (heads + 2 * kvHeads) * d;
  const qkv = randn([lq * batch * width], { seed: 3 }).data;
  const st = (): [number, number, number] => [width, d, batch * width];
  const out = new Float32Array(batch * heads * lq * d);
  const lse = new Float32Array(batch * heads * lq);
  const common = {
    q: qkv, k: qkv.subarray(heads * d), v: qkv.subarray((heads + kvHeads) * d), out,
    qStrides: st(), kStrides: st(), vStrides: st(), outStrides: [heads * lq * d, lq * d, d] as [number, number, number],
    batch, heads, kvHeads, lq, lk: lq, dk: d, dv: d, scale: 0.3, causal,
    masks: [{ data: randn([lq, lq], { seed: 4 }).data, strides: [0, 0, lq, 1] as [number, number, number, number] }],
  };
  getBackend('js').attention({ ...common, weights: null, lse });
  const qShape: [number, number, number] = [heads * lq * d, lq * d, d];
  const kShape: [number, number, number] = [kvHeads * lq * d, lq * d, d];
  return {
    ...common, lse, dOut: randn([batch * heads * lq * d], { seed: 5 }).data, dOutStrides: qShape,
    gradQ: new Float32Array(batch * heads * lq * d), gradK: new Float32Array(batch * kvHeads * lq * d),
    gradV: new Float32Array(batch * kvHeads * lq * d), gradQStrides: qShape, gradKStrides: kShape, gradVStrides: kShape,
  };
}

describe.skipIf(!hasNative)('native attentionBackward op (skipped: the addon is not built)', () => {
  const fresh = (a: AttentionBackwardArgs): AttentionBackwardArgs => ({
    ...a, gradQ: new Float32Array(a.gradQ!.length), gradK: new Float32Array(a.gradK!.length), gradV: new Float32Array(a.gradV!.length),
  });

  it.each([[100, 'two key blocks'], [40, 'one key block: dq from the key-block tasks']] as const)(
    'equals the JS reference on strided, grouped, causal, masked operands and is the same for 1 and 2 threads (seq %i, %s)', (seq, _what) => {
    const a = opArgs(seq, 4, 2, 16, true);
    const js = fresh(a);
    getBackend('js').attentionBackward(js);
    for (const isa of nativeIsas) {
      setIsa(isa);
      setNumThreads(1);
      const one = fresh(a);
      getBackend('native').attentionBackward(one);
      setNumThreads(2);
      const two = fresh(a);
      getBackend('native').attentionBackward(two);
      for (const g of ['gradQ', 'gradK', 'gradV'] as const) {
        expect(maxRelError(one[g]!, js[g]!), `${isa} ${g}`).toBeLessThanOrEqual(1e-5);
        expect(Buffer.from(two[g]!.buffer).equals(Buffer.from(one[g]!.buffer)), `${isa} ${g}: 1 vs 2 threads`).toBe(true);
      }
    }
    setIsa(info().native!.detectedIsa);
    setNumThreads(threads);
  });

  it('refuses bad arguments by name', () => {
    const a = opArgs(10, 2, 2, 4, false);
    const be = getBackend('native');
    expect(() => be.attentionBackward({ ...fresh(a), lse: new Float32Array(3) })).toThrow(/'lse'.*3.*40/);
    expect(() => be.attentionBackward({ ...fresh(a), gradQStrides: undefined })).toThrow(/'gradQStrides'/);
    expect(() => be.attentionBackward({ ...fresh(a), gradK: a.q })).toThrow(/'gradK'/);
    expect(() => be.attentionBackward({ ...fresh(a), dOut: new Float32Array(5) })).toThrow(/'dOut'/);
    expect(() => be.attentionBackward({ ...fresh(a), kvHeads: 3 })).toThrow(/'kvHeads'/);
    expect(() => be.attention({ ...a, weights: null, lse: new Float32Array(2) })).toThrow(/'lse'/);
    expect(() => getBackend('js').attentionBackward({ ...fresh(a), lse: new Float32Array(3) })).toThrow(/'lse'/);
  });
});

describe.skipIf(!hasNative)('memory at 4096 tokens (native; skipped when the addon is not built)', () => {
  it('the graph keeps no lq × lk matrix and the backward reports a few blocks of scratch', () => {
    const [heads, seq, d] = [2, 4096, 16];
    const q = randn([1, heads, seq, d], { seed: 1 }).requiresGrad_();
    const k = randn([1, heads, seq, d], { seed: 2 }).requiresGrad_();
    const v = randn([1, heads, seq, d], { seed: 3 }).requiresGrad_();
    const before = process.memoryUsage().arrayBuffers;
    const out = ops.scaledDotProductAttention(q, k, v, { isCausal: true, backend: 'native' }) as F32;
    const held = process.memoryUsage().arrayBuffers - before;
    const square = heads * seq * seq * 4;  // one float32 probability matrix: 128 MiB
    // Held after the forward: the output and L (2 · 4096 · 17 floats) plus allocator slack, far below one P.
    expect(held, `forward held ${held} bytes`).toBeLessThan(square / 16);
    out.backward(tensor(new Float32Array(out.size).fill(1e-3), out.shape));
    const ws = lastAttentionBackwardWorkspaceBytes();
    // Per-thread scratch of one 32-query tile and 64-key block (and one tile's dQ when a block holds every key):
    // independent of seq.
    const perThread = 4 * (2 * 64 * 32 + (2 * d + 2) * 32 + 64 * (1 + 2 * 16) + 32 * 16) + 64;
    expect(ws).toBeGreaterThan(0);
    expect(ws, `workspace ${ws} bytes`).toBeLessThanOrEqual(perThread * Math.max(1, info().native!.numThreads));
    expect(ws).toBeLessThan(seq * d * 4);
    expect(q.grad!.shape).toEqual([1, heads, seq, d]);
    expect(Number.isFinite(q.grad!.data[0]!) && Number.isFinite(k.grad!.data[0]!) && Number.isFinite(v.grad!.data[0]!)).toBe(true);
  });
});
