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
import { loadRowEngine, type BatchOutput, type InputRow, type RowEngine, type RowError } from './rows';
import { ShardWriter } from './sink';
import { LEDGER_ROWS_PER_SHARD, type RunSpec } from './store';

/** A shard to process. */
export interface ShardTask {
  id: number;
  spec: RunSpec;
  range: ShardRange;
  tmpPath: string;
  threads?: number;
}

/** What processing a shard produced. */
export type ShardResult =
  | { id: number; ok: true; rows: number; errorRows: number; ledger: RowError[]; sha256: string; bytes: number }
  | { id: number; ok: false; error: string };

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

/** Processes one shard into its temporary file. */
export async function processShard(task: ShardTask): Promise<ShardResult> {
  const { spec, range } = task;
  const engine = await engineFor(spec);
  const writer = new ShardWriter(task.tmpPath);
  try {
    let rows = 0;
    let errorRows = 0;
    const ledger: RowError[] = [];
    let batch: InputRow[] = [];
    let previous: Promise<BatchOutput> | null = null;
    const take = (out: BatchOutput): void => {
      writer.write(out.lines);
      rows += out.lines.length;
      errorRows += out.errors.length;
      for (const e of out.errors) if (ledger.length < LEDGER_ROWS_PER_SHARD) ledger.push(e);
    };
    // As `attnode run` does: start a batch on the native executor, then serialise and write the previous one meanwhile.
    const flush = async (): Promise<void> => {
      const current = engine.process(batch);
      current.catch(() => {}); // awaited below or at the next flush; a failure must not be an unhandled rejection meanwhile
      batch = [];
      if (previous) take(await previous);
      previous = current;
    };
    for await (const row of readShard(spec.input, spec.format, range, spec.columns)) {
      batch.push(row);
      if (batch.length >= spec.batchSize) await flush();
    }
    if (batch.length) await flush();
    if (previous) take(await previous);
    if (rows !== range.rows) throw new Error(`shard ${range.shard} of ${spec.input}: read ${rows} rows, submit counted ${range.rows} (the file changed?)`);
    const sha256 = writer.finish();
    return { id: task.id, ok: true, rows, errorRows, ledger, sha256, bytes: writer.bytes };
  } catch (e) {
    writer.abort();
    throw e;
  }
}

if (parentPort) {
  setGradEnabled(false);
  const port = parentPort;
  let threadsSet = false;
  port.on('message', (task: ShardTask) => {
    if (!threadsSet && task.threads !== undefined) {
      setNumThreads(task.threads);
      threadsSet = true;
    }
    processShard(task).then(
      (r) => port.postMessage(r),
      (e: unknown) => port.postMessage({ id: task.id, ok: false, error: (e as Error)?.message ?? String(e) } satisfies ShardResult),
    );
  });
}
