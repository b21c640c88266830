/**
 * Distributed batch runs (lib/jobs, `attnode submit | worker | status | retry | cancel`) against a real
 * redis-server and real worker processes spawned through the CLI. In every fault (a worker killed with -9 mid-shard,
 * a worker frozen past its lock and resumed, Redis restarted mid-run, poison rows and shards, resubmits), every
 * input row must be in the output exactly once and equal `attnode run` on the same input.
 *
 * Redis: ATTNODE_TEST_REDIS_URL (.ci/run starts one), else a private redis-server this file starts on a free
 * loopback port; the restart test always uses its own private server (it stops and restarts it).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as jobs from '../lib/jobs';
import {
  CLASSIFY, EMBED, REDIS_BIN, RedisServer, cli, compareToReference, freePort, metric, sleep, startWorker, textRows, tokenRows, waitComplete, waitFor,
  writeInput, writeTokenModel, type WorkerProc,
} from './helpers/jobs';
import { missingPrecondition } from './helpers/preconditions';

function checkOutput(status: jobs.RunStatus, reference: string): Record<string, unknown>[] {
  const manifest = JSON.parse(fs.readFileSync(status.manifest!, 'utf8')) as { complete: boolean; rows: number; files: { file: string; rows: number; shard: number }[] };
  expect(manifest.complete).toBe(true);
  expect(manifest.files.map((f) => f.shard)).toEqual(Array.from({ length: status.shards }, (_, i) => i));
  const out: Record<string, unknown>[] = [];
  for (const f of manifest.files) {
    const lines = fs.readFileSync(path.join(status.output, f.file), 'utf8').trim().split('\n');
    expect(lines).toHaveLength(f.rows);
    for (const l of lines) out.push(JSON.parse(l) as Record<string, unknown>);
  }
  // No stray temporary files.
  expect(fs.readdirSync(status.output).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  compareToReference(out, reference);
  return out;
}

describe('jobs: distributed batch runs on BullMQ + redis-server', () => {
  if (!REDIS_BIN && !process.env.ATTNODE_TEST_REDIS_URL) {
    missingPrecondition('redis-server not installed (apt-get install -y redis-server) and ATTNODE_TEST_REDIS_URL unset');
    return;
  }
  let dir: string;
  let url: string;
  let own: RedisServer | null = null;
  const workers: WorkerProc[] = [];
  let q = 0;
  const queue = (): string => `attnode-test-${process.pid}-${q++}`;
  const spawnWorker = (u: string, qn: string, extra: string[] = []): WorkerProc => {
    const w = startWorker(u, qn, extra);
    workers.push(w);
    return w;
  };

  let tokenModel: string[];
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'attnode-jobs-'));
    tokenModel = await writeTokenModel(dir);
    if (process.env.ATTNODE_TEST_REDIS_URL) url = process.env.ATTNODE_TEST_REDIS_URL;
    else {
      fs.mkdirSync(path.join(dir, 'redis'));
      own = new RedisServer(await freePort(), path.join(dir, 'redis'));
      await own.start();
      url = own.url;
    }
  });
  afterAll(async () => {
    for (const w of workers) if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill('SIGKILL');
    await own?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const input = (name: string, rows: string[], model: string | string[] = EMBED, ext = 'jsonl'): { file: string; reference: string } =>
    writeInput(dir, name, rows, model, ext);

  function submit(u: string, qn: string, file: string, name: string, extra: string[] = [], model: string[] = ['--model', EMBED]): string {
    const r = cli(['submit', '--redis', u, '--queue', qn, ...model, '--input', file, '--output', path.join(dir, name),
      '--batch-size', '16', ...extra]);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout.trim();
  }

  it('kill -9 of a worker mid-shard: its shard is redone by the other; every row once, equal to attnode run', async () => {
    const { file, reference } = input('kill', tokenRows(192), tokenModel);
    const qn = queue();
    const runId = submit(url, qn, file, 'out-kill', ['--shard-size', '32'], tokenModel);
    // A alone until it is past its first shard (model loaded) and writing the next one's temporary file (with B
    // running too, B could take every shard left while A still loads its model); then B, started now, redoes it.
    const a = spawnWorker(url, qn);
    await waitFor('worker A to commit a shard and hold another', async () =>
      (await metric(a, 'shards_committed')) >= 1 && (await metric(a, 'shards_active')) >= 1);
    a.proc.kill('SIGKILL');
    const b = spawnWorker(url, qn);
    const s = await waitComplete(url, runId);
    expect(s.rowsDone).toBe(192);
    checkOutput(s, reference);
    b.proc.kill('SIGTERM');
    expect(await b.exited).toBe(0);
  }, 120_000);

  it('a worker frozen (SIGSTOP) past its lock, then resumed: its late commit is discarded; every row once', async () => {
    const { file, reference } = input('stop', tokenRows(128), tokenModel);
    const qn = queue();
    const runId = submit(url, qn, file, 'out-stop', ['--shard-size', '32'], tokenModel);
    const a = spawnWorker(url, qn);
    await waitFor('worker A to hold a shard', async () => (await metric(a, 'shards_active')) >= 1);
    a.proc.kill('SIGSTOP');
    const b = spawnWorker(url, qn);
    const s = await waitComplete(url, runId);
    a.proc.kill('SIGCONT');
    // A finishes its stale shard and must find it taken: lock lost (computing) or already committed (it had committed).
    await waitFor('worker A to notice', async () => (await metric(a, 'shards_lock_lost')) + (await metric(a, 'shards_duplicate')) + (await metric(b, 'shards_duplicate')) >= 1, 30_000)
      .catch((e: Error) => { throw new Error(`${e.message}\nworker A:\n${a.log.join('')}\nworker B:\n${b.log.join('')}`); });
    expect(s.rowsDone).toBe(128);
    checkOutput(s, reference);
    for (const w of [a, b]) w.proc.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    expect(await b.exited).toBe(0);
  }, 120_000);

  it('SIGTERM mid-shard: a worker finishes and commits its shard, or with --grace-ms 0 hands it back; both exit 0', async () => {
    const { file, reference } = input('term', tokenRows(192), tokenModel);
    const qn = queue();
    const runId = submit(url, qn, file, 'out-term', ['--shard-size', '32'], tokenModel);
    const a = spawnWorker(url, qn);
    const c = spawnWorker(url, qn, ['--grace-ms', '0']);
    await waitFor('both workers to hold a shard', async () => (await metric(a, 'shards_active')) >= 1 && (await metric(c, 'shards_active')) >= 1);
    const logged = (w: WorkerProc): number => w.log.join('').length;
    const [fromA, fromC] = [logged(a), logged(c)];
    a.proc.kill('SIGTERM');
    c.proc.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    expect(await c.exited).toBe(0);
    expect(a.log.join('').slice(fromA)).toMatch(/SIGTERM[^]*committed shard \d+[^]*exited cleanly/);
    expect(c.log.join('').slice(fromC)).toMatch(/SIGTERM[^]*released shard \d+[^]*exited cleanly/);
    const b = spawnWorker(url, qn);
    const s = await waitComplete(url, runId);
    checkOutput(s, reference);
    b.proc.kill('SIGTERM');
    expect(await b.exited).toBe(0);
  }, 120_000);

  it.skipIf(!REDIS_BIN)('redis-server restarted mid-run (AOF on): the run completes; every row once', async () => {
    const r = new RedisServer(await freePort(), fs.mkdtempSync(path.join(dir, 'redis-restart-')));
    await r.start();
    try {
      const { file, reference } = input('restart', textRows(480));
      const qn = queue();
      const runId = submit(r.url, qn, file, 'out-restart', ['--shard-size', '32']);
      const a = spawnWorker(r.url, qn);
      await waitFor('a first commit', async () => (await metric(a, 'shards_committed')) >= 1);
      await r.stop();
      await sleep(1000);
      await r.start();
      const s = await waitComplete(r.url, runId);
      // A shard whose BullMQ job lost its lock in the outage can be handed out again after its commit: that redundant
      // attempt finds the shard committed and deletes its temporary file. So the files are checked once it stopped.
      a.proc.kill('SIGTERM');
      expect(await a.exited).toBe(0);
      checkOutput(s, reference);
    } finally {
      await r.stop();
    }
  }, 120_000);

  it.skipIf(!REDIS_BIN)('SIGTERM while redis-server is down: the worker still exits 0; after the restart another worker completes the run', async () => {
    const r = new RedisServer(await freePort(), fs.mkdtempSync(path.join(dir, 'redis-down-')));
    await r.start();
    try {
      const { file, reference } = input('down', tokenRows(160), tokenModel);
      const qn = queue();
      const runId = submit(r.url, qn, file, 'out-down', ['--shard-size', '32'], tokenModel);
      const a = spawnWorker(r.url, qn);
      await waitFor('worker A to commit a shard and hold another', async () =>
        (await metric(a, 'shards_committed')) >= 1 && (await metric(a, 'shards_active')) >= 1);
      await r.stop();
      const from = a.log.join('').length;
      a.proc.kill('SIGTERM');
      const code = await Promise.race([a.exited, sleep(45_000).then(() => 'still running')]);
      expect(code, a.log.join('').slice(from)).toBe(0);
      expect(a.log.join('').slice(from)).toMatch(/exited cleanly/);
      await r.start();
      const b = spawnWorker(r.url, qn);
      const s = await waitComplete(r.url, runId);
      b.proc.kill('SIGTERM');
      expect(await b.exited).toBe(0);
      checkOutput(s, reference);
    } finally {
      await r.stop();
    }
  }, 120_000);

  it('poison rows go to the error ledger and the output; a failing shard goes to the failed set and `retry` brings it back', async () => {
    const poison = new Map([[3, 'not json'], [40, '{"id": "no-text", "body": "x"}'], [41, '{"id": "num", "text": 7}'], [77, '""']]);
    const { file, reference } = input('poison', textRows(100, poison));
    const qn = queue();
    const runId = submit(url, qn, file, 'out-poison', ['--shard-size', '25', '--attempts', '2', '--backoff-ms', '50']);
    // The input vanishes from the workers' view: every shard fails its attempts.
    fs.renameSync(file, `${file}.away`);
    const a = spawnWorker(url, qn);
    const stalled = await waitFor('the shards to fail', async () => {
      const s = await jobs.status({ redis: url, runId });
      return s.state === 'stalled' ? s : null;
    });
    expect(stalled.failedShards.map((f) => f.shard)).toEqual([0, 1, 2, 3]);
    expect(stalled.failedShards[0]!.attempts).toBe(2);
    expect(stalled.failedShards[0]!.reason).toMatch(/not found/);
    const st = cli(['status', '--redis', url, runId]);
    expect(st.code).toBe(1); // stalled
    expect(st.stdout).toMatch(/4 failed shards/);
    fs.renameSync(`${file}.away`, file);
    const rt = cli(['retry', '--redis', url, runId]);
    expect(rt.stdout).toMatch(/^4 failed shards back/);
    const s = await waitComplete(url, runId);
    const out = checkOutput(s, reference);
    expect(s.errorRows).toBe(4);
    expect(s.errors.map((e) => [e.line, e.id])).toEqual([[4, undefined], [41, 'no-text'], [42, 'num'], [78, undefined]]);
    expect(s.errors[1]!.reason).toMatch(/string field "text"/);
    expect(out.filter((o) => o.error)).toHaveLength(4);
    const json = JSON.parse(cli(['status', runId, '--json'], { ATTNODE_REDIS_URL: url }).stdout) as jobs.RunStatus; // --redis from the environment
    expect(json).toMatchObject({ state: 'complete', shardsDone: 4, rowsDone: 100, errorRows: 4 });
    a.proc.kill('SIGTERM');
    expect(await a.exited).toBe(0);
  }, 120_000);

  it('resubmitting a run is idempotent: same run id, nothing queued again, output unchanged', async () => {
    const { file, reference } = input('resubmit', textRows(96));
    const qn = queue();
    const runId = submit(url, qn, file, 'out-resubmit', ['--shard-size', '32']);
    expect(submit(url, qn, file, 'out-resubmit', ['--shard-size', '32'])).toBe(runId); // before any worker: same jobs
    const a = spawnWorker(url, qn);
    const s = await waitComplete(url, runId);
    const before = fs.readFileSync(s.manifest!, 'utf8');
    const again = await jobs.submit({ redis: url, queue: qn, model: EMBED, input: file, output: path.join(dir, 'out-resubmit'), shardSize: 32, batchSize: 16 });
    expect(again).toMatchObject({ runId, shards: 3, rows: 96, added: 0, committed: 3 });
    await sleep(500);
    expect(fs.readFileSync(s.manifest!, 'utf8')).toBe(before);
    checkOutput(await jobs.status({ redis: url, runId }), reference);
    // Another run into the same directory is refused.
    await expect(jobs.submit({ redis: url, queue: qn, model: EMBED, input: file, output: path.join(dir, 'out-resubmit'), shardSize: 16 }))
      .rejects.toThrow(/holds run/);
    a.proc.kill('SIGTERM');
    expect(await a.exited).toBe(0);
  }, 120_000);

  it('CSV input with a classification folder equals attnode run; cancel stops a run', async () => {
    const rows = ['id,text', ...Array.from({ length: 60 }, (_, i) => `c${i},"the cat, number ${i}, sat on the mat"`)];
    const { file, reference } = input('csv', rows, CLASSIFY, 'csv');
    const qn = queue();
    const r = cli(['submit', '--redis', url, '--queue', qn, '--model', CLASSIFY, '--input', file, '--output', path.join(dir, 'out-csv'),
      '--batch-size', '16', '--shard-size', '16']);
    expect(r.code, r.stderr).toBe(0);
    const runId = r.stdout.trim();
    // A second run, cancelled before any worker runs: its shards are removed and never written.
    const { file: f2 } = input('cancel', textRows(64));
    const cancelled = submit(url, qn, f2, 'out-cancel', ['--shard-size', '16']);
    expect(cli(['cancel', '--redis', url, cancelled]).stdout).toMatch(/4 queued shards removed/);
    const a = spawnWorker(url, qn);
    const s = await waitComplete(url, runId);
    const out = checkOutput(s, reference);
    expect(out[0]).toMatchObject({ line: 2, id: 'c0' });
    expect(typeof out[0]!.label).toBe('string');
    expect((await jobs.status({ redis: url, runId: cancelled })).state).toBe('cancelled');
    expect(fs.readdirSync(path.join(dir, 'out-cancel')).filter((n) => n.startsWith('part-'))).toEqual([]);
    a.proc.kill('SIGTERM');
    expect(await a.exited).toBe(0);
  }, 120_000);

  it('bad command lines and arguments are clear errors', async () => {
    const noRedis = cli(['submit', '--input', 'x.jsonl', '--output', 'o']);
    expect(noRedis.code).toBe(2);
    expect(noRedis.stderr).toMatch(/--redis is required/);
    const badUrl = cli(['status', '--redis', 'localhost:6379', 'abcdef0123456789']);
    expect(badUrl.code).toBe(1);
    expect(badUrl.stderr).toMatch(/--redis must be a Redis URL like redis:\/\/127.0.0.1:6379, got "localhost:6379"/);
    expect(cli(['status', '--redis', url]).stderr).toMatch(/status takes one RUNID, got 0/);
    expect(cli(['worker', '--redis', url, '--concurrency', '0']).stderr).toMatch(/--concurrency needs an integer >= 1, got '0'/);
    await expect(jobs.status({ redis: url, runId: 'nothex!' })).rejects.toThrow(/run id must be the hex id/);
    await expect(jobs.status({ redis: url, runId: 'abcdef0123456789' })).rejects.toThrow(/run abcdef0123456789 not found/);
    await expect(jobs.submit({ redis: url, input: path.join(dir, 'missing.jsonl'), output: path.join(dir, 'o') })).rejects.toThrow(/missing.jsonl is not a file/);
    await expect(jobs.submit({ redis: url, input: __filename, output: path.join(dir, 'o'), shardSize: 0 })).rejects.toThrow(/shardSize must be an integer >= 1, got 0/);
    // Nothing listens on the port: commands fail within seconds naming the server (password masked), never hang.
    const down = `redis://:hunter2@127.0.0.1:${await freePort()}`;
    const st = cli(['status', '--redis', down, 'abcdef0123456789']);
    expect(st.code).toBe(1);
    expect(st.stderr).toMatch(/cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+ \(--redis\): connect ECONNREFUSED/);
    expect(st.stderr).not.toMatch(/hunter2|Unhandled error/);
    const { file } = input('down-submit', textRows(4));
    await expect(jobs.submit({ redis: down, input: file, output: path.join(dir, 'o-down') })).rejects.toThrow(/cannot reach Redis at redis:\/\/:\*\*\*@/);
  }, 60_000);
});
