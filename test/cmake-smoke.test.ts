/**
 * The addon built by cmake-js (`npm run build:cmake`, into build-cmake/) loads
 * and computes the same as the node-gyp build: both read native/build-config.json.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Addon } from '../lib/backend/native';

const file = path.resolve(__dirname, '..', 'build-cmake', 'Release', 'attnode.node');

describe.runIf(existsSync(file))('cmake-js build', () => {
  // Loaded lazily: describe bodies run at collection even when skipped.
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
    addon.gemm(a, b, c, 2, 2, 3, false, true, 1, 0, null, 0, 1, 0, 0, 0);
    expect(Array.from(c)).toEqual([1, 6, 4, 15]);
    expect(() => addon.gemm(a, b, new Float32Array(3), 2, 2, 3, false, true, 1, 0, null, 0, 1, 0, 0, 0)).toThrowError(RangeError);
  });
});

it('cmake-js smoke test ran when requested', () => {
  if (process.env.ATTNODE_EXPECT_CMAKE === '1') expect(existsSync(file)).toBe(true);
});
