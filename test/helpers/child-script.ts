/**
 * Runs a TypeScript snippet in a fresh Node process (what a process-wide setting read once at load, like an
 * environment variable, needs) and returns the JSON object its last stdout line prints. `nodeArgs` go before the
 * script (e.g. --expose-gc).
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { expect } from 'vitest';

export function runChildScript<T>(script: string, env: Record<string, string | undefined>, nodeArgs: string[] = []): T {
  const r = spawnSync(process.execPath, [...nodeArgs, '--import', 'tsx', '-e', script], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    cwd: path.resolve(__dirname, '..', '..'),
  });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}
