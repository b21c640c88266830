/**
 * Training steps keep memory flat with no garbage collection between them: each step runs in a fresh process
 * (node without --expose-gc, so nothing collects on purpose) and the test reads, after every step, the pool's fresh
 * allocations, the live ArrayBuffers and the resident set.
 *
 * The step is a 1-layer nn.TransformerEncoder (d_model 64, batch-first 128 × 64 tokens) with mseLoss and Adam: its
 * output, [128, 64, 64] float32, is OUT = 2 MiB. Before reuseBuffers and the pooled ones vector of `mean`, every step
 * left two OUT-sized buffers to V8's collector (the forward's result, which the pool lent and never got back, and
 * the loss's ones vector): the live ArrayBuffers grew by 2·OUT a step until V8 happened to collect, and the peak
 * resident set with them (~8 MiB a step for the seq-2048 encoder of bench/train/longseq.ts).
 */
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { addon } from '../lib/backend/native';
import * as nn from '../lib/nn';
import * as ops from '../lib/ops';
import * as optim from '../lib/optim';
import { manualSeed } from '../lib/random';
import { randn, tensor, type Tensor } from '../lib/tensor';
import { TransformerModel } from '../lib/cli/seed-model';
import { reuseBuffers, setPoolPoisoning } from '../lib/workspace';
import { expectSameWhenPoisoned } from './helpers/pool-poison';
import { runChildScript } from './helpers/child-script';

const LIB = path.resolve(__dirname, '..', 'lib');
const OUT = 128 * 64 * 64 * 4;
const WARMUP = 3;
const STEPS = 14;

interface Trace {
  /** Per step: bytes the pool had to allocate (not lent from what it held). */
  fresh: number[];
  arrayBuffers: number[];
  rss: number[];
  losses: number[];
}

function run(scoped: boolean): Trace {
  const script = `
    const { nn, optim, ops, manualSeed, randn, setNumThreads, reuseBuffers } = require(${JSON.stringify(path.join(LIB, 'index.ts'))});
    const { bufferPoolCounters } = require(${JSON.stringify(path.join(LIB, 'workspace.ts'))});
    setNumThreads(1);
    manualSeed(0);
    const model = new nn.TransformerEncoder({ layer: { dModel: 64, nhead: 2, dimFeedforward: 128, dropout: 0, batchFirst: true }, numLayers: 1 });
    const opt = new optim.Adam(model.parameters(), { lr: 1e-3 });
    const x = randn([128, 64, 64], { seed: 1 });
    const target = randn([128, 64, 64], { seed: 2 });
    const step = () => {
      opt.zeroGrad();
      const l = ops.mseLoss(model.forward(x), target);
      l.backward();
      opt.step();
      return l.item();
    };
    const t = { fresh: [], arrayBuffers: [], rss: [], losses: [] };
    for (let s = 0; s < ${WARMUP + STEPS}; s++) {
      const before = bufferPoolCounters().freshBytes;
      t.losses.push(${scoped ? 'reuseBuffers(step)' : 'step()'});
      t.fresh.push(bufferPoolCounters().freshBytes - before);
      const m = process.memoryUsage();
      t.arrayBuffers.push(m.arrayBuffers);
      t.rss.push(m.rss);
    }
    console.log(JSON.stringify(t));
  `;
  return runChildScript<Trace>(script, { ATTNODE_POOL_POISON: undefined, ATTNODE_REUSE_INTERMEDIATES: undefined });
}

const growth = (xs: number[]): number => Math.max(...xs.slice(WARMUP)) - xs[WARMUP - 1]!;
const MiB = (b: number): string => `${(b / 1048576).toFixed(2)} MiB`;

describe.skipIf(!addon)('training steps without a GC (fresh processes)', () => {
  it('a step in reuseBuffers allocates nothing after warm-up: pool, ArrayBuffers and resident set stay flat', () => {
    const t = run(true);
    // Every buffer a step takes comes back to the pool before the next: not one fresh byte.
    expect(t.fresh.slice(WARMUP)).toEqual(new Array(STEPS).fill(0));
    // What is left are small arrays below the pool's 4 KiB floor (scalars, shapes): far below one output a step.
    expect(growth(t.arrayBuffers), `ArrayBuffers grew ${MiB(growth(t.arrayBuffers))} over ${STEPS} steps`).toBeLessThan(OUT / 4);
    // The resident set: within two outputs over all the steps, room for V8 growing its young generation (before: two
    // outputs every step until V8 happened to collect).
    expect(growth(t.rss), `RSS grew ${MiB(growth(t.rss))} over ${STEPS} steps`).toBeLessThan(2 * OUT);
    expect(t.losses.every(Number.isFinite)).toBe(true);
    expect(t.losses[t.losses.length - 1]!).toBeLessThan(t.losses[0]!);
  }, 120_000);

  it('without reuseBuffers exactly the forward output leaves the pool each step, and the same steps compute the same losses', () => {
    const t = run(false);
    // The caller holds the output past the step, so the pool cannot take it back: one OUT-sized class a step,
    // nothing else (the loss's ones vector is pooled now).
    expect(t.fresh.slice(WARMUP)).toEqual(new Array(STEPS).fill(OUT));
    const scoped = run(true);
    expect(scoped.losses).toEqual(t.losses);
  }, 120_000);
});

afterEach(() => {
  setPoolPoisoning(false);
});

/**
 * `steps` steps of the seed model (nn.Transformer, dropout on) with nn.CrossEntropyLoss (a module: its forward is a
 * scope nested in reuseBuffers, its log-sum-exp pooled and saved) and Adam → the losses and the final parameters.
 */
function seedRun(wrap: <T>(fn: () => T) => T, steps: number): number[][] {
  manualSeed(3);
  const model = new TransformerModel(13, 32, 4, 2, 2, 64);
  const params = model.parameters() as Tensor<'float32'>[];
  const opt = new optim.Adam(params, { lr: 1e-2 });
  const criterion = new nn.CrossEntropyLoss({ ignoreIndex: 0, labelSmoothing: 0.1 });
  const ids = (seed: number): Tensor<'int32'> => tensor(Int32Array.from({ length: 6 * 3 }, (_, i) => 1 + ((i * 7 + seed) % 12)), [6, 3], 'int32');
  const src = ids(1);
  const tgtIn = ids(2);
  const tgtOut = ids(3);
  const mask = nn.Transformer.generateSquareSubsequentMask(6);
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    losses.push(wrap(() => {
      opt.zeroGrad();
      const out = model.forward(src, tgtIn, { tgtMask: mask });
      const loss = criterion.forward(out.reshape(-1, 13), tgtOut.reshape(-1));
      loss.backward();
      opt.step();
      return loss.item();
    }));
  }
  return [losses, ...params.map((p) => Array.from(p.data))];
}

describe('reuseBuffers', () => {
  it('changes no loss and no parameter of training steps, with the pool poisoned (nothing read after it went back)', () => {
    expectSameWhenPoisoned(() => seedRun((fn) => fn(), 4), () => seedRun(reuseBuffers, 4));
  });

  it('a classifier over 2048 rows (pooled log-sum-exp rows of nn.CrossEntropyLoss) trains the same poisoned', () => {
    const run = (wrap: <T>(fn: () => T) => T): number[][] => {
      manualSeed(4);
      const model = new nn.Linear({ inFeatures: 8, outFeatures: 5 });
      const opt = new optim.SGD(model.parameters(), { lr: 0.5 });
      const criterion = new nn.CrossEntropyLoss();
      const x = randn([2048, 8], { seed: 9 });
      const t = tensor(Int32Array.from({ length: 2048 }, (_, i) => (i * 3) % 5), [2048], 'int32');
      const losses = Array.from({ length: 3 }, () => wrap(() => {
        opt.zeroGrad();
        const l = criterion.forward(model.forward(x), t);
        l.backward();
        opt.step();
        return l.item();
      }));
      return [losses, ...model.parameters().map((p) => Array.from(p.data))];
    };
    expectSameWhenPoisoned(() => run((fn) => fn()), () => run(reuseBuffers));
  });

  it('keeps what the result reaches: a returned output survives later steps, from a nested reuseBuffers too', () => {
    manualSeed(1);
    const layer = new nn.TransformerEncoderLayer({ dModel: 16, nhead: 2, dimFeedforward: 32, dropout: 0 });
    layer.eval();
    const x = randn([40, 2, 16], { seed: 5 });
    const y = reuseBuffers(() => layer.forward(x));
    const copy = Array.from(y.data);
    setPoolPoisoning(true);
    for (let i = 0; i < 3; i++) reuseBuffers(() => ops.sum(layer.forward(x)).item());
    const nested = reuseBuffers(() => ({ inner: reuseBuffers(() => layer.forward(x)) }));
    for (let i = 0; i < 3; i++) reuseBuffers(() => ops.sum(layer.forward(x)).item());
    setPoolPoisoning(false);
    expect(Array.from(y.data)).toEqual(copy);
    expect(Array.from(nested.inner.data)).toEqual(copy);
  });

  it('refuses a non-function, naming the argument', () => {
    expect(() => reuseBuffers(42 as unknown as () => number)).toThrow(TypeError);
    expect(() => reuseBuffers(42 as unknown as () => number)).toThrow(/reuseBuffers.*fn/);
  });
});
