/**
 * The backward kernels of the native backend (softmaxBackward, layerNormBackward,
 * rmsNormBackward, activationBackward, embeddingBackward, crossEntropy,
 * crossEntropyBackward) against the JS backend's reference, on every kernel
 * path this CPU runs (setIsa) and, end to end in a fresh process, under
 * ATTNODE_ISA; results identical for 1 and 2 threads; bad arguments are
 * errors naming them.
 */
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ActivationGrad, type Backend, type OpArgs, type OpName } from '../lib/backend/backend';
import { getBackend } from '../lib/backend/registry';
import { addon } from '../lib/backend/native';
import { getNumThreads, info, setIsa, setNumThreads } from '../lib/runtime';
import { Rng } from '../lib/tensor';
import { runChildScript } from './helpers/child-script';

const hasNative = addon !== null;
const supported = hasNative ? (['portable', 'avx2', 'avx512'] as const).filter((isa) => {
  const order = ['portable', 'avx2', 'avx512'];
  return order.indexOf(isa) <= order.indexOf(info().native!.detectedIsa);
}) : [];

function randArray(n: number, seed: number, scale = 1): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.normal() * scale);
}

/** Each case: an op with its arguments (fresh outputs per run) and the outputs to compare. */
interface KernelCase {
  name: string;
  op: OpName;
  make: () => { args: OpArgs[OpName]; outputs: Float32Array[] };
}

const rows = 37;
const cols = 45;
const n = rows * cols;
const ids = Int32Array.from({ length: rows }, (_, i) => (i * 7) % 13);
const target = Int32Array.from({ length: rows }, (_, i) => (i % 9 === 4 ? -100 : (i * 5) % cols));
const weight = Float32Array.from({ length: cols }, (_, i) => 0.5 + (i % 5) / 4);
const x = randArray(n, 1, 2);
const dy = randArray(n, 2);
const probs = (() => {
  const p = new Float32Array(n);
  getBackend('js').softmax({ x, y: p, rows, cols });
  return p;
})();

const cases: KernelCase[] = [
  ...[false, true].map((log): KernelCase => ({
    name: `softmaxBackward${log ? ' (log)' : ''}, strided rows`, op: 'softmaxBackward',
    make: () => {
      const dx = new Float32Array((rows - 1) * (cols + 3) + cols);
      return { args: { y: probs, dy, dx, rows, cols, log, dxRowStride: cols + 3 }, outputs: [dx] };
    },
  })),
  ...[true, false].map((affine): KernelCase => ({
    name: `layerNormBackward${affine ? '' : ' without weight'}`, op: 'layerNormBackward',
    make: () => {
      const dx = new Float32Array(n);
      const dw = affine ? new Float32Array(cols) : null;
      const db = affine ? new Float32Array(cols) : null;
      return {
        args: { x, weight: affine ? weight : null, dy, dx, dweight: dw, dbias: db, rows, cols, eps: 1e-5 },
        outputs: [dx, ...(dw ? [dw, db!] : [])],
      };
    },
  })),
  ...[true, false].map((affine): KernelCase => ({
    // x plays the forward's output y and rstd the rows' 1/sigma: xhat = (y - bias) / weight (see LayerNormBackwardArgs).
    name: `layerNormBackward from the output (rstd, bias)${affine ? '' : ' without weight or bias'}`, op: 'layerNormBackward',
    make: () => {
      const dx = new Float32Array(n);
      const dw = affine ? new Float32Array(cols) : null;
      const db = affine ? new Float32Array(cols) : null;
      const rstd = Float32Array.from({ length: rows }, (_, i) => 0.25 + (i % 7) / 3);
      const bias = affine ? Float32Array.from({ length: cols }, (_, i) => ((i % 3) - 1) / 4) : null;
      return {
        args: { x, weight: affine ? weight : null, dy, dx, dweight: dw, dbias: db, rows, cols, eps: 1e-5, rstd, bias },
        outputs: [dx, ...(dw ? [dw, db!] : [])],
      };
    },
  })),
  {
    name: 'rmsNormBackward', op: 'rmsNormBackward',
    make: () => {
      const dx = new Float32Array(n);
      const dw = new Float32Array(cols);
      return { args: { x, weight, dy, dx, dweight: dw, rows, cols, eps: 1e-6 }, outputs: [dx, dw] };
    },
  },
  ...([ActivationGrad.Relu, ActivationGrad.Gelu, ActivationGrad.GeluTanh, ActivationGrad.Silu, ActivationGrad.Sigmoid,
    ActivationGrad.Tanh] as const).map((op): KernelCase => ({
    name: `activationBackward ${ActivationGrad[op]}`, op: 'activationBackward',
    make: () => {
      const dx = new Float32Array(n);
      // Sigmoid and tanh take their output.
      const src = op === ActivationGrad.Sigmoid ? probs : op === ActivationGrad.Tanh ? x.map(Math.tanh) : x;
      return { args: { op, x: src, dy, dx }, outputs: [dx] };
    },
  })),
  {
    name: 'embeddingBackward with paddingIdx', op: 'embeddingBackward',
    make: () => {
      const dw = new Float32Array(13 * cols).fill(9);
      return { args: { dy, ids, dweight: dw, num: 13, dim: cols, paddingIdx: 6 }, outputs: [dw] };
    },
  },
  {
    name: 'crossEntropy with weights, ignoreIndex, smoothing', op: 'crossEntropy',
    make: () => {
      const loss = new Float32Array(rows);
      const lse = new Float32Array(rows);
      return { args: { logits: x, target, weight, ignoreIndex: -100, labelSmoothing: 0.1, loss, lse, rows, cols }, outputs: [loss, lse] };
    },
  },
  {
    name: 'crossEntropyBackward', op: 'crossEntropyBackward',
    make: () => {
      const lse = new Float32Array(rows);
      getBackend('js').crossEntropy({ logits: x, target, weight, ignoreIndex: -100, labelSmoothing: 0.1, loss: new Float32Array(rows), lse, rows, cols });
      const dx = new Float32Array(n);
      return {
        args: { logits: x, lse, target, weight, ignoreIndex: -100, labelSmoothing: 0.1, dloss: dy.subarray(0, rows), dlossStride: 1, dlogits: dx, rows, cols },
        outputs: [dx],
      };
    },
  },
];

function run(be: Backend, c: KernelCase): Float32Array[] {
  const { args, outputs } = c.make();
  (be[c.op] as (a: OpArgs[OpName]) => void)(args);
  return outputs;
}

function closeTo(got: Float32Array, want: Float32Array, what: string): void {
  let scale = 1e-6;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
  expect(worst / scale, `${what}: max error ${worst} (scale ${scale})`).toBeLessThanOrEqual(2e-6);
}

describe.skipIf(!hasNative)('backward kernels: native (every kernel path, 1 and 2 threads) against the JS reference', () => {
  const threads = hasNative ? getNumThreads() : 1;
  afterAll(() => {
    if (!hasNative) return;
    setIsa(info().native!.detectedIsa);
    setNumThreads(threads);
  });

  it.each(cases.map((c) => [c.name, c] as const))('%s', (_, c) => {
    const want = run(getBackend('js'), c);
    for (const isa of supported) {
      setIsa(isa);
      setNumThreads(1);
      const one = run(getBackend('native'), c);
      setNumThreads(2);
      const two = run(getBackend('native'), c);
      one.forEach((o, i) => {
        closeTo(o, want[i]!, `${c.name} on ${isa}, output ${i}`);
        expect(Array.from(two[i]!), `${c.name} on ${isa}: 2 threads differ from 1`).toEqual(Array.from(o));
      });
    }
  });

  it('bad arguments are errors naming them', () => {
    const be = getBackend('native');
    const loss = new Float32Array(2);
    const lse = new Float32Array(2);
    const logits = new Float32Array(6);
    expect(() => be.crossEntropy({ logits, target: Int32Array.of(0, 3), weight: null, ignoreIndex: -100, labelSmoothing: 0, loss, lse, rows: 2, cols: 3 }))
      .toThrow(/target 3 at position 1 is neither a class in \[0, 3\) nor ignoreIndex -100/);
    expect(() => be.crossEntropy({ logits, target: Int32Array.of(0, 1), weight: null, ignoreIndex: -100, labelSmoothing: 1.5, loss, lse, rows: 2, cols: 3 }))
      .toThrow(RangeError);
    expect(() => be.layerNormBackward({ x: new Float32Array(6), weight: new Float32Array(2), dy: new Float32Array(6), dx: new Float32Array(6), dweight: null, dbias: null, rows: 2, cols: 3, eps: 1e-5 }))
      .toThrow(/weight/);
    expect(() => be.activationBackward({ op: 9 as ActivationGrad, x: new Float32Array(2), dy: new Float32Array(2), dx: new Float32Array(2) }))
      .toThrow(/op/);
    expect(() => be.embeddingBackward({ dy: new Float32Array(4), ids: Int32Array.of(0, 5), dweight: new Float32Array(8), num: 4, dim: 2, paddingIdx: -1 }))
      .toThrow(/index 5 at position 1 is out of range/);
    const shared = new Float32Array(12);
    expect(() => be.softmaxBackward({ y: shared.subarray(0, 6), dy: new Float32Array(6), dx: shared.subarray(3, 9), rows: 2, cols: 3 }))
      .toThrow(/overlap/);
  });
});

// End to end in a fresh process per kernel path: the gradient of a small linear + cross-entropy model.
const script = `
const { ops, tensor, randn } = require(${JSON.stringify(path.resolve(__dirname, '..', 'lib', 'index.ts'))});
const x = randn([6, 5], { seed: 1 }).requiresGrad_();
const w = randn([4, 5], { seed: 2 }).requiresGrad_();
const t = tensor(new Int32Array([0, 3, 1, 2, 2, 0]), [6], 'int32');
const loss = ops.crossEntropy(ops.layerNorm(ops.linear(x, w, null, { activation: 'gelu' }), 4), t, { labelSmoothing: 0.1 });
loss.backward();
console.log(JSON.stringify({ isa: require(${JSON.stringify(path.resolve(__dirname, '..', 'lib', 'runtime.ts'))}).info().native.isa,
  loss: loss.item(), gx: Array.from(x.grad.data), gw: Array.from(w.grad.data) }));
`;

describe.skipIf(!hasNative)('ATTNODE_ISA: training gradients on every kernel path (fresh processes)', () => {
  it('every path gives the same gradients to float32 rounding', () => {
    const results = supported.map((isa) => {
      const out = runChildScript<{ isa: string; loss: number; gx: number[]; gw: number[] }>(script, { ATTNODE_ISA: isa });
      expect(out.isa).toBe(isa);
      return out;
    });
    const ref = results[0]!;
    for (const r of results.slice(1)) {
      expect(r.loss).toBeCloseTo(ref.loss, 5);
      closeTo(Float32Array.from(r.gx), Float32Array.from(ref.gx), `gx on ${r.isa}`);
      closeTo(Float32Array.from(r.gw), Float32Array.from(ref.gw), `gw on ${r.isa}`);
    }
  });
});
