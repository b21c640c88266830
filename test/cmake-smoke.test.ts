/**
 * The addon built by cmake-js (`npm run build:cmake`, into build-cmake/) loads
 * and computes the same as the node-gyp build: both read native/build-config.json.
 *
 * Without that build the suite is one visible skip naming the command that makes it; with ATTNODE_EXPECT_CMAKE=1
 * (`npm run test:cmake`) or in CI the missing build is a failure (.ci/run builds it before `npm test`).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Addon } from '../lib/backend/native';
import { missingPrecondition, preconditionsRequired } from './helpers/preconditions';

const file = path.resolve(__dirname, '..', 'build-cmake', 'Release', 'attnode.node');

describe('cmake-js build', () => {
  if (!existsSync(file)) {
    missingPrecondition(`cmake-js build not found at build-cmake/Release/attnode.node (run npm run test:cmake)`,
      preconditionsRequired || process.env.ATTNODE_EXPECT_CMAKE === '1');
    return;
  }
  // Loaded lazily: describe bodies run at collection.
  let cached: Addon | null = null;
  const load = (): Addon => (cached ??= createRequire(__filename)(file) as Addon);

  it('reports its runtime', () => {
    const info = load().info();
    expect(['avx512', 'avx2', 'portable']).toContain(info.isa);
    expect(info.numThreads).toBeGreaterThan(0);
  });

  it('multiplies matrices and rejects bad input', () => {
    const a = Float32Array.from([1, 2, 3, 4, 5, 6]); // [2, 3]
    const b = Float32Array.from([1, 0, 0, 1, 1, 1]); // [2, 3] used transposed
    const c = new Float32Array(4);
    const addon = load();
    addon.gemm({ a, b, c, m: 2, n: 2, k: 3, transB: true });
    expect(Array.from(c)).toEqual([1, 6, 4, 15]);
    expect(() => addon.gemm({ a, b, c: new Float32Array(3), m: 2, n: 2, k: 3, transB: true })).toThrowError(
      "attnode.gemm: argument 'c' has 3 elements, expected at least 4",
    );
  });
});
