/** matmul and linear: the GEMM-backed ops. */
import { Activation, ActivationGrad, type GemmArgs } from '../backend/backend';
import type { WeightPrecision } from '../backend/backend';
import { resolveBackend } from '../backend/registry';
import { argRangeErrorRaw, argTypeError, argTypeErrorRaw, checkNumber, checkShape, formatShape, shapeError } from '../errors';
import { currentContext } from '../context';
import { Tensor, type Shape } from '../tensor';
import type { OutOptions } from '../op-options';
import { checkFloat, checkOptions, checkOut, dense, output, sameShape, prod, broadcastShapes, broadcastStrides } from './checks';
import { planRows } from './rows';
import { allocateUninitialized } from '../dtype';
import type { F32 } from './checks';
import { needsGrad, recordOp } from '../autograd/graph';
import { isDisposableGrad, isFreeingBackward } from '../autograd/engine';
import { isGraphBufferSavedBy } from '../workspace';
import { sumToShape } from './reduce';
import { gelu } from './elementwise';
import { inLayoutOf } from './grad-layout';
// ---------------------------------------------------------------------------
// matmul / linear

/** Options of {@link matmul}. */
export interface MatmulOptions extends OutOptions {
  /** Use bᵀ over b's last two dims (e.g. Q·Kᵀ) without copying; b must be ≥ 2-D. */
  transB?: boolean;
  /** Scale the product (e.g. 1/√d for attention scores). Default 1. */
  alpha?: number;
}

/**
 * PyTorch `torch.matmul` on float32 tensors:
 * 1-D·1-D is a dot product (0-D result); a 1-D left operand is a row vector and
 * a 1-D right operand a column vector (the added dim is removed again); ≥2-D
 * operands multiply their last two dims and broadcast the leading (batch) dims.
 * With `opts.transB`, b's last two dims are swapped first.
 *
 * When b has no batch dims (or all are 1) the batch folds into one big GEMM;
 * when one side's batch is all-ones it broadcasts with a 0 stride; other
 * broadcasts loop over the outer batch dims.
 * @throws TypeError for non-float32 tensors; RangeError for 0-D operands or mismatched dims.
 */
export function matmul(a: F32, b: F32, opts?: MatmulOptions): F32 {
  const y = matmulForward(a, b, opts);
  if (needsGrad(a, b)) recordMatmul(a, b, y, opts);
  return y;
}

/**
 * The backward of y = alpha · a · op(b), with matmuls on views: dA = dY · op(b)ᵀ, d(op b) = aᵀ · dY, each summed
 * over the batch dims its operand was broadcast along. 1-D operands are seen as the matrices matmul made of them.
 */
function recordMatmul(a: F32, b: F32, y: F32, opts: MatmulOptions | undefined): void {
  const transB = opts?.transB === true;
  const alpha = opts?.alpha ?? 1;
  const be = opts?.backend ? { backend: opts.backend } : {};
  recordOp('MmBackward', [a, b], [y], ([g], needs) => {
    const a2 = a.ndim === 1 ? a.unsqueeze(0) : a;
    const b2 = b.ndim === 1 ? b.unsqueeze(-1) : b;
    let g2 = g!;
    if (a.ndim === 1) g2 = g2.unsqueeze(b.ndim === 1 ? 0 : -2);
    if (b.ndim === 1) g2 = g2.unsqueeze(-1);
    let da: F32 | null = null;
    let db: F32 | null = null;
    if (needs[0]) {
      // dA = dY · op(B)ᵀ: op(B)ᵀ is B as stored when transB, else Bᵀ (read transposed by the GEMM).
      const full = matmul(g2, b2, { transB: !transB, alpha, ...be });
      da = sumToShape(full, a2.shape, opts?.backend).reshape(a.shape);
    }
    if (needs[1]) {
      // d op(B) = Aᵀ · dY; stored B's gradient is its transpose when transB.
      const full = transB
        ? matmul(g2.transpose(-2, -1), a2, { alpha, ...be })
        : matmul(a2.transpose(-2, -1), g2, { alpha, ...be });
      db = sumToShape(full, b2.shape, opts?.backend).reshape(b.shape);
    }
    return [da, db];
  }, [a, b]);
}

function matmulForward(a: F32, b: F32, opts?: MatmulOptions): F32 {
  const fn = 'matmul';
  checkFloat(fn, 'a', a);
  checkFloat(fn, 'b', b);
  checkOptions(fn, opts);
  let transB = opts?.transB === true;
  const alpha = opts?.alpha === undefined ? 1 : checkNumber(fn, 'alpha', opts.alpha);
  if (a.ndim === 0) throw argRangeErrorRaw(fn, 'a', 'be at least 1-D', formatShape(a.shape));
  if (b.ndim === 0) throw argRangeErrorRaw(fn, 'b', 'be at least 1-D', formatShape(b.shape));
  if (transB && b.ndim < 2) throw argRangeErrorRaw(fn, 'b', 'be at least 2-D with transB', formatShape(b.shape));
  // The GEMMs below read contiguous batches; a b that is the transpose of a contiguous tensor (k.transpose(-2, -1))
  // is read as that tensor with transB flipped, anything else non-contiguous is copied.
  if (!b.isContiguous() && b.ndim >= 2) {
    const bt = b.transpose(-2, -1);
    if (bt.isContiguous()) {
      b = bt;
      transB = !transB;
    }
  }
  a = dense(a, opts?.backend);
  b = dense(b, opts?.backend);

  const aVec = a.ndim === 1;
  const bVec = b.ndim === 1;
  const aShape = aVec ? [1, a.shape[0]!] : a.shape;
  const bShape = bVec ? [b.shape[0]!, 1] : b.shape;
  const m = aShape[aShape.length - 2]!;
  const k = aShape[aShape.length - 1]!;
  const kb = bShape[bShape.length - (transB ? 1 : 2)]!;
  const n = bShape[bShape.length - (transB ? 2 : 1)]!;
  if (kb !== k) {
    const expected = bVec ? `[${k}]` : transB ? `[..., N, ${k}]` : `[..., ${k}, N]`;
    throw argRangeErrorRaw(fn, 'b', `have shape ${expected} matching a's last dim ${k}`, formatShape(b.shape));
  }
  const batchA = aShape.slice(0, -2);
  const batchB = bShape.slice(0, -2);
  const batch = broadcastShapes(fn, batchA, batchB, 'b');
  const outShape = [...batch];
  if (!aVec) outShape.push(m);
  if (!bVec) outShape.push(n);
  checkShape(fn, 'out', outShape);
  const y = output(fn, outShape, opts?.out, [['a', a], ['b', b]], false);
  const be = resolveBackend(opts?.backend);
  const nBatch = prod(batch);
  if (y.size === 0) return y;

  const base = {
    c: y.data, m, n, k, transA: false, transB, alpha, beta: 0, bias: null, act: Activation.None,
  } as const;
  const sizeA = prod(batchA);
  const sizeB = prod(batchB);
  if (sizeB === 1) {
    // b is one matrix for every batch: fold a's batch into M (a is contiguous).
    be.gemm({ ...base, a: a.data, b: b.data, m: nBatch * m, batch: 1, strideA: 0, strideB: 0, strideC: 0 });
    return y;
  }
  const fullA = sameShape(padLeft(batchA, batch.length), batch);
  const fullB = sameShape(padLeft(batchB, batch.length), batch);
  if ((fullA || sizeA === 1) && fullB) {
    be.gemm({
      ...base, a: a.data, b: b.data, batch: nBatch,
      strideA: sizeA === 1 ? 0 : m * k, strideB: k * n, strideC: m * n,
    });
    return y;
  }
  // General broadcast: the innermost batch dim is one strided gemm call; loop the outer ones.
  const nd = batch.length;
  const sA = broadcastStrides(padLeft(batchA, nd), batch).map((s) => s * m * k);
  const sB = broadcastStrides(padLeft(batchB, nd), batch).map((s) => s * k * n);
  const innerN = batch[nd - 1]!;
  const outer = nBatch / innerN;
  const idx = new Array<number>(nd).fill(0);
  for (let o = 0; o < outer; o++) {
    let offA = 0;
    let offB = 0;
    let rem = o;
    for (let d = nd - 2; d >= 0; d--) {
      idx[d] = rem % batch[d]!;
      rem = Math.floor(rem / batch[d]!);
      offA += idx[d]! * sA[d]!;
      offB += idx[d]! * sB[d]!;
    }
    const spanA = (innerN - 1) * sA[nd - 1]! + m * k;
    const spanB = (innerN - 1) * sB[nd - 1]! + k * n;
    be.gemm({
      ...base,
      a: a.data.subarray(offA, offA + spanA),
      b: b.data.subarray(offB, offB + spanB),
      c: y.data.subarray(o * innerN * m * n, (o + 1) * innerN * m * n),
      batch: innerN, strideA: sA[nd - 1]!, strideB: sB[nd - 1]!, strideC: m * n,
    });
  }
  return y;
}

function padLeft(shape: Shape, nd: number): number[] {
  return [...new Array<number>(nd - shape.length).fill(1), ...shape];
}

/** Activation that {@link linear} can fuse into its GEMM. */
export type FusedActivation = 'none' | 'relu' | 'gelu' | 'gelu_tanh';

const ACTIVATIONS: Record<FusedActivation, Activation> = {
  none: Activation.None,
  relu: Activation.Relu,
  gelu: Activation.Gelu,
  gelu_tanh: Activation.GeluTanh,
};

/** Options of {@link linear}. */
export interface LinearOptions extends OutOptions {
  /** Activation fused into the GEMM store (saves a pass over the output). Default 'none'. */
  activation?: FusedActivation;
  /**
   * The weight is a constant (a module parameter): the native backend packs it
   * once and reuses the packing on every later call with the same array. Don't
   * write into such a weight's data afterwards; replace the tensor instead.
   * nn modules set this. Default false.
   */
  cacheWeight?: boolean;
  /**
   * With `cacheWeight`: multiply in bfloat16 (weights and inputs rounded to
   * bfloat16, float32 accumulation; AVX512-BF16 on the native backend,
   * emulated on JS), or in int8 (the weight quantized per output channel
   * once, x per row at every call, exact int32 products dequantized in the
   * store; AVX512-VNNI, AVX2 or portable kernels, emulated bit for bit on
   * JS). Default 'float32'. See `Module.useWeightPrecision`.
   */
  weightPrecision?: WeightPrecision;
}

/**
 * PyTorch `F.linear`: y = x · weightᵀ + bias, with weight [out, in] (no
 * transposing copy: a trans_b GEMM), x [..., in] → y [..., out].
 * @throws TypeError for non-float32 tensors; RangeError for mismatched shapes.
 */
export function linear(x: F32, weight: F32, bias?: F32 | null, opts?: LinearOptions): F32 {
  const grad = needsGrad(x, weight, bias);
  const act = opts?.activation ?? 'none';
  if (grad && (act === 'gelu' || act === 'gelu_tanh')) {
    // GELU's gradient needs its input: in grad mode the activation is a separate op on the GEMM's output.
    const z = linearForward(x, weight, bias, { ...opts, activation: 'none' }, true);
    return gelu(z, { approximate: act === 'gelu_tanh' ? 'tanh' : 'none', ...(opts?.backend ? { backend: opts.backend } : {}) });
  }
  return linearForward(x, weight, bias, opts, grad);
}

function linearForward(x: F32, weight: F32, bias: F32 | null | undefined, opts: LinearOptions | undefined, grad: boolean): F32 {
  const fn = 'linear';
  checkFloat(fn, 'x', x);
  checkFloat(fn, 'weight', weight);
  checkOptions(fn, opts);
  if (weight.ndim !== 2) throw shapeError(fn, 'weight', '[out_features, in_features]', weight.shape);
  const [nOut, nIn] = weight.shape as [number, number];
  if (x.ndim === 0 || x.shape[x.ndim - 1] !== nIn) {
    throw shapeError(fn, 'x', `[..., ${nIn}] matching weight's in_features ${nIn}`, x.shape);
  }
  if (bias !== undefined && bias !== null) {
    checkFloat(fn, 'bias', bias);
    if (bias.ndim !== 1 || bias.shape[0] !== nOut) {
      throw shapeError(fn, 'bias', `[${nOut}] matching weight's out_features`, bias.shape);
    }
  }
  const actName = opts?.activation ?? 'none';
  if (!Object.prototype.hasOwnProperty.call(ACTIVATIONS, actName)) {
    throw argTypeError(fn, 'activation', "be 'none', 'relu', 'gelu' or 'gelu_tanh'", actName);
  }
  const act = ACTIVATIONS[actName];
  // A cached weight's precision: the option, else the execution context's (a module's useWeightPrecision).
  const weightPrecision = opts?.weightPrecision ?? (opts?.cacheWeight === true ? currentContext().weightPrecision : 'float32');
  if (weightPrecision !== 'float32' && weightPrecision !== 'bfloat16' && weightPrecision !== 'int8') {
    throw argTypeError(fn, 'weightPrecision', "be 'float32', 'bfloat16' or 'int8'", weightPrecision);
  }
  if (weightPrecision !== 'float32' && opts?.cacheWeight !== true) {
    throw argTypeErrorRaw(fn, 'weightPrecision', `be 'float32' unless cacheWeight is true (a ${weightPrecision} weight is a constant, packed once)`,
      `'${weightPrecision}' without cacheWeight`);
  }
  if (weightPrecision === 'int8' && nIn > 133143) {
    throw argRangeErrorRaw(fn, 'weightPrecision', "be 'int8' only for in_features <= 133143 (127 * 127 * in_features must fit int32)",
      `in_features ${nIn}`);
  }
  const outShape = [...x.shape.slice(0, -1), nOut];
  checkShape(fn, 'out', outShape);
  const out = checkOut(fn, outShape, opts?.out, [['x', x], ['weight', weight], ['bias', bias]], false);
  // Views are multiplied where they lie: x's rows (in any order of its leading dims) through the GEMM's leading
  // dimension and batch stride, a row-sliced or transposed weight through ldb. Anything else is copied first.
  let xs = x.strides[x.ndim - 1] === 1 || nIn <= 1 ? x : x.contiguous(opts?.backend);
  let plan = planRows(xs.shape, xs.strides, out ? out.strides : null, nOut, true);
  if (!plan && !xs.isContiguous()) {
    xs = xs.contiguous(opts?.backend);
    plan = planRows(xs.shape, xs.strides, out ? out.strides : null, nOut, true);
  }
  if (!plan || (out && out.strides[out.ndim - 1] !== 1 && nOut > 1)) {
    throw argRangeErrorRaw(fn, 'out', "have rows of contiguous features addressable with uniform strides (e.g. contiguous)",
      `a view with strides ${formatShape(out?.strides ?? [])}`);
  }
  const y = out ?? new Tensor(allocateUninitialized('float32', prod(outShape)), outShape, 'float32', plan.yStrides);
  if (y.size === 0) return y;
  const [w, transB, ldb] = weightLayout(weight, opts?.backend);
  // A weight being trained is not packed: its optimizer step changes it before the next forward, so a packed copy
  // (a second copy of the weight, kept until the GC takes it) would serve one GEMM, whose own panel packing does
  // the same work. Inference (no grad, or a frozen weight) packs as usual.
  const pack = opts?.cacheWeight === true && !(grad && weight.requiresGrad && weightPrecision === 'float32');
  resolveBackend(opts?.backend).gemm({
    a: xs.data, b: w, c: y.data,
    m: plan.x.rows, n: nOut, k: nIn, transB, ldb,
    ...(plan.x.rowStride !== undefined ? { lda: plan.x.rowStride } : {}),
    ...(plan.y.rowStride !== undefined ? { ldc: plan.y.rowStride } : {}),
    batch: plan.x.batch, strideA: plan.x.batchStride, strideC: plan.y.batchStride,
    bias: bias ? dense(bias, opts?.backend).data : null, act, cacheB: pack,
    ...(pack && weight._version !== 0 ? { bVersion: weight._version } : {}),
    ...(weightPrecision !== 'float32' ? { bPrecision: weightPrecision } : {}),
  });
  if (grad) recordLinear(x, xs, weight, bias ?? null, y, act === Activation.Relu, opts?.backend);
  return y;
}

/** Which rows of x, of y (and of any tensor laid out like y) one GEMM call addresses; see planRows. */
function sameRows(p: ReturnType<typeof planRows>, q: ReturnType<typeof planRows>): boolean {
  return !!p && !!q && p.x.rows === q.x.rows && p.x.batch === q.x.batch && p.x.batchStride === q.x.batchStride &&
    p.x.rowStride === q.x.rowStride;
}

/**
 * The backward of y = act(x · Wᵀ + b) (act none or relu), on the GEMM with every transpose absorbed: rows of x
 * and of dY are addressed where they lie (the forward's row plan), so
 *   dX = dY · W       (W read as stored, op(B) = W),
 *   dW = dYᵀ · X      (transA over dY's rows, summed over batch blocks with beta = 1),
 *   db = 1ᵀ · dY      (row sums of dW's A, summed as the GEMM packs it: GemmArgs.rowSumsA),
 * without copying x, W or dY unless dY arrives in another memory order than y.
 */
function recordLinear(x: F32, xs: F32, weight: F32, bias: F32 | null, y: F32, reluFused: boolean, backend: LinearOptions['backend']): void {
  const [nOut, nIn] = weight.shape as [number, number];
  const relu = reluFused ? { maskedInPlace: false } : null;
  if (relu) reluOutputs.set(y, relu);
  recordOp('LinearBackward', [x, weight, bias], [y], ([g], needs) => {
    let dz = inLayoutOf(g!, y, backend);
    const be = resolveBackend(backend);
    const producer = reluOutputs.get(xs);
    if (producer && !producer.maskedInPlace && needs[0] && xs === x && consumable(x, dz, nOut)) {
      // x is a fused ReLU's output that only this node and its producer save: dW and db first (they read x), then
      // dX, masked, over x's own buffer, which the producer's backward receives as its masked gradient.
      const [dw, db] = weightGrads(x, dz, nOut, nIn, needs, be);
      dxOverReluOutput(x, dz, weight, nOut, nIn, be, backend);
      producer.maskedInPlace = true;
      return [new Tensor(x.data, x.shape, 'float32', x.strides), dw, db];
    }
    if (relu?.maskedInPlace && dz.data.buffer === y.data.buffer) {
      // The consumer wrote dX already masked over y (see above): y is gone, and so is the mask's work.
    } else if (reluFused) {
      // The mask goes over the gradient in place when nothing else reads it (the feed-forward's [tokens, 4·d]
      // gradient: one buffer of that size fewer at the step's high-water mark).
      const masked = dz !== g || isDisposableGrad(dz) ? dz : new Tensor(allocateUninitialized('float32', y.size), y.shape, 'float32', y.strides);
      if (y.size > 0) be.activationBackward({ op: ActivationGrad.Relu, x: y.data, dy: dz.data, dx: masked.data });
      dz = masked;
    }
    let xr = xs;
    let plan = planRows(xr.shape, xr.strides, dz.strides, nOut, true);
    let dxPlan = plan ? planRows(xr.shape, xr.strides, null, nIn, true) : null;
    if (!sameRows(plan, dxPlan) || (nIn > 1 && xr.strides[xr.ndim - 1] !== 1)) {
      // Row orders that no one GEMM walks for all three: contiguous copies (rare: an `out` with its own layout).
      xr = xr.contiguous(backend);
      dz = dz.contiguous(backend);
      plan = planRows(xr.shape, xr.strides, dz.strides, nOut, true);
      dxPlan = planRows(xr.shape, xr.strides, null, nIn, true);
    }
    const p = plan!;
    const m = p.x.rows;
    const batch = p.x.batch;
    const lda = p.y.rowStride ?? nOut;
    const ldx = p.x.rowStride ?? nIn;
    let dx: F32 | null = null;
    let dxGemm: GemmArgs | null = null;
    if (needs[0]) {
      const q = dxPlan!;
      dx = new Tensor(allocateUninitialized('float32', x.size), x.shape, 'float32', q.yStrides);
      if (dx.size > 0) {
        const [w, transB, ldb] = weightLayout(weight, backend);
        // dX = dZ · W: op(B) = W, i.e. the forward's B read the other way round.
        dxGemm = {
          a: dz.data, b: w, c: dx.data, m, n: nIn, k: nOut, transB: !transB, ldb, lda, ldc: q.y.rowStride ?? nIn,
          batch, strideA: p.y.batchStride, strideB: 0, strideC: q.y.batchStride,
        };
      }
    }
    let dw: F32 | null = null;
    let db: F32 | null = null;
    if (needs[1]) dw = new Tensor(allocateUninitialized('float32', nOut * nIn), [nOut, nIn], 'float32');
    if (needs[2]) db = new Tensor(allocateUninitialized('float32', nOut), [nOut], 'float32');
    // db rides along with dW's GEMM (the row sums of the dZᵀ it packs) when there is one; a GEMV otherwise.
    const dbFused = db !== null && dw !== null && dw.size > 0;
    const ones = db && !dbFused ? new Float32Array(Math.max(m, 1)).fill(1) : null;
    const blocks = Math.max(batch, 1);
    for (let i = 0; i < blocks; i++) {
      // Batch blocks of the rows add up: the first writes, the others accumulate (beta = 1), in order.
      const beta = i === 0 ? 0 : 1;
      const zOff = i * p.y.batchStride;
      const zSpan = m === 0 ? 0 : (m - 1) * lda + nOut;
      const dzBlock = dz.data.subarray(zOff, zOff + zSpan);
      if (dw && dw.size > 0) {
        const xOff = i * p.x.batchStride;
        // dW += dZ_bᵀ · X_b: A = dZ_b stored [m, nOut] read transposed.
        const dwGemm: GemmArgs = {
          a: dzBlock, b: xr.data.subarray(xOff, xOff + (m === 0 ? 0 : (m - 1) * ldx + nIn)), c: dw.data,
          m: nOut, n: nIn, k: m, transA: true, lda, ldb: ldx, beta, ...(dbFused ? { rowSumsA: db!.data } : {}),
        };
        if (dxGemm && blocks === 1) {
          // dW and dX are independent products of equal size: one call runs them side by side on two threads
          // (each whole on its thread), where two calls would split each small product over both.
          be.gemmGroup({ gemms: [dwGemm, dxGemm] });
          dxGemm = null;
        } else {
          be.gemm(dwGemm);
        }
      }
      if (db && !dbFused && db.size > 0) be.gemm({ a: ones!, b: dzBlock, c: db.data, m: 1, n: nOut, k: m, ldb: lda, beta });
    }
    if (dxGemm) be.gemm(dxGemm);
    return [dx, dw, db];
  }, reluFused ? [xs, weight, y] : [xs, weight]);
}

/** Outputs of fused ReLU linears recorded in grad mode, and whether a consumer's backward has masked in place. */
const reluOutputs = new WeakMap<Tensor, { maskedInPlace: boolean }>();

/**
 * True when a consumer's backward may write its dX over x (a fused ReLU's output): the backward frees the graph
 * as it goes, x is one dense pooled buffer that nothing outside the graph reaches and only the two nodes save,
 * and x, dZ are plain row-major [rows, features].
 */
function consumable(x: F32, dz: F32, nOut: number): boolean {
  return isFreeingBackward() && x.isContiguous() && dz.isContiguous() && x.size > 0 && dz.size === (x.size / x.shape[x.ndim - 1]!) * nOut &&
    isGraphBufferSavedBy(x.data.buffer, 2);
}

/** dW = dZᵀ·X and db = Σ dZ over rows (what needs asks for) for contiguous x [rows, nIn] and dZ [rows, nOut]. */
function weightGrads(x: F32, dz: F32, nOut: number, nIn: number, needs: readonly boolean[], be: ReturnType<typeof resolveBackend>): [F32 | null, F32 | null] {
  const m = x.size / nIn;
  const dw = needs[1] ? new Tensor(allocateUninitialized('float32', nOut * nIn), [nOut, nIn], 'float32') : null;
  const db = needs[2] ? new Tensor(allocateUninitialized('float32', nOut), [nOut], 'float32') : null;
  if (dw) {
    be.gemm({ a: dz.data, b: x.data, c: dw.data, m: nOut, n: nIn, k: m, transA: true, lda: nOut, ldb: nIn, ...(db ? { rowSumsA: db.data } : {}) });
  } else if (db) {
    be.gemm({ a: new Float32Array(m).fill(1), b: dz.data, c: db.data, m: 1, n: nOut, k: m, ldb: nOut });
  }
  return [dw, db];
}

/** Rows of dX per GEMM when dX goes over a ReLU output: a chunk of about 2 MiB, the only dX-sized memory. */
const DX_CHUNK_FLOATS = 1 << 19;

/**
 * dX = dZ·W, masked by ReLU's derivative (x > 0), written over x itself chunk by chunk: each chunk's product goes
 * to a small buffer, then the mask reads x's rows and writes the masked product over them. The same GEMM rows and
 * the same mask as the unchunked path, so the same bits.
 */
function dxOverReluOutput(x: F32, dz: F32, weight: F32, nOut: number, nIn: number, be: ReturnType<typeof resolveBackend>, backend: LinearOptions['backend']): void {
  const m = x.size / nIn;
  const rows = Math.max(1, Math.min(m, Math.floor(DX_CHUNK_FLOATS / nIn)));
  const tmp = allocateUninitialized('float32', rows * nIn);
  const [w, transB, ldb] = weightLayout(weight, backend);
  for (let r0 = 0; r0 < m; r0 += rows) {
    const r = Math.min(rows, m - r0);
    const xr = x.data.subarray(r0 * nIn, (r0 + r) * nIn);
    const t = tmp.subarray(0, r * nIn);
    be.gemm({ a: dz.data.subarray(r0 * nOut, (r0 + r) * nOut), b: w, c: t, m: r, n: nIn, k: nOut, transB: !transB, ldb, lda: nOut, ldc: nIn });
    be.activationBackward({ op: ActivationGrad.Relu, x: xr, dy: t, dx: xr });
  }
}

/** A Linear weight [out, in] as the GEMM's B: rows in place (transB, ldb = row stride), a transposed view as is. */
function weightLayout(weight: F32, backend: OutOptions['backend']): [Float32Array, boolean, number] {
  const [nOut, nIn] = weight.shape as [number, number];
  const [s0, s1] = weight.strides as [number, number];
  if ((s1 === 1 || nIn <= 1) && (nOut <= 1 || s0 >= nIn)) return [weight.data, true, nOut <= 1 ? nIn : s0];
  if ((s0 === 1 || nOut <= 1) && (nIn <= 1 || s1 >= nOut)) return [weight.data, false, nIn <= 1 ? nOut : s1];
  return [weight.contiguous(backend).data, true, nIn];
}

