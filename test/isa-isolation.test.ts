/**
 * One binary must run on any x86-64: AVX2/AVX-512 code may only run after the
 * run-time CPU check. An inline or template function compiled inside an ISA
 * file becomes a weak symbol that the linker may pick for the whole addon, so
 * baseline code could end up executing AVX-512 instructions. This checks the
 * node-gyp objects: ISA translation units define no weak symbols.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { missingPrecondition } from './helpers/preconditions';

const objRoot = path.resolve(__dirname, '..', 'build', 'Release', 'obj.target', 'attnode', 'native');

function isaObjects(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return isaObjects(p);
    // ukernel_avx512.o, and ISA extensions after the ISA: ukernel_avx512_bf16.o.
    return /_(avx2|avx512)(_[a-z0-9]+)*\.o$/.test(e.name) ? [p] : [];
  });
}

const objects = isaObjects(objRoot);
let hasNm = true;
try {
  execFileSync('nm', ['--version'], { stdio: 'ignore' });
} catch {
  hasNm = false;
}

describe('ISA translation units', () => {
  it('the shipped flags never say -march=native', () => {
    const config = require('../native/build-config.json') as { cflags: string[] };
    expect(config.cflags.some((f) => f.startsWith('-march') || f.startsWith('-mavx'))).toBe(false);
  });

  // Without the objects or nm there is nothing to inspect: a visible skip (a failure in CI), never a silent pass.
  if (objects.length === 0) {
    missingPrecondition('no node-gyp ISA object files under build/Release/obj.target/attnode/native (run npm run build:native)');
    return;
  }
  if (!hasNm) {
    missingPrecondition('nm not found (install binutils)');
    return;
  }

  it.each(objects.map((o) => [path.relative(objRoot, o), o]))('%s defines no weak symbols', (_name, file) => {
    const out = execFileSync('nm', ['-C', '--defined-only', file], { encoding: 'utf8' });
    const weak = out.split('\n').filter((l) => / [WVu] /.test(l));
    expect(weak).toEqual([]);
  });
});
