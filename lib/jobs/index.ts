/**
 * Distributed batch runs on BullMQ and Redis: `submit` splits a JSONL/CSV file
 * into shard jobs, `worker` processes them (one process per machine, inference
 * in worker threads), `status` / `retry` / `cancel` manage a run. Every input
 * row is in the output exactly once through killed and frozen workers, Redis
 * restarts and resubmits (see docs/JOBS.md).
 */
export { submit, type SubmitOptions, type SubmitResult } from './submit';
export { worker, type WorkerOptions, type JobWorker, type ShardJobData } from './worker';
export { status, retry, cancel, type RunOptions, type RunStatus } from './status';
export { loadRowEngine, type RowEngine, type ModelSpec, type InputRow, type RowError, type BatchOutput, type OutputKind } from './rows';
export { readRows, scanShards, inputFormat, type InputFormat, type ShardRange } from './readers';
export { DEFAULT_QUEUE, type RunSpec, type ManifestEntry, type LedgerEntry } from './store';
