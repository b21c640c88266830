/**
 * Optimizers, LR schedulers and clipGradNorm against PyTorch 1.13, step by step, on every backend (and on the
 * native backend on every kernel path this CPU has): test/fixtures/optim/steps.safetensors, written by
 * scripts/gen_optim_fixtures.py. Each case runs SGD/Adam/AdamW with some option set from the same five
 * parameters (one of them a transposed view, so its gradients are re-laid to its memory) through gradients given
 * per step (parameters without one skipped), with clipping and schedulers where the case has them, and compares
 * every parameter after every step, the final optimizer state, the learning rates and the clipping norms.
 *
 * Gradients are attached as `p.grad` by hand (the tests do not need autograd).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSafetensors, type SafetensorsFile } from '../lib/io/safetensors';
import * as nn from '../lib/nn';
import * as ops from '../lib/ops';
import * as optim from '../lib/optim';
import { Tensor, tensor, zeros } from '../lib/tensor';
import { getBackend } from '../lib/backend/registry';
import { withContext } from '../lib/context';
import { info, setIsa, setNumThreads, getNumThreads, type IsaName } from '../lib/runtime';
import { runAsync } from '../lib/async';
import type { BackendName } from '../lib/backend/backend';
import { backends } from './helpers/backends';
import { TransformerModel } from '../lib/cli/seed-model';
import { expectClose } from './helpers/reference';

type F32 = Tensor<'float32'>;

/** Attaches a gradient as a backward would leave it (the tests give PyTorch's gradients directly). */
function setGrad(p: Tensor, g: Tensor | null): void {
  p.grad = g as F32 | null;
}
const gradOf = (p: Tensor): F32 | null => p.grad;

interface CaseMeta {
  optimizer: 'SGD' | 'Adam' | 'AdamW';
  options: Record<string, unknown>;
  groups: ({ params: number[] } & Record<string, unknown>)[] | null;
  grads: number[][];
  scheduler: { type: 'LambdaLR'; dModel: number; warmup: number } | { type: 'StepLR'; stepSize: number; gamma: number } | null;
  clip: { maxNorm: number; normType: number | 'inf' } | null;
  lrs: number[][];
  total_norms: number[];
  state_steps: Record<string, number>;
  state_has: number[];
  state_dict_groups: Record<string, unknown>[];
  last_lr: number[] | null;
}

const FIXTURE = join(__dirname, 'fixtures', 'optim', 'steps.safetensors');
let file: SafetensorsFile;
const cases = (): [string, CaseMeta][] =>
  Object.entries(file.metadata ?? {}).map(([name, json]) => [name, JSON.parse(json) as CaseMeta]);

beforeAll(async () => {
  file = await loadSafetensors(FIXTURE);
});

const t = (name: string): F32 => file.tensors[name] as F32;
const values = (x: Tensor): Float32Array => (x.clone() as F32).data;

/** Parameter 0 is a transposed view ([4, 6] with strides [1, 4]); the others are contiguous copies. */
function makeParams(name: string): F32[] {
  return [0, 1, 2, 3, 4].map((i) => {
    const init = t(`${name}.init.p${i}`);
    if (i === 0) return tensor(values(init.t()), [init.shape[1]!, init.shape[0]!]).t() as F32;
    return init.clone() as F32;
  });
}

function makeOptimizer(meta: CaseMeta, params: F32[]): optim.Optimizer<{ lr: number }> {
  const input = meta.groups
    ? meta.groups.map(({ params: idx, ...rest }) => ({ ...rest, params: idx.map((i) => params[i]!) }))
    : params;
  const Ctor = optim[meta.optimizer] as unknown as new (p: unknown, o: unknown) => optim.Optimizer<{ lr: number }>;
  return new Ctor(input, meta.options);
}

function makeScheduler(meta: CaseMeta, opt: optim.Optimizer<{ lr: number }>): optim.lrScheduler.LRScheduler | null {
  const s = meta.scheduler;
  if (!s) return null;
  if (s.type === 'StepLR') return new optim.lrScheduler.StepLR(opt, { stepSize: s.stepSize, gamma: s.gamma });
  // The Transformer paper's warm-up, as the generator defines it.
  return new optim.lrScheduler.LambdaLR(opt, (step) => {
    const n = Math.max(step, 1);
    return s.dModel ** -0.5 * Math.min(n ** -0.5, n * s.warmup ** -1.5);
  });
}

// float32 arithmetic in PyTorch's op order: the backends reproduce it up to a last-bit rounding of the emulated
// fma; 1e-6 relative (plus a tiny absolute floor for elements crossing zero) is the requirement.
const RTOL = 1e-6;
const ATOL = 1e-7;

/** Runs a case and checks it step by step. */
function runCase(name: string, meta: CaseMeta): void {
  const params = makeParams(name);
  const opt = makeOptimizer(meta, params);
  const sched = makeScheduler(meta, opt);
  meta.grads.forEach((withGrad, k) => {
    opt.zeroGrad();
    for (const p of params) expect(gradOf(p)).toBeNull();
    for (const i of withGrad) setGrad(params[i]!, t(`${name}.s${k}.g${i}`).clone());
    if (meta.clip) {
      const total = nn.utils.clipGradNorm(params, meta.clip.maxNorm, meta.clip.normType);
      expect(total.shape).toEqual([]);
      expectClose([total.item() as number], [meta.total_norms[k]!], RTOL);
    }
    opt.step();
    sched?.step();
    params.forEach((p, i) => {
      try {
        expectClose(values(p), t(`${name}.s${k}.p${i}`).data, RTOL, ATOL);
      } catch (e) {
        throw new Error(`${name}: parameter ${i} after step ${k}: ${(e as Error).message}`);
      }
    });
    expect(opt.paramGroups.map((g) => g.lr)).toEqual(meta.lrs[k]!.map((lr) => expect.closeTo(lr, 15)));
  });
  if (sched) expect(sched.getLastLr()).toEqual(meta.last_lr!.map((lr) => expect.closeTo(lr, 15)));
  // Final state, under PyTorch's keys, for exactly the parameters PyTorch has state for.
  expect(params.map((p, i) => (opt.state.has(p) ? i : -1)).filter((i) => i >= 0)).toEqual(meta.state_has);
  params.forEach((p, i) => {
    const st = opt.state.get(p);
    if (!st) return;
    for (const key of ['exp_avg', 'exp_avg_sq', 'max_exp_avg_sq', 'momentum_buffer']) {
      const want = file.tensors[`${name}.state.${i}.${key}`] as F32 | undefined;
      if (want) expectClose(values(st[key] as F32), want.data, RTOL, ATOL);
      else expect(st[key] ?? null).toBeNull();
    }
    if (meta.optimizer !== 'SGD') expect(st['step']).toBe(meta.state_steps[String(i)]);
  });
  // The state dict's groups: PyTorch's keys and values (its execution flags aside).
  const sd = opt.stateDict();
  const torchOnly = ['foreach', 'capturable', 'differentiable', 'fused'];
  const wantGroups = meta.state_dict_groups.map((g) => Object.fromEntries(Object.entries(g).filter(([k]) => !torchOnly.includes(k))));
  expect(sd.param_groups.map((g) => ({ ...g, lr: expect.closeTo(g.lr as number, 15) }))).toEqual(
    wantGroups.map((g) => ({ ...g, lr: expect.closeTo(g['lr'] as number, 15) })),
  );
}

describe.each(backends)('optimizers against PyTorch 1.13 on the %s backend', (backend: BackendName) => {
  const run = <T>(fn: () => T): T => withContext({ backend: getBackend(backend) }, fn);

  it('has the generated fixture cases', () => {
    expect(cases().length).toBeGreaterThanOrEqual(18);
  });

  it.each([
    'sgd_plain', 'sgd_momentum', 'sgd_dampening_wd', 'sgd_nesterov_wd', 'sgd_maximize', 'adam', 'adam_defaults',
    'adam_wd_amsgrad', 'adam_maximize_eps', 'adamw', 'adamw_amsgrad_wd', 'adam_groups', 'sgd_groups',
    'adam_lambda_warmup', 'sgd_steplr', 'adam_clip2', 'sgd_clip_inf', 'adamw_clip3_loose',
  ])('%s', (name) => {
    const meta = Object.fromEntries(cases())[name];
    expect(meta, `case ${name} in the fixture`).toBeDefined();
    run(() => runCase(name, meta!));
  });

  it('loadStateDict resumes exactly: a copy loaded from stateDict() steps like the original', () => {
    for (const name of ['adam_wd_amsgrad', 'sgd_groups', 'adamw']) {
      const meta = Object.fromEntries(cases())[name]!;
      run(() => {
        const a = makeParams(name);
        const optA = makeOptimizer(meta, a);
        meta.grads.slice(0, 3).forEach((withGrad, k) => {
          optA.zeroGrad();
          for (const i of withGrad) setGrad(a[i]!, t(`${name}.s${k}.g${i}`).clone());
          optA.step();
        });
        const b = a.map((p) => p.clone() as F32);
        const optB = makeOptimizer({ ...meta, options: { ...meta.options, lr: 0.5 } }, b);
        const saved = optA.stateDict();
        optB.loadStateDict(saved);
        // Copies, not the same tensors.
        for (const [i, s] of Object.entries(optB.stateDict().state)) {
          for (const [key, v] of Object.entries(s)) if (v instanceof Tensor) expect(v).not.toBe(saved.state[Number(i)]![key]);
        }
        expect(optB.paramGroups.map((g) => g.lr)).toEqual(optA.paramGroups.map((g) => g.lr));
        for (const opt of [optA, optB]) opt.zeroGrad();
        for (const i of meta.grads[3]!) {
          setGrad(a[i]!, t(`${name}.s3.g${i}`).clone());
          setGrad(b[i]!, t(`${name}.s3.g${i}`).clone());
        }
        optA.step();
        optB.step();
        a.forEach((p, i) => expect(Array.from(values(b[i]!))).toEqual(Array.from(values(p))));
      });
    }
  });

  it('a parameter that never gets a gradient is skipped: unchanged, no state', () => {
    run(() => {
      const p = tensor([1, 2, 3]);
      const q = tensor([4, 5]);
      for (const opt of [new optim.Adam([p, q], { lr: 0.1, weightDecay: 0.5 }), new optim.SGD([p, q], { lr: 0.1, momentum: 0.9, weightDecay: 0.5 })]) {
        setGrad(p, tensor([1, 1, 1]));
        opt.step();
        opt.step();
        expect(Array.from(q.data)).toEqual([4, 5]);
        expect(opt.state.has(q)).toBe(false);
        expect(opt.state.has(p)).toBe(true);
      }
    });
  });

  it('zeroGrad sets gradients to null by default, or fills them with zeros in place', () => {
    run(() => {
      const p = tensor([1, 2, 3]);
      const opt = new optim.SGD([p], { lr: 0.1 });
      const g = tensor([1, -2, Number.NaN]);
      setGrad(p, g);
      opt.zeroGrad({ setToNone: false });
      expect(gradOf(p)).toBe(g);
      expect(Array.from(g.data)).toEqual([0, 0, 0]);
      opt.zeroGrad();
      expect(gradOf(p)).toBeNull();
      // A step with zero gradients still applies weight decay (PyTorch's "0 vs None" difference).
      const opt2 = new optim.SGD([p], { lr: 0.5, weightDecay: 1 });
      setGrad(p, zeros([3]));
      opt2.step();
      expect(Array.from(p.data)).toEqual([0.5, 1, 1.5]);
    });
  });

  it('addParamGroup adds a group with its own options; the defaults fill the rest', () => {
    run(() => {
      const a = tensor([1, 1]);
      const b = tensor([1, 1]);
      const opt = new optim.SGD([a], { lr: 0.1, momentum: 0.9 });
      opt.addParamGroup({ params: [b], lr: 1 });
      expect(opt.paramGroups[1]).toMatchObject({ lr: 1, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false, maximize: false });
      setGrad(a, tensor([1, 1]));
      setGrad(b, tensor([1, 1]));
      opt.step();
      expect(Array.from(a.data)).toEqual([Math.fround(0.9), Math.fround(0.9)]);
      expect(Array.from(b.data)).toEqual([0, 0]);
      expect(opt.stateDict().param_groups.map((g) => g.params)).toEqual([[0], [1]]);
    });
  });

  it('a step with a closure returns its loss', () => {
    run(() => {
      const p = tensor([2]);
      const opt = new optim.SGD([p], { lr: 0.25 });
      const loss = opt.step(() => {
        setGrad(p, tensor([2 * p.data[0]!]));
        return p.data[0]! ** 2;
      });
      expect(loss).toBe(4);
      expect(p.data[0]).toBe(1);
    });
  });
});

describe('optimizer updates on the native backend', () => {
  const native = backends.includes('native');
  if (!native) {
    it.skip('skipped: the native addon is not built (npm run build:native)', () => {});
    return;
  }
  const nativeBackend = getBackend('native');
  const isas = (): IsaName[] => {
    const detected = info().native!.detectedIsa;
    return (['portable', 'avx2', 'avx512'] as IsaName[]).filter((isa) => ['portable', 'avx2', 'avx512'].indexOf(isa) <= ['portable', 'avx2', 'avx512'].indexOf(detected));
  };
  let startIsa: IsaName;
  let startThreads: number;
  beforeAll(() => {
    startIsa = info().native!.isa;
    startThreads = getNumThreads();
  });
  afterAll(() => {
    setIsa(startIsa);
    setNumThreads(startThreads);
  });

  it('matches PyTorch on every kernel path of this CPU', () => {
    for (const isa of isas()) {
      setIsa(isa);
      for (const name of ['sgd_nesterov_wd', 'adam_wd_amsgrad', 'adamw_amsgrad_wd', 'adam_clip2', 'sgd_clip_inf']) {
        const meta = Object.fromEntries(cases())[name]!;
        withContext({ backend: nativeBackend }, () => runCase(name, meta));
      }
    }
    setIsa(startIsa);
  });

  it('gives the same bits on 1 and 2 threads and equals the JS reference for large parameter groups', () => {
    const big = (seed: number): F32 => {
      const x = new Float32Array(70_001);
      let s = seed;
      for (let i = 0; i < x.length; i++) x[i] = ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
      return tensor(x);
    };
    const results: Float32Array[] = [];
    for (const [backend, threads] of [['native', 1], ['native', 2], ['js', 1]] as const) {
      setNumThreads(threads);
      const p = [big(1), big(2).narrow(0, 0, 70_000).view(700, 100).contiguous() as F32];
      const opt = new optim.Adam(p, { lr: 0.01, weightDecay: 0.1, amsgrad: true });
      withContext({ backend: getBackend(backend) }, () => {
        for (let k = 0; k < 3; k++) {
          setGrad(p[0]!, big(10 + k));
          setGrad(p[1]!, big(20 + k).narrow(0, 0, 70_000).view(700, 100) as F32);
          nn.utils.clipGradNorm(p, 100);
          opt.step();
        }
      });
      const all = new Float32Array(p[0]!.size + p[1]!.size);
      all.set(p[0]!.data);
      all.set(p[1]!.data, p[0]!.size);
      results.push(all);
    }
    setNumThreads(startThreads);
    expect(results[1]!).toEqual(results[0]!);
    expectClose(results[0]!, results[2]!, 1e-6, 1e-7);
  });

  it('a forward after a step uses the new weights (the packed GEMM copy is refreshed)', () => {
    withContext({ backend: nativeBackend }, () => {
      nn.manualSeed(5);
      const lin = new nn.Linear({ inFeatures: 32, outFeatures: 16 });
      const x = tensor(new Float32Array(8 * 32).map((_, i) => Math.sin(i)), [8, 32]);
      lin.forward(x); // packs the weight
      const opt = new optim.SGD(lin.parameters(), { lr: 0.5 });
      setGrad(lin.weight, tensor(new Float32Array(16 * 32).fill(1), [16, 32]));
      setGrad(lin.bias!, zeros([16]));
      opt.step();
      const after = lin.forward(x);
      const fresh = new nn.Linear({ inFeatures: 32, outFeatures: 16 });
      fresh.loadStateDict({ weight: lin.weight.clone(), bias: lin.bias!.clone() });
      expect(Array.from(after.data)).toEqual(Array.from(fresh.forward(x).data));
    });
  });

  it('a step inside runAsync is recorded and runs in order with the kernels', async () => {
    const p = tensor([1, 2, 3, 4]);
    const q = tensor([1, 2, 3, 4]);
    const g = tensor([0.5, -1, 2, 0]);
    const optA = new optim.Adam([p], { lr: 0.1 });
    const optB = new optim.Adam([q], { lr: 0.1 });
    setGrad(p, g.clone());
    setGrad(q, g.clone());
    await withContext({ backend: nativeBackend }, () =>
      runAsync(() => {
        nn.utils.clipGradNorm([p], 1);
        optA.step();
      }),
    );
    withContext({ backend: nativeBackend }, () => {
      nn.utils.clipGradNorm([q], 1);
      optB.step();
    });
    expect(Array.from(p.data)).toEqual(Array.from(q.data));
  });

  it('refuses gradient arrays that overlap what a step writes', () => {
    const p = tensor([1, 2, 3, 4]);
    setGrad(p, p.clone());
    p.grad = new Tensor(p.data, [4], 'float32');
    const opt = new optim.SGD([p], { lr: 0.1 });
    expect(() => withContext({ backend: nativeBackend }, () => opt.step())).toThrow(/overlap/);
  });
});

describe('optimizer options and errors (PyTorch messages)', () => {
  const p = (): F32 => tensor([1, 2, 3]);
  it.each([
    [() => new optim.SGD([p()], { lr: -1 }), RangeError, /option 'lr'.*Invalid learning rate: -1/],
    [() => new optim.SGD([p()], { lr: 0.1, momentum: -0.5 }), RangeError, /option 'momentum'.*Invalid momentum value: -0.5/],
    [() => new optim.SGD([p()], { lr: 0.1, weightDecay: -1 }), RangeError, /option 'weightDecay'.*Invalid weight_decay value/],
    [() => new optim.SGD([p()], { lr: 0.1, nesterov: true }), RangeError, /Nesterov momentum requires a momentum and zero dampening/],
    [() => new optim.SGD([p()], { lr: 0.1, momentum: 0.9, dampening: 0.1, nesterov: true }), RangeError, /Nesterov/],
    [() => new optim.SGD([p()]), TypeError, /required optimization parameter lr/],
    [() => new optim.Adam([p()], { lr: -0.001 }), RangeError, /option 'lr'.*Invalid learning rate: -0.001/],
    [() => new optim.Adam([p()], { eps: -1e-8 }), RangeError, /option 'eps'.*Invalid epsilon value/],
    [() => new optim.Adam([p()], { betas: [1, 0.999] }), RangeError, /option 'betas'.*Invalid beta parameter at index 0: 1/],
    [() => new optim.AdamW([p()], { betas: [0.9, -0.1] }), RangeError, /Invalid beta parameter at index 1: -0.1/],
    [() => new optim.Adam([p()], { betas: [0.9] as unknown as [number, number] }), TypeError, /option 'betas' must be two numbers/],
    [() => new optim.Adam([p()], { weightDecay: -2 }), RangeError, /Invalid weight_decay value: -2/],
    [() => new optim.Adam([p()], { lr: Number.NaN }), RangeError, /Invalid learning rate: NaN/],
    [() => new optim.Adam([p()], { lr: '0.1' as unknown as number }), TypeError, /option 'lr' must be a number, got/],
    [() => new optim.Adam([p()], { weight_decay: 0.1 } as unknown as optim.AdamOptions), TypeError, /unknown option 'weight_decay' \(did you mean 'weightDecay'\?\)/],
    [() => new optim.Adam([]), RangeError, /empty parameter list/],
    [() => new optim.Adam(p() as unknown as F32[]), TypeError, /iterable of Tensors or parameter groups, but got a Tensor/],
    [() => new optim.Adam([p(), 3 as unknown as F32]), TypeError, /params\[1\]: optimizer can only optimize Tensors, got/],
    [() => new optim.Adam([tensor([1, 2], null, 'int32') as unknown as F32]), TypeError, /float32/],
    [() => new optim.Adam([p().expand(2, 3) as F32]), TypeError, /densely/],
    [() => { const x = p(); return new optim.Adam([x, x]); }, RangeError, /more than once/],
    [() => { const x = p(); return new optim.Adam([{ params: [x] }, { params: [x] }]); }, RangeError, /more than one parameter group/],
    [() => new optim.Adam([{ params: [p()], lr: -1 }]), RangeError, /parameter group 0: option 'lr'.*Invalid learning rate/],
    [() => new optim.Adam([{ params: [p()], momentum: 0.9 } as unknown as optim.ParamGroupInput<optim.AdamGroupOptions>]), TypeError, /unknown option 'momentum'/],
  ] as const)('%#: %s', (make, ErrorClass, message) => {
    expect(make).toThrow(ErrorClass);
    expect(make).toThrow(message);
  });

  it('a bad lr set between steps is caught at the step, naming the group', () => {
    const x = p();
    const opt = new optim.Adam([x]);
    setGrad(x, tensor([1, 1, 1]));
    opt.paramGroups[0]!.lr = -1;
    expect(() => opt.step()).toThrow(/paramGroups\[0\] option 'lr'.*Invalid learning rate: -1/);
    expect(Array.from(x.data)).toEqual([1, 2, 3]);
  });

  it('refuses a non-leaf tensor, as PyTorch does', () => {
    const x = p().requiresGrad_();
    const y = ops.mul(x, 2);
    expect(() => new optim.SGD([y], { lr: 1 })).toThrow(/can't optimize a non-leaf Tensor/);
    expect(() => new optim.SGD([y.detach()], { lr: 1 })).not.toThrow();
  });

  it('loadStateDict checks what it loads and changes nothing when it fails', () => {
    const x = p();
    const opt = new optim.Adam([x], { lr: 0.1 });
    setGrad(x, tensor([1, 1, 1]));
    opt.step();
    const sd = opt.stateDict();
    const other = new optim.Adam([p()], { lr: 0.2 });
    const bad = (change: (s: optim.OptimizerStateDict) => void): optim.OptimizerStateDict => {
      const copy: optim.OptimizerStateDict = { state: { 0: { ...sd.state[0]! } }, param_groups: sd.param_groups.map((g) => ({ ...g })) };
      change(copy);
      return copy;
    };
    expect(() => other.loadStateDict(bad((s) => s.param_groups.push({ ...s.param_groups[0]!, params: [1] })))).toThrow(/different number of parameter groups/);
    expect(() => other.loadStateDict(bad((s) => (s.param_groups[0]!.params = [0, 1])))).toThrow(/doesn't match the size/);
    expect(() => other.loadStateDict(bad((s) => (s.state[0]!['exp_avg'] = tensor([1, 2]))))).toThrow(/state\[0\].exp_avg must have the parameter's shape \[3\], got \[2\]/);
    expect(() => other.loadStateDict(bad((s) => delete s.state[0]!['exp_avg_sq']))).toThrow(/has no 'exp_avg_sq'/);
    expect(() => other.loadStateDict(bad((s) => (s.state[0]!['step'] = -1)))).toThrow(/step count/);
    expect(() => other.loadStateDict(bad((s) => (s.param_groups[0]!['lr'] = -5)))).toThrow(/Invalid learning rate/);
    expect(() => other.loadStateDict(bad((s) => (s.state[7] = {})))).toThrow(/parameter index 7/);
    expect(other.paramGroups[0]!.lr).toBe(0.2);
    expect(other.state.size).toBe(0);
    // PyTorch's own execution flags and a step held as a one-element tensor are accepted.
    other.loadStateDict(bad((s) => {
      Object.assign(s.param_groups[0]!, { foreach: null, capturable: false, differentiable: false, fused: false });
      s.state[0]!['step'] = tensor([1]);
    }));
    expect(other.paramGroups[0]!.lr).toBe(0.1);
    expect(other.state.get(other.paramGroups[0]!.params[0]!)!['step']).toBe(1);
  });
});

describe('LR schedulers', () => {
  const opt2 = (): optim.SGD => new optim.SGD([{ params: [tensor([1])] }, { params: [tensor([1])], lr: 1 }], { lr: 0.1 });

  it('LambdaLR: one function per group, initialLr recorded, the lambda sees 0, 1, 2, …', () => {
    const opt = opt2();
    const seen: number[] = [];
    const sched = new optim.lrScheduler.LambdaLR(opt, [(e) => (seen.push(e), 0.5 ** e), (e) => e + 1]);
    expect(opt.paramGroups.map((g) => g.initialLr)).toEqual([0.1, 1]);
    expect(sched.getLastLr()).toEqual([0.1, 1]);
    sched.step();
    sched.step();
    expect(sched.getLastLr()).toEqual([0.1 * 0.25, 3]);
    expect(opt.paramGroups.map((g) => g.lr)).toEqual([0.1 * 0.25, 3]);
    expect(seen).toEqual([0, 1, 2]);
    expect(opt.stateDict().param_groups.map((g) => g['initial_lr'])).toEqual([0.1, 1]);
  });

  it('StepLR decays every stepSize steps; state dicts round-trip', () => {
    const opt = opt2();
    const sched = new optim.lrScheduler.StepLR(opt, { stepSize: 2, gamma: 0.5 });
    const lrs = [sched.getLastLr()];
    for (let i = 0; i < 5; i++) {
      sched.step();
      lrs.push(sched.getLastLr());
    }
    expect(lrs.map((l) => l[1])).toEqual([1, 1, 0.5, 0.5, 0.25, 0.25]);
    const state = sched.stateDict();
    expect(state).toMatchObject({ last_epoch: 5, _step_count: 6, step_size: 2, gamma: 0.5, base_lrs: [0.1, 1] });
    const opt2b = opt2();
    opt2b.loadStateDict(opt.stateDict());
    const resumed = new optim.lrScheduler.StepLR(opt2b, { stepSize: 9, lastEpoch: 5 });
    resumed.loadStateDict(state);
    resumed.step();
    sched.step();
    expect(resumed.getLastLr()).toEqual(sched.getLastLr());
    expect(resumed.stepSize).toBe(2);
  });

  it('checks its arguments', () => {
    const opt = opt2();
    expect(() => new optim.lrScheduler.LambdaLR(opt, [(e) => e])).toThrow(/Expected 2 lr_lambdas, but got 1/);
    expect(() => new optim.lrScheduler.LambdaLR(opt, 3 as unknown as optim.lrScheduler.LrLambda)).toThrow(TypeError);
    expect(() => new optim.lrScheduler.LambdaLR(opt, () => Number.NaN)).toThrow(/must return a finite number/);
    expect(() => new optim.lrScheduler.StepLR(opt, { stepSize: 0 })).toThrow(/stepSize' must be an integer >= 1/);
    expect(() => new optim.lrScheduler.StepLR(opt, { stepSize: 2, gama: 0.1 } as unknown as optim.lrScheduler.StepLROptions)).toThrow(/unknown option 'gama'/);
    expect(() => new optim.lrScheduler.StepLR({} as optim.SGD, { stepSize: 2 })).toThrow(/must be an Optimizer/);
    expect(() => new optim.lrScheduler.StepLR(new optim.SGD([tensor([1])], { lr: 1 }), { stepSize: 2, lastEpoch: 3 })).toThrow(/initialLr' is not specified in paramGroups\[0\]/);
  });
});

describe('clipGradNorm', () => {
  it.each(backends)('computes PyTorch\'s total norm and clips on the %s backend', (backend) => {
    withContext({ backend: getBackend(backend) }, () => {
      const a = tensor([3, 0, -4]);
      const b = tensor([[1, 2], [2, 0]]);
      const c = tensor([7]);
      setGrad(a, a.clone());
      setGrad(b, b.clone());
      // c has no gradient: skipped.
      const total = nn.utils.clipGradNorm([a, b, c], 2.5);
      expect(total.item()).toBeCloseTo(Math.sqrt(25 + 9), 5);
      const coef = Math.fround(Math.fround(1 / Math.fround(Math.fround(Math.sqrt(34)) + Math.fround(1e-6))) * 2.5);
      expect(Array.from(gradOf(a)!.data)).toEqual([3, 0, -4].map((v) => Math.fround(v * coef)));
      expect(gradOf(c)).toBeNull();
      // inf norm: the largest absolute value.
      setGrad(a, tensor([3, 0, -4]));
      expect(nn.utils.clipGradNorm([a, b], 1e6, 'inf').item()).toBeCloseTo(4, 6);
      expect(Array.from(gradOf(a)!.data)).toEqual([3, 0, -4]);
      // p-norm
      const d = tensor([0, 0]);
      setGrad(d, tensor([1, -2]));
      expect(nn.utils.clipGradNorm(d, 1e6, 3).item()).toBeCloseTo(Math.cbrt(9), 5);
      // No gradients at all: 0, nothing touched.
      expect(nn.utils.clipGradNorm([c], 1).item()).toBe(0);
    });
  });

  it('errors: bad norm type, non-tensor parameters, non-finite norm with errorIfNonfinite', () => {
    const a = tensor([1, 2]);
    setGrad(a, tensor([Number.POSITIVE_INFINITY, 1]));
    expect(() => nn.utils.clipGradNorm([a], 1, 0)).toThrow(/normType' must be > 0 or Infinity, got 0/);
    expect(() => nn.utils.clipGradNorm([a], 1, 'two' as unknown as number)).toThrow(TypeError);
    expect(() => nn.utils.clipGradNorm([a, 'x' as unknown as Tensor], 1)).toThrow(/params\[1\] must be a Tensor/);
    expect(() => nn.utils.clipGradNorm(5 as unknown as Tensor, 1)).toThrow(/iterable of Tensors/);
    expect(() => nn.utils.clipGradNorm([a], 1, 2, { errorIfNonfinite: true })).toThrow(/non-finite/);
    expect(Number.isNaN(gradOf(a)!.data[1]!)).toBe(false);
  });
});

describe.each(backends)('training the seed model end to end against PyTorch 1.13 on the %s backend', (backend: BackendName) => {
  // test/fixtures/optim/train_seed.safetensors (scripts/gen_optim_fixtures.py): forward, CrossEntropyLoss, backward,
  // clip_grad_norm_, step, scheduler, for a few steps from PyTorch's initial weights.
  let train: SafetensorsFile;
  beforeAll(async () => {
    train = await loadSafetensors(join(__dirname, 'fixtures', 'optim', 'train_seed.safetensors'));
  });
  it.each(['adam_clip_warmup', 'adamw', 'sgd_nesterov_steplr'])('%s', (name) => {
    const meta = JSON.parse(train.metadata[name]!) as Omit<CaseMeta, 'groups' | 'grads' | 'lrs' | 'state_steps' | 'state_has' | 'state_dict_groups' | 'last_lr' | 'clip'> & {
      clip: number | null; steps: number; losses: number[]; model: { vocab: number; d_model: number; nhead: number; enc: number; dec: number; ff: number };
    };
    const prefix = (p: string): Record<string, Tensor> => Object.fromEntries(
      Object.entries(train.tensors).filter(([k]) => k.startsWith(`${name}.${p}.`)).map(([k, v]) => [k.slice(name.length + p.length + 2), v.clone()]),
    );
    const m = meta.model;
    withContext({ backend: getBackend(backend) }, () => {
      const model = new TransformerModel(m.vocab, m.d_model, m.nhead, m.enc, m.dec, m.ff);
      model.loadStateDict(prefix('init'));
      model.eval();
      const opt = makeOptimizer({ ...(meta as unknown as CaseMeta), groups: null }, model.parameters() as F32[]);
      const sched = makeScheduler(meta as unknown as CaseMeta, opt);
      const criterion = new nn.CrossEntropyLoss({ ignoreIndex: 0, labelSmoothing: 0.1 });
      for (let k = 0; k < meta.steps; k++) {
        const batch = (key: string): Tensor<'int32'> => train.tensors[`${name}.s${k}.${key}`] as Tensor<'int32'>;
        opt.zeroGrad();
        const out = model.forward(batch('src'), batch('tgt_in'));
        const loss = criterion.forward(out.reshape(-1, m.vocab), batch('tgt_out').reshape(-1));
        loss.backward();
        expectClose([loss.item() as number], [meta.losses[k]!], 1e-4);
        if (meta.clip !== null) expectClose([nn.utils.clipGradNorm(model.parameters(), meta.clip).item() as number], [meta.total_norms[k]!], 1e-4);
        opt.step();
        sched?.step();
      }
      const final = prefix('final');
      for (const [key, p] of model.namedParameters()) {
        let want = (final[key] as F32).data;
        let got = values(p);
        if (key.endsWith('in_proj_bias')) {
          // The key bias adds the same q·b_k to every score of a query row, which softmax ignores: its gradient is
          // 0 up to rounding noise, and Adam normalises that noise into lr-sized steps. So its value is noise in
          // PyTorch as here; the query and value biases are compared.
          const d = m.d_model;
          want = Float32Array.from([...want.subarray(0, d), ...want.subarray(2 * d)]);
          got = Float32Array.from([...got.subarray(0, d), ...got.subarray(2 * d)]);
        }
        // 1e-4 of the tensor's scale: elements near zero carry the absolute error of their larger neighbours.
        const scale = want.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
        try {
          expectClose(got, want, 1e-4, 1e-4 * scale);
        } catch (e) {
          throw new Error(`${name}: ${key} after ${meta.steps} steps: ${(e as Error).message}`);
        }
      }
    });
  });
});
