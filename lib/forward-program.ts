/**
 * An inference forward as one native call: a module's forward over one float32 input is recorded once into a
 * native command list (the same ops, checks and kernels as its eager forward) and later calls with the same input
 * shape replay that list with `addon.runList`: the input is copied into the program's own input buffer, the list
 * runs, the output is copied out. What the replay saves is everything between the kernels: the JS of each op
 * (shape checks, views, allocation), N-API argument parsing, and with them the cold caches and branch predictors
 * that code meets after each large GEMM (a 6-layer BERT-base encoder at 1 × 128 is 42 native calls; replayed, one).
 *
 * Used by `TransformerEncoder` and `TransformerEncoderLayer` for calls that compute exactly what the recorded list
 * computes: the native backend, outside `runAsync`, no autograd (grad mode off, or nothing requires grad), every
 * module in eval mode, no masks. The program is recorded on the second call in a row with the same input shape and
 * settings (a server whose shapes change every call keeps running eagerly, without recording costs), and recorded
 * again when a parameter is replaced or written in place (its version moves), the precision changes or the shape
 * does. Its intermediates are the buffers one eager forward would take (a layer's worth: forwards recorded inside
 * it reuse each other's dead buffers, see `newProgramScope`), kept for the module's life or until the program is
 * replaced, when they go back to the shared pool. `ATTNODE_FORWARD_PROGRAM=0` turns it off.
 */
import { addon, nativeBackend } from './backend/native';
import { currentContext, withContext, type BufferScope, type CommandList } from './context';
import { Tensor, empty } from './tensor';
import { newProgramScope, releaseProgramBuffers } from './workspace';
import { Module } from './nn/module';
import { programSwitch } from './program-switch';

type F32 = Tensor<'float32'>;

const replay = programSwitch('ATTNODE_FORWARD_PROGRAM');

/** @internal Turns replayed forwards on or off (tests compare them with the eager forward); returns the previous setting. */
export function setForwardProgramEnabled(on: boolean): boolean {
  return replay.set(on);
}

/** Bodies of replayable forwards running (eagerly or being recorded): modules inside them do not replay. */
let nesting = 0;

/** @internal Programs recorded and replayed so far in this process (tests check which path a call took). */
export function forwardProgramStats(): { recorded: number; runs: number } {
  return replay.snapshot();
}

interface Program {
  readonly key: string;
  readonly list: CommandList;
  /** The program's own input buffer: each call's input is copied here. */
  readonly input: F32;
  readonly output: F32;
  readonly scope: BufferScope;
  readonly params: readonly Tensor[];
  readonly versions: readonly number[];
}

/**
 * The replayed forward of one module (see the module comment). The module calls {@link ReplayedForward.forward}
 * from inside its own execution context (`inContext`) with its eager forward body.
 */
export class ReplayedForward {
  #program: Program | null = null;
  /** The key of the last call that ran eagerly: a second call with the same key records the program. */
  #lastKey: string | null = null;

  /**
   * The module's output for `src`: replayed when it can be (recorded first if needed), else `body(src)`, the eager
   * forward. `eligible` is the module's own judgement that the recorded ops would compute this call (no masks, a
   * named activation, ...); `settings` is everything besides the input shape and the context's precisions that
   * changes what the recorded ops are (an empty string when nothing does); `body` is also what is recorded (with a
   * program-owned input of `src`'s shape). Modules called inside another one's eager or recorded body run eagerly:
   * only the outermost module records, so a stack does not keep a program per layer.
   */
  forward(module: Module, src: F32, eligible: boolean, settings: string, body: (x: F32) => F32): F32 {
    const out = eligible && nesting === 0 ? this.#replay(module, src, settings, body) : null;
    if (out) return out;
    nesting++;
    try {
      return body(src);
    } finally {
      nesting--;
    }
  }

  #replay(module: Module, src: F32, settings: string, body: (x: F32) => F32): F32 | null {
    const a = addon;
    const ctx = currentContext();
    if (!replay.enabled || !a || ctx.backend !== nativeBackend || ctx.recording || src.dtype !== 'float32') return null;
    const params: Tensor[] = [];
    if (anyTraining(module, params)) return null;
    if (ctx.gradEnabled && (src.requiresGrad || params.some((p) => p.requiresGrad))) return null;
    const key = `${src.shape.join('x')};${ctx.weightPrecision};${ctx.attentionPrecision};${settings}`;
    let p = this.#program;
    if (p && !(p.key === key && sameParams(p, params))) {
      this.#drop();
      p = null;
    }
    if (!p) {
      if (this.#lastKey !== key) {
        this.#lastKey = key;
        return null;
      }
      p = this.#record(a.createCommandList(), src, key, params, body);
      if (!p) return null;
    }
    p.input.data.set(src.contiguous().data);
    a.runList(p.list);
    replay.stats.runs++;
    // A copy: the program's output buffer is overwritten by the next call.
    const out = empty(p.output.shape);
    out.data.set(p.output.data);
    return out;
  }

  #record(list: CommandList, src: F32, key: string, params: readonly Tensor[], body: (x: F32) => F32): Program | null {
    const scope = newProgramScope();
    const input = new Tensor(new Float32Array(src.size), src.shape.slice(), 'float32');
    let output: F32;
    nesting++;
    try {
      output = withContext({ recording: list, bufferScope: scope }, () => body(input));
    } catch (e) {
      releaseProgramBuffers(scope);
      throw e;
    } finally {
      nesting--;
    }
    if (!output.isContiguous() || output.data.buffer === input.data.buffer) {
      // Nothing recorded worth replaying (a stack of no layers returns its input); the list is never run.
      releaseProgramBuffers(scope);
      return null;
    }
    replay.stats.recorded++;
    this.#lastKey = null;
    return (this.#program = { key, list, input, output, scope, params, versions: params.map((t) => t._version) });
  }

  /** Forgets the program; its buffers go back to the shared pool (its list is never run again). */
  #drop(): void {
    if (this.#program) releaseProgramBuffers(this.#program.scope);
    this.#program = null;
  }
}

/**
 * True when `m` or a descendant is in training mode; else every tensor they hold (parameters and buffers, which a
 * forward may read) is pushed to `tensors`. The same walk as `Module.namedChildren`/`parameters` (own enumerable
 * properties), without the state-dict names those build: this runs on every call (~0.05 ms for a 6-layer encoder
 * where `parameters()` plus `namedModules()` took ~1 ms on the loaded Zen 4).
 */
function anyTraining(m: Module, tensors: Tensor[]): boolean {
  if (m.training) return true;
  for (const v of Object.values(m)) {
    if (v instanceof Tensor) tensors.push(v);
    else if (v instanceof Module && anyTraining(v, tensors)) return true;
  }
  return false;
}

/** True when `params` are the tensors the program was recorded with, unchanged since. */
function sameParams(p: Program, params: readonly Tensor[]): boolean {
  if (params.length !== p.params.length) return false;
  for (let i = 0; i < params.length; i++) {
    if (params[i] !== p.params[i] || params[i]!._version !== p.versions[i]) return false;
  }
  return true;
}
