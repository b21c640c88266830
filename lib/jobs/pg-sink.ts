/**
 * The PostgreSQL sink (driver side): `pg` connections, the target and manifest
 * tables (created if absent, checked when present), a shard's rows streamed
 * with COPY into the session's temporary staging table, and the one-statement
 * commit (pg-output.ts's {@link commitSql}). See docs/JOBS.md for why the
 * commit is guarded the way it is.
 */
import { createHash } from 'node:crypto';
import { finished } from 'node:stream/promises';
import { Client } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import {
  COPY_STAGE_SQL, CREATE_STAGE_SQL, SHARDS_COLUMNS, SHARDS_KEY, STAGE_TABLE, TARGET_COLUMNS, TARGET_KEY, COPY_HEADER, COPY_TRAILER, commitSql, copyTuples, createTablesSql,
  shardsSql, tableName, targetSql, type PgOutput,
} from './pg-output';
import type { RowError } from './rows';

/** A shard as the manifest table records it. */
export interface PgShardRow {
  rows: number;
  errorRows: number;
  bytes: number;
  sha256: string;
  ledger: RowError[];
}

/**
 * Opens a connection. @throws Error naming `what` (the argument) and the server (password masked) when it cannot
 * connect: refused, unknown host, authentication, no such database, or no answer within `timeoutMs`.
 */
export async function connectPg(o: PgOutput, what = '--output', timeoutMs = 10_000): Promise<Client> {
  const client = new Client({ connectionString: o.connectionString, connectionTimeoutMillis: timeoutMs, application_name: 'attnode' });
  // A connection that breaks while idle reports here instead of crashing the process; its next query fails.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (e) {
    await client.end().catch(() => {});
    throw new Error(`${what} ${o.display}: cannot connect to PostgreSQL: ${(e as Error).message || String(e)}`);
  }
  return client;
}

/** Unique indexes (no predicate) of a table, each as its sorted column names. */
async function uniqueKeys(client: Client, table: string): Promise<string[][]> {
  const r = await client.query<{ cols: string[] }>(
    `SELECT array_agg(a.attname::text ORDER BY a.attname) AS cols
       FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
      WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indpred IS NULL
      GROUP BY i.indexrelid`, [table]);
  return r.rows.map((x) => x.cols);
}

/** What is wrong with an existing table against the columns and key the sink writes (empty when compatible). */
async function schemaProblems(client: Client, table: string, columns: readonly { name: string; type: string }[], key: readonly string[]): Promise<string[]> {
  const r = await client.query<{ name: string; type: string; notnull: boolean; hasdef: boolean }>(
    `SELECT attname AS name, format_type(atttypid, atttypmod) AS type, attnotnull AS notnull, atthasdef AS hasdef
       FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`, [table]);
  const have = new Map(r.rows.map((c) => [c.name, c]));
  const problems: string[] = [];
  for (const c of columns) {
    const h = have.get(c.name);
    if (!h) problems.push(`no column ${c.name} (${c.type})`);
    else if (h.type !== c.type) problems.push(`column ${c.name} is ${h.type}, expected ${c.type}`);
  }
  const ours = new Set(columns.map((c) => c.name));
  for (const h of r.rows) if (!ours.has(h.name) && h.notnull && !h.hasdef) problems.push(`column ${h.name} is NOT NULL without a default (the sink does not write it)`);
  const want = [...key].sort().join(',');
  if (!(await uniqueKeys(client, table)).some((k) => k.join(',') === want)) problems.push(`no primary key or unique index on exactly (${key.join(', ')})`);
  return problems;
}

/**
 * Checks the target table and its `<table>_shards` manifest where they exist, then creates those that do not.
 * @throws TypeError naming `what`, the table and each incompatibility (a column's type, a missing column or key),
 * before anything is created.
 */
export async function ensureTables(client: Client, o: PgOutput, what = '--output'): Promise<void> {
  const tables: [string, string, readonly { name: string; type: string }[], readonly string[]][] = [
    [targetSql(o), tableName(o), TARGET_COLUMNS, TARGET_KEY],
    [shardsSql(o), `${tableName(o)}_shards`, SHARDS_COLUMNS, SHARDS_KEY],
  ];
  for (const [sql, name, columns, key] of tables) {
    if ((await client.query<{ r: string | null }>('SELECT to_regclass($1)::text AS r', [sql])).rows[0]!.r === null) continue;
    const problems = await schemaProblems(client, sql, columns, key);
    if (problems.length) {
      throw new TypeError(`${what} ${o.display}: table ${name} exists with an incompatible schema: ${problems.join('; ')}. ` +
        'Use another ?table= (the sink creates it) or see docs/JOBS.md for the schema it expects.');
    }
  }
  for (const sql of createTablesSql(o)) {
    try {
      await client.query(sql);
    } catch (e) {
      // Two submits creating the same table at once: the loser sees a duplicate type/relation; the table exists.
      const code = (e as { code?: string }).code;
      if (code !== '23505' && code !== '42P07') throw new Error(`${what} ${o.display}: cannot create the table: ${(e as Error).message}`);
    }
  }
}

/** A shard's manifest row, or null when the shard is not committed. */
export async function committedShard(client: Client, o: PgOutput, runId: string, shard: number): Promise<PgShardRow | null> {
  const r = await client.query<{ rows: number; error_rows: number; bytes: string; sha256: string; ledger: RowError[] | null }>(
    `SELECT rows, error_rows, bytes, sha256, ledger FROM ${shardsSql(o)} WHERE run_id = $1 AND shard = $2`, [runId, shard]);
  const row = r.rows[0];
  return row ? { rows: row.rows, errorRows: row.error_rows, bytes: Number(row.bytes), sha256: row.sha256, ledger: row.ledger ?? [] } : null;
}

/**
 * A shard's rows on their way into the session's staging table: binary COPY, hashed as it is written (the
 * manifest's checksum), with the stream's backpressure.
 */
export class PgStage {
  readonly #hash = createHash('sha256');
  readonly #stream: ReturnType<typeof copyFrom>;
  #failed: Error | null = null;
  bytes = 0;
  rows = 0;

  private constructor(stream: ReturnType<typeof copyFrom>) {
    this.#stream = stream;
    stream.on('error', (e: Error) => (this.#failed ??= e));
  }

  /** Empties the staging table (creating it on the session's first shard) and starts the COPY. */
  static async open(client: Client): Promise<PgStage> {
    await client.query(CREATE_STAGE_SQL);
    await client.query(`TRUNCATE ${STAGE_TABLE}`);
    const stage = new PgStage(client.query(copyFrom(COPY_STAGE_SQL)));
    await stage.#send(COPY_HEADER);
    return stage;
  }

  async #send(buf: Buffer): Promise<void> {
    if (this.#failed) throw this.#failed;
    this.#hash.update(buf);
    this.bytes += buf.length;
    if (this.#stream.write(buf)) return;
    await new Promise<void>((resolve, reject) => {
      const done = (e?: Error): void => {
        this.#stream.off('drain', done).off('error', done);
        if (e) reject(e);
        else resolve();
      };
      this.#stream.on('drain', done).on('error', done);
    });
  }

  /** Appends records (waits while the server is behind). */
  async write(records: Record<string, unknown>[]): Promise<void> {
    if (!records.length) return;
    // copyTuples reuses no memory between calls: the stream may still hold the previous batch's buffer.
    await this.#send(copyTuples(records));
    this.rows += records.length;
  }

  /** Ends the COPY; resolves with the SHA-256 (hex) of the COPY bytes once the server has every row. */
  async finish(): Promise<string> {
    await this.#send(COPY_TRAILER);
    this.#stream.end();
    await finished(this.#stream);
    if (this.#stream.rowCount !== this.rows) throw new Error(`COPY into the staging table took ${this.#stream.rowCount} rows, ${this.rows} were sent`);
    return this.#hash.digest('hex');
  }

  /** Abandons the COPY (the server rolls it back). */
  abort(): void {
    this.#stream.destroy();
  }
}

/**
 * Commits the staged shard (see {@link commitSql}): 'committed' when this call inserted the manifest row and the
 * rows, or the manifest row another attempt committed first (nothing written then).
 */
export async function commitStaged(
  client: Client, o: PgOutput, runId: string, shard: number, entry: Omit<PgShardRow, 'ledger'>, ledger: RowError[],
): Promise<{ kind: 'committed' } | { kind: 'exists'; row: PgShardRow }> {
  const r = await client.query<{ committed: number; written: number }>(commitSql(o),
    [runId, shard, entry.rows, entry.errorRows, entry.bytes, entry.sha256, ledger.length ? JSON.stringify(ledger) : null]);
  const { committed, written } = r.rows[0]!;
  if (committed === 1) {
    if (written !== entry.rows) throw new Error(`shard ${shard}: ${written} rows upserted, ${entry.rows} staged`);
    return { kind: 'committed' };
  }
  const row = await committedShard(client, o, runId, shard);
  if (!row) throw new Error(`shard ${shard}: the commit found a manifest row in ${tableName(o)}_shards that is gone now`);
  return { kind: 'exists', row };
}

/** What the manifest table holds for a run: committed shards, their rows and error rows. */
export async function runSummary(o: PgOutput, runId: string, timeoutMs = 5_000): Promise<{ shards: number; rows: number; errorRows: number }> {
  const client = await connectPg(o, 'the run\'s output', timeoutMs);
  try {
    const r = await client.query<{ shards: number; rows: string | null; error_rows: string | null }>(
      `SELECT count(*)::integer AS shards, sum(rows) AS rows, sum(error_rows) AS error_rows FROM ${shardsSql(o)} WHERE run_id = $1`, [runId]);
    const row = r.rows[0]!;
    return { shards: row.shards, rows: Number(row.rows ?? 0), errorRows: Number(row.error_rows ?? 0) };
  } finally {
    await client.end().catch(() => {});
  }
}
