/**
 * Without the addon, attnode keeps working on the TypeScript backend and says
 * so once, clearly; asking for the native backend explicitly is an error that
 * carries the reason. (Simulated with ATTNODE_DISABLE_NATIVE=1 in a child.)
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { expect, it } from 'vitest';

it('falls back to the JS backend, warns once, and explains when native is requested', () => {
  const lib = path.resolve(__dirname, '..', 'lib', 'index.ts');
  const script = `
    import { ops, randn, getBackend, info } from ${JSON.stringify(lib)};
    const x = randn([4, 8], { seed: 1 });
    ops.softmax(x); ops.layerNorm(x, [8]); ops.softmax(x);
    let err = '';
    try { getBackend('native'); } catch (e) { err = e.message; }
    console.log(JSON.stringify({ backend: info().backend, native: info().native, err }));`;
  const tsx = require.resolve('tsx/cli');
  const r = spawnSync(process.execPath, [tsx, '--eval', script], {
    env: { ...process.env, ATTNODE_DISABLE_NATIVE: '1' },
    encoding: 'utf8',
  });
  expect(r.status, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { backend: string; native: unknown; err: string };
  expect(out.backend).toBe('js');
  expect(out.native).toBeNull();
  expect(out.err).toMatch(/backend 'native' is not available.*ATTNODE_DISABLE_NATIVE/);
  const warnings = r.stderr.split('\n').filter((l) => l.includes('native backend unavailable'));
  expect(warnings).toHaveLength(1);
});
