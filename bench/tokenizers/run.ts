/**
 * Tokenizer throughput: attnode's AutoTokenizer (on `@huggingface/tokenizers`, pure JS) against Hugging Face's
 * Rust `tokenizers` (npm `tokenizers`, N-API), on the real GPT-2 and Llama 3 files in ../shared/real/tokenizers,
 * over ~1 MB of mixed text (English, accents, CJK, Arabic, Cyrillic, emoji, code, numbers, URLs, whitespace).
 *
 * Measured per tokenizer, side by side in one run:
 * - load time of the folder;
 * - tokens/s encoding the corpus line by line: attnode `tok.encode` (synchronous), Rust `encode` one line at a time
 *   (awaited: its API is async), Rust `encodeBatch` of all lines (its thread pool, every core);
 * - exactness: lines whose ids differ between the two (the comparison the tests make on fixed texts, here on the
 *   whole corpus).
 *
 * Writes bench/results/tokenizers-<cpu>.md. Run: `npm run bench:tokenizers` (`--mb 0.2` for a quicker run).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import * as rs from 'tokenizers';
import { AutoTokenizer } from '../../lib/tokenizers';

const root = resolve(__dirname, '..', '..');
const REAL = resolve(root, '..', 'shared/real/tokenizers');
const mbArg = process.argv.indexOf('--mb');
const TARGET_BYTES = Math.round((mbArg > 0 ? Number(process.argv[mbArg + 1]) : 1) * 1e6);

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    return m ? m[1]!.trim() : 'unknown CPU';
  } catch {
    return 'unknown CPU';
  }
}

/** A seeded generator so every run tokenizes the same corpus. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function corpus(bytes: number): string[] {
  const r = rng(1234);
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const words = ('the of and to in is was for on that with as by at from this be are it an or which not have one ' +
    'attention transformer tokenizer model layer sequence embedding vector matrix kernel thread memory batch ' +
    'running quickly unbelievable internationalization reconfiguration Node.js TypeScript PyTorch').split(' ');
  const extras = ['Café', 'naïve', 'résumé', 'Zürich', 'São', 'Paulo', '你好', '世界', '机器翻译', '日本語', 'テキスト',
    '한국어', 'مرحبا', 'بالعالم', 'Привет', 'мир', '😀', '👍🏽', '👨‍👩‍👧', '🏳️‍🌈', '🚀', '3.14159', '1,000,000', '2024-05-01',
    'https://example.com/a/b?q=1&x=y', 'user@example.org', 'x_1 = f(y) + 2;', '{"key": [1, 2, 3]}', 'C++', '$100', '#hashtag'];
  const lines: string[] = [];
  let total = 0;
  while (total < bytes) {
    const n = 5 + Math.floor(r() * 60);
    const parts: string[] = [];
    for (let i = 0; i < n; i++) parts.push(r() < 0.15 ? pick(extras) : pick(words));
    let line = parts.join(r() < 0.05 ? '  ' : ' ') + pick(['.', '!', '?', ',', '', '\n\tindented', ':\n']);
    if (r() < 0.5) line = line[0]!.toUpperCase() + line.slice(1);
    lines.push(line);
    total += Buffer.byteLength(line);
  }
  return lines;
}

async function benchOne(name: string, lines: string[]): Promise<string[]> {
  const dir = join(REAL, name);
  let t0 = performance.now();
  const tok = AutoTokenizer.fromPretrained(dir)!;
  const loadOurs = performance.now() - t0;
  t0 = performance.now();
  const rust = rs.Tokenizer.fromFile(join(dir, 'tokenizer.json'));
  const loadRust = performance.now() - t0;

  // Warm-up (JIT, caches) on a slice, then the timed passes.
  for (const l of lines.slice(0, 200)) tok.encode(l, { addSpecialTokens: false });
  for (const l of lines.slice(0, 200)) await rust.encode(l, null, { addSpecialTokens: false });

  t0 = performance.now();
  const ours = lines.map((l) => tok.encode(l, { addSpecialTokens: false }));
  const tOurs = (performance.now() - t0) / 1000;

  t0 = performance.now();
  const rustIds: number[][] = [];
  for (const l of lines) rustIds.push((await rust.encode(l, null, { addSpecialTokens: false })).getIds());
  const tRust = (performance.now() - t0) / 1000;

  t0 = performance.now();
  const batch = await rust.encodeBatch(lines, { addSpecialTokens: false });
  const tRustBatch = (performance.now() - t0) / 1000;
  void batch;

  const tokens = rustIds.reduce((s, x) => s + x.length, 0);
  let differ = 0;
  let firstDiff = '';
  for (let i = 0; i < lines.length; i++) {
    if (ours[i]!.length !== rustIds[i]!.length || ours[i]!.some((v, j) => v !== rustIds[i]![j])) {
      differ++;
      if (!firstDiff) firstDiff = JSON.stringify(lines[i]!.slice(0, 60));
    }
  }
  const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
  const row = (impl: string, secs: number, load: number) => `| ${name} | ${impl} | ${fmt(tokens / secs)} | ${(secs * 1000).toFixed(0)} | ${load.toFixed(0)} |`;
  const out = [
    row('attnode AutoTokenizer (`@huggingface/tokenizers`), sync, 1 thread', tOurs, loadOurs),
    row('Rust `tokenizers`, `await encode` per line', tRust, loadRust),
    row(`Rust \`tokenizers\`, \`encodeBatch\` (${os.availableParallelism()} threads)`, tRustBatch, loadRust),
  ];
  console.log(out.join('\n'));
  const exact = `- ${name}: ${fmt(tokens)} tokens in ${lines.length} lines; lines whose ids differ: ${differ}${firstDiff ? ` (first: ${firstDiff})` : ''}`;
  console.log(exact);
  return [...out, `EXACT${exact}`];
}

async function main(): Promise<void> {
  const lines = corpus(TARGET_BYTES);
  const bytes = lines.reduce((s, l) => s + Buffer.byteLength(l), 0);
  const cpu = cpuModel();
  console.log(`${cpu}, ${os.availableParallelism()} cores, node ${process.version}; corpus ${(bytes / 1e6).toFixed(2)} MB in ${lines.length} lines`);
  const rows: string[] = [];
  const exact: string[] = [];
  for (const name of ['gpt2', 'llama3']) {
    if (!existsSync(join(REAL, name, 'tokenizer.json'))) {
      console.log(`skipped ${name}: ${join(REAL, name, 'tokenizer.json')} is missing`);
      continue;
    }
    for (const r of await benchOne(name, lines)) (r.startsWith('EXACT') ? exact : rows).push(r.replace(/^EXACT/, ''));
  }
  const slug = cpu.toLowerCase().replace(/\(r\)|\(tm\)|cpu|processor|@.*$/g, '').trim().split(/\s+/).slice(0, 3).join('-').replace(/[^a-z0-9-]/g, '');
  const md = [
    '# Tokenizer throughput',
    '',
    `${new Date().toISOString().slice(0, 10)}, ${cpu} (${os.availableParallelism()} cores), node ${process.version}. ` +
      `\`npm run bench:tokenizers\`: ${(bytes / 1e6).toFixed(2)} MB of mixed text (bench/tokenizers/run.ts), ${lines.length} lines, ` +
      'each encoded without special tokens; tokens counted from the Rust ids.',
    '',
    '| tokenizer | implementation | tokens/s | time (ms) | load (ms) |',
    '|---|---|---:|---:|---:|',
    ...rows,
    '',
    'Exactness on the same corpus (attnode vs Rust ids, line by line):',
    '',
    ...exact,
    '',
  ].join('\n');
  const outDir = join(root, 'bench/results');
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, `tokenizers-${slug || 'cpu'}.md`);
  writeFileSync(file, md);
  console.log(`wrote ${file}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
