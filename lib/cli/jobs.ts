/**
 * `attnode submit | worker | status | retry | cancel`: distributed batch runs
 * on BullMQ + Redis (lib/jobs). Each resolves with the process exit code.
 */
import { parseArgs } from 'node:util';
import * as jobs from '../jobs';
import { UsageError, intFlag } from './args';

export const JOBS_USAGE = `usage: attnode submit --redis redis://HOST:PORT --input rows.jsonl|rows.csv --output DIR [--model M] [--config c.json]
                     [--shard-size N] [--text-field F] [--batch-size N] [--format jsonl|csv] [--attempts N] [--backoff-ms N]
                     [--output-kind pooled|tokens|both] [--seed N] [--precision float32|bfloat16] [--queue Q]
       attnode worker --redis URL [--concurrency N] [--threads T] [--lock-ms N] [--grace-ms N] [--metrics-port P]
                     [--metrics-host H] [--queue Q] [--quiet]
       attnode status --redis URL RUNID [--json] [--watch] [--interval-ms N]
       attnode retry --redis URL RUNID
       attnode cancel --redis URL RUNID
  --redis        defaults to $ATTNODE_REDIS_URL`;

type Values = Record<string, string | boolean | undefined>;

function parse(args: string[], strings: string[], booleans: string[] = []): { values: Values; positionals: string[] } {
  const options: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const n of strings) options[n] = { type: 'string' };
  for (const n of booleans) options[n] = { type: 'boolean' };
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
  const { values, positionals } = parse(args, ['redis', 'input', 'output', 'model', 'config', 'shard-size', 'text-field', 'batch-size',
    'format', 'attempts', 'backoff-ms', 'output-kind', 'seed', 'precision', 'queue']);
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
  const { values, positionals } = parse(args, ['redis', 'concurrency', 'threads', 'lock-ms', 'metrics-port', 'metrics-host', 'grace-ms', 'queue'], ['quiet']);
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
  const { values, positionals } = parse(args, ['redis', 'interval-ms'], ['json', 'watch']);
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
    }
    if (!values.watch || final) return s.state === 'complete' ? 0 : s.state === 'running' || s.state === 'scanning' ? 0 : 1;
    await new Promise((r) => setTimeout(r, interval));
  }
}

async function retryMain(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, ['redis']);
  const n = await jobs.retry({ redis: required(values, 'redis'), runId: runIdArg(positionals, 'retry') });
  console.log(`${n} failed shards back in the queue`);
  return 0;
}

async function cancelMain(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, ['redis']);
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

/** `attnode <job command> --help`. */
export const JOB_USAGE: Record<string, string> = Object.fromEntries(Object.keys(JOB_DESCRIPTIONS).map((c) => [c, JOBS_USAGE]));

/** The job subcommands by name. */
export const JOB_COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  submit: submitMain, worker: workerMain, status: statusMain, retry: retryMain, cancel: cancelMain,
};
