#!/usr/bin/env node
// prepack: builds the prebuilt addon the package ships, prebuilds/<platform>-<arch>/attnode.<libc>.node, with
// prebuildify (N-API, stripped, libc-tagged so a glibc build is never picked on musl), then checks it loads.
//   - No download: node-gyp gets --nodedir with the running Node's own headers and --target of that Node (with
//     N-API one binary serves every Node >= 20, so the headers' version does not matter beyond the API level).
//   - A fixed, portable baseline: never -march=native (refused below if the build flags have it); on x64 the build
//     pins -march=x86-64 -mtune=generic, whatever the compiler's default, so the binary runs on any x86-64 CPU
//     (the AVX2/AVX-512 kernels raise their own target per function and run only after run-time CPU detection).
//     lib/backend/cpu-baseline.ts holds the same baseline, checked before a prebuild is loaded.
// Only the host's platform and arch are built (no cross-compiling here).
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const { root, localNodeDir, nodeGypScript } = require('./native-build');

const fail = (msg) => {
  process.stderr.write(`prebuild: ${msg}\n`);
  process.exit(1);
};

// Baseline code generation per arch; the same names as lib/backend/cpu-baseline.ts's BASELINES.
const MARCH = { x64: ['-march=x86-64', '-mtune=generic'], arm64: ['-march=armv8-a'] };

const config = JSON.parse(fs.readFileSync(path.join(root, 'native', 'build-config.json'), 'utf8'));
const gyp = fs.readFileSync(path.join(root, 'binding.gyp'), 'utf8');
const flags = [...config.cflags, ...config.ldflags, ...config.defines].join(' ');
if (/-m(arch|tune|cpu)=native/.test(flags) || /-m(arch|tune|cpu)=native/.test(gyp)) {
  fail('the build flags ask for -march/-mtune/-mcpu=native: a prebuilt binary must run on any CPU of its arch');
}
const march = MARCH[process.arch];
if (!march) fail(`no baseline -march known for arch ${process.arch} (add it to MARCH here and to lib/backend/cpu-baseline.ts)`);

const nodedir = localNodeDir();
if (!nodedir) fail(`no Node headers beside ${process.execPath} (include/node/node_api.h): set npm_config_nodedir`);
// The devDependency's node-gyp first (an executable script with a node shebang), else npm's.
let nodeGyp = null;
try {
  nodeGyp = require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] });
} catch {
  nodeGyp = nodeGypScript();
}
if (!nodeGyp) fail('node-gyp not found (npm ci installs it as a devDependency)');

const libc = fs.existsSync('/etc/alpine-release') ? 'musl' : 'glibc';
const outDir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
fs.rmSync(outDir, { recursive: true, force: true });

const env = {
  ...process.env,
  npm_config_nodedir: nodedir,
  CXXFLAGS: [process.env.CXXFLAGS, ...march].filter(Boolean).join(' '),
  CFLAGS: [process.env.CFLAGS, ...march].filter(Boolean).join(' '),
  // The node-gyp prebuildify spawns (without a shell, so a path to the executable script).
  PREBUILD_NODE_GYP: nodeGyp,
};
const prebuildify = require.resolve('prebuildify/bin.js', { paths: [root] });
const args = [prebuildify, '--napi', '--strip', `--tag-libc=${libc}`, `--target=node@${process.versions.node}`];
console.log(`prebuild: prebuildify ${args.slice(1).join(' ')} (nodedir ${nodedir}, ${march.join(' ')})`);
const r = spawnSync(process.execPath, args, { cwd: root, env, stdio: 'inherit', shell: false });
if (r.status !== 0) fail(`prebuildify failed (exit ${r.status ?? r.signal})`);

const built = fs.existsSync(outDir) ? fs.readdirSync(outDir).filter((f) => f.endsWith('.node')) : [];
if (built.length !== 1) fail(`expected one addon in ${path.relative(root, outDir)}, found [${built.join(', ')}]`);
const file = path.join(outDir, built[0]);
// prebuildify moved node-gyp's output out of build/Release (the tests' build, just rebuilt from the same sources and
// flags but for -march): put a copy back so build/ stays complete and `npm test` does not compile again.
fs.mkdirSync(path.join(root, 'build', 'Release'), { recursive: true });
fs.copyFileSync(file, path.join(root, 'build', 'Release', 'attnode.node'));
// It must load and answer in a fresh process (not this one: prebuildify's node-gyp rebuilt build/ as well).
const check = spawnSync(process.execPath, ['-e', `console.log(require(${JSON.stringify(file)}).info().build.kernels)`], {
  encoding: 'utf8',
});
if (check.status !== 0) fail(`the prebuild ${path.relative(root, file)} does not load: ${check.stderr.trim()}`);
const kb = Math.round(fs.statSync(file).size / 1024);
console.log(`prebuild: ${path.relative(root, file)} (${kb} KiB, kernels: ${check.stdout.trim()})`);
