/**
 * `Module`, the base of every layer, read the way PyTorch's `nn.Module` reads:
 * child modules and parameters are plain properties, found automatically in
 * assignment order, and the state dict uses PyTorch's key names.
 *
 * Naming: a property's state-dict name is its snake_case form (`selfAttn` →
 * `self_attn`, `inProjWeight` → `in_proj_weight`, `linear1` → `linear1`), so
 * TypeScript code stays camelCase while keys match what PyTorch writes. A key
 * that is no property's snake_case (BERT's `LayerNorm`, `attention.self`) is
 * given explicitly with `registerStateKey(property, key)`.
 *
 * What counts: an own enumerable property holding a `Module` is a child; one
 * holding a `Tensor` is a parameter, unless it was declared a buffer with
 * `registerBuffer`; `null` (e.g. `bias: false`) is skipped, like PyTorch's
 * `None` parameters. Anything else (numbers, options) is ignored.
 *
 * Parameters require grad: attnode's modules create theirs with
 * {@link parameter}, and `loadStateDict` gives a loaded tensor the
 * `requiresGrad` of the one it replaces. Modules start in training mode
 * (PyTorch's default): `eval()` turns dropout off for inference.
 */
// Registers the autograd engine into Tensor (modules are what most training code starts from).
import '../autograd/index';
import { Tensor } from '../tensor';
import type { AttentionPrecision, Backend, BackendName, WeightPrecision } from '../backend/backend';
import { resolveBackend } from '../backend/registry';
import { addon } from '../backend/native';
import { currentContext, withContext } from '../context';
import { withForwardScope } from '../workspace';

/** A backend by name or as an object. */
export type BackendChoice = BackendName | Backend;
import { stateDictMismatchMessage, type ShapeMismatch } from './state-dict-report';
import { runAsyncOn, type RunAsyncOptions } from '../async';

/** Options of {@link Module.forwardAsyncWith}: those of `runAsync`. */
export type ForwardAsyncOptions = RunAsyncOptions;

/** Options of {@link Module.loadStateDict}. */
export interface LoadStateDictOptions {
  /** Every key must match (default true): missing and unexpected keys are listed in one error. */
  strict?: boolean;
}

/** What {@link Module.loadStateDict} did not match (only non-empty when `strict` is false). */
export interface LoadStateDictResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

/** `selfAttn` → `self_attn`; `inProjWeight` → `in_proj_weight`; `0` → `0`. */
export function toStateKey(property: string): string {
  return property.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/**
 * Marks `t` as a parameter: sets `requiresGrad` (default true) and returns
 * the same tensor (PyTorch's `nn.Parameter(t)`, without a copy). Any tensor a
 * module holds in a property is a parameter for the state dict; this makes
 * it trainable.
 */
export function parameter<T extends Tensor>(t: T, requiresGrad = true): T {
  t.requiresGrad = requiresGrad;
  return t;
}

export abstract class Module {
  // ES private fields are not enumerable, so they never look like children or parameters.
  #training = true;
  #buffers = new Map<string, boolean>();
  #backend: BackendChoice | null = null;
  // null: inherit from the execution context (an enclosing module's setting, else float32).
  #weightPrecision: WeightPrecision | null = null;
  #attentionPrecision: AttentionPrecision | null = null;
  // Properties whose state-dict key is not their snake_case (registerStateKey).
  #stateKeys = new Map<string, string>();

  /** The state-dict name of a property: its registered key, else its snake_case. */
  #keyOf(property: string): string {
    return this.#stateKeys.get(property) ?? toStateKey(property);
  }

  /**
   * Names the state-dict key of a child module or parameter explicitly, for PyTorch keys that are not the
   * snake_case of a camelCase property: `this.registerStateKey('layerNorm', 'LayerNorm')` stores
   * `this.layerNorm` under `LayerNorm.*`, `this.registerStateKey('selfAttention', 'self')` under `self.*` (BERT's
   * `attention.self`). Call it in the constructor, before or after assigning the property.
   * @throws TypeError for a key that is empty, contains '.', or is already another property's key.
   */
  protected registerStateKey(property: string, key: string): void {
    if (typeof property !== 'string' || property === '') {
      throw new TypeError(`registerStateKey: argument 'property' must be a property name, got ${JSON.stringify(property)}`);
    }
    if (typeof key !== 'string' || key === '' || key.includes('.')) {
      throw new TypeError(`registerStateKey: argument 'key' must be a non-empty name without '.', got ${JSON.stringify(key)}`);
    }
    for (const other of new Set([...Object.keys(this), ...this.#stateKeys.keys()])) {
      if (other !== property && this.#keyOf(other) === key) {
        throw new TypeError(`registerStateKey: key '${key}' of property '${property}' is already the key of property '${other}'`);
      }
    }
    this.#stateKeys.set(property, key);
  }

  /** Children in assignment order, as [state-dict name, module]. */
  namedChildren(): [string, Module][] {
    const out: [string, Module][] = [];
    for (const [prop, value] of Object.entries(this)) {
      if (value instanceof Module) out.push([this.#keyOf(prop), value]);
    }
    return out;
  }

  /** This module and every descendant, as [dotted name, module]; the root's name is ''. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [name, child] of this.namedChildren()) out.push(...child.namedModules(prefix ? `${prefix}.${name}` : name));
    return out;
  }

  /** Own (non-recursive) parameters and buffers, as [state-dict name, property name, tensor, isBuffer]. */
  #ownTensors(): [string, string, Tensor, boolean][] {
    const out: [string, string, Tensor, boolean][] = [];
    for (const [prop, value] of Object.entries(this)) {
      if (value instanceof Tensor) out.push([this.#keyOf(prop), prop, value, this.#buffers.has(prop)]);
    }
    return out;
  }

  /** Every parameter, recursively, under its PyTorch name (`layers.0.self_attn.in_proj_weight`). */
  namedParameters(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [prefix, m] of this.namedModules()) {
      for (const [key, , t, isBuffer] of m.#ownTensors()) if (!isBuffer) out.push([prefix ? `${prefix}.${key}` : key, t]);
    }
    return out;
  }

  /** Every parameter tensor, recursively. */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Total number of parameter elements. */
  numParameters(): number {
    let n = 0;
    for (const [, t] of this.namedParameters()) n += t.size;
    return n;
  }

  /**
   * Parameters and persistent buffers under PyTorch's key names, in PyTorch's
   * order (a module's own tensors, then each child's). The tensors are the
   * module's own, not copies.
   */
  stateDict(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const [prefix, m] of this.namedModules()) {
      for (const [key, prop, t, isBuffer] of m.#ownTensors()) {
        if (isBuffer && !m.#buffers.get(prop)) continue;
        out[prefix ? `${prefix}.${key}` : key] = t;
      }
    }
    return out;
  }

  /**
   * Loads a state dict (e.g. from `loadSafetensors`). Each tensor must have the
   * shape and dtype of the one it replaces; it is then used as it is (no copy).
   * With `strict` (the default) missing and unexpected keys are an error that
   * gives their counts, the first few of each and a hint when a pattern explains
   * them (a prefix to strip, a submodule's dict, a differently spelled key).
   * Shape mismatches are errors in both modes, all listed side by side; a
   * dtype mismatch is a TypeError.
   */
  loadStateDict(dict: Record<string, Tensor>, options: LoadStateDictOptions = {}): LoadStateDictResult {
    const strict = options.strict ?? true;
    if (dict === null || typeof dict !== 'object') {
      throw new TypeError(`loadStateDict: argument 'dict' must be an object of Tensors, got ${dict === null ? 'null' : typeof dict}`);
    }
    const targets = new Map<string, { module: Module; prop: string; current: Tensor }>();
    for (const [prefix, m] of this.namedModules()) {
      for (const [key, prop, t, isBuffer] of m.#ownTensors()) {
        if (isBuffer && !m.#buffers.get(prop)) continue;
        targets.set(prefix ? `${prefix}.${key}` : key, { module: m, prop, current: t });
      }
    }
    const missingKeys = [...targets.keys()].filter((k) => !(k in dict));
    const unexpectedKeys = Object.keys(dict).filter((k) => !targets.has(k));
    // Check everything before changing anything, so a failed load leaves the module as it was.
    const updates: [Module, string, Tensor][] = [];
    const trainable: [Module, string][] = [];
    const shapes: ShapeMismatch[] = [];
    for (const [key, { module, prop, current }] of targets) {
      if (!(key in dict)) continue;
      const t = dict[key];
      if (!(t instanceof Tensor)) {
        throw new TypeError(`loadStateDict: '${key}' must be a Tensor, got ${t === null ? 'null' : typeof t}`);
      }
      if (t.dtype !== current.dtype) {
        throw new TypeError(`loadStateDict: '${key}' must have dtype ${current.dtype}, got ${t.dtype}`);
      }
      if (t.shape.length !== current.shape.length || t.shape.some((d, i) => d !== current.shape[i])) {
        shapes.push({ key, expected: current.shape, got: t.shape });
        continue;
      }
      updates.push([module, prop, t]);
      if (current.requiresGrad) trainable.push([module, prop]);
    }
    const keysDiffer = strict && (missingKeys.length > 0 || unexpectedKeys.length > 0);
    if (keysDiffer || shapes.length) {
      throw new RangeError(stateDictMismatchMessage(
        this.constructor.name, keysDiffer ? missingKeys : [], keysDiffer ? unexpectedKeys : [], shapes,
      ));
    }
    const changed = new Set<Module>();
    for (const [module, prop, t] of updates) {
      (module as unknown as Record<string, Tensor>)[prop] = t;
      changed.add(module);
    }
    for (const m of changed) m.stateChanged();
    // A loaded tensor becomes the parameter, trainable if the one it replaced was (after stateChanged, which may
    // have re-laid it into a new tensor).
    for (const [module, prop] of trainable) {
      const t = (module as unknown as Record<string, Tensor>)[prop];
      if (t instanceof Tensor && t.isLeaf && t.dtype === 'float32') t.requiresGrad = true;
    }
    return { missingKeys, unexpectedKeys };
  }

  /**
   * Declares `name` a buffer (state that is not a parameter, like PyTorch's
   * `register_buffer`); non-persistent buffers stay out of the state dict.
   */
  protected registerBuffer(name: string, value: Tensor, persistent = true): void {
    (this as unknown as Record<string, Tensor>)[name] = value;
    this.#buffers.set(name, persistent);
  }

  /** Called after `loadStateDict` replaced some of this module's tensors: drop anything derived from them. */
  protected stateChanged(): void {}

  /** Runs this module and all its descendants on `backend` ('native', 'js' or a Backend); null restores the global default. */
  useBackend(backend: BackendChoice | null): this {
    for (const [, m] of this.namedModules()) m.#backend = backend;
    return this;
  }

  /**
   * Runs the GEMMs of this module's weights (Linear layers, attention
   * projections) in `precision` for this module and all its descendants.
   * 'float32' (the default) is the reference. 'bfloat16' rounds weights and
   * activations to bfloat16 as they are packed and accumulates in float32:
   * on CPUs with AVX512-BF16 about twice the GEMM throughput and half the
   * weight memory traffic, at ~3 significant digits per product (typical
   * relative error of a layer's output: 1e-3 to 1e-2; measure with your model).
   * 'int8' quantizes each weight symmetrically per output channel once (at
   * packing; again after an in-place update) and the activations per row at
   * every call, multiplies exactly in int32 and dequantizes in the GEMM's
   * store (bias and activation fused): a quarter of the weight bytes and, on
   * CPUs with AVX512-VNNI, about 2.5-3.5x the fp32 GEMM's throughput; every
   * CPU runs it (AVX2 or portable kernels otherwise). Expect a relative error
   * around 1e-2 per layer output (cosine to float32 > 0.999 on a BERT-base
   * layer). The scheme is in native/kernels/qgemm/qgemm.h.
   * Parameters and the state dict stay float32. On the JS backend the rounding
   * is emulated (the reference for the native path, bit for bit for int8).
   * @throws TypeError for another value; Error when this module computes on the
   * native backend, precision is 'bfloat16' and the CPU (or the kernel path
   * chosen by setIsa) has no AVX512-BF16.
   */
  useWeightPrecision(precision: WeightPrecision): this {
    checkPrecision('useWeightPrecision', precision, this.backend, 'weights are', true);
    for (const [, m] of this.namedModules()) m.#weightPrecision = precision;
    return this;
  }

  /**
   * Runs attention's two products (q·kᵀ and probabilities·v) in `precision`
   * for this module and all its descendants. 'float32' (the default) is the
   * reference. 'bfloat16' rounds q, k, v and the probabilities to bfloat16
   * and accumulates in float32; softmax, masks and outputs stay float32. On
   * CPUs with AVX512-BF16 long-sequence attention runs about twice as fast
   * (typical relative error of the output: ~3e-3). It applies to calls that
   * return no attention weights and have more than 8 queries; decoding steps
   * and `needWeights` calls run float32. Independent of
   * {@link useWeightPrecision}; the JS backend emulates the rounding.
   * @throws TypeError for another value; Error when this module computes on the
   * native backend and the CPU (or the kernel path chosen by setIsa) has no AVX512-BF16.
   */
  useAttentionPrecision(precision: AttentionPrecision): this {
    checkPrecision('useAttentionPrecision', precision, this.backend, 'attention is');
    for (const [, m] of this.namedModules()) m.#attentionPrecision = precision;
    return this;
  }

  /** Precision of this module's attention products (see {@link useAttentionPrecision}). */
  get attentionPrecision(): AttentionPrecision {
    return this.#attentionPrecision ?? currentContext().attentionPrecision;
  }

  /** Precision of this module's weight GEMMs (see {@link useWeightPrecision}). */
  get weightPrecision(): WeightPrecision {
    return this.#weightPrecision ?? currentContext().weightPrecision;
  }

  /** The backend this module computes on: its own choice, or the execution context's. */
  get backend(): Backend {
    return resolveBackend(this.#backend ?? undefined);
  }

  /**
   * Runs `fn` in this module's execution context: its backend and
   * precisions (lib/context.ts), so the ops it calls need no backend or
   * precision argument. With `forwardScope` (default true) its intermediates
   * are also lent from the buffer pool and returned when it returns
   * ({@link withForwardScope}); pass false for methods whose results are
   * kept elsewhere (decoding steps write K/V caches).
   */
  protected inContext<T>(fn: () => T, forwardScope = true): T {
    const changes = {
      backend: this.backend,
      weightPrecision: this.weightPrecision,
      attentionPrecision: this.attentionPrecision,
      ...(this.differentiable ? {} : { gradEnabled: false }),
    };
    return withContext(changes, forwardScope ? () => withForwardScope(fn) : fn);
  }

  /**
   * Runs a decoding step of this module in its execution context with grad
   * mode off and no forward scope: steps write keys and values into caches
   * in place, which autograd does not track, so they are inference only (as
   * every generation loop runs them).
   */
  protected inStep<T>(fn: () => T): T {
    return withContext({
      backend: this.backend, weightPrecision: this.weightPrecision, attentionPrecision: this.attentionPrecision, gradEnabled: false,
    }, fn);
  }

  /**
   * False for modules whose methods run with grad mode off (the Hugging Face
   * model families, which write K/V projections into caches in place: they
   * run inference, and their outputs never require grad). attnode's `nn`
   * modules are differentiable.
   */
  protected get differentiable(): boolean {
    return true;
  }

  /**
   * `forward(...args)` with its kernels run off the JS thread (see
   * {@link runAsync}): resolves with the same result a sync call gives. Calls
   * beyond the async queue's limit wait unrecorded, in order, and `forward`
   * runs when their turn comes, so inputs must not be mutated until it
   * settles. The intermediates of attnode's module forwards are recycled when
   * the call settles. On a module whose backend is not native (`useBackend('js')`,
   * or the JS default), `forward` runs synchronously and the promise is
   * already settled. For a signal or `reuseBuffers`, use {@link forwardAsyncWith}.
   */
  forwardAsync<A extends unknown[], R>(this: this & { forward(...args: A): R }, ...args: A): Promise<R> {
    return runAsyncOn(this.backend, () => this.forward(...args));
  }

  /**
   * {@link forwardAsync} with options first: `forwardAsyncWith({ signal }, x)`.
   * Options come first, in their own method, so they can never be confused
   * with a forward's own trailing options object (MultiheadAttention's
   * `{ keyPaddingMask, ... }`), and `forward`'s argument types are checked as
   * in `forward`. `reuseBuffers` (default false) additionally pools the ops
   * `forward` runs directly, not only those of attnode module forwards; only
   * for a forward that keeps nothing it computes except through its result.
   * @throws (as a rejection) TypeError for options that are not
   * {@link RunAsyncOptions}.
   */
  forwardAsyncWith<A extends unknown[], R>(
    this: this & { forward(...args: A): R },
    options: ForwardAsyncOptions,
    ...args: A
  ): Promise<R> {
    return runAsyncOn(this.backend, () => this.forward(...args), options);
  }

  /**
   * Whether this module is in training mode (PyTorch's `training`): dropout
   * layers and the `dropout` options of attention and Transformer layers
   * apply only then. Modules start in training mode; see {@link train} and
   * {@link eval}.
   */
  get training(): boolean {
    return this.#training;
  }

  /**
   * Sets training mode (default true) on this module and every descendant, as
   * PyTorch's `train(mode)`; returns this module.
   * @throws TypeError for a mode that is not a boolean.
   */
  train(mode = true): this {
    if (typeof mode !== 'boolean') throw new TypeError(`train: argument 'mode' must be a boolean, got ${typeof mode}`);
    for (const [, m] of this.namedModules()) m.#training = mode;
    return this;
  }

  /**
   * Inference mode (PyTorch's `eval()`, = `train(false)`): dropout off. Call it
   * before inference on a model built with dropout > 0 (the Transformer layers'
   * default is 0.1), as in PyTorch; models loaded from Hugging Face folders
   * come back in eval mode.
   */
  eval(): this {
    return this.train(false);
  }
}

/**
 * A precision argument of `fn`: 'float32' or 'bfloat16' (or 'int8' for weights), and bfloat16 on the
 * native backend needs AVX512-BF16 on the active kernel path (int8 runs on every path).
 */
function checkPrecision(fn: string, precision: unknown, backend: Backend, what: string, int8 = false): void {
  if (precision !== 'float32' && precision !== 'bfloat16' && !(int8 && precision === 'int8')) {
    const allowed = int8 ? "'float32', 'bfloat16' or 'int8'" : "'float32' or 'bfloat16'";
    throw new TypeError(`${fn}: argument 'precision' must be ${allowed}, got ${String(precision)}`);
  }
  if (precision !== 'bfloat16' || backend.name !== 'native' || !addon || addon.info().bf16) return;
  const info = addon.info();
  const why = info.cpu.features.includes('avx512bf16')
    ? `the active kernel path is '${info.isa}' (lowered by setIsa or ATTNODE_ISA); bfloat16 needs 'avx512'`
    : `this CPU (${info.cpu.brand.trim()}) has no AVX512-BF16`;
  throw new Error(`${fn}: 'bfloat16' ${what} not available on the native backend: ${why}. Use 'float32', or the JS backend (which emulates bfloat16).`);
}
