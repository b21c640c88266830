/**
 * int8 weights (`useWeightPrecision('int8')`, `ops.linear(..., { weightPrecision: 'int8', cacheWeight: true })`):
 * the native kernels (native/kernels/qgemm: AVX512-VNNI, AVX2, portable) against the JS backend's emulation
 * (lib/backend/js/qgemm.ts), which follows the scheme of qgemm.h step by step.
 *
 * Bit for bit: without activation (alpha 1, beta 0, with or without bias) every output is
 * float(acc) · (sa · sw) (+ bias), one float32 rounding per step, so equal outputs mean equal int32 accumulators
 * (for |acc| < 2^23 distinct accumulators give distinct outputs: the shapes here keep 127² · K below it or check
 * all-equal rows). With GELU the two backends' GELU differ by float rounding only. Also: every kernel path in this
 * process (setIsa) and in fresh processes (ATTNODE_ISA), the GEMV (M = 1) against the GEMM's rows, weight views,
 * re-quantization after an in-place update, the errors, and the accuracy of a BERT-base-shaped encoder layer.
 */
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as nn from '../lib/nn';
import * as ops from '../lib/ops';
import { addon } from '../lib/backend/native';
import { quantizeInt8, rint } from '../lib/backend/js/qgemm';
import { markWritten } from '../lib/in-place';
import { randn, tensor, Tensor } from '../lib/tensor';
import { getNumThreads, info, setIsa, setNumThreads } from '../lib/runtime';
import { cosine } from './helpers/reference';
import { runChildScript } from './helpers/child-script';

const hasNative = addon !== null;
const detected = addon?.info().detectedIsa ?? 'portable';
const ORDER = ['portable', 'avx2', 'avx512'] as const;
const paths = hasNative ? ORDER.slice(0, ORDER.indexOf(detected as (typeof ORDER)[number]) + 1) : [];
const startIsa = addon?.info().isa;
afterAll(() => {
  if (startIsa) setIsa(startIsa);
});

type F32 = Tensor<'float32'>;

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

function firstDiff(a: Float32Array, b: Float32Array): string {
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return `element ${i}: ${a[i]} vs ${b[i]}`;
  return 'none';
}

function linear(x: F32, w: F32, b: F32 | null, backend: 'native' | 'js', activation: 'none' | 'gelu' = 'none'): Float32Array {
  return ops.linear(x, w, b, { cacheWeight: true, weightPrecision: 'int8', backend, activation }).contiguous().data;
}

describe('int8 quantization (the JS reference)', () => {
  it('rint rounds half to even', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5, 0.49999997, 3.2, -3.7].map(rint))
      .toEqual([0, 2, 2, -0, -2, -2, 126, -126, 0, 3, -4]);
  });

  it('quantizes a row symmetrically: scale amax / 127, ties to even, zero / NaN / Inf rows to zeros', () => {
    const q = new Int8Array(8);
    const s = quantizeInt8(new Float32Array([127, 2.5, -2.5, 3.5, -3.5, 0.5, -127, 126.5]), 0, 1, 8, q, 0);
    expect(s).toBe(1);
    expect(Array.from(q)).toEqual([127, 2, -2, 4, -4, 0, -127, 126]);
    expect(quantizeInt8(new Float32Array(8), 0, 1, 8, q, 0)).toBe(0);
    expect(Array.from(q)).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(quantizeInt8(new Float32Array([1, NaN, 3]), 0, 1, 3, q, 0)).toBeNaN();
    expect(quantizeInt8(new Float32Array([1, -Infinity, 3]), 0, 1, 3, q, 0)).toBe(Infinity);
    expect(Array.from(q.subarray(0, 3))).toEqual([0, 0, 0]);
    // Strided (a column of a [k, n] matrix): every second value.
    quantizeInt8(new Float32Array([1, 99, -0.5, 99, 0.25, 99]), 0, 2, 3, q, 0);
    expect(Array.from(q.subarray(0, 3))).toEqual([127, -64, 32]);
  });

  it('the JS backend follows the scheme: a 1 x 1 product by hand', () => {
    // x = [1, -0.5], w = [[2, 1]]: qa = [127, -64], sa = 1/127; qw = [127, 64], sw = 2/127;
    // acc = 127·127 - 64·64 = 12033; d = 12033 · (1/127 · 2/127) in float32 steps.
    const y = linear(tensor(new Float32Array([1, -0.5]), [1, 2]), tensor(new Float32Array([2, 1]), [1, 2]), null, 'js');
    const want = Math.fround(12033 * Math.fround(Math.fround(1 / 127) * Math.fround(2 / 127)));
    expect(y[0]).toBe(want);
  });
});

describe.skipIf(!hasNative)('int8 GEMM: native kernels equal the JS emulation bit for bit', () => {
  // [37, 150, 900] and [40, 100, 1001]: enough work for two threads at M <= 384, where the threads split the rows and
  // each packs its own (qgemm.cc run_qgemm_row_blocks); K past the VNNI packer's 8-quad steps by 1 and 2 quads.
  const shapes: [number, number, number][] = [[1, 48, 64], [1, 50, 67], [3, 5, 7], [17, 100, 33], [64, 96, 128], [130, 200, 300], [9, 144, 511],
    [37, 150, 900], [40, 100, 1001]];
  // ATTNODE_ISA leaves a lower path active, and setIsa cannot raise past it: the paths above are visible skips.
  const cap = ORDER.indexOf((startIsa ?? detected) as (typeof ORDER)[number]);
  for (const isa of paths) {
    const capped = ORDER.indexOf(isa) > cap;
    const why = capped ? ` (skipped: ATTNODE_ISA=${process.env.ATTNODE_ISA} leaves ${startIsa} active)` : '';
    it.skipIf(capped)(`${isa}: linear with and without bias, M = 1 and M > 1, thread-independent${why}`, () => {
      setIsa(isa);
      expect(info().native!.int8).toBe(isa === 'avx512' ? (addon!.info().cpu.features.includes('avx512vnni') ? 'avx512vnni' : 'avx2') : isa);
      for (const [m, n, k] of shapes) {
        const x = randn([m, k], { seed: m + n });
        const w = randn([n, k], { seed: k });
        const b = randn([n], { seed: 7 });
        for (const bias of [null, b]) {
          const got = linear(x, w, bias, 'native');
          const want = linear(x, w, bias, 'js');
          expect(sameBits(got, want), `${isa} ${m}x${n}x${k} bias ${bias !== null}: ${firstDiff(got, want)}`).toBe(true);
        }
        // GELU fused into the store: float rounding of the two GELUs apart.
        const g = linear(x, w, b, 'native', 'gelu');
        const gj = linear(x, w, b, 'js', 'gelu');
        for (let i = 0; i < g.length; i++) expect(Math.abs(g[i]! - gj[i]!)).toBeLessThanOrEqual(2e-6 * (1 + Math.abs(gj[i]!)));
        // One thread and two: the same bits (K is never split; tiles do not change an element's arithmetic).
        const threads = getNumThreads();
        setNumThreads(1);
        const one = linear(x, w, b, 'native', 'gelu');
        setNumThreads(2);
        const two = linear(x, w, b, 'native', 'gelu');
        setNumThreads(threads);
        expect(sameBits(one, two)).toBe(true);
        expect(sameBits(one, g)).toBe(true);
        // Every row of the GEMM equals the GEMV of that row (M = 1 runs its own kernel).
        if (m > 1) {
          const full = linear(x, w, b, 'native', 'gelu');
          const last = linear(x.narrow(0, m - 1, 1).contiguous(), w, b, 'native', 'gelu');
          expect(sameBits(last, full.subarray((m - 1) * n, m * n))).toBe(true);
        }
      }
      setIsa(detected);
    });
  }

  it('batched rows (a [batch, seq, in] input), a transposed weight view and a row-sliced weight', () => {
    const x = randn([3, 11, 40], { seed: 1 });
    const w = randn([24, 40], { seed: 2 });
    expect(sameBits(linear(x, w, null, 'native'), linear(x, w, null, 'js'))).toBe(true);
    // x transposed to [seq, batch, in]: rows addressed through strides.
    const xt = x.transpose(0, 1);
    expect(sameBits(linear(xt, w, null, 'native'), linear(xt, w, null, 'js'))).toBe(true);
    // A weight stored [in, out] and viewed transposed: packed from a re-laid copy natively, read in place in JS.
    const wio = randn([40, 24], { seed: 3 });
    const y1 = linear(x, wio.t(), null, 'native');
    expect(sameBits(y1, linear(x, wio.t(), null, 'js'))).toBe(true);
    expect(sameBits(y1, linear(x, wio.t().contiguous(), null, 'native'))).toBe(true);
    // Rows 8..16 of a bigger weight (a packed projection's slice).
    const big = randn([48, 40], { seed: 4 });
    const slice = big.narrow(0, 8, 16);
    expect(sameBits(linear(x, slice, null, 'native'), linear(x, slice, null, 'js'))).toBe(true);
  });

  it('an in-place update of the weight (markWritten) is quantized again', () => {
    const x = randn([4, 32], { seed: 5 });
    const w = randn([16, 32], { seed: 6 });
    const before = linear(x, w, null, 'native');
    w.data[0] = 40; // a new amax for output channel 0
    markWritten(w);
    const after = linear(x, w, null, 'native');
    expect(sameBits(after, linear(x, w, null, 'js'))).toBe(true);
    expect(sameBits(after, before)).toBe(false);
  });

  it.each(paths)('ATTNODE_ISA=%s in a fresh process gives the same bits as this process', (isa) => {
    const script = `
const ops = require(${JSON.stringify(path.resolve(__dirname, '..', 'lib', 'ops.ts'))});
const { randn } = require(${JSON.stringify(path.resolve(__dirname, '..', 'lib', 'tensor.ts'))});
const { info } = require(${JSON.stringify(path.resolve(__dirname, '..', 'lib', 'runtime.ts'))});
const x = randn([37, 200], { seed: 11 });
const w = randn([150, 200], { seed: 12 });
const b = randn([150], { seed: 13 });
const y = ops.linear(x, w, b, { cacheWeight: true, weightPrecision: 'int8', backend: 'native' });
const y1 = ops.linear(x.narrow(0, 0, 1).contiguous(), w, b, { cacheWeight: true, weightPrecision: 'int8', backend: 'native' });
console.log(JSON.stringify({ isa: info().native.isa, int8: info().native.int8, y: Buffer.from(y.data.buffer).toString('base64'), y1: Buffer.from(y1.data.buffer).toString('base64') }));
`;
    const out = runChildScript<{ isa: string; int8: string; y: string; y1: string }>(script, { ATTNODE_ISA: isa });
    expect(out.isa).toBe(isa);
    const x = randn([37, 200], { seed: 11 });
    const w = randn([150, 200], { seed: 12 });
    const b = randn([150], { seed: 13 });
    const want = linear(x, w, b, 'js');
    const got = new Float32Array(new Uint8Array(Buffer.from(out.y, 'base64')).buffer);
    expect(sameBits(got, want), `${out.int8}: ${firstDiff(got, want)}`).toBe(true);
    const row = new Float32Array(new Uint8Array(Buffer.from(out.y1, 'base64')).buffer);
    expect(sameBits(row, want.subarray(0, 150))).toBe(true);
  });
});

describe('int8 weights: API and errors', () => {
  it('useWeightPrecision accepts int8 for every descendant; attention precision does not', () => {
    const layer = new nn.TransformerEncoderLayer({ dModel: 16, nhead: 2, dimFeedforward: 32 }).eval();
    layer.useWeightPrecision('int8');
    for (const [, m] of layer.namedModules()) expect(m.weightPrecision).toBe('int8');
    expect(() => layer.useAttentionPrecision('int8' as never)).toThrowError(TypeError);
    expect(() => layer.useWeightPrecision('int4' as never)).toThrowError(/'float32', 'bfloat16' or 'int8', got int4/);
  });

  it('ops.linear: int8 needs a constant weight (cacheWeight) and float32 tensors', () => {
    const x = randn([2, 4]);
    const w = randn([3, 4]);
    expect(() => ops.linear(x, w, null, { weightPrecision: 'int8' })).toThrowError(/cacheWeight/);
    expect(() => ops.linear(x, w, null, { weightPrecision: 'int4' as never, cacheWeight: true })).toThrowError(/'float32', 'bfloat16' or 'int8'/);
    const wi = tensor(new Int32Array(12), [3, 4], 'int32');
    expect(() => ops.linear(x, wi as never, null, { weightPrecision: 'int8', cacheWeight: true })).toThrowError(TypeError);
  });

  it.skipIf(!hasNative)('packWeight: int8 packs on every path, refuses an overflowing K and unknown precisions', () => {
    const a = addon!;
    const p = a.packWeight(new Float32Array(8 * 4), 8, 4, true, 'int8');
    expect(a.packedWeightInfo(p).precision).toBe('int8');
    expect(a.packedWeightInfo(p).bytes).toBeLessThan(8 * 4 * 4 * 8);
    expect(() => a.packWeight(new Float32Array(133144), 133144, 1, true, 'int8')).toThrowError(/k <= 133143/);
    expect(() => a.packWeight(new Float32Array(4), 2, 2, true, 'int4' as never)).toThrowError(RangeError);
    expect(() => a.packWeight(new Float32Array(4), 2, 2, true, 8 as never)).toThrowError(TypeError);
  });
});

describe.skipIf(!hasNative)('int8 weights: accuracy against float32', () => {
  it('a BERT-base-shaped encoder layer (768, 12 heads, 3072, GELU, 1 x 128 tokens): cosine >= 0.999', () => {
    nn.manualSeed(18);
    const layer = new nn.TransformerEncoderLayer({ dModel: 768, nhead: 12, dimFeedforward: 3072, activation: 'gelu', batchFirst: true })
      .eval().useBackend('native');
    const x = randn([1, 128, 768], { seed: 3 });
    const fp32 = layer.forward(x).data.slice();
    layer.useWeightPrecision('int8');
    const q = layer.forward(x).data.slice();
    const cos = cosine(fp32, q);
    expect(cos).toBeGreaterThanOrEqual(0.999);
    // And not the fp32 path by mistake.
    expect(sameBits(fp32, q)).toBe(false);
  });
});
