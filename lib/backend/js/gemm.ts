/**
 * fp32 GEMM in plain TypeScript, BLIS-style:
 *
 *   for each NC-wide column panel of op(B):
 *     for each KC-deep slice of k:   pack op(B)[slice, panel] into NR-wide strips
 *       for each MC-tall row block:  pack op(A)[block, slice] into MR-tall strips
 *         for each MR×NR tile:       4×4 register micro-kernel over the slice
 *
 * Why this shape rather than a plain i-k-j loop over rows of B: V8 does not
 * vectorise, so the limit is loads per multiply-add. An i-k-j inner loop does
 * a load of B, a load and a store of C per FMA; the 4×4 tile keeps 16
 * accumulators in registers and does 8 loads per 16 FMAs, which measured
 * ~2× faster (≈3.5–4.5 GFLOP/s vs ≈1.7–2.8 on 512×768×768). Packing also
 * absorbs transA/transB: the kernel always sees unit-stride strips, so the
 * transposed cases cost one strided read per element while packing, never a
 * strided inner loop. Pack buffers are module-level scratch, grown on demand
 * and reused across calls.
 *
 * Accumulation is in double inside a KC slice and in float32 C between
 * slices. alpha, beta, bias and the activation are applied in the store of
 * the first / last slice, so C is touched once per slice.
 */
import { Activation } from '../backend';
import type { GemmArgs, GemmGroupArgs } from '../backend';
import { applyActivation as applyAct } from './math';
import { qgemmOne, quantizeWeightInt8 } from './qgemm';
import type { Int8Weight } from './qgemm';

const MR = 4;
const NR = 4;
const KC = 256;
const MC = 64;
const NC = 1024;

// Fixed-size scratch: every block is at most MC×KC / KC×NC (NC and MC are multiples of NR and MR).
const packA = new Float32Array(MC * KC);
const packB = new Float32Array(KC * NC);
/** The 4×4 accumulator tile handed from the micro-kernel to the store. */
const tile = new Float64Array(MR * NR);


/**
 * Packs op(A)[i0 : i0+mc, p0 : p0+kc] into MR-tall strips: strip s holds rows
 * s·MR.. as kc consecutive groups of MR values; missing rows are zero.
 */
function packABlock(
  a: Float32Array, offA: number, lda: number, transA: boolean,
  i0: number, mc: number, p0: number, kc: number, dst: Float32Array,
): void {
  for (let is = 0; is < mc; is += MR) {
    const base = is * kc;
    const rows = Math.min(MR, mc - is);
    if (!transA) {
      for (let r = 0; r < MR; r++) {
        if (r < rows) {
          let src = offA + (i0 + is + r) * lda + p0;
          for (let p = 0, d = base + r; p < kc; p++, d += MR) dst[d] = a[src++]!;
        } else {
          for (let p = 0, d = base + r; p < kc; p++, d += MR) dst[d] = 0;
        }
      }
    } else if (rows === MR) {
      // A stored [k, m]: the MR values of one k are adjacent.
      for (let p = 0, d = base; p < kc; p++, d += MR) {
        const src = offA + (p0 + p) * lda + i0 + is;
        dst[d] = a[src]!;
        dst[d + 1] = a[src + 1]!;
        dst[d + 2] = a[src + 2]!;
        dst[d + 3] = a[src + 3]!;
      }
    } else {
      for (let p = 0, d = base; p < kc; p++, d += MR) {
        const src = offA + (p0 + p) * lda + i0 + is;
        for (let r = 0; r < MR; r++) dst[d + r] = r < rows ? a[src + r]! : 0;
      }
    }
  }
}

/**
 * Packs op(B)[p0 : p0+kc, j0 : j0+nc] into NR-wide strips: strip s holds
 * columns s·NR.. as kc consecutive groups of NR values; missing columns are zero.
 */
function packBPanel(
  b: Float32Array, offB: number, ldb: number, transB: boolean,
  p0: number, kc: number, j0: number, nc: number, dst: Float32Array,
): void {
  for (let js = 0; js < nc; js += NR) {
    const base = js * kc;
    const cols = Math.min(NR, nc - js);
    if (transB) {
      // B stored [n, k] (Linear weight): column j of op(B) is a contiguous row of B.
      for (let q = 0; q < NR; q++) {
        if (q < cols) {
          let src = offB + (j0 + js + q) * ldb + p0;
          for (let p = 0, d = base + q; p < kc; p++, d += NR) dst[d] = b[src++]!;
        } else {
          for (let p = 0, d = base + q; p < kc; p++, d += NR) dst[d] = 0;
        }
      }
    } else if (cols === NR) {
      for (let p = 0, d = base; p < kc; p++, d += NR) {
        const src = offB + (p0 + p) * ldb + j0 + js;
        dst[d] = b[src]!;
        dst[d + 1] = b[src + 1]!;
        dst[d + 2] = b[src + 2]!;
        dst[d + 3] = b[src + 3]!;
      }
    } else {
      for (let p = 0, d = base; p < kc; p++, d += NR) {
        const src = offB + (p0 + p) * ldb + j0 + js;
        for (let q = 0; q < NR; q++) dst[d + q] = q < cols ? b[src + q]! : 0;
      }
    }
  }
}

/** tile = Σ_p ap[pa + p·MR + r] · bp[pb + p·NR + q] over kc steps (16 accumulators in registers). */
function microKernel(ap: Float32Array, pa: number, bp: Float32Array, pb: number, kc: number, out: Float64Array): void {
  let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
  let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
  let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
  let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
  for (let p = 0; p < kc; p++) {
    const a0 = ap[pa]!, a1 = ap[pa + 1]!, a2 = ap[pa + 2]!, a3 = ap[pa + 3]!;
    const b0 = bp[pb]!, b1 = bp[pb + 1]!, b2 = bp[pb + 2]!, b3 = bp[pb + 3]!;
    c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
    c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
    c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
    c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
    pa += MR;
    pb += NR;
  }
  out[0] = c00; out[1] = c01; out[2] = c02; out[3] = c03;
  out[4] = c10; out[5] = c11; out[6] = c12; out[7] = c13;
  out[8] = c20; out[9] = c21; out[10] = c22; out[11] = c23;
  out[12] = c30; out[13] = c31; out[14] = c32; out[15] = c33;
}

/**
 * Writes an mr×nr corner of the tile into C at offC (row stride ldc).
 * first: C = alpha·acc + beta·C (C not read when beta is 0); else C += alpha·acc.
 * last: then add bias[j0 + q] and apply the activation.
 */
function storeTile(
  acc: Float64Array, c: Float32Array, offC: number, ldc: number, mr: number, nr: number,
  alpha: number, beta: number, first: boolean, last: boolean,
  bias: Float32Array | null, j0: number, act: Activation,
): void {
  for (let r = 0; r < mr; r++) {
    const row = offC + r * ldc;
    for (let q = 0; q < nr; q++) {
      let v = alpha * acc[r * NR + q]!;
      if (!first) v += c[row + q]!;
      else if (beta !== 0) v += beta * c[row + q]!;
      if (last) {
        if (bias !== null) v += bias[j0 + q]!;
        if (act !== Activation.None) v = applyAct(v, act);
      }
      c[row + q] = v;
    }
  }
}

/** k == 0: op(A)·op(B) is all zeros, so C = act(beta·C + bias). */
function gemmEmptyK(c: Float32Array, offC: number, ldc: number, m: number, n: number, beta: number,
  bias: Float32Array | null, act: Activation): void {
  for (let i = 0; i < m; i++) {
    const row = offC + i * ldc;
    for (let j = 0; j < n; j++) {
      let v = beta === 0 ? 0 : beta * c[row + j]!;
      if (bias !== null) v += bias[j]!;
      c[row + j] = act === Activation.None ? v : applyAct(v, act);
    }
  }
}

/** A GEMM's arguments with every default filled in (see GemmArgs). */
interface FullGemm {
  a: Float32Array; b: Float32Array; c: Float32Array;
  m: number; n: number; k: number;
  transA: boolean; transB: boolean;
  lda: number; ldb: number; ldc: number;
  alpha: number; beta: number;
  bias: Float32Array | null; act: Activation;
  batch: number; strideA: number; strideB: number; strideC: number;
}

function gemmOne(g: FullGemm, offA: number, offB: number, offC: number): void {
  const { a, b, c, m, n, k, transA, transB, lda, ldb, ldc, alpha, beta, bias, act } = g;
  if (k === 0) {
    gemmEmptyK(c, offC, ldc, m, n, beta, bias, act);
    return;
  }
  for (let jc = 0; jc < n; jc += NC) {
    const nc = Math.min(NC, n - jc);
    for (let pc = 0; pc < k; pc += KC) {
      const kc = Math.min(KC, k - pc);
      const first = pc === 0;
      const last = pc + kc === k;
      packBPanel(b, offB, ldb, transB, pc, kc, jc, nc, packB);
      for (let ic = 0; ic < m; ic += MC) {
        const mc = Math.min(MC, m - ic);
        packABlock(a, offA, lda, transA, ic, mc, pc, kc, packA);
        for (let jr = 0; jr < nc; jr += NR) {
          const nr = Math.min(NR, nc - jr);
          for (let ir = 0; ir < mc; ir += MR) {
            microKernel(packA, ir * kc, packB, jr * kc, kc, tile);
            storeTile(tile, c, offC + (ic + ir) * ldc + jc + jr, ldc, Math.min(MR, mc - ir), nr,
              alpha, beta, first, last, bias, jc + jr, act);
          }
        }
      }
    }
  }
}

function checkExtent(name: string, arr: Float32Array, batch: number, stride: number, rows: number, ld: number,
  cols: number): void {
  // Reads past the end of a typed array yield undefined → NaN silently, so refuse up front.
  const count = rows === 0 || cols === 0 ? 0 : (rows - 1) * ld + cols;
  const need = count === 0 || batch === 0 ? 0 : (batch - 1) * stride + count;
  if (arr.length < need) {
    throw new RangeError(`gemm: argument '${name}' must have at least ${need} elements, got ${arr.length}`);
  }
}

function checkLd(name: string, ld: number, min: number): void {
  if (!Number.isInteger(ld) || ld < min) {
    throw new RangeError(`gemm: argument '${name}' must be an integer >= ${min}, got ${ld}`);
  }
}

/**
 * The JS backend's {@link Backend.gemmGroup}: the GEMMs one after another (they are independent), after the
 * checks the addon makes (1 to 8 argument objects, no output overlapping another entry's arrays).
 */
export function gemmGroup(args: GemmGroupArgs): void {
  checkGemmGroup(args);
  for (const g of args.gemms) gemm(g);
}

/** The most GEMMs one gemmGroup call takes. */
const MAX_GROUP = 8;

function checkGemmGroup(args: GemmGroupArgs): void {
  const list: unknown = args?.gemms;
  if (!Array.isArray(list)) throw new TypeError(`gemmGroup: argument 'gemms' must be an array of gemm arguments, got ${list === null ? 'null' : typeof list}`);
  if (list.length < 1 || list.length > MAX_GROUP) {
    throw new RangeError(`gemmGroup: argument 'gemms' must hold 1 to ${MAX_GROUP} gemm arguments, got ${list.length}`);
  }
  list.forEach((g: unknown, i) => {
    if (g === null || typeof g !== 'object' || Array.isArray(g)) {
      throw new TypeError(`gemmGroup: argument 'gemms[${i}]' must be an object of gemm arguments, got ${g === null ? 'null' : typeof g}`);
    }
  });
  const gemms = list as GemmArgs[];
  // Byte ranges: outputs as far as the call writes them, inputs as given (as the addon checks them).
  const range = (x: Float32Array, elements = x.length): [ArrayBufferLike, number, number] => [x.buffer, x.byteOffset, x.byteOffset + 4 * elements];
  const written = (g: GemmArgs): [string, [ArrayBufferLike, number, number]][] => {
    const batch = g.batch ?? 1;
    const ldc = g.ldc ?? g.n;
    const cSpan = g.m === 0 || g.n === 0 || batch === 0 ? 0 : (batch - 1) * (g.strideC ?? 0) + (g.m - 1) * ldc + g.n;
    const out: [string, [ArrayBufferLike, number, number]][] = [['c', range(g.c, Math.min(cSpan, g.c.length))]];
    if (g.rowSumsA) out.push(['rowSumsA', range(g.rowSumsA, Math.min(g.m, g.rowSumsA.length))]);
    return out;
  };
  const read = (g: GemmArgs): [string, [ArrayBufferLike, number, number]][] => {
    const out: [string, [ArrayBufferLike, number, number]][] = [['a', range(g.a)], ['b', range(g.b)], ...written(g)];
    if (g.bias) out.push(['bias', range(g.bias)]);
    return out;
  };
  gemms.forEach((g, i) => {
    for (const [outName, [ob, o0, o1]] of written(g)) {
      gemms.forEach((h, j) => {
        if (i === j) return;
        for (const [inName, [ib, i0, i1]] of read(h)) {
          if (ob === ib && o0 < i1 && i0 < o1 && o1 > o0 && i1 > i0) {
            throw new RangeError(`gemmGroup: gemms[${i}]: output '${outName}' overlaps input '${inName} of gemms[${j}]' (in-place is not supported here)`);
          }
        }
      });
    }
  });
}

/** The JS backend's {@link Backend.gemm}. See the module comment for the algorithm. */
export function gemm(args: GemmArgs): void {
  const int8 = args.bPrecision === 'int8' && args.cacheB === true;
  if (int8 && (args.batch ?? 1) > 1 && (args.strideB ?? 0) !== 0) {
    throw new RangeError(`gemm: bPrecision 'int8' needs one weight for every batch item (strideB 0), got strideB ${args.strideB}`);
  }
  if (args.bPrecision === 'bfloat16' && args.cacheB) {
    // Reference of the native bf16 path: both operands rounded to bfloat16, products accumulated in float32.
    args = { ...args, a: roundToBf16(args.a), b: bf16Weight(args.b), bPrecision: 'float32' };
  }
  const { m, n, k } = args;
  const transA = args.transA ?? false;
  const transB = args.transB ?? false;
  const batch = args.batch ?? 1;
  for (const [name, v] of [['m', m], ['n', n], ['k', k], ['batch', batch]] as const) {
    if (!Number.isInteger(v) || v < 0) {
      throw new RangeError(`gemm: argument '${name}' must be an integer >= 0, got ${v}`);
    }
  }
  const g: FullGemm = {
    a: args.a, b: args.b, c: args.c, m, n, k, transA, transB,
    lda: args.lda ?? (transA ? m : k), ldb: args.ldb ?? (transB ? k : n), ldc: args.ldc ?? n,
    alpha: args.alpha ?? 1, beta: args.beta ?? 0, bias: args.bias ?? null, act: args.act ?? Activation.None,
    batch, strideA: args.strideA ?? 0, strideB: args.strideB ?? 0, strideC: args.strideC ?? 0,
  };
  checkLd('lda', g.lda, transA ? m : k);
  checkLd('ldb', g.ldb, transB ? k : n);
  checkLd('ldc', g.ldc, n);
  const sums = args.rowSumsA ?? null;
  if (sums !== null) {
    if (batch > 1) throw new RangeError(`gemm: argument 'rowSumsA' needs batch 1, got batch ${batch}`);
    if (sums.length < m) throw new RangeError(`gemm: argument 'rowSumsA' must have at least ${m} elements, got ${sums.length}`);
    if (batch === 1) {
      checkExtent('a', g.a, 1, 0, transA ? k : m, g.lda, transA ? m : k);
      rowSums(g, sums);
    }
  }
  if (m === 0 || n === 0 || batch === 0) return;
  checkExtent('a', g.a, batch, g.strideA, transA ? k : m, g.lda, transA ? m : k);
  checkExtent('b', g.b, batch, g.strideB, transB ? n : k, g.ldb, transB ? k : n);
  checkExtent('c', g.c, batch, g.strideC, m, g.ldc, n);
  if (g.bias !== null && g.bias.length < n) {
    throw new RangeError(`gemm: argument 'bias' must have at least ${n} elements, got ${g.bias.length}`);
  }
  if (int8 && k > 0) {
    // Reference of the native int8 path (./qgemm.ts): the weight quantized once per version, A per row and call.
    const w = int8Weight(g.b, g.ldb, transB, k, n, args.bVersion ?? 0);
    for (let i = 0; i < batch; i++) qgemmOne(g, w, i * g.strideA, i * g.strideC);
    return;
  }
  for (let i = 0; i < batch; i++) gemmOne(g, i * g.strideA, i * g.strideB, i * g.strideC);
}

/** {@link GemmArgs.rowSumsA}: each row of op(A) summed in order of k. */
function rowSums(g: FullGemm, out: Float32Array): void {
  const { a, lda, transA, m, k, alpha, beta } = g;
  for (let i = 0; i < m; i++) {
    let s = 0;
    if (transA) {
      for (let kk = 0; kk < k; kk++) s = Math.fround(s + a[kk * lda + i]!);
    } else {
      for (let kk = 0; kk < k; kk++) s = Math.fround(s + a[i * lda + kk]!);
    }
    out[i] = beta === 0 ? alpha * s : alpha * s + beta * out[i]!;
  }
}

/**
 * Constant weights quantized to int8 once per version (`GemmArgs.bVersion`), kept while the weight's memory lives,
 * keyed by the memory and the layout read from it (as the native backend's packed copies are).
 */
const int8Weights = new WeakMap<ArrayBufferLike, Map<string, { version: number; w: Int8Weight }>>();

function int8Weight(b: Float32Array, ldb: number, transB: boolean, k: number, n: number, version: number): Int8Weight {
  let byRegion = int8Weights.get(b.buffer);
  if (!byRegion) int8Weights.set(b.buffer, (byRegion = new Map()));
  const key = `${b.byteOffset},${b.length},${ldb},${transB},${k},${n}`;
  const hit = byRegion.get(key);
  if (hit && hit.version === version) return hit.w;
  const w = quantizeWeightInt8(b, 0, ldb, transB, k, n);
  byRegion.set(key, { version, w });
  return w;
}

/**
 * Constant weights rounded to bfloat16 once, kept while the weight's memory
 * lives. Keyed by the memory (buffer, offset, length), not the array object:
 * a weight view (a row slice of a packed projection) is a new array on every
 * call but the same weight.
 */
const bf16Weights = new WeakMap<ArrayBufferLike, Map<string, Float32Array>>();

function bf16Weight(b: Float32Array): Float32Array {
  let byRegion = bf16Weights.get(b.buffer);
  if (!byRegion) bf16Weights.set(b.buffer, (byRegion = new Map()));
  const key = `${b.byteOffset},${b.length}`;
  let r = byRegion.get(key);
  if (!r) byRegion.set(key, (r = roundToBf16(b)));
  return r;
}

/**
 * A copy with every value rounded to the nearest bfloat16 (ties to even), as
 * float32, the way AVX512-BF16's conversion does it: denormals become zero
 * (sign kept), NaN stays NaN.
 */
export function roundToBf16(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  const bits = new Uint32Array(out.buffer);
  out.set(x);
  for (let i = 0; i < bits.length; i++) bits[i] = bf16Bits(bits[i]!);
  return out;
}

/** The float32 bit pattern `u` rounded to bfloat16 (as float32 bits): see {@link roundToBf16}. */
export function bf16Bits(u: number): number {
  const exp = u & 0x7f800000;
  if (exp === 0) return (u & 0x80000000) >>> 0;
  if (exp === 0x7f800000 && (u & 0x007fffff) !== 0) return ((u | 0x00400000) & 0xffff0000) >>> 0; // quiet NaN
  return ((u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000) >>> 0;
}
