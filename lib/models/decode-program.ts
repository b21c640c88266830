/**
 * Batch-1 decoding as one native call per token (or, inside runAsync, one call in the recorded list): a decoder's one-token step is recorded once into a native
 * command list (the same ops, checks and kernels as its eager forward: the model's own `forwardPacked` layers over
 * fixed buffers), and each token replays that list with `addon.runList` after writing the token id and position
 * into the small int32 buffers the recorded ops read when they run (the embedding's ids, rotary positions, the
 * K/V row index, the attention's key count). Per-token JS work and N-API dispatch drop from a few hundred op calls
 * (~5 ms per token for a 30-layer model) to one call; the kernels and their results are those of the recorded
 * ops.
 *
 * Safety: the replayed calls re-check those int32 values when they run (native/binding: embedding, rope,
 * indexCopy, pooledAttention), so a wrong one fails the run with an Error instead of reading or writing out of
 * bounds; the program also checks the position and token id itself before writing them.
 *
 * The program is bound to one KV cache's buffers, one weight precision and the parameters as they were when it was
 * recorded; {@link DecodeProgram.matches} tells a caller when to record a new one (a cache grown or reordered into
 * new buffers, new weights loaded or written in place, another precision).
 */
import { addon, nativeBackend } from '../backend/native';
import type { CommandList } from '../context';
import { withContext, currentContext } from '../context';
import type { KVCache, SelfAttentionCache } from '../nn/kv-cache';
import type { Backend } from '../backend/backend';
import { Tensor, empty } from '../tensor';
import type { PackedStep } from './packed-step';
import { programSwitch } from '../program-switch';

type F32 = Tensor<'float32'>;

/** `ATTNODE_DECODE_PROGRAM=0` turns the replayed decode step off (every token runs the eager forward). */
const replay = programSwitch('ATTNODE_DECODE_PROGRAM');

/** @internal Turns the replayed step on or off (tests compare it with the eager step); returns the previous setting. */
export function setDecodeProgramEnabled(on: boolean): boolean {
  return replay.set(on);
}

/** @internal Programs recorded and runs so far in this process (tests check that the replayed step is the one used). */
export function decodeProgramStats(): { recorded: number; runs: number } {
  return replay.snapshot();
}

/** Whether a replayed decode step can run (the addon is loaded and it is not switched off). */
export function decodeProgramAvailable(): boolean {
  return replay.enabled && addon !== null;
}

/** What a program was recorded against: it is valid while all of these are the same objects and versions. */
interface Binding {
  /** Weak: a program must not keep a dropped cache (or, through ReplayedDecode, its buffers) alive. */
  caches: readonly WeakRef<KVCache>[];
  buffers: readonly Float32Array[];
  params: readonly (Tensor | null)[];
  versions: readonly number[];
  precision: string;
}

export class DecodeProgram {
  readonly #list: CommandList;
  readonly #ids: Int32Array;
  readonly #positions: Int32Array;
  readonly #rows: Int32Array;
  readonly #lengths: Int32Array;
  readonly #logits: F32;
  readonly #binding: Binding;
  readonly #vocabSize: number;

  /**
   * Records `step` (the model's one-token forward over a {@link PackedStep} and each layer's K/V rows, returning
   * logits [1, vocab]) against `caches` (batch 1, one per layer), in the current execution context. Must be called
   * inside the model's context (its backend, precisions); the parameters and their versions are noted.
   */
  constructor(
    caches: readonly KVCache[], params: readonly (Tensor | null)[], vocabSize: number,
    step: (s: PackedStep, kv: readonly F32[]) => F32,
  ) {
    const a = addon;
    if (!a) throw new Error('DecodeProgram: the native addon is not loaded');
    this.#vocabSize = vocabSize;
    this.#ids = new Int32Array(1);
    this.#positions = new Int32Array(1);
    this.#rows = new Int32Array(1);
    this.#lengths = new Int32Array(1);
    const s: PackedStep = {
      ids: new Tensor(this.#ids, [1, 1], 'int32'),
      positions: new Tensor(this.#positions, [1, 1], 'int32'),
      rows: this.#rows,
      decode: 1,
      decodeStarts: new Int32Array(1),
      decodeLengths: this.#lengths,
      // Any length up to the cache's capacity at run time (the entry is rewritten per token).
      decodeMaxLength: Math.min(...caches.map((c) => c.capacity)),
      chunks: [],
      logitRows: new Tensor(Int32Array.of(0), [1], 'int32'),
    };
    // Recorded at position 0 (any valid one: the values are read again at every run).
    this.#lengths[0] = 1;
    const kv = caches.map((c) => new Tensor(c.data, [c.capacity, 2 * c.embedDim], 'float32'));
    this.#list = a.createCommandList();
    // No buffer scope: every intermediate is a fresh buffer the list keeps (the program owns them for its life).
    this.#logits = withContext({ recording: this.#list, bufferScope: null }, () => step(s, kv));
    if (this.#logits.shape.length !== 2 || this.#logits.shape[1] !== vocabSize || !this.#logits.isContiguous()) {
      throw new Error(`DecodeProgram: the step returned ${this.#logits.shape.join('x')} logits, expected 1x${vocabSize}`);
    }
    this.#binding = {
      caches: caches.map((c) => new WeakRef(c)), buffers: caches.map((c) => c.data), params: params.slice(),
      versions: params.map((p) => (p ? p._version : -1)), precision: currentContext().weightPrecision,
    };
    replay.stats.recorded++;
  }

  /** Whether this program still computes the model's step for `caches` (same buffers, weights and precision). */
  matches(caches: readonly KVCache[], params: readonly (Tensor | null)[]): boolean {
    const b = this.#binding;
    if (caches.length !== b.caches.length || params.length !== b.params.length) return false;
    if (currentContext().weightPrecision !== b.precision) return false;
    for (let i = 0; i < caches.length; i++) if (caches[i] !== b.caches[i]!.deref() || caches[i]!.data !== b.buffers[i]) return false;
    for (let i = 0; i < params.length; i++) if (params[i] !== b.params[i] || (params[i] ? params[i]!._version : -1) !== b.versions[i]) return false;
    return true;
  }

  /**
   * Runs the step for `token` at position `pos` (the caches' current length, which must have room for it): its
   * key and value are written to row `pos` of every cache, which then advances by one. `caches` must be the ones
   * it was recorded for ({@link matches}). Returns a new [1, 1, vocab]
   * tensor of the logits (a copy: the program's own buffer is overwritten by the next run).
   * @throws RangeError for a token outside the vocabulary or a position without room in the caches.
   */
  run(caches: readonly KVCache[], token: number, pos: number): F32 {
    if (caches.some((c, i) => c !== this.#binding.caches[i]!.deref())) {
      throw new RangeError('DecodeProgram.run: argument \'caches\' must be the caches the program was recorded for');
    }
    if (!Number.isInteger(token) || token < 0 || token >= this.#vocabSize) {
      throw new RangeError(`DecodeProgram.run: argument 'token' must be a token id in [0, ${this.#vocabSize}), got ${token}`);
    }
    for (const c of caches) {
      if (c.length !== pos || pos >= c.capacity) {
        throw new RangeError(`DecodeProgram.run: argument 'pos' must be every cache's length with room for one more, got ${pos} (cache length ${c.length}, capacity ${c.capacity})`);
      }
    }
    const recording = currentContext().recording;
    if (recording) {
      // Inside runAsync (generateAsync, the text-generation pipeline): one call in the recorded list, which writes
      // this step's values when it runs (captured now, so they cannot be overwritten by a later step).
      addon!.runListRecord(recording, this.#list, [this.#ids, this.#positions, this.#rows, this.#lengths], Int32Array.of(token, pos, pos, pos + 1));
    } else {
      this.#ids[0] = token;
      this.#positions[0] = pos;
      this.#rows[0] = pos;
      this.#lengths[0] = pos + 1;
      addon!.runList(this.#list);
    }
    replay.stats.runs++;
    for (const c of caches) c.advance(1);
    // A copy (recorded too when recording): the program's own buffer is overwritten by the next run.
    const v = this.#vocabSize;
    const out = empty([1, 1, v]);
    nativeBackend!.copy({ x: this.#logits.data, xStrides: [1], y: out.data, yStrides: [1], shape: [v] });
    return out;
  }
}

/**
 * A model's replayed decode step: the program of the cache it last decoded, recorded again whenever it no longer
 * matches (see {@link DecodeProgram.matches}). Models call {@link ReplayedDecode.step} from their cached forward.
 */
export class ReplayedDecode {
  #program: DecodeProgram | null = null;
  // The program holds its cache's buffers (its command list refers to them): once the cache itself is collected,
  // the program goes too, so a finished generation's cache is not kept for the model's life.
  readonly #dropped = new FinalizationRegistry<DecodeProgram>((p) => {
    if (this.#program === p) this.#program = null;
  });

  /**
   * Logits [1, 1, vocab] for one token appended to a batch-1 `cache`, or null when the replayed step does not apply
   * (the backend is not the native one, attention runs in bf16, the cache is not batch 1 with one KV cache per layer,
   * or the step is switched off): the caller then runs its eager forward. `params` are every tensor the step reads
   * (checked for replacement and in-place writes on every call); `record` is the model's one-token packed forward.
   */
  step(
    backend: Backend, inputIds: Tensor<'int32'>, cache: SelfAttentionCache, layers: number, params: readonly (Tensor | null)[],
    vocabSize: number, record: (s: PackedStep, kv: readonly F32[]) => F32,
  ): F32 | null {
    const caches = cache.layers;
    if (!decodeProgramAvailable() || backend !== nativeBackend || currentContext().attentionPrecision !== 'float32') return null;
    if (caches.length === 0 || caches.length !== layers || caches[0]!.batch !== 1) return null;
    const token = inputIds.contiguous().data[0]!;
    const pos = cache.length;
    for (const c of caches) c.reserve(backend, pos + 1);
    if (!this.#program?.matches(caches, params)) {
      if (this.#program) this.#dropped.unregister(this.#program);
      this.#program = null;
      const program = new DecodeProgram(caches, params, vocabSize, record);
      this.#dropped.register(caches[0]!, program, program);
      this.#program = program;
    }
    return this.#program.run(caches, token, pos);
  }
}
