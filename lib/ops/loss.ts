/**
 * Losses with PyTorch 1.13's semantics: `crossEntropy` (F.cross_entropy with
 * class-index targets: class weights, ignore_index, label smoothing, the
 * three reductions) on the backend's fused log-softmax + cross-entropy, and
 * `mseLoss` (F.mse_loss) composed of differentiable ops.
 */
import { BinaryOp } from '../backend/backend';
import { resolveBackend } from '../backend/registry';
import { recordingList } from '../backend/recording';
import { allocateUninitialized } from '../dtype';
import { argRangeErrorRaw, argTypeError, checkInt, checkNumber, formatShape } from '../errors';
import type { OpOptions } from '../op-options';
import { Tensor } from '../tensor';
import { withForwardScope } from '../workspace';
import { needsGrad, recordOp } from '../autograd/graph';
import { checkFloat, checkOptions, checkTensor, dense } from './checks';
import { mean, sum } from './reduce';
import { mul, sub } from './elementwise';
import type { F32 } from './checks';

/** How a loss reduces its per-element values: PyTorch's `reduction`. */
export type LossReduction = 'mean' | 'sum' | 'none';

/** Options of {@link crossEntropy}: PyTorch's keyword arguments of `F.cross_entropy`. */
export interface CrossEntropyOptions extends OpOptions {
  /** float32 [C]: a weight per class (default all 1). */
  weight?: F32 | null;
  /** Targets equal to this contribute nothing (default -100). */
  ignoreIndex?: number;
  /** Default 'mean': the sum divided by the summed weights of the targets that are not ignored. */
  reduction?: LossReduction;
  /** ε in [0, 1]: the loss mixes (1 − ε)·NLL with ε·the mean over classes of −w·log p. Default 0. */
  labelSmoothing?: number;
}

function checkReduction(fn: string, reduction: unknown): LossReduction {
  if (reduction !== 'mean' && reduction !== 'sum' && reduction !== 'none') {
    throw argTypeError(fn, 'reduction', "be 'mean', 'sum' or 'none'", reduction);
  }
  return reduction;
}

/**
 * PyTorch 1.13's `F.cross_entropy(input, target, weight, ignore_index,
 * reduction, label_smoothing)` for class-index targets: input [N, C] (or
 * [N, C, d1, …], or [C] unbatched) logits, target int32 [N] (or [N, d1, …],
 * or 0-D), classes along dim 1. Per element, with w the class weights (1
 * without), t the target and log p = log_softmax:
 *   loss = −(1 − ε)·w[t]·log p[t] − (ε / C)·Σ_c w[c]·log p[c],
 * 0 where t = ignoreIndex. 'mean' divides the sum by Σ w[t] over the targets
 * that are not ignored (NaN when all are), 'sum' sums, 'none' returns the
 * losses in target's shape. One fused backend pass per row computes the loss
 * and keeps the row's log-sum-exp for the backward, which writes
 * (softmax − one-hot smoothing) scaled by the weights in one pass too.
 * Targets and weights are read in JS (to check them and form the 'mean'
 * divisor): inside runAsync they must be final when the call is recorded.
 * @throws TypeError for wrong kinds of arguments; RangeError for shapes that do not match or a target that is
 *   neither a class in [0, C) nor ignoreIndex (naming its position).
 */
export function crossEntropy(input: F32, target: Tensor<'int32'>, opts: CrossEntropyOptions = {}): F32 {
  const fn = 'crossEntropy';
  checkFloat(fn, 'input', input);
  const t = checkTensor(fn, 'target', target);
  if (t.dtype !== 'int32') throw argTypeError(fn, 'target', 'be an int32 Tensor of class indices', t);
  checkOptions(fn, opts);
  const reduction = checkReduction(fn, opts.reduction ?? 'mean');
  const ignoreIndex = checkInt(fn, 'ignoreIndex', opts.ignoreIndex ?? -100, -(2 ** 31), 2 ** 31 - 1);
  const eps = checkNumber(fn, 'labelSmoothing', opts.labelSmoothing ?? 0);
  if (!(eps >= 0 && eps <= 1)) throw argRangeErrorRaw(fn, 'labelSmoothing', 'be in [0, 1]', String(eps));
  if (input.ndim === 0) throw argRangeErrorRaw(fn, 'input', 'have a class dim ([N, C], [N, C, d1, …] or [C])', formatShape(input.shape));
  const unbatched = input.ndim === 1;
  const c = input.shape[unbatched ? 0 : 1]!;
  const wantTarget = unbatched ? [] : [input.shape[0]!, ...input.shape.slice(2)];
  if (t.ndim !== wantTarget.length || t.shape.some((d, i) => d !== wantTarget[i])) {
    throw argRangeErrorRaw(fn, 'target', `have shape ${formatShape(wantTarget)} (input ${formatShape(input.shape)} without its class dim)`,
      formatShape(t.shape));
  }
  let weight: F32 | null = null;
  if (opts.weight !== undefined && opts.weight !== null) {
    weight = dense(checkFloat(fn, 'weight', opts.weight), opts.backend);
    if (weight.ndim !== 1 || weight.shape[0] !== c) throw argRangeErrorRaw(fn, 'weight', `have shape [${c}] (one per class)`, formatShape(weight.shape));
  }
  // Rows of C logits: the class dim moved last (a view; copied only when its rows are not uniformly strided).
  const moved = unbatched ? input.unsqueeze(0) : input.ndim === 2 ? input : input.permute([0, ...range(2, input.ndim), 1]);
  let rows2d = moved.reshape(-1, c);
  if (c > 1 && rows2d.strides[1] !== 1) rows2d = rows2d.contiguous(opts.backend);
  const rows = rows2d.shape[0]!;
  if (recordingList() && !t.isContiguous()) {
    throw new Error(`${fn}: a non-contiguous target is copied in JS, which cannot run inside runAsync(); pass a contiguous one`);
  }
  const targets = dense(target, opts.backend).data;
  const w = weight ? weight.data : null;
  let wSum = 0;
  for (let i = 0; i < rows; i++) {
    const k = targets[i]!;
    if (k === ignoreIndex) continue;
    if (k < 0 || k >= c) {
      throw argRangeErrorRaw(fn, 'target', `hold class indices in [0, ${c}) or ignoreIndex ${ignoreIndex}`, `${k} at position ${i}`);
    }
    wSum += w ? w[k]! : 1;
  }
  const be = resolveBackend(opts.backend);
  const lossRows = new Tensor(allocateUninitialized('float32', rows), [rows], 'float32');
  // Pooled inside a buffer scope (nn.CrossEntropyLoss's forward, reuseBuffers), so the node saves it (below) and
  // the backward hands it back; zeroed since an ignored row's entry need not be written.
  const lse = allocateUninitialized('float32', rows).fill(0);
  const ld = rows2d.strides[0]!;
  if (rows > 0) {
    be.crossEntropy({
      logits: rows2d.data, target: targets, weight: w, ignoreIndex, labelSmoothing: eps, loss: lossRows.data, lse, rows,
      cols: c, ...(rows > 1 && ld !== c ? { logitsRowStride: ld } : {}),
    });
  }
  let result: F32;
  if (reduction === 'none') {
    result = new Tensor(lossRows.data, wantTarget, 'float32');
  } else {
    const total = new Tensor(allocateUninitialized('float32', 1), [], 'float32');
    be.gemm({ a: new Float32Array(Math.max(rows, 1)).fill(1), b: lossRows.data, c: total.data, m: 1, n: 1, k: rows, transB: true, ldb: Math.max(rows, 1) });
    result = reduction === 'sum' ? total : scaled(total, 1 / wSum, opts);
  }
  if (needsGrad(rows2d)) {
    const kept = targets.slice();
    const divisor = reduction === 'mean' ? 1 / wSum : 1;
    recordOp('CrossEntropyBackward', [rows2d], [result], ([g]) => {
      // One gradient per row ('none') or one for all (the reductions: 'mean' scales it by 1 / Σ w[t]).
      const dloss = reduction === 'none' ? dense(g!, opts.backend).data : (divisor === 1 ? dense(g!, opts.backend) : scaled(g!, divisor, opts)).data;
      const dx = new Tensor(allocateUninitialized('float32', rows * c), [rows, c], 'float32');
      if (rows > 0 && c > 0) {
        be.crossEntropyBackward({
          logits: rows2d.data, lse, target: kept, weight: w, ignoreIndex, labelSmoothing: eps, dloss,
          dlossStride: reduction === 'none' ? 1 : 0, dlogits: dx.data, rows, cols: c, ...(rows > 1 && ld !== c ? { logitsRowStride: ld } : {}),
        });
      }
      return [dx];
    }, [rows2d, new Tensor(lse, [rows], 'float32')]);
  }
  return result;
}

/** t · s as a new tensor of t's shape, on the backend (no JS read: recorded in order inside runAsync). */
function scaled(t: F32, s: number, opts: OpOptions): F32 {
  const y = new Tensor(allocateUninitialized('float32', t.size), t.shape, 'float32');
  if (t.size > 0) {
    resolveBackend(opts.backend).binary({
      op: BinaryOp.Mul, a: t.data, aStrides: t.strides, b: new Float32Array([s]),
      bStrides: t.shape.map(() => 0), y: y.data, shape: t.shape,
    });
  }
  return y;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

/** Options of {@link mseLoss}. */
export interface MseLossOptions extends OpOptions {
  /** Default 'mean'. */
  reduction?: LossReduction;
}

/**
 * PyTorch's `F.mse_loss(input, target, reduction)`: (input − target)²,
 * averaged ('mean', default), summed ('sum') or element-wise ('none');
 * target broadcasts against input. Differentiable in both arguments.
 */
export function mseLoss(input: F32, target: F32, opts: MseLossOptions = {}): F32 {
  const fn = 'mseLoss';
  checkFloat(fn, 'input', input);
  checkFloat(fn, 'target', target);
  checkOptions(fn, opts);
  const reduction = checkReduction(fn, opts.reduction ?? 'mean');
  const be = opts.backend ? { backend: opts.backend } : {};
  // In a forward scope, as a module's forward: the difference (which the graph saves) and the squares come from
  // the buffer pool and go back once nothing reads them, instead of two fresh input-sized buffers per call.
  return withForwardScope(() => {
    const d = sub(input, target, be);
    const sq = mul(d, d, be);
    if (reduction === 'none') return sq;
    return reduction === 'sum' ? sum(sq, null, be) : mean(sq, null, be);
  });
}
