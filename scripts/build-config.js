#!/usr/bin/env node
// Prints one part of native/build-config.json for the build files:
//   sources   every .cc under the configured source dirs (sorted, repo-relative)
//   cflags | defines | ldflags   space-separated
//   include   node-addon-api's include dir
// binding.gyp expands it with <!@(...), CMakeLists.txt with execute_process.
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const config = JSON.parse(fs.readFileSync(path.join(root, 'native', 'build-config.json'), 'utf8'));

function listSources() {
  const out = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const rel = `${dir}/${entry.name}`;
      if (entry.isDirectory()) walk(rel);
      else if (entry.name.endsWith('.cc')) out.push(rel);
    }
  };
  for (const dir of config.sourceDirs) walk(dir);
  return out.sort();
}

const what = process.argv[2];
let items;
switch (what) {
  case 'sources':
    items = listSources();
    break;
  case 'cflags':
  case 'defines':
  case 'ldflags':
    items = config[what];
    break;
  case 'include':
    items = [require('node-addon-api').include_dir];
    break;
  default:
    process.stderr.write('usage: build-config.js sources|cflags|defines|ldflags|include\n');
    process.exit(2);
}
// CMake wants ';'-separated lists, gyp whitespace-separated.
process.stdout.write(items.join(process.argv[3] === '--cmake' ? ';' : '\n'));
