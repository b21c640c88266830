/**
 * The attnode command as a person meets it: the list of commands with no arguments, `--help` and `-h` on every
 * command (each lists all of its flags), `--version`, one line with a "did you mean" for a mistyped command or
 * flag, and `attnode bench` from an installed package (no bench/: one line saying what it needs).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { closestMatch } from '../lib/cli/args';
import { RUN_FLAGS, RUN_USAGE } from '../lib/cli/run';
import { SERVE_FLAGS, SERVE_USAGE } from '../lib/cli/serve';
import { JOB_FLAGS, JOB_USAGE } from '../lib/cli/jobs';
import { installedPackage, ROOT, type InstalledPackage } from './helpers/installed-package';

const TSX = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs');
const CLI = path.join(ROOT, 'lib', 'cli', 'attnode.ts');
const JOB_COMMANDS = ['submit', 'worker', 'status', 'retry', 'cancel'];
const COMMANDS = ['info', 'demo', 'bench', 'run', 'serve', ...JOB_COMMANDS];

function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [TSX, CLI, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The flags a usage text describes: `--name` at the start of a description line (after the synopsis). */
function describedFlags(usage: string): string[] {
  return [...usage.matchAll(/^ {2}(--[\w-]+)/gm)].map((m) => m[1]!);
}

describe('attnode command line', () => {
  it('no arguments: the list of commands on stderr, exit 1, and no demo runs', () => {
    const r = cli([]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    for (const c of COMMANDS) expect(r.stderr).toMatch(new RegExp(`^  ${c} `, 'm'));
    expect(r.stderr).toMatch(/--help/);
    expect(r.stderr).not.toMatch(/tokens\/s|speedup|ms\b/);
    expect(r.stderr.split('\n').length).toBeLessThan(COMMANDS.length + 10);
  }, 120_000);

  it('--help, -h and help: the same list on stdout, exit 0', () => {
    for (const args of [['--help'], ['-h'], ['help']]) {
      const r = cli(args);
      expect(r.code, args.join(' ')).toBe(0);
      for (const c of COMMANDS) expect(r.stdout).toMatch(new RegExp(`^  ${c} `, 'm'));
    }
  }, 120_000);

  it('--version prints package.json\'s version, exit 0', () => {
    const { version } = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-v']) {
      const r = cli([flag]);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`${version}\n`);
    }
  }, 120_000);

  it.each(['info', 'demo', 'run', 'serve', ...JOB_COMMANDS])('%s --help and -h: its usage on stdout, exit 0 (nothing runs)', (command) => {
    for (const flag of ['--help', '-h']) {
      const r = cli([command, flag]);
      expect(r.code, `${command} ${flag}`).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^usage: attnode ${command}`));
      expect(r.stderr).toBe('');
    }
    expect(cli(['help', command]).stdout).toBe(cli([command, '--help']).stdout);
  }, 120_000);

  it('run, serve and the job commands describe every flag they accept', () => {
    const all = (f: { strings: readonly string[]; booleans: readonly string[] }): string[] =>
      [...f.strings, ...f.booleans].map((n) => `--${n}`).sort();
    expect([...new Set(describedFlags(RUN_USAGE))].sort()).toEqual(all(RUN_FLAGS));
    expect([...new Set(describedFlags(SERVE_USAGE))].sort()).toEqual(all(SERVE_FLAGS));
    for (const c of JOB_COMMANDS) expect([...new Set(describedFlags(JOB_USAGE[c]!))].sort(), c).toEqual(all(JOB_FLAGS[c]!));
  });

  it('demo --help describes every demo flag', () => {
    const usage = cli(['demo', '--help']).stdout;
    for (const f of ['--quick', '--batch', '--src-len', '--tgt-len', '--d-model', '--nhead', '--num-layers', '--num-decoder-layers',
      '--dim-feedforward', '--vocab', '--threads', '--model', '--tokenizer', '--prompt', '--max-new-tokens']) {
      expect(usage).toMatch(new RegExp(`^ {2}(?:[-\\w]+, )*${f}\\b`, 'm'));
    }
  }, 120_000);

  it('a mistyped command or flag: one line with the nearest name, exit 2', () => {
    const cases: [string[], RegExp][] = [
      [['sevre'], /^attnode: unknown command 'sevre' \(did you mean 'serve'\?\); see attnode --help\n$/],
      [['bnech'], /did you mean 'bench'/],
      [['--verison'], /^attnode: unknown option '--verison' \(did you mean '--version'\?\)/],
      [['serve', '--prot', '8080'], /^attnode serve: unknown option '--prot' \(did you mean '--port'\?\); see attnode serve --help\n$/],
      [['serve', '--kv-cache', '64'], /did you mean '--kv-cache-mb'/],
      [['run', '--batchsize', '8'], /^attnode run: unknown option '--batchsize' \(did you mean '--batch-size'\?\)/],
      [['demo', '--qick'], /^attnode demo: unknown option '--qick' \(did you mean '--quick'\?\)/],
      [['info', '--verbose'], /^attnode info: unknown option '--verbose'; see attnode info --help\n$/],
      [['xyzzy'], /^attnode: unknown command 'xyzzy'; see attnode --help\n$/],
    ];
    for (const [args, msg] of cases) {
      const r = cli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(msg);
      expect(r.stderr.trimEnd().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stdout).toBe('');
    }
  }, 180_000);

  it('closestMatch: typos within two edits, unambiguous prefixes, nothing for unrelated words', () => {
    expect(closestMatch('--prot', ['--port', '--host'])).toBe('--port');
    expect(closestMatch('--max', ['--max-running', '--max-queued'])).toBe(null);
    expect(closestMatch('--max-run', ['--max-running', '--max-queued'])).toBe('--max-running');
    expect(closestMatch('frobnicate', ['info', 'demo', 'serve'])).toBe(null);
    expect(closestMatch('srve', ['info', 'demo', 'serve'])).toBe('serve');
  });
});

describe('attnode bench outside a source checkout', () => {
  let pkg: InstalledPackage | null = null;
  afterAll(() => pkg?.remove());

  it('says in one line that it needs a source checkout (exit 1); --help still answers (exit 0)', () => {
    pkg = installedPackage();
    expect(fs.existsSync(path.join(pkg.packageDir, 'bench'))).toBe(false);
    const bin = path.join(pkg.packageDir, 'dist', 'cli', 'attnode.js');
    const run = (args: string[]) => spawnSync(process.execPath, [bin, ...args], { cwd: pkg!.project, encoding: 'utf8', timeout: 60_000 });
    const r = run(['bench', '--full']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^attnode bench: needs a source checkout of attnode \(bench\/run\.ts is not in the installed package at .*\); there: npm ci && npm run bench\n$/);
    const h = run(['bench', '--help']);
    expect(h.status).toBe(0);
    expect(h.stdout).toMatch(/^usage: attnode bench/);
    expect(run(['--version']).stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  }, 240_000);
});
