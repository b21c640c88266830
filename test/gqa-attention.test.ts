/**
 * Grouped-query attention: scaledDotProductAttention with `enableGqa` (PyTorch 2.5 semantics: k, v [N, Hkv, S, E]
 * with q [N, H, L, E], query head h reads key/value head ⌊h / (H / Hkv)⌋) on every available backend, against
 * PyTorch's formula (fixtures/llama_ops.safetensors), against full attention with the key/value heads repeated,
 * with K/V read in place from a packed projection, in the decode (L = 1) path, with masks and causal, bf16
 * where the CPU has it, and the errors for mismatched heads.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { addon } from '../lib/backend/native';
import { loadSafetensors, type SafetensorsFile } from '../lib/io/safetensors';
import * as ops from '../lib/ops';
import { Tensor, tensor } from '../lib/tensor';
import { backends } from './helpers/backends';
import { expectClose, randomData } from './helpers/reference';

function rnd(shape: number[], seed: number, scale = 1): Tensor<'float32'> {
  return tensor(randomData(shape.reduce((p, d) => p * d, 1), seed, scale), shape);
}

/** k [N, Hkv, S, E] with each head repeated H / Hkv times along dim 1 (torch.repeat_interleave), contiguous. */
function repeatHeads(k: Tensor<'float32'>, rep: number): Tensor<'float32'> {
  const [n, hk, s, e] = k.shape as [number, number, number, number];
  const kc = k.contiguous().data;
  const out = new Float32Array(n * hk * rep * s * e);
  for (let b = 0; b < n; b++) for (let h = 0; h < hk * rep; h++) {
    const src = (b * hk + Math.floor(h / rep)) * s * e;
    out.set(kc.subarray(src, src + s * e), (b * hk * rep + h) * s * e);
  }
  return tensor(out, [n, hk * rep, s, e]);
}

describe.each(backends)('grouped-query attention on the %s backend', (backend) => {
  const opts = { backend } as const;

  for (const [h, hkv, l, s, causal] of [[8, 2, 5, 9, false], [8, 2, 1, 40, false], [6, 3, 12, 12, true], [4, 1, 3, 70, false]] as const) {
    it(`H=${h}, Hkv=${hkv}, L=${l}, S=${s}${causal ? ', causal' : ''}: equals full attention with repeated key/value heads`, () => {
      const q = rnd([2, h, l, 16], 1, 2);
      const k = rnd([2, hkv, s, 16], 2, 2);
      const v = rnd([2, hkv, s, 16], 3, 2);
      const mask = rnd([l, s], 4, 1);
      const got = ops.scaledDotProductAttention(q, k, v, { ...opts, enableGqa: true, isCausal: causal, attnMask: mask });
      const want = ops.scaledDotProductAttention(q, repeatHeads(k, h / hkv), repeatHeads(v, h / hkv),
        { ...opts, isCausal: causal, attnMask: mask });
      expect(got.shape).toEqual([2, h, l, 16]);
      // The same kernel reads the same K/V rows either way: identical to the last bit.
      expect(Array.from(got.data)).toEqual(Array.from(want.data));
    });
  }

  it('reads K/V heads in place from a packed [N, S, (H + 2·Hkv)·D] projection (Llama-style fused qkv)', () => {
    const [n, s, h, hkv, d] = [2, 6, 8, 2, 8];
    const qkv = rnd([n, s, (h + 2 * hkv) * d], 5, 2);
    const q = qkv.narrow(-1, 0, h * d).view(n, s, h, d).transpose(1, 2);
    const k = qkv.narrow(-1, h * d, hkv * d).view(n, s, hkv, d).transpose(1, 2);
    const v = qkv.narrow(-1, (h + hkv) * d, hkv * d).view(n, s, hkv, d).transpose(1, 2);
    const got = ops.scaledDotProductAttention(q, k, v, { ...opts, enableGqa: true, isCausal: true });
    const want = ops.scaledDotProductAttention(q.contiguous(), repeatHeads(k, 4), repeatHeads(v, 4), { ...opts, isCausal: true });
    expectClose(got.data, want.data, 1e-6, 1e-6);
  });

  it('3-D [H, L, E] inputs, and zero-size ones', () => {
    const q = rnd([4, 3, 8], 6);
    const k = rnd([2, 5, 8], 7);
    const v = rnd([2, 5, 8], 8);
    const got = ops.scaledDotProductAttention(q, k, v, { ...opts, enableGqa: true });
    const want = ops.scaledDotProductAttention(q.unsqueeze(0), repeatHeads(k.unsqueeze(0), 2), repeatHeads(v.unsqueeze(0), 2), opts);
    expect(Array.from(got.data)).toEqual(Array.from(want.data));
    expect(ops.scaledDotProductAttention(rnd([1, 4, 0, 8], 1), rnd([1, 2, 3, 8], 2), rnd([1, 2, 3, 8], 3),
      { ...opts, enableGqa: true }).shape).toEqual([1, 4, 0, 8]);
  });

  it('mismatched heads are an error naming the shapes (without enableGqa, or when Hkv does not divide H)', () => {
    const q = rnd([1, 6, 2, 8], 1);
    const k = rnd([1, 4, 3, 8], 2);
    expect(() => ops.scaledDotProductAttention(q, rnd([1, 2, 3, 8], 2), rnd([1, 2, 3, 8], 3), opts))
      .toThrow(/q has 6 heads \(dim -3\) and k, v have 2: q \[1, 6, 2, 8\], k \[1, 2, 3, 8\], v \[1, 2, 3, 8\] \(pass enableGqa: true/);
    expect(() => ops.scaledDotProductAttention(q, k, rnd([1, 4, 3, 8], 3), { ...opts, enableGqa: true }))
      .toThrow(/q's heads \(6\) must be a multiple of k's and v's \(4\)/);
    expect(() => ops.scaledDotProductAttention(q, rnd([1, 2, 3, 8], 2), rnd([1, 3, 3, 8], 3), { ...opts, enableGqa: true }))
      .toThrow(/same leading dims/);
    expect(() => ops.scaledDotProductAttention(q, rnd([2, 2, 3, 8], 2), rnd([2, 2, 3, 8], 3), { ...opts, enableGqa: true }))
      .toThrow(/same leading dims/);
    expect(() => ops.scaledDotProductAttention(q, q, q, { ...opts, enableGqa: 'yes' as never })).toThrow(TypeError);
  });
});

describe.each(backends)('grouped-query attention vs PyTorch (fixtures/llama_ops.safetensors), %s backend', (backend) => {
  let file: SafetensorsFile;
  beforeAll(async () => {
    file = await loadSafetensors(join(__dirname, 'fixtures', 'llama_ops.safetensors'));
  });

  it('every case within float32 rounding of SDPA with enable_gqa', () => {
    const names = Object.keys(file.metadata).filter((k) => k.startsWith('gqa.'));
    expect(names.length).toBe(3);
    for (const name of names) {
      const p = JSON.parse(file.metadata[name]!) as { causal: boolean };
      const get = (k: string): Tensor<'float32'> | undefined => file.tensors[`${name}.${k}`] as Tensor<'float32'> | undefined;
      const got = ops.scaledDotProductAttention(get('q')!, get('k')!, get('v')!,
        { backend, enableGqa: true, isCausal: p.causal, attnMask: get('mask') ?? null });
      expectClose(got.data, get('out')!.data, 1e-5, 1e-5);
    }
  });
});

const bf16 = addon !== null && addon.info().bf16;
describe.runIf(bf16)('grouped-query attention in bfloat16 (native AVX512-BF16 vs the JS emulation)', () => {
  it('K/V packed once per key/value head, every query head of the group reads its block', () => {
    const q = rnd([1, 8, 40, 32], 11, 2);
    const k = rnd([1, 2, 130, 32], 12, 2);
    const v = rnd([1, 2, 130, 32], 13, 2);
    const nat = ops.scaledDotProductAttention(q, k, v, { backend: 'native', enableGqa: true, precision: 'bfloat16' });
    const js = ops.scaledDotProductAttention(q, k, v, { backend: 'js', enableGqa: true, precision: 'bfloat16' });
    expectClose(nat.data, js.data, 2e-2, 2e-2);
    const full = ops.scaledDotProductAttention(q, repeatHeads(k, 4), repeatHeads(v, 4), { backend: 'native', precision: 'bfloat16' });
    expect(Array.from(nat.data)).toEqual(Array.from(full.data));
  });
});
