/**
 * `jobs.worker`: takes shard jobs from BullMQ and commits each shard exactly
 * once. The main thread only talks to Redis (fetching jobs, renewing locks,
 * committing); each shard is computed in a worker thread (thread.ts), so lock
 * renewal never waits on inference.
 *
 * Commit protocol (effectively-once output on at-least-once delivery):
 * 1. the thread writes `.part-N.jsonl.<token>.tmp` and fsyncs it;
 * 2. a Lua script records the shard in the run's committed hash only if this
 *    worker still holds the job's lock (its token) and no entry exists;
 * 3. the winner renames the file to `part-N.jsonl` (atomic) and fsyncs the directory.
 * A frozen worker whose lock expired fails step 2 and deletes its file. A
 * worker finding an entry without its file (the committer died between 2 and
 * 3) publishes its own copy, which is byte-identical (same rows, same model).
 *
 * PostgreSQL output (`postgres://…?table=T`): the thread stages the rows with
 * COPY, asks this thread whether the job's lock is still ours, commits them
 * with the shard's manifest row in one statement (nothing if the row exists),
 * and this thread then records the shard in Redis as above (docs/JOBS.md).
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { Worker as ThreadWorker } from 'node:worker_threads';
import { Worker, WaitingError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { Metrics, renderPrometheus } from '../serving/metrics';
import { isPostgresOutput, parsePgOutput, tableName } from './pg-output';
import { fileSha256, publish, sweepTemporaries, writeManifest } from './sink';
import {
  DEFAULT_QUEUE, committedEntries, committedKey, connect, readRun, redisOptions, recordCommit, rerecordCommit, runKey, shardFile, type ManifestEntry, type RunSpec,
} from './store';
import type { ShardRange } from './readers';
import type { ShardDecision, ShardResult, ShardStaged, ShardTask } from './thread';

/** Options of {@link worker}. */
export interface WorkerOptions {
  /** Redis URL, e.g. redis://127.0.0.1:6379. */
  redis: string;
  /** Shards processed at once (one worker thread each; default 1). */
  concurrency?: number;
  /** Kernel threads per worker thread (default: the library's default). */
  threads?: number;
  /** BullMQ lock duration in ms (default 30 000); a frozen worker loses its shard after this long. */
  lockDurationMs?: number;
  /** Port of `GET /metrics` (Prometheus text); 0 picks a free port, null serves none (default 9464). */
  metricsPort?: number | null;
  /** Address the metrics server binds (default 0.0.0.0). */
  metricsHost?: string;
  /** BullMQ queue name (default 'attnode-shards'). */
  queue?: string;
  /** How long close() lets running shards finish before releasing them to other workers (default 60 000 ms; locks keep being renewed meanwhile). */
  graceMs?: number;
  /** Called with one line per event (shard committed, failed, ...); default none. */
  log?: (line: string) => void;
}

/** Job data of a shard job. */
export interface ShardJobData {
  runId: string;
  range: ShardRange;
}

/** A running worker. */
export interface JobWorker {
  /** `http://host:port/metrics`, when served. */
  readonly metricsUrl: string | null;
  /** Stops taking shards, lets running ones finish (up to graceMs), releases the rest to other workers, exits cleanly. */
  close(): Promise<void>;
  /** Counters since start. */
  readonly counts: { committed: number; duplicate: number; lost: number; failed: number; released: number; rows: number; errorRows: number };
}

/** A fixed pool of worker threads running {@link ShardTask}s. */
class ThreadPool {
  readonly #file: string;
  readonly #idle: ThreadWorker[] = [];
  readonly #pending = new Map<number, {
    resolve: (r: ShardResult) => void; reject: (e: Error) => void; thread: ThreadWorker; onStaged?: () => Promise<boolean>;
  }>();
  #next = 0;
  #closed = false;

  constructor(size: number) {
    // The compiled .js next to this file, or the .ts source under tsx (threads inherit tsx's loader flags).
    this.#file = path.join(__dirname, `thread${path.extname(__filename)}`);
    for (let i = 0; i < size; i++) this.#idle.push(this.#spawn());
  }

  #spawn(): ThreadWorker {
    // Under tsx (tests, a source checkout) the thread needs tsx's require hook to load the .ts file.
    const t = this.#file.endsWith('.ts')
      ? new ThreadWorker(`require('tsx/cjs'); require(${JSON.stringify(this.#file)});`, { eval: true })
      : new ThreadWorker(this.#file);
    t.on('message', (r: ShardResult | ShardStaged) => {
      const p = this.#pending.get(r.id);
      if (!p) return;
      if ('staged' in r) {
        // PostgreSQL output: the shard is staged; commit only while the job is still ours (a failed check discards).
        const decide = p.onStaged ?? (async () => true);
        decide().catch(() => false).then((commit) => t.postMessage({ id: r.id, commit } satisfies ShardDecision));
        return;
      }
      this.#pending.delete(r.id);
      this.#idle.push(t);
      p.resolve(r);
    });
    let dead = false;
    const died = (e: Error): void => {
      // 'error' is followed by 'exit': replace the thread once.
      if (dead) return;
      dead = true;
      for (const [id, p] of this.#pending) {
        if (p.thread !== t) continue;
        this.#pending.delete(id);
        p.reject(e);
      }
      const i = this.#idle.indexOf(t);
      if (i >= 0) this.#idle.splice(i, 1);
      if (!this.#closed) this.#idle.push(this.#spawn());
    };
    t.on('error', died);
    t.on('exit', (code) => died(new Error(`worker thread exited (code ${code})`)));
    return t;
  }

  /** Runs a task on an idle thread; `onStaged` decides whether a PostgreSQL shard, once staged, is committed. */
  run(task: Omit<ShardTask, 'id'>, onStaged?: () => Promise<boolean>): { promise: Promise<ShardResult>; cancel: () => Promise<void> } {
    const thread = this.#idle.pop();
    if (!thread) throw new Error('thread pool: no idle thread (more shards than threads)');
    const id = this.#next++;
    const promise = new Promise<ShardResult>((resolve, reject) => this.#pending.set(id, { resolve, reject, thread, onStaged }));
    thread.postMessage({ ...task, id });
    return { promise, cancel: async () => void (await thread.terminate()) };
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#idle, ...[...this.#pending.values()].map((p) => p.thread)].map((t) => t.terminate()));
  }
}

/** Retries a Redis call through a connection loss (a Redis restart), up to `ms`. */
async function throughOutage<T>(fn: () => Promise<T>, ms: number): Promise<T> {
  const until = Date.now() + ms;
  for (let wait = 100; ; wait = Math.min(wait * 2, 2000)) {
    try {
      return await fn();
    } catch (e) {
      const msg = (e as Error).message ?? '';
      const transient = /ECONNREFUSED|ECONNRESET|Connection is closed|LOADING|EPIPE|ETIMEDOUT|Stream isn't writeable/.test(msg);
      if (!transient || Date.now() > until) throw e;
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

/**
 * `bull.close()`, bounded: it waits for BullMQ to finish its jobs' bookkeeping in Redis, which never ends while Redis
 * is unreachable (or, after a Redis restart, when a job's lock went missing under it). Once no shard of ours has run
 * for `idleMs` and BullMQ is still closing, its connections are dropped instead. Resolves 'stuck' in that case.
 */
async function closeBull(bull: Worker<ShardJobData>, running: () => number, idleMs: number): Promise<'closed' | 'stuck'> {
  const closed = bull.close().then(() => 'closed' as const, () => 'closed' as const);
  let timer: NodeJS.Timeout | undefined;
  const stuck = new Promise<'stuck'>((resolve) => {
    let idleSince = 0;
    timer = setInterval(() => {
      if (running() > 0) idleSince = 0;
      else if (!idleSince) idleSince = Date.now();
      else if (Date.now() - idleSince >= idleMs) resolve('stuck');
    }, 100);
  });
  const verdict = await Promise.race([closed, stuck]);
  clearInterval(timer);
  if (verdict === 'stuck') await Promise.race([bull.disconnect().catch(() => {}), new Promise((r) => setTimeout(r, 2000))]);
  return verdict;
}

/** Starts a worker. Resolves once it is connected (and its metrics server listens). */
export async function worker(options: WorkerOptions): Promise<JobWorker> {
  const concurrency = options.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
  const lockDuration = options.lockDurationMs ?? 30_000;
  if (!Number.isInteger(lockDuration) || lockDuration < 500) throw new RangeError(`lockDurationMs must be an integer >= 500, got ${lockDuration}`);
  if (options.threads !== undefined && (!Number.isInteger(options.threads) || options.threads < 1)) {
    throw new RangeError(`threads must be a positive integer, got ${options.threads}`);
  }
  const graceMs = options.graceMs ?? 60_000;
  const log = options.log ?? (() => {});
  const redis: Redis = connect(options.redis);
  // One line per outage (ioredis reconnects by itself; without a listener it prints every failed attempt).
  let redisDown = false;
  redis.on('error', (e: Error) => {
    if (!redisDown) log(`Redis unreachable (${e.message}): retrying`);
    redisDown = true;
  });
  redis.on('ready', () => {
    if (redisDown) log('Redis reachable again');
    redisDown = false;
  });
  const pool = new ThreadPool(concurrency);
  const metrics = new Metrics();
  const counts = { committed: 0, duplicate: 0, lost: 0, failed: 0, released: 0, rows: 0, errorRows: 0 };
  const specs = new Map<string, RunSpec>();
  const active = new Map<string, { job: Job; token: string; cancel: () => Promise<void> }>();
  let releasing = false;

  const specOf = async (runId: string): Promise<{ spec: RunSpec; state: string }> => {
    const run = await readRun(redis, runId);
    if (!run) throw new Error(`run ${runId} is not in Redis (was it submitted to this Redis?)`);
    specs.set(runId, run.spec);
    return { spec: run.spec, state: run.state };
  };

  const processor = async (job: Job<ShardJobData>, token?: string): Promise<unknown> => {
    const end = metrics.begin();
    let ended = false;
    const done = (route: string, code: number): void => {
      ended = true;
      end(route, code);
    };
    try {
      return await processShardJob(job, token, done);
    } finally {
      if (!ended) end('shard', 500);
    }
  };

  /**
   * PostgreSQL output, after the thread's commit (or its finding that the manifest table has the shard): records the
   * shard in Redis under the job's lock, as the JSONL sink does after its rename. Whoever holds the lock records a
   * shard PostgreSQL has, so a committer that died or lost its lock between the two leaves it to the next attempt.
   */
  const recordPostgresShard = async (
    { runId, range }: ShardJobData, spec: RunSpec, r: Extract<ShardResult, { ok: true }>, lockKey: string, token: string,
    discarded: 'lost' | 'cancelled' | null, done: (route: string, code: number) => void,
  ): Promise<unknown> => {
    const verdict = discarded ? { kind: discarded } as const
      : await throughOutage(() => recordCommit(redis, lockKey, token, runId, {
        shard: range.shard, file: tableName(parsePgOutput(spec.output)), rows: r.rows, errors: r.errorRows, bytes: r.bytes, sha256: r.sha256,
      }, r.ledger), lockDuration * 4);
    if (verdict.kind === 'lost' || verdict.kind === 'cancelled') {
      counts.lost += verdict.kind === 'lost' ? 1 : 0;
      done('shard', verdict.kind === 'lost' ? 409 : 499);
      const what = discarded ? 'staged rows discarded' : 'the shard is in PostgreSQL; the lock holder records it';
      log(`shard ${range.shard} of run ${runId}: ${verdict.kind === 'lost' ? `lock lost (another worker owns it now); ${what}` : 'run cancelled; staged rows discarded'}`);
      if (verdict.kind === 'lost') throw new Error(`lost the lock of shard ${range.shard} before committing`);
      return { cancelled: true };
    }
    if (verdict.kind === 'exists') {
      counts.duplicate++;
      done('shard', 208);
      return { duplicate: true };
    }
    counts.committed++;
    if (r.sink === 'committed') {
      counts.rows += r.rows;
      counts.errorRows += r.errorRows;
    }
    done('shard', 200);
    log(r.sink === 'committed' ? `committed shard ${range.shard} of run ${runId} to PostgreSQL (${r.rows} rows, ${r.errorRows} errors)`
      : `recorded shard ${range.shard} of run ${runId} (already in PostgreSQL: ${r.rows} rows, ${r.errorRows} errors)`);
    return { rows: r.rows, errors: r.errorRows };
  };

  const processShardJob = async (job: Job<ShardJobData>, token: string | undefined, done: (route: string, code: number) => void): Promise<unknown> => {
    if (!token) throw new Error('BullMQ gave no lock token');
    const { runId, range } = job.data;
    const { spec, state } = await specOf(runId);
    if (state === 'cancelled') {
      done('shard', 499);
      return { cancelled: true };
    }
    await redis.hsetnx(runKey(runId), 'startedAt', String(Date.now()));
    const st = fs.statSync(spec.input, { throwIfNoEntry: false });
    if (!st) throw new Error(`input ${spec.input} not found on this machine (every worker must see it at the same path)`);
    if (st.size !== spec.inputSize || st.mtimeMs !== spec.inputMtimeMs) {
      throw new Error(`input ${spec.input} changed since submit (size ${st.size}, was ${spec.inputSize}): resubmit it as a new run`);
    }
    const lockKey = `${job.queueQualifiedName}:${job.id}:lock`;
    const toPostgres = isPostgresOutput(spec.output);
    const finalPath = toPostgres ? '' : path.join(spec.output, shardFile(range.shard));
    const tmpPath = toPostgres ? '' : path.join(spec.output, `.${path.basename(finalPath)}.${token}.tmp`);
    // A job handed out again after its shard was committed (its lock was lost in a Redis outage, or its completion
    // never reached Redis): nothing to compute when the committed output is in place.
    const prior = await redis.hget(committedKey(runId), String(range.shard));
    if (prior && (toPostgres || (await fileSha256(finalPath)) === (JSON.parse(prior) as ManifestEntry).sha256)) {
      counts.duplicate++;
      done('shard', 208);
      log(`shard ${range.shard} of run ${runId}: already committed; skipped`);
      return { duplicate: true };
    }
    // PostgreSQL: once the thread has staged the rows, it commits only if this worker still holds the job's lock.
    let discarded: 'lost' | 'cancelled' = 'lost';
    const stillOurs = async (): Promise<boolean> => {
      const [held, runState] = await throughOutage(() => Promise.all([redis.get(lockKey), redis.hget(runKey(runId), 'state')]), lockDuration * 4);
      discarded = held !== token ? 'lost' : 'cancelled';
      return held === token && runState !== 'cancelled';
    };
    const run = pool.run({ spec, range, tmpPath, threads: options.threads }, toPostgres ? stillOurs : undefined);
    active.set(job.id!, { job, token, cancel: run.cancel });
    let r: ShardResult;
    try {
      r = await run.promise;
    } catch (e) {
      if (tmpPath) fs.rmSync(tmpPath, { force: true });
      if (releasing) {
        // Shutting down past the grace period: hand the shard back without spending an attempt.
        await job.moveToWait(token).catch(() => {});
        counts.released++;
        done('shard', 503);
        log(`released shard ${range.shard} of run ${runId}`);
        throw new WaitingError();
      }
      throw e;
    } finally {
      active.delete(job.id!);
    }
    if (!r.ok) throw new Error(r.error);
    if (toPostgres) return recordPostgresShard(job.data, spec, r, lockKey, token, r.sink === 'discarded' ? discarded : null, done);
    const entry: ManifestEntry = { shard: range.shard, file: path.basename(finalPath), rows: r.rows, errors: r.errorRows, bytes: r.bytes, sha256: r.sha256 };
    const verdict = await throughOutage(() => recordCommit(redis, lockKey, token, runId, entry, r.ledger), lockDuration * 4).catch((e: Error) => {
      fs.rmSync(tmpPath, { force: true });
      log(`shard ${range.shard} of run ${runId}: could not record its commit (${e.message}); discarded, the shard is redone`);
      throw e;
    });
    if (verdict.kind === 'lost' || verdict.kind === 'cancelled') {
      fs.rmSync(tmpPath, { force: true });
      counts.lost += verdict.kind === 'lost' ? 1 : 0;
      done('shard', verdict.kind === 'lost' ? 409 : 499);
      log(`shard ${range.shard} of run ${runId}: ${verdict.kind === 'lost' ? 'lock lost (another worker owns it now); discarded' : 'run cancelled; discarded'}`);
      if (verdict.kind === 'lost') throw new Error(`lost the lock of shard ${range.shard} before committing`);
      return { cancelled: true };
    }
    if (verdict.kind === 'exists') {
      const onDisk = await fileSha256(finalPath);
      if (onDisk === verdict.entry.sha256) {
        fs.rmSync(tmpPath, { force: true });
        sweepTemporaries(finalPath);
        counts.duplicate++;
        done('shard', 208);
        return { duplicate: true };
      }
      // The entry's committer died before its rename (or the file was damaged): publish this copy under the lock.
      if (r.sha256 !== verdict.entry.sha256 && !(await rerecordCommit(redis, lockKey, token, runId, entry))) {
        fs.rmSync(tmpPath, { force: true });
        throw new Error(`lost the lock of shard ${range.shard} before committing`);
      }
      publish(tmpPath, finalPath);
      sweepTemporaries(finalPath);
      counts.committed++;
      done('shard', 200);
      return { republished: true };
    }
    publish(tmpPath, finalPath);
    sweepTemporaries(finalPath);
    counts.committed++;
    counts.rows += r.rows;
    counts.errorRows += r.errorRows;
    done('shard', 200);
    log(`committed shard ${range.shard} of run ${runId} (${r.rows} rows, ${r.errorRows} errors)`);
    if (spec.shards >= 0 && verdict.shardsDone >= spec.shards) writeManifest(spec, await committedEntries(redis, runId), true);
    return { rows: r.rows, errors: r.errorRows };
  };

  const bull = new Worker<ShardJobData>(options.queue ?? DEFAULT_QUEUE, processor, {
    connection: { ...redisOptions(options.redis), maxRetriesPerRequest: null },
    concurrency,
    lockDuration,
    stalledInterval: Math.max(250, Math.floor(lockDuration / 2)),
    // A stall is this design's ordinary failure (a killed or frozen worker), not the shard's fault.
    maxStalledCount: 10,
  });
  bull.on('failed', (job, err) => {
    if (!job || err?.name === 'WaitingError') return;
    counts.failed++;
    log(`shard ${job.data.range.shard} of run ${job.data.runId} failed (attempt ${job.attemptsMade}): ${err.message}`);
  });
  bull.on('error', (err) => log(`worker error: ${err.message}`));
  await bull.waitUntilReady();

  let server: http.Server | null = null;
  let metricsUrl: string | null = null;
  if (options.metricsPort !== null) {
    server = http.createServer((req, res) => {
      if (req.url?.split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics\n');
        return;
      }
      const text = renderPrometheus(metrics.snapshot(), {
        shardsActive: active.size, shardsCommitted: counts.committed, shardsDuplicate: counts.duplicate, shardsLockLost: counts.lost,
        shardsFailed: counts.failed, shardsReleased: counts.released, rowsCommitted: counts.rows, errorRowsCommitted: counts.errorRows,
        concurrency,
      });
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(text);
    });
    const host = options.metricsHost ?? '0.0.0.0';
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject);
      server!.listen(options.metricsPort ?? 9464, host, resolve);
    });
    const port = (server.address() as AddressInfo).port;
    metricsUrl = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}/metrics`;
  }

  let closing: Promise<void> | null = null;
  return {
    metricsUrl,
    counts,
    close(): Promise<void> {
      closing ??= (async () => {
        const timer = setTimeout(() => {
          releasing = true;
          for (const a of active.values()) void a.cancel();
        }, graceMs);
        if ((await closeBull(bull, () => active.size, Math.min(Math.max(5000, lockDuration), 30_000))) === 'stuck') {
          log('BullMQ did not close after the last shard ended (Redis unreachable?): disconnecting. Nothing is lost: '
            + 'a shard job left active is recovered as stalled by another worker and found committed, or redone');
        }
        clearTimeout(timer);
        await pool.close();
        metrics.stop();
        if (server) await new Promise<void>((r) => server!.close(() => r()));
        redis.disconnect();
      })();
      return closing;
    },
  };
}
