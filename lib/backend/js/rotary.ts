/**
 * Rotary position embedding in plain TypeScript: the reference of the native kernel. Every step is rounded to
 * float32 as PyTorch computes it (the angle float32(position) · invFreq in float32, cos/sin rounded once, each
 * product rounded before the sum), so both backends agree to the last bit up to the libm cos/sin.
 */
import type { RopeArgs } from '../backend';

const f = Math.fround;

export function rope(args: RopeArgs): void {
  const { x, y, batch, seq, heads, dim, rotaryDim, xStrides, yStrides, positions, positionsBatchStride, invFreq, interleaved } =
    args;
  const half = rotaryDim >> 1;
  if (rotaryDim % 2 !== 0 || rotaryDim > dim) {
    throw new RangeError(`rope: argument 'rotaryDim' must be even and at most dim = ${dim}, got ${rotaryDim}`);
  }
  const cos = new Float32Array(half);
  const sin = new Float32Array(half);
  for (let b = 0; b < batch; b++) {
    for (let l = 0; l < seq; l++) {
      const pos = positions[b * positionsBatchStride + l]!;
      if (!(pos >= 0)) throw new RangeError(`rope: argument 'positions' must hold positions >= 0, got ${pos}`);
      const pf = f(pos);
      for (let i = 0; i < half; i++) {
        const a = f(pf * invFreq[i]!);
        cos[i] = Math.cos(a);
        sin[i] = Math.sin(a);
      }
      for (let h = 0; h < heads; h++) {
        const xo = b * xStrides[0] + l * xStrides[1] + h * xStrides[2];
        const yo = b * yStrides[0] + l * yStrides[1] + h * yStrides[2];
        for (let i = 0; i < half; i++) {
          const i0 = interleaved ? 2 * i : i;
          const i1 = interleaved ? 2 * i + 1 : i + half;
          const x0 = x[xo + i0]!;
          const x1 = x[xo + i1]!;
          const c = cos[i]!;
          const s = sin[i]!;
          // Products of two float32 values are exact in double; each is rounded, then the sum.
          y[yo + i0] = f(x0 * c) - f(x1 * s);
          y[yo + i1] = f(x1 * c) + f(x0 * s);
        }
        if (yo !== xo || y !== x) for (let j = rotaryDim; j < dim; j++) y[yo + j] = x[xo + j]!;
      }
    }
  }
}
