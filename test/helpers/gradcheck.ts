/**
 * Numerical gradient checks: the gradient backward() accumulates into each
 * leaf against central finite differences of the same function, evaluated in
 * noGrad. Inputs are small float32 tensors; the function returns a
 * one-element tensor. float32 differences are noisy, so the tolerance is
 * loose (default 2e-2 relative to the largest gradient): it catches wrong
 * formulas, broadcasting and view mistakes, not last-bit differences (the
 * PyTorch fixtures hold those).
 */
import { expect } from 'vitest';
import { noGrad } from '../../lib/autograd/index';
import type { Tensor } from '../../lib/tensor';

type F32 = Tensor<'float32'>;

export function gradcheck(f: (xs: F32[]) => F32, inputs: F32[], opts: { eps?: number; rtol?: number } = {}): void {
  const eps = opts.eps ?? 1e-2;
  const rtol = opts.rtol ?? 2e-2;
  for (const x of inputs) {
    x.requiresGrad = true;
    x.grad = null;
  }
  const y = f(inputs);
  expect(y.size).toBe(1);
  y.backward();
  inputs.forEach((x, k) => {
    expect(x.isContiguous()).toBe(true);
    const analytic = x.grad ? Float64Array.from(x.grad.contiguous().data) : new Float64Array(x.size);
    const numeric = new Float64Array(x.size);
    noGrad(() => {
      for (let i = 0; i < x.size; i++) {
        const v = x.data[i]!;
        x.data[i] = v + eps;
        const up = f(inputs).contiguous().data[0]!;
        x.data[i] = v - eps;
        const down = f(inputs).contiguous().data[0]!;
        x.data[i] = v;
        numeric[i] = (up - down) / (2 * eps);
      }
    });
    let scale = 1e-3;
    for (let i = 0; i < x.size; i++) scale = Math.max(scale, Math.abs(numeric[i]!));
    for (let i = 0; i < x.size; i++) {
      if (!(Math.abs(analytic[i]! - numeric[i]!) <= rtol * scale)) {
        expect.fail(`input ${k}, element ${i}: backward gives ${analytic[i]}, finite differences ${numeric[i]} (scale ${scale})`);
      }
    }
  });
}
