/**
 * Packed weights on transparent huge pages (native/runtime/huge_pages.h): info().native.hugePages reports the
 * kernel's mode and the switch, memoryStats().packedWeights counts the weights in the huge-page slabs, a packed
 * weight's pages really are huge pages where the kernel offers them (AnonHugePages in /proc/self/smaps_rollup),
 * and ATTNODE_HUGE_PAGES=0 turns it off in a fresh process without changing any result.
 */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { addon } from '../lib/backend/native';
import { runChildScript } from './helpers/child-script';
import { memoryStats } from '../lib/runtime';

const mode = addon?.info().hugePages.mode ?? 'unknown';
const thpOffered = mode === 'madvise' || mode === 'always';
const hasSmaps = fs.existsSync('/proc/self/smaps_rollup');

function weight(n: number, seed: number): Float32Array {
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) w[i] = Math.sin(i * 0.37 + seed) * 0.05;
  return w;
}

// What a child process reports after packing `mib` MiB of fp32 weights and running one M = 1 product on them.
const script = `
const fs = require('node:fs');
const { addon } = require('./lib/backend/native');
const huge = () => Number(/AnonHugePages:\\s+(\\d+) kB/.exec(fs.readFileSync('/proc/self/smaps_rollup', 'utf8'))[1]);
const k = 512, n = 8192;
const w = new Float32Array(k * n); for (let i = 0; i < w.length; i++) w[i] = Math.sin(i * 0.37) * 0.05;
const before = huge();
const packed = [];
for (let i = 0; i < 8; i++) packed.push(addon.packWeight(w, k, n, true));
const after = huge();
const x = new Float32Array(k); for (let i = 0; i < k; i++) x[i] = Math.cos(i);
const y = new Float32Array(n);
addon.gemm({ a: x, b: w, c: y, m: 1, n, k, transB: true, packedB: packed[3] });
console.log(JSON.stringify({ info: addon.info().hugePages, hugeKiB: after - before, y: Array.from(y.subarray(0, 64)) }));
`;

function child(env: Record<string, string | undefined>) {
  return runChildScript<{ info: { mode: string; enabled: boolean }; hugeKiB: number; y: number[] }>(script, env);
}

describe.skipIf(!addon)('packed weights on huge pages', () => {
  it('info().native.hugePages names the kernel mode and is on unless ATTNODE_HUGE_PAGES=0', () => {
    const hp = addon!.info().hugePages;
    expect(['always', 'madvise', 'never', 'unknown']).toContain(hp.mode);
    expect(hp.enabled).toBe(process.env.ATTNODE_HUGE_PAGES !== '0');
  });

  it('memoryStats().packedWeights counts a packed weight of 256 KiB and more, not a smaller one', () => {
    const before = memoryStats().packedWeights!;
    const big = addon!.packWeight(weight(576 * 1536, 1), 576, 1536, true); // 3.4 MiB
    const mid = memoryStats().packedWeights!;
    expect(mid.bytes - before.bytes).toBeGreaterThanOrEqual(576 * 1536 * 4);
    expect(mid.mappedBytes).toBeGreaterThanOrEqual(mid.bytes);
    expect(mid.slabs).toBeGreaterThanOrEqual(1);
    const small = addon!.packWeight(weight(64 * 48, 2), 64, 48, true); // 12 KiB: the C allocator
    expect(memoryStats().packedWeights!.bytes).toBe(mid.bytes);
    expect(addon!.packedWeightInfo(big).bytes).toBe(576 * 1536 * 4);
    expect(addon!.packedWeightInfo(small).bytes).toBe(64 * 48 * 4);
  });

  it.skipIf(!thpOffered || !hasSmaps)(
    `128 MiB of packed weights sit on huge pages (needs THP 'madvise' or 'always', here '${mode}', and /proc/self/smaps_rollup), and ATTNODE_HUGE_PAGES=0 gives the same product on 4 KiB pages`,
    () => {
      const on = child({ ATTNODE_HUGE_PAGES: undefined });
      const off = child({ ATTNODE_HUGE_PAGES: '0' });
      expect(on.info).toEqual({ mode, enabled: true });
      expect(off.info).toEqual({ mode, enabled: false });
      // 8 weights of 16 MiB: at least half of it on 2 MiB pages (the kernel may fall back to 4 KiB pages when it
      // has no free huge page at hand, but not for most of 128 MiB on an idle system).
      expect(on.hugeKiB).toBeGreaterThanOrEqual(64 * 1024);
      expect(off.hugeKiB).toBeLessThan(16 * 1024);
      expect(off.y).toEqual(on.y);
    },
    60_000,
  );
});
