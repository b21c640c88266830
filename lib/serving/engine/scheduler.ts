/**
 * The engine's policy, without the model: which requests run, and what each
 * step computes.
 *
 * - Requests wait in a FIFO queue (bounded by maxQueued) until a running
 *   place (maxRunning) and a contiguous KV range for prompt + maxNewTokens
 *   are free; the head of the queue is admitted first (a large request is
 *   not overtaken forever by small ones).
 * - A step holds one token of every decoding sequence (its last sampled
 *   token) plus up to `prefillChunk` prompt tokens of the sequences still
 *   reading their prompt, oldest first. So a long prompt is read over several
 *   steps, and the running streams advance one token at every one of them.
 * - A sequence that finishes or is aborted leaves at once; its KV range goes
 *   back to the pool then, or when the step it is part of has run (its
 *   kernels still write there until then).
 */
import type { CheckedRequest } from './request';
import type { SlotPool } from './slot-pool';
import type { GenerationStream } from './stream';

/** One request's state. */
export class Sequence {
  readonly id: number;
  readonly req: CheckedRequest;
  readonly stream: GenerationStream;
  /** Pool position of its position 0 (-1 until admitted). */
  start = -1;
  /** Positions written to the pool. */
  cached = 0;
  /** Tokens generated. */
  generated = 0;
  /** The last generated token, to be fed at the next step (-1: none). */
  pending = -1;
  /** Prompt and output tokens, for the repetition penalty (null when it is off). */
  readonly history: Set<number> | null;
  state: 'queued' | 'running' | 'done' = 'queued';
  /** Part of the step now running. */
  inStep = false;
  /** When it arrived (performance.now()). */
  readonly arrived = performance.now();
  /** Removes its abort listener. */
  detach: () => void = () => {};

  constructor(id: number, req: CheckedRequest, stream: GenerationStream) {
    this.id = id;
    this.req = req;
    this.stream = stream;
    this.history = req.sampling.repetitionPenalty !== 1 ? new Set(req.prompt) : null;
  }

  /** Pool positions it needs: the prompt and every generated token but the last (which is never fed back). */
  get need(): number {
    return this.req.prompt.length + Math.max(0, this.req.maxNewTokens - 1);
  }

  /** Still reading its prompt. */
  get prefilling(): boolean {
    return this.cached < this.req.prompt.length;
  }
}

/** One sequence's share of a step. */
export interface StepEntry {
  seq: Sequence;
  ids: Int32Array;
  /** The step gives a logits row for it (its last prompt token, or its pending token). */
  logits: boolean;
}

/** Limits of a {@link Scheduler}. */
export interface SchedulerLimits {
  maxRunning: number;
  maxQueued: number;
  prefillChunk: number;
}

/** Queue, running set and step building (see the module comment). */
export class Scheduler {
  readonly limits: SchedulerLimits;
  readonly #slots: SlotPool;
  #queue: Sequence[] = [];
  #running: Sequence[] = [];

  constructor(slots: SlotPool, limits: SchedulerLimits) {
    this.#slots = slots;
    this.limits = limits;
  }

  get queued(): number {
    return this.#queue.length;
  }

  get running(): number {
    return this.#running.length;
  }

  /** Sequences waiting, oldest first. */
  get waiting(): readonly Sequence[] {
    return this.#queue;
  }

  /** Sequences admitted, in admission order. */
  get active(): readonly Sequence[] {
    return this.#running;
  }

  enqueue(seq: Sequence): void {
    this.#queue.push(seq);
  }

  /** Moves queue heads to the running set while a place and a KV range are free; returns those admitted. */
  admit(): Sequence[] {
    const admitted: Sequence[] = [];
    while (this.#queue.length > 0 && this.#running.length < this.limits.maxRunning) {
      const seq = this.#queue[0]!;
      const start = this.#slots.allocate(seq.need);
      if (start === null) break;
      this.#queue.shift();
      seq.start = start;
      seq.state = 'running';
      this.#running.push(seq);
      admitted.push(seq);
    }
    return admitted;
  }

  /** The next step's entries: every decoding sequence's pending token, then prompt chunks within prefillChunk tokens. */
  nextStep(): StepEntry[] {
    const entries: StepEntry[] = [];
    for (const seq of this.#running) {
      if (!seq.prefilling && seq.pending >= 0) entries.push({ seq, ids: Int32Array.of(seq.pending), logits: true });
    }
    let budget = this.limits.prefillChunk;
    for (const seq of this.#running) {
      if (budget === 0) break;
      if (!seq.prefilling) continue;
      const n = Math.min(budget, seq.req.prompt.length - seq.cached);
      entries.push({ seq, ids: seq.req.prompt.subarray(seq.cached, seq.cached + n), logits: seq.cached + n === seq.req.prompt.length });
      budget -= n;
    }
    return entries;
  }

  /**
   * Takes a sequence out (finished or aborted). Its KV range is released now unless it is part of the running
   * step: then {@link settle} releases it.
   */
  remove(seq: Sequence): void {
    if (seq.state === 'queued') {
      const i = this.#queue.indexOf(seq);
      if (i >= 0) this.#queue.splice(i, 1);
    } else if (seq.state === 'running') {
      const i = this.#running.indexOf(seq);
      if (i >= 0) this.#running.splice(i, 1);
      if (!seq.inStep) {
        this.#slots.release(seq.start);
        seq.start = -1;
      }
    }
    seq.state = 'done';
  }

  /** A step has run: its sequences are no longer in flight; the KV ranges of those removed meanwhile go back. */
  settle(entries: readonly StepEntry[]): void {
    for (const { seq } of entries) {
      seq.inStep = false;
      if (seq.state === 'done' && seq.start >= 0) {
        this.#slots.release(seq.start);
        seq.start = -1;
      }
    }
  }

  /** Every sequence, queued and running (for close). */
  all(): Sequence[] {
    return [...this.#queue, ...this.#running];
  }
}
