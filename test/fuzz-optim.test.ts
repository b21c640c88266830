/**
 * Property tests over the native boundary of the fused optimizer ops (native/binding/optim_binding.cc): sgdStep,
 * adamStep and clipGradNorm take *lists* of Float32Arrays (one entry per tensor), which the single-array fuzzer
 * (fuzz-native.test.ts) does not model. Random tensor counts and sizes (0, 1, SIMD edges, several blocks), every
 * kernel path, 1 and 2 threads, views at odd offsets, SharedArrayBuffer backing, random options, both call forms
 * (immediate and recorded), and one injected fault per case: an entry one element short, of the wrong type or
 * detached, a list one entry short or not an array, an entry aliasing or partly overlapping an array the step
 * writes, a required field left out, a step count of 0 or an initMomentum flag of 2.
 *
 * Every case ends in the JS backend's result (1e-6 relative) or in a TypeError/RangeError whose message starts with
 * `attnode.<op>:` with no buffer changed — and never writes outside its views (canaries, see helpers/fuzz.ts).
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { addon } from '../lib/backend/native';
import { jsBackend } from '../lib/backend/js';
import type { AdamStepArgs, ClipGradNormArgs, SgdStepArgs } from '../lib/backend/backend';
import { Guarded, closeness, detach, expectError, fcParams, prng, type Backing } from './helpers/fuzz';

type Op = 'sgdStep' | 'adamStep' | 'clipGradNorm';
const ISAS = ['avx512', 'avx2', 'portable'] as const;
type Isa = (typeof ISAS)[number];
const detected = (addon?.info().detectedIsa ?? 'portable') as Isa;
const supported: Isa[] = ISAS.slice(ISAS.indexOf(detected));
const startThreads = addon?.getNumThreads() ?? 1;

type Fault =
  | { kind: 'none' }
  | { kind: 'short' | 'type' | 'detach' | 'alias' | 'overlap'; list: number; entry: number }
  | { kind: 'listShort' | 'notArray'; list: number }
  | { kind: 'missing'; field: number }
  | { kind: 'badFlag'; entry: number };

interface Case {
  op: Op;
  isa: Isa;
  threads: number;
  backing: Backing;
  offset: number;
  mode: 'immediate' | 'record';
  sizes: number[];
  seed: number;
  o: { momentum: number; dampening: number; nesterov: boolean; wd: number; maximize: boolean; amsgrad: boolean;
    decoupled: boolean; normType: number; maxNorm: number; steps: number[]; init: number[] };
  fault: Fault;
}

/** The lists of an op (params first), which of them the op writes, and its scalar fields. */
function listsOf(c: Case): { names: string[]; written: boolean[]; scalars: string[] } {
  if (c.op === 'sgdStep') {
    const m = c.o.momentum !== 0;
    return { names: m ? ['params', 'grads', 'momentumBuffers'] : ['params', 'grads'], written: [true, false, true],
      scalars: ['lr', 'momentum', 'dampening', 'weightDecay', 'nesterov', 'maximize'] };
  }
  if (c.op === 'adamStep') {
    const names = ['params', 'grads', 'expAvgs', 'expAvgSqs', ...(c.o.amsgrad ? ['maxExpAvgSqs'] : [])];
    return { names, written: [true, false, true, true, true],
      scalars: ['lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'amsgrad', 'maximize', 'decoupled'] };
  }
  return { names: ['grads'], written: [true], scalars: ['maxNorm', 'normType'] };
}

function args(c: Case, lists: Record<string, unknown>, extra: Record<string, unknown>): Record<string, unknown> {
  const o = c.o;
  if (c.op === 'sgdStep') {
    return { lr: 0.05, momentum: o.momentum, dampening: o.dampening, weightDecay: o.wd, nesterov: o.nesterov, maximize: o.maximize,
      momentumBuffers: null, initMomentum: o.momentum !== 0 ? o.init : null, ...lists, ...extra };
  }
  if (c.op === 'adamStep') {
    return { lr: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-6, weightDecay: o.wd, amsgrad: o.amsgrad, maximize: o.maximize,
      decoupled: o.decoupled, maxExpAvgSqs: null, steps: o.steps, ...lists, ...extra };
  }
  return { maxNorm: o.maxNorm, normType: o.normType, ...lists, ...extra };
}

/** The error a fault must produce, or null when the call must succeed. */
function expectedError(c: Case): typeof TypeError | typeof RangeError | null {
  const f = c.fault;
  const n = (i: number): number => c.sizes[i] ?? 0;
  switch (f.kind) {
    case 'none':
      return null;
    case 'short':
    case 'detach':
      // clipGradNorm's gradients have no length to match: a shorter (or detached, i.e. empty) one is just smaller.
      return n(f.entry) > 0 && c.op !== 'clipGradNorm' ? RangeError : null;
    case 'type':
    case 'notArray':
    case 'missing':
      return TypeError;
    case 'listShort':
      // clipGradNorm's one list may have any length.
      return c.sizes.length > 0 && c.op !== 'clipGradNorm' ? RangeError : null;
    case 'alias':
      // Two entries sharing their bytes, one of them written: refused unless empty (or no second gradient to alias).
      return n(f.entry) > 0 && (c.op !== 'clipGradNorm' || c.sizes.length > 1) ? RangeError : null;
    case 'overlap':
      return RangeError;
    case 'badFlag':
      return c.op === 'adamStep' || (c.op === 'sgdStep' && c.o.momentum !== 0) ? RangeError : null;
  }
}

async function runCase(c: Case): Promise<void> {
  const a = addon!;
  a.setIsa(c.isa);
  a.setNumThreads(c.threads);
  const r = prng(c.seed);
  const { names, written, scalars } = listsOf(c);
  const f = c.fault;
  // Guarded views: one per (list, entry).
  const guards: Guarded<Float32Array>[][] = names.map((name, li) => c.sizes.map((n, ei) => {
    const short = f.kind === 'short' && f.list === li && f.entry === ei && n > 0 ? 1 : 0;
    const backing = f.kind === 'detach' && f.list === li && f.entry === ei ? 'ab' : c.backing;
    const g = new Guarded<Float32Array>('f32', n - short, backing, c.offset);
    for (let i = 0; i < g.view.length; i++) {
      // Second moments must be >= 0; the rest any sign, some exact zeros.
      const v = r() < 0.05 ? 0 : (r() * 2 - 1) * (name === 'grads' && c.op === 'clipGradNorm' ? 3 : 1);
      g.view[i] = name === 'expAvgSqs' || name === 'maxExpAvgSqs' ? Math.abs(v) * 0.1 : v;
    }
    return g;
  }));
  const views: Float32Array[][] = guards.map((l) => l.map((g) => g.view));
  const listArgs: Record<string, unknown> = {};
  names.forEach((name, li) => (listArgs[name] = [...views[li]!]));
  if (f.kind === 'type') (listArgs[names[f.list]!] as unknown[])[f.entry] = new Float64Array(c.sizes[f.entry]!);
  if (f.kind === 'detach') detach(views[f.list]![f.entry]!.buffer as ArrayBuffer);
  if (f.kind === 'listShort') (listArgs[names[f.list]!] as unknown[]).pop();
  if (f.kind === 'notArray') listArgs[names[f.list]!] = views[f.list]![0] ?? new Float32Array(0);
  if (f.kind === 'alias') {
    // clipGradNorm: another gradient entry becomes this one. Steps: the params entry becomes the same entry of
    // another list, or an entry of another list becomes the params entry.
    if (c.op === 'clipGradNorm') {
      if (c.sizes.length > 1) (listArgs.grads as unknown[])[(f.entry + 1) % c.sizes.length] = views[0]![f.entry]!;
    } else if (f.list === 0) {
      (listArgs.params as unknown[])[f.entry] = views[1]![f.entry]!;
    } else {
      (listArgs[names[f.list]!] as unknown[])[f.entry] = views[0]![f.entry]!;
    }
  }
  if (f.kind === 'overlap') {
    // A view starting one element into an entry (and reaching one element past it, into the canaries: the call must
    // be refused before anything is written): params[entry] into the last list's entry, or for clipGradNorm the
    // next gradient into this one.
    const src = views[names.length - 1]![f.entry]!;
    const shifted = new Float32Array(src.buffer, src.byteOffset + 4, src.length);
    if (c.op === 'clipGradNorm') (listArgs.grads as unknown[])[(f.entry + 1) % c.sizes.length] = shifted;
    else (listArgs.params as unknown[])[f.entry] = shifted;
  }
  const extra: Record<string, unknown> = {};
  const totalNorm = new Guarded<Float32Array>('f32', 1, c.backing, c.offset);
  if (c.op === 'clipGradNorm') extra.totalNorm = totalNorm.view;
  const call = args(c, listArgs, extra);
  if (f.kind === 'missing') delete call[scalars[f.field % scalars.length]!];
  if (f.kind === 'badFlag') {
    if (c.op === 'adamStep' && c.sizes.length > 0) call.steps = c.o.steps.map((s, i) => (i === f.entry % c.sizes.length ? 0 : s));
    else if (c.op === 'adamStep') call.steps = [0];
    else if (c.op === 'sgdStep' && c.o.momentum !== 0) call.initMomentum = [...c.o.init.slice(0, -1), 2].slice(0, Math.max(c.sizes.length, 1));
  }
  const want = expectedError(c);

  // Reference: the JS backend on copies of the same inputs.
  const ref: Record<string, unknown> = {};
  // (A detached array reads as empty; slice() would throw on it.)
  const copy = (x: unknown): unknown => (x instanceof Float32Array ? (x.length === 0 ? new Float32Array(0) : x.slice()) : x);
  for (const [k, v] of Object.entries(call)) ref[k] = Array.isArray(v) ? v.map(copy) : v;
  if (c.op === 'clipGradNorm') ref.totalNorm = new Float32Array(1);
  for (const row of guards) for (const g of row) g.snapshot();
  totalNorm.snapshot();

  const prefix = `attnode.${c.op}`;
  const run = async (): Promise<void> => {
    if (c.mode === 'immediate') {
      (a[c.op] as unknown as (x: unknown) => void)(call);
      return;
    }
    const list = a.createCommandList();
    (a[`${c.op}Record`] as unknown as (l: unknown, x: unknown) => void)(list, call);
    await a.submit(list);
  };
  if (want) {
    if (c.mode === 'immediate') expectError(() => (a[c.op] as unknown as (x: unknown) => void)(call), want, prefix);
    else {
      const list = a.createCommandList();
      expectError(() => (a[`${c.op}Record`] as unknown as (l: unknown, x: unknown) => void)(list, call), want, prefix);
      await a.submit(list);
    }
  } else {
    await run();
  }
  guards.forEach((row, li) => row.forEach((g, ei) => {
    if (f.kind === 'detach' && f.list === li && f.entry === ei) return;
    g.check(`${names[li]}[${ei}]`);
    if (want || !written[li]) g.unchanged(`${names[li]}[${ei}]`);
  }));
  totalNorm.check('totalNorm');
  if (want) return;

  if (c.op === 'sgdStep') jsBackend.sgdStep(ref as unknown as SgdStepArgs);
  else if (c.op === 'adamStep') jsBackend.adamStep(ref as unknown as AdamStepArgs);
  else jsBackend.clipGradNorm(ref as unknown as ClipGradNormArgs);
  for (const name of names) {
    const got = call[name] as Float32Array[];
    const exp = ref[name] as Float32Array[];
    got.forEach((x, i) => expect(closeness(x, exp[i]!, 1e-30, 2e-6), `${name}[${i}]`).toBeLessThanOrEqual(1));
  }
  if (c.op === 'clipGradNorm') expect(closeness(totalNorm.view, ref.totalNorm as Float32Array, 1e-30, 2e-6)).toBeLessThanOrEqual(1);
}

const size = fc.constantFrom(0, 1, 1, 2, 7, 8, 15, 16, 17, 31, 33, 100, 16_385);
const caseArb = (op: Op): fc.Arbitrary<Case> =>
  fc.record({
    op: fc.constant(op),
    isa: fc.constantFrom(...supported),
    threads: fc.constantFrom(1, 2),
    backing: fc.constantFrom<Backing>('ab', 'ab', 'sab'),
    offset: fc.constantFrom(0, 0, 1, 3),
    mode: fc.constantFrom<'immediate' | 'record'>('immediate', 'immediate', 'record'),
    sizes: fc.array(size, { minLength: 0, maxLength: 5 }),
    seed: fc.integer({ min: 1, max: 2 ** 30 }),
    o: fc.record({
      momentum: fc.constantFrom(0, 0.9), dampening: fc.constantFrom(0, 0.25), nesterov: fc.boolean(), wd: fc.constantFrom(0, 0.1),
      maximize: fc.boolean(), amsgrad: fc.boolean(), decoupled: fc.boolean(), normType: fc.constantFrom(1, 2, 2, 3, Infinity),
      maxNorm: fc.constantFrom(0.5, 1e6), steps: fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 5, maxLength: 5 }),
      init: fc.array(fc.constantFrom(0, 1), { minLength: 5, maxLength: 5 }),
    }),
    fault: fc.oneof(
      { weight: 4, arbitrary: fc.constant<Fault>({ kind: 'none' }) },
      { weight: 6, arbitrary: fc.record({ kind: fc.constantFrom('short', 'type', 'detach', 'alias', 'overlap'), list: fc.nat(4), entry: fc.nat(4) }) as fc.Arbitrary<Fault> },
      { weight: 2, arbitrary: fc.record({ kind: fc.constantFrom('listShort', 'notArray'), list: fc.nat(4) }) as fc.Arbitrary<Fault> },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('missing'), field: fc.nat(7) }) as fc.Arbitrary<Fault> },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('badFlag'), entry: fc.nat(4) }) as fc.Arbitrary<Fault> },
    ),
  }).map((c) => {
    // Faults name a list and an entry that exist (or become 'none').
    const { names } = listsOf(c);
    const f = c.fault;
    const steps = c.o.steps.slice(0, c.sizes.length);
    const init = c.o.init.slice(0, c.sizes.length);
    const o = { ...c.o, steps, init, nesterov: c.o.nesterov && c.o.dampening === 0 };
    if ('list' in f) {
      const list = f.list % names.length;
      if ('entry' in f) {
        if (c.sizes.length === 0) return { ...c, o, fault: { kind: 'none' } as Fault };
        const entry = f.entry % c.sizes.length;
        // An overlap needs two elements to overlap, and for clipGradNorm a second gradient to overlap with.
        if (f.kind === 'overlap' && (c.sizes[entry]! < 2 || (c.op === 'clipGradNorm' && c.sizes.length < 2))) {
          return { ...c, o, fault: { kind: 'none' } as Fault };
        }
        return { ...c, o, fault: { ...f, list, entry } };
      }
      return { ...c, o, fault: { ...f, list } };
    }
    return { ...c, o };
  });

describe('native boundary fuzz: fused optimizer ops over tensor lists', () => {
  if (!addon) {
    it.skip('skipped: the native addon is not built (npm run build:native)', () => {});
    return;
  }
  afterAll(() => {
    addon!.setIsa(detected);
    addon!.setNumThreads(startThreads);
  });
  for (const op of ['sgdStep', 'adamStep', 'clipGradNorm'] as const) {
    it(`${op}: the JS reference's result or a clean TypeError/RangeError, never a stray write`, async () => {
      await fc.assert(fc.asyncProperty(caseArb(op), runCase), fcParams(2));
    });
  }
});
