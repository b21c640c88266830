/**
 * What the batch-job tests (test/jobs.test.ts: the JSONL sink; test/jobs-postgres.test.ts: the PostgreSQL sink)
 * share: a private redis-server, the CLI as a child process, worker processes with their metrics, input rows, the
 * token-row model and the comparison of a run's records with `attnode run` on the same input.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { expect } from 'vitest';
import * as jobs from '../../lib/jobs';
import { saveSafetensors } from '../../lib/io/safetensors';
import { manualSeed } from '../../lib/nn/init';
import { EncoderModel } from '../../lib/serving/encoder-model';
import { freePort } from './ports';

export { freePort };

export const ROOT = path.resolve(__dirname, '..', '..');
export const TSX = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs');
export const CLI = path.join(ROOT, 'lib', 'cli', 'attnode.ts');
export const EMBED = path.join(ROOT, 'test', 'fixtures', 'hf', 'bert-st');
export const CLASSIFY = path.join(ROOT, 'test', 'fixtures', 'hf', 'bert-cls');
export const REDIS_BIN = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((p) => fs.existsSync(p)) ?? null;
export const LOCK_MS = 1500;


/** A private redis-server with AOF on, stopped by pid. */
export class RedisServer {
  proc: ChildProcess | null = null;
  constructor(readonly port: number, readonly dir: string) {}
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.proc = spawn(REDIS_BIN!, ['--port', String(this.port), '--bind', '127.0.0.1', '--appendonly', 'yes', '--dir', this.dir, '--save', ''], { stdio: 'ignore' });
    for (let i = 0; i < 100; i++) {
      if (await new Promise<boolean>((r) => net.connect(this.port, '127.0.0.1').on('connect', function (this: net.Socket) { this.destroy(); r(true); }).on('error', () => r(false)))) return;
      await sleep(50);
    }
    throw new Error(`redis-server did not listen on ${this.port}`);
  }

  /** SIGTERM (Redis flushes its AOF and exits), waiting for the exit. */
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await exited;
    this.proc = null;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function cli(args: string[], env: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [TSX, CLI, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 90_000, env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A worker process with its metrics URL (read from its ready line). */
export interface WorkerProc {
  proc: ChildProcess;
  log: string[];
  metricsUrl: Promise<string>;
  exited: Promise<number | null>;
}

export function startWorker(url: string, queue: string, extra: string[] = []): WorkerProc {
  // node --import tsx, not tsx's CLI: that runs the script in a child process, so signals would hit only the wrapper.
  const proc = spawn(process.execPath, ['--import', 'tsx', CLI, 'worker', '--redis', url, '--queue', queue, '--lock-ms', String(LOCK_MS), '--metrics-port', '0',
    '--metrics-host', '127.0.0.1', '--threads', '1', ...extra], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  const log: string[] = [];
  let resolveUrl: (u: string) => void;
  const metricsUrl = new Promise<string>((r) => (resolveUrl = r));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    log.push(d);
    const m = /metrics on (http:\S+)/.exec(d);
    if (m) resolveUrl(m[1]!);
  });
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  return { proc, log, metricsUrl, exited };
}

export async function metric(w: WorkerProc, name: string): Promise<number> {
  const text = await (await fetch(await w.metricsUrl)).text();
  const m = new RegExp(`^attnode_${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

export async function waitFor<T>(what: string, fn: () => Promise<T | null | false>, timeoutMs = 60_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

export const waitComplete = (url: string, runId: string, timeoutMs = 60_000): Promise<jobs.RunStatus> =>
  waitFor(`run ${runId} to complete`, async () => {
    const s = await jobs.status({ redis: url, runId });
    return s.state === 'complete' ? s : null;
  }, timeoutMs);

/** Text rows with ids: a mix of lengths, some repeated words. */
export function textRows(n: number, poison: Map<number, string> = new Map()): string[] {
  const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'while', 'dogs', 'ran', 'far', 'away', 'quickly', 'under', 'blue', 'sky'];
  return Array.from({ length: n }, (_, i) => poison.get(i) ?? JSON.stringify({
    id: `r${i}`, text: Array.from({ length: 3 + ((i * 7) % 13) }, (_, j) => words[(i * 3 + j * 5) % words.length]).join(' '),
  }));
}

/**
 * Token rows long enough that a shard takes a while (about 10 ms a row here), so a worker is reliably caught
 * mid-shard by the fault tests.
 */
export function tokenRows(n: number): string[] {
  return Array.from({ length: n }, (_, i) => JSON.stringify({ id: i, tokens: Array.from({ length: 64 + ((i * 37) % 64) }, (_, j) => (i * 31 + j * 7) % 500) }));
}


/**
 * Checks a run's output records against `attnode run`'s output file on the same input: every input row exactly
 * once, in input order, with the same id, error, label, length and values (embeddings within 1e-5).
 */
export function compareToReference(out: Record<string, unknown>[], reference: string): void {
  const ref = fs.readFileSync(reference, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const lines = out.map((o) => o.line as number);
  expect(new Set(lines).size).toBe(lines.length); // exactly once
  expect(lines).toEqual(ref.map((r) => r.line)); // every row, in input order
  out.forEach((o, i) => {
    const r = ref[i]!;
    expect(o.id).toEqual(r.id);
    expect(o.error).toEqual(r.error);
    expect(o.label).toEqual(r.label);
    expect(o.length).toEqual(r.length);
    for (const key of ['embedding', 'pooled'] as const) {
      if (!r[key]) continue;
      const a = o[key] as number[];
      const b = r[key] as number[];
      expect(a.length).toBe(b.length);
      expect(Math.max(...a.map((x, j) => Math.abs(x - b[j]!)))).toBeLessThan(1e-5);
    }
    if (r.score !== undefined) expect(Math.abs((o.score as number) - (r.score as number))).toBeLessThan(1e-5);
  });
}

/** A safetensors file + config (the token-row model kind), heavy enough for the kill and freeze tests; its CLI flags. */
export async function writeTokenModel(dir: string): Promise<string[]> {
  const options = { vocabSize: 500, dModel: 128, nhead: 4, numLayers: 2, dimFeedforward: 512, maxLen: 160 };
  manualSeed(7);
  await saveSafetensors(path.join(dir, 'enc.safetensors'), new EncoderModel(options).eval().stateDict());
  fs.writeFileSync(path.join(dir, 'enc.json'), JSON.stringify({ kind: 'encoder', options }));
  return ['--model', path.join(dir, 'enc.safetensors'), '--config', path.join(dir, 'enc.json')];
}

/** An input file in `dir` and `attnode run`'s output on it. */
export function writeInput(dir: string, name: string, rows: string[], model: string | string[] = EMBED, ext = 'jsonl'): { file: string; reference: string } {
  const file = path.join(dir, `${name}.${ext}`);
  fs.writeFileSync(file, rows.join('\n') + '\n');
  const reference = path.join(dir, `${name}.run.jsonl`);
  const r = cli(['run', ...(typeof model === 'string' ? ['--model', model] : model), '--input', file, '--output', reference, '--batch-size', '16', '--no-progress']);
  expect([0, 1]).toContain(r.code);
  return { file, reference };
}
