/**
 * The native runtime: every kernel path (ISA) the CPU supports against the
 * TypeScript reference, identical results for 1 and n threads, ATTNODE_ISA
 * forcing, and the binding's own argument checks (native code never trusts JS).
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { addon } from '../lib/backend/native';
import { jsBackend } from '../lib/backend/js';
import { getBackend } from '../lib/backend/registry';
import * as ops from '../lib/ops';
import { randn, tensor } from '../lib/tensor';
import { scaledDotProductAttention } from '../lib/attention';

const hasNative = addon !== null;
if (process.env.CI && !hasNative) throw new Error('CI must test the native addon, but it did not load');

const ISAS = ['avx512', 'avx2', 'portable'] as const;

// Read at module level: describe bodies run at collection even when skipped.
const detected = addon ? addon.info().detectedIsa : 'portable';
const supported = ISAS.slice(ISAS.indexOf(detected));
const startThreads = addon ? addon.getNumThreads() : 1;

describe.runIf(hasNative)('native runtime', () => {
  const a = addon!;
  afterAll(() => {
    a.setIsa(detected);
    a.setNumThreads(startThreads);
  });

  it('reports the kernel path, threads and CPU', () => {
    const info = a.info();
    expect(ISAS).toContain(info.isa);
    expect(info.numThreads).toBeGreaterThanOrEqual(1);
    expect(info.cpu.features.length).toBeGreaterThan(0);
    expect(info.build.napiVersion).toBe(8);
  });

  it('ATTNODE_ISA forces a lower path in a fresh process, and a bad value is reported', () => {
    const script = `const a = require('node-gyp-build')(${JSON.stringify(path.resolve(__dirname, '..'))}); const i = a.info(); console.log(JSON.stringify([i.isa, i.envIsaInvalid]));`;
    for (const isa of supported) {
      const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, ATTNODE_ISA: isa }, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual([isa, false]);
    }
    const bad = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, ATTNODE_ISA: 'sse9' }, encoding: 'utf8' });
    expect(JSON.parse(bad.stdout)).toEqual([detected, true]);
  });

  it('setIsa rejects unknown names', () => {
    expect(() => a.setIsa('neon')).toThrowError(RangeError);
    expect(() => a.setIsa(3 as never)).toThrowError(TypeError);
  });

  it('setNumThreads validates its argument', () => {
    expect(() => a.setNumThreads(0)).toThrowError(RangeError);
    expect(() => a.setNumThreads(257)).toThrowError(RangeError);
    expect(() => a.setNumThreads(1.5)).toThrowError(RangeError);
    expect(() => a.setNumThreads('2' as never)).toThrowError(TypeError);
  });

  const native = (): ReturnType<typeof getBackend> => getBackend('native');

  /** Max |x - y| / max(1, max |y|). */
  function relErr(x: Float32Array, y: Float32Array): number {
    expect(x.length).toBe(y.length);
    let worst = 0;
    let scale = 1;
    for (let i = 0; i < y.length; i++) scale = Math.max(scale, Math.abs(y[i]!));
    for (let i = 0; i < y.length; i++) {
      if (Number.isNaN(y[i]!)) {
        expect(Number.isNaN(x[i]!)).toBe(true);
        continue;
      }
      worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
    }
    return worst / scale;
  }

  const gemmShapes: [number, number, number][] = [
    [1, 1, 1], [7, 13, 29], [1, 768, 768], [33, 65, 17], [128, 96, 300], [500, 3, 17], [3, 500, 17], [64, 64, 1],
    // Last column panel 16 and 32 of 48 wide (AVX-512's narrower edge tiles), over more than one K block.
    [40, 256, 300], [24, 80, 520],
  ];

  describe.each(supported)('on the %s path', (isa) => {
    it('gemm matches the TS reference for every transpose, bias and activation', () => {
      a.setIsa(isa);
      let seed = 10;
      for (const [m, n, k] of gemmShapes) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            for (const act of [0, 1, 2, 3]) {
              const A = randn([m * k], { seed: seed++ }).data;
              const B = randn([k * n], { seed: seed++ }).data;
              const bias = act % 2 ? randn([n], { seed: seed++ }).data : null;
              const C0 = randn([m * n], { seed: seed++ }).data;
              const args = { a: A, b: B, m, n, k, transA, transB, alpha: 0.5, beta: act === 3 ? 0.25 : 0, bias, act, batch: 1, strideA: 0, strideB: 0, strideC: 0 };
              const want = Float32Array.from(C0);
              const got = Float32Array.from(C0);
              jsBackend.gemm({ ...args, c: want });
              native().gemm({ ...args, c: got });
              expect(relErr(got, want), `${isa} ${m}x${n}x${k} tA=${transA} tB=${transB} act=${act}`).toBeLessThan(1e-5);
            }
          }
        }
      }
    });

    it('gemm rowSumsA: row sums of op(A) beside the product, as the TS reference (every path: packed, M = 1, K = 0, N = 0)', () => {
      a.setIsa(isa);
      let seed = 300;
      for (const [m, n, k] of [[40, 256, 300], [1024, 256, 256], [7, 13, 29], [1, 50, 70], [9, 5, 0], [6, 0, 11]] as const) {
        for (const transA of [false, true]) {
          for (const [alpha, beta] of [[1, 0], [0.5, 1], [2, 0.25]] as const) {
            const A = randn([Math.max(m * k, 1)], { seed: seed++ }).data;
            const B = randn([Math.max(k * n, 1)], { seed: seed++ }).data;
            const C0 = randn([Math.max(m * n, 1)], { seed: seed++ }).data;
            const S0 = randn([m], { seed: seed++ }).data;
            const args = { a: A, b: B, m, n, k, transA, alpha, beta };
            const [wantC, gotC, wantS, gotS] = [Float32Array.from(C0), Float32Array.from(C0), Float32Array.from(S0), Float32Array.from(S0)];
            jsBackend.gemm({ ...args, c: wantC, rowSumsA: wantS });
            native().gemm({ ...args, c: gotC, rowSumsA: gotS });
            const what = `${isa} ${m}x${n}x${k} tA=${transA} alpha=${alpha} beta=${beta}`;
            expect(relErr(gotS, wantS), what).toBeLessThan(1e-5);
            expect(relErr(gotC, wantC), what).toBeLessThan(1e-5);
            // And the sums are what they say: alpha · Σ_k op(A)[i, k] + beta · S0[i].
            const i = m - 1;
            let s = 0;
            for (let kk = 0; kk < k; kk++) s += transA ? A[kk * m + i]! : A[i * k + kk]!;
            expect(gotS[i]).toBeCloseTo(alpha * s + beta * S0[i]!, 3);
          }
        }
      }
    });

    it('gemm rowSumsA refuses batches, a short array and overlap with c, naming the argument', () => {
      a.setIsa(isa);
      const g = { a: new Float32Array(6), b: new Float32Array(6), c: new Float32Array(4), m: 2, n: 2, k: 3 };
      for (const be of [native(), jsBackend]) {
        expect(() => be.gemm({ ...g, rowSumsA: new Float32Array(1) })).toThrowError(/'rowSumsA'.*(at least 2|expected at least 2)/);
        expect(() => be.gemm({ ...g, a: new Float32Array(12), c: new Float32Array(8), batch: 2, strideA: 6, strideC: 4, rowSumsA: new Float32Array(2) }))
          .toThrowError(/'rowSumsA' needs batch 1, got batch 2/);
      }
      const buf = new Float32Array(8);
      expect(() => native().gemm({ ...g, c: buf.subarray(0, 4), rowSumsA: buf.subarray(3, 5) })).toThrowError(/'rowSumsA'.*'c'|'c'.*'rowSumsA'/);
    });

    it('batched gemm with a broadcast operand', () => {
      a.setIsa(isa);
      const [batch, m, n, k] = [5, 9, 11, 13];
      const A = randn([batch * m * k], { seed: 1 }).data;
      const B = randn([k * n], { seed: 2 }).data;
      const args = { a: A, b: B, m, n, k, transA: false, transB: false, alpha: 1, beta: 0, bias: null, act: 0, batch, strideA: m * k, strideB: 0, strideC: m * n };
      const want = new Float32Array(batch * m * n);
      const got = new Float32Array(batch * m * n);
      jsBackend.gemm({ ...args, c: want });
      native().gemm({ ...args, c: got });
      expect(relErr(got, want)).toBeLessThan(1e-5);
    });

    it('layer ops match the TS reference on awkward sizes', () => {
      a.setIsa(isa);
      for (const cols of [1, 3, 15, 16, 17, 31, 33, 767, 768, 1000]) {
        const rows = 7;
        const x = randn([rows, cols], { seed: cols });
        x.data[0] = 1e4; // large magnitude must stay finite
        const g = randn([cols], { seed: cols + 1 });
        const b = randn([cols], { seed: cols + 2 });
        const r = randn([rows, cols], { seed: cols + 3 });
        const pairs: [string, (backend: 'js' | 'native') => Float32Array][] = [
          ['softmax', (backend) => ops.softmax(x, -1, { backend }).data],
          ['layerNorm', (backend) => ops.layerNorm(x, [cols], g, b, 1e-5, { backend }).data],
          ['addLayerNorm', (backend) => ops.addLayerNorm(x, r, [cols], g, b, 1e-5, { backend }).data],
          ['relu', (backend) => ops.relu(x, { backend }).data],
          ['gelu', (backend) => ops.gelu(x, { backend }).data],
          ['geluTanh', (backend) => ops.gelu(x, { approximate: 'tanh', backend }).data],
          ['add broadcast', (backend) => ops.add(x, b, { backend }).data],
          ['mul', (backend) => ops.mul(x, x, { backend }).data],
        ];
        for (const [name, run] of pairs) {
          const got = run('native');
          expect(got.every((v) => !Number.isNaN(v)), `${name} finite`).toBe(true);
          expect(relErr(got, run('js')), `${isa} ${name} cols=${cols}`).toBeLessThan(1e-5);
        }
      }
    });

    it('embedding and head transposes are exact', () => {
      a.setIsa(isa);
      const w = randn([10, 6], { seed: 3 });
      const ids = tensor(new Int32Array([0, 9, 3, 3]), [2, 2], 'int32');
      expect(ops.embedding(ids, w, { backend: 'native' }).data).toEqual(ops.embedding(ids, w, { backend: 'js' }).data);
      const x = randn([2, 5, 12], { seed: 4 });
      expect(ops.splitHeads(x, 3, { backend: 'native' }).data).toEqual(ops.splitHeads(x, 3, { backend: 'js' }).data);
    });

    it('attention matches the TS reference with masks, causality and weights', () => {
      a.setIsa(isa);
      for (const [bq, h, l, s, d] of [[2, 3, 5, 7, 8], [1, 2, 33, 33, 16], [1, 1, 1, 70, 64], [2, 2, 130, 129, 32]] as const) {
        const q = randn([bq, h, l, d], { seed: l });
        const k = randn([bq, h, s, d], { seed: s + 100 });
        const v = randn([bq, h, s, d], { seed: s + 200 });
        const maskData = new Uint8Array(l * s).map((_, i) => (i % 5 === 0 ? 0 : 1));
        for (let i = 0; i < l; i++) maskData[i * s] = 1; // every row keeps key 0
        const mask = tensor(maskData, [l, s], 'bool');
        const fmask = randn([bq, 1, l, s], { seed: 9 });
        for (const opts of [{}, { isCausal: true }, { attnMask: mask }, { attnMask: fmask }, { attnMask: mask, isCausal: true }]) {
          const got = scaledDotProductAttention(q, k, v, { ...opts, backend: 'native' }).data;
          const want = scaledDotProductAttention(q, k, v, { ...opts, backend: 'js' }).data;
          expect(relErr(got, want), `${isa} ${[bq, h, l, s, d]} ${Object.keys(opts)}`).toBeLessThan(1e-5);
        }
      }
    });
  });

  it('long strided K/V (copied to a contiguous layout first) give exactly the contiguous-layout results', () => {
    // q/k/v as heads of one packed [S, 3E] projection (position stride 3E) against the same values laid out
    // [H, S, D]: the kernel copies strided K/V of long sequences, which must change nothing but addresses.
    const [h, d, lq, lk] = [2, 16, 300, 1100];
    const e = h * d;
    const q = new Float32Array(lq * 3 * e).map((_, i) => Math.sin(i * 0.37));
    const kv = new Float32Array(lk * 3 * e).map((_, i) => Math.cos(i * 0.11));
    const contig = (src: Float32Array, rows: number, off: number): Float32Array => {
      const out = new Float32Array(h * rows * d);
      for (let hh = 0; hh < h; hh++) for (let r = 0; r < rows; r++) for (let c = 0; c < d; c++) out[(hh * rows + r) * d + c] = src[r * 3 * e + off + hh * d + c]!;
      return out;
    };
    const mask = new Uint8Array(lq * lk).map((_, i) => (i % 7 === 3 ? 1 : 0));
    for (const [causal, masks] of [[false, []], [true, [{ data: mask, strides: [0, 0, lk, 1] }]]] as const) {
      const a1 = new Float32Array(lq * e);
      const a2 = new Float32Array(lq * e);
      const common = { outStrides: [0, d, e] as const, batch: 1, heads: h, lq, lk, dk: d, dv: d, scale: 0.25, masks, causal, weights: null };
      a.attention({ q, k: kv.subarray(e), v: kv.subarray(2 * e), out: a1, qStrides: [0, d, 3 * e], kStrides: [0, d, 3 * e],
        vStrides: [0, d, 3 * e], ...common });
      a.attention({ q: contig(q, lq, 0), k: contig(kv, lk, e), v: contig(kv, lk, 2 * e), out: a2, qStrides: [0, lq * d, d],
        kStrides: [0, lk * d, d], vStrides: [0, lk * d, d], ...common });
      expect(Array.from(a1)).toEqual(Array.from(a2));
    }
  });

  it('k = 0 still writes every output element (outputs are not zero-filled)', () => {
    // Large enough for an uninitialised output buffer.
    const y = ops.matmul(randn([200, 0]), randn([0, 100]), { backend: 'native' });
    expect(y.data.every((v) => v === 0)).toBe(true);
    const bias = randn([100], { seed: 2 });
    const z = ops.linear(randn([300, 0]), randn([100, 0]), bias, { backend: 'native' });
    for (let r = 0; r < 300; r++) expect(z.data.subarray(r * 100, (r + 1) * 100)).toEqual(bias.data);
  });

  it('results are bit-identical for 1 and n threads', () => {
    const n = Math.max(2, startThreads);
    const x = randn([300, 256], { seed: 5 });
    const w = randn([384, 256], { seed: 6 });
    const q = randn([2, 4, 200, 32], { seed: 7 });
    const dy = randn([300, 384], { seed: 8 });
    const run = (): Float32Array[] => [
      ops.linear(x, w, null, { backend: 'native' }).data,
      ops.softmax(x, -1, { backend: 'native' }).data,
      ops.layerNorm(x, [256], null, null, 1e-5, { backend: 'native' }).data,
      ops.addLayerNorm(x, ops.gelu(x, { backend: 'native' }), [256], null, null, 1e-5, { backend: 'native' }).data,
      ops.gelu(x, { backend: 'native' }).data,
      scaledDotProductAttention(q, q, q, { isCausal: true, backend: 'native' }).data,
      // A weight gradient's form: op(A) = xᵀ (packed in parallel chunks on n threads) with the row sums beside it.
      ...((): Float32Array[] => {
        const c = new Float32Array(256 * 384);
        const sums = new Float32Array(256);
        a.gemm({ a: x.data, b: dy.data, c, m: 256, n: 384, k: 300, transA: true, rowSumsA: sums });
        return [c, sums];
      })(),
    ];
    a.setNumThreads(1);
    const one = run();
    a.setNumThreads(n);
    const many = run();
    one.forEach((r, i) => expect(Array.from(many[i]!)).toEqual(Array.from(r)));
  });

  describe('binding checks', () => {
    const f = (n: number): Float32Array => new Float32Array(n);
    it('rejects wrong types, short buffers, bad sizes and overlap', () => {
      const g = { a: f(6), b: f(6), c: f(4), m: 2, n: 2, k: 3 };
      expect(() => a.gemm(g)).not.toThrow();
      expect(() => a.gemm({ ...g, a: new Float64Array(6) as never })).toThrowError(/argument 'a' must be a Float32Array, got Float64Array/);
      expect(() => a.gemm({ ...g, a: f(5) })).toThrowError(/argument 'a' has 5 elements, expected at least 6/);
      expect(() => a.gemm({ ...g, m: -1 })).toThrowError(RangeError);
      expect(() => a.gemm({ ...g, bias: f(1) })).toThrowError(/'bias'/);
      expect(() => a.gemm({ ...g, act: 7 as never })).toThrowError(/'act'/);
      const buf = f(20);
      expect(() => a.gemm({ ...g, a: buf.subarray(0, 6), c: buf.subarray(4, 8) })).toThrowError(/output 'c' overlaps input 'a'/);
      expect(() => a.gemm({ ...g, batch: 2, strideA: 6, strideB: 6, strideC: 2 })).toThrowError(/strideC/);
      expect(() => (a.gemm as (...x: unknown[]) => void)(f(6))).toThrowError(TypeError);
      expect(() => a.softmax({ x: f(5), y: f(6), rows: 2, cols: 3 })).toThrowError(/'x' has 5 elements/);
      const aln = { x: f(6), residual: f(6), weight: null, bias: null, y: f(6), sum: null, rows: 2, cols: 3, eps: 1e-5 };
      expect(() => a.addLayerNorm(aln)).not.toThrow();
      expect(() => a.addLayerNorm({ ...aln, residual: f(5) })).toThrowError(/'residual' has 5 elements/);
      expect(() => a.addLayerNorm({ ...aln, weight: f(2) })).toThrowError(/'weight' has 2 elements/);
      expect(() => a.addLayerNorm({ ...aln, bias: f(2) })).toThrowError(/'bias' has 2 elements/);
      expect(() => a.addLayerNorm({ ...aln, sum: f(5) })).toThrowError(/'sum' has 5 elements/);
      expect(() => a.addLayerNorm({ ...aln, eps: -1 })).toThrowError(/'eps'/);
      const ln = f(30);
      expect(() => a.addLayerNorm({ ...aln, x: ln.subarray(0, 6), y: ln.subarray(0, 6), sum: ln.subarray(0, 6) })).toThrowError(/'sum' overlaps/);
      expect(() => a.addLayerNorm({ ...aln, x: ln.subarray(0, 6), y: ln.subarray(2, 8) })).toThrowError(/'y' overlaps input 'x'/);
      expect(() => a.addLayerNorm({ ...aln, x: ln.subarray(0, 6), residual: ln.subarray(6, 12), y: ln.subarray(6, 12), sum: ln.subarray(0, 6) }))
        .not.toThrow();
      const rms = { x: f(6), weight: null, y: f(6), rows: 2, cols: 3, eps: 1e-6 };
      expect(() => a.rmsNorm(rms)).not.toThrow();
      expect(() => a.rmsNorm({ ...rms, weight: f(2) })).toThrowError(/'weight' has 2 elements/);
      expect(() => a.rmsNorm({ ...rms, xRowStride: 2 })).toThrowError("attnode.rmsNorm: argument 'xRowStride' is 2, expected at least cols = 3");
      expect(() => a.rmsNorm({ ...rms, eps: NaN })).toThrowError("attnode.rmsNorm: argument 'eps' must be a number >= 0, got NaN");
      const arms = { x: f(6), residual: f(6), weight: null, y: f(6), sum: null, rows: 2, cols: 3, eps: 1e-6 };
      expect(() => a.addRmsNorm(arms)).not.toThrow();
      expect(() => a.addRmsNorm({ ...arms, residual: f(5) })).toThrowError(/'residual' has 5 elements/);
      expect(() => a.addRmsNorm({ ...arms, y: ln.subarray(0, 6), sum: ln.subarray(0, 6) })).toThrowError(/'sum' overlaps/);
      expect(() => a.addRmsNorm({ ...arms, sum: undefined } as never)).toThrowError(
        "attnode.addRmsNorm: argument 'sum' must be a Float32Array or null, got undefined");
      const emb = { weight: f(6), num: 3, dim: 2 };
      expect(() => a.embedding({ ...emb, ids: new Int32Array([0, 3]), out: f(4) })).toThrowError(/index 3 at position 1 is out of range/);
      expect(() => a.embedding({ ...emb, ids: new Int32Array([-1]), out: f(2) })).toThrowError(RangeError);
      // Strided rows: the strides are checked against cols and the buffers' lengths, and out may not overlap weight.
      expect(() => a.embedding({ ...emb, dim: 1, weightRowStride: 2, ids: new Int32Array([2, 0]), out: f(4), outRowStride: 3 })).not.toThrow();
      expect(() => a.embedding({ ...emb, weightRowStride: 1, ids: new Int32Array([0]), out: f(2) })).toThrowError(
        "attnode.embedding: argument 'weightRowStride' is 1, expected at least cols = 2");
      expect(() => a.embedding({ ...emb, weightRowStride: 3, ids: new Int32Array([0]), out: f(2) })).toThrowError(/'weight' has 6 elements/);
      expect(() => a.embedding({ ...emb, ids: new Int32Array([0, 1]), out: f(4), outRowStride: 3 })).toThrowError(/'out' has 4 elements/);
      const shared = f(12);
      expect(() => a.embedding({ weight: shared.subarray(0, 6), num: 3, dim: 2, ids: new Int32Array([0]), out: shared.subarray(4, 6) }))
        .toThrowError(/'out' overlaps/);
      expect(() => a.binary({ op: 0, a: f(4), aStrides: [1, 1], b: f(4), bStrides: [1], y: f(4), shape: [2, 2] })).toThrowError(/must have shape's 2 dims/);
      expect(() => a.binary({ op: 0, a: f(3), aStrides: [2, 1], b: f(4), bStrides: [2, 1], y: f(4), shape: [2, 2] })).toThrowError(/'a' has 3 elements/);
      const q = f(8);
      const s = [8, 8, 4] as const;
      const att = { q, k: q, v: q, out: f(8), qStrides: s, kStrides: s, vStrides: s, outStrides: s, batch: 1, heads: 1, lq: 2, lk: 2,
        dk: 4, dv: 4, scale: 1, masks: [], causal: false, weights: null };
      expect(() => a.attention(att)).not.toThrow();
      expect(() => a.attention({ ...att, out: f(7) })).toThrowError(/'out' has 7/);
      expect(() => a.attention({ ...att, outStrides: [8, 8, 2] })).toThrowError(/overlap/);
      expect(() => a.attention({ ...att, masks: [{ data: new Uint8Array(3), strides: [0, 0, 2, 1] }] })).toThrowError(/masks\[0\]\.data' has 3 elements/);
    });
  });
});
