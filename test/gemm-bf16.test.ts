/**
 * bf16 weights: `packWeight(b, k, n, transB, 'bfloat16')` and the GEMM / GEMV that read it (AVX512-BF16).
 *
 * The bf16 path rounds op(A) and op(B) to bf16 (round to nearest even) and accumulates in fp32, so it is checked
 * against a float64 GEMM of the bf16-rounded inputs (tight: only fp32 accumulation differs) and against the true
 * product of the unrounded inputs (loose: the bf16 rounding itself). The epilogue is the fp32 kernels' code, so
 * with inputs that bf16 holds exactly the two paths agree bit for bit. Also: awkward shapes, both transposes,
 * bit-identical results for 1 and 2 threads, batches, argument checks, and the fp32 fallback when the kernel path
 * is lowered below avx512 after packing.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { addon, type PackedWeight } from '../lib/backend/native';
import { randn } from '../lib/tensor';
import { naiveGemm, refGelu, refGeluTanh } from './helpers/reference';

// Read at module level: describe bodies run at collection even when skipped.
const startInfo = addon?.info();
const detected = startInfo?.detectedIsa ?? 'portable';
const cpuHasBf16 = startInfo?.cpu.features.includes('avx512bf16') ?? false;
const skipReason = !addon
  ? 'the native addon is not loaded'
  : !cpuHasBf16
    ? `this CPU (${startInfo!.cpu.brand}) lacks avx512bf16`
    : !startInfo!.bf16
      ? `the kernel path is '${startInfo!.isa}' (ATTNODE_ISA), not avx512`
      : '';
const startThreads = addon ? addon.getNumThreads() : 1;

/** fp32 -> bf16 -> fp32, round to nearest even, as vcvtneps2bf16 (denormals flush to zero; no NaN in the data). */
function bf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  const bits = u[0]!;
  if ((bits & 0x7f800000) === 0) {
    u[0] = bits & 0x80000000;
  } else {
    u[0] = (((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) << 16) >>> 0;
  }
  return f[0]!;
}

interface Case {
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  alpha: number;
  beta: number;
  bias: Float32Array | null;
  act: number;
}

/** float64 act(alpha·op(A)·op(B) + beta·C0 + bias), and the scale of each element's terms (for error bounds). */
function reference(c: Case, A: ArrayLike<number>, B: ArrayLike<number>, C0: Float32Array): { want: Float64Array; mag: Float64Array } {
  const { m, n, k, transA, transB, alpha, beta, bias, act } = c;
  const { c: prod, mag: g } = naiveGemm(A, B, m, n, k, transA, transB);
  const want = new Float64Array(m * n);
  const mag = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const e = i * n + j;
      let v = alpha * prod[e]! + (beta !== 0 ? beta * C0[e]! : 0) + (bias ? bias[j]! : 0);
      if (act === 1) v = Math.max(v, 0);
      else if (act === 2) v = refGelu(v);
      else if (act === 3) v = refGeluTanh(v);
      want[e] = v;
      mag[e] = Math.abs(alpha) * g[e]! + Math.abs(beta * C0[e]!) + (bias ? Math.abs(bias[j]!) : 0);
    }
  }
  return { want, mag };
}

/** max |x − y| / max(1, max |y|). */
function relErr(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let worst = 0;
  let scale = 1;
  for (let i = 0; i < y.length; i++) {
    scale = Math.max(scale, Math.abs(y[i]!));
    worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
  }
  return worst / scale;
}

describe.skipIf(skipReason !== '')(`bf16 weights GEMM${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  const a = addon!;
  afterAll(() => {
    a.setIsa(detected);
    a.setNumThreads(startThreads);
  });

  const run = (c: Case, A: Float32Array, B: Float32Array, C0: Float32Array, packed: PackedWeight | null): Float32Array => {
    const C = Float32Array.from(C0);
    a.gemm({ a: A, b: B, c: C, m: c.m, n: c.n, k: c.k, transA: c.transA, transB: c.transB, alpha: c.alpha, beta: c.beta,
      bias: c.bias, act: c.act, packedB: packed });
    return C;
  };

  // m, n, k: 1..3, odd k, n off multiples of 16/48, m off multiples of MR = 8, several K blocks (> 768 k),
  // several column blocks (> ~336 columns), M = 1 (GEMV) with the same.
  const shapes: [number, number, number][] = [
    [1, 1, 1], [2, 3, 5], [3, 2, 1], [1, 3, 2], [2, 1, 3], [3, 3, 3], [7, 13, 29], [9, 49, 33], [8, 47, 31],
    [17, 97, 63], [33, 48, 64], [16, 16, 16], [10, 50, 1601], [20, 700, 40], [1, 97, 1601], [1, 770, 33],
    [1, 48, 7], [2, 2, 2000],
  ];

  it('matches a float64 GEMM of the bf16-rounded inputs to fp32 accuracy, and the fp32 product to ~1e-2', () => {
    a.setIsa('avx512');
    let seed = 100;
    let worstRounded = 0;
    let worstTrue = 0;
    for (const [m, n, k] of shapes) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          const act = (m + n + k + (transA ? 1 : 0) + (transB ? 2 : 0)) % 4;
          const c: Case = {
            m, n, k, transA, transB, act,
            alpha: transB ? 0.5 : 1,
            beta: transA ? 0.25 : 0,
            bias: act % 2 === 1 || transA ? randn([n], { seed: seed++ }).data : null,
          };
          const A = randn([m * k], { seed: seed++ }).data;
          const B = randn([k * n], { seed: seed++ }).data;
          const C0 = randn([m * n], { seed: seed++ }).data;
          const packed = a.packWeight(B, k, n, transB, 'bfloat16');
          expect(a.packedWeightInfo(packed)).toEqual({ precision: 'bfloat16', bytes: Math.ceil(k / 2) * Math.ceil(n / 48) * 48 * 4 });
          const got = run(c, A, B, C0, packed);
          const label = `${m}x${n}x${k} tA=${transA} tB=${transB} act=${act} beta=${c.beta} bias=${c.bias !== null}`;

          const rounded = reference(c, A.map(bf16), B.map(bf16), C0);
          // Only the fp32 accumulation differs from the float64 reference: bound by the terms' magnitude.
          const tol = 1e-5;
          for (let i = 0; i < got.length; i++) {
            const diff = Math.abs(got[i]! - rounded.want[i]!);
            if (!(diff <= tol * (rounded.mag[i]! + Math.abs(rounded.want[i]!)) + 1e-30)) {
              expect.fail(`${label}: element ${i} got ${got[i]}, want ${rounded.want[i]} (|diff| ${diff})`);
            }
          }
          worstRounded = Math.max(worstRounded, relErr(got, rounded.want));
          const exact = reference(c, A, B, C0);
          const e = relErr(got, exact.want);
          expect(e, label).toBeLessThan(1e-2);
          worstTrue = Math.max(worstTrue, e);
        }
      }
    }
    expect(worstRounded).toBeLessThan(1e-5);
    console.info(
      `bf16 GEMM: max relative error ${worstRounded.toExponential(2)} vs bf16-rounded inputs, ` +
        `${worstTrue.toExponential(2)} vs the fp32 inputs (${shapes.length * 4} cases)`,
    );
  });

  it('applies the same epilogue as the fp32 path: bit-identical when bf16 holds the inputs exactly', () => {
    a.setIsa('avx512');
    // Small integers: every product and partial sum is exact in fp32 for both paths, so only the epilogue
    // (alpha, beta, bias, activation) could tell them apart.
    const ints = (len: number, seed: number): Float32Array => randn([len], { seed }).data.map((v) => Math.round(v * 2));
    let seed = 7;
    for (const [m, n, k] of [[1, 50, 9], [1, 200, 1601], [5, 50, 9], [19, 100, 37], [64, 96, 1601]] as const) {
      for (const act of [0, 1, 2, 3]) {
        for (const [alpha, beta] of [[1, 0], [1, 1], [0.5, 0.25]] as const) {
          const c: Case = { m, n, k, transA: false, transB: true, act, alpha, beta, bias: act >= 2 || beta === 1 ? randn([n], { seed: seed++ }).data : null };
          const A = ints(m * k, seed++);
          const B = ints(k * n, seed++);
          // C0 integer too: with several K blocks C holds partial sums in between (the two paths block K
          // differently), which stay exact only if beta·C0 is.
          const C0 = ints(m * n, seed++);
          const want = run(c, A, B, C0, a.packWeight(B, k, n, true));
          const got = run(c, A, B, C0, a.packWeight(B, k, n, true, 'bfloat16'));
          expect(Array.from(got), `${m}x${n}x${k} act=${act} alpha=${alpha} beta=${beta}`).toEqual(Array.from(want));
        }
      }
    }
  });

  it('gives bit-identical results for 1 and 2 threads (GEMM and GEMV)', () => {
    a.setIsa('avx512');
    const cases: Case[] = [
      { m: 300, n: 384, k: 256, transA: false, transB: true, alpha: 1, beta: 0, bias: randn([384], { seed: 1 }).data, act: 2 },
      { m: 77, n: 1000, k: 1601, transA: true, transB: false, alpha: 0.5, beta: 0.5, bias: null, act: 1 },
      { m: 1, n: 2305, k: 2048, transA: false, transB: true, alpha: 1, beta: 0, bias: randn([2305], { seed: 2 }).data, act: 3 },
      { m: 1, n: 3072, k: 1537, transA: false, transB: false, alpha: 1, beta: 1, bias: null, act: 0 },
    ];
    for (const c of cases) {
      const A = randn([c.m * c.k], { seed: 3 }).data;
      const B = randn([c.k * c.n], { seed: 4 }).data;
      const C0 = randn([c.m * c.n], { seed: 5 }).data;
      const packed = a.packWeight(B, c.k, c.n, c.transB, 'bfloat16');
      a.setNumThreads(1);
      const one = run(c, A, B, C0, packed);
      a.setNumThreads(2);
      const two = run(c, A, B, C0, packed);
      // The packing itself must not depend on the thread count either.
      a.setNumThreads(1);
      const repacked = run(c, A, B, C0, a.packWeight(B, c.k, c.n, c.transB, 'bfloat16'));
      a.setNumThreads(startThreads);
      expect(Array.from(two), `${c.m}x${c.n}x${c.k}`).toEqual(Array.from(one));
      expect(Array.from(repacked), `${c.m}x${c.n}x${c.k} repacked`).toEqual(Array.from(one));
    }
  });

  it('an M = 1 product (the decode GEMV) equals its row of the bf16 GEMM bit for bit (every epilogue, K blocks, edge panels, 1 and 2 threads)', () => {
    a.setIsa('avx512');
    // [n, k]: one to four K blocks (k up to 1537), edge panels (n off 48), the SmolLM decode shapes.
    const shapes: [number, number][] = [[1, 1], [47, 3], [49, 577], [200, 576], [960, 576], [576, 1536], [97, 1537]];
    const epilogues = [
      { alpha: 1, beta: 0, bias: false, act: 0 }, { alpha: 1, beta: 0, bias: true, act: 2 },
      { alpha: 0.5, beta: 1, bias: true, act: 0 }, { alpha: 1, beta: -0.25, bias: false, act: 1 },
    ];
    let seed = 10;
    for (const [n, k] of shapes) {
      const A = randn([3 * k], { seed: seed++ }).data;
      const B = randn([n * k], { seed: seed++ }).data;
      const C0 = randn([3 * n], { seed: seed++ }).data;
      const bias = randn([n], { seed: seed++ }).data;
      const packed = a.packWeight(B, k, n, true, 'bfloat16');
      for (const e of epilogues) {
        for (const threads of [1, 2]) {
          a.setNumThreads(threads);
          const c: Case = { m: 3, n, k, transA: false, transB: true, alpha: e.alpha, beta: e.beta, bias: e.bias ? bias : null, act: e.act };
          const gemm = run(c, A, B, C0, packed);
          for (let r = 0; r < 3; r++) {
            const row = run({ ...c, m: 1 }, A.subarray(r * k, (r + 1) * k), B, C0.subarray(r * n, (r + 1) * n), packed);
            expect(Array.from(row), `row ${r} of ${n}x${k} ${JSON.stringify(e)} t${threads}`).toEqual(Array.from(gemm.subarray(r * n, (r + 1) * n)));
          }
        }
      }
    }
    a.setNumThreads(startThreads);
  });

  it('batched calls with one shared bf16 weight match the single calls', () => {
    a.setIsa('avx512');
    for (const m of [1, 9]) {
      const [batch, n, k] = [4, 50, 33];
      const A = randn([batch * m * k], { seed: m }).data;
      const B = randn([n * k], { seed: 2 }).data;
      const packed = a.packWeight(B, k, n, true, 'bfloat16');
      const C = new Float32Array(batch * m * n);
      a.gemm({ a: A, b: B, c: C, m, n, k, transB: true, batch, strideA: m * k, strideB: 0, strideC: m * n, packedB: packed });
      for (let i = 0; i < batch; i++) {
        const Ci = new Float32Array(m * n);
        a.gemm({ a: A.subarray(i * m * k, (i + 1) * m * k), b: B, c: Ci, m, n, k, transB: true, packedB: packed });
        expect(Array.from(C.subarray(i * m * n, (i + 1) * m * n)), `m=${m} item ${i}`).toEqual(Array.from(Ci));
      }
    }
  });

  it('falls back to the fp32 path on b when the kernel path is lowered after packing, and refuses to pack then', () => {
    a.setIsa('avx512');
    const [n, k] = [50, 33];
    const B = randn([n * k], { seed: 11 }).data;
    const packed = a.packWeight(B, k, n, true, 'bfloat16');
    for (const m of [1, 12]) {
      const c: Case = { m, n, k, transA: false, transB: true, alpha: 1, beta: 0, bias: null, act: 0 };
      const A = randn([m * k], { seed: m }).data;
      const C0 = new Float32Array(m * n);
      const bf16Result = run(c, A, B, C0, packed);
      for (const isa of ['avx2', 'portable'] as const) {
        a.setIsa(isa);
        expect(a.info().bf16).toBe(false);
        expect(Array.from(run(c, A, B, C0, packed)), `m=${m} on ${isa}`).toEqual(Array.from(run(c, A, B, C0, null)));
        expect(() => a.packWeight(B, k, n, true, 'bfloat16')).toThrowError(
          new RegExp(`packWeight: precision 'bfloat16' needs the 'avx512' kernel path, but the active path is '${isa}'`),
        );
      }
      a.setIsa('avx512');
      expect(a.info().bf16).toBe(true);
      expect(Array.from(run(c, A, B, C0, packed)), `m=${m} back on avx512`).toEqual(Array.from(bf16Result));
    }
  });

  it('validates the precision argument', () => {
    a.setIsa('avx512');
    const B = new Float32Array(6);
    expect(a.packedWeightInfo(a.packWeight(B, 2, 3, true))).toEqual({ precision: 'float32', bytes: expect.any(Number) });
    expect(a.packedWeightInfo(a.packWeight(B, 2, 3, true, 'float32')).precision).toBe('float32');
    expect(a.packedWeightInfo(a.packWeight(B, 2, 3, true, null as never)).precision).toBe('float32');
    expect(() => a.packWeight(B, 2, 3, true, 'float16' as never)).toThrowError(
      /packWeight: argument 'precision' must be 'float32' \| 'bfloat16' \| 'int8', got 'float16'/,
    );
    expect(() => a.packWeight(B, 2, 3, true, 16 as never)).toThrowError(TypeError);
    expect(() => (a.packWeight as (...x: unknown[]) => unknown)(B, 2, 3, true, 'bfloat16', 1)).toThrowError(TypeError);
    expect(() => a.packWeight(new Float32Array(5), 2, 3, true, 'bfloat16')).toThrowError(/'b' has 5 elements/);
    expect(() => a.packedWeightInfo(B as never)).toThrowError(TypeError);
    // A bf16 weight is still tied to its shape and transpose.
    const packed = a.packWeight(B, 2, 3, true, 'bfloat16');
    const f = (len: number): Float32Array => new Float32Array(len);
    expect(() => a.gemm({ a: f(6), b: B, c: f(9), m: 3, n: 3, k: 2, packedB: packed })).toThrowError(
      /'packedB' was packed for a different shape or transpose/,
    );
    expect(() => a.gemm({ a: f(6), b: B, c: f(9), m: 3, n: 3, k: 2, transB: true, packedB: B as never })).toThrowError(
      "attnode.gemm: argument 'packedB' must be null or a packed weight from packWeight()",
    );
  });
});

// The other side of the switch: a CPU without AVX512-BF16 refuses bf16 packing with a clear message.
const noBf16Skip = addon === null ? 'no native addon' : cpuHasBf16 ? 'this CPU has avx512bf16; this suite covers CPUs without it' : '';
describe.skipIf(noBf16Skip !== '')(`bf16 weights on a CPU without avx512bf16${noBf16Skip ? ` (skipped: ${noBf16Skip})` : ''}`, () => {
  it('packWeight(..., "bfloat16") throws a RangeError naming avx512bf16, and info().bf16 is false', () => {
    expect(addon!.info().bf16).toBe(false);
    expect(() => addon!.packWeight(new Float32Array(6), 2, 3, true, 'bfloat16')).toThrowError(
      /packWeight: precision 'bfloat16' needs a CPU with AVX512-BF16 \(avx512bf16\), which this CPU lacks/,
    );
  });
});
