/**
 * PyTorch as a peer: one long-lived `torch_bench.py serve` process that times
 * its own forward passes, driven over JSON lines so the runner can interleave
 * it with the in-process peers run by run.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import type { Case } from '../cases/cases';
import type { Peer } from './types';

/** Debian's python3 is the one with torch 1.13; the pyenv python3 on PATH has none. TORCH_PYTHON overrides. */
export const TORCH_PYTHON = process.env.TORCH_PYTHON ?? '/usr/bin/python3';
export const TORCH_INSTALL_HINT = 'apt-get install python3-torch (Debian\'s torch 1.13, run by /usr/bin/python3)';
export const TORCH_SCRIPT = path.join(__dirname, 'torch_bench.py');

/**
 * The torch child's environment. OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are set machine-wide to keep old OpenBLAS
 * builds from crashing; they also make torch's OpenBLAS (libblas) run its Haswell kernels on this Zen 5. Torch is
 * a peer here, so it runs with both unset and OpenBLAS picks its own kernel (reported as `openblas`).
 */
export function torchEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  // Idle threads sleep instead of busy-waiting: the torch child lives beside the in-process peers for the
  // whole case, and by default its OpenMP and OpenBLAS workers spin for up to ~2^28 cycles after each call,
  // taking the second core from whichever peer runs next (attnode's and ort's 2-thread runs measured 1.3-4x
  // slower beside a spinning torch child). Unless the caller set them.
  env.OMP_WAIT_POLICY ??= 'passive';
  env.OPENBLAS_THREAD_TIMEOUT ??= '4';
  return env;
}

/**
 * Debian's pthreads OpenBLAS directory when the system's libblas.so.3 is not already OpenBLAS (the reference BLAS,
 * ~2 GFLOP/s, is what Debian's torch loads otherwise: its products run on whatever libblas.so.3 it finds), else null.
 * Put first on the torch process's LD_LIBRARY_PATH it makes PyTorch's products run on OpenBLAS without changing
 * the system's alternatives.
 */
export function torchBlasDir(): string | null {
  const dir = '/usr/lib/x86_64-linux-gnu/openblas-pthread';
  if (!fs.existsSync(path.join(dir, 'libblas.so.3'))) return null;
  try {
    const system = fs.realpathSync('/usr/lib/x86_64-linux-gnu/libblas.so.3');
    return system.includes('openblas') ? null : dir;
  } catch {
    return dir;
  }
}

export function detectTorch(): { version: string | null; reason: string | null } {
  const r = spawnSync(TORCH_PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', env: torchEnv() });
  if (r.error) return { version: null, reason: `${TORCH_PYTHON}: ${r.error.message}` };
  if (r.status !== 0) return { version: null, reason: (r.stderr.trim().split('\n').pop() ?? 'import torch failed') };
  return { version: r.stdout.trim(), reason: null };
}

interface Reply {
  ok: boolean;
  error?: string;
  [k: string]: unknown;
}

export interface TorchLoadInfo {
  torch: string;
  fastpath: boolean;
  maxAbsDiff: number;
  rel: number;
  openblas: string | null;
}

/** The `serve` process; requests are answered in order. */
export class TorchServer {
  readonly #proc: ChildProcessWithoutNullStreams;
  readonly #waiting: Array<{ resolve: (r: Reply) => void; reject: (e: Error) => void }> = [];
  #stderr = '';
  #exited: string | null = null;

  constructor() {
    // PyTorch's products on OpenBLAS rather than the reference BLAS when the system's libblas.so.3 is the latter.
    const env = torchEnv();
    const blas = torchBlasDir();
    if (blas) env.LD_LIBRARY_PATH = [blas, env.LD_LIBRARY_PATH].filter(Boolean).join(':');
    this.#proc = spawn(TORCH_PYTHON, [TORCH_SCRIPT, 'serve'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    readline.createInterface({ input: this.#proc.stdout }).on('line', (line) => {
      const w = this.#waiting.shift();
      if (!w) return;
      try {
        w.resolve(JSON.parse(line) as Reply);
      } catch {
        w.reject(new Error(`torch_bench.py printed a non-JSON line: ${line.slice(0, 200)}`));
      }
    });
    // Kept for error messages only: torch's warnings would clutter the bench's output.
    this.#proc.stderr.on('data', (d: Buffer) => {
      this.#stderr = (this.#stderr + d.toString()).slice(-4000);
    });
    this.#proc.on('exit', (code, sig) => {
      this.#exited = `torch_bench.py exited (${code ?? sig})`;
      for (const w of this.#waiting.splice(0)) w.reject(new Error(`${this.#exited}\n${this.#stderr}`));
    });
  }

  async request(req: Record<string, unknown>): Promise<Reply> {
    if (this.#exited) throw new Error(`${this.#exited}\n${this.#stderr}`);
    const p = new Promise<Reply>((resolve, reject) => this.#waiting.push({ resolve, reject }));
    this.#proc.stdin.write(JSON.stringify(req) + '\n');
    const r = await p;
    if (!r.ok) throw new Error(`torch: ${r.error}`);
    return r;
  }

  async close(): Promise<void> {
    if (this.#exited) return;
    const done = new Promise<void>((resolve) => this.#proc.once('exit', () => resolve()));
    this.#proc.stdin.write(JSON.stringify({ cmd: 'quit' }) + '\n');
    this.#proc.stdin.end();
    await done;
  }
}

/** A peer for one case on a running server (the server keeps one model loaded at a time). */
export async function createTorchPeer(server: TorchServer, c: Case): Promise<{ peer: Peer; info: TorchLoadInfo }> {
  const info = (await server.request({ cmd: 'load', case: c.id })) as unknown as TorchLoadInfo;
  const peer: Peer = {
    name: 'torch',
    maxThreads: 256,
    async setThreads(n: number): Promise<void> {
      await server.request({ cmd: 'threads', n });
    },
    async runOnce(): Promise<number> {
      const r = await server.request({ cmd: 'run', reps: 1 });
      return (r.ms as number[])[0];
    },
    async output(): Promise<Float32Array> {
      throw new Error('torch checks its own output against the reference (see load info)');
    },
    async close(): Promise<void> {},
  };
  return { peer, info };
}
