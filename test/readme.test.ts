/**
 * README.md runs: every ```ts / ```js block is executed against the package (node_modules/attnode: this checkout's
 * dist/ and addon laid out as an install, or the installed package ATTNODE_PACKAGE_DIR points at), each in a
 * folder of its own holding the files its `<!-- doctest: ... -->` comment names (test/helpers/readme-blocks.ts
 * lists the directives), and every block type-checks against the package's .d.ts files.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installedPackage, ROOT, type InstalledPackage } from './helpers/installed-package';
import { blockFixtures, blockProgram, readmeBlocks, type ReadmeBlock } from './helpers/readme-blocks';

const README = path.join(ROOT, 'README.md');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const TSX = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs');
const blocks = readmeBlocks(README);

let pkg: InstalledPackage;

function blockDir(block: ReadmeBlock): string {
  return path.join(pkg.project, 'blocks', String(block.index).padStart(2, '0'));
}

function copyFixtures(block: ReadmeBlock, dir: string): void {
  for (const { sources, dest } of blockFixtures(blocks, block)) {
    const target = path.join(dir, dest);
    for (const src of sources) {
      const from = path.join(FIXTURES, src);
      if (!fs.existsSync(from)) throw new Error(`README block ${block.index} (line ${block.line}): fixture ${src} not found in test/fixtures`);
      if (fs.statSync(from).isDirectory()) fs.cpSync(from, target, { recursive: true });
      else {
        fs.mkdirSync(path.dirname(target), { recursive: true });
        fs.copyFileSync(from, target);
      }
    }
  }
}

/** Starts `attnode serve` from the package; resolves with its URL once it listens. */
function startServer(modelDir: string, name: string, servers: ChildProcess[]): Promise<string> {
  const cli = path.join(pkg.packageDir, 'dist', 'cli', 'attnode.js');
  const child = spawn(process.execPath, [cli, 'serve', '--model', modelDir, '--served-model-name', name, '--port', '0', '--threads', '1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  servers.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /\{"event":"listening","url":"([^"]+)"/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (code) => reject(new Error(`attnode serve --model ${modelDir} exited with ${code}: ${err}`)));
  });
}

describe('README.md code blocks', () => {
  beforeAll(() => {
    pkg = installedPackage(['openai', '@types/node']);
    for (const block of blocks) {
      const dir = blockDir(block);
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'block.mts'), blockProgram(blocks, block));
    }
  }, 180_000);
  afterAll(() => pkg?.remove());

  it('has code blocks to run, each with known directives', () => {
    expect(blocks.length).toBeGreaterThan(10);
  });

  it('the package the blocks import computes on its native backend (what the README describes)', () => {
    const r = spawnSync(process.execPath, ['-e', "const a = require('attnode'); console.log(a.getBackend().name, a.info().native.isa)"], {
      cwd: pkg.project, encoding: 'utf8', timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^native (avx512|avx2|portable)\n$/);
  });

  for (const block of blocks) {
    const title = `block ${block.index} (line ${block.line}, ${block.heading})`;
    if (block.skip !== null) {
      it.skip(`${title}: skipped: ${block.skip}`, () => {});
      continue;
    }
    it(`${title} runs`, async () => {
      const dir = blockDir(block);
      copyFixtures(block, dir);
      const servers: ChildProcess[] = [];
      try {
        let program = fs.readFileSync(path.join(dir, 'block.mts'), 'utf8');
        for (const s of block.serve) {
          const modelDir = path.join(dir, `served-${s.name}`);
          fs.cpSync(path.join(FIXTURES, s.source), modelDir, { recursive: true });
          const url = await startServer(modelDir, s.name, servers);
          program = program.split(s.url).join(url);
        }
        const file = path.join(dir, 'run.mts');
        fs.writeFileSync(file, program);
        const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
          const child = spawn(process.execPath, [TSX, file], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ATTNODE_NUM_THREADS: '1' } });
          let stdout = '';
          let stderr = '';
          child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
          child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
          child.on('exit', (code) => resolve({ code, stdout, stderr }));
        });
        expect(r.code, `README.md:${block.line}\n${r.stderr}`).toBe(0);
      } finally {
        for (const s of servers) s.kill('SIGTERM');
      }
    }, 300_000);
  }

  it('every block type-checks against the package\'s types', () => {
    fs.writeFileSync(path.join(pkg.project, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', strict: true, noEmit: true, skipLibCheck: true,
        types: ['node'],
      },
      include: ['blocks/*/block.mts'],
    }));
    const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = spawnSync(process.execPath, [tsc, '-p', pkg.project], { cwd: pkg.project, encoding: 'utf8', timeout: 240_000 });
    // Name errors by README line: blocks/NN/block.mts(l,c) → the block's fence line.
    const report = r.stdout.replace(/blocks\/(\d+)\/block\.mts\((\d+),\d+\)/g, (_, n: string, l: string) => `README block ${Number(n)} (fence at line ${blocks[Number(n) - 1]!.line}), program line ${l}`);
    expect(r.status, report).toBe(0);
  }, 300_000);
});
