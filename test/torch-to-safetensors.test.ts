/**
 * scripts/torch_to_safetensors.py writes safetensors with PyTorch alone: a torch.save state dict converted by it
 * loads into the same tensors as attnode's own torch.save reader gives, and a checkpoint's entry is picked with
 * --key. Needs /usr/bin/python3 with torch (Debian's python3-torch); without it the test is a visible skip.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSafetensors } from '../lib/io/safetensors';
import { loadTorchCheckpoint } from '../lib/io/torch/checkpoint';
import { missingPrecondition } from './helpers/preconditions';

const ROOT = path.resolve(__dirname, '..');
const SCRIPT = path.join(ROOT, 'scripts', 'torch_to_safetensors.py');
const PYTHON = '/usr/bin/python3';
const hasTorch = fs.existsSync(PYTHON) && spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;

describe('scripts/torch_to_safetensors.py', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'attnode-t2s-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  if (!hasTorch) {
    // Always a skip, also in CI: the suite must not need torch (the script is for users who have it).
    missingPrecondition(`${PYTHON} with torch (apt-get install python3-torch) to run scripts/torch_to_safetensors.py`, false);
    return;
  }
  const run = (args: string[]) => spawnSync(PYTHON, [SCRIPT, ...args], { encoding: 'utf8', timeout: 120_000 });

  it('converts a torch.save state dict: the same keys, shapes and values as loadTorchCheckpoint reads', async () => {
    const out = path.join(dir, 'seed.safetensors');
    const r = run([path.join(ROOT, 'test', 'fixtures', 'readme', 'seed.pt'), out]);
    expect(r.status, r.stderr).toBe(0);
    const { tensors: fromPt } = await loadTorchCheckpoint(path.join(ROOT, 'test', 'fixtures', 'readme', 'seed.pt'));
    const { tensors, metadata } = await loadSafetensors(out);
    expect(metadata).toEqual({ format: 'pt' });
    expect(Object.keys(tensors).sort()).toEqual(Object.keys(fromPt).sort());
    expect(Object.keys(tensors)).toContain('transformer.encoder.layers.1.self_attn.in_proj_weight');
    for (const [k, t] of Object.entries(fromPt)) {
      expect(tensors[k]!.shape, k).toEqual(t.shape);
      expect(Array.from(tensors[k]!.contiguous().data), k).toEqual(Array.from(t.contiguous().data));
    }
  }, 120_000);

  it('--key picks a checkpoint\'s state dict; a missing entry is refused with the entries named', async () => {
    // The checkpoint holds an optimizer's floats, which torch 1.13's weights-only loader refuses: --full-pickle (our file).
    const ckpt = path.join(ROOT, 'test', 'fixtures', 'readme', 'last.ckpt');
    const out = path.join(dir, 'last.safetensors');
    const r = run([ckpt, out, '--key', 'state_dict', '--full-pickle']);
    expect(r.status, r.stderr).toBe(0);
    const { tensors } = await loadSafetensors(out);
    const { tensors: sd } = await loadTorchCheckpoint(ckpt, { key: 'state_dict' });
    expect(Object.keys(tensors).sort()).toEqual(['bias', 'weight']);
    expect(Array.from(tensors.weight!.data)).toEqual(Array.from(sd.weight!.contiguous().data));
    const bad = run([ckpt, out, '--key', 'model', '--full-pickle']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/no entry 'model' \(entries: state_dict, epoch, optimizer\)/);
  }, 120_000);
});
