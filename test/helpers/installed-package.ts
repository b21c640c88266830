/**
 * The package as a user gets it, for tests that must run against the package rather than the sources (the README's
 * doc-tests, the CLI outside a checkout).
 *
 * `ATTNODE_PACKAGE_DIR=/path/to/node_modules/attnode` points the tests at an installed package (e.g. one installed
 * from `npm pack`'s tarball). Without it, {@link installedPackage} lays out what `npm install` would put in
 * `node_modules/attnode` from this checkout: the files of package.json's `files` that exist at run time (dist/,
 * package.json, README.md) plus the freshly built addon, with `dist/` rebuilt first when any `lib/` file is newer.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');

function newestMtime(dir: string, ext: string): number {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(p, ext));
    else if (entry.name.endsWith(ext)) newest = Math.max(newest, fs.statSync(p).mtimeMs);
  }
  return newest;
}

/** Rebuilds dist/ (`npm run build:ts`) when it is missing or older than a lib/ source. */
export function ensureDist(): void {
  const entry = path.join(ROOT, 'dist', 'index.js');
  const built = fs.existsSync(entry) ? fs.statSync(entry).mtimeMs : 0;
  if (built >= newestMtime(path.join(ROOT, 'lib'), '.ts')) return;
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
  execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'write-esm-entry.js')], { cwd: ROOT, stdio: 'inherit' });
}

/** A project folder whose node_modules holds `attnode` (the package dir) and the named modules of this checkout. */
export interface InstalledPackage {
  /** The project folder (a temporary directory; remove with {@link InstalledPackage.remove}). */
  project: string;
  /** node_modules/attnode inside it (a copy of this checkout's package files, or a link to ATTNODE_PACKAGE_DIR). */
  packageDir: string;
  /** Whether the package came from ATTNODE_PACKAGE_DIR. */
  external: boolean;
  remove(): void;
}

/**
 * A temporary project with `attnode` installed in its node_modules, plus links to `extraModules` (e.g. `openai`,
 * `tsx`) from this checkout's node_modules. attnode's own dependencies are linked next to it, as a flat npm install
 * places them.
 */
export function installedPackage(extraModules: readonly string[] = []): InstalledPackage {
  const project = fs.mkdtempSync(path.join(os.tmpdir(), 'attnode-pkg-'));
  const nm = path.join(project, 'node_modules');
  fs.mkdirSync(nm);
  const packageDir = path.join(nm, 'attnode');
  const external = process.env.ATTNODE_PACKAGE_DIR;
  const link = (name: string): void => {
    const from = path.join(ROOT, 'node_modules', name);
    const to = path.join(nm, name);
    if (fs.existsSync(to) || !fs.existsSync(from)) return;
    fs.mkdirSync(path.dirname(to), { recursive: true });
    fs.symlinkSync(from, to, 'dir');
  };
  if (external) {
    fs.symlinkSync(path.resolve(external), packageDir, 'dir');
  } else {
    ensureDist();
    fs.mkdirSync(packageDir);
    fs.cpSync(path.join(ROOT, 'dist'), path.join(packageDir, 'dist'), { recursive: true });
    for (const f of ['package.json', 'README.md']) fs.copyFileSync(path.join(ROOT, f), path.join(packageDir, f));
    const addon = path.join(ROOT, 'build', 'Release', 'attnode.node');
    if (fs.existsSync(addon)) {
      fs.mkdirSync(path.join(packageDir, 'build', 'Release'), { recursive: true });
      fs.copyFileSync(addon, path.join(packageDir, 'build', 'Release', 'attnode.node'));
    }
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    for (const dep of Object.keys(pkg.dependencies ?? {})) link(dep);
  }
  for (const m of extraModules) link(m);
  return { project, packageDir, external: Boolean(external), remove: () => fs.rmSync(project, { recursive: true, force: true }) };
}
