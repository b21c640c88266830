/**
 * The package as a user installs it: `npm pack` of this checkout (its prebuild from prepack, scripts/prebuild.js),
 * installed into an empty folder offline, with a private empty npm cache, a fresh HOME (no ~/.npmrc) and a PATH
 * holding only node and sh: no compiler, no make, no python, no network. The runtime dependencies come as tarballs
 * packed from this checkout's node_modules, so nothing is fetched.
 *   - from the prebuild: `require('attnode')` runs the native backend, loaded from prebuilds/, without a warning,
 *     and computes what the TypeScript backend computes; under qemu-user with a baseline x86-64 CPU (no SSE3, no
 *     AVX) the same prebuild still loads and computes (its kernels fall back to the portable path);
 *   - a CPU without the prebuild's baseline: the prebuild is not loaded, one warning says which features are missing;
 *   - no prebuild fits (prebuilds/ removed, `npm rebuild attnode` with no compiler): the rebuild exits 0 and
 *     `require('attnode')` runs on the TypeScript backend with exactly one warning saying why and how to get the
 *     native one; also when the install step never ran.
 *
 * Needs an up-to-date prebuild (`npm run build:prebuild`, which `npm pack`'s prepack runs; .ci/run packs before
 * `npm test`) and a dist/ built from the current lib/ (`npm run build:ts`); without them, or without npm, the tests
 * are one visible skip naming what is missing (a failure in CI).
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { missingPrecondition } from './helpers/preconditions';

const ROOT = path.resolve(__dirname, '..');
const TUPLE = `${process.platform}-${process.arch}`;
/**
 * The package directories of the runtime dependencies and of everything they depend on (optional ones too, when
 * installed), as this checkout's node_modules holds them: the offline install gets each as a tarball, since its
 * empty cache cannot supply a transitive dependency (bullmq's msgpackr, ioredis' denque, ...).
 */
function runtimeDependencyDirs(): string[] {
  const found = new Map<string, string>();
  const locate = (name: string, from: string): string | null => {
    for (let dir = from; ; dir = path.dirname(dir)) {
      const candidate = path.join(dir, 'node_modules', name);
      if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate;
      if (dir === ROOT || path.dirname(dir) === dir) return null;
    }
  };
  const visit = (pkgDir: string, optional: boolean): void => {
    const manifest = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>; optionalDependencies?: Record<string, string>;
    };
    const required = Object.keys(manifest.dependencies ?? {});
    const optionalNames = Object.keys(manifest.optionalDependencies ?? {});
    for (const [name, isOptional] of [...required.map((n) => [n, false] as const), ...optionalNames.map((n) => [n, true] as const)]) {
      const dir = locate(name, pkgDir);
      if (dir === null) {
        if (isOptional || optional) continue; // an optional dependency this platform did not install
        throw new Error(`install test: dependency ${name} of ${pkgDir} is not installed (run npm ci)`);
      }
      const real = fs.realpathSync(dir);
      if (found.has(real)) continue;
      found.set(real, dir);
      visit(dir, isOptional);
    }
  };
  visit(ROOT, false);
  return [...found.values()];
}

function newestMtime(p: string, skip: (name: string) => boolean = () => false): number {
  const st = fs.statSync(p);
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = 0;
  for (const e of fs.readdirSync(p)) if (!skip(e)) newest = Math.max(newest, newestMtime(path.join(p, e), skip));
  return newest;
}

function findNpmCli(): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const p = path.join(dir, 'npm');
    if (fs.existsSync(p)) {
      const real = fs.realpathSync(p);
      // npm's bin is a node script (npm-cli.js); run it with this node.
      return real.endsWith('.js') ? real : path.join(path.dirname(real), 'npm-cli.js');
    }
  }
  return null;
}

function findOnPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const p = path.join(dir, name);
    if (dir && fs.existsSync(p)) return p;
  }
  return null;
}

/** What is missing to run these tests, or null. */
function missing(): string | null {
  const npmCli = findNpmCli();
  if (!npmCli || !fs.existsSync(npmCli)) return 'npm not found on PATH (needed to pack and install)';
  const dir = path.join(ROOT, 'prebuilds', TUPLE);
  const prebuild = fs.existsSync(dir) ? fs.readdirSync(dir).find((f) => f.endsWith('.node')) : undefined;
  if (!prebuild) return `no prebuild in prebuilds/${TUPLE} (run npm run build:prebuild, or npm pack)`;
  const sources = Math.max(
    newestMtime(path.join(ROOT, 'native'), (n) => n === 'tests'),
    ...['binding.gyp', 'scripts/build-config.js'].map((f) => fs.statSync(path.join(ROOT, f)).mtimeMs),
  );
  if (fs.statSync(path.join(dir, prebuild)).mtimeMs < sources) {
    return `prebuilds/${TUPLE}/${prebuild} is older than native/ (run npm run build:prebuild, or npm pack)`;
  }
  const esm = path.join(ROOT, 'dist', 'index.mjs');
  if (!fs.existsSync(esm) || fs.statSync(esm).mtimeMs < newestMtime(path.join(ROOT, 'lib'))) {
    return 'dist/ is missing or older than lib/ (run npm run build:ts)';
  }
  return null;
}

const why = missing();

describe('installing the packed package offline, without a compiler', () => {
  if (why) {
    missingPrecondition(why);
    return;
  }
  const npmCli = findNpmCli()!;
  let tmp = '';
  let app = '';
  let pkg = '';
  let cleanEnv: NodeJS.ProcessEnv = {};
  let install: SpawnSyncReturns<string>;
  let installSeconds = 0;

  const npm = (args: string[], cwd: string): SpawnSyncReturns<string> =>
    spawnSync(process.execPath, [npmCli, ...args, '--offline', '--no-audit', '--no-fund', '--no-update-notifier', '--cache', path.join(tmp, 'cache')], {
      cwd,
      env: cleanEnv,
      encoding: 'utf8',
    });

  /** Runs `code` with node in the app folder (the same bare environment). */
  const nodeInApp = (code: string, extraEnv: NodeJS.ProcessEnv = {}, prefix: string[] = []): SpawnSyncReturns<string> => {
    const [cmd, ...pre] = prefix.length ? prefix : [process.execPath];
    return spawnSync(cmd!, [...pre, ...(prefix.length ? [process.execPath] : []), '-e', code], {
      cwd: app,
      env: { ...cleanEnv, ...extraEnv },
      encoding: 'utf8',
      timeout: 90_000,
    });
  };

  /** attnode's warning lines on stderr. */
  const warnings = (stderr: string): string[] => stderr.split('\n').filter((l) => l.startsWith('attnode:'));

  // The check a user would run: which backend, where the addon came from, and one computation on both backends.
  const PROBE = `
    const a = require('attnode');
    const x = a.randn([3, 16], { seed: 7 });
    const w = a.randn([8, 16], { seed: 8 });
    const y = a.ops.linear(x, w);
    const yJs = a.ops.linear(x, w, undefined, { backend: 'js' });
    let maxDiff = 0;
    for (let i = 0; i < y.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(y.data[i] - yJs.data[i]));
    const i = a.info();
    console.log(JSON.stringify({ backend: i.backend, source: i.nativeSource, isa: i.native && i.native.isa,
      nativeError: i.nativeError, maxDiff, n: y.data.length }));`;
  const probe = (extraEnv: NodeJS.ProcessEnv = {}, prefix: string[] = []) => {
    const r = nodeInApp(PROBE, extraEnv, prefix);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
      backend: string; source: { kind: string; file: string } | null; isa: string | null; nativeError: string | null;
      maxDiff: number; n: number;
    };
    return { ...out, warnings: warnings(r.stderr) };
  };

  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'attnode-install-'));
    app = path.join(tmp, 'app');
    const bin = path.join(tmp, 'bin');
    for (const d of [app, bin, path.join(tmp, 'home'), path.join(tmp, 'cache'), path.join(tmp, 'deps')]) fs.mkdirSync(d);
    // PATH: node and sh only (npm runs lifecycle scripts with sh).
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    fs.symlinkSync(findOnPath('sh') ?? '/bin/sh', path.join(bin, 'sh'));
    cleanEnv = { PATH: bin, HOME: path.join(tmp, 'home'), TMPDIR: tmp };

    // The package as published (prepack's prebuild is already there: see missing()).
    const packed = spawnSync(process.execPath, [npmCli, 'pack', '--ignore-scripts', '--json', '--pack-destination', tmp], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    if (packed.status !== 0) throw new Error(`npm pack failed: ${packed.stderr}`);
    pkg = path.join(tmp, (JSON.parse(packed.stdout) as { filename: string }[])[0]!.filename);
    // Runtime dependencies as tarballs, so the offline install with an empty cache needs no registry.
    const deps = runtimeDependencyDirs().map((d) => {
      const r = spawnSync(process.execPath, [npmCli, 'pack', '--ignore-scripts', '--json', '--pack-destination', path.join(tmp, 'deps')], {
        cwd: d,
        encoding: 'utf8',
      });
      if (r.status !== 0) throw new Error(`npm pack of ${d} failed: ${r.stderr}`);
      return path.join(tmp, 'deps', (JSON.parse(r.stdout) as { filename: string }[])[0]!.filename);
    });
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    const t0 = performance.now();
    install = npm(['install', pkg, ...deps], app);
    installSeconds = (performance.now() - t0) / 1000;
  }, 120_000);

  afterAll(() => {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('installs (exit 0) in seconds without compiling', () => {
    expect(install.status, install.stderr + install.stdout).toBe(0);
    const installed = path.join(app, 'node_modules', 'attnode');
    const note = JSON.parse(fs.readFileSync(path.join(installed, 'build', 'attnode-install.json'), 'utf8')) as { result: string };
    expect(note.result).toBe('prebuild');
    expect(fs.existsSync(path.join(installed, 'build', 'Release'))).toBe(false);
    expect(fs.existsSync(path.join(installed, 'native', 'tests'))).toBe(false);
    const kib = Math.round(treeBytes(installed) / 1024);
    console.log(`install: ${installSeconds.toFixed(1)} s, node_modules/attnode ${kib} KiB, tarball ${Math.round(fs.statSync(pkg).size / 1024)} KiB`);
  });

  it('loads the native backend from the prebuild, without a warning, and computes', () => {
    const r = probe();
    expect(r.backend).toBe('native');
    expect(r.source?.kind).toBe('prebuild');
    expect(r.source!.file).toMatch(new RegExp(`^prebuilds[/\\\\]${TUPLE}[/\\\\]attnode\\.(glibc|musl)\\.node$`));
    expect(r.warnings).toEqual([]);
    expect(r.n).toBe(24);
    expect(r.maxDiff).toBeLessThan(1e-4);
  });

  const qemu = process.arch === 'x64' && process.platform === 'linux' ? findOnPath('qemu-x86_64') : null;
  it.skipIf(!qemu)(
    `the prebuild runs on a baseline x86-64 CPU (qemu-x86_64 -cpu qemu64)${qemu ? '' : ': skipped, needs linux-x64 and qemu-x86_64 (apt-get install qemu-user)'}`,
    () => {
      const r = probe({}, [qemu!, '-cpu', 'qemu64']);
      expect(r.backend).toBe('native');
      expect(r.source?.kind).toBe('prebuild');
      expect(r.isa).toBe('portable');
      expect(r.maxDiff).toBeLessThan(1e-4);
    },
  );

  const linuxX64 = process.arch === 'x64' && process.platform === 'linux';
  it.skipIf(!linuxX64)(`refuses the prebuild on a CPU without its baseline, with one warning naming the missing features${linuxX64 ? '' : ': skipped, the faked /proc/cpuinfo is an x86-64 one'}`, () => {
    // /proc/cpuinfo as an x86 CPU without SSE2 would report it (the file read is replaced in this process only).
    const preload = path.join(tmp, 'fake-cpuinfo.js');
    fs.writeFileSync(
      preload,
      `const fs = require('fs'); const real = fs.readFileSync;
       fs.readFileSync = function (p, ...rest) {
         if (p === '/proc/cpuinfo') return 'processor\\t: 0\\nflags\\t\\t: fpu cx8 cmov mmx fxsr sse\\n';
         return real.call(this, p, ...rest);
       };`,
    );
    const r = probe({ NODE_OPTIONS: `--require ${preload}` });
    expect(r.backend).toBe('js');
    expect(r.source).toBeNull();
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatch(/this CPU lacks sse2, part of the x86-64 .* baseline the prebuilt addon prebuilds.* is compiled for/);
    expect(r.warnings[0]).toContain('ATTNODE_BUILD_FROM_SOURCE=1 npm rebuild attnode');
  });

  it('without a fitting prebuild and no compiler: the rebuild exits 0, the TS backend runs with one warning', () => {
    const installed = path.join(app, 'node_modules', 'attnode');
    fs.rmSync(path.join(installed, 'prebuilds'), { recursive: true, force: true });
    fs.rmSync(path.join(installed, 'build'), { recursive: true, force: true });
    const rebuild = npm(['rebuild', 'attnode'], app);
    expect(rebuild.status, rebuild.stderr + rebuild.stdout).toBe(0);
    const note = JSON.parse(fs.readFileSync(path.join(installed, 'build', 'attnode-install.json'), 'utf8')) as { result: string; reason: string };
    expect(note.result).toBe('not-built');
    expect(note.reason).toMatch(/no prebuilt addon fits this platform, and it cannot be built here: .*no C\+\+ compiler on PATH/);

    const r = probe();
    expect(r.backend).toBe('js');
    expect(r.source).toBeNull();
    expect(r.maxDiff).toBe(0);
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatch(/^attnode: native backend unavailable, using the JS backend: no native addon for /);
    expect(r.warnings[0]).toContain('no C++ compiler on PATH');
    expect(r.warnings[0]).toContain('install python3, make and a C++ compiler, then run `npm rebuild attnode`');

    // The install step never ran (--ignore-scripts): the warning says that instead.
    fs.rmSync(path.join(installed, 'build'), { recursive: true, force: true });
    const r2 = probe();
    expect(r2.backend).toBe('js');
    expect(r2.warnings).toHaveLength(1);
    expect(r2.warnings[0]).toMatch(/none was built, because the install step did not run/);
  });
});

/** Bytes of every file under `dir`. */
function treeBytes(dir: string): number {
  let total = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    total += e.isDirectory() ? treeBytes(p) : fs.statSync(p).size;
  }
  return total;
}
