/** What the batch-job benchmarks (run.ts, postgres.ts) share: the CLI to spawn, flags, the load average. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');
// The built CLI (npm run build:ts), as deployed: under tsx each worker thread would compile the sources again.
const DIST_CLI = path.join(ROOT, 'dist', 'cli', 'attnode.js');
export const CLI_ARGS = fs.existsSync(DIST_CLI) ? [DIST_CLI] : ['--import', 'tsx', path.join(ROOT, 'lib', 'cli', 'attnode.ts')];

/** A numeric `--name N` flag of the command line, or `dflt`. */
export const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** The load average (1, 5, 15 min), recorded beside every figure. */
export const load = (): string => os.loadavg().map((x) => x.toFixed(2)).join(', ');
