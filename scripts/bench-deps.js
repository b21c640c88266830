#!/usr/bin/env node
// The benchmark peers (onnxruntime-node, transformers.js, node-llama-cpp, Rust tokenizers: 1.3 GB) live in
// bench/package.json with their own lockfile, so the root `npm ci` stays lean.
//   node scripts/bench-deps.js install     npm ci in bench/ (npm run bench:install)
//   node scripts/bench-deps.js ensure      the same, only when bench/node_modules is missing or does not match the
//                                          lockfile (the bench scripts that need a peer run this first)
//   node scripts/bench-deps.js typecheck   tsc over the files that import the peers (bench/tsconfig.json), or one
//                                          line saying they were skipped because the peers are not installed
// A failed install exits 1 with one line naming the command to run.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const bench = path.join(root, 'bench');
const lock = path.join(bench, 'package-lock.json');
// npm writes this hidden lockfile after a successful install: bench/node_modules matches bench/package-lock.json when
// it lists every package of the lockfile (but optional ones) at the same version (mtimes would not do: a checkout rewrites the lockfile).
const installedMarker = path.join(bench, 'node_modules', '.package-lock.json');

function installed() {
  if (!fs.existsSync(installedMarker)) return false;
  try {
    const want = JSON.parse(fs.readFileSync(lock, 'utf8')).packages || {};
    const have = JSON.parse(fs.readFileSync(installedMarker, 'utf8')).packages || {};
    // Optional packages for other platforms (the peers' per-OS binaries) are in the lockfile but not installed.
    return Object.entries(want).every(
      ([key, p]) => key === '' || (have[key] ? have[key].version === p.version : Boolean(p.optional)),
    );
  } catch {
    return false;
  }
}

function install() {
  console.error('attnode: installing the benchmark peers into bench/node_modules (npm ci in bench/, ~1.3 GB)');
  const npmCli = process.env.npm_execpath;
  const [cmd, args] = npmCli && /\.c?js$/.test(npmCli) ? [process.execPath, [npmCli]] : ['npm', []];
  const r = spawnSync(cmd, [...args, 'ci', '--no-audit', '--no-fund'], {
    cwd: bench,
    // onnxruntime-node's postinstall only fetches CUDA files (its CPU library is in the package); skip it, it fails
    // offline. (bench/package.json's allowScripts denies it too, for npm versions that honour that.)
    env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status !== 0) {
    console.error(`attnode: installing the benchmark peers failed (npm ci in bench/ exit ${r.status ?? r.signal}): run \`npm run bench:install\` with registry access`);
    process.exit(1);
  }
}

const what = process.argv[2];
switch (what) {
  case 'install':
    install();
    break;
  case 'ensure':
    if (!installed()) install();
    break;
  case 'typecheck': {
    if (!installed()) {
      console.log('typecheck: the benchmark-peer files (bench/tsconfig.json) skipped: bench/ dependencies not installed or not those of bench/package-lock.json (npm run bench:install)');
      break;
    }
    const tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
    const r = spawnSync(process.execPath, [tsc, '--noEmit', '-p', path.join(bench, 'tsconfig.json')], { stdio: 'inherit' });
    process.exitCode = r.status ?? 1;
    break;
  }
  default:
    console.error('usage: node scripts/bench-deps.js install|ensure|typecheck');
    process.exit(2);
}
