#!/usr/bin/env node
// Prints one part of native/build-config.json for the build files:
//   sources   every .cc in the configured source dirs (sorted, repo-relative)
//   cflags | defines | ldflags   space-separated
//   include   node-addon-api's include dir
// binding.gyp expands it with <!@(...), CMakeLists.txt with execute_process.
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const config = JSON.parse(fs.readFileSync(path.join(root, 'native', 'build-config.json'), 'utf8'));

// Every .cc directly in each listed folder. A folder beside or below a listed one that holds .cc files must be
// listed too (each kernel family is a folder), or be in notCompiled: the build stops and names it instead of
// silently leaving it out.
function listSources() {
  const out = [];
  const known = new Set([...config.sourceDirs, ...(config.notCompiled || [])]);
  const unlisted = new Set();
  const entries = (dir) => fs.readdirSync(path.join(root, dir), { withFileTypes: true });
  const check = (dir) => {
    for (const entry of entries(dir)) {
      if (!entry.isDirectory()) continue;
      const rel = `${dir}/${entry.name}`;
      if (known.has(rel) && !config.sourceDirs.includes(rel)) continue;  // notCompiled: skip its subtree
      if (!known.has(rel) && entries(rel).some((e) => e.isFile() && e.name.endsWith('.cc'))) unlisted.add(rel);
      check(rel);
    }
  };
  for (const dir of config.sourceDirs) {
    for (const entry of entries(dir)) {
      if (entry.isFile() && entry.name.endsWith('.cc')) out.push(`${dir}/${entry.name}`);
    }
    check(path.posix.dirname(dir));
  }
  if (unlisted.size > 0) {
    process.stderr.write(`build-config.js: ${[...unlisted].join(', ')} hold .cc files but are not in sourceDirs\n`);
    process.exit(1);
  }
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
