/**
 * A private PostgreSQL server for tests and benchmarks: initdb into a temporary directory, `postgres` on a loopback
 * port with its unix socket in that directory, trust authentication, stopped by its pid. PostgreSQL refuses to run
 * as root; as root the server runs as the `postgres` user Debian's package creates (setpriv execs, so the pid we
 * hold is the server's own).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from './ports';

export { freePort };

/** The directory holding initdb and postgres (Debian's newest /usr/lib/postgresql/<major>/bin), or null. */
export const PG_BIN: string | null = (() => {
  const root = '/usr/lib/postgresql';
  const majors = fs.existsSync(root) ? fs.readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of majors) {
    const bin = path.join(root, v, 'bin');
    if (fs.existsSync(path.join(bin, 'initdb')) && fs.existsSync(path.join(bin, 'postgres'))) return bin;
  }
  return null;
})();

const isRoot = process.getuid?.() === 0;

/** Why a private server cannot be started here, or null when it can. */
export function postgresUnavailable(): string | null {
  if (!PG_BIN) return 'PostgreSQL server binaries not installed (apt-get install -y postgresql)';
  if (isRoot && spawnSync('id', ['-u', 'postgres']).status !== 0) return 'running as root and no postgres user to run the server as (apt-get install -y postgresql creates it)';
  return null;
}

/** Runs a PostgreSQL binary, as the postgres user when we are root. */
function command(bin: string, args: string[]): [string, string[]] {
  const exe = path.join(PG_BIN!, bin);
  return isRoot ? ['setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', '--', exe, ...args]] : [exe, args];
}


/**
 * A PostgreSQL server of its own: `await start()`, `url()`, `await stop()` (which also removes its directory).
 * Its directory is a fresh one directly under the system's temporary directory: as root, the postgres user must be
 * able to reach it, which a directory inside another private temporary directory would not allow.
 */
export class PostgresServer {
  proc: ChildProcess | null = null;
  readonly log: string[] = [];
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'attnode-pg-'));
  constructor(readonly port: number, readonly user = 'attnode') {}

  /** A URL of the server's `postgres` database (or `db`). */
  url(db = 'postgres'): string {
    return `postgres://${this.user}@127.0.0.1:${this.port}/${db}`;
  }

  /**
   * initdb (first time) and start; resolves once it accepts connections. `settings` are extra `-c` options
   * (tests turn fsync off: the machine's durability is not what they check).
   */
  async start(settings: Record<string, string> = {}): Promise<void> {
    const data = path.join(this.dir, 'data');
    if (isRoot) spawnSync('chown', ['postgres:', this.dir]);
    if (!fs.existsSync(path.join(data, 'PG_VERSION'))) {
      const [exe, args] = command('initdb', ['-D', data, '-U', this.user, '-A', 'trust', '-E', 'UTF8', '--no-sync']);
      const r = spawnSync(exe, args, { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`initdb failed (${r.status}): ${r.stderr}`);
    }
    const opts = { listen_addresses: '127.0.0.1', unix_socket_directories: this.dir, ...settings };
    const [exe, args] = command('postgres', ['-D', data, '-p', String(this.port), ...Object.entries(opts).flatMap(([k, v]) => ['-c', `${k}=${v}`])]);
    const proc = spawn(exe, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc = proc;
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => this.log.push(d));
    for (let i = 0; i < 300; i++) {
      if (proc.exitCode !== null) throw new Error(`postgres exited (${proc.exitCode}): ${this.log.join('')}`);
      if (this.log.join('').includes('ready to accept connections')) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`postgres did not start on port ${this.port}: ${this.log.join('')}`);
  }

  /** Fast shutdown (SIGINT to the server's pid: sessions are ended, the server exits cleanly), waiting for the exit; removes the directory. */
  async stop(): Promise<void> {
    const p = this.proc;
    if (p && p.exitCode === null && p.signalCode === null) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGINT');
      await exited;
    }
    this.proc = null;
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
