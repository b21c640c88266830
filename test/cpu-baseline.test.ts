/**
 * The CPU baseline check run before a prebuild is loaded (lib/backend/cpu-baseline.ts): which features each arch's
 * prebuild needs, how /proc/cpuinfo is read, and what a CPU without them gets.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BASELINES, checkCpuBaseline, readCpuFlags } from '../lib';

const X86_FLAGS = 'fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx lm avx2';

describe('checkCpuBaseline', () => {
  it('passes an x86-64 CPU that has the x86-64-v1 features', () => {
    expect(checkCpuBaseline('x64', X86_FLAGS.split(' '))).toEqual({ ok: true, baseline: BASELINES.x64, checked: true });
  });

  it('names every missing feature, in the baseline order', () => {
    const flags = X86_FLAGS.split(' ').filter((f) => f !== 'sse2' && f !== 'cmov');
    expect(checkCpuBaseline('x64', flags)).toEqual({ ok: false, baseline: BASELINES.x64, missing: ['cmov', 'sse2'], checked: true });
  });

  it('checks arm64 against fp and asimd', () => {
    expect(checkCpuBaseline('arm64', ['fp', 'asimd', 'evtstrm']).ok).toBe(true);
    expect(checkCpuBaseline('arm64', ['fp'])).toMatchObject({ ok: false, missing: ['asimd'] });
  });

  it('passes, unchecked, when the flags are unknown or the arch has no recorded baseline', () => {
    expect(checkCpuBaseline('x64', null)).toEqual({ ok: true, baseline: BASELINES.x64, checked: false });
    expect(checkCpuBaseline('riscv64', ['i', 'm'])).toEqual({ ok: true, baseline: null, checked: false });
    expect(checkCpuBaseline('toString', [])).toEqual({ ok: true, baseline: null, checked: false });
  });

  it('rejects bad arguments with a TypeError naming them', () => {
    expect(() => checkCpuBaseline(64 as unknown as string, [])).toThrowError(TypeError);
    expect(() => checkCpuBaseline(64 as unknown as string, [])).toThrowError(/argument 'arch' must be a string, got number/);
    expect(() => checkCpuBaseline('x64', 'sse2' as unknown as string[])).toThrowError(/argument 'flags' must be null or an array of strings/);
    expect(() => checkCpuBaseline('x64', [1] as unknown as string[])).toThrowError(TypeError);
  });
});

describe('readCpuFlags', () => {
  const write = (text: string): string => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'attnode-cpuinfo-')), 'cpuinfo');
    fs.writeFileSync(file, text);
    return file;
  };

  it("reads x86's 'flags' and arm64's 'Features' line of the first processor", () => {
    expect(readCpuFlags(write(`processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse sse2\n\nprocessor\t: 1\nflags\t\t: fpu\n`))).toEqual(['fpu', 'sse', 'sse2']);
    expect(readCpuFlags(write('processor\t: 0\nFeatures\t: fp asimd evtstrm aes\nCPU implementer\t: 0x41\n'))).toEqual(['fp', 'asimd', 'evtstrm', 'aes']);
  });

  it('is null when the file is missing or has no flags line', () => {
    expect(readCpuFlags(path.join(os.tmpdir(), 'attnode-no-such-cpuinfo'))).toBeNull();
    expect(readCpuFlags(write('processor\t: 0\nmodel name\t: something\n'))).toBeNull();
  });

  it.skipIf(process.platform !== 'linux')('reads this machine, which has its baseline (the tests run here)', () => {
    const flags = readCpuFlags();
    expect(flags).not.toBeNull();
    expect(checkCpuBaseline(process.arch, flags).ok).toBe(true);
  });
});
