#!/usr/bin/env node
// Per-call overhead of the addon boundary: tiny ops whose kernel time is
// negligible (relu on 16 floats, a 1x16x16 GEMM, softmax 1x16), so the time
// is argument parsing, validation and the N-API transition.
//
//   node bench/overhead/addon-call.js [other.node]
//
// With another build of the addon that still takes positional arguments (e.g.
// a copy of an older build/Release/attnode.node), both run in this process,
// interleaved, so machine noise hits both alike.
'use strict';
const path = require('node:path');

const current = require(path.resolve(__dirname, '..', '..', 'build', 'Release', 'attnode.node'));
const otherFile = process.argv[2];
const other = otherFile ? require(path.resolve(otherFile)) : null;

const x = new Float32Array(16).fill(-1);
const y = new Float32Array(16);
const A = new Float32Array(16);
const B = new Float32Array(256);
const C = new Float32Array(16);

const named = {
  'relu 16': (a) => () => a.relu({ x, y }),
  'gemm 1x16x16': (a) => () => a.gemm({ a: A, b: B, c: C, m: 1, n: 16, k: 16 }),
  'gemm 1x16x16, all fields': (a) => () =>
    a.gemm({ a: A, b: B, c: C, m: 1, n: 16, k: 16, transA: false, transB: false, lda: 16, ldb: 16, ldc: 16, alpha: 1,
      beta: 0, bias: null, act: 0, batch: 1, strideA: 0, strideB: 0, strideC: 0 }),
  'softmax 1x16': (a) => () => a.softmax({ x, y, rows: 1, cols: 16 }),
};
const positional = {
  'relu 16': (a) => () => a.relu(x, y),
  'gemm 1x16x16': (a) => () => a.gemm(A, B, C, 1, 16, 16, false, false, 1, 0, null, 0, 1, 0, 0, 0),
  'gemm 1x16x16, all fields': (a) => () => a.gemm(A, B, C, 1, 16, 16, false, false, 1, 0, null, 0, 1, 0, 0, 0),
  'softmax 1x16': (a) => () => a.softmax(x, y, 1, 16),
};

/** Nanoseconds per call: the best of `rounds` batches of `n` calls. */
function nsPerCall(fn, n, rounds) {
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    best = Math.min(best, Number(process.hrtime.bigint() - t) / n);
  }
  return best;
}

current.setNumThreads(1);
if (other) other.setNumThreads(1);
for (const name of Object.keys(named)) {
  const cur = named[name](current);
  const old = other ? positional[name](other) : null;
  for (let i = 0; i < 2e5; i++) {
    cur();
    if (old) old();
  }
  let bestCur = Infinity;
  let bestOld = Infinity;
  // Interleaved rounds: noise from other processes lands on both.
  for (let r = 0; r < 7; r++) {
    bestCur = Math.min(bestCur, nsPerCall(cur, 2e5, 1));
    if (old) bestOld = Math.min(bestOld, nsPerCall(old, 2e5, 1));
  }
  const line = [`${name.padEnd(26)} named ${bestCur.toFixed(0).padStart(5)} ns/call`];
  if (old) line.push(`positional ${bestOld.toFixed(0).padStart(5)} ns/call`, `(+${(bestCur - bestOld).toFixed(0)} ns)`);
  console.log(line.join('   '));
}
