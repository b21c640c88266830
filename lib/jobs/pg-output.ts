/**
 * The PostgreSQL sink's addressing and SQL, without the driver: a run's output
 * is a PostgreSQL URL naming the target table (`postgres://user@host:5432/db?table=embeddings`),
 * the table and its manifest (`<table>_shards`) have a fixed schema, and a shard's records become COPY text rows.
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
export const COPY_STAGE_SQL = `COPY ${STAGE_TABLE} (${STAGE_COLUMNS.map((c) => c.name).join(', ')}) FROM STDIN`;

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
const NULL = '\\N';

/** A text value for COPY's text format: backslash, tab, newline and CR escaped; NUL (PostgreSQL's text cannot hold it) as U+FFFD. */
function copyText(s: string): string {
  return s.replace(/[\\\t\n\r\0]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\uFFFD'));
}

/** A float as PostgreSQL reads it: the shortest round-trip decimal (as JSON prints it), NaN and infinities by name. */
function num(x: number): string {
  return Number.isFinite(x) ? String(x) : Number.isNaN(x) ? 'NaN' : x > 0 ? 'Infinity' : '-Infinity';
}

/** An array literal (`{1,2}` or `{{1,2},{3,4}}`) of numbers. */
function arrayLiteral(v: unknown, what: string): string {
  if (!Array.isArray(v)) throw new TypeError(`output field ${what} is not an array`);
  let s = '{';
  for (let i = 0; i < v.length; i++) {
    if (i) s += ',';
    const x: unknown = v[i];
    s += Array.isArray(x) ? arrayLiteral(x, what) : typeof x === 'number' ? num(x) : 'NULL';
  }
  return s + '}';
}

const jsonNoNul = (_k: string, v: unknown): unknown => (typeof v === 'string' ? v.replace(/\0/g, '\uFFFD') : v);

/**
 * One output record as a COPY text row (with its newline), columns in {@link STAGE_COLUMNS} order: line, row_id
 * (a string id as it is, any other id as JSON text), embedding (`embedding`, or a token row's `pooled`),
 * token_embeddings (a token row's `embeddings`), label, score, error, extra (the record's other fields as jsonb).
 */
export function copyRow(rec: Record<string, unknown>): string {
  const line = rec.line;
  if (typeof line !== 'number' || !Number.isInteger(line)) throw new TypeError(`output record without an integer line: ${JSON.stringify(rec).slice(0, 80)}`);
  const id = rec.id;
  const vec = rec.embedding ?? rec.pooled;
  let extra: Record<string, unknown> | null = null;
  for (const k of Object.keys(rec)) if (!COLUMN_FIELDS.has(k)) (extra ??= {})[k] = rec[k];
  return [
    String(line),
    id === undefined || id === null ? NULL : copyText(typeof id === 'string' ? id : JSON.stringify(id)),
    vec === undefined ? NULL : arrayLiteral(vec, 'embedding'),
    rec.embeddings === undefined ? NULL : arrayLiteral(rec.embeddings, 'embeddings'),
    typeof rec.label === 'string' ? copyText(rec.label) : NULL,
    typeof rec.score === 'number' ? num(rec.score) : NULL,
    typeof rec.error === 'string' ? copyText(rec.error) : NULL,
    extra === null ? NULL : copyText(JSON.stringify(extra, jsonNoNul)),
  ].join('\t') + '\n';
}
