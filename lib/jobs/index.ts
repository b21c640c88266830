/**
 * Distributed batch runs on BullMQ and Redis: `submit` splits a JSONL/CSV file
 * into shard jobs, `worker` processes them (one process per machine, inference
 * in worker threads), `status` / `retry` / `cancel` manage a run. The output is
 * a directory of JSONL files or a PostgreSQL table (`postgres://…?table=T`).
 * Every input row is in the output exactly once through killed and frozen
 * workers, Redis restarts and resubmits (see docs/JOBS.md).
 *
 * BullMQ and ioredis load on the first call, not with `attnode` itself (they
 * add most of a second to every process's start-up otherwise).
 */
import type { SubmitOptions, SubmitResult } from './submit';
import type { JobWorker, WorkerOptions } from './worker';
import type { RunOptions, RunStatus } from './status';

export type { SubmitOptions, SubmitResult } from './submit';
export type { WorkerOptions, JobWorker, ShardJobData } from './worker';
export type { RunOptions, RunStatus } from './status';
export { loadRowEngine, type RowEngine, type ModelSpec, type InputRow, type RowError, type BatchOutput, type BatchForm, type OutputKind } from './rows';
export { readRows, scanShards, inputFormat, type InputFormat, type ShardRange } from './readers';
export type { RunSpec, ManifestEntry, LedgerEntry } from './store';

export { DEFAULT_QUEUE } from './defaults';

/** Splits `input` into shard jobs of a run (idempotent: the same input, model and options give the same run id). */
export async function submit(options: SubmitOptions): Promise<SubmitResult> {
  return (await import('./submit')).submit(options);
}

/** Starts a worker taking shard jobs; resolves once connected. `close()` finishes or releases its shards. */
export async function worker(options: WorkerOptions): Promise<JobWorker> {
  return (await import('./worker')).worker(options);
}

/** A run's progress: shards and rows done, rows/s, ETA, failed shards, the error ledger's first rows. */
export async function status(options: RunOptions): Promise<RunStatus> {
  return (await import('./status')).status(options);
}

/** Moves a run's failed shards back to the queue; resolves with how many. */
export async function retry(options: RunOptions): Promise<number> {
  return (await import('./status')).retry(options);
}

/** Cancels a run (queued shards removed, running ones discarded); resolves with how many jobs were removed. */
export async function cancel(options: RunOptions): Promise<number> {
  return (await import('./status')).cancel(options);
}
