/**
 * Batch jobs benchmark, the sinks: rows/s of the same run (same input, same shards, one worker, --threads 1) into
 * the JSONL sink (files in a directory) and into the PostgreSQL sink (COPY into a staging table, then the upsert).
 *
 *   npm run bench:jobs:postgres [-- --rows 10000 --shard-size 1000 --tokens 32 --reps 5 --dim 384 --sink-shards 10]
 *
 * Starts its own redis-server and PostgreSQL (initdb into a temporary directory, loopback ports, default
 * durability: fsync and synchronous_commit on, as the JSONL sink fsyncs its files), both stopped by pid at exit.
 * The contenders alternate (JSONL, PostgreSQL, JSONL, ...), each repetition with a fresh worker process and a fresh
 * output (a new directory / table), so both pay the same start-up; the figure is the median of the repetitions.
 * "rows s" is from the first shard's start to the last commit (the run's own rows/s, as `status` reports it).
 * Then the sinks alone, in this process: a shard of ready records (`--shard-size` rows of `--dim`-float embeddings,
 * a sentence encoder's output) written and committed `--sink-shards` times by each sink, alternating: JSON lines +
 * write + fsync + rename, against binary COPY tuples into the staging table + the commit statement.
 * Writes its section of bench/results/jobs-<cpu>.md (between markers; the rest of the file is kept), with `uptime`'s
 * load beside each repetition.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as jobs from '../../lib/jobs';
import { parsePgOutput } from '../../lib/jobs/pg-output';
import { PgStage, commitStaged, connectPg, ensureTables } from '../../lib/jobs/pg-sink';
import { ShardWriter, publish } from '../../lib/jobs/sink';
import { PostgresServer, postgresUnavailable } from '../../test/helpers/postgres-server';
import { freePort } from '../../test/helpers/ports';
import { CLI_ARGS, ROOT, arg, load, sleep } from './common';

const ROWS = arg('rows', 10000);
const SHARD = arg('shard-size', 1000);
const TOKENS = arg('tokens', 32);
const REPS = arg('reps', 5);
const DIM = arg('dim', 384);
const SINK_SHARDS = arg('sink-shards', 10);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const why = postgresUnavailable();
  if (why) throw new Error(`cannot start PostgreSQL: ${why}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'attnode-bench-pgsink-'));
  const children: ChildProcess[] = [];
  const redisPort = await freePort();
  const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--appendonly', 'yes', '--dir', dir, '--save', ''], { stdio: 'ignore' });
  children.push(redis);
  const pg = new PostgresServer(await freePort());
  const cleanup = (): void => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    if (pg.proc?.exitCode === null) pg.proc.kill('SIGINT');
  };
  process.on('exit', cleanup);
  try {
    await pg.start();
    await sleep(300);
    const url = `redis://127.0.0.1:${redisPort}`;
    const input = path.join(dir, 'rows.jsonl');
    const lines: string[] = [];
    for (let i = 0; i < ROWS; i++) lines.push(JSON.stringify({ id: i, tokens: Array.from({ length: TOKENS }, (_, j) => (i * 31 + j * 7) % 1000) }));
    fs.writeFileSync(input, lines.join('\n') + '\n');

    const runs: { sink: 'jsonl' | 'postgres'; rep: number; rowsSeconds: number; wall: number; load: string }[] = [];
    for (let rep = 0; rep < REPS; rep++) {
      for (const sink of ['jsonl', 'postgres'] as const) {
        const queue = `bench-${sink}-${rep}`;
        const output = sink === 'jsonl' ? path.join(dir, `out-${rep}`) : `${pg.url()}?table=bench_${rep}`;
        const t0 = performance.now();
        const w = spawn(process.execPath, [...CLI_ARGS, 'worker', '--redis', url, '--queue', queue, '--threads', '1', '--metrics-port', '0', '--quiet'],
          { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
        children.push(w);
        const { runId } = await jobs.submit({ redis: url, queue, input, output, shardSize: SHARD });
        let s: jobs.RunStatus;
        for (;;) {
          s = await jobs.status({ redis: url, runId });
          if (s.state === 'complete') break;
          if (s.state === 'stalled') throw new Error(`${sink} run stalled: ${JSON.stringify(s.failedShards)}`);
          await sleep(100);
        }
        const wall = (performance.now() - t0) / 1000;
        if (sink === 'postgres' && s.postgres?.rows !== ROWS) throw new Error(`PostgreSQL holds ${s.postgres?.rows} rows, expected ${ROWS}`);
        const rowsSeconds = s.rowsDone / s.rowsPerSecond!;
        runs.push({ sink, rep, rowsSeconds, wall, load: load() });
        console.error(`rep ${rep} ${sink}: rows ${rowsSeconds.toFixed(2)} s (${(ROWS / rowsSeconds).toFixed(0)} rows/s), wall ${wall.toFixed(2)} s, load ${load()}`);
        w.kill('SIGTERM');
        await new Promise((r) => (w.exitCode !== null ? r(null) : w.once('exit', r)));
      }
    }
    // The sinks alone: the same ready shard written and committed by each, alternating.
    const records = Array.from({ length: SHARD }, (_, i) => ({ line: i + 1, id: `r${i}`, embedding: Array.from({ length: DIM }, (_, j) => Math.fround(Math.sin(i * DIM + j))) }));
    const o = parsePgOutput(`${pg.url()}?table=sink_only`);
    const client = await connectPg(o);
    await ensureTables(client, o);
    const sinkDir = path.join(dir, 'sink-only');
    fs.mkdirSync(sinkDir);
    const sinkMs: Record<'jsonl' | 'postgres', number[]> = { jsonl: [], postgres: [] };
    for (let k = 0; k < SINK_SHARDS; k++) {
      let t0 = performance.now();
      const file = path.join(sinkDir, `part-${k}.jsonl`);
      const writer = new ShardWriter(`${file}.tmp`);
      writer.write(records.map((r) => JSON.stringify(r)));
      writer.finish();
      publish(`${file}.tmp`, file);
      sinkMs.jsonl.push(performance.now() - t0);
      t0 = performance.now();
      const stage = await PgStage.open(client);
      await stage.write(records);
      const sha256 = await stage.finish();
      const v = await commitStaged(client, o, 'bench', k, { rows: SHARD, errorRows: 0, bytes: stage.bytes, sha256 }, []);
      if (v.kind !== 'committed') throw new Error(`sink-only shard ${k}: ${v.kind}`);
      sinkMs.postgres.push(performance.now() - t0);
    }
    await client.end();
    const sinkLoad = load();
    const [sj, sp] = [median(sinkMs.jsonl), median(sinkMs.postgres)];
    console.error(`sinks alone: JSONL ${sj.toFixed(1)} ms, PostgreSQL ${sp.toFixed(1)} ms per ${SHARD}-row shard of ${DIM}-d vectors (load ${sinkLoad})`);

    const med = (sink: 'jsonl' | 'postgres'): number => median(runs.filter((r) => r.sink === sink).map((r) => r.rowsSeconds));
    const [j, p] = [med('jsonl'), med('postgres')];
    const cpu = (os.cpus()[0]?.model ?? 'cpu').replace(/\s+/g, ' ').trim();
    const slug = cpu.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
    const pgVersion = fs.readFileSync(path.join(pg.dir, 'data', 'PG_VERSION'), 'utf8').trim();
    const section = [
      '<!-- bench/jobs/postgres.ts: begin -->',
      '## Sinks: JSONL files against PostgreSQL (`npm run bench:jobs:postgres`)',
      '',
      `${new Date().toISOString()}; ${ROWS} token rows of ${TOKENS} tokens, default encoder (d 128, 2 layers), batch 32, shard size ${SHARD},`,
      `one worker (--threads 1), a fresh worker per repetition; PostgreSQL ${pgVersion} on loopback, default durability. The contenders`,
      `alternate; "rows s" is first shard start → last commit; median of ${REPS}. The load average (1, 5, 15 min) is beside each figure.`,
      '',
      '| sink | median rows s | rows/s | vs JSONL |',
      '|---|---|---|---|',
      `| JSONL files (temporary file, fsync, rename) | ${j.toFixed(2)} | ${(ROWS / j).toFixed(0)} | 1.00× |`,
      `| PostgreSQL (binary COPY into a temporary table, one-statement upsert + manifest row) | ${p.toFixed(2)} | ${(ROWS / p).toFixed(0)} | ${(j / p).toFixed(2)}× rows/s |`,
      '',
      '| repetition | sink | rows s | wall s | load |',
      '|---|---|---|---|---|',
      ...runs.map((r) => `| ${r.rep} | ${r.sink} | ${r.rowsSeconds.toFixed(2)} | ${r.wall.toFixed(2)} | ${r.load} |`),
      '',
      `The sinks alone (in one process, no model): a ready shard of ${SHARD} rows with ${DIM}-float embeddings written and committed`,
      `${SINK_SHARDS} times by each, alternating; median ms per shard (load ${sinkLoad}).`,
      '',
      '| sink alone | ms per shard | rows/s |',
      '|---|---|---|',
      `| JSONL: JSON lines, write, fsync, rename + directory fsync | ${sj.toFixed(1)} | ${(SHARD / (sj / 1000)).toFixed(0)} |`,
      `| PostgreSQL: binary COPY into the staging table, the commit statement | ${sp.toFixed(1)} | ${(SHARD / (sp / 1000)).toFixed(0)} |`,
      '<!-- bench/jobs/postgres.ts: end -->',
    ].join('\n');
    const out = path.join(ROOT, 'bench', 'results', `jobs-${slug}.md`);
    const prev = fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : '';
    const marked = /<!-- bench\/jobs\/postgres\.ts: begin -->[^]*<!-- bench\/jobs\/postgres\.ts: end -->/;
    fs.writeFileSync(out, marked.test(prev) ? prev.replace(marked, () => section) : `${prev.trimEnd()}\n\n${section}\n`);
    console.log(section);
    console.error(`→ ${out}`);
  } finally {
    await pg.stop().catch(() => {});
    cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
