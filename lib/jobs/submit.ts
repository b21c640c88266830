/**
 * `jobs.submit`: splits an input file into shard jobs on BullMQ. The run id is
 * a hash of the input (path, size, mtime), the model and the options, and a
 * job's id is `<run id>-<shard>`, so submitting the same run again adds
 * nothing that exists and never duplicates output. The file is streamed once
 * (shard boundaries as byte ranges); jobs are added in bulk as shards are
 * found, so workers start before the scan ends.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Queue } from 'bullmq';
import { readConfig } from '../cli/config';
import { csvLayout, inputFormat, scanShards, type ShardRange } from './readers';
import type { ModelSpec } from './rows';
import { isPostgresOutput, parsePgOutput } from './pg-output';
import { RUN_MARKER, writeManifest } from './sink';
import { DEFAULT_QUEUE, RUNS_KEY, committedEntries, committedKey, connectReady, readRun, redisOptions, runKey, type RunSpec } from './store';
import type { ShardJobData } from './worker';

/** Options of {@link submit}. */
export interface SubmitOptions extends ModelSpec {
  /** Redis URL. */
  redis: string;
  /** JSONL or CSV file every worker can read at this path. */
  input: string;
  /**
   * Output directory every worker can write (shared storage), or a PostgreSQL URL naming the table,
   * `postgres://user@host:5432/db?table=embeddings` (created with its `<table>_shards` manifest when absent).
   */
  output: string;
  /** 'jsonl' or 'csv' (default: by extension). */
  format?: string;
  /** Rows per shard (default 1000). */
  shardSize?: number;
  /** Rows per forward pass (default 32). */
  batchSize?: number;
  /** Attempts per shard before it goes to the failed set (default 3). */
  attempts?: number;
  /** First retry delay in ms, doubled per attempt (default 1000). */
  backoffMs?: number;
  /** BullMQ queue (default 'attnode-shards'). */
  queue?: string;
}

/** What {@link submit} did. */
export interface SubmitResult {
  runId: string;
  shards: number;
  rows: number;
  /** Shard jobs added now (0 when resubmitting a run whose jobs all exist or are committed). */
  added: number;
  /** Shards already committed (skipped). */
  committed: number;
}

function positiveInt(name: string, v: number | undefined, dflt: number, min = 1): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < min) throw new RangeError(`${name} must be an integer >= ${min}, got ${v}`);
  return v;
}

/** Submits a run; resolves once every shard job is in Redis. */
export async function submit(options: SubmitOptions): Promise<SubmitResult> {
  const shardSize = positiveInt('shardSize', options.shardSize, 1000);
  const batchSize = positiveInt('batchSize', options.batchSize, 32);
  const attempts = positiveInt('attempts', options.attempts, 3);
  const backoffMs = positiveInt('backoffMs', options.backoffMs, 1000, 0);
  if (typeof options.input !== 'string') throw new TypeError(`input must be a file path, got ${typeof options.input}`);
  if (typeof options.output !== 'string') throw new TypeError(`output must be a directory path or a PostgreSQL URL, got ${typeof options.output}`);
  const pgOutput = isPostgresOutput(options.output) ? parsePgOutput(options.output, 'output') : null;
  const input = path.resolve(options.input);
  const st = fs.statSync(input, { throwIfNoEntry: false });
  if (!st?.isFile()) throw new TypeError(`input ${input} is not a file`);
  const format = inputFormat(input, options.format);
  const model = options.model === undefined ? undefined : path.resolve(options.model);
  if (model !== undefined && !fs.existsSync(model)) throw new TypeError(`model ${model} not found`);
  const config = options.config === undefined ? undefined : path.resolve(options.config);
  if (config !== undefined) await readConfig(config); // a bad config fails here, not on every worker
  const isFolder = model !== undefined && fs.statSync(model).isDirectory();
  if (isFolder && !fs.existsSync(path.join(model, 'config.json'))) throw new TypeError(`model folder ${model} has no config.json`);
  // A table is shared by runs (rows are keyed by run id); a directory belongs to one run.
  const output = pgOutput ? options.output : path.resolve(options.output);
  const queueName = options.queue ?? DEFAULT_QUEUE;
  const layout = format === 'csv' ? await csvLayout(input) : undefined;

  const idFields = [input, st.size, st.mtimeMs, format, model, model && fs.statSync(model).mtimeMs, config, options.seed ?? 0,
    options.outputKind ?? 'pooled', options.textField ?? 'text', options.precision ?? 'float32', shardSize, batchSize, pgOutput?.display ?? output];
  const runId = createHash('sha256').update(JSON.stringify(idFields)).digest('hex').slice(0, 16);

  if (pgOutput) {
    // Unreachable server, bad credentials or an incompatible existing table fail here, not on every worker.
    const { connectPg, ensureTables } = await import('./pg-sink');
    const client = await connectPg(pgOutput, 'output');
    try {
      await ensureTables(client, pgOutput, 'output');
    } finally {
      await client.end().catch(() => {});
    }
  } else {
    fs.mkdirSync(output, { recursive: true });
    const marker = path.join(output, RUN_MARKER);
    const owner = fs.existsSync(marker) ? fs.readFileSync(marker, 'utf8').trim() : null;
    if (owner !== null && owner !== runId) throw new TypeError(`output ${output} holds run ${owner}; use another directory for run ${runId}`);
    if (owner === null) fs.writeFileSync(marker, `${runId}\n`);
  }

  const spec: RunSpec = {
    runId, input, format, ...(layout ? { columns: layout.columns } : {}), output, shardSize, batchSize, shards: -1, rows: -1,
    attempts, backoffMs, inputSize: st.size, inputMtimeMs: st.mtimeMs, queue: queueName, createdAt: Date.now(),
    ...(model !== undefined ? { model } : {}), ...(config !== undefined ? { config } : {}),
    ...(options.seed !== undefined ? { seed: options.seed } : {}), ...(options.outputKind !== undefined ? { outputKind: options.outputKind } : {}),
    ...(options.textField !== undefined ? { textField: options.textField } : {}), ...(options.precision !== undefined ? { precision: options.precision } : {}),
  };
  const redis = await connectReady(options.redis);
  const queue = new Queue<ShardJobData>(queueName, { connection: { ...redisOptions(options.redis), maxRetriesPerRequest: null } });
  try {
    const existing = await readRun(redis, runId);
    if (existing && existing.spec.shards >= 0) spec.shards = existing.spec.shards, spec.rows = existing.spec.rows;
    await redis.multi().hset(runKey(runId), 'spec', JSON.stringify(spec), 'state', 'running').zadd(RUNS_KEY, spec.createdAt, runId).exec();

    let shards = 0;
    let rows = 0;
    let added = 0;
    let committed = 0;
    let chunk: ShardRange[] = [];
    const flush = async (): Promise<void> => {
      if (!chunk.length) return;
      const done = await redis.hmget(committedKey(runId), ...chunk.map((c) => String(c.shard)));
      const todo = chunk.filter((_, i) => done[i] === null);
      committed += chunk.length - todo.length;
      if (todo.length) {
        const jobs = await queue.addBulk(todo.map((range) => ({
          name: runId, data: { runId, range },
          opts: { jobId: `${runId}-${range.shard}`, attempts, backoff: { type: 'exponential', delay: backoffMs }, removeOnComplete: true, removeOnFail: false },
        })));
        added += jobs.length;
      }
      chunk = [];
    };
    for await (const range of scanShards(input, format, shardSize, layout)) {
      shards++;
      rows += range.rows;
      chunk.push(range);
      if (chunk.length >= 500) await flush();
    }
    await flush();
    spec.shards = shards;
    spec.rows = rows;
    await redis.hset(runKey(runId), 'spec', JSON.stringify(spec));
    // Workers that finished every shard before the totals were known left the manifest to us.
    const run = await readRun(redis, runId);
    if (!pgOutput && run && run.shardsDone >= shards) writeManifest(spec, await committedEntries(redis, runId), true);
    return { runId, shards, rows, added, committed };
  } finally {
    await queue.close();
    redis.disconnect();
  }
}
