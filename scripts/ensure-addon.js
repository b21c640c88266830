#!/usr/bin/env node
// Makes sure the tests run against an addon built from the current sources:
// rebuilds build/Release/attnode.node with node-gyp when it is missing or older
// than any file under native/ or the build files. A prebuild from prebuilds/
// is not used for tests, because it may lag the sources.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const target = path.join(root, 'build', 'Release', 'attnode.node');

function newestMtime(dir) {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'tests') newest = Math.max(newest, newestMtime(p));
    } else {
      newest = Math.max(newest, fs.statSync(p).mtimeMs);
    }
  }
  return newest;
}

const inputs = Math.max(
  newestMtime(path.join(root, 'native')),
  ...['binding.gyp', 'scripts/build-config.js'].map((f) => fs.statSync(path.join(root, f)).mtimeMs),
);
const built = fs.existsSync(target) ? fs.statSync(target).mtimeMs : 0;
if (built >= inputs) process.exit(0);

console.log(built ? 'attnode: native sources changed, rebuilding the addon' : 'attnode: building the addon');
const { localNodeDir } = require('./native-build');
const nodeGyp = require.resolve('node-gyp/bin/node-gyp.js');
const jobs = String(Math.max(1, require('os').availableParallelism()));
const args = [nodeGyp, 'rebuild', '-j', jobs];
// Offline machines: build against the headers of the running Node when they are installed beside it (Debian's
// nodejs puts them in /usr/include/node), instead of downloading them.
const nodedir = localNodeDir();
if (nodedir) args.push(`--nodedir=${nodedir}`);
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
