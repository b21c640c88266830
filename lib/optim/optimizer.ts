/**
 * `Optimizer`, the base of {@link SGD}, {@link Adam} and {@link AdamW}, with
 * PyTorch 1.13's `torch.optim.Optimizer` semantics: parameter groups (each
 * with its own options, the rest taken from the defaults), per-parameter
 * state created on a parameter's first step with a gradient, `zeroGrad`, and
 * state dicts in PyTorch's layout (`state` by parameter index, `param_groups`
 * whose `params` are indices, PyTorch's key names).
 *
 * A step runs one fused backend call per parameter group (`sgdStep` /
 * `adamStep`): the native backend updates every tensor of the group in one
 * threaded kernel, the JS backend is the reference. Parameters are updated
 * in place, and the caches derived from their memory (the native backend's
 * packed GEMM copies) are told so, so the next forward uses the new values.
 */
import { Tensor } from '../tensor';
import { resolveBackend } from '../backend/registry';
import type { Backend } from '../backend/backend';
import { describeValue, formatShape } from '../errors';
import { toStateKey } from '../nn/module';
import { markWritten } from '../in-place';
import { currentContext } from '../context';
import { pendingAsyncCalls } from '../async';
import { recycleBuffer } from '../workspace';

/** One parameter group as the optimizer holds it: its tensors and every option (PyTorch's `param_groups[i]`). */
export type ParamGroup<O> = O & {
  params: Tensor[];
  /** Set by the first LR scheduler attached (PyTorch's `initial_lr`): the lr schedules start from. */
  initialLr?: number;
};

/** A parameter group as given to a constructor or {@link Optimizer.addParamGroup}: options left out come from the defaults. */
export type ParamGroupInput<O> = Partial<O> & { params: Iterable<Tensor> | Tensor; initialLr?: number };

/** What an optimizer optimizes: tensors (one group), or parameter groups (e.g. `[{ params, lr }, ...]`). */
export type ParamsInput<O> = Iterable<Tensor> | Iterable<ParamGroupInput<O>>;

/** Options of {@link Optimizer.zeroGrad}. */
export interface ZeroGradOptions {
  /** Default true: gradients become null; false: they are filled with zeros in place. */
  setToNone?: boolean;
}

/** A value of per-parameter optimizer state (PyTorch's `state[p][key]`): a tensor like the parameter, a step count, or None. */
export type ParamStateValue = Tensor<'float32'> | number | null;

/** An optimizer's state dict, in PyTorch's layout and key names. */
export interface OptimizerStateDict {
  /** Per-parameter state by parameter index (its position across all groups, in order). */
  state: Record<number, Record<string, ParamStateValue>>;
  /** Every group's options under PyTorch's names (`weight_decay`, `initial_lr`), with `params` as indices. */
  param_groups: Array<Record<string, unknown> & { params: number[] }>;
}

/** How one option of an optimizer is checked: returns the value to store, or throws naming the option. */
export type OptionCheck = (value: unknown, where: string) => unknown;

/** PyTorch's flags of its other implementations (foreach, CUDA graphs, autograd through the step): accepted in loaded state dicts and ignored. */
const TORCH_ONLY_KEYS = ['foreach', 'capturable', 'differentiable', 'fused'];

/** `weight_decay` → `weightDecay`. */
function fromStateKey(key: string): string {
  return key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** A float32 tensor of zeros with `p`'s shape and memory layout (PyTorch's `zeros_like(p, memory_format=preserve_format)`). */
export function zerosLike(p: Tensor): Tensor<'float32'> {
  return new Tensor(new Float32Array(p.data.length), p.shape, 'float32', p.isContiguous() ? undefined : p.strides);
}

function sameStrides(a: Tensor, b: Tensor): boolean {
  if (a.isContiguous() && b.isContiguous()) return true;
  return a.strides.every((s, i) => s === b.strides[i] || a.shape[i]! <= 1);
}

/**
 * `src`'s elements laid out as `like`'s memory: `src.data` itself when the layouts agree (no copy), else a
 * copy through the backend (recorded in order inside `runAsync`).
 */
export function dataInLayoutOf(src: Tensor<'float32'>, like: Tensor, backend: Backend): Float32Array {
  if (src.data.length === src.size && sameStrides(src, like)) return src.data;
  const out = new Float32Array(like.data.length);
  backend.copy({ x: src.data, xStrides: src.strides, y: out, yStrides: like.strides, shape: like.shape });
  return out;
}

/**
 * The base optimizer: parameter groups, state, `zeroGrad`, state dicts. Subclasses give the option checks and
 * `updateGroup` (one fused backend call).
 * @typeParam O the options of one group (camelCase).
 */
export abstract class Optimizer<O extends object = Record<string, unknown>> {
  /** Options a group does not set itself. */
  readonly defaults: Readonly<Partial<O>>;
  /** The groups, each with its tensors and all its options; change `lr` (or any option) here between steps. */
  readonly paramGroups: ParamGroup<O>[] = [];
  /** Per-parameter state (PyTorch's `optimizer.state`), under PyTorch's key names; created on a parameter's first step. */
  readonly state = new Map<Tensor, Record<string, ParamStateValue>>();
  /** `SGD`, `Adam`, `AdamW`: for messages. */
  protected readonly name: string;
  readonly #checks: Readonly<Record<string, OptionCheck>>;

  /**
   * @param name the optimizer's name, for messages.
   * @param params tensors, or parameter groups.
   * @param defaults the options (already checked by the subclass; an option left undefined is required in every group).
   * @param checks one check per option key: what a group may set.
   */
  protected constructor(name: string, params: ParamsInput<O>, defaults: Partial<O>, checks: Record<string, OptionCheck>) {
    this.name = name;
    this.defaults = Object.freeze({ ...defaults });
    this.#checks = checks;
    if (params instanceof Tensor) {
      throw new TypeError(`${name}: params argument given to the optimizer should be an iterable of Tensors or parameter groups, but got a Tensor`);
    }
    if (params === null || typeof params !== 'object' || typeof (params as Iterable<unknown>)[Symbol.iterator] !== 'function') {
      throw new TypeError(`${name}: argument 'params' must be an iterable of Tensors or parameter groups, got ${describeValue(params)}`);
    }
    const list = [...(params as Iterable<unknown>)];
    if (list.length === 0) throw new RangeError(`${name}: optimizer got an empty parameter list`);
    const groups = list[0] instanceof Tensor ? [{ params: list as Tensor[] } as unknown as ParamGroupInput<O>] : (list as ParamGroupInput<O>[]);
    for (const group of groups) this.addParamGroup(group);
  }

  /**
   * Adds a group (PyTorch's `add_param_group`): e.g. layers unfrozen during fine-tuning. Options it does not set
   * come from the defaults.
   * @throws TypeError for a non-tensor parameter or an unknown option; RangeError for a bad option value, a
   *   parameter given twice, or one already in another group.
   */
  addParamGroup(group: ParamGroupInput<O>): void {
    const fn = `${this.name}.addParamGroup`;
    if (group === null || typeof group !== 'object' || group instanceof Tensor || Array.isArray(group)) {
      throw new TypeError(`${fn}: a parameter group must be an object { params, ...options }, got ${describeValue(group)}`);
    }
    const where = `${fn}: parameter group ${this.paramGroups.length}`;
    const raw = group.params;
    if (raw === undefined) throw new TypeError(`${where} has no 'params'`);
    const params = raw instanceof Tensor ? [raw] : [...(raw as Iterable<unknown>)];
    params.forEach((p, i) => this.#checkParam(p, `${where}, params[${i}]`));
    const tensors = params as Tensor[];
    if (new Set(tensors).size !== tensors.length) {
      // PyTorch 1.13 warns and would update such a tensor twice per step; refused here.
      throw new RangeError(`${where} contains a parameter more than once`);
    }
    const taken = new Set(this.paramGroups.flatMap((g) => g.params));
    if (tensors.some((p) => taken.has(p))) throw new RangeError(`${where}: some parameters appear in more than one parameter group`);
    const out: Record<string, unknown> = { params: tensors };
    for (const [key, value] of Object.entries(group)) {
      if (key === 'params') continue;
      if (key === 'initialLr') {
        out[key] = checkNonNegative(value, `${where}: option 'initialLr'`, 'Invalid initial learning rate');
        continue;
      }
      const check = this.#checks[key];
      if (!check) throw new TypeError(`${where}: unknown option '${key}'${hint(key, this.#checks)}; known options: ${Object.keys(this.#checks).join(', ')}`);
      if (value !== undefined) out[key] = check(value, `${where}: option '${key}'`);
    }
    for (const [key, value] of Object.entries(this.defaults)) {
      if (out[key] === undefined) out[key] = value;
    }
    for (const key of Object.keys(this.#checks)) {
      if (out[key] === undefined) {
        throw new TypeError(`${where} didn't specify a value of required optimization parameter ${key}`);
      }
    }
    this.checkGroup(out as ParamGroup<O>, where);
    this.paramGroups.push(out as ParamGroup<O>);
  }

  /** Checks that involve several options of one group (SGD's nesterov); `where` starts the message. */
  protected checkGroup(_group: ParamGroup<O>, _where: string): void {}

  #checkParam(p: unknown, where: string): void {
    if (!(p instanceof Tensor)) throw new TypeError(`${where}: optimizer can only optimize Tensors, got ${describeValue(p)}`);
    if (p.dtype !== 'float32') throw new TypeError(`${where}: optimizer can only optimize float32 Tensors, got ${p.dtype}`);
    if (!p.isLeaf) throw new RangeError(`${where}: can't optimize a non-leaf Tensor (the result of an op that requires grad; optimize the leaves it came from, or detach() it)`);
    if (p.data.length !== p.size) {
      throw new TypeError(`${where}: a parameter must cover its memory densely (a tensor or a transposed/permuted view of one), got shape ${formatShape(p.shape)} with strides ${formatShape(p.strides)}`);
    }
  }

  /**
   * Clears the gradients of every parameter: `grad = null` (the default, PyTorch 2's default too), or zeros
   * written in place with `setToNone: false` (then a step still applies weight decay and momentum).
   */
  zeroGrad(options: ZeroGradOptions = {}): void {
    const fn = `${this.name}.zeroGrad`;
    if (options === null || typeof options !== 'object') throw new TypeError(`${fn}: options must be an object, got ${describeValue(options)}`);
    for (const key of Object.keys(options)) if (key !== 'setToNone') throw new TypeError(`${fn}: unknown option '${key}'; known options: setToNone`);
    const setToNone = options.setToNone ?? true;
    if (typeof setToNone !== 'boolean') throw new TypeError(`${fn}: option 'setToNone' must be a boolean, got ${describeValue(setToNone)}`);
    const backend = resolveBackend();
    const zero = new Float32Array(1);
    // A gradient only the library has seen (the backward made it; no code outside read `grad`) goes back to the
    // buffer pool, so the next backward stores its gradients without allocating: not while native calls that may
    // still read it are recorded or in flight.
    const recycle = setToNone && !currentContext().recording && pendingAsyncCalls() === 0;
    for (const group of this.paramGroups) {
      for (const p of group.params) {
        const g = p._peekGrad();
        if (!g) continue;
        if (setToNone) {
          if (recycle && p._gradIsPrivate) recycleBuffer(g.data.buffer);
          p.grad = null;
        } else if (g.size > 0) {
          // A backend copy of one zero (stride 0), so inside runAsync it runs in order with the kernels.
          backend.copy({ x: zero, xStrides: g.shape.map(() => 0), y: g.data as Float32Array, yStrides: g.strides, shape: g.shape });
        }
      }
    }
  }

  /**
   * One optimization step over every group: parameters without a gradient are skipped (their state is
   * untouched, as in PyTorch). With `closure` (re-evaluates the model and returns the loss) it is called first and
   * its result returned.
   */
  step<T = undefined>(closure?: () => T): T | undefined {
    if (closure !== undefined && typeof closure !== 'function') {
      throw new TypeError(`${this.name}.step: argument 'closure' must be a function, got ${describeValue(closure)}`);
    }
    const loss = closure ? closure() : undefined;
    const backend = resolveBackend();
    this.paramGroups.forEach((group, gi) => {
      // Checked again at every step: options may be changed between steps (a scheduler writes lr).
      const where = `${this.name}.step: paramGroups[${gi}]`;
      for (const [key, check] of Object.entries(this.#checks)) {
        (group as Record<string, unknown>)[key] = check((group as Record<string, unknown>)[key], `${where} option '${key}'`);
      }
      this.checkGroup(group, where);
      const withGrad: { p: Tensor<'float32'>; g: Float32Array }[] = [];
      group.params.forEach((p) => {
        // Tensor.grad holds a float32 tensor of p's shape (its setter checks), in any layout.
        const g = p._peekGrad();
        if (g) withGrad.push({ p: p as Tensor<'float32'>, g: dataInLayoutOf(g, p, backend) });
      });
      if (withGrad.length === 0) return;
      this.updateGroup(group, withGrad, backend);
      for (const { p } of withGrad) markWritten(p);
    });
    return loss;
  }

  /**
   * Updates the parameters of `group` that have gradients (`items`, each gradient laid out as its parameter's
   * memory) with one fused backend call, creating their state on first use.
   */
  protected abstract updateGroup(group: ParamGroup<O>, items: { p: Tensor<'float32'>; g: Float32Array }[], backend: Backend): void;

  /**
   * Checks a loaded state entry for `p` and returns the state to keep (tensors copied into `p`'s layout).
   * @param saved the entry under PyTorch's keys.
   */
  protected abstract loadParamState(p: Tensor, saved: Record<string, unknown>, group: ParamGroup<O>, where: string): Record<string, ParamStateValue>;

  /**
   * The optimizer's state in PyTorch's layout: `{ state: { [index]: {...} }, param_groups: [{ lr, ..., params: [indices] }] }`.
   * The state tensors are the optimizer's own, not copies (as in PyTorch): clone them to keep a snapshot.
   */
  stateDict(): OptimizerStateDict {
    const index = new Map<Tensor, number>();
    const paramGroups = this.paramGroups.map((group) => {
      const packed: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(group)) {
        if (key !== 'params') packed[toStateKey(key)] = Array.isArray(value) ? [...value] : value;
      }
      packed['params'] = group.params.map((p) => {
        if (!index.has(p)) index.set(p, index.size);
        return index.get(p)!;
      });
      return packed as Record<string, unknown> & { params: number[] };
    });
    const state: Record<number, Record<string, ParamStateValue>> = {};
    for (const [p, s] of this.state) {
      const i = index.get(p);
      if (i !== undefined) state[i] = { ...s };
    }
    return { state, param_groups: paramGroups };
  }

  /**
   * Loads a state dict from {@link stateDict} (or PyTorch's, converted to numbers and Tensors): the groups'
   * options and the per-parameter state, matched to this optimizer's parameters by position. Tensors are copied.
   * Nothing changes when it throws.
   * @throws TypeError/RangeError naming the group, parameter index or key that does not fit.
   */
  loadStateDict(stateDict: OptimizerStateDict): void {
    const fn = `${this.name}.loadStateDict`;
    if (stateDict === null || typeof stateDict !== 'object') throw new TypeError(`${fn}: argument 'stateDict' must be an object { state, param_groups }, got ${describeValue(stateDict)}`);
    const saved = stateDict.param_groups;
    if (!Array.isArray(saved)) throw new TypeError(`${fn}: 'param_groups' must be an array, got ${describeValue(saved)}`);
    if (saved.length !== this.paramGroups.length) {
      throw new RangeError(`${fn}: loaded state dict has a different number of parameter groups (${saved.length}, the optimizer has ${this.paramGroups.length})`);
    }
    const byIndex = new Map<number, { p: Tensor; group: number }>();
    const groups: ParamGroup<O>[] = saved.map((sg, gi) => {
      const where = `${fn}: param_groups[${gi}]`;
      if (sg === null || typeof sg !== 'object' || !Array.isArray(sg.params)) throw new TypeError(`${where} must be an object with 'params' (an array of indices)`);
      const mine = this.paramGroups[gi]!;
      if (sg.params.length !== mine.params.length) {
        throw new RangeError(`${where}: loaded state dict contains a parameter group that doesn't match the size of optimizer's group (${sg.params.length} parameters, the optimizer's has ${mine.params.length})`);
      }
      sg.params.forEach((id, k) => {
        if (!Number.isInteger(id)) throw new TypeError(`${where}.params[${k}] must be an integer index, got ${describeValue(id)}`);
        byIndex.set(id, { p: mine.params[k]!, group: gi });
      });
      const out: Record<string, unknown> = { params: mine.params };
      for (const [key, value] of Object.entries(sg)) {
        if (key === 'params' || TORCH_ONLY_KEYS.includes(key)) continue;
        const name = fromStateKey(key);
        if (name === 'initialLr') {
          out[name] = checkNonNegative(value, `${where}: '${key}'`, 'Invalid initial learning rate');
          continue;
        }
        const check = this.#checks[name];
        if (!check) throw new RangeError(`${where}: unknown key '${key}'; known keys: ${Object.keys(this.#checks).map(toStateKey).join(', ')}, initial_lr`);
        out[name] = check(value, `${where}: '${key}'`);
      }
      for (const key of Object.keys(this.#checks)) {
        if (out[key] === undefined) throw new RangeError(`${where} has no '${toStateKey(key)}'`);
      }
      this.checkGroup(out as ParamGroup<O>, where);
      return out as ParamGroup<O>;
    });
    const state = stateDict.state ?? {};
    if (typeof state !== 'object') throw new TypeError(`${fn}: 'state' must be an object keyed by parameter index, got ${describeValue(state)}`);
    const loaded = new Map<Tensor, Record<string, ParamStateValue>>();
    for (const [key, entry] of Object.entries(state)) {
      const target = byIndex.get(Number(key));
      if (!target) throw new RangeError(`${fn}: 'state' has an entry for parameter index ${key}, which no parameter group lists`);
      if (entry === null || typeof entry !== 'object') throw new TypeError(`${fn}: state[${key}] must be an object, got ${describeValue(entry)}`);
      loaded.set(target.p, this.loadParamState(target.p, entry as Record<string, unknown>, groups[target.group]!, `${fn}: state[${key}]`));
    }
    this.paramGroups.splice(0, this.paramGroups.length, ...groups);
    this.state.clear();
    for (const [p, s] of loaded) this.state.set(p, s);
  }
}

function hint(key: string, checks: Readonly<Record<string, OptionCheck>>): string {
  const camel = fromStateKey(key);
  return camel !== key && checks[camel] ? ` (did you mean '${camel}'?)` : '';
}

/** A finite or infinite number >= 0, else PyTorch's message (`Invalid learning rate: -1`) naming the option. */
export function checkNonNegative(value: unknown, where: string, invalid: string): number {
  if (typeof value !== 'number') throw new TypeError(`${where} must be a number, got ${describeValue(value)}`);
  if (!(value >= 0)) throw new RangeError(`${where}: ${invalid}: ${value} (must be >= 0)`);
  return value;
}

/** A boolean option. */
export function checkBoolean(value: unknown, where: string): boolean {
  if (typeof value !== 'boolean') throw new TypeError(`${where} must be a boolean, got ${describeValue(value)}`);
  return value;
}

/**
 * A loaded state tensor for `p`: a float32 Tensor of `p`'s shape, copied into a new array laid out as `p`'s
 * memory (PyTorch's load_state_dict deep-copies too).
 */
export function loadStateTensor(value: unknown, p: Tensor, where: string): Tensor<'float32'> {
  if (!(value instanceof Tensor) || value.dtype !== 'float32') throw new TypeError(`${where} must be a float32 Tensor, got ${describeValue(value)}`);
  if (value.shape.length !== p.shape.length || value.shape.some((d, i) => d !== p.shape[i])) {
    throw new RangeError(`${where} must have the parameter's shape ${formatShape(p.shape)}, got ${formatShape(value.shape)}`);
  }
  const out = zerosLike(p);
  const src = value as Tensor<'float32'>;
  if (src.data.length === src.size && sameStrides(src, p)) {
    out.data.set(src.data);
  } else {
    // Element by element through both layouts (a load is rare and small next to training).
    const n = p.size;
    const idx = new Array<number>(p.shape.length).fill(0);
    for (let e = 0; e < n; e++) {
      let so = 0;
      let doff = 0;
      for (let d = 0; d < idx.length; d++) {
        so += idx[d]! * src.strides[d]!;
        doff += idx[d]! * out.strides[d]!;
      }
      out.data[doff] = src.data[so]!;
      for (let d = idx.length - 1; d >= 0; d--) {
        if (++idx[d]! < p.shape[d]!) break;
        idx[d] = 0;
      }
    }
  }
  return out;
}

/** A loaded step count: a number or a one-element tensor (PyTorch 1.13 keeps `step` as a float tensor), an integer >= 0. */
export function loadStepCount(value: unknown, where: string): number {
  const n = value instanceof Tensor && value.size === 1 ? Number(value.data[0]) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) {
    throw new RangeError(`${where} must be a step count (an integer >= 0, or a one-element Tensor holding one), got ${describeValue(value)}`);
  }
  return n;
}
