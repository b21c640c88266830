/**
 * Batch jobs benchmark: rows/s of `attnode run` (one process, --threads 1) against a job run on BullMQ + Redis
 * with one worker and with two workers (--threads 1 each), on the same input at shard size 1000.
 *
 *   npm run build:ts && npx tsx bench/jobs/run.ts [--rows 20000] [--shard-size 1000] [--tokens 32]
 *
 * The processes run the built CLI (dist/), as deployed (the sources under tsx when dist/ is missing).
 * Starts its own redis-server (private loopback port, AOF on, stopped by pid at exit). The model is the default
 * `attnode run` encoder (d 128, 4 heads, 2 layers, random weights); rows are token-id rows of `--tokens` tokens.
 * Times are wall-clock from process start to the last row written (run) or from submit to the run's completion
 * (jobs: submit, worker start-up and model load included). Writes bench/results/jobs-<cpu>.md with `uptime`'s load.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as jobs from '../../lib/jobs';
import { freePort } from '../../test/helpers/ports';
import { CLI_ARGS, ROOT, arg, load, sleep } from './common';

const ROWS = arg('rows', 20000);
const SHARD = arg('shard-size', 1000);
const TOKENS = arg('tokens', 32);

function node(args: string[]): ChildProcess {
  return spawn(process.execPath, [...CLI_ARGS, ...args], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'attnode-bench-jobs-'));
  const port = await freePort();
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--appendonly', 'yes', '--dir', dir, '--save', ''], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  const children: ChildProcess[] = [redis];
  const cleanup = (): void => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  };
  process.on('exit', cleanup);
  try {
    await sleep(500);
    const input = path.join(dir, 'rows.jsonl');
    const lines: string[] = [];
    for (let i = 0; i < ROWS; i++) lines.push(JSON.stringify({ id: i, tokens: Array.from({ length: TOKENS }, (_, j) => (i * 31 + j * 7) % 1000) }));
    fs.writeFileSync(input, lines.join('\n') + '\n');

    const results: { what: string; seconds: number; inner: number; load: string }[] = [];
    // attnode run, one thread.
    {
      const t0 = performance.now();
      const r = spawnSync(process.execPath, [...CLI_ARGS, 'run', '--input', input, '--output', path.join(dir, 'run.jsonl'), '--threads', '1', '--no-progress'], { cwd: ROOT, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`attnode run failed: ${r.stderr}`);
      const line = r.stderr.trim().split('\n').pop()!;
      console.error(line);
      results.push({ what: 'attnode run (1 process, --threads 1)', seconds: (performance.now() - t0) / 1000, inner: Number(/in ([\d.]+) s/.exec(line)![1]), load: load() });
    }
    for (const workers of [1, 2]) {
      const queue = `bench-${workers}`;
      const t0 = performance.now();
      const ws = Array.from({ length: workers }, () => node(['worker', '--redis', url, '--queue', queue, '--threads', '1', '--metrics-port', '0', '--quiet']));
      children.push(...ws);
      const { runId } = await jobs.submit({ redis: url, queue, input, output: path.join(dir, `out-${workers}`), shardSize: SHARD });
      let s: jobs.RunStatus;
      for (;;) {
        s = await jobs.status({ redis: url, runId });
        if (s.state === 'complete') break;
        await sleep(100);
      }
      const seconds = (performance.now() - t0) / 1000;
      results.push({ what: `jobs: ${workers} worker${workers > 1 ? 's' : ''} (--threads 1 each), shard size ${SHARD}`, seconds, inner: s.rowsDone / s.rowsPerSecond!, load: load() });
      console.error(`${workers} worker(s): ${seconds.toFixed(2)} s (first shard start → last commit: ${(s.rowsDone / s.rowsPerSecond!).toFixed(2)} s)`);
      for (const w of ws) w.kill('SIGTERM');
      await Promise.all(ws.map((w) => new Promise((r) => (w.exitCode !== null ? r(null) : w.once('exit', r)))));
    }
    const innerBase = results[0]!.inner;
    const cpu = (os.cpus()[0]?.model ?? 'cpu').replace(/\s+/g, ' ').trim();
    const slug = cpu.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
    const md = [
      `# Batch jobs: attnode run vs BullMQ workers (${cpu}, ${os.cpus().length} vCPUs)`,
      '',
      `${new Date().toISOString()}; ${ROWS} token rows of ${TOKENS} tokens, default encoder (d 128, 2 layers), batch 32, shard size ${SHARD}.`,
      '"wall": from process start to the last row (jobs: submit, worker start and model load included). "rows": from the first',
      "row to the last (run: after its model load; jobs: first shard start to last commit, so the first shard's model load is in).",
      `Processes: ${CLI_ARGS.join(' ').replace(ROOT + '/', '')}. The machine is shared: the load average (1, 5, 15 min) is recorded`,
      'beside each figure; compare ratios within this run only.',
      '',
      '| what | wall s | rows s | rows/s (rows) | rows time vs attnode run | load |',
      '|---|---|---|---|---|---|',
      ...results.map((r) => `| ${r.what} | ${r.seconds.toFixed(2)} | ${r.inner.toFixed(2)} | ${(ROWS / r.inner).toFixed(0)} | ${(r.inner / innerBase).toFixed(2)}× | ${r.load} |`),
      '',
    ].join('\n');
    const out = path.join(ROOT, 'bench', 'results', `jobs-${slug}.md`);
    fs.writeFileSync(out, md);
    console.log(md);
    console.error(`→ ${out}`);
  } finally {
    cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
