/**
 * `attnode submit | worker | status | retry | cancel`: distributed batch runs
 * on BullMQ + Redis (lib/jobs). Each resolves with the process exit code.
 */
import { parseArgs } from 'node:util';
import * as jobs from '../jobs';
import { UsageError, intFlag, unknownMessage } from './args';

const REDIS = `  --redis        the Redis URL, e.g. redis://10.0.0.5:6379 (default: $ATTNODE_REDIS_URL)`;

/** `attnode <job command> --help`: each command's synopsis and every flag it takes. */
export const JOB_USAGE: Record<string, string> = {
  submit: `usage: attnode submit --redis redis://HOST:PORT --input rows.jsonl|rows.csv --output DIR|postgres://... [--model M] [--config c.json]
                      [--shard-size N] [--text-field F] [--batch-size N] [--format jsonl|csv] [--attempts N] [--backoff-ms N]
                      [--output-kind pooled|tokens|both] [--seed N] [--precision float32|bfloat16|int8] [--queue Q]
  Splits the input into shard jobs on BullMQ (job id = run id + shard: submitting again is idempotent) and prints the
  run id. Every worker must see --input (and a directory --output) at these paths.
${REDIS}
  --input        JSONL or CSV rows: token-id rows for a --config model, text rows for a Hugging Face folder
  --output       the output directory: part-NNNNNN.jsonl per shard and manifest.json; or a PostgreSQL table,
                 postgres://USER[:PASSWORD]@HOST:PORT/DB?table=NAME (also ?table=schema.name; other parameters such
                 as sslmode go to the driver): rows are upserted keyed by (run_id, line), each shard once, with a
                 manifest row in NAME_shards; both tables are created if absent. Workers connect with this URL
                 (without a password in it: PGPASSWORD or ~/.pgpass on each worker)
  --model        a Hugging Face encoder folder (text rows → embeddings, or labels for a classifier), or a safetensors
                 state dict for --config (default: random weights from --seed)
  --config       the token-row model's config JSON (as attnode run)
  --shard-size   rows per shard (default 1000)
  --text-field   the text rows' field (default text)
  --batch-size   rows per forward pass (default 32)
  --format       jsonl or csv (default: by the input's extension)
  --attempts     attempts per shard before it goes to the failed set (default 3)
  --backoff-ms   first retry delay, doubled per attempt (default 1000)
  --output-kind  token rows: pooled (default), tokens or both
  --seed         seed of random weights (default 0)
  --precision    float32 (default), bfloat16 or int8 weight GEMMs
  --queue        the BullMQ queue (default attnode-shards)`,
  worker: `usage: attnode worker --redis URL [--concurrency N] [--threads T] [--lock-ms N] [--grace-ms N] [--metrics-port P]
                      [--metrics-host H] [--queue Q] [--quiet]
  Processes shard jobs until SIGTERM/SIGINT (then finishes or hands back its shards and exits 0). One per machine.
${REDIS}
  --concurrency  shards at once, one worker thread each (default 1)
  --threads      kernel threads per shard (default: the available cores)
  --lock-ms      BullMQ lock duration: a frozen worker loses its shard after this long (default 30000)
  --grace-ms     on SIGTERM, how long running shards may take before they are handed back (default 60000)
  --metrics-port GET /metrics (Prometheus text) on this port; 0 picks one (default 9464)
  --metrics-host the metrics server's address (default 0.0.0.0)
  --queue        the BullMQ queue (default attnode-shards)
  --quiet        no line per shard on stderr`,
  status: `usage: attnode status --redis URL RUNID [--json] [--watch] [--interval-ms N]
  A run's progress: shards and rows done, rows/s, ETA, failed shards, the error ledger's first rows. Exit 0 while
  running or complete, 1 when stalled (only failed shards left) or cancelled.
${REDIS}
  --json         one JSON object (with --watch: once the run ends)
  --watch        redraw until the run completes, stalls or is cancelled
  --interval-ms  --watch's refresh interval (default 1000)`,
  retry: `usage: attnode retry --redis URL RUNID
  Moves the run's failed shards back to the queue with fresh attempts.
${REDIS}`,
  cancel: `usage: attnode cancel --redis URL RUNID
  Cancels the run: queued shards are removed, running ones are discarded at their commit; committed files stay.
${REDIS}`,
};

/** The flags each job command takes (those with a value, and switches). */
export const JOB_FLAGS: Record<string, { strings: readonly string[]; booleans: readonly string[] }> = {
  submit: {
    strings: ['redis', 'input', 'output', 'model', 'config', 'shard-size', 'text-field', 'batch-size', 'format', 'attempts', 'backoff-ms',
      'output-kind', 'seed', 'precision', 'queue'],
    booleans: [],
  },
  worker: { strings: ['redis', 'concurrency', 'threads', 'lock-ms', 'grace-ms', 'metrics-port', 'metrics-host', 'queue'], booleans: ['quiet'] },
  status: { strings: ['redis', 'interval-ms'], booleans: ['json', 'watch'] },
  retry: { strings: ['redis'], booleans: [] },
  cancel: { strings: ['redis'], booleans: [] },
};

type Values = Record<string, string | boolean | undefined>;

function parse(args: string[], command: string): { values: Values; positionals: string[] } {
  const options: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const n of JOB_FLAGS[command]!.strings) options[n] = { type: 'string' };
  for (const n of JOB_FLAGS[command]!.booleans) options[n] = { type: 'boolean' };
  const known = Object.keys(options).map((n) => `--${n}`);
  for (const a of args) {
    if (a === '--') break;
    const name = a.split('=', 1)[0]!;
    if (name.startsWith('--') && !known.includes(name)) throw new UsageError(unknownMessage('option', name, known));
  }
  try {
    const r = parseArgs({ args, options, strict: true, allowPositionals: true });
    return { values: r.values as Values, positionals: r.positionals };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function required(values: Values, name: string): string {
  // --redis may come from the environment, so `attnode retry RUNID` works as the issue spells it.
  const v = values[name] ?? (name === 'redis' ? process.env.ATTNODE_REDIS_URL : undefined);
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${name} is required${name === 'redis' ? ' (or ATTNODE_REDIS_URL in the environment)' : ''}`);
  return v;
}

const str = (v: string | boolean | undefined): string | undefined => (typeof v === 'string' ? v : undefined);

async function submitMain(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, 'submit');
  if (positionals.length) throw new UsageError(`submit takes no positional arguments, got '${positionals[0]}'`);
  const r = await jobs.submit({
    redis: required(values, 'redis'), input: required(values, 'input'), output: required(values, 'output'),
    model: str(values.model), config: str(values.config), format: str(values.format), textField: str(values['text-field']),
    shardSize: intFlag('shard-size', str(values['shard-size']), 1000, 1), batchSize: intFlag('batch-size', str(values['batch-size']), 32, 1),
    attempts: intFlag('attempts', str(values.attempts), 3, 1), backoffMs: intFlag('backoff-ms', str(values['backoff-ms']), 1000, 0),
    outputKind: str(values['output-kind']) as jobs.OutputKind | undefined,
    seed: values.seed === undefined ? undefined : intFlag('seed', str(values.seed), 0), precision: str(values.precision), queue: str(values.queue),
  });
  console.error(`attnode submit: run ${r.runId}: ${r.rows} rows in ${r.shards} shards (${r.added} queued, ${r.committed} already committed)`);
  console.log(r.runId);
  return 0;
}

async function workerMain(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, 'worker');
  if (positionals.length) throw new UsageError(`worker takes no positional arguments, got '${positionals[0]}'`);
  const lockDurationMs = intFlag('lock-ms', str(values['lock-ms']), 30_000, 500);
  const metricsPort = intFlag('metrics-port', str(values['metrics-port']), 9464, 0);
  if (metricsPort > 65535) throw new UsageError(`--metrics-port must be <= 65535, got ${metricsPort}`);
  const quiet = values.quiet === true;
  const w = await jobs.worker({
    redis: required(values, 'redis'), concurrency: intFlag('concurrency', str(values.concurrency), 1, 1),
    threads: values.threads === undefined ? undefined : intFlag('threads', str(values.threads), 1, 1),
    lockDurationMs, metricsPort, metricsHost: str(values['metrics-host']), queue: str(values.queue),
    graceMs: values['grace-ms'] === undefined ? undefined : intFlag('grace-ms', str(values['grace-ms']), 0, 0),
    log: quiet ? undefined : (l) => console.error(`attnode worker: ${l}`),
  });
  console.error(`attnode worker: pid ${process.pid} ready${w.metricsUrl ? `, metrics on ${w.metricsUrl}` : ''}`);
  await new Promise<void>((resolve) => {
    const stop = (sig: string): void => {
      console.error(`attnode worker: ${sig}: finishing the current shards, then exiting`);
      w.close().then(resolve, (e: unknown) => {
        console.error(`attnode worker: close failed: ${(e as Error).message}`);
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  console.error(`attnode worker: exited cleanly (${w.counts.committed} shards committed)`);
  // Every shard is settled and every connection closed; a reconnect timer a library left behind must not keep the
  // process alive (an unref'd timer fires only if something else still holds the event loop).
  setTimeout(() => process.exit(0), 2000).unref();
  return 0;
}

function runIdArg(positionals: string[], cmd: string): string {
  if (positionals.length !== 1) throw new UsageError(`${cmd} takes one RUNID, got ${positionals.length}`);
  return positionals[0]!;
}

function fmtSeconds(s: number | null): string {
  if (s === null) return '?';
  if (s < 60) return `${s.toFixed(0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

/** One status line (with a bar when the totals are known). */
export function statusLine(s: jobs.RunStatus): string {
  const width = 24;
  const f = s.shards > 0 ? s.shardsDone / s.shards : 0;
  const bar = `[${'#'.repeat(Math.round(f * width)).padEnd(width)}]`;
  const rate = s.rowsPerSecond === null ? '? rows/s' : `${s.rowsPerSecond.toFixed(0)} rows/s`;
  return `${bar} ${s.state}: ${s.shardsDone}/${s.shards < 0 ? '?' : s.shards} shards, ${s.rowsDone}/${s.rows < 0 ? '?' : s.rows} rows, ` +
    `${rate}, ETA ${fmtSeconds(s.etaSeconds)}, ${s.failedShards.length} failed shards, ${s.errorRows} error rows`;
}

async function statusMain(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, 'status');
  const opts = { redis: required(values, 'redis'), runId: runIdArg(positionals, 'status') };
  const interval = intFlag('interval-ms', str(values['interval-ms']), 1000, 50);
  const tty = process.stderr.isTTY === true;
  for (;;) {
    const s = await jobs.status(opts);
    const final = s.state === 'complete' || s.state === 'cancelled' || s.state === 'stalled';
    if (values.json === true) {
      if (!values.watch || final) console.log(JSON.stringify(s));
    } else if (values.watch && tty && !final) {
      process.stderr.write(`\r${statusLine(s)}\x1b[K`);
    } else {
      if (values.watch && tty) process.stderr.write('\r\x1b[K');
      console.log(`run ${s.runId}`);
      console.log(statusLine(s));
      for (const f of s.failedShards) console.log(`  failed shard ${f.shard} (${f.attempts} attempts): ${f.reason}`);
      for (const e of s.errors) console.log(`  error row: shard ${e.shard} line ${e.line}${e.id !== undefined ? ` id ${JSON.stringify(e.id)}` : ''}: ${e.reason}`);
      if (s.manifest) console.log(`  manifest: ${s.manifest}`);
      if (s.postgres) {
        const p = s.postgres;
        console.log(p.error !== undefined ? `  PostgreSQL ${s.output}: cannot read ${p.shardsTable}: ${p.error}`
          : `  PostgreSQL ${s.output}: ${p.rows} rows (${p.errorRows} error rows) in ${p.shards} shards committed to ${p.table} (manifest: ${p.shardsTable})`);
      }
    }
    if (!values.watch || final) return s.state === 'complete' ? 0 : s.state === 'running' || s.state === 'scanning' ? 0 : 1;
    await new Promise((r) => setTimeout(r, interval));
  }
}

async function retryMain(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, 'retry');
  const n = await jobs.retry({ redis: required(values, 'redis'), runId: runIdArg(positionals, 'retry') });
  console.log(`${n} failed shards back in the queue`);
  return 0;
}

async function cancelMain(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, 'cancel');
  const n = await jobs.cancel({ redis: required(values, 'redis'), runId: runIdArg(positionals, 'cancel') });
  console.log(`run cancelled; ${n} queued shards removed`);
  return 0;
}

/** One line per job command for `attnode`'s command list. */
export const JOB_DESCRIPTIONS: Record<string, string> = {
  submit: 'split a JSONL/CSV file into shard jobs on BullMQ + Redis (prints the run id)',
  worker: 'process shard jobs (one per machine; inference in worker threads; /metrics)',
  status: "a run's progress: shards, rows, rows/s, ETA, failures, the error ledger",
  retry: "move a run's failed shards back to the queue",
  cancel: 'cancel a run',
};

/** The job subcommands by name. */
export const JOB_COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  submit: submitMain, worker: workerMain, status: statusMain, retry: retryMain, cancel: cancelMain,
};
