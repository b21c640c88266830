/**
 * A worker thread of `attnode worker`: reads one shard's rows, runs the model
 * and writes the shard's temporary file (fsynced). Inference, parsing and
 * serialising all happen here, so the main thread's event loop stays free to
 * renew BullMQ's locks.
 */
import { parentPort } from 'node:worker_threads';
import { setGradEnabled } from '../autograd/grad-mode';
import { setNumThreads } from '../runtime';
import { readShard, type ShardRange } from './readers';
import { isPostgresOutput, parsePgOutput, type PgOutput } from './pg-output';
import type { Client as PgClient } from 'pg';
import { PgStage, commitStaged, committedShard, connectPg } from './pg-sink';
import { loadRowEngine, type BatchForm, type BatchOutput, type InputRow, type RowEngine, type RowError } from './rows';
import { ShardWriter } from './sink';
import { LEDGER_ROWS_PER_SHARD, type RunSpec } from './store';

/** A shard to process. */
export interface ShardTask {
  id: number;
  spec: RunSpec;
  range: ShardRange;
  /** The JSONL sink's temporary file (unused when the output is PostgreSQL). */
  tmpPath: string;
  threads?: number;
}

/**
 * What processing a shard produced. `sink` (PostgreSQL output): 'committed' when this attempt's commit wrote the
 * shard, 'exists' when the manifest table already had it (the counts and checksum are then the committed ones),
 * 'discarded' when the main thread said not to commit (lock lost, run cancelled).
 */
export type ShardResult =
  | { id: number; ok: true; rows: number; errorRows: number; ledger: RowError[]; sha256: string; bytes: number; sink?: 'committed' | 'exists' | 'discarded' }
  | { id: number; ok: false; error: string };

/** PostgreSQL output: the thread's message once the shard is staged; the main thread answers with {@link ShardDecision}. */
export interface ShardStaged {
  id: number;
  staged: true;
}

/** The main thread's answer to {@link ShardStaged}: commit, or discard (the job's lock is gone or the run is cancelled). */
export interface ShardDecision {
  id: number;
  commit: boolean;
}

const engines = new Map<string, Promise<RowEngine>>();

function engineFor(spec: RunSpec): Promise<RowEngine> {
  const key = JSON.stringify([spec.model, spec.config, spec.seed, spec.outputKind, spec.textField, spec.precision]);
  let e = engines.get(key);
  if (!e) {
    e = loadRowEngine(spec);
    e.catch(() => engines.delete(key));
    engines.set(key, e);
  }
  return e;
}

/**
 * Reads a shard's rows, runs them through the engine in batches and hands each batch's output to `take`, in input
 * order. As `attnode run` does: a batch starts on the native executor while the previous one is serialised and
 * written. Resolves with the counts and the ledger's first rows.
 */
async function computeShard(task: ShardTask, form: BatchForm, take: (out: BatchOutput) => void | Promise<void>): Promise<{ rows: number; errorRows: number; ledger: RowError[] }> {
  const { spec, range } = task;
  const engine = await engineFor(spec);
  let rows = 0;
  let errorRows = 0;
  const ledger: RowError[] = [];
  let batch: InputRow[] = [];
  let previous: Promise<BatchOutput> | null = null;
  const count = async (out: BatchOutput): Promise<void> => {
    await take(out);
    rows += (out.records ?? out.lines).length;
    errorRows += out.errors.length;
    for (const e of out.errors) if (ledger.length < LEDGER_ROWS_PER_SHARD) ledger.push(e);
  };
  const flush = async (): Promise<void> => {
    const current = engine.process(batch, form);
    current.catch(() => {}); // awaited below or at the next flush; a failure must not be an unhandled rejection meanwhile
    batch = [];
    if (previous) await count(await previous);
    previous = current;
  };
  for await (const row of readShard(spec.input, spec.format, range, spec.columns)) {
    batch.push(row);
    if (batch.length >= spec.batchSize) await flush();
  }
  if (batch.length) await flush();
  if (previous) await count(await previous);
  if (rows !== range.rows) throw new Error(`shard ${range.shard} of ${spec.input}: read ${rows} rows, submit counted ${range.rows} (the file changed?)`);
  return { rows, errorRows, ledger };
}

/** Processes one shard into its temporary file (the JSONL sink). */
async function processFileShard(task: ShardTask): Promise<ShardResult> {
  const writer = new ShardWriter(task.tmpPath);
  try {
    const r = await computeShard(task, 'lines', (out) => writer.write(out.lines));
    const sha256 = writer.finish();
    return { id: task.id, ok: true, ...r, sha256, bytes: writer.bytes };
  } catch (e) {
    writer.abort();
    throw e;
  }
}

/** This thread's PostgreSQL connection per server (one shard at a time per thread: one session each). */
const sessions = new Map<string, Promise<PgClient>>();

async function pgSession(o: PgOutput): Promise<PgClient> {
  let s = sessions.get(o.connectionString);
  if (!s) {
    const key = o.connectionString;
    const opened = connectPg(o, "the run's output");
    s = opened;
    // A session the server ended while idle (a restart, an administrator) is replaced at the next shard, not reused.
    opened.then((c) => c.once('end', () => sessions.get(key) === opened && sessions.delete(key)), () => sessions.delete(key));
    sessions.set(key, opened);
  }
  return s;
}

/** Closes a session whose state is unknown after an error (its temporary staging table goes with it). */
function dropSession(o: PgOutput): void {
  const s = sessions.get(o.connectionString);
  sessions.delete(o.connectionString);
  s?.then((c) => c.end()).catch(() => {});
}

/**
 * Processes one shard into PostgreSQL: skipped when the manifest table already has it; else its rows are streamed
 * with COPY into the session's temporary staging table, then (if `decide` says so: the main thread still holds the
 * job's lock) committed by one statement that records the manifest row and upserts the rows, or finds another
 * attempt's manifest row and writes nothing.
 */
async function processPgShard(task: ShardTask, decide: () => Promise<boolean>): Promise<ShardResult> {
  const { spec, range } = task;
  const o = parsePgOutput(spec.output, 'the run\'s output');
  let stage: PgStage | null = null;
  try {
    const client = await pgSession(o);
    const prior = await committedShard(client, o, spec.runId, range.shard);
    if (prior) return { id: task.id, ok: true, ...prior, sink: 'exists' };
    const st = await PgStage.open(client);
    stage = st;
    const r = await computeShard(task, 'records', (out) => st.write(out.records!));
    const sha256 = await st.finish();
    stage = null;
    if (!(await decide())) return { id: task.id, ok: true, ...r, sha256, bytes: st.bytes, sink: 'discarded' };
    const verdict = await commitStaged(client, o, spec.runId, range.shard, { rows: r.rows, errorRows: r.errorRows, bytes: st.bytes, sha256 }, r.ledger);
    if (verdict.kind === 'exists') return { id: task.id, ok: true, ...verdict.row, sink: 'exists' };
    return { id: task.id, ok: true, ...r, sha256, bytes: st.bytes, sink: 'committed' };
  } catch (e) {
    stage?.abort();
    dropSession(o);
    throw e;
  }
}

/**
 * Processes one shard: into its temporary file, or into PostgreSQL when the run's output is a PostgreSQL URL
 * (then `decide` is asked, once the rows are staged, whether to commit).
 */
export async function processShard(task: ShardTask, decide: () => Promise<boolean> = async () => true): Promise<ShardResult> {
  return isPostgresOutput(task.spec.output) ? processPgShard(task, decide) : processFileShard(task);
}

if (parentPort) {
  setGradEnabled(false);
  const port = parentPort;
  let threadsSet = false;
  // PostgreSQL output: the main thread's commit decisions, by task id.
  const decisions = new Map<number, (commit: boolean) => void>();
  port.on('message', (msg: ShardTask | ShardDecision) => {
    if ('commit' in msg) {
      decisions.get(msg.id)?.(msg.commit);
      decisions.delete(msg.id);
      return;
    }
    const task = msg;
    if (!threadsSet && task.threads !== undefined) {
      setNumThreads(task.threads);
      threadsSet = true;
    }
    const decide = (): Promise<boolean> => new Promise<boolean>((resolve) => {
      decisions.set(task.id, resolve);
      port.postMessage({ id: task.id, staged: true } satisfies ShardStaged);
    });
    processShard(task, decide).then(
      (r) => port.postMessage(r),
      (e: unknown) => port.postMessage({ id: task.id, ok: false, error: (e as Error)?.message ?? String(e) } satisfies ShardResult),
    );
  });
}
