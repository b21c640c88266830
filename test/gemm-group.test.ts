/**
 * gemmGroup: independent GEMMs in one call (a Linear's dW with its bias row sums and dX), which the native backend
 * runs side by side on the pool's threads. Every product equals its own gemm call bit for bit on every kernel path
 * and thread count (1, 2, 3 threads: in turn, side by side, side by side with a thread left over), the JS backend is
 * the reference, recorded calls (runAsync) give the same, and bad arguments are errors naming the entry and field.
 * A seed-model training step through it gives bit-identical gradients and weights at 1 and 2 threads.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { Backend, GemmArgs } from '../lib/backend/backend';
import { getBackend } from '../lib/backend/registry';
import { addon } from '../lib/backend/native';
import { runAsync } from '../lib/async';
import { getNumThreads, info, setIsa, setNumThreads } from '../lib/runtime';
import { Rng, tensor } from '../lib/tensor';
import { manualSeed, nn, optim } from '../lib/index';
import { TransformerModel } from '../lib/cli/seed-model';

const hasNative = addon !== null;
const ISAS = ['portable', 'avx2', 'avx512'] as const;
const supported = hasNative ? ISAS.filter((isa) => ISAS.indexOf(isa) <= ISAS.indexOf(info().native!.detectedIsa)) : [];

function rand(n: number, seed: number): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.normal());
}

/** A Linear's backward at [tokens, out, in] plus a batched product with bias: fresh outputs each call. */
function makeGroup(tokens: number, nOut: number, nIn: number): { gemms: GemmArgs[]; outputs: Float32Array[] } {
  const dz = rand(tokens * nOut, 1);
  const x = rand(tokens * nIn, 2);
  const w = rand(nOut * nIn, 3);
  const dw = new Float32Array(nOut * nIn);
  const db = new Float32Array(nOut);
  const dx = new Float32Array(tokens * nIn);
  const qa = rand(3 * 5 * 7, 4);
  const qb = rand(3 * 7 * 6, 5);
  const bias = rand(6, 6);
  const bq = new Float32Array(3 * 5 * 6);
  return {
    gemms: [
      { a: dz, b: x, c: dw, m: nOut, n: nIn, k: tokens, transA: true, rowSumsA: db },
      { a: dz, b: w, c: dx, m: tokens, n: nIn, k: nOut },
      { a: qa, b: qb, c: bq, m: 5, n: 6, k: 7, bias, alpha: 0.5, batch: 3, strideA: 35, strideB: 42, strideC: 30 },
    ],
    outputs: [dw, db, dx, bq],
  };
}

const SHAPES: [number, number, number][] = [[64, 96, 80], [37, 100, 53], [256, 256, 256]];

function separate(be: Backend, tokens: number, nOut: number, nIn: number): Float32Array[] {
  const g = makeGroup(tokens, nOut, nIn);
  for (const args of g.gemms) be.gemm(args);
  return g.outputs;
}

function grouped(be: Backend, tokens: number, nOut: number, nIn: number): Float32Array[] {
  const g = makeGroup(tokens, nOut, nIn);
  be.gemmGroup({ gemms: g.gemms });
  return g.outputs;
}

describe('gemmGroup', () => {
  const threads = hasNative ? getNumThreads() : 1;
  afterAll(() => {
    if (!hasNative) return;
    setIsa(info().native!.detectedIsa);
    setNumThreads(threads);
  });

  it('JS backend: equal to its gemm calls one by one', () => {
    const js = getBackend('js');
    for (const [t, o, i] of SHAPES.slice(0, 2)) {
      const want = separate(js, t, o, i);
      grouped(js, t, o, i).forEach((got, k) => expect(Array.from(got)).toEqual(Array.from(want[k]!)));
    }
  });

  it.skipIf(!hasNative)('native: bit-identical to separate gemm calls on every kernel path at 1, 2 and 3 threads, close to JS', () => {
    const be = getBackend('native');
    const js = getBackend('js');
    for (const [t, o, i] of SHAPES) {
      const ref = separate(js, t, o, i);
      for (const isa of supported) {
        setIsa(isa);
        setNumThreads(2);
        const want = separate(be, t, o, i);
        want.forEach((w, k) => {
          const r = ref[k]!;
          const worst = w.reduce((m, v, j) => Math.max(m, Math.abs(v - r[j]!) / (1 + Math.abs(r[j]!))), 0);
          expect(worst, `${isa} ${t}×${o}×${i} output ${k} vs JS`).toBeLessThan(1e-4);
        });
        for (const n of [1, 2, 3]) {
          setNumThreads(n);
          grouped(be, t, o, i).forEach((got, k) => {
            expect(Array.from(got), `${isa} ${t}×${o}×${i} output ${k} at ${n} thread(s)`).toEqual(Array.from(want[k]!));
          });
        }
      }
    }
  });

  it.skipIf(!hasNative)('recorded inside runAsync: the same products', async () => {
    setNumThreads(2);
    const be = getBackend('native');
    const want = separate(be, 64, 96, 80);
    const g = makeGroup(64, 96, 80);
    await runAsync(() => be.gemmGroup({ gemms: g.gemms }));
    g.outputs.forEach((got, k) => expect(Array.from(got)).toEqual(Array.from(want[k]!)));
  });

  const names = hasNative ? (['js', 'native'] as const) : (['js'] as const);
  it.each(names)('bad arguments are errors naming the entry and the field (%s)', (name) => {
    const be = getBackend(name);
    const g = makeGroup(8, 9, 10).gemms;
    expect(() => be.gemmGroup({ gemms: null as unknown as GemmArgs[] })).toThrow(TypeError);
    expect(() => be.gemmGroup({ gemms: null as unknown as GemmArgs[] })).toThrow(/'gemms' must be an array/);
    expect(() => be.gemmGroup({ gemms: [] })).toThrow(/'gemms' must hold 1 to 8 gemm arguments, got 0/);
    expect(() => be.gemmGroup({ gemms: new Array<GemmArgs>(9).fill(g[0]!) })).toThrow(/got 9/);
    expect(() => be.gemmGroup({ gemms: [g[0]!, 5 as unknown as GemmArgs] })).toThrow(/'gemms\[1\]' must be an object/);
    // dX written into X, which the other entry reads.
    expect(() => be.gemmGroup({ gemms: [g[0]!, { ...g[1]!, c: g[0]!.b }] }))
      .toThrow(/gemms\[1\]: output 'c' overlaps input 'b of gemms\[0\]'/);
    // Two entries writing one C.
    expect(() => be.gemmGroup({ gemms: [g[1]!, { ...g[1]!, a: g[0]!.b, b: g[1]!.b }] })).toThrow(/output 'c' overlaps input 'c of gemms\[1\]'/);
    // One entry's row sums in another's output.
    expect(() => be.gemmGroup({ gemms: [{ ...g[0]!, rowSumsA: g[1]!.c.subarray(0, 9) }, g[1]!] }))
      .toThrow(/gemms\[0\]: output 'rowSumsA' overlaps input 'c of gemms\[1\]'/);
  });

  it.skipIf(!hasNative)("native: an entry's own bad field names the entry", () => {
    const be = getBackend('native');
    const g = makeGroup(8, 9, 10).gemms;
    expect(() => be.gemmGroup({ gemms: [g[0]!, { ...g[1]!, m: -1 }] })).toThrow(/gemms\[1\].*'m'/);
    expect(() => be.gemmGroup({ gemms: [g[0]!, { ...g[1]!, c: new Float32Array(3) }] })).toThrow(RangeError);
    expect(() => be.gemmGroup({ gemms: [g[0]!, { ...g[1]!, c: new Float32Array(3) }] })).toThrow(/gemms\[1\]: argument 'c'/);
  });

  it.skipIf(!hasNative)('a seed-model training step (its Linears backward through gemmGroup): gradients and weights bit-identical at 1 and 2 threads', () => {
    const run = (threads: number): number[][] => {
      setNumThreads(threads);
      manualSeed(3);
      const model = new TransformerModel(50, 32, 4, 1, 1, 64).train();
      const opt = new optim.Adam(model.parameters(), { lr: 1e-3 });
      const rng = new Rng(4);
      const ids = (n: number): Int32Array => Int32Array.from({ length: n }, () => rng.nextUint32() % 50);
      const src = tensor(ids(12 * 3), [12, 3], 'int32');
      const tgt = tensor(ids(12 * 3), [12, 3], 'int32');
      const out = tensor(ids(12 * 3), [36], 'int32');
      const mask = nn.Transformer.generateSquareSubsequentMask(12);
      const loss = new nn.CrossEntropyLoss().forward(model.forward(src, tgt, { tgtMask: mask }).reshape(-1, 50), out);
      loss.backward();
      const grads = model.parameters().map((p) => Array.from(p.grad!.contiguous().data));
      opt.step();
      return [...grads, ...model.parameters().map((p) => Array.from(p.contiguous().data))];
    };
    const one = run(1);
    const two = run(2);
    expect(two.length).toBe(one.length);
    two.forEach((t, i) => expect(t, `tensor ${i}`).toEqual(one[i]));
  });
});
