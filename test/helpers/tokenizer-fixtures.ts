/** Shared by the tokenizer tests: loading a fixture folder's tokenizer and its reference file. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AutoTokenizer, type PreTrainedTokenizer } from '../../lib';

/** `<fixtures>/refs/<name>.json`, as written by the reference generators. */
export function readRefs<T>(fixtures: string, name: string): T {
  return JSON.parse(readFileSync(join(fixtures, 'refs', `${name}.json`), 'utf8')) as T;
}

/** The folder's tokenizer; a folder without one fails the test. */
export function loadTokenizer(dir: string): PreTrainedTokenizer {
  const tok = AutoTokenizer.fromPretrained(dir);
  if (tok === null) throw new Error(`no tokenizer in ${dir}`);
  return tok;
}
