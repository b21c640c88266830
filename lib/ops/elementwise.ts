/** Element-wise ops: activations and broadcasting arithmetic. */
import { ActivationGrad, BinaryOp, UnaryOp } from '../backend/backend';
import { resolveBackend } from '../backend/registry';
import { argRangeErrorRaw, argTypeError, formatShape } from '../errors';
import { Tensor } from '../tensor';
import type { OutOptions } from '../op-options';
import { checkContiguousOut, checkFloat, checkOptions, checkOut, overlaps, output, sameRegion, sameShape, broadcastShapes, broadcastStrides } from './checks';
import { needsGrad, recordOp } from '../autograd/graph';
import { sumToShape } from './reduce';
import { emptyLike, inLayoutOf } from './grad-layout';
import { isDense } from './rows';
import { allocateUninitialized } from '../dtype';
import type { F32 } from './checks';
// ---------------------------------------------------------------------------
// Element-wise

/**
 * Input and output of an element-wise op run over flat data: a view whose
 * elements fill its span densely (any order of dims) is read in place and the
 * result takes its strides; other views are copied first. A caller's `out`
 * must have x's layout (the same strides, or both contiguous).
 */
function unaryArgs(fn: string, x: F32, out: F32 | undefined, backend: OutOptions['backend']): [F32, F32] {
  const o = checkOut(fn, x.shape, out, [['x', x]], true);
  const xs = isDense(x.shape, x.strides) ? x : x.contiguous(backend);
  if (o) {
    const same = o.strides.every((s, d) => s === xs.strides[d] || o.shape[d] === 1);
    if (!same) throw argRangeErrorRaw(fn, 'out', `have x's strides ${formatShape(xs.strides)}`, formatShape(o.strides));
    return [xs, o];
  }
  return [xs, new Tensor(allocateUninitialized('float32', x.size), x.shape, 'float32', xs.strides)];
}

/**
 * Records the backward of an activation y = f(x): dx = dy · f′ through the backend's activationBackward, with
 * `saved` the tensor f′ is computed from (x, or y for sigmoid/tanh), dense, gradients read in its layout. In place
 * (y written over x), x is kept as it was for the ops that need the input.
 */
function recordActivation(name: string, op: ActivationGrad, x: F32, saved: F32, y: F32, backend: OutOptions['backend']): void {
  recordOp(name, [x], [y], ([g]) => {
    const gs = inLayoutOf(g!, saved, backend);
    const dx = emptyLike(saved);
    if (dx.size > 0) resolveBackend(backend).activationBackward({ op, x: saved.data, dy: gs.data, dx: dx.data });
    return [dx];
  }, [saved]);
}

/** A copy of `xs` when the op is about to overwrite it in place and its backward needs the input. */
function keepInput(xs: F32, y: F32): F32 {
  return sameRegion(y.data, xs.data) ? xs.clone() : xs;
}

/** max(x, 0), element-wise. `out` may be `x` (in place). */
export function relu(x: F32, opts?: OutOptions): F32 {
  checkFloat('relu', 'x', x);
  checkOptions('relu', opts);
  const [xs, y] = unaryArgs('relu', x, opts?.out, opts?.backend);
  const grad = needsGrad(x);
  // relu's gradient mask is the same from its output (y > 0 exactly where x > 0): no copy of x in place.
  if (x.size > 0) resolveBackend(opts?.backend).relu({ x: xs.data, y: y.data });
  if (grad) recordActivation('ReluBackward', ActivationGrad.Relu, x, y, y, opts?.backend);
  return y;
}

/** Options of {@link gelu}. */
export interface GeluOptions extends OutOptions {
  /** 'none' (default): exact x·Φ(x) via erf; 'tanh': PyTorch's tanh approximation. */
  approximate?: 'none' | 'tanh';
}

/** GELU, element-wise (PyTorch `F.gelu`). `out` may be `x` (in place). */
export function gelu(x: F32, opts?: GeluOptions): F32 {
  checkFloat('gelu', 'x', x);
  checkOptions('gelu', opts);
  const approx = opts?.approximate ?? 'none';
  if (approx !== 'none' && approx !== 'tanh') throw argTypeError('gelu', 'approximate', "be 'none' or 'tanh'", approx);
  const [xs, y] = unaryArgs('gelu', x, opts?.out, opts?.backend);
  const saved = needsGrad(x) ? keepInput(xs, y) : null;
  if (x.size > 0) resolveBackend(opts?.backend).gelu({ x: xs.data, y: y.data, tanhApprox: approx === 'tanh' });
  if (saved) {
    recordActivation('GeluBackward', approx === 'tanh' ? ActivationGrad.GeluTanh : ActivationGrad.Gelu, x, saved, y, opts?.backend);
  }
  return y;
}

const UNARY_GRADS: Record<UnaryOp, [string, ActivationGrad]> = {
  [UnaryOp.Silu]: ['SiluBackward', ActivationGrad.Silu],
  [UnaryOp.Sigmoid]: ['SigmoidBackward', ActivationGrad.Sigmoid],
  [UnaryOp.Tanh]: ['TanhBackward', ActivationGrad.Tanh],
};

function unaryMap(fn: string, op: UnaryOp, x: F32, opts: OutOptions | undefined): F32 {
  checkFloat(fn, 'x', x);
  checkOptions(fn, opts);
  const [xs, y] = unaryArgs(fn, x, opts?.out, opts?.backend);
  const grad = needsGrad(x);
  // silu's derivative needs its input; sigmoid's and tanh's come from the output.
  const saved = grad && op === UnaryOp.Silu ? keepInput(xs, y) : y;
  if (x.size > 0) resolveBackend(opts?.backend).unary({ op, x: xs.data, y: y.data });
  if (grad) recordActivation(UNARY_GRADS[op][0], UNARY_GRADS[op][1], x, saved, y, opts?.backend);
  return y;
}

/** SiLU (swish), x · sigmoid(x) = x / (1 + exp(−x)), element-wise (PyTorch `F.silu`). `out` may be `x` (in place). */
export function silu(x: F32, opts?: OutOptions): F32 {
  return unaryMap('silu', UnaryOp.Silu, x, opts);
}

/** 1 / (1 + exp(−x)), element-wise (`torch.sigmoid`). `out` may be `x` (in place). */
export function sigmoid(x: F32, opts?: OutOptions): F32 {
  return unaryMap('sigmoid', UnaryOp.Sigmoid, x, opts);
}

/** The hyperbolic tangent, element-wise (`torch.tanh`). `out` may be `x` (in place). */
export function tanh(x: F32, opts?: OutOptions): F32 {
  return unaryMap('tanh', UnaryOp.Tanh, x, opts);
}

/**
 * SwiGLU's gated product `silu(gate) * up` (Llama's MLP), element-wise, in one pass: silu is rounded to float32
 * before the product, as `F.silu(gate) * up` in PyTorch. `gate` and `up` must have the same shape (no
 * broadcasting). Views that fill their span densely are read in place when both have the same strides (e.g. the
 * two halves of a packed gate/up projection are not: they are copied); the result takes gate's layout.
 * `out` may be `gate` or `up` (in place).
 */
export function siluMul(gate: F32, up: F32, opts?: OutOptions): F32 {
  const fn = 'siluMul';
  checkFloat(fn, 'gate', gate);
  checkFloat(fn, 'up', up);
  checkOptions(fn, opts);
  if (!sameShape(gate.shape, up.shape)) {
    throw argRangeErrorRaw(fn, 'up', `have gate's shape ${formatShape(gate.shape)}`, formatShape(up.shape));
  }
  const o = checkOut(fn, gate.shape, opts?.out, [['gate', gate], ['up', up]], true);
  // Flat kernel: gate, up and y must list their elements in the same order.
  let g = isDense(gate.shape, gate.strides) ? gate : gate.contiguous(opts?.backend);
  let u = up;
  const sameOrder = (a: F32, b: F32): boolean => a.strides.every((s, d) => s === b.strides[d] || a.shape[d] === 1);
  if (!isDense(u.shape, u.strides) || !sameOrder(u, g)) {
    if (!g.isContiguous()) g = g.contiguous(opts?.backend);
    u = u.isContiguous() ? u : u.contiguous(opts?.backend);
  }
  let y: F32;
  if (o) {
    if (!sameOrder(o, g)) throw argRangeErrorRaw(fn, 'out', `have the strides ${formatShape(g.strides)} of the gate it is computed from`, formatShape(o.strides));
    y = o;
  } else {
    y = new Tensor(allocateUninitialized('float32', gate.size), gate.shape, 'float32', g.strides);
  }
  const grad = needsGrad(gate, up);
  const keptGate = grad ? keepInput(g, y) : g;
  const keptUp = grad ? keepInput(u, y) : u;
  if (gate.size > 0) resolveBackend(opts?.backend).siluMul({ gate: g.data, up: u.data, y: y.data });
  if (grad) {
    const be = opts?.backend ? { backend: opts.backend } : {};
    // y = silu(gate) · up: d gate = silu′(gate) · (dy · up), d up = dy · silu(gate).
    recordOp('SiluMulBackward', [gate, up], [y], ([dy], needs) => {
      const ga = needs[0] ? binaryOp('mul', BinaryOp.Mul, dy!, keptUp, be) : null;
      let dGate: F32 | null = null;
      if (ga) {
        const gs = inLayoutOf(ga, keptGate, opts?.backend);
        dGate = emptyLike(keptGate);
        if (dGate.size > 0) {
          resolveBackend(opts?.backend).activationBackward({ op: ActivationGrad.Silu, x: keptGate.data, dy: gs.data, dx: dGate.data });
        }
      }
      const dUp = needs[1] ? binaryOp('mul', BinaryOp.Mul, dy!, unaryMap('silu', UnaryOp.Silu, keptGate, be), be) : null;
      return [dGate, dUp];
    }, [keptGate, keptUp]);
  }
  return y;
}

const MAX_BINARY_DIMS = 8;

function binaryOp(fn: string, op: BinaryOp, a: F32, b: F32 | number, opts: OutOptions | undefined): F32 {
  checkFloat(fn, 'a', a);
  checkOptions(fn, opts);
  let bt: F32;
  if (typeof b === 'number') {
    bt = new Tensor(new Float32Array([b]), [], 'float32');
  } else {
    if (!(b instanceof Tensor)) throw argTypeError(fn, 'b', 'be a float32 Tensor or a number', b);
    bt = checkFloat(fn, 'b', b);
  }
  const shape = broadcastShapes(fn, a.shape, bt.shape, 'b');
  // Broadcast operands may not alias out; an operand of the full shape may (in place).
  const y = checkContiguousOut(fn, output(fn, shape, opts?.out, [['a', a], ['b', typeof b === 'number' ? null : bt]], true));
  for (const [name, t] of [['a', a], ['b', bt]] as const) {
    if (!sameShape(t.shape, shape) && t.size > 0 && y.size > 0 && overlaps(y.data, t.data)) {
      throw argRangeErrorRaw(fn, 'out', `not overlap the broadcast input '${name}'`, 'a tensor sharing its memory');
    }
  }
  if (y.size === 0) return y;
  // Drop size-1 dims of the result so deep-but-thin shapes fit the backend's 8-dim limit.
  // Views are read through their strides, as broadcasts are.
  const aS = broadcastStrides(a.shape, shape, a.strides);
  const bS = broadcastStrides(bt.shape, shape, bt.strides);
  const keep = shape.map((d, i) => (d !== 1 ? i : -1)).filter((i) => i >= 0);
  if (keep.length > MAX_BINARY_DIMS) {
    throw argRangeErrorRaw(fn, 'b', `broadcast to at most ${MAX_BINARY_DIMS} non-unit dims`, formatShape(shape));
  }
  // In grad mode, an operand the backward reads is kept as it was before an in-place write over it.
  const grad = needsGrad(a, typeof b === 'number' ? null : bt);
  const keepA = grad && op === BinaryOp.Mul && sameRegion(y.data, a.data) ? a.clone() : a;
  const keepB = grad && (op === BinaryOp.Mul || op === BinaryOp.Div) && sameRegion(y.data, bt.data) ? bt.clone() : bt;
  resolveBackend(opts?.backend).binary({
    op, a: a.data, aStrides: keep.map((i) => aS[i]!), b: bt.data, bStrides: keep.map((i) => bS[i]!), y: y.data,
    shape: keep.map((i) => shape[i]!),
  });
  if (grad) recordBinary(op, a, typeof b === 'number' ? b : bt, keepA, keepB, y, opts?.backend);
  return y;
}

/** The backward of y = a op b: each operand's gradient summed over the dims it was broadcast along. */
function recordBinary(op: BinaryOp, a: F32, b: F32 | number, savedA: F32, savedB: F32, y: F32, backend: OutOptions['backend']): void {
  const aShape = a.shape.slice();
  const bShape = typeof b === 'number' ? [] : b.shape.slice();
  const be = backend ? { backend } : {};
  const neg = (t: F32): F32 => binaryOp('neg', BinaryOp.Mul, t, -1, be);
  const names = ['AddBackward', 'SubBackward', 'MulBackward', 'DivBackward'] as const;
  const saved = op === BinaryOp.Mul ? [savedA, savedB] : op === BinaryOp.Div ? [savedB, y] : [];
  recordOp(names[op], [a, b], [y], ([g], needs) => {
    const ga = (t: () => F32): F32 | null => (needs[0] ? sumToShape(t(), aShape, backend) : null);
    const gb = (t: () => F32): F32 | null => (needs[1] ? sumToShape(t(), bShape, backend) : null);
    switch (op) {
      case BinaryOp.Add:
        return [ga(() => g!), gb(() => g!)];
      case BinaryOp.Sub:
        return [ga(() => g!), gb(() => neg(g!))];
      case BinaryOp.Mul:
        return [ga(() => binaryOp('mul', BinaryOp.Mul, g!, savedB, be)), gb(() => binaryOp('mul', BinaryOp.Mul, g!, savedA, be))];
      default: {
        // d(a/b)/da = 1/b, d(a/b)/db = -a/b² = -y/b.
        const gOverB = binaryOp('div', BinaryOp.Div, g!, savedB, be);
        return [needs[0] ? sumToShape(gOverB, aShape, backend) : null,
          gb(() => neg(binaryOp('mul', BinaryOp.Mul, gOverB, y, be)))];
      }
    }
  }, saved);
}

/** a + b with NumPy broadcasting (b may be a number). `out` may be a same-shape input. */
export function add(a: F32, b: F32 | number, opts?: OutOptions): F32 {
  return binaryOp('add', BinaryOp.Add, a, b, opts);
}

/** a − b with NumPy broadcasting (b may be a number). */
export function sub(a: F32, b: F32 | number, opts?: OutOptions): F32 {
  return binaryOp('sub', BinaryOp.Sub, a, b, opts);
}

/** a · b element-wise with NumPy broadcasting (b may be a number). */
export function mul(a: F32, b: F32 | number, opts?: OutOptions): F32 {
  return binaryOp('mul', BinaryOp.Mul, a, b, opts);
}

/** a / b element-wise with NumPy broadcasting (b may be a number). IEEE semantics: x/0 is ±Infinity or NaN. */
export function div(a: F32, b: F32 | number, opts?: OutOptions): F32 {
  return binaryOp('div', BinaryOp.Div, a, b, opts);
}

