// What building the addon from source needs, and how to run node-gyp without it downloading anything.
// Shared by scripts/install.js (an install without a fitting prebuild), scripts/prebuild.js (prepack) and
// scripts/ensure-addon.js (the tests' rebuild). Plain CommonJS with no dependencies: it runs before
// anything is built or installed.
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');

/**
 * A Node installation prefix holding the running Node's own headers (`<prefix>/include/node/node_api.h`), for
 * node-gyp's --nodedir: npm_config_nodedir when it holds them, else the prefix of the running node (official
 * tarballs, nvm, Debian's nodejs: /usr). null when there is none: node-gyp would then download headers.
 */
function localNodeDir() {
  const candidates = [process.env.npm_config_nodedir, path.resolve(path.dirname(process.execPath), '..')];
  for (const dir of candidates) {
    if (dir && fs.existsSync(path.join(dir, 'include', 'node', 'node_api.h'))) return path.resolve(dir);
  }
  return null;
}

/** The first of `names` found as an executable on PATH, or null. */
function findOnPath(names) {
  const dirs = (process.env.PATH || '').split(path.delimiter).filter(Boolean);
  const exts = process.platform === 'win32' ? ['.exe', '.cmd', ''] : [''];
  for (const name of names) {
    if (path.isAbsolute(name)) {
      if (isExecutable(name)) return name;
      continue;
    }
    for (const dir of dirs) {
      for (const ext of exts) {
        const p = path.join(dir, name + ext);
        if (isExecutable(p)) return p;
      }
    }
  }
  return null;
}

function isExecutable(p) {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/** node-gyp's CLI script: npm's own (npm sets npm_config_node_gyp for scripts), else a local install, else null. */
function nodeGypScript() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && fs.existsSync(fromNpm)) return fromNpm;
  try {
    return require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] });
  } catch {
    return null;
  }
}

/**
 * Why the addon cannot be built here, one short clause per missing piece (empty when it can be).
 * Checks what node-gyp needs on POSIX: python3, make, a C++ compiler, Node's headers installed locally
 * (never downloaded) and node-gyp itself.
 */
function buildBlockers() {
  const missing = [];
  if (!findOnPath([process.env.PYTHON || 'python3', 'python3', 'python'])) missing.push('no python3 on PATH');
  if (process.platform !== 'win32' && !findOnPath(['make', 'gmake'])) missing.push('no make on PATH');
  const cxx = process.env.CXX ? [process.env.CXX.split(/\s+/)[0]] : ['g++', 'c++', 'clang++'];
  if (process.platform !== 'win32' && !findOnPath(cxx)) missing.push(`no C++ compiler on PATH (${cxx.join(', ')})`);
  if (!localNodeDir()) {
    missing.push(`no Node headers beside ${process.execPath} (include/node/node_api.h; set npm_config_nodedir)`);
  }
  if (!nodeGypScript()) missing.push('node-gyp not found');
  return missing;
}

/** node-gyp's argument list for `rebuild` against the local headers (call only when localNodeDir() is non-null). */
function nodeGypArgs(extra = []) {
  const jobs = String(Math.max(1, require('os').availableParallelism()));
  return [nodeGypScript(), 'rebuild', '-j', jobs, `--nodedir=${localNodeDir()}`, ...extra];
}

module.exports = { root, localNodeDir, findOnPath, nodeGypScript, buildBlockers, nodeGypArgs };
