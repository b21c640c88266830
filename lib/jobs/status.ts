/**
 * `jobs.status`, `jobs.retry` and `jobs.cancel`: a run's progress from its
 * Redis counters (shards and rows committed, rows/s, ETA, error rows and the
 * ledger's first entries, failed shards), bringing failed shards back, and
 * stopping a run.
 */
import { Queue, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { isPostgresOutput, parsePgOutput, tableName } from './pg-output';
import { MANIFEST, writeManifest } from './sink';
import { DEFAULT_QUEUE, checkRunId, committedEntries, connectReady, ledgerEntries, readRun, redisOptions, runKey, type LedgerEntry } from './store';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ShardJobData } from './worker';

/** Options shared by status, retry and cancel. */
export interface RunOptions {
  redis: string;
  runId: string;
  /** Error-ledger rows to include in the status (default 20). */
  ledgerLimit?: number;
}

/** A run's progress. */
export interface RunStatus {
  runId: string;
  /** 'scanning' (submit still reading the input), 'running', 'complete', 'stalled' (only failed shards left), 'cancelled'. */
  state: 'scanning' | 'running' | 'complete' | 'stalled' | 'cancelled';
  input: string;
  /** The output directory, or the PostgreSQL URL (password masked). */
  output: string;
  shards: number;
  shardsDone: number;
  rows: number;
  rowsDone: number;
  /** Rows recorded in the error ledger (they are in the output as error records). */
  errorRows: number;
  /** Shards in BullMQ's failed set (after all their attempts); `retry` brings them back. */
  failedShards: { shard: number; attempts: number; reason: string }[];
  /** Committed rows per second since the first shard started (null before the first commit). */
  rowsPerSecond: number | null;
  /** Seconds left at that rate (null when unknown). */
  etaSeconds: number | null;
  /** The first error-ledger rows (row line, id, reason). */
  errors: LedgerEntry[];
  /** manifest.json's path once the run is complete (JSONL output; null for PostgreSQL, whose manifest is a table). */
  manifest: string | null;
  /**
   * PostgreSQL output: what the database itself holds for the run (its `<table>_shards` manifest: committed shards,
   * rows and error rows), or why it could not be read; the Redis counters above count the same commits.
   */
  postgres?: { table: string; shardsTable: string; shards: number | null; rows: number | null; errorRows: number | null; error?: string };
}

async function withRun<T>(options: RunOptions, fn: (redis: Redis, queue: Queue<ShardJobData>, run: NonNullable<Awaited<ReturnType<typeof readRun>>>) => Promise<T>): Promise<T> {
  const runId = checkRunId(options.runId);
  const redis = await connectReady(options.redis);
  let queue: Queue<ShardJobData> | null = null;
  try {
    const run = await readRun(redis, runId);
    if (!run) throw new RangeError(`run ${runId} not found in Redis at ${options.redis}`);
    queue = new Queue<ShardJobData>(run.spec.queue ?? DEFAULT_QUEUE, { connection: { ...redisOptions(options.redis), maxRetriesPerRequest: null } });
    return await fn(redis, queue, run);
  } finally {
    await queue?.close();
    redis.disconnect();
  }
}

/** The run's jobs in some BullMQ states, a page at a time. */
async function* runJobs(queue: Queue<ShardJobData>, runId: string, types: ('failed' | 'waiting' | 'delayed' | 'prioritized')[]): AsyncGenerator<Job<ShardJobData>> {
  for (let start = 0; ; start += 1000) {
    const page = (await queue.getJobs(types, start, start + 999, true)) as Job<ShardJobData>[];
    for (const j of page) if (j && j.name === runId) yield j;
    if (page.length < 1000) return;
  }
}

/** A run's progress. @throws RangeError when Redis has no such run. */
export function status(options: RunOptions): Promise<RunStatus> {
  return withRun(options, async (redis, queue, run) => {
    const { spec } = run;
    const failedShards: RunStatus['failedShards'] = [];
    for await (const j of runJobs(queue, spec.runId, ['failed'])) {
      failedShards.push({ shard: j.data.range.shard, attempts: j.attemptsMade, reason: j.failedReason });
    }
    failedShards.sort((a, b) => a.shard - b.shard);
    const complete = spec.shards >= 0 && run.shardsDone >= spec.shards;
    const state: RunStatus['state'] = run.state === 'cancelled' ? 'cancelled' : complete ? 'complete' : spec.shards < 0 ? 'scanning'
      : failedShards.length && run.shardsDone + failedShards.length >= spec.shards ? 'stalled' : 'running';
    const elapsed = run.startedAt !== null && run.lastCommitAt !== null ? ((complete ? run.lastCommitAt : Date.now()) - run.startedAt) / 1000 : 0;
    const rowsPerSecond = run.rowsDone > 0 && elapsed > 0 ? run.rowsDone / elapsed : null;
    const etaSeconds = rowsPerSecond && spec.rows >= 0 ? Math.max(0, (spec.rows - run.rowsDone) / rowsPerSecond) : complete ? 0 : null;
    const common = {
      runId: spec.runId, state, input: spec.input, shards: spec.shards, shardsDone: run.shardsDone, rows: spec.rows,
      rowsDone: run.rowsDone, errorRows: run.errorRows, failedShards, rowsPerSecond, etaSeconds,
      errors: await ledgerEntries(redis, spec.runId, options.ledgerLimit ?? 20),
    };
    if (isPostgresOutput(spec.output)) {
      const o = parsePgOutput(spec.output, "the run's output");
      const table = tableName(o);
      let postgres: NonNullable<RunStatus['postgres']>;
      try {
        const { runSummary } = await import('./pg-sink');
        postgres = { table, shardsTable: `${table}_shards`, ...(await runSummary(o, spec.runId)) };
      } catch (e) {
        postgres = { table, shardsTable: `${table}_shards`, shards: null, rows: null, errorRows: null, error: (e as Error).message };
      }
      return { ...common, output: o.display, manifest: null, postgres };
    }
    const manifestPath = path.join(spec.output, MANIFEST);
    if (complete && !fs.existsSync(manifestPath)) writeManifest(spec, await committedEntries(redis, spec.runId), true);
    return { ...common, output: spec.output, manifest: complete ? manifestPath : null };
  });
}

/** Moves a run's failed shards back to the queue (fresh attempts); resolves with how many. */
export function retry(options: RunOptions): Promise<number> {
  return withRun(options, async (redis, queue, run) => {
    // Nothing committed yet: the rate should count from the retried shards' start, not from the failed attempts.
    if (run.rowsDone === 0) await redis.hdel(runKey(run.spec.runId), 'startedAt');
    if (run.state === 'cancelled') throw new RangeError(`run ${run.spec.runId} is cancelled; submit it again to resume it`);
    let n = 0;
    const failed: Job<ShardJobData>[] = [];
    for await (const j of runJobs(queue, run.spec.runId, ['failed'])) failed.push(j);
    for (const j of failed) {
      await j.retry('failed', { resetAttemptsMade: true });
      n++;
    }
    return n;
  });
}

/**
 * Cancels a run: marks it cancelled (workers discard its shards instead of committing them) and removes its
 * waiting, delayed and failed jobs; resolves with how many jobs were removed. Committed shards stay in DIR.
 */
export function cancel(options: RunOptions): Promise<number> {
  return withRun(options, async (redis, queue, run) => {
    await redis.hset(runKey(run.spec.runId), 'state', 'cancelled');
    const jobs: Job<ShardJobData>[] = [];
    for await (const j of runJobs(queue, run.spec.runId, ['waiting', 'delayed', 'prioritized', 'failed'])) jobs.push(j);
    let n = 0;
    for (const j of jobs) {
      try {
        await j.remove();
        n++;
      } catch {
        // Taken by a worker meanwhile: it sees the cancelled state and discards the shard.
      }
    }
    return n;
  });
}
