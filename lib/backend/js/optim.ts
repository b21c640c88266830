/**
 * Fused optimizer updates and gradient-norm clipping in plain TypeScript: the reference of
 * native/kernels/optim/. Every step is PyTorch 1.13's float32 op (see {@link SgdStepArgs},
 * {@link AdamStepArgs}): each Python scalar rounded to float32 once, `add(x, alpha=a)` a fused multiply-add
 * (evaluated in double and rounded once: the product of two float32 values is exact in double), every other
 * product, quotient and sum rounded to float32. So this backend and the native kernels agree to the last bit
 * up to the rare double rounding of the emulated fma.
 */
import type { AdamStepArgs, ClipGradNormArgs, SgdStepArgs } from '../backend';

const f = Math.fround;

/** a·b + c rounded once to float32 (a, b, c float32 values). */
function fma(a: number, b: number, c: number): number {
  return f(a * b + c);
}

function checkList(op: string, name: string, list: readonly Float32Array[] | null, params: readonly Float32Array[]): readonly Float32Array[] {
  if (!list || list.length !== params.length) {
    throw new RangeError(`${op}: argument '${name}' must have one entry per tensor (${params.length}), got ${list ? list.length : String(list)}`);
  }
  list.forEach((a, i) => {
    if (a.length !== params[i]!.length) {
      throw new RangeError(`${op}: argument '${name}[${i}]' must have ${params[i]!.length} elements (the length of params[${i}]), got ${a.length}`);
    }
  });
  return list;
}

export function sgdStep(args: SgdStepArgs): void {
  const { params, lr, momentum, dampening, weightDecay, nesterov, maximize } = args;
  const grads = checkList('sgdStep', 'grads', args.grads, params);
  const hasMomentum = momentum !== 0;
  const buffers = hasMomentum ? checkList('sgdStep', 'momentumBuffers', args.momentumBuffers, params) : null;
  const init = args.initMomentum;
  if (hasMomentum && (!init || init.length !== params.length)) {
    throw new RangeError(`sgdStep: argument 'initMomentum' must have one entry per tensor (${params.length})`);
  }
  const negLr = f(-lr);
  const wd = f(weightDecay);
  const mom = f(momentum);
  const omd = f(1 - dampening);
  for (let t = 0; t < params.length; t++) {
    const p = params[t]!;
    const g = grads[t]!;
    const buf = buffers ? buffers[t]! : null;
    const first = hasMomentum && init![t] === 1;
    for (let i = 0; i < p.length; i++) {
      let d = maximize ? -g[i]! : g[i]!;
      if (weightDecay !== 0) d = fma(p[i]!, wd, d);
      if (buf) {
        const b = first ? d : fma(d, omd, f(buf[i]! * mom));
        buf[i] = b;
        d = nesterov ? fma(b, mom, d) : b;
      }
      p[i] = fma(d, negLr, p[i]!);
    }
  }
}

export function adamStep(args: AdamStepArgs): void {
  const { params, steps, lr, beta1, beta2, eps, weightDecay, amsgrad, maximize, decoupled } = args;
  const grads = checkList('adamStep', 'grads', args.grads, params);
  const expAvgs = checkList('adamStep', 'expAvgs', args.expAvgs, params);
  const expAvgSqs = checkList('adamStep', 'expAvgSqs', args.expAvgSqs, params);
  const maxSqs = amsgrad ? checkList('adamStep', 'maxExpAvgSqs', args.maxExpAvgSqs, params) : null;
  if (steps.length !== params.length) {
    throw new RangeError(`adamStep: argument 'steps' must have one entry per tensor (${params.length}), got ${steps.length}`);
  }
  const b1 = f(beta1);
  const omb1 = f(1 - beta1);
  const b2 = f(beta2);
  const omb2 = f(1 - beta2);
  const epsF = f(eps);
  const wd = f(weightDecay);
  const decay = f(1 - lr * weightDecay);
  for (let t = 0; t < params.length; t++) {
    const step = steps[t]!;
    if (!(Number.isInteger(step) && step >= 1)) throw new RangeError(`adamStep: argument 'steps'[${t}] must be an integer >= 1, got ${step}`);
    // Python forms these in double: 1 - beta ** step, lr / bc1, math.sqrt(bc2).
    const bc1 = 1 - beta1 ** step;
    const bc2 = 1 - beta2 ** step;
    const bc2Sqrt = f(Math.sqrt(bc2));
    const negStepSize = f(-(lr / bc1));
    const p = params[t]!;
    const g = grads[t]!;
    const m = expAvgs[t]!;
    const v = expAvgSqs[t]!;
    const vmax = maxSqs ? maxSqs[t]! : null;
    for (let i = 0; i < p.length; i++) {
      let pi = p[i]!;
      let gi = maximize ? -g[i]! : g[i]!;
      if (decoupled) pi = f(pi * decay);
      else if (weightDecay !== 0) gi = fma(pi, wd, gi);
      const mi = fma(gi, omb1, f(m[i]! * b1));
      const vi = fma(f(omb2 * gi), gi, f(v[i]! * b2));
      m[i] = mi;
      v[i] = vi;
      let second = vi;
      if (vmax) {
        // torch.maximum: NaN propagates.
        const old = vmax[i]!;
        second = old > vi || old !== old ? old : vi;
        if (vi !== vi) second = vi;
        vmax[i] = second;
      }
      const denom = f(f(f(Math.sqrt(second)) / bc2Sqrt) + epsF);
      p[i] = f(pi + f(f(negStepSize * mi) / denom));
    }
  }
}

export function clipGradNorm(args: ClipGradNormArgs): void {
  const { grads, maxNorm, normType: p, totalNorm } = args;
  if (!(p > 0)) throw new RangeError(`clipGradNorm: argument 'normType' must be a positive number or Infinity, got ${p}`);
  if (totalNorm.length < 1) throw new RangeError(`clipGradNorm: argument 'totalNorm' must have at least 1 element, got 0`);
  const inf = p === Infinity;
  // The norm of order p of `values` (in double), rounded to float32.
  const norm = (values: ArrayLike<number>): number => {
    let s = 0;
    if (inf) {
      for (let i = 0; i < values.length; i++) {
        const a = Math.abs(values[i]!);
        if (a > s || a !== a) s = a;
        if (s !== s) break;
      }
      return f(s);
    }
    for (let i = 0; i < values.length; i++) {
      const a = Math.abs(values[i]!);
      s += p === 2 ? a * a : p === 1 ? a : a ** p;
    }
    return f(p === 1 ? s : p === 2 ? Math.sqrt(s) : s ** (1 / p));
  };
  const total = norm(grads.map(norm));
  totalNorm[0] = total;
  // clamp(max=1) keeps a NaN coefficient (Math.min does too).
  const coef = Math.min(f(f(1 / f(total + f(1e-6))) * f(maxNorm)), 1);
  if (coef === 1) return;
  for (const g of grads) for (let i = 0; i < g.length; i++) g[i] = f(g[i]! * coef);
}
