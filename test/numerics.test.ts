/**
 * Numerical robustness on every backend and, for native, every kernel path the CPU has:
 * - softmax and layerNorm stay finite (and correct) for logits of ±1e4, mixed huge/tiny rows and constant rows;
 * - a fully masked attention row gives NaN, as PyTorch 1.13 does (softmax over all -inf is 0/0): in
 *   nn.MultiheadAttention (key padding mask hiding every key, or a bool attnMask row of all true) and in
 *   scaledDotProductAttention (a bool mask row of all false = nothing may be attended). Rows with at least one
 *   visible key are unaffected. Callers who want zeros instead must mask the output themselves (newer PyTorch fast
 *   paths differ here; attnode follows the reference math).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { scaledDotProductAttention } from '../lib/attention';
import { addon } from '../lib/backend/native';
import * as nn from '../lib/nn';
import * as ops from '../lib/ops';
import { ones, randn, tensor, zeros, type Tensor } from '../lib/tensor';
import { backends } from './helpers/backends';

const ISAS = ['avx512', 'avx2', 'portable'] as const;
const detected = addon?.info().detectedIsa ?? 'portable';
const paths: { backend: 'js' | 'native'; isa: string | null }[] = backends.flatMap((b): { backend: 'js' | 'native'; isa: string | null }[] =>
  b === 'native' ? ISAS.slice(ISAS.indexOf(detected)).map((isa) => ({ backend: 'native', isa })) : [{ backend: b, isa: null }]);

function allFinite(t: Tensor): boolean {
  return (t.data as Float32Array).every((v) => Number.isFinite(v));
}

/** float64 softmax of one row. */
function refSoftmax(row: number[]): number[] {
  const m = Math.max(...row);
  const e = row.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

describe.each(paths)('numerics ($backend $isa)', ({ backend, isa }) => {
  const o = { backend } as const;
  const setIsa = (): void => {
    if (isa) addon!.setIsa(isa);
  };
  afterAll(() => {
    if (addon) addon.setIsa(detected);
  });

  // Row lengths around the SIMD widths (8, 16) so vector bodies and scalar tails both see the extremes.
  const widths = [1, 7, 16, 17, 33];

  it('softmax is finite and exact-ish for ±1e4 logits, constant rows and mixed magnitudes', () => {
    setIsa();
    for (const n of widths) {
      const rows = [
        Array.from({ length: n }, (_, i) => (i % 2 ? 1e4 : -1e4)),
        Array.from({ length: n }, () => 1e4),
        Array.from({ length: n }, () => -1e4),
        Array.from({ length: n }, () => 0),
        Array.from({ length: n }, (_, i) => (i === n - 1 ? 1e4 : 1e-4 * i)),
        Array.from({ length: n }, (_, i) => -3e38 + i * 1e37),
      ];
      const y = ops.softmax(tensor(rows), -1, o);
      expect(allFinite(y), `n=${n}`).toBe(true);
      const got = y.toArray() as number[][];
      rows.forEach((row, r) => {
        const want = refSoftmax(row);
        for (let j = 0; j < n; j++) expect(Math.abs(got[r]![j]! - want[j]!), `n=${n} row ${r} col ${j}`).toBeLessThan(1e-6);
      });
      // In place too (the same kernels with x == y).
      const x = tensor(rows);
      ops.softmax(x, -1, { ...o, out: x });
      expect(allFinite(x)).toBe(true);
    }
  });

  it('layerNorm is finite for ±1e4 inputs and gives beta on constant rows', () => {
    setIsa();
    for (const n of widths) {
      const rows = [
        Array.from({ length: n }, (_, i) => (i % 2 ? 1e4 : -1e4)),
        Array.from({ length: n }, () => 1e4),
        Array.from({ length: n }, () => -7),
        Array.from({ length: n }, (_, i) => 1e4 + i * 1e-3),
      ];
      const beta = tensor(Array.from({ length: n }, (_, i) => i / 10));
      const y = ops.layerNorm(tensor(rows), n, ones([n]), beta, 1e-5, o);
      expect(allFinite(y), `n=${n}`).toBe(true);
      const got = y.toArray() as number[][];
      // Constant rows normalise to 0, leaving beta.
      for (const r of [1, 2]) for (let j = 0; j < n; j++) expect(got[r]![j]!).toBeCloseTo(j / 10, 5);
      // ±1e4 alternating over an even width: mean 0, variance 1e8, so exactly ±1 (+ beta) up to float32 rounding.
      if (n % 2 === 0) for (let j = 0; j < n; j++) expect(got[0]![j]! - j / 10).toBeCloseTo(j % 2 ? 1 : -1, 4);
    }
  });

  it('gelu and linear stay finite at large magnitudes', () => {
    setIsa();
    const x = tensor([-1e4, -30, -1e-30, 0, 1e-30, 30, 1e4, 3e38]);
    expect(allFinite(ops.gelu(x, o))).toBe(true);
    expect(allFinite(ops.gelu(x, { ...o, approximate: 'tanh' }))).toBe(true);
    const y = ops.linear(full2([4, 17], 1e4), full2([3, 17], 1e-4), null, o);
    expect(allFinite(y)).toBe(true);
  });

  it('MultiheadAttention: a fully masked row is NaN (PyTorch 1.13); other rows are finite', () => {
    setIsa();
    const m = new nn.MultiheadAttention({ embedDim: 8, numHeads: 2 });
    m.useBackend(backend);
    const l = 3, s = 4, n = 2;
    const q = randn([l, n, 8], { seed: 1 });
    const kv = randn([s, n, 8], { seed: 2 });
    // Batch 1 has every key padded out.
    const kpm = tensor(new Uint8Array([0, 0, 1, 0, 1, 1, 1, 1]), [n, s], 'bool');
    const { output, weights } = m.forward(q, kv, kv, { keyPaddingMask: kpm });
    const out = output.toArray() as number[][][];
    for (let i = 0; i < l; i++) {
      expect(out[i]![0]!.every((v) => Number.isFinite(v))).toBe(true);
      expect(out[i]![1]!.every((v) => Number.isNaN(v))).toBe(true);
    }
    const w = weights!.toArray() as number[][][];
    expect(w[1]!.flat().every((v) => Number.isNaN(v))).toBe(true);
    expect(w[0]!.every((row) => Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-5)).toBe(true);

    // A bool attnMask row of all true: only that query position is NaN, in every batch.
    const am = zeros([l, s], 'bool');
    (am.data as Uint8Array).fill(1, s, 2 * s);
    const r2 = m.forward(q, kv, kv, { attnMask: am }).output.toArray() as number[][][];
    expect(r2[1]!.flat().every((v) => Number.isNaN(v))).toBe(true);
    expect([...r2[0]!.flat(), ...r2[2]!.flat()].every((v) => Number.isFinite(v))).toBe(true);

    // A float mask of -Infinity everywhere behaves the same.
    const fm = tensor(new Float32Array(l * s).fill(-Infinity), [l, s], 'float32');
    const r3 = m.forward(q, kv, kv, { attnMask: fm, needWeights: false }).output;
    expect((r3.data as Float32Array).every((v) => Number.isNaN(v))).toBe(true);
  });

  it('scaledDotProductAttention: a row that may attend nothing is NaN; huge scores stay finite', () => {
    setIsa();
    const q = randn([2, 3, 5, 8], { seed: 3 });
    const k = randn([2, 3, 6, 8], { seed: 4 });
    const v = randn([2, 3, 6, 8], { seed: 5 });
    const allow = tensor(new Uint8Array(5 * 6).fill(1), [5, 6], 'bool');
    (allow.data as Uint8Array).fill(0, 2 * 6, 3 * 6); // query 2 may attend nothing
    const y = scaledDotProductAttention(q, k, v, { ...o, attnMask: allow }).toArray() as number[][][][];
    for (const b of [0, 1]) {
      for (const h of [0, 1, 2]) {
        expect(y[b]![h]![2]!.every((x) => Number.isNaN(x))).toBe(true);
        expect([0, 1, 3, 4].every((i) => y[b]![h]![i]!.every((x) => Number.isFinite(x)))).toBe(true);
      }
    }
    // Scores of ~1e4 (huge q·k) through the fused softmax: finite, and a convex combination of v rows.
    const big = scaledDotProductAttention(ops.mul(q, 1e3, o), k, v, o);
    expect(allFinite(big)).toBe(true);
    const vmax = Math.max(...(v.data as Float32Array));
    expect((big.data as Float32Array).every((x) => Math.abs(x) <= vmax + 1e-4 || x >= -vmax - 1e-4)).toBe(true);
  });
});

function full2(shape: number[], value: number): Tensor<'float32'> {
  const t = zeros(shape);
  (t.data as Float32Array).fill(value);
  return t;
}
