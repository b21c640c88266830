/**
 * Layouts for backward functions: gradients arrive in whatever strides the
 * next op produced (a transpose's backward gives a transposed view, a sum's
 * an expanded one), while the flat and row-wise backward kernels read the
 * gradient in the same element order as the tensor saved by the forward.
 * These helpers line them up, copying only when the orders differ.
 */
import type { OpOptions } from '../op-options';
import { resolveBackend } from '../backend/registry';
import { allocateUninitialized } from '../dtype';
import { Tensor } from '../tensor';
import { flattenTrailing, isDense, planRows, type RowLayout } from './rows';
import type { F32 } from './checks';

/** Same strides on every dim of size > 1. */
export function sameLayout(a: F32, b: F32): boolean {
  return a.strides.every((s, d) => s === b.strides[d] || a.shape[d] === 1);
}

/**
 * `g` with the memory order of `ref` (a dense tensor of the same shape): `g`
 * itself when its strides already match, else a copy laid out like `ref`, so
 * a flat kernel can read both element by element.
 */
export function inLayoutOf(g: F32, ref: F32, backend?: OpOptions['backend']): F32 {
  if (sameLayout(g, ref) && isDense(g.shape, g.strides)) return g;
  const out = new Tensor(allocateUninitialized('float32', ref.size), ref.shape, 'float32', ref.strides);
  if (g.size > 0) {
    resolveBackend(backend).copy({ x: g.data, xStrides: g.strides, y: out.data, yStrides: out.strides, shape: g.shape });
  }
  return out;
}

/** A new uninitialised tensor with `ref`'s shape and strides (`ref` dense). */
export function emptyLike(ref: F32): F32 {
  return new Tensor(allocateUninitialized('float32', ref.size), ref.shape, 'float32', ref.strides);
}

/** Rows of x (the forward's saved input), of its gradient g and of a fresh dx, walked in one order. */
export interface GradRows {
  x: F32;
  g: F32;
  dx: F32;
  rows: number;
  xRowStride?: number;
  dyRowStride?: number;
  dxRowStride?: number;
}

function rowStrides(x: RowLayout, g: RowLayout, dx: RowLayout): Pick<GradRows, 'xRowStride' | 'dyRowStride' | 'dxRowStride'> {
  return {
    ...(x.rowStride !== undefined ? { xRowStride: x.rowStride } : {}),
    ...(g.rowStride !== undefined ? { dyRowStride: g.rowStride } : {}),
    ...(dx.rowStride !== undefined ? { dxRowStride: dx.rowStride } : {}),
  };
}

/**
 * Plans a row-wise backward over the last `trailing` dims: x and g as rows
 * in the same order (through their row strides when they allow, else
 * contiguous copies), and dx allocated in that order.
 */
export function gradRows(x: F32, g: F32, trailing: number, backend?: OpOptions['backend']): GradRows {
  const cols = x.shape.slice(x.ndim - trailing).reduce((p, n) => p * n, 1);
  const attempt = (xs: F32, gs: F32): GradRows | null => {
    const xf = flattenTrailing(xs, trailing);
    const gf = flattenTrailing(gs, trailing);
    if (!xf || !gf) return null;
    const withG = planRows(xf.shape, xf.strides, gf.strides, cols, false);
    const fresh = planRows(xf.shape, xf.strides, null, cols, false);
    if (!withG || !fresh) return null;
    const dxStrides = [...fresh.yStrides.slice(0, -1), ...trailingStrides(x.shape, trailing)];
    const dx = new Tensor(allocateUninitialized('float32', x.size), x.shape, 'float32', dxStrides);
    return { x: xs, g: gs, dx, rows: withG.x.rows, ...rowStrides(withG.x, withG.y, fresh.y) };
  };
  return attempt(x, g) ?? attempt(x.contiguous(backend), g.contiguous(backend))!;
}

function trailingStrides(shape: readonly number[], trailing: number): number[] {
  const out = new Array<number>(trailing);
  let s = 1;
  for (let i = trailing - 1; i >= 0; i--) {
    out[i] = s;
    s *= shape[shape.length - trailing + i]!;
  }
  return out;
}
