/**
 * Broadcasting element-wise binary ops for the JS backend.
 *
 * The index space is first coalesced: adjacent dims merge when both operands
 * (and the contiguous output) step through them as one, so a contiguous pair
 * becomes one flat loop and a row broadcast ([rows, cols] op [cols]) becomes
 * 2-D with a (cols, 1) / (0, 1) stride pattern. The innermost dim then runs a
 * tight loop with the op chosen outside it; outer dims use an odometer.
 */
import { BinaryOp } from '../backend';
import type { BinaryArgs } from '../backend';

const MAX_DIMS = 8;
// Scratch for the coalesced problem, reused across calls (no allocation per call).
const cShape = new Array<number>(MAX_DIMS).fill(0);
const cA = new Array<number>(MAX_DIMS).fill(0);
const cB = new Array<number>(MAX_DIMS).fill(0);
const counter = new Array<number>(MAX_DIMS).fill(0);

function inner(
  op: BinaryOp, a: Float32Array, ia: number, sa: number, b: Float32Array, ib: number, sb: number,
  y: Float32Array, iy: number, n: number,
): void {
  // One loop per op so the loop body has no branch; strides are loop-invariant.
  switch (op) {
    case BinaryOp.Add:
      if (sa === 1 && sb === 1) for (let i = 0; i < n; i++) y[iy + i] = a[ia + i]! + b[ib + i]!;
      else if (sb === 0) {
        const bv = b[ib]!;
        for (let i = 0; i < n; i++, ia += sa) y[iy + i] = a[ia]! + bv;
      } else for (let i = 0; i < n; i++, ia += sa, ib += sb) y[iy + i] = a[ia]! + b[ib]!;
      break;
    case BinaryOp.Sub:
      if (sa === 1 && sb === 1) for (let i = 0; i < n; i++) y[iy + i] = a[ia + i]! - b[ib + i]!;
      else if (sb === 0) {
        const bv = b[ib]!;
        for (let i = 0; i < n; i++, ia += sa) y[iy + i] = a[ia]! - bv;
      } else for (let i = 0; i < n; i++, ia += sa, ib += sb) y[iy + i] = a[ia]! - b[ib]!;
      break;
    case BinaryOp.Mul:
      if (sa === 1 && sb === 1) for (let i = 0; i < n; i++) y[iy + i] = a[ia + i]! * b[ib + i]!;
      else if (sb === 0) {
        const bv = b[ib]!;
        for (let i = 0; i < n; i++, ia += sa) y[iy + i] = a[ia]! * bv;
      } else for (let i = 0; i < n; i++, ia += sa, ib += sb) y[iy + i] = a[ia]! * b[ib]!;
      break;
    case BinaryOp.Div:
      if (sa === 1 && sb === 1) for (let i = 0; i < n; i++) y[iy + i] = a[ia + i]! / b[ib + i]!;
      else if (sb === 0) {
        const bv = b[ib]!;
        for (let i = 0; i < n; i++, ia += sa) y[iy + i] = a[ia]! / bv;
      } else for (let i = 0; i < n; i++, ia += sa, ib += sb) y[iy + i] = a[ia]! / b[ib]!;
      break;
    default:
      throw new RangeError(`binary: argument 'op' must be a BinaryOp (0..3), got ${String(op)}`);
  }
}

/** The JS backend's {@link Backend.binary}. */
export function binary(args: BinaryArgs): void {
  const { op, a, aStrides, b, bStrides, y, shape } = args;
  const nd = shape.length;
  if (nd > MAX_DIMS || aStrides.length !== nd || bStrides.length !== nd) {
    throw new RangeError(`binary: argument 'shape' must have at most ${MAX_DIMS} dims with one stride per dim for ` +
      `each operand, got shape [${shape.join(', ')}], strides [${aStrides.join(', ')}] / [${bStrides.join(', ')}]`);
  }
  let size = 1;
  for (let d = 0; d < nd; d++) size *= shape[d]!;
  if (size === 0) return;
  if (y.length < size) throw new RangeError(`binary: argument 'y' must have ${size} elements, got ${y.length}`);

  // Coalesce: drop size-1 dims, merge dim d into the previous one when both operands are
  // "contiguous across" the boundary (stride[prev] == stride[d] · shape[d]).
  let m = 0;
  for (let d = 0; d < nd; d++) {
    const n = shape[d]!;
    if (n === 1) continue;
    const sa = aStrides[d]!;
    const sb = bStrides[d]!;
    if (m > 0 && cA[m - 1] === sa * n && cB[m - 1] === sb * n) {
      cShape[m - 1] = cShape[m - 1]! * n;
      cA[m - 1] = sa;
      cB[m - 1] = sb;
    } else {
      cShape[m] = n;
      cA[m] = sa;
      cB[m] = sb;
      m++;
    }
  }
  if (m === 0) {
    // Every dim has size 1: a single element.
    inner(op, a, 0, 0, b, 0, 0, y, 0, 1);
    return;
  }
  const n = cShape[m - 1]!;
  const sa = cA[m - 1]!;
  const sb = cB[m - 1]!;
  if (m === 1) {
    if (sa === 0 && sb !== 0 && (op === BinaryOp.Add || op === BinaryOp.Mul)) {
      // Commutative: put the broadcast scalar on the right to hit the scalar loop.
      inner(op, b, 0, sb, a, 0, 0, y, 0, n);
    } else {
      inner(op, a, 0, sa, b, 0, sb, y, 0, n);
    }
    return;
  }
  for (let d = 0; d < m - 1; d++) counter[d] = 0;
  let ia = 0;
  let ib = 0;
  for (let iy = 0; iy < size; iy += n) {
    inner(op, a, ia, sa, b, ib, sb, y, iy, n);
    // Odometer over the outer m-1 dims.
    for (let d = m - 2; d >= 0; d--) {
      ia += cA[d]!;
      ib += cB[d]!;
      if (++counter[d]! < cShape[d]!) break;
      counter[d] = 0;
      ia -= cA[d]! * cShape[d]!;
      ib -= cB[d]! * cShape[d]!;
    }
  }
}
