/**
 * The PostgreSQL sink of distributed batch runs (`attnode submit --output postgres://...?table=T`) against a real
 * PostgreSQL server, a real redis-server and real worker processes. In every fault that applies to this sink (a
 * worker killed with -9 mid-shard, a worker frozen past its lock and resumed, poison rows and shards, resubmits),
 * every input row is in the table exactly once, equal to `attnode run` on the same input, and the manifest table
 * has one row per shard. The commit's guard is also driven directly: two sessions committing the same shard.
 *
 * PostgreSQL: ATTNODE_TEST_PG_URL (a server URL without ?table; .ci/run starts one), else a private server this
 * file starts (initdb into a temporary directory, loopback port, stopped by pid); without the server binaries the
 * suite is a visible skip. Redis: ATTNODE_TEST_REDIS_URL, else a private redis-server.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as jobs from '../lib/jobs';
import { COPY_HEADER, copyTuples, parsePgOutput, redactUrl, type PgOutput } from '../lib/jobs/pg-output';
import { PgStage, commitStaged, committedShard, connectPg, ensureTables } from '../lib/jobs/pg-sink';
import {
  CLASSIFY, EMBED, REDIS_BIN, RedisServer, cli, compareToReference, freePort, metric, sleep, startWorker, textRows, tokenRows, waitComplete, waitFor,
  writeInput, writeTokenModel, type WorkerProc,
} from './helpers/jobs';
import { PostgresServer, postgresUnavailable } from './helpers/postgres-server';
import { missingPrecondition } from './helpers/preconditions';

describe('PostgreSQL output URLs and COPY rows (no server)', () => {
  it('parses the table and passes every other parameter to the driver; the password never shows', () => {
    const o = parsePgOutput('postgres://me:s3cret@db.example:6543/warehouse?sslmode=require&table=ml.embeddings');
    expect(o).toMatchObject({ schema: 'ml', table: 'embeddings', display: 'postgres://me:***@db.example:6543/warehouse?sslmode=require&table=ml.embeddings' });
    expect(o.connectionString).toBe('postgres://me:s3cret@db.example:6543/warehouse?sslmode=require');
    expect(parsePgOutput('postgresql://u@h/d?table=t')).toMatchObject({ schema: null, table: 't' });
    expect(redactUrl('postgres://u:p@h/d')).toBe('postgres://u:***@h/d');
  });

  it('a bad URL is a TypeError naming the argument, the expected form and the value (password masked)', () => {
    expect(() => parsePgOutput('postgres://u:pw@h:5432/db')).toThrow(/--output must name the target table with \?table=NAME .*got "postgres:\/\/u:\*\*\*@h:5432\/db"/);
    expect(() => parsePgOutput('postgres://u@h/db?table=Bad-Name')).toThrow(/--output: table must be \[schema\.\]name of lower-case letters, digits and _ .*got "Bad-Name"/);
    expect(() => parsePgOutput('postgres://u@h/db?table=a.b.c')).toThrow(TypeError);
    expect(() => parsePgOutput(`postgres://u@h/db?table=${'x'.repeat(57)}`)).toThrow(/at most 56 characters/);
    expect(() => parsePgOutput('postgres://u@h:0/db?table=t')).toThrow(/port must be 1-65535/);
    expect(() => parsePgOutput('postgres://u@h:99999/db?table=t')).toThrow(/got "postgres:\/\/u@h:99999\/db\?table=t" \(not a URL\)/);
    expect(() => parsePgOutput('postgres:///db?table=t')).toThrow(/must name the server's host/);
    expect(() => parsePgOutput('postgres://[bad/db?table=t', 'output')).toThrow(/^output must be a PostgreSQL URL like postgres:\/\/user@127.0.0.1:5432\/db\?table=embeddings, got .* \(not a URL\)$/);
  });

  it('binary COPY tuples: a row of NULLs exactly; a ragged 2-D array or a record without a line is refused', () => {
    const t = copyTuples([{ line: 1 }]);
    const want = Buffer.alloc(2 + 12 + 7 * 4);
    want.writeInt16BE(8, 0);
    want.writeInt32BE(8, 2);
    want.writeBigInt64BE(1n, 6);
    for (let k = 0; k < 7; k++) want.writeInt32BE(-1, 14 + 4 * k);
    expect(t).toEqual(want);
    expect(COPY_HEADER.toString('latin1')).toBe('PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0');
    expect(() => copyTuples([{ line: 2, embeddings: [[1, 2], [3]] }])).toThrow(/embeddings is not a rectangular array/);
    expect(() => copyTuples([{ id: 1 }])).toThrow(/without an integer line/);
  });
});

const PG_ENV = process.env.ATTNODE_TEST_PG_URL;
const unavailable = PG_ENV ? null : postgresUnavailable();

describe('jobs: the PostgreSQL sink on BullMQ + redis-server + PostgreSQL', () => {
  if (unavailable) {
    missingPrecondition(`${unavailable}, and ATTNODE_TEST_PG_URL unset`);
    return;
  }
  if (!REDIS_BIN && !process.env.ATTNODE_TEST_REDIS_URL) {
    missingPrecondition('redis-server not installed (apt-get install -y redis-server) and ATTNODE_TEST_REDIS_URL unset');
    return;
  }
  let dir: string;
  let url: string;
  let pgUrl: string;
  let pg: Client;
  let ownRedis: RedisServer | null = null;
  let ownPg: PostgresServer | null = null;
  const workers: WorkerProc[] = [];
  let n = 0;
  const queue = (): string => `attnode-pgtest-${process.pid}-${n++}`;
  /** A table name of this test run (the server may be shared with other runs of the suite). */
  const table = (): string => `t${process.pid}_${n++}`;
  const out = (t: string): string => `${pgUrl}?table=${t}`;
  const spawnWorker = (qn: string, extra: string[] = []): WorkerProc => {
    const w = startWorker(url, qn, extra);
    workers.push(w);
    return w;
  };

  let tokenModel: string[];
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'attnode-jobs-pg-'));
    tokenModel = await writeTokenModel(dir);
    if (process.env.ATTNODE_TEST_REDIS_URL) url = process.env.ATTNODE_TEST_REDIS_URL;
    else {
      fs.mkdirSync(path.join(dir, 'redis'));
      ownRedis = new RedisServer(await freePort(), path.join(dir, 'redis'));
      await ownRedis.start();
      url = ownRedis.url;
    }
    if (PG_ENV) pgUrl = PG_ENV;
    else {
      ownPg = new PostgresServer(await freePort());
      await ownPg.start({ fsync: 'off' });
      pgUrl = ownPg.url();
    }
    pg = new Client({ connectionString: pgUrl });
    await pg.connect();
  }, 120_000);
  afterAll(async () => {
    for (const w of workers) if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill('SIGKILL');
    await pg?.end().catch(() => {});
    await ownRedis?.stop();
    await ownPg?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const input = (name: string, rows: string[], model: string | string[] = EMBED, ext = 'jsonl'): { file: string; reference: string } =>
    writeInput(dir, name, rows, model, ext);

  function submit(qn: string, file: string, t: string, extra: string[] = [], model: string[] = ['--model', EMBED]): string {
    const r = cli(['submit', '--redis', url, '--queue', qn, ...model, '--input', file, '--output', out(t), '--batch-size', '16', ...extra]);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout.trim();
  }

  /**
   * A run's rows read back from the table as output records (the JSONL sink's field names), checked against
   * `attnode run`: every row exactly once (the key makes a duplicate impossible; the count shows none is missing),
   * and the manifest table has one row per shard whose counts add up to the table's.
   */
  async function checkTable(t: string, s: jobs.RunStatus, reference: string, kind: 'tokens' | 'text'): Promise<Record<string, unknown>[]> {
    const rows = (await pg.query(`SELECT line::float8 AS line, row_id, embedding::float8[] AS embedding, label, score, error, extra
      FROM ${t} WHERE run_id = $1 ORDER BY line`, [s.runId])).rows as { line: number; row_id: string | null; embedding: number[] | null; label: string | null;
      score: number | null; error: string | null; extra: Record<string, unknown> | null }[];
    const records = rows.map((r) => {
      const rec: Record<string, unknown> = { line: r.line, ...(r.extra ?? {}) };
      if (r.row_id !== null) rec.id = kind === 'tokens' ? JSON.parse(r.row_id) : r.row_id;
      if (r.embedding) rec[kind === 'tokens' ? 'pooled' : 'embedding'] = r.embedding;
      if (r.label !== null) rec.label = r.label;
      if (r.score !== null) rec.score = r.score;
      if (r.error !== null) rec.error = r.error;
      return rec;
    });
    compareToReference(records, reference);
    const shards = (await pg.query(`SELECT shard, rows, error_rows FROM ${t}_shards WHERE run_id = $1 ORDER BY shard`, [s.runId])).rows as
      { shard: number; rows: number; error_rows: number }[];
    expect(shards.map((x) => x.shard)).toEqual(Array.from({ length: s.shards }, (_, i) => i));
    expect(shards.reduce((a, x) => a + x.rows, 0)).toBe(rows.length);
    expect(shards.reduce((a, x) => a + x.error_rows, 0)).toBe(rows.filter((r) => r.error !== null).length);
    expect(s.postgres).toEqual({ table: t, shardsTable: `${t}_shards`, shards: s.shards, rows: rows.length, errorRows: s.errorRows });
    expect(s.rowsDone).toBe(rows.length);
    return records;
  }

  it('kill -9 of a worker mid-shard: its shard is redone by the other; every row once in the table, equal to attnode run', async () => {
    const { file, reference } = input('kill', tokenRows(192), tokenModel);
    const qn = queue();
    const t = table();
    const runId = submit(qn, file, t, ['--shard-size', '32'], tokenModel);
    // A alone until it has committed a shard and holds the next (with B running too, B could take every shard left
    // while A still loads its model); then A dies mid-shard and B, started now, must redo that shard.
    const a = spawnWorker(qn);
    await waitFor('worker A to commit a shard and hold another', async () =>
      (await metric(a, 'shards_committed')) >= 1 && (await metric(a, 'shards_active')) >= 1)
      .catch((e: Error) => { throw new Error(`${e.message}\nworker A:\n${a.log.join('')}`); });
    a.proc.kill('SIGKILL');
    const b = spawnWorker(qn);
    const s = await waitComplete(url, runId, 90_000);
    await checkTable(t, s, reference, 'tokens');
    b.proc.kill('SIGTERM');
    expect(await b.exited).toBe(0);
  }, 150_000);

  it('a worker frozen (SIGSTOP) past its lock, then resumed: its late commit is discarded; every row once', async () => {
    const { file, reference } = input('stop', tokenRows(128), tokenModel);
    const qn = queue();
    const t = table();
    const runId = submit(qn, file, t, ['--shard-size', '32'], tokenModel);
    const a = spawnWorker(qn);
    await waitFor('worker A to hold a shard', async () => (await metric(a, 'shards_active')) >= 1);
    a.proc.kill('SIGSTOP');
    const b = spawnWorker(qn);
    const s = await waitComplete(url, runId, 90_000);
    a.proc.kill('SIGCONT');
    // A finishes its stale shard and must find it taken: lock lost (staged rows discarded) or already recorded.
    await waitFor('worker A to notice', async () => (await metric(a, 'shards_lock_lost')) + (await metric(a, 'shards_duplicate')) + (await metric(b, 'shards_duplicate')) >= 1, 30_000)
      .catch((e: Error) => { throw new Error(`${e.message}\nworker A:\n${a.log.join('')}\nworker B:\n${b.log.join('')}`); });
    await checkTable(t, s, reference, 'tokens');
    for (const w of [a, b]) w.proc.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    expect(await b.exited).toBe(0);
  }, 150_000);

  it('poison rows are error rows in the table and the ledger; failing shards go to the failed set and `retry` brings them back; status shows the table', async () => {
    const poison = new Map([[3, 'not json'], [40, '{"id": "no-text", "body": "x"}'], [41, '{"id": "num", "text": 7}'], [77, '""']]);
    const { file, reference } = input('poison', textRows(100, poison));
    const qn = queue();
    const t = table();
    const runId = submit(qn, file, t, ['--shard-size', '25', '--attempts', '2', '--backoff-ms', '50']);
    fs.renameSync(file, `${file}.away`);
    const a = spawnWorker(qn);
    const stalled = await waitFor('the shards to fail', async () => {
      const s = await jobs.status({ redis: url, runId });
      return s.state === 'stalled' ? s : null;
    });
    expect(stalled.failedShards.map((f) => f.shard)).toEqual([0, 1, 2, 3]);
    expect(stalled.postgres).toMatchObject({ shards: 0, rows: 0 });
    fs.renameSync(`${file}.away`, file);
    expect(cli(['retry', '--redis', url, runId]).stdout).toMatch(/^4 failed shards back/);
    const s = await waitComplete(url, runId);
    const records = await checkTable(t, s, reference, 'text');
    expect(records.filter((r) => r.error)).toHaveLength(4);
    expect(s.errors.map((e) => [e.line, e.id])).toEqual([[4, undefined], [41, 'no-text'], [42, 'num'], [78, undefined]]);
    // The ledger is in the manifest table too (so a shard recorded from there keeps its bad rows).
    const ledger = (await pg.query(`SELECT ledger FROM ${t}_shards WHERE run_id = $1 AND shard = 1`, [runId])).rows[0].ledger as { line: number }[];
    expect(ledger.map((e) => e.line)).toEqual([41, 42]);
    const st = cli(['status', '--redis', url, runId]);
    expect(st.code).toBe(0);
    expect(st.stdout).toContain(`PostgreSQL ${pgUrl}?table=${t}: 100 rows (4 error rows) in 4 shards committed to ${t} (manifest: ${t}_shards)`);
    a.proc.kill('SIGTERM');
    expect(await a.exited).toBe(0);
  }, 150_000);

  it('resubmitting is idempotent (nothing queued again, the table untouched); another run shares the table, keyed by run id; CSV + classification equal attnode run', async () => {
    const rows = ['id,text', ...Array.from({ length: 60 }, (_, i) => `c${i},"the cat, number ${i}, sat on the mat"`)];
    const { file, reference } = input('csv', rows, CLASSIFY, 'csv');
    const { file: f2, reference: ref2 } = input('second', textRows(40));
    const qn = queue();
    const t = table();
    const runId = submit(qn, file, t, ['--shard-size', '16'], ['--model', CLASSIFY]);
    expect(submit(qn, file, t, ['--shard-size', '16'], ['--model', CLASSIFY])).toBe(runId); // before any worker: the same jobs
    const second = submit(qn, f2, t, ['--shard-size', '16']);
    const a = spawnWorker(qn);
    const s = await waitComplete(url, runId);
    const s2 = await waitComplete(url, second);
    const records = await checkTable(t, s, reference, 'text');
    expect(records[0]).toMatchObject({ line: 2, id: 'c0' });
    expect(typeof records[0]!.label).toBe('string');
    await checkTable(t, s2, ref2, 'text');
    const snapshot = async (): Promise<unknown[]> => (await pg.query(`SELECT line, xmin::text FROM ${t} ORDER BY run_id, line`)).rows;
    const before = await snapshot();
    const again = await jobs.submit({ redis: url, queue: qn, model: CLASSIFY, input: file, output: out(t), shardSize: 16, batchSize: 16 });
    expect(again).toMatchObject({ runId, shards: 4, rows: 60, added: 0, committed: 4 });
    await sleep(500);
    expect(await snapshot()).toEqual(before); // no row rewritten (same transaction ids)
    a.proc.kill('SIGTERM');
    expect(await a.exited).toBe(0);
  }, 150_000);

  it('binary COPY round trip: awkward strings, non-finite floats, NULL elements, 2-D and empty arrays, jsonb come back as written', async () => {
    const o = parsePgOutput(out(table()));
    const client = await connectPg(o);
    try {
      const recs: Record<string, unknown>[] = [
        { line: 1, id: 'a\tb\\c\nd\re\0f — ✓ 🙂', embedding: [0.5, Math.fround(-0.1), NaN, Infinity, -Infinity, null, -0] },
        { line: 2, id: 7, length: 2, pooled: [1.25], embeddings: [[1, 2], [3, 4]], note: 'x\0y' },
        { line: 3, id: { k: [1] }, label: 'POS\tneg', score: 0.1 },
        { line: 4, error: 'bad\nrow', embedding: [] },
        { line: 2 ** 40 },
      ];
      const stage = await PgStage.open(client);
      await stage.write(recs.slice(0, 2));
      await stage.write(recs.slice(2));
      expect(await stage.finish()).toMatch(/^[0-9a-f]{64}$/);
      const rows = (await client.query(`SELECT line::float8 AS line, row_id, embedding::float8[]::text AS embedding, token_embeddings::text AS t, label,
        score, error, extra FROM pg_temp.attnode_stage ORDER BY line`)).rows;
      expect(rows).toEqual([
        { line: 1, row_id: 'a\tb\\c\nd\re\uFFFDf — ✓ 🙂', embedding: `{0.5,${Math.fround(-0.1)},NaN,Infinity,-Infinity,NULL,-0}`, t: null, label: null, score: null, error: null, extra: null },
        { line: 2, row_id: '7', embedding: '{1.25}', t: '{{1,2},{3,4}}', label: null, score: null, error: null, extra: { length: 2, note: 'x\uFFFDy' } },
        { line: 3, row_id: '{"k":[1]}', embedding: null, t: null, label: 'POS\tneg', score: 0.1, error: null, extra: null },
        { line: 4, row_id: null, embedding: '{}', t: null, label: null, score: null, error: 'bad\nrow', extra: null },
        { line: 2 ** 40, row_id: null, embedding: null, t: null, label: null, score: null, error: null, extra: null },
      ]);
    } finally {
      await client.end();
    }
  }, 60_000);

  /** Stages `records` as shard 0 of `runId` in a session of its own. */
  async function staged(o: PgOutput, records: Record<string, unknown>[]): Promise<{ client: Client; sha256: string; bytes: number }> {
    const client = await connectPg(o);
    const stage = await PgStage.open(client);
    await stage.write(records);
    return { client, sha256: await stage.finish(), bytes: stage.bytes };
  }

  it('the commit guard: two sessions committing the same shard, at once or one late, leave one version of it, whole', async () => {
    const o = parsePgOutput(out(table()));
    const setup = await connectPg(o);
    await ensureTables(setup, o);
    const version = (v: number): Record<string, unknown>[] => Array.from({ length: 50 }, (_, i) => ({ line: i + 1, id: `r${i}`, embedding: [v, i] }));
    for (const [runId, late] of [['aaaa000000000001', false], ['aaaa000000000002', true]] as const) {
      const a = await staged(o, version(1));
      const b = await staged(o, version(2));
      const commit = (x: { client: Client; sha256: string; bytes: number }): ReturnType<typeof commitStaged> =>
        commitStaged(x.client, o, runId, 0, { rows: 50, errorRows: 0, bytes: x.bytes, sha256: x.sha256 }, []);
      // At once: the second insert of the manifest row waits for the first's transaction, then finds it.
      const verdicts = late ? [await commit(a), await commit(b)] : await Promise.all([commit(a), commit(b)]);
      expect(verdicts.map((v) => v.kind).sort()).toEqual(['committed', 'exists']);
      const winner = verdicts[0]!.kind === 'committed' ? a : b;
      const loser = verdicts.find((v) => v.kind === 'exists') as { kind: 'exists'; row: { sha256: string; rows: number } };
      expect(loser.row).toMatchObject({ sha256: winner.sha256, rows: 50 });
      const rows = (await setup.query(`SELECT line, embedding FROM ${o.table} WHERE run_id = $1 ORDER BY line`, [runId])).rows as { embedding: number[] }[];
      expect(rows).toHaveLength(50);
      const v = rows[0]!.embedding[0];
      expect(rows.every((r) => r.embedding[0] === v)).toBe(true); // one version, never a mix
      expect(v).toBe(winner === a ? 1 : 2);
      expect(await committedShard(setup, o, runId, 0)).toMatchObject({ rows: 50, sha256: winner.sha256 });
      await Promise.all([a.client.end(), b.client.end()]);
    }
    await setup.end();
  }, 60_000);

  it('the table dropped under a run: its shards fail with the server\'s reason, the worker lives on; resubmit recreates the table and retry completes the run', async () => {
    const { file, reference } = input('dropped', textRows(32));
    const qn = queue();
    const t = table();
    const runId = submit(qn, file, t, ['--shard-size', '16', '--attempts', '1']);
    await pg.query(`DROP TABLE ${t}, ${t}_shards`);
    const a = spawnWorker(qn);
    const stalled = await waitFor('the shards to fail', async () => {
      const s = await jobs.status({ redis: url, runId });
      return s.state === 'stalled' ? s : null;
    });
    expect(stalled.failedShards.map((f) => f.reason)).toEqual([0, 1].map(() => expect.stringMatching(new RegExp(`relation "${t}_shards" does not exist`))));
    expect(stalled.postgres).toMatchObject({ shards: null, error: expect.stringMatching(/does not exist/) });
    expect(a.proc.exitCode).toBeNull();
    expect(await metric(a, 'shards_failed')).toBe(2);
    expect(submit(qn, file, t, ['--shard-size', '16', '--attempts', '1'])).toBe(runId); // creates the tables again
    expect(cli(['retry', '--redis', url, runId]).stdout).toMatch(/^2 failed shards back/);
    await checkTable(t, await waitComplete(url, runId), reference, 'text');
    a.proc.kill('SIGTERM');
    expect(await a.exited).toBe(0);
  }, 150_000);

  it('bad URL, unreachable server, incompatible table: clear errors naming the argument; the process survives', async () => {
    const { file } = input('bad', textRows(8));
    const qn = queue();
    const noTable = cli(['submit', '--redis', url, '--queue', qn, '--model', EMBED, '--input', file, '--output', `${pgUrl.replace('@', ':hunter2@')}`]);
    expect(noTable.code).toBe(1);
    expect(noTable.stderr).toMatch(/output must name the target table with \?table=NAME/);
    expect(noTable.stderr).not.toContain('hunter2');
    const closed = await freePort();
    await expect(jobs.submit({ redis: url, queue: qn, model: EMBED, input: file, output: `postgres://u:hunter2@127.0.0.1:${closed}/db?table=x` }))
      .rejects.toThrow(new RegExp(`^output postgres://u:\\*\\*\\*@127\\.0\\.0\\.1:${closed}/db\\?table=x: cannot connect to PostgreSQL: .*ECONNREFUSED`));
    const missingDb = cli(['submit', '--redis', url, '--queue', qn, '--model', EMBED, '--input', file, '--output', `${pgUrl.replace(/\/[^/]*$/, '/nosuchdb')}?table=x`]);
    expect(missingDb.code).toBe(1);
    expect(missingDb.stderr).toMatch(/cannot connect to PostgreSQL: database "nosuchdb" does not exist/);
    const t = table();
    await pg.query(`CREATE TABLE ${t} (run_id text, line integer, embedding text)`);
    await expect(jobs.submit({ redis: url, queue: qn, model: EMBED, input: file, output: out(t) })).rejects.toThrow(new RegExp(
      `^output .*table=${t}: table ${t} exists with an incompatible schema: column line is integer, expected bigint; no column row_id \\(text\\); ` +
      `column embedding is text, expected real\\[\\]; .*no primary key or unique index on exactly \\(run_id, line\\)`));
    const t2 = table();
    await pg.query(`CREATE TABLE ${t2} (run_id text, line bigint, row_id text, embedding real[], token_embeddings real[], label text, score double precision,
      error text, extra jsonb, tenant text NOT NULL, PRIMARY KEY (run_id, line))`);
    await expect(jobs.submit({ redis: url, queue: qn, model: EMBED, input: file, output: out(t2) }))
      .rejects.toThrow(/column tenant is NOT NULL without a default/);
    // Nothing was submitted for the refused outputs, and nothing created in the database for them.
    expect((await pg.query(`SELECT to_regclass('${t}_shards') AS r`)).rows[0].r).toBeNull();
  }, 120_000);
});
