/**
 * The MarianMT fixture folders (test/fixtures/hf/marian-*, scripts/gen_marian_fixtures.py) as paths to
 * load. marian-opus-spm is stored without its tokenizer files: its folder is assembled once per process in a
 * temporary directory from the model files and test/fixtures/spm/marian-en-de's SentencePiece files.
 */
import { copyFileSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

const FIXTURES = path.join(__dirname, '..', 'fixtures');
export const HF = path.join(FIXTURES, 'hf');
const SPM = path.join(FIXTURES, 'spm', 'marian-en-de');

let assembled: string | null = null;

/** The folder of the fixture `name`, ready to load with its tokenizer. */
export function marianFolder(name: string): string {
  if (name !== 'marian-opus-spm') return path.join(HF, name);
  if (!assembled) {
    const d = mkdtempSync(path.join(tmpdir(), 'attnode-marian-opus-'));
    for (const dir of [path.join(HF, name), SPM]) {
      for (const f of readdirSync(dir)) copyFileSync(path.join(dir, f), path.join(d, f));
    }
    assembled = d;
  }
  return assembled;
}
