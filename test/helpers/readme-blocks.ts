/**
 * The code blocks of README.md as programs: every ```ts / ```js block, with what the HTML comment just above it
 * asks for (`<!-- doctest: ... -->`, directives separated by `;`):
 *
 * - `fixture <src>[ + <src>...] as <dest>`: copies files or folders under test/fixtures/ to `<dest>` in the block's
 *   working directory (several sources merge into one folder), e.g.
 *   `fixture hf/llama-chat as ./SmolLM-135M`.
 * - `continues`: the block runs after the code of the block it continues (the nearest earlier block without
 *   `continues`), in a scope of its own, so it may use that block's names and redeclare its own; imports are
 *   merged.
 * - `serve <src> as <name> at <url>`: the test starts `attnode serve --model <src> --served-model-name <name>`
 *   from the package on a free port and the block's `<url>` is replaced by the server's.
 * - `skip <reason>`: the block is reported as skipped with the reason.
 * - `config` (on a ```json block): the JSON is a `attnode serve` / `attnode run` model config; the block runs as
 *   `parseModelConfig(<json>)` from the package, so a documented config that does not validate fails.
 */
import * as fs from 'node:fs';

export interface ServeDirective {
  source: string;
  name: string;
  url: string;
}

export interface ReadmeBlock {
  /** 1-based index among the ts/js blocks. */
  index: number;
  /** Line of the opening fence in README.md. */
  line: number;
  lang: string;
  /** The block's own code. */
  code: string;
  /** Heading the block is under. */
  heading: string;
  fixtures: { sources: string[]; dest: string }[];
  continues: boolean;
  serve: ServeDirective[];
  skip: string | null;
}

const LANGS = new Set(['ts', 'typescript', 'js', 'javascript']);

type Directives = Pick<ReadmeBlock, 'fixtures' | 'continues' | 'serve' | 'skip'> & { config: boolean };

function parseDirectives(comment: string, where: string): Directives {
  const out: Directives = { fixtures: [], continues: false, serve: [], skip: null, config: false };
  for (const raw of comment.split(';')) {
    const d = raw.trim();
    if (d === '') continue;
    let m: RegExpExecArray | null;
    if (d === 'continues') out.continues = true;
    else if (d === 'config') out.config = true;
    else if ((m = /^fixture (.+) as (\S+)$/.exec(d))) out.fixtures.push({ sources: m[1]!.split('+').map((s) => s.trim()), dest: m[2]! });
    else if ((m = /^serve (\S+) as (\S+) at (\S+)$/.exec(d))) out.serve.push({ source: m[1]!, name: m[2]!, url: m[3]! });
    else if ((m = /^skip (.+)$/.exec(d))) out.skip = m[1]!;
    else throw new SyntaxError(`${where}: unknown doctest directive '${d}'`);
  }
  return out;
}

/** The ts/js code blocks of a markdown file with their directives. */
export function readmeBlocks(file: string): ReadmeBlock[] {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const blocks: ReadmeBlock[] = [];
  let heading = '';
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^#+ /.test(line)) heading = line.replace(/^#+ /, '');
    const fence = /^```(\S*)\s*$/.exec(line);
    if (!fence) continue;
    const lang = fence[1]!;
    let end = i + 1;
    while (end < lines.length && !/^```\s*$/.test(lines[end]!)) end++;
    let j = i - 1;
    while (j >= 0 && lines[j]!.trim() === '') j--;
    const comment = j >= 0 ? /^<!--\s*doctest:(.*)-->\s*$/.exec(lines[j]!) : null;
    const { config, ...directives } = comment
      ? parseDirectives(comment[1]!, `${file}:${i + 1}`)
      : { fixtures: [], continues: false, serve: [], skip: null, config: false };
    const text = lines.slice(i + 1, end).join('\n');
    if (LANGS.has(lang)) {
      blocks.push({ index: blocks.length + 1, line: i + 1, lang, code: text, heading, ...directives });
    } else if (lang === 'json' && config) {
      const code = `import { parseModelConfig } from 'attnode';\n\nparseModelConfig(${text}, 'README.md:${i + 1}');`;
      blocks.push({ index: blocks.length + 1, line: i + 1, lang, code, heading, ...directives });
    }
    i = end;
  }
  return blocks;
}

/** Splits code into its leading single-line import statements and the rest. */
function splitImports(code: string): { imports: string[]; body: string } {
  const imports: string[] = [];
  const body: string[] = [];
  for (const line of code.split('\n')) {
    if (/^import .* from '[^']+';\s*$/.test(line) || /^import '[^']+';\s*$/.test(line)) imports.push(line.trim());
    else body.push(line);
  }
  return { imports, body: body.join('\n') };
}

/** Merges `import { a, b } from 'm'` lines per module (default and namespace imports kept as they are). */
function mergeImports(imports: string[]): string[] {
  const named = new Map<string, Set<string>>();
  const other = new Set<string>();
  for (const imp of imports) {
    const m = /^import \{([^}]*)\} from '([^']+)';$/.exec(imp);
    if (!m) {
      other.add(imp);
      continue;
    }
    const set = named.get(m[2]!) ?? new Set<string>();
    for (const n of m[1]!.split(',').map((s) => s.trim()).filter(Boolean)) set.add(n);
    named.set(m[2]!, set);
  }
  // A name imported both as a value and as `type X` is kept as the value.
  const lines = [...other];
  for (const [mod, names] of named) {
    const values = new Set([...names].filter((n) => !n.startsWith('type ')));
    const list = [...values, ...[...names].filter((n) => n.startsWith('type ') && !values.has(n.slice(5)))];
    lines.push(`import { ${list.join(', ')} } from '${mod}';`);
  }
  return lines;
}

/** The program a block runs as: its code, after the code it continues (see the module comment). */
export function blockProgram(blocks: readonly ReadmeBlock[], block: ReadmeBlock): string {
  const chain: ReadmeBlock[] = [block];
  for (let i = block.index - 2; chain[0]!.continues && i >= 0; i--) chain.unshift(blocks[i]!);
  if (chain[0]!.continues) throw new SyntaxError(`README block ${block.index} (line ${block.line}) continues no earlier block`);
  const parts = chain.map((b) => splitImports(b.code));
  const imports = mergeImports(parts.flatMap((p) => p.imports));
  const bodies = parts.map((p, i) => (i === 0 ? p.body : `{\n${p.body}\n}`));
  // `export {}` keeps a block without imports a module (top-level await).
  return [...imports, 'export {};', ...bodies].join('\n') + '\n';
}

/** Every fixture a block's chain needs (a continued block's fixtures too). */
export function blockFixtures(blocks: readonly ReadmeBlock[], block: ReadmeBlock): ReadmeBlock['fixtures'] {
  const out = [...block.fixtures];
  for (let i = block.index - 2, b = block; b.continues && i >= 0; i--) {
    b = blocks[i]!;
    out.unshift(...b.fixtures);
  }
  return out;
}
