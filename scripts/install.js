#!/usr/bin/env node
// The package's install step. It never fails the install and never downloads anything:
//   1. an addon already built in build/Release, or a prebuild in prebuilds/ that fits this platform, arch and libc
//      (node-gyp-build's own matching, the one the loader uses): nothing to do;
//   2. otherwise, when this machine can build (python3, make, a C++ compiler, Node's own headers beside the running
//      node: scripts/native-build.js), node-gyp rebuild with --nodedir pointing at those headers;
//   3. otherwise, or when that build fails: no addon, exit 0. attnode then runs on its TypeScript backend.
// The outcome goes to build/attnode-install.json, which lib/backend/native.ts reads to say why the native backend is
// missing (npm hides install-script output, so the loader's one warning is what a user sees).
// ATTNODE_BUILD_FROM_SOURCE=1 skips step 1's prebuild (e.g. for a CPU the prebuild cannot run on).
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const { root, buildBlockers, nodeGypArgs } = require('./native-build');

const buildDir = path.join(root, 'build');
const notePath = path.join(buildDir, 'attnode-install.json');
const logPath = path.join(buildDir, 'attnode-install.log');
const fromSource = process.env.ATTNODE_BUILD_FROM_SOURCE === '1';

function writeNote(note) {
  fs.mkdirSync(buildDir, { recursive: true });
  fs.writeFileSync(notePath, JSON.stringify({ ...note, platform: process.platform, arch: process.arch }, null, 2) + '\n');
}

function say(line) {
  process.stdout.write(`attnode: ${line}\n`);
}

function localBuild() {
  try {
    return fs.readdirSync(path.join(buildDir, 'Release')).some((f) => f.endsWith('.node'));
  } catch {
    return false;
  }
}

function fittingPrebuild() {
  try {
    // With no build/Release addon, node-gyp-build's resolve() returns a matching prebuild or throws.
    const file = require('node-gyp-build').resolve(root);
    return file.startsWith(path.join(root, 'prebuilds') + path.sep) ? file : null;
  } catch {
    return null;
  }
}

function main() {
  if (localBuild()) {
    say('using the addon already built in build/Release');
    return;
  }
  const prebuild = fromSource ? null : fittingPrebuild();
  if (prebuild) {
    writeNote({ result: 'prebuild', file: path.relative(root, prebuild) });
    say(`using the prebuilt addon ${path.relative(root, prebuild)}`);
    return;
  }
  const why = fromSource ? 'ATTNODE_BUILD_FROM_SOURCE=1' : 'no prebuilt addon fits this platform';
  const blockers = buildBlockers();
  if (blockers.length > 0) {
    const reason = `${why}, and it cannot be built here: ${blockers.join('; ')}`;
    writeNote({ result: 'not-built', reason });
    say(`${reason}. attnode will run on its TypeScript backend.`);
    return;
  }
  say(`${why}: building it from source with node-gyp (Node headers from --nodedir, nothing downloaded)`);
  const r = spawnSync(process.execPath, nodeGypArgs(), { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
  const output = `${r.stdout || ''}${r.stderr || ''}${r.error ? String(r.error) : ''}`;
  process.stdout.write(output);
  if (r.status === 0 && localBuild()) {
    writeNote({ result: 'built' });
    return;
  }
  fs.mkdirSync(buildDir, { recursive: true });
  fs.writeFileSync(logPath, output);
  const reason = `${why}, and building it failed (node-gyp exit ${r.status ?? r.signal}; log: ${path.relative(root, logPath)})`;
  writeNote({ result: 'not-built', reason });
  say(`${reason}. attnode will run on its TypeScript backend.`);
}

try {
  main();
} catch (err) {
  // Whatever went wrong, the package still works on the TypeScript backend: say why, do not fail the install.
  try {
    writeNote({ result: 'not-built', reason: `the install step failed: ${err && err.message}` });
  } catch {}
  say(`install step failed (${err && err.message}); attnode will run on its TypeScript backend.`);
}
