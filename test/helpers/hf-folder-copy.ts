/**
 * Bad-folder tests start from a good fixture folder: a temporary copy of its
 * config.json and model.safetensors, whose config a test then edits.
 */
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

const HF = path.join(__dirname, '..', 'fixtures', 'hf');

/** A temporary copy of test/fixtures/hf/`name`'s config.json and model.safetensors. */
export function copyHfFolder(name: string): string {
  const d = mkdtempSync(path.join(tmpdir(), `attnode-${name}-`));
  for (const f of ['config.json', 'model.safetensors']) copyFileSync(path.join(HF, name, f), path.join(d, f));
  return d;
}

/** Rewrites `dir`'s config.json after `edit` changed its parsed object. */
export function editConfig(dir: string, edit: (config: Record<string, unknown>) => void): void {
  const file = path.join(dir, 'config.json');
  const c = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(c);
  writeFileSync(file, JSON.stringify(c));
}
