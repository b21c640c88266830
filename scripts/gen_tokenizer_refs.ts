/**
 * Generates the tokenizer fixtures under test/fixtures/tokenizers/ with the
 * Rust `tokenizers` library (npm `tokenizers`, Hugging Face's own
 * implementation behind N-API), an implementation independent of the engine
 * attnode wraps (`@huggingface/tokenizers`, pure JavaScript).
 *
 * 1. Small tokenizer folders for the families without a real file here, each
 *    trained by the Rust trainers on the corpus below, then assembled and
 *    saved by the Rust library as `tokenizer.json`:
 *    - `bert-wordpiece`: BertNormalizer (lowercase, strip accents, CJK, clean text) + WordPiece;
 *      also as BERT's older `vocab.txt` in `bert-wordpiece-legacy`;
 *    - `roberta-bpe`: byte-level BPE with RobertaProcessing; also as `vocab.json` + `merges.txt`
 *      in `roberta-bpe-legacy`;
 *    - `llama2-bpe`: SentencePiece-style BPE with byte fallback (Llama 2 / Mistral layout: Prepend +
 *      Replace normalizer, ByteFallback + Fuse + Strip decoder, `<s>` template);
 *    - `marian-unigram`: Unigram with byte fallback and Metaspace (Marian layout, `</s>` appended);
 *    - `spm-unigram`: the `tokenizer.json` transformers' SpmConverter builds from a SentencePiece Unigram model
 *      with the nmt_nfkc charsmap (`Precompiled` normalizer, Strip, Replace, Metaspace), converted by attnode from
 *      test/fixtures/spm/marian-en-de/source.spm (made by scripts/gen_spm_refs.py) and saved by the Rust library;
 *      the same model as `tokenizer.model` alone in `spm-unigram-model`. Its references add Unicode
 *      normalisation cases (full-width, ligatures, combining marks, halfwidth kana, NBSP).
 * 2. Reference ids, decodes, pairs, truncation and padding, computed by the Rust library, for those
 *    folders and for the real GPT-2 and Llama 3 files in ../shared/real/tokenizers (`refs/*.json`).
 *
 * The Rust trainers break ties in an unspecified order, so a rerun may renumber the trained vocabularies;
 * the folders and their references are always regenerated together.
 *
 * Run: `npm run gen:tokenizer-refs` (needs ../shared/real for the real-file references; skips them
 * with a message otherwise); `npm run gen:tokenizer-refs -- --only spm-unigram` rewrites only that folder (it is
 * converted, not trained, so it does not change with the other folders).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import type * as Rs from 'tokenizers';
import { readSentencePieceModel } from '../lib/io/sentencepiece';
import { spmTokenizerJson } from '../lib/tokenizers/spm';

const root = resolve(__dirname, '..');
// The Rust tokenizers binding is a benchmark peer, installed in bench/ (`npm run bench:install`; the
// gen:tokenizer-refs script does it on first use), so it is resolved from there.
const rs = createRequire(join(root, 'bench', 'package.json'))('tokenizers') as typeof Rs;
const out = join(root, 'test/fixtures/tokenizers');
const realDir = resolve(root, '../shared/real/tokenizers');

/** The training corpus: a few languages and scripts, code, numbers, so the vocabularies have merges for all. */
const CORPUS = `The quick brown fox jumps over the lazy dog. The dog was not amused, and the fox ran away.
Tokenization splits text into pieces; the pieces become ids that a model reads.
Transformers use attention: every token looks at every other token in the sequence.
Hello world! Hello again, world. Hello, hello, hello.
Café, naïve, résumé, coöperate, façade, jalapeño, Zürich, São Paulo, Kraków.
Les élèves étudient à l'école; ils préfèrent les mathématiques et la géographie.
Der schnelle braune Fuchs springt über den faulen Hund. Straße, Mädchen, Grüße.
你好，世界。我们正在学习机器翻译和自然语言处理。日本語のテキストも少しあります。
مرحبا بالعالم. هذه جملة باللغة العربية للاختبار.
Привет, мир! Это проверка токенизатора.
Numbers: 0 1 2 3 42 1999 2024 3.14159 1,000,000 +49 (555) 123-4567.
function add(a, b) { return a + b; }  // adds two numbers
def train(model, data):\n    for x in data:\n        model.step(x)
https://example.com/docs/index.html?query=tokenizer&lang=en
Emoji are text too: 😀 🎉 👍 ❤️ 🚀.
`.repeat(8);

const TEXTS: string[] = [
  'Hello world',
  'The quick brown fox jumps over the lazy dog.',
  'Café naïve résumé',
  'Cafe\u0301 nai\u0308ve re\u0301sume\u0301',
  'ÀÉÎÕÜ àéîõü Ångström',
  '👨‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 thumbs, 🇫🇷 flag',
  '你好，世界。机器翻译',
  '日本語のテキスト 한국어 텍스트',
  'مرحبا بالعالم',
  'Привет, мир!',
  '  leading spaces and   runs   of  spaces  ',
  'tabs\tand\t\ttabs',
  'line one\nline two\n\nline four\r\nwindows',
  'Numbers 0 7 42 1999 3.14159 1,000,000 -12e-3',
  'https://example.com/path/to/page.html?q=a+b&lang=en#section-2',
  'user@example.org wrote: "don\'t", can\'t, we\'ve, they\'ll, I\'m',
  'def f(x):\n    return x ** 2  # square\n',
  'const xs = [1, 2, 3].map((v) => v * 2); // doubled',
  'zxqvj blorptastic unfathomableness qwertyuiop',
  'pneumonoultramicroscopicsilicovolcanoconiosis'.repeat(4),
  '',
  ' ',
  'x\u00a0y\u200bz\ufeffw',
  'ctrl\u0000\u0007chars\u001b',
  'Mixed 中文 and English 和 numbers 123',
  '🙂',
  '\u{1F9D1}\u200D\u{1F4BB} writes code',
  '   \n\t  ',
];

/** Normalisation cases for the charsmap folder (appended, so the indices into TEXTS above stay valid). */
const UNICODE_TEXTS: string[] = [
  'ＦＵＬＬ ｗｉｄｔｈ １２３ ＡＢＣ',
  'ﬁne ﬂow ﬀ ligatures ﬃ',
  'Cafe\u0301 e\u0301\u0301 A\u030a Å',
  'ｶﾞｷﾞ halfwidth ﾊﾟ ｱｲｳ',
  'x\u00a0y\u00a0\u00a0z\u2002w',
  'Zürich ☃ ℃ ™ ½ ① Ⅻ ㍻ ㌔',
  'a\r\nb\u2028c\u0085d',
  '\u3000ideographic\u3000 space  ',
  '한국어 텍스트 \u1100\u1161\u11a8',
  'तमिल हिन्दी ক্ষ',
  '🏳️‍🌈 👩🏽‍💻 🇩🇪',
];

const PAIRS: [string, string][] = [
  ['How old are you?', 'I am six years old.'],
  ['Café?', 'naïve résumé 你好'],
  ['', 'second only'],
];

/** Rust `tokenizers`' JSON (what `save` writes). */
type Json = Record<string, any>;

function rsFromJson(json: Json): Rs.Tokenizer {
  return rs.Tokenizer.fromString(JSON.stringify(json));
}

async function trainJson(model: Rs.Model, setup: (t: Rs.Tokenizer) => void): Promise<Json> {
  const dir = mkdtempSync(join(tmpdir(), 'tokgen-'));
  try {
    const corpus = join(dir, 'corpus.txt');
    writeFileSync(corpus, CORPUS);
    const t = new rs.Tokenizer(model);
    setup(t);
    t.train([corpus]);
    const file = join(dir, 'tok.json');
    t.save(file);
    return JSON.parse(readFileSync(file, 'utf8'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function added(content: string, id: number, special = true): Json {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special };
}

const BYTES = Array.from({ length: 256 }, (_, i) => `<0x${i.toString(16).toUpperCase().padStart(2, '0')}>`);

/** Saves a tokenizer description through the Rust library (which checks and normalises it). */
function saveFolder(name: string, json: Json, config: Json): Rs.Tokenizer {
  const dir = join(out, name);
  mkdirSync(dir, { recursive: true });
  const tok = rsFromJson(json);
  tok.save(join(dir, 'tokenizer.json'));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config, null, 2) + '\n');
  return rs.Tokenizer.fromFile(join(dir, 'tokenizer.json'));
}

async function buildBert(): Promise<void> {
  const trained = await trainJson(rs.WordPiece.empty(), (t) => {
    t.setNormalizer(rs.bertNormalizer({ lowercase: true, stripAccents: true, handleChineseChars: true, cleanText: true }));
    t.setPreTokenizer(rs.bertPreTokenizer());
  });
  const specials = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
  const tokens = [...specials, ...Object.entries(trained.model.vocab as Record<string, number>)
    .sort((a, b) => a[1] - b[1]).map(([t]) => t).filter((t) => !specials.includes(t))];
  const vocab = Object.fromEntries(tokens.map((t, i) => [t, i]));
  const json: Json = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: specials.map((t) => added(t, vocab[t])),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: '[SEP]', type_id: 1 } }],
      special_tokens: { '[CLS]': { id: '[CLS]', ids: [vocab['[CLS]']], tokens: ['[CLS]'] }, '[SEP]': { id: '[SEP]', ids: [vocab['[SEP]']], tokens: ['[SEP]'] } },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
  const config = {
    tokenizer_class: 'BertTokenizer', do_lower_case: true, model_max_length: 32, padding_side: 'right',
    pad_token: '[PAD]', unk_token: '[UNK]', cls_token: '[CLS]', sep_token: '[SEP]', mask_token: '[MASK]',
  };
  const tok = saveFolder('bert-wordpiece', json, config);
  const legacy = join(out, 'bert-wordpiece-legacy');
  mkdirSync(legacy, { recursive: true });
  writeFileSync(join(legacy, 'vocab.txt'), tokens.join('\n') + '\n');
  writeFileSync(join(legacy, 'tokenizer_config.json'), JSON.stringify(config, null, 2) + '\n');
  await writeRefs('bert-wordpiece', tok, { padId: vocab['[PAD]']!, padToken: '[PAD]', side: 'right', modelMax: 32 });
}

async function buildRoberta(): Promise<void> {
  const trained = await trainJson(rs.BPE.empty(), (t) => t.setPreTokenizer(rs.byteLevelPreTokenizer(false, true)));
  const specials = ['<s>', '<pad>', '</s>', '<unk>', '<mask>'];
  // Every byte has a symbol so no text is ever unknown (RoBERTa's initial alphabet).
  const alphabet = rs.byteLevelAlphabet().sort();
  const learned = Object.entries(trained.model.vocab as Record<string, number>).sort((a, b) => a[1] - b[1]).map(([t]) => t);
  const tokens = [...specials, ...alphabet, ...learned.filter((t) => !alphabet.includes(t))];
  const vocab = Object.fromEntries(tokens.map((t, i) => [t, i]));
  const merges: string[] = (trained.model.merges as (string | [string, string])[]).map((m) => (Array.isArray(m) ? m.join(' ') : m));
  const json: Json = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: specials.map((t) => ({ ...added(t, vocab[t]), lstrip: t === '<mask>' })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'RobertaProcessing', sep: ['</s>', vocab['</s>']], cls: ['<s>', vocab['<s>']], trim_offsets: true, add_prefix_space: false },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges },
  };
  const config = {
    tokenizer_class: 'RobertaTokenizer', model_max_length: 40, padding_side: 'right', add_prefix_space: false,
    bos_token: '<s>', eos_token: '</s>', sep_token: '</s>', cls_token: '<s>', unk_token: '<unk>', pad_token: '<pad>',
    mask_token: { content: '<mask>', lstrip: true, rstrip: false, normalized: false, single_word: false },
  };
  const tok = saveFolder('roberta-bpe', json, config);
  const legacy = join(out, 'roberta-bpe-legacy');
  mkdirSync(legacy, { recursive: true });
  writeFileSync(join(legacy, 'vocab.json'), JSON.stringify(vocab));
  writeFileSync(join(legacy, 'merges.txt'), '#version: 0.2\n' + merges.join('\n') + '\n');
  writeFileSync(join(legacy, 'tokenizer_config.json'), JSON.stringify(config, null, 2) + '\n');
  await writeRefs('roberta-bpe', tok, { padId: vocab['<pad>']!, padToken: '<pad>', side: 'right', modelMax: 40 });
}

async function buildLlama2(): Promise<void> {
  const trained = await trainJson(rs.BPE.empty(), (t) => t.setPreTokenizer(rs.metaspacePreTokenizer('▁', 'always', true)));
  const specials = ['<unk>', '<s>', '</s>'];
  const learned = Object.entries(trained.model.vocab as Record<string, number>).sort((a, b) => a[1] - b[1]).map(([t]) => t);
  const tokens = [...specials, ...BYTES, ...learned];
  const vocab = Object.fromEntries(tokens.map((t, i) => [t, i]));
  const merges: string[] = (trained.model.merges as (string | [string, string])[]).map((m) => (Array.isArray(m) ? m.join(' ') : m));
  const json: Json = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: specials.map((t) => added(t, vocab[t])),
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: { type: 'Sequence', decoders: [
      { type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' },
      { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges },
  };
  const config = {
    tokenizer_class: 'LlamaTokenizer', model_max_length: 48, padding_side: 'left', legacy: false,
    bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', pad_token: '</s>', add_bos_token: true, add_eos_token: false,
  };
  const tok = saveFolder('llama2-bpe', json, config);
  await writeRefs('llama2-bpe', tok, { padId: vocab['</s>']!, padToken: '</s>', side: 'left', modelMax: 48 });
}

async function buildMarian(): Promise<void> {
  const trained = await trainJson(rs.Unigram.empty(), (t) => t.setPreTokenizer(rs.metaspacePreTokenizer('▁', 'always', true)));
  const learned = (trained.model.vocab as [string, number][]);
  const vocab: [string, number][] = [['</s>', 0], ['<unk>', 0], ['<pad>', 0], ...BYTES.map((b): [string, number] => [b, 0]), ...learned];
  const json: Json = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [added('</s>', 0), added('<unk>', 1), added('<pad>', 2)],
    normalizer: { type: 'NFKC' },
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
      pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
      special_tokens: { '</s>': { id: '</s>', ids: [0], tokens: ['</s>'] } },
    },
    decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
    model: { type: 'Unigram', unk_id: 1, vocab, byte_fallback: true },
  };
  const config = {
    tokenizer_class: 'MarianTokenizer', model_max_length: 512, padding_side: 'right',
    eos_token: '</s>', unk_token: '<unk>', pad_token: '<pad>',
  };
  const tok = saveFolder('marian-unigram', json, config);
  await writeRefs('marian-unigram', tok, { padId: 2, padToken: '<pad>', side: 'right', modelMax: 512 });
}

interface PadInfo { padId: number; padToken: string; side: 'left' | 'right'; modelMax: number | null }

/** Reference encodings computed by the Rust library for one tokenizer. */
async function writeRefs(name: string, tok: Rs.Tokenizer, pad: PadInfo | null, textList: string[] = TEXTS): Promise<void> {
  const texts = [];
  for (const text of textList) {
    const withSpecial = await tok.encode(text, null, { addSpecialTokens: true });
    const ids = withSpecial.getIds();
    const idsNoSpecial = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
    texts.push({
      text,
      ids,
      idsNoSpecial,
      tokens: withSpecial.getTokens(),
      decoded: ids.length ? await tok.decode(ids, false) : '',
      decodedSkipSpecial: ids.length ? await tok.decode(ids, true) : '',
    });
  }
  // Decoding prefixes of emoji ids cuts UTF-8 sequences: how invalid bytes become U+FFFD must match too.
  const prefixDecodes = [];
  for (const text of [TEXTS[5]!, TEXTS[26]!]) {
    const ids = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
    for (let k = 1; k <= Math.min(ids.length, 14); k++) {
      prefixDecodes.push({ ids: ids.slice(0, k), decoded: await tok.decode(ids.slice(0, k), false) });
    }
  }
  const pairs = [];
  for (const [a, b] of PAIRS) {
    const e = await tok.encode(a, b, { addSpecialTokens: true });
    pairs.push({ a, b, ids: e.getIds(), typeIds: e.getTypeIds() });
  }
  const truncation = [];
  for (const maxLength of [5, 8, 13]) {
    tok.setTruncation(maxLength, { strategy: 'LongestFirst' as Rs.TruncationStrategy, direction: 'right' });
    for (const [a, b] of [[TEXTS[1]!, null], [TEXTS[14]!, null], ...PAIRS.map(([x, y]) => [x, y + ' ' + TEXTS[1]])] as [string, string | null][]) {
      const e = await tok.encode(a, b, { addSpecialTokens: true });
      truncation.push({ a, b, maxLength, ids: e.getIds() });
    }
  }
  tok.disableTruncation();
  let padding = null;
  if (pad) {
    const batch = [TEXTS[0]!, TEXTS[1]!, TEXTS[6]!];
    tok.setPadding({ padId: pad.padId, padToken: pad.padToken, direction: pad.side });
    const enc = await tok.encodeBatch(batch, { addSpecialTokens: true });
    padding = { texts: batch, side: pad.side, ids: enc.map((e) => e.getIds()), attentionMask: enc.map((e) => e.getAttentionMask()), typeIds: enc.map((e) => e.getTypeIds()) };
    tok.disablePadding();
  }
  mkdirSync(join(out, 'refs'), { recursive: true });
  const file = join(out, 'refs', `${name}.json`);
  writeFileSync(file, JSON.stringify({ generator: 'scripts/gen_tokenizer_refs.ts with npm tokenizers 0.23.2 (Rust)', name, texts, prefixDecodes, pairs, truncation, padding }) + '\n');
  console.log(`wrote ${file}`);
}

/** SpmConverter's tokenizer.json for a Unigram model with a charsmap, converted by attnode, checked by Rust. */
async function buildSpmUnigram(): Promise<void> {
  const modelFile = join(root, 'test/fixtures/spm/marian-en-de/source.spm');
  const json = spmTokenizerJson(readSentencePieceModel(modelFile), {
    legacy: true, addPrefixSpace: true, addBosToken: false, addEosToken: false, bosToken: undefined, eosToken: undefined,
    specialTokens: [], addedTokensDecoder: new Map(),
  });
  const tok = saveFolder('spm-unigram', json, { model_max_length: 64 });
  const modelOnly = join(out, 'spm-unigram-model');
  mkdirSync(modelOnly, { recursive: true });
  writeFileSync(join(modelOnly, 'tokenizer.model'), readFileSync(modelFile));
  writeFileSync(join(modelOnly, 'tokenizer_config.json'), JSON.stringify({ model_max_length: 64 }, null, 2) + '\n');
  await writeRefs('spm-unigram', tok, null, [...TEXTS, ...UNICODE_TEXTS]);
}

async function main(): Promise<void> {
  if (process.argv.includes('--only')) {
    const which = process.argv[process.argv.indexOf('--only') + 1];
    if (which !== 'spm-unigram') throw new Error(`--only supports spm-unigram, got ${which}`);
    await buildSpmUnigram();
    return;
  }
  await buildSpmUnigram();
  await buildBert();
  await buildRoberta();
  await buildLlama2();
  await buildMarian();
  for (const name of ['gpt2', 'llama3']) {
    const file = join(realDir, name, 'tokenizer.json');
    if (!existsSync(file)) {
      console.log(`skipped ${name}: ${file} is missing`);
      continue;
    }
    await writeRefs(name, rs.Tokenizer.fromFile(file), null);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
