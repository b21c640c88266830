/**
 * The PostgreSQL sink's addressing and SQL, without the driver: a run's output
 * is a PostgreSQL URL naming the target table (`postgres://user@host:5432/db?table=embeddings`),
 * the table and its manifest (`<table>_shards`) have a fixed schema, and a shard's records become binary COPY tuples.
 * The driver side (connecting, staging, the commit) is pg-sink.ts, loaded only by runs that write to PostgreSQL.
 */

/** Where a run writes when its output is a PostgreSQL URL. */
export interface PgOutput {
  /** The connection string the driver gets: the URL without `table`. */
  connectionString: string;
  /** The table's schema, when the URL named one (`table=schema.name`); else the connection's search_path decides. */
  schema: string | null;
  table: string;
  /** The URL with any password masked: what logs, status and error messages show. */
  display: string;
}

const PG_SCHEME = /^postgres(?:ql)?:\/\//i;
const IDENT = /^[a-z_][a-z0-9_]*$/;
/** PostgreSQL truncates identifiers past 63 bytes; the manifest table appends `_shards`. */
const MAX_TABLE = 63 - '_shards'.length;

/** Whether a run's output names a PostgreSQL table (a postgres:// or postgresql:// URL) rather than a directory. */
export function isPostgresOutput(output: unknown): output is string {
  return typeof output === 'string' && PG_SCHEME.test(output);
}

/** A URL with its password (if any) replaced by `***`. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:@/?#]*:)[^@/?#]*@/i, '$1***@');
}

/**
 * Parses a PostgreSQL output URL. `table` is required (`[schema.]name`, lower case letters, digits and `_`);
 * every other query parameter (sslmode, application_name, host=/socket/dir, ...) goes to the driver as it is.
 * @throws TypeError naming `what` (the argument), the expected form and the value given (password masked).
 */
export function parsePgOutput(output: string, what = '--output'): PgOutput {
  const shown = JSON.stringify(redactUrl(output));
  const form = 'a PostgreSQL URL like postgres://user@127.0.0.1:5432/db?table=embeddings';
  let u: URL;
  try {
    u = new URL(output);
  } catch {
    throw new TypeError(`${what} must be ${form}, got ${shown} (not a URL)`);
  }
  if (!/^postgres(?:ql)?:$/i.test(u.protocol)) throw new TypeError(`${what} must be ${form}, got ${shown}`);
  if (!u.hostname && !u.searchParams.get('host')) throw new TypeError(`${what} must name the server's host (or ?host=/socket/dir), got ${shown}`);
  if (u.port !== '' && !(Number(u.port) >= 1 && Number(u.port) <= 65535)) throw new TypeError(`${what}: port must be 1-65535, got ${shown}`);
  const table = u.searchParams.get('table');
  if (table === null || table === '') throw new TypeError(`${what} must name the target table with ?table=NAME (or ?table=schema.name), got ${shown}`);
  const parts = table.split('.');
  const name = parts[parts.length - 1]!;
  if (parts.length > 2 || !parts.every((p) => IDENT.test(p)) || name.length > MAX_TABLE) {
    throw new TypeError(`${what}: table must be [schema.]name of lower-case letters, digits and _ (at most ${MAX_TABLE} characters), got ${JSON.stringify(table)}`);
  }
  u.searchParams.delete('table');
  return { connectionString: u.toString(), schema: parts.length === 2 ? parts[0]! : null, table: name, display: redactUrl(output) };
}

/** A double-quoted SQL identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** The target table's name as SQL (`"schema"."table"` or `"table"`). */
export function targetSql(o: PgOutput): string {
  return o.schema === null ? quoteIdent(o.table) : `${quoteIdent(o.schema)}.${quoteIdent(o.table)}`;
}

/** The manifest table's name as SQL (`<table>_shards`, same schema). */
export function shardsSql(o: PgOutput): string {
  const t = `${o.table}_shards`;
  return o.schema === null ? quoteIdent(t) : `${quoteIdent(o.schema)}.${quoteIdent(t)}`;
}

/** The target table as people write it (`schema.table` or `table`). */
export function tableName(o: PgOutput): string {
  return o.schema === null ? o.table : `${o.schema}.${o.table}`;
}

/**
 * The target table's columns (name, SQL type, `format_type` spelling). A row is keyed by (run_id, line): the line
 * is the row's position in the input, unique in a run whatever the rows' own ids are (absent, repeated, or not
 * strings); the input's `id` is kept in row_id.
 */
export const TARGET_COLUMNS: readonly { name: string; type: string }[] = [
  { name: 'run_id', type: 'text' },
  { name: 'line', type: 'bigint' },
  { name: 'row_id', type: 'text' },
  { name: 'embedding', type: 'real[]' },
  { name: 'token_embeddings', type: 'real[]' },
  { name: 'label', type: 'text' },
  { name: 'score', type: 'double precision' },
  { name: 'error', type: 'text' },
  { name: 'extra', type: 'jsonb' },
];

/** The manifest table's columns: one row per committed shard. */
export const SHARDS_COLUMNS: readonly { name: string; type: string }[] = [
  { name: 'run_id', type: 'text' },
  { name: 'shard', type: 'integer' },
  { name: 'rows', type: 'integer' },
  { name: 'error_rows', type: 'integer' },
  { name: 'bytes', type: 'bigint' },
  { name: 'sha256', type: 'text' },
  { name: 'ledger', type: 'jsonb' },
  { name: 'committed_at', type: 'timestamp with time zone' },
];

/** The key of each table (an ON CONFLICT target needs a unique index on exactly these columns). */
export const TARGET_KEY = ['run_id', 'line'] as const;
export const SHARDS_KEY = ['run_id', 'shard'] as const;

/** CREATE TABLE IF NOT EXISTS for the target and its manifest. */
export function createTablesSql(o: PgOutput): string[] {
  return [
    `CREATE TABLE IF NOT EXISTS ${targetSql(o)} (
  run_id text NOT NULL,
  line bigint NOT NULL,
  row_id text,
  embedding real[],
  token_embeddings real[],
  label text,
  score double precision,
  error text,
  extra jsonb,
  PRIMARY KEY (run_id, line)
)`,
    `CREATE TABLE IF NOT EXISTS ${shardsSql(o)} (
  run_id text NOT NULL,
  shard integer NOT NULL,
  rows integer NOT NULL,
  error_rows integer NOT NULL,
  bytes bigint NOT NULL,
  sha256 text NOT NULL,
  ledger jsonb,
  committed_at timestamp with time zone NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, shard)
)`,
  ];
}

/** The columns a shard is staged in (the target's, less run_id), in COPY order. */
export const STAGE_COLUMNS = TARGET_COLUMNS.filter((c) => c.name !== 'run_id');

/** The session's staging table: temporary, so a worker that dies takes its staged rows with it. */
export const STAGE_TABLE = 'pg_temp.attnode_stage';
export const CREATE_STAGE_SQL = `CREATE TEMP TABLE IF NOT EXISTS attnode_stage (${STAGE_COLUMNS.map((c) => `${c.name} ${c.type}`).join(', ')})`;
/** Binary COPY: the vectors go as float4 bits, neither printed by the worker nor parsed by the server. */
export const COPY_STAGE_SQL = `COPY ${STAGE_TABLE} (${STAGE_COLUMNS.map((c) => c.name).join(', ')}) FROM STDIN (FORMAT binary)`;

/**
 * The commit, one statement (atomic, and no transaction for a frozen client to hold open): insert the shard's
 * manifest row unless one exists; only if it was inserted, upsert the staged rows into the target. Params: run id,
 * shard, rows, error rows, bytes, sha256, ledger. Returns `committed` (1 or 0) and `written` rows.
 */
export function commitSql(o: PgOutput): string {
  const cols = STAGE_COLUMNS.map((c) => c.name);
  return `WITH m AS (
  INSERT INTO ${shardsSql(o)} (run_id, shard, rows, error_rows, bytes, sha256, ledger)
  VALUES ($1::text, $2::integer, $3::integer, $4::integer, $5::bigint, $6::text, $7::jsonb)
  ON CONFLICT (run_id, shard) DO NOTHING
  RETURNING 1
), r AS (
  INSERT INTO ${targetSql(o)} (run_id, ${cols.join(', ')})
  SELECT $1::text, ${cols.join(', ')} FROM ${STAGE_TABLE} WHERE EXISTS (SELECT 1 FROM m)
  ON CONFLICT (run_id, line) DO UPDATE SET ${cols.filter((c) => c !== 'line').map((c) => `${c} = EXCLUDED.${c}`).join(', ')}
  RETURNING 1
)
SELECT (SELECT count(*) FROM m)::integer AS committed, (SELECT count(*) FROM r)::integer AS written`;
}

/** The output record fields that have their own columns; any other field goes to `extra`. */
const COLUMN_FIELDS = new Set(['line', 'id', 'embedding', 'pooled', 'embeddings', 'label', 'score', 'error']);
const FLOAT4_OID = 700;

/** Binary COPY's header (signature, flags, no extension) and trailer. */
export const COPY_HEADER = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);
export const COPY_TRAILER = Buffer.from([0xff, 0xff]);

/** PostgreSQL's text cannot hold NUL: it becomes U+FFFD. */
const noNul = (s: string): string => (s.includes('\0') ? s.replace(/\0/g, '\uFFFD') : s);
const jsonNoNul = (_k: string, v: unknown): unknown => (typeof v === 'string' ? noNul(v) : v);

/** A growing buffer of big-endian binary COPY fields. */
class Tuples {
  buf = Buffer.allocUnsafe(1 << 16);
  off = 0;
  ensure(n: number): void {
    if (this.off + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.off + n));
    this.buf.copy(next, 0, 0, this.off);
    this.buf = next;
  }
  i16(v: number): void {
    this.ensure(2);
    this.off = this.buf.writeInt16BE(v, this.off);
  }
  i32(v: number): void {
    this.ensure(4);
    this.off = this.buf.writeInt32BE(v, this.off);
  }
  null(): void {
    this.i32(-1);
  }
  int8(v: number): void {
    this.ensure(12);
    this.off = this.buf.writeInt32BE(8, this.off);
    this.off = this.buf.writeBigInt64BE(BigInt(v), this.off);
  }
  float8(v: number): void {
    this.ensure(12);
    this.off = this.buf.writeInt32BE(8, this.off);
    this.off = this.buf.writeDoubleBE(v, this.off);
  }
  /** A text (or, with a version byte, jsonb) field. */
  text(s: string, prefix?: number): void {
    const n = Buffer.byteLength(s) + (prefix === undefined ? 0 : 1);
    this.ensure(4 + n);
    this.off = this.buf.writeInt32BE(n, this.off);
    if (prefix !== undefined) this.off = this.buf.writeUInt8(prefix, this.off);
    this.off += this.buf.write(s, this.off, 'utf8');
  }
  /** A real[] field from numbers (1-D) or equal-length rows of numbers (2-D); non-numbers are NULL elements. */
  float4Array(v: unknown, what: string): void {
    if (!Array.isArray(v)) throw new TypeError(`output field ${what} is not an array`);
    const rows = v.length > 0 && Array.isArray(v[0]) ? (v as unknown[][]) : null;
    const inner = rows ? rows[0]!.length : v.length;
    if (rows && rows.some((r) => !Array.isArray(r) || r.length !== inner)) throw new TypeError(`output field ${what} is not a rectangular array`);
    const count = rows ? rows.length * inner : v.length;
    const ndim = count === 0 ? 0 : rows ? 2 : 1;
    const size = 12 + 8 * ndim + 8 * count;
    this.ensure(4 + size);
    const b = this.buf;
    let o = b.writeInt32BE(size, this.off);
    o = b.writeInt32BE(ndim, o);
    const flagsAt = o;
    o = b.writeInt32BE(0, o);
    o = b.writeInt32BE(FLOAT4_OID, o);
    if (ndim === 2) {
      o = b.writeInt32BE(rows!.length, o);
      o = b.writeInt32BE(1, o);
    }
    if (ndim > 0) {
      o = b.writeInt32BE(inner, o);
      o = b.writeInt32BE(1, o);
    }
    let nulls = false;
    const put = (x: unknown): void => {
      if (typeof x === 'number') {
        o = b.writeInt32BE(4, o);
        o = b.writeFloatBE(x, o);
      } else {
        o = b.writeInt32BE(-1, o);
        nulls = true;
      }
    };
    if (rows) for (const r of rows) for (const x of r) put(x);
    else for (const x of v) put(x);
    if (nulls) b.writeInt32BE(1, flagsAt);
    // A NULL element took 4 bytes where a number takes 8: the field is shorter than sized.
    if (nulls) b.writeInt32BE(o - this.off - 4, this.off);
    this.off = o;
  }
}

/**
 * Output records as binary COPY tuples, columns in {@link STAGE_COLUMNS} order: line, row_id (a string id as it
 * is, any other id as JSON text), embedding (`embedding`, or a token row's `pooled`), token_embeddings (a token
 * row's `embeddings`, 2-D), label, score, error, extra (the record's other fields as jsonb). Without
 * {@link COPY_HEADER} and {@link COPY_TRAILER}, which go once around a whole COPY.
 */
export function copyTuples(records: Record<string, unknown>[]): Buffer {
  const t = new Tuples();
  for (const rec of records) {
    const line = rec.line;
    if (typeof line !== 'number' || !Number.isInteger(line)) throw new TypeError(`output record without an integer line: ${JSON.stringify(rec).slice(0, 80)}`);
    const id = rec.id;
    const vec = rec.embedding ?? rec.pooled;
    let extra: Record<string, unknown> | null = null;
    for (const k of Object.keys(rec)) if (!COLUMN_FIELDS.has(k)) (extra ??= {})[k] = rec[k];
    t.i16(STAGE_COLUMNS.length);
    t.int8(line);
    if (id === undefined || id === null) t.null();
    else t.text(noNul(typeof id === 'string' ? id : JSON.stringify(id)));
    if (vec === undefined || vec === null) t.null();
    else t.float4Array(vec, 'embedding');
    if (rec.embeddings === undefined || rec.embeddings === null) t.null();
    else t.float4Array(rec.embeddings, 'embeddings');
    if (typeof rec.label === 'string') t.text(noNul(rec.label));
    else t.null();
    if (typeof rec.score === 'number') t.float8(rec.score);
    else t.null();
    if (typeof rec.error === 'string') t.text(noNul(rec.error));
    else t.null();
    if (extra === null) t.null();
    else t.text(JSON.stringify(extra, jsonNoNul), 1);
  }
  return t.buf.subarray(0, t.off);
}
