/**
 * Reading a Hugging Face model folder's tokenizer files into one description:
 * the `tokenizer.json` object (the `tokenizers` library's serialisation) plus
 * the `tokenizer_config.json` / `special_tokens_map.json` settings.
 *
 * The older formats are converted to the `tokenizer.json` a Hugging Face
 * "fast" tokenizer would build from them (transformers' `convert_slow_tokenizer`):
 *
 * | files                        | becomes                                                        |
 * | ---------------------------- | -------------------------------------------------------------- |
 * | `vocab.txt`                  | BertNormalizer + BertPreTokenizer + WordPiece, `[CLS] A [SEP]` |
 * | `vocab.json` + `merges.txt`  | ByteLevel + BPE; RobertaProcessing for RoBERTa-style folders   |
 * | `tokenizer.model` (BPE)      | LlamaConverter: BPE with byte fallback, `<s>` per add_bos_token |
 * | `tokenizer.model` (Unigram)  | SpmConverter: Precompiled charsmap normalizer, Metaspace        |
 *
 * Marian folders (`source.spm` + `target.spm` + `vocab.json`) have no fast tokenizer in transformers: they are
 * read as they are ({@link MarianTokenizerFiles}) and run with SentencePiece's own rules (`marian.ts`).
 *
 * Every problem is an `Error` that names the file and the field, so a bad
 * folder is never a crash deep inside the tokenizer engine.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readSentencePieceModel, type SentencePieceModel } from '../io/sentencepiece';
import { spmTokenizerJson } from './spm';

/** A parsed JSON object (the tokenizer files are JSON objects at the top level). */
export type JsonObject = Record<string, unknown>;

/** What {@link readTokenizerFolder} found in a folder with a `tokenizer.json` (or a file converted to one). */
export interface JsonTokenizerFiles {
  kind: 'json';
  /** The folder, as given. */
  dir: string;
  /** The `tokenizer.json` object (converted from the older files when the folder has no `tokenizer.json`). */
  tokenizerJson: JsonObject;
  /** `tokenizer_config.json` merged over `special_tokens_map.json` (both optional). */
  config: JsonObject;
  /** Which file(s) the tokenizer came from, for error messages. */
  source: string;
}

/** A Marian folder: two SentencePiece models and the id vocabulary (or two, with `separate_vocabs`). */
export interface MarianTokenizerFiles {
  kind: 'marian';
  dir: string;
  config: JsonObject;
  /** `source.spm`: encodes source text. */
  sourceSpm: SentencePieceModel;
  /** `target.spm`: encodes target text and decodes. */
  targetSpm: SentencePieceModel;
  /** `vocab.json`: piece → id (shared by both sides unless `separate_vocabs`). */
  vocab: Map<string, number>;
  /** `target_vocab.json` when `separate_vocabs` is true, else null. */
  targetVocab: Map<string, number> | null;
  source: string;
}

/** What {@link readTokenizerFolder} found in a folder. */
export type TokenizerFiles = JsonTokenizerFiles | MarianTokenizerFiles;

/** The model types the engine implements (WordLevel and others are refused by name). */
const SUPPORTED_MODELS = new Set(['BPE', 'WordPiece', 'Unigram']);

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function fieldError(file: string, field: string, requirement: string, got: unknown): Error {
  let desc: string;
  if (got === undefined) desc = 'it is missing';
  else if (got === null) desc = 'got null';
  else if (Array.isArray(got)) desc = `got an array of ${got.length}`;
  else if (typeof got === 'object') desc = 'got an object';
  else desc = `got ${JSON.stringify(got)?.slice(0, 60)}`;
  return new Error(`${file}: field '${field}' must ${requirement}; ${desc}`);
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot read (${(e as Error).message})`);
  }
}

function readJsonObject(file: string): JsonObject {
  const text = readText(file);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message}); the file may be truncated`);
  }
  if (!isObject(parsed)) throw new Error(`${file}: the top level must be a JSON object`);
  return parsed;
}

/** A special-token setting as a string: either a string or an AddedToken object `{ content }`. */
export function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return undefined;
}

function checkInteger(file: string, field: string, v: unknown): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    throw fieldError(file, field, 'be a non-negative integer', v);
  }
}

/**
 * Checks the parts of a `tokenizer.json` the engine reads without checking,
 * so malformed files fail here with the file and field named.
 */
export function validateTokenizerJson(file: string, tj: JsonObject): void {
  const model = tj.model;
  if (!isObject(model)) throw fieldError(file, 'model', 'be an object', model);
  const type = model.type;
  // Files written by old versions of `tokenizers` omit model.type; the shape of the vocab tells.
  let kind: string;
  if (type === undefined) {
    if (Array.isArray(model.vocab)) kind = 'Unigram';
    else if ('merges' in model) kind = 'BPE';
    else if ('continuing_subword_prefix' in model || 'max_input_chars_per_word' in model) kind = 'WordPiece';
    else throw fieldError(file, 'model.type', 'name the model (BPE, WordPiece or Unigram)', type);
    model.type = kind;
  } else if (typeof type !== 'string' || !SUPPORTED_MODELS.has(type)) {
    throw fieldError(file, 'model.type', `be one of ${[...SUPPORTED_MODELS].join(', ')} (unknown or unsupported model type)`, type);
  } else {
    kind = type;
  }

  if (kind === 'Unigram') {
    if (!Array.isArray(model.vocab)) throw fieldError(file, 'model.vocab', 'be an array of [piece, score] pairs', model.vocab);
    model.vocab.forEach((entry, i) => {
      if (!Array.isArray(entry) || typeof entry[0] !== 'string' || typeof entry[1] !== 'number') {
        throw fieldError(file, `model.vocab[${i}]`, 'be a [piece, score] pair', entry);
      }
    });
    if (model.unk_id !== undefined && model.unk_id !== null) {
      checkInteger(file, 'model.unk_id', model.unk_id);
      if ((model.unk_id as number) >= model.vocab.length) {
        throw fieldError(file, 'model.unk_id', `be below the vocabulary size ${model.vocab.length}`, model.unk_id);
      }
    }
  } else {
    if (!isObject(model.vocab)) throw fieldError(file, 'model.vocab', 'be an object mapping tokens to ids', model.vocab);
    for (const [tok, id] of Object.entries(model.vocab)) checkInteger(file, `model.vocab[${JSON.stringify(tok)}]`, id);
    if (model.unk_token !== undefined && model.unk_token !== null && typeof model.unk_token !== 'string') {
      throw fieldError(file, 'model.unk_token', 'be a string or null', model.unk_token);
    }
    if (kind === 'WordPiece' && typeof model.unk_token === 'string' && !(model.unk_token in model.vocab)) {
      throw fieldError(file, 'model.unk_token', 'be a token of model.vocab', model.unk_token);
    }
    if (kind === 'BPE') {
      if (!Array.isArray(model.merges)) throw fieldError(file, 'model.merges', 'be an array', model.merges);
      model.merges.forEach((m, i) => {
        const ok = typeof m === 'string'
          ? m.indexOf(' ') > 0
          : Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string';
        if (!ok) throw fieldError(file, `model.merges[${i}]`, 'be "a b" or ["a", "b"]', m);
      });
    }
  }

  const added = tj.added_tokens ?? [];
  if (!Array.isArray(added)) throw fieldError(file, 'added_tokens', 'be an array', added);
  added.forEach((t, i) => {
    if (!isObject(t)) throw fieldError(file, `added_tokens[${i}]`, 'be an object', t);
    checkInteger(file, `added_tokens[${i}].id`, t.id);
    if (typeof t.content !== 'string' || t.content.length === 0) {
      throw fieldError(file, `added_tokens[${i}].content`, 'be a non-empty string', t.content);
    }
  });
  tj.added_tokens = added;
  for (const part of ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder'] as const) {
    const v = tj[part];
    if (v === undefined) tj[part] = null;
    else if (v !== null && !(isObject(v) && typeof v.type === 'string')) {
      throw fieldError(file, `${part}.type`, 'name the component (or the field must be null)', isObject(v) ? v.type : v);
    }
  }
}

function configFiles(dir: string): JsonObject {
  const config: JsonObject = {};
  const mapFile = join(dir, 'special_tokens_map.json');
  if (existsSync(mapFile)) Object.assign(config, readJsonObject(mapFile));
  const cfgFile = join(dir, 'tokenizer_config.json');
  if (existsSync(cfgFile)) Object.assign(config, readJsonObject(cfgFile));
  return config;
}

function special(config: JsonObject, key: string, fallback: string): string {
  return tokenContent(config[key]) ?? fallback;
}

/** transformers' BertConverter: `vocab.txt` (one token a line, the line number is the id). */
function fromVocabTxt(file: string, config: JsonObject): JsonObject {
  const lines = readText(file).split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const vocab: Record<string, number> = {};
  lines.forEach((line, i) => {
    // BERT's vocab.txt keeps tokens as written; only the line ending is not part of a token.
    const tok = line.endsWith('\r') ? line.slice(0, -1) : line;
    if (!(tok in vocab)) vocab[tok] = i;
  });
  if (lines.length === 0) throw new Error(`${file}: the vocabulary is empty`);
  const unk = special(config, 'unk_token', '[UNK]');
  const cls = special(config, 'cls_token', '[CLS]');
  const sep = special(config, 'sep_token', '[SEP]');
  const pad = special(config, 'pad_token', '[PAD]');
  const mask = special(config, 'mask_token', '[MASK]');
  for (const [name, tok] of [['unk_token', unk], ['cls_token', cls], ['sep_token', sep]] as const) {
    if (!(tok in vocab)) throw new Error(`${file}: ${name} ${JSON.stringify(tok)} is not in the vocabulary`);
  }
  const lower = config.do_lower_case ?? true;
  const stripAccents = config.strip_accents ?? null;
  const added = [pad, unk, cls, sep, mask]
    .filter((t) => t in vocab)
    .map((t) => ({ id: vocab[t]!, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  return {
    version: '1.0',
    added_tokens: added,
    normalizer: {
      type: 'BertNormalizer',
      clean_text: true,
      handle_chinese_chars: config.tokenize_chinese_chars ?? true,
      strip_accents: stripAccents,
      lowercase: lower,
    },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    model: { type: 'WordPiece', unk_token: unk, continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: cls, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: sep, type_id: 0 } }],
      pair: [
        { SpecialToken: { id: cls, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: sep, type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: sep, type_id: 1 } },
      ],
      special_tokens: Object.fromEntries([cls, sep].map((t) => [t, { id: t, ids: [vocab[t]!], tokens: [t] }])),
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
  };
}

/** transformers' GPT2Converter / RobertaConverter: `vocab.json` + `merges.txt`. */
function fromVocabJsonMerges(vocabFile: string, mergesFile: string, config: JsonObject): JsonObject {
  const vocab = readJsonObject(vocabFile);
  for (const [tok, id] of Object.entries(vocab)) checkInteger(vocabFile, JSON.stringify(tok), id);
  const merges: string[] = [];
  readText(mergesFile).split('\n').forEach((line, i) => {
    const l = line.endsWith('\r') ? line.slice(0, -1) : line;
    // The first line of merges.txt is a "#version" header; blank lines carry nothing.
    if (l === '' || (i === 0 && l.startsWith('#version'))) return;
    if (l.split(' ').length !== 2) throw new Error(`${mergesFile}: line ${i + 1} must be two tokens separated by one space, got ${JSON.stringify(l.slice(0, 60))}`);
    merges.push(l);
  });
  const cls = String(config.tokenizer_class ?? '');
  const bos = tokenContent(config.bos_token);
  const eos = tokenContent(config.eos_token);
  const roberta = /roberta|bart|longformer|camembert/i.test(cls) || (!cls && bos === '<s>' && eos === '</s>' && '<s>' in vocab);
  const addPrefixSpace = config.add_prefix_space === true;
  const added: JsonObject[] = [];
  const seen = new Set<string>();
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'cls_token', 'pad_token', 'mask_token']) {
    const t = tokenContent(config[key]);
    if (t === undefined || seen.has(t) || !(t in vocab)) continue;
    seen.add(t);
    // RoBERTa's mask token strips the space before it, as its tokenizer_config declares.
    const lstrip = isObject(config[key]) ? (config[key] as JsonObject).lstrip === true : key === 'mask_token' && roberta;
    added.push({ id: vocab[t], content: t, single_word: false, lstrip, rstrip: false, normalized: false, special: true });
  }
  added.sort((a, b) => (a.id as number) - (b.id as number));
  let post: JsonObject;
  if (roberta) {
    const s = special(config, 'sep_token', '</s>');
    const c = special(config, 'cls_token', '<s>');
    for (const t of [s, c]) if (!(t in vocab)) throw new Error(`${vocabFile}: special token ${JSON.stringify(t)} is not in the vocabulary`);
    post = { type: 'RobertaProcessing', sep: [s, vocab[s]], cls: [c, vocab[c]], trim_offsets: true, add_prefix_space: addPrefixSpace };
  } else {
    post = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true };
  }
  return {
    version: '1.0',
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: addPrefixSpace, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, vocab, merges,
    },
    post_processor: post,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
  };
}

/** A `vocab.json` as a Map (ids checked); `__proto__` and other keys stay plain entries. */
function readVocabMap(file: string): Map<string, number> {
  const vocab = new Map<string, number>();
  for (const [tok, id] of Object.entries(readJsonObject(file))) {
    checkInteger(file, JSON.stringify(tok), id);
    vocab.set(tok, id as number);
  }
  if (vocab.size === 0) throw new Error(`${file}: the vocabulary is empty`);
  return vocab;
}

function configBool(file: string, config: JsonObject, key: string, fallback: boolean): boolean {
  const v = config[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') throw fieldError(file, key, 'be true or false', v);
  return v;
}

/** `added_tokens_decoder` of tokenizer_config.json: `{ "<id>": { content, lstrip, rstrip, special, ... } }`. */
export function addedTokensDecoder(file: string, config: JsonObject): Map<number, JsonObject> {
  const out = new Map<number, JsonObject>();
  const raw = config.added_tokens_decoder;
  if (raw === undefined || raw === null) return out;
  if (!isObject(raw)) throw fieldError(file, 'added_tokens_decoder', 'be an object mapping ids to tokens', raw);
  for (const [key, entry] of Object.entries(raw)) {
    const id = Number(key);
    if (!/^\d+$/.test(key) || !Number.isSafeInteger(id)) throw fieldError(file, `added_tokens_decoder[${JSON.stringify(key)}]`, 'have a non-negative integer id as its key', key);
    if (!isObject(entry) || typeof entry.content !== 'string' || entry.content === '') {
      throw fieldError(file, `added_tokens_decoder[${JSON.stringify(key)}].content`, 'be a non-empty string', isObject(entry) ? entry.content : entry);
    }
    out.set(id, entry);
  }
  return out;
}

/** The special tokens a transformers tokenizer adds from its configuration. */
function configSpecialTokens(config: JsonObject, defaults: Record<string, string>): string[] {
  const out: string[] = [];
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token']) {
    const t = key in config ? tokenContent(config[key]) : defaults[key];
    if (t !== undefined && !out.includes(t)) out.push(t);
  }
  const extra = config.additional_special_tokens;
  if (Array.isArray(extra)) {
    for (const e of extra) {
      const t = tokenContent(e);
      if (t !== undefined && !out.includes(t)) out.push(t);
    }
  }
  return out;
}

/** Tokenizer classes whose slow tokenizer converts with LlamaConverter (BPE) or plain SpmConverter (Unigram). */
const LLAMA_CLASSES = /^(Llama|CodeLlama)Tokenizer(Fast)?$/;
const SPM_CLASSES = /^(PreTrainedTokenizerFast)$/;

/** transformers' conversion of `tokenizer.model` (LlamaConverter for BPE, SpmConverter for Unigram). */
function fromTokenizerModel(file: string, dir: string, config: JsonObject): JsonObject {
  const model = readSentencePieceModel(file);
  const cfgFile = join(dir, 'tokenizer_config.json');
  const cls = config.tokenizer_class;
  const bpe = model.trainerSpec.modelType === 'bpe';
  if (cls !== undefined && cls !== null && (typeof cls !== 'string' || !(bpe ? LLAMA_CLASSES : SPM_CLASSES).test(cls))) {
    throw fieldError(cfgFile, 'tokenizer_class', `name a tokenizer whose ${bpe ? 'BPE' : 'Unigram'} tokenizer.model converts with transformers' ${bpe ? 'LlamaConverter (LlamaTokenizer, CodeLlamaTokenizer)' : 'SpmConverter'}; other families need their tokenizer.json`, cls);
  }
  const defaults: Record<string, string> = bpe ? { bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' } : {};
  return spmTokenizerJson(model, {
    legacy: configBool(cfgFile, config, 'legacy', true),
    addPrefixSpace: configBool(cfgFile, config, 'add_prefix_space', true),
    addBosToken: configBool(cfgFile, config, 'add_bos_token', bpe),
    addEosToken: configBool(cfgFile, config, 'add_eos_token', false),
    bosToken: 'bos_token' in config ? tokenContent(config.bos_token) : defaults.bos_token,
    eosToken: 'eos_token' in config ? tokenContent(config.eos_token) : defaults.eos_token,
    specialTokens: configSpecialTokens(config, defaults),
    addedTokensDecoder: addedTokensDecoder(cfgFile, config),
  });
}

/** A Marian folder's files (MarianTokenizer's `source.spm`, `target.spm`, `vocab.json`, `target_vocab.json`). */
function readMarianFolder(dir: string, config: JsonObject): MarianTokenizerFiles {
  for (const name of ['source.spm', 'target.spm', 'vocab.json']) {
    if (!existsSync(join(dir, name))) throw new Error(`${dir}: has ${existsSync(join(dir, 'source.spm')) ? 'source.spm' : 'target.spm'} but no ${name} (a Marian tokenizer needs source.spm, target.spm and vocab.json)`);
  }
  const separate = configBool(join(dir, 'tokenizer_config.json'), config, 'separate_vocabs', false);
  const targetVocabFile = join(dir, 'target_vocab.json');
  if (separate && !existsSync(targetVocabFile)) throw new Error(`${dir}: tokenizer_config.json sets separate_vocabs but the folder has no target_vocab.json`);
  return {
    kind: 'marian',
    dir,
    config,
    sourceSpm: readSentencePieceModel(join(dir, 'source.spm')),
    targetSpm: readSentencePieceModel(join(dir, 'target.spm')),
    vocab: readVocabMap(join(dir, 'vocab.json')),
    targetVocab: separate ? readVocabMap(targetVocabFile) : null,
    source: join(dir, 'source.spm'),
  };
}

/**
 * Reads the tokenizer files of a model folder.
 *
 * @returns null when the folder has none of `tokenizer.json`, `source.spm`/`target.spm`, `tokenizer.model`,
 *   `vocab.txt`, `vocab.json` (a model folder without a tokenizer, which loads as such).
 * @throws Error naming the file (and field) for unreadable, malformed or incomplete files,
 *   e.g. `vocab.json` without `merges.txt`; TypeError if `dir` is not a string; Error if it is not a folder.
 */
export function readTokenizerFolder(dir: string): TokenizerFiles | null {
  if (typeof dir !== 'string') {
    throw new TypeError(`AutoTokenizer.fromPretrained: argument 'dir' must be a folder path string, got ${typeof dir}`);
  }
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new Error(`AutoTokenizer.fromPretrained: argument 'dir' must be an existing folder, got ${JSON.stringify(dir)}`);
  }
  const tjFile = join(dir, 'tokenizer.json');
  const config = configFiles(dir);
  if (existsSync(tjFile)) {
    const tj = readJsonObject(tjFile);
    validateTokenizerJson(tjFile, tj);
    return { kind: 'json', dir, tokenizerJson: tj, config, source: tjFile };
  }
  if (existsSync(join(dir, 'source.spm')) || existsSync(join(dir, 'target.spm'))) return readMarianFolder(dir, config);
  const spmFile = join(dir, 'tokenizer.model');
  if (existsSync(spmFile)) {
    const tj = fromTokenizerModel(spmFile, dir, config);
    validateTokenizerJson(spmFile, tj);
    return { kind: 'json', dir, tokenizerJson: tj, config, source: spmFile };
  }
  const vocabTxt = join(dir, 'vocab.txt');
  if (existsSync(vocabTxt)) {
    const tj = fromVocabTxt(vocabTxt, config);
    validateTokenizerJson(vocabTxt, tj);
    return { kind: 'json', dir, tokenizerJson: tj, config, source: vocabTxt };
  }
  const vocabJson = join(dir, 'vocab.json');
  const mergesTxt = join(dir, 'merges.txt');
  if (existsSync(vocabJson) || existsSync(mergesTxt)) {
    if (!existsSync(vocabJson)) throw new Error(`${dir}: has merges.txt but no vocab.json (a byte-level BPE tokenizer needs both)`);
    if (!existsSync(mergesTxt)) throw new Error(`${dir}: has vocab.json but no merges.txt (a byte-level BPE tokenizer needs both)`);
    const tj = fromVocabJsonMerges(vocabJson, mergesTxt, config);
    validateTokenizerJson(`${vocabJson} + merges.txt`, tj);
    return { kind: 'json', dir, tokenizerJson: tj, config, source: vocabJson };
  }
  return null;
}
