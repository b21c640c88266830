/**
 * The README doc-test harness's reading of markdown (test/helpers/readme-blocks.ts): which blocks run, their
 * directives, and the program of a block that continues another.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { blockFixtures, blockProgram, readmeBlocks } from './helpers/readme-blocks';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'attnode-md-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function md(text: string): string {
  const file = path.join(dir, `${Math.random().toString(36).slice(2)}.md`);
  fs.writeFileSync(file, text);
  return file;
}

describe('readmeBlocks', () => {
  it('runs ts and js blocks (not sh or python), with the directives of the comment just above', () => {
    const blocks = readmeBlocks(md([
      '# Title', '```sh', 'npm ci', '```', '', '## A',
      '<!-- doctest: fixture hf/a + spm/b as ./m; fixture readme/x.pt as x.pt -->', '',
      '```ts', "import { nn } from 'attnode';", 'const a = 1;', '```',
      '```python', 'x = 1', '```',
      '<!-- doctest: continues -->', '```js', "import { ops, nn } from 'attnode';", 'const a = 2;', '```',
      '<!-- doctest: skip needs the network -->', '```ts', 'fetch(x)', '```',
      '<!-- doctest: config -->', '```json', '{ "kind": "seed" }', '```',
      '```json', '{ "not": "run" }', '```',
    ].join('\n')));
    expect(blocks.map((b) => [b.index, b.line, b.lang, b.heading])).toEqual([
      [1, 9, 'ts', 'A'], [2, 17, 'js', 'A'], [3, 22, 'ts', 'A'], [4, 26, 'json', 'A'],
    ]);
    expect(blocks[0]!.fixtures).toEqual([{ sources: ['hf/a', 'spm/b'], dest: './m' }, { sources: ['readme/x.pt'], dest: 'x.pt' }]);
    expect(blocks[1]!.continues).toBe(true);
    expect(blocks[2]!.skip).toBe('needs the network');
    expect(blocks[3]!.code).toBe(`import { parseModelConfig } from 'attnode';\n\nparseModelConfig({ "kind": "seed" }, 'README.md:26');`);
    // A continued block: merged imports, the first block at top level, the next in its own scope.
    expect(blockProgram(blocks, blocks[1]!)).toBe([
      "import { nn, ops } from 'attnode';", 'export {};', 'const a = 1;', '{', 'const a = 2;', '}', '',
    ].join('\n'));
    expect(blockFixtures(blocks, blocks[1]!)).toEqual(blocks[0]!.fixtures);
  });

  it('an unknown directive or a block continuing nothing is an error', () => {
    expect(() => readmeBlocks(md('<!-- doctest: fixtures a as b -->\n```ts\nx\n```\n'))).toThrowError(/unknown doctest directive 'fixtures a as b'/);
    const [only] = readmeBlocks(md('<!-- doctest: continues -->\n```ts\nx\n```\n'));
    expect(() => blockProgram([only!], only!)).toThrowError(/README block 1 \(line 2\) continues no earlier block/);
  });
});
