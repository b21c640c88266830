/**
 * Per-op timings of a training step for `bench/train/step-child.ts --profile`: the current backend is replaced by
 * one whose every op runs inside a timer, and the time is booked to the phase the step is in (forward, backward,
 * optimizer, zeroGrad). What a phase spends outside its ops is the JS side: checks, output allocation, the tape.
 *
 * GEMMs are booked by the form of the product, which tells forward GEMMs from gradient GEMMs: `A·Bᵀ` (a Linear's
 * forward, and attention scores), `A·B` (a Linear's data gradient dX = dY·W), `Aᵀ·B` (its weight gradient
 * dW = dYᵀ·X), batched forms prefixed `bmm`; a `gemmGroup` (a Linear's dW and dX side by side) by its GEMMs' forms.
 *
 * `replay(reps)` (step-child's `--replay N`) re-runs every op call of one captured step N times each, alone and
 * back to back, and books the fastest run of each: the kernels' time on an idle machine, without the JS between
 * them (a shared machine's other processes slow most runs, rarely all N). Ops that write in place then write
 * again: the values drift, the work does not.
 */
import { getBackend, setBackend, type Backend, type BackendName } from '../../lib/index';
import type { GemmArgs, GemmGroupArgs } from '../../lib/backend/backend';

interface Tally {
  ms: number;
  /** CPU time of the process during the calls (all threads): less sensitive to a loaded machine than ms. */
  cpuMs: number;
  calls: number;
  /** Multiply-adds × 2 of the GEMMs booked here. */
  flop: number;
}

function gemmLabel(g: GemmArgs): string {
  const form = `${g.transA ? 'Aᵀ' : 'A'}·${g.transB ? 'Bᵀ' : 'B'}`;
  return `${(g.batch ?? 1) > 1 ? 'bmm' : 'gemm'} ${form}`;
}

function gemmShape(g: GemmArgs): string {
  return `${g.m}×${g.n}×${g.k}${(g.batch ?? 1) > 1 ? ` ×${g.batch}` : ''}${g.beta ? ' β' : ''}${g.bias ? ' +bias' : ''}`;
}

/** An op call's label, shape label (GEMMs) and multiply-adds × 2. */
function describe(op: string, args: unknown): { label: string; shape: string | null; flop: number } {
  if (op === 'gemm') {
    const g = args as GemmArgs;
    return { label: gemmLabel(g), shape: `${gemmLabel(g)} ${gemmShape(g)}`, flop: 2 * g.m * g.n * g.k * (g.batch ?? 1) };
  }
  if (op === 'gemmGroup') {
    const gs = (args as GemmGroupArgs).gemms;
    return {
      label: `gemmGroup ${gs.map(gemmLabel).join(' | ')}`,
      shape: `gemmGroup ${gs.map((g) => `${gemmLabel(g)} ${gemmShape(g)}`).join(' | ')}`,
      flop: gs.reduce((s, g) => s + 2 * g.m * g.n * g.k * (g.batch ?? 1), 0),
    };
  }
  return { label: op, shape: null, flop: 0 };
}

interface Captured {
  phase: string;
  label: string;
  run: () => void;
}

export class OpProfiler {
  /** Off during warm-up steps. */
  enabled = false;
  /** Keep every call (op and arguments) for {@link replay}: set for one step. */
  capture = false;
  readonly #captured: Captured[] = [];
  #phase = 'forward';
  readonly #tallies = new Map<string, Map<string, Tally>>();
  /** GEMMs by phase, form and shape (m×n×k, batch, accumulating into C, bias). */
  readonly #shapes = new Map<string, Map<string, Tally>>();

  /** Wraps the named backend's ops and makes the wrapper the current backend. */
  static install(name: BackendName): OpProfiler {
    const p = new OpProfiler();
    const inner = getBackend(name);
    const wrapped: Record<string, unknown> = { name: inner.name };
    for (const [op, fn] of Object.entries(inner)) {
      if (typeof fn !== 'function') continue;
      wrapped[op] = (args: unknown): void => {
        if (!p.enabled) return (fn as (x: unknown) => void).call(inner, args);
        const { label, shape, flop } = describe(op, args);
        if (p.capture) p.#captured.push({ phase: p.#phase, label, run: () => (fn as (x: unknown) => void).call(inner, args) });
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        (fn as (x: unknown) => void).call(inner, args);
        const ms = performance.now() - t0;
        const c = process.cpuUsage(c0);
        const cpu = (c.user + c.system) / 1e3;
        p.#book(label, ms, cpu, flop);
        if (shape !== null) p.#bookShape(shape, ms, cpu, flop);
      };
    }
    setBackend(wrapped as unknown as Backend);
    return p;
  }

  /**
   * Re-runs each captured call `reps` times (see the module comment); per phase, the sum of the calls' fastest
   * runs (ms) and the same per op label, largest first.
   */
  replay(reps: number): Record<string, { kernelsMs: number; ops: Record<string, { ms: number; calls: number }> }> {
    const enabled = this.enabled;
    this.enabled = false;
    const out: ReturnType<OpProfiler['replay']> = {};
    for (const c of this.#captured) {
      let best = Infinity;
      for (let r = 0; r < reps; r++) {
        const t0 = performance.now();
        c.run();
        best = Math.min(best, performance.now() - t0);
      }
      const ph = (out[c.phase] ??= { kernelsMs: 0, ops: {} });
      ph.kernelsMs += best;
      const t = (ph.ops[c.label] ??= { ms: 0, calls: 0 });
      t.ms += best;
      t.calls++;
    }
    for (const ph of Object.values(out)) {
      ph.kernelsMs = round(ph.kernelsMs);
      ph.ops = Object.fromEntries(Object.entries(ph.ops).sort((x, y) => y[1].ms - x[1].ms).map(([k, v]) => [k, { ms: round(v.ms), calls: v.calls }]));
    }
    this.enabled = enabled;
    return out;
  }

  /** The phase the following ops belong to. */
  phase(name: string): void {
    this.#phase = name;
  }

  #bookShape(label: string, ms: number, cpuMs: number, flop: number): void {
    this.#book(label, ms, cpuMs, flop, this.#shapes);
  }

  #book(label: string, ms: number, cpuMs: number, flop: number, into = this.#tallies): void {
    let byOp = into.get(this.#phase);
    if (!byOp) into.set(this.#phase, (byOp = new Map()));
    const t = byOp.get(label) ?? { ms: 0, cpuMs: 0, calls: 0, flop: 0 };
    t.ms += ms;
    t.cpuMs += cpuMs;
    t.flop += flop;
    t.calls++;
    byOp.set(label, t);
  }

  /**
   * Per phase, ms per step of each op (largest first) and of the time outside ops, given the phases' measured
   * per-step times (`phasesMs[phase][step]`).
   */
  report(phasesMs: Record<string, number[]>): Record<string, { totalMs: number; outsideOpsMs: number; ops: Record<string, OpReport>; gemmShapes: Record<string, OpReport> }> {
    const out: ReturnType<OpProfiler['report']> = {};
    for (const [phase, steps] of Object.entries(phasesMs)) {
      const nSteps = Math.max(steps.length, 1);
      const totalMs = steps.reduce((s, x) => s + x, 0) / nSteps;
      const byOp = [...(this.#tallies.get(phase) ?? new Map<string, Tally>())].sort((x, y) => y[1].ms - x[1].ms);
      const inOps = byOp.reduce((s, [, t]) => s + t.ms, 0) / nSteps;
      out[phase] = {
        totalMs: round(totalMs),
        outsideOpsMs: round(totalMs - inOps),
        ops: Object.fromEntries(byOp.map(([label, t]) => [label, opReport(t, nSteps)])),
        gemmShapes: Object.fromEntries([...(this.#shapes.get(phase) ?? new Map<string, Tally>())]
          .sort((x, y) => y[1].cpuMs - x[1].cpuMs).map(([label, t]) => [label, opReport(t, nSteps)])),
      };
    }
    return out;
  }
}

interface OpReport {
  ms: number;
  cpuMs: number;
  calls: number;
  gflopPerCpuS?: number;
}

function opReport(t: Tally, nSteps: number): OpReport {
  return {
    ms: round(t.ms / nSteps), cpuMs: round(t.cpuMs / nSteps), calls: t.calls / nSteps,
    ...(t.flop > 0 && t.cpuMs > 0 ? { gflopPerCpuS: round(t.flop / (t.cpuMs / 1e3) / 1e9) } : {}),
  };
}

const round = (x: number): number => Math.round(x * 1000) / 1000;
