/**
 * What a run keeps in Redis besides BullMQ's jobs: its spec and counters (a
 * hash), the committed shards (a hash shard → manifest entry, the source of
 * truth for "this shard is in the output") and the error ledger (a hash
 * shard → its bad rows). Keys live under `attnode:run:<id>`.
 */
import { Redis } from 'ioredis';
import { redactUrl } from './pg-output';
import type { InputFormat } from './readers';
import type { ModelSpec, RowError } from './rows';

export { DEFAULT_QUEUE } from './defaults';

/** A submitted run: everything a worker needs to process any of its shards. */
export interface RunSpec extends ModelSpec {
  runId: string;
  /** Absolute path of the input file (every worker must see it at this path). */
  input: string;
  format: InputFormat;
  /** CSV column names (from the header). */
  columns?: string[];
  /** Absolute path of the output directory (shared by every worker), or the PostgreSQL URL naming the table. */
  output: string;
  shardSize: number;
  batchSize: number;
  /** Shards and rows of the input: -1 while submit is still scanning it. */
  shards: number;
  rows: number;
  /** BullMQ attempts per shard and the first retry's delay (exponential backoff). */
  attempts: number;
  backoffMs: number;
  /** The input's size and mtime at submit: a worker refuses a changed file. */
  inputSize: number;
  inputMtimeMs: number;
  queue: string;
  createdAt: number;
}

/** One committed shard: its file, row count, error rows and SHA-256 of its bytes (PostgreSQL: of its binary COPY stream). */
export interface ManifestEntry {
  shard: number;
  /** The shard's file in the output directory, or the PostgreSQL table its rows went to. */
  file: string;
  rows: number;
  errors: number;
  bytes: number;
  sha256: string;
}

/** A bad row as the ledger keeps it. */
export interface LedgerEntry {
  shard: number;
  line: number;
  id?: unknown;
  reason: string;
}

export const runKey = (id: string): string => `attnode:run:${id}`;
export const committedKey = (id: string): string => `attnode:run:${id}:committed`;
export const errorsKey = (id: string): string => `attnode:run:${id}:errors`;
export const RUNS_KEY = 'attnode:runs';
/** At most this many bad rows per shard are kept in the ledger (the count is always exact). */
export const LEDGER_ROWS_PER_SHARD = 100;

/** Checks a Redis URL (redis:// or rediss://). @throws TypeError naming the argument. */
export function checkRedisUrl(url: unknown, what = '--redis'): string {
  if (typeof url !== 'string' || !/^rediss?:\/\/[^/]+/.test(url)) {
    throw new TypeError(`${what} must be a Redis URL like redis://127.0.0.1:6379, got ${JSON.stringify(url)}`);
  }
  return url;
}

/** Checks a run id (hex, as submit makes them). */
export function checkRunId(id: unknown): string {
  if (typeof id !== 'string' || !/^[0-9a-f]{8,64}$/.test(id)) throw new TypeError(`run id must be the hex id submit printed, got ${JSON.stringify(id)}`);
  return id;
}

/** ioredis options from a URL (BullMQ builds its own connections from them). */
export function redisOptions(url: string): { host: string; port: number; password?: string; username?: string; db?: number; tls?: object } {
  const u = new URL(checkRedisUrl(url));
  return {
    host: u.hostname, port: Number(u.port || 6379),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}), ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.pathname.length > 1 ? { db: Number(u.pathname.slice(1)) } : {}), ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/**
 * A connection as BullMQ wants it (`maxRetriesPerRequest: null`: commands wait
 * through a Redis restart instead of failing after a few tries).
 */
export function connect(url: string): Redis {
  return new Redis(checkRedisUrl(url), { maxRetriesPerRequest: null, lazyConnect: false });
}

/**
 * A connection for a one-shot command (submit, status, retry, cancel), once it is ready. Workers wait through a Redis
 * outage; a command fails instead.
 * @throws Error naming `what` (the argument) and the server (password masked) when Redis does not answer within
 * `timeoutMs`.
 */
export async function connectReady(url: string, timeoutMs = 5000, what = '--redis'): Promise<Redis> {
  const redis = new Redis(checkRedisUrl(url, what), { maxRetriesPerRequest: null, lazyConnect: true });
  let last: Error | null = null;
  redis.on('error', (e: Error) => (last = e));
  redis.connect().catch(() => {}); // the outcome is the 'ready' event or the timeout below
  const ready = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    redis.once('ready', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  if (ready) return redis;
  redis.disconnect();
  const why = (last as Error | null)?.message ?? `no answer within ${timeoutMs} ms`;
  throw new Error(`cannot reach Redis at ${redactUrl(url)} (${what}): ${why}`);
}

/** The file name of a shard in the output directory (zero-padded: names sort by shard up to a million shards). */
export function shardFile(shard: number): string {
  return `part-${String(shard).padStart(6, '0')}.jsonl`;
}

/** The run's spec, state and counters, or null when Redis has no such run. */
export async function readRun(redis: Redis, runId: string): Promise<{ spec: RunSpec; state: string; rowsDone: number; errorRows: number; shardsDone: number; startedAt: number | null; lastCommitAt: number | null } | null> {
  const h = await redis.hgetall(runKey(runId));
  if (!h.spec) return null;
  const num = (v: string | undefined): number | null => (v === undefined ? null : Number(v));
  return {
    spec: JSON.parse(h.spec) as RunSpec,
    state: h.state ?? 'running',
    rowsDone: num(h.rowsDone) ?? 0,
    errorRows: num(h.errorRows) ?? 0,
    shardsDone: num(h.shardsDone) ?? 0,
    startedAt: num(h.startedAt),
    lastCommitAt: num(h.lastCommitAt),
  };
}

/**
 * The commit's check-and-set, atomic in Redis: only the worker that still
 * holds the job's BullMQ lock (its token) may record the shard, and only once.
 * KEYS: lock, run, committed, errors. ARGV: token, shard, entry, rows, error rows, ledger, now.
 * Returns {'lost'} | {'cancelled'} | {'exists', entry} | {'ok', shardsDone}.
 */
const COMMIT_LUA = `
if redis.call('get', KEYS[1]) ~= ARGV[1] then return {'lost'} end
if redis.call('hget', KEYS[2], 'state') == 'cancelled' then return {'cancelled'} end
local prev = redis.call('hget', KEYS[3], ARGV[2])
if prev then return {'exists', prev} end
redis.call('hset', KEYS[3], ARGV[2], ARGV[3])
if ARGV[6] ~= '' then redis.call('hset', KEYS[4], ARGV[2], ARGV[6]) end
redis.call('hincrby', KEYS[2], 'rowsDone', ARGV[4])
redis.call('hincrby', KEYS[2], 'errorRows', ARGV[5])
redis.call('hset', KEYS[2], 'lastCommitAt', ARGV[7])
return {'ok', tostring(redis.call('hincrby', KEYS[2], 'shardsDone', 1))}
`;

/** Re-records a shard whose earlier committer died before its rename, again only under the job's lock. */
const RECOMMIT_LUA = `
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('hset', KEYS[2], ARGV[2], ARGV[3])
return 1
`;

export type CommitVerdict = { kind: 'lost' } | { kind: 'cancelled' } | { kind: 'exists'; entry: ManifestEntry } | { kind: 'ok'; shardsDone: number };

/** Records a shard as committed (see {@link COMMIT_LUA}). */
export async function recordCommit(
  redis: Redis, lockKey: string, token: string, runId: string, entry: ManifestEntry, ledger: RowError[],
): Promise<CommitVerdict> {
  const r = (await redis.eval(COMMIT_LUA, 4, lockKey, runKey(runId), committedKey(runId), errorsKey(runId),
    token, String(entry.shard), JSON.stringify(entry), String(entry.rows), String(entry.errors),
    ledger.length ? JSON.stringify(ledger.slice(0, LEDGER_ROWS_PER_SHARD)) : '', String(Date.now()))) as string[];
  if (r[0] === 'ok') return { kind: 'ok', shardsDone: Number(r[1]) };
  if (r[0] === 'exists') return { kind: 'exists', entry: JSON.parse(r[1]!) as ManifestEntry };
  return { kind: r[0] as 'lost' | 'cancelled' };
}

/** Replaces a shard's entry while holding its lock; false when the lock is gone. */
export async function rerecordCommit(redis: Redis, lockKey: string, token: string, runId: string, entry: ManifestEntry): Promise<boolean> {
  return (await redis.eval(RECOMMIT_LUA, 2, lockKey, committedKey(runId), token, String(entry.shard), JSON.stringify(entry))) === 1;
}

/** Every committed entry of a run, by shard (HSCAN: never one huge reply). */
export async function committedEntries(redis: Redis, runId: string): Promise<ManifestEntry[]> {
  const out: ManifestEntry[] = [];
  let cursor = '0';
  do {
    const [next, kv] = await redis.hscan(committedKey(runId), cursor, 'COUNT', 1000);
    for (let i = 1; i < kv.length; i += 2) out.push(JSON.parse(kv[i]!) as ManifestEntry);
    cursor = next;
  } while (cursor !== '0');
  return out.sort((a, b) => a.shard - b.shard);
}

/** The error ledger of a run (at most `limit` rows), by shard then line. */
export async function ledgerEntries(redis: Redis, runId: string, limit = Infinity): Promise<LedgerEntry[]> {
  const out: LedgerEntry[] = [];
  let cursor = '0';
  do {
    const [next, kv] = await redis.hscan(errorsKey(runId), cursor, 'COUNT', 1000);
    for (let i = 1; i < kv.length; i += 2) {
      const shard = Number(kv[i - 1]);
      for (const e of JSON.parse(kv[i]!) as Omit<LedgerEntry, 'shard'>[]) out.push({ shard, ...e });
    }
    cursor = next;
  } while (cursor !== '0');
  out.sort((a, b) => a.shard - b.shard || a.line - b.line);
  return out.slice(0, limit);
}
