/**
 * The fp32 GEMM's blocking chosen per CPU (native/kernels/gemm/gemm.cc, choose_tuning): the cpuid family/model the
 * addon decodes against the kernel's /proc/cpuinfo, the table entry picked for the microarchitecture on the AVX-512
 * path, the cache-size rules everywhere else, the ATTNODE_GEMM_BLOCKING override (fresh processes), and that a GEMM
 * under an override still computes the product.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { addon, type NativeInfo } from '../lib/backend/native';
import { runChildScript } from './helpers/child-script';
import { naiveGemm } from './helpers/reference';

const startInfo = addon?.info();
const envOverride = process.env.ATTNODE_GEMM_BLOCKING;
const cpuinfo = fs.existsSync('/proc/cpuinfo') ? fs.readFileSync('/proc/cpuinfo', 'utf8') : '';
const procField = (name: string): number | null => {
  const m = new RegExp(`^${name}\\s*:\\s*(\\d+)`, 'm').exec(cpuinfo);
  return m ? Number(m[1]) : null;
};
const isX86 = process.arch === 'x64' || process.arch === 'ia32';
const measured: Record<string, { kc: number; nc: number; ncStream: number; directA: boolean; directB: boolean }> = {
  zen4: { kc: 384, nc: 480, ncStream: 192, directA: true, directB: true },
  zen5: { kc: 384, nc: 336, ncStream: 336, directA: false, directB: false },
};

/**
 * What choose_tuning derives from the cache sizes for an `mr` x `nr` micro-kernel. `prefetches`: the kernel
 * prefetches the next block (AVX-512), so the streamed width keeps two blocks within 60% of L2; else it is nc.
 */
function derived(l1d: number, l2: number, mr: number, nr: number, prefetches: boolean) {
  const kc = Math.min(1024, Math.max(128, Math.floor(l1d / (4 * mr * 4))));
  const nc = Math.max(nr, Math.floor(Math.floor(l2 / 2 / (kc * 4)) / nr) * nr);
  const rule = Math.floor(Math.floor((l2 * 6) / 10) / (2 * kc * 4) / nr) * nr;
  const ncStream = prefetches ? Math.min(Math.max(rule, nr), Math.max(nr, nc)) : nc;
  return { kc, nc, ncStream };
}

describe.skipIf(!addon)('GEMM blocking per CPU (native addon)', () => {
  const a = addon!;
  afterAll(() => a.setIsa(startInfo!.detectedIsa));

  it.skipIf(!isX86 || procField('cpu family') === null)(
    'cpuid family/model match /proc/cpuinfo, and the microarchitecture name follows from them (x86 with /proc/cpuinfo)',
    () => {
      const { cpu } = a.info();
      expect(cpu.family).toBe(procField('cpu family'));
      expect(cpu.model).toBe(procField('model'));
      const amd = cpu.vendor === 'AuthenticAMD';
      const zen4Models = (m: number) => (m >= 0x10 && m <= 0x1f) || (m >= 0x60 && m <= 0x7f) || (m >= 0xa0 && m <= 0xaf);
      const want = !amd
        ? ''
        : cpu.family === 26
          ? 'zen5'
          : cpu.family === 25
            ? zen4Models(cpu.model)
              ? 'zen4'
              : 'zen3'
            : '';
      expect(cpu.uarch).toBe(want);
    },
  );

  it.skipIf(envOverride !== undefined)('the AVX-512 path takes the measured entry of this microarchitecture, or the cache rules (skipped when ATTNODE_GEMM_BLOCKING is set)', () => {
    a.setIsa(startInfo!.detectedIsa);
    const { cpu, gemm, isa } = a.info();
    const entry = isa === 'avx512' ? measured[cpu.uarch] : undefined;
    if (entry) {
      expect(gemm).toEqual({ entry: cpu.uarch, mr: 8, nr: 48, ...entry });
    } else {
      expect(gemm.entry).toBe('derived');
      expect(gemm.directA).toBe(false);
      // Only the AVX-512 micro-kernel reads B in place; the rules turn it on wherever it exists.
      expect(gemm.directB).toBe(isa === 'avx512');
      expect({ kc: gemm.kc, nc: gemm.nc, ncStream: gemm.ncStream }).toEqual(
        derived(cpu.l1dBytes, cpu.l2Bytes, gemm.mr, gemm.nr, isa === 'avx512'),
      );
    }
  });

  // startInfo.isa is the path ATTNODE_ISA left active: setIsa cannot raise past it.
  it.skipIf(envOverride !== undefined || !['avx512', 'avx2'].includes(startInfo?.isa ?? ''))(
    'a lowered kernel path has no table entry: the cache rules for its micro-kernel, A packed (needs avx2 or avx512 active, no ATTNODE_GEMM_BLOCKING)',
    () => {
      a.setIsa('avx2');
      const { cpu, gemm } = a.info();
      expect(gemm).toEqual({
        entry: 'derived',
        mr: 6,
        nr: 16,
        directA: false,
        directB: false,
        ...derived(cpu.l1dBytes, cpu.l2Bytes, 6, 16, false),
      });
      a.setIsa(startInfo!.detectedIsa);
    },
  );
});

// A fresh process per setting: the override is read once.
const script = `
const a = require(${JSON.stringify(path.resolve(__dirname, '..', 'lib', 'backend', 'native.ts'))}).addon;
const g = a.info().gemm;
const [m, n, k] = [37, 101, 203];
const A = new Float32Array(m * k).map((_, i) => Math.sin(i));
const B = new Float32Array(n * k).map((_, i) => Math.cos(i * 0.7));
const out = {};
for (const transB of [false, true]) {
  const C = new Float32Array(m * n);
  a.gemm({ a: A, b: B, c: C, m, n, k, transB });
  out[transB ? 't' : 'n'] = Array.from(C);
}
// 96 columns (two whole panels of 48) of a [k, 96] B: what the AVX-512 path may read in place.
const C96 = new Float32Array(m * 96);
a.gemm({ a: A, b: B.subarray(0, k * 96), c: C96, m, n: 96, k });
out.w = Array.from(C96);
console.log(JSON.stringify({ gemm: g, isa: a.info().isa, out }));
`;

function child(env: Record<string, string | undefined>) {
  return runChildScript<{
    gemm: NativeInfo['gemm'];
    isa: string;
    out: { n: number[]; t: number[]; w: number[] };
  }>(script, env);
}

describe.skipIf(!addon)('ATTNODE_GEMM_BLOCKING (fresh processes)', () => {
  it('replaces the named fields, marks the entry +env, and the product is still right', () => {
    const base = child({ ATTNODE_GEMM_BLOCKING: undefined });
    const r = child({ ATTNODE_GEMM_BLOCKING: 'kc=64,nc=100,ncs=70,a=packed,b=packed' });
    expect(r.gemm.entry).toBe(`${base.gemm.entry}+env`);
    expect(r.gemm.kc).toBe(64);
    expect(r.gemm.nc).toBe(Math.max(r.gemm.nr, Math.floor(100 / r.gemm.nr) * r.gemm.nr));
    expect(r.gemm.ncStream).toBe(Math.max(r.gemm.nr, Math.floor(70 / r.gemm.nr) * r.gemm.nr));
    expect(r.gemm.directA).toBe(false);
    expect(r.gemm.directB).toBe(false);
    const [m, n, k] = [37, 101, 203];
    const A = new Float32Array(m * k).map((_, i) => Math.sin(i));
    const B = new Float32Array(n * k).map((_, i) => Math.cos(i * 0.7));
    for (const transB of [false, true]) {
      const { c: ref, mag } = naiveGemm(A, B, m, n, k, false, transB);
      const got = transB ? r.out.t : r.out.n;
      let worst = 0;
      for (let i = 0; i < m * n; i++) worst = Math.max(worst, Math.abs(got[i]! - ref[i]!) / (mag[i]! + 1e-30));
      expect(worst, transB ? 'x·Wᵀ' : 'x·W').toBeLessThan(1e-6);
    }
  });

  it('ignores malformed settings (the entry keeps its name)', () => {
    const base = child({ ATTNODE_GEMM_BLOCKING: undefined });
    for (const bad of ['kc=3', 'nc=abc', 'ncs=0', 'a=sideways', 'b=strided', 'speed=11', 'kc=384,,', 'kc']) {
      const r = child({ ATTNODE_GEMM_BLOCKING: bad });
      expect(r.gemm, bad).toEqual(base.gemm);
    }
  });

  it.skipIf(startInfo?.isa !== 'avx512')('A read in place and A packed give the same bits (needs the avx512 path active)', () => {
    const rows = child({ ATTNODE_GEMM_BLOCKING: 'kc=128,a=rows' });
    const packed = child({ ATTNODE_GEMM_BLOCKING: 'kc=128,a=packed' });
    expect(rows.gemm.directA).toBe(true);
    expect(packed.gemm.directA).toBe(false);
    expect(rows.out).toEqual(packed.out);
  });

  it.skipIf(startInfo?.isa !== 'avx512')('B read in place and B packed give the same bits (needs the avx512 path active)', () => {
    const rows = child({ ATTNODE_GEMM_BLOCKING: 'b=rows' });
    const packed = child({ ATTNODE_GEMM_BLOCKING: 'b=packed' });
    expect(rows.gemm.directB).toBe(true);
    expect(packed.gemm.directB).toBe(false);
    expect(rows.out).toEqual(packed.out);
  });
});

