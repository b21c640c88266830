/**
 * What the load tests share (bench/load/run.ts: POST /v1/encode; bench/load/openai.ts: the OpenAI routes):
 * spawning `attnode serve` on a free port, stopping it, reading its JSON routes, a seeded generator,
 * percentiles, and lowering the client's priority while it drives.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { once } from 'node:events';

export { rng } from '../embeddings/sentences';

export const ROOT = path.resolve(__dirname, '..', '..');

/** Starts `attnode serve --port 0 <args>` (Node flags first) and resolves with its port once it prints the listening line. */
export async function startServe(args: string[], nodeArgs: string[] = []): Promise<{ child: ChildProcess; port: number }> {
  // `node --import tsx` runs the server in this one process (the tsx CLI would add a wrapper process).
  const all = [...nodeArgs, '--import', 'tsx', path.join(ROOT, 'lib', 'cli', 'attnode.ts'), 'serve', '--port', '0', '--host', '127.0.0.1', ...args];
  const child = spawn(process.execPath, all, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let buf = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server did not start within 60 s')), 60_000);
    child.stdout!.on('data', (c: Buffer) => {
      buf += c.toString();
      const m = /"port":(\d+)/.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => reject(new Error(`the server exited with code ${code} before listening`)));
  });
  return { child, port };
}

/** Sets this (client) thread's nice value; returns the value in force (lowering it back needs privileges). */
export function setClientNice(nice: number): number {
  try {
    os.setPriority(0, nice);
  } catch {
    // Not permitted (raising priority back without CAP_SYS_NICE): keep what we have.
  }
  return os.getPriority(0);
}

export async function stopServer(child: ChildProcess): Promise<number | null> {
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const [code] = (await exited) as [number | null];
  return code;
}

export function getJson(agent: http.Agent, port: number, p: string): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: p, agent }, (res) => {
      let s = '';
      res.on('data', (c: Buffer) => (s += c.toString()));
      res.on('end', () => resolve(JSON.parse(s)));
    }).on('error', reject);
  });
}

export function pct(sorted: number[], q: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]! : 0;
}
