/**
 * The two model folders of the OpenAI load test at real shapes with random weights (`bench/load/openai.ts
 * --bench-models` builds them when missing; nothing is downloaded):
 *
 * - `bench/models/minilm-l6-random`: a BERT with all-MiniLM-L6-v2's shape, its WordPiece tokenizer and
 *   sentence-transformers pooling, written by `bench/embeddings/make_model.py` (torch 1.13, Debian's python3);
 * - `bench/models/smollm-135m-random-serve`: SmolLM-135M's shape and weights as `bench/llm/make_model.ts` makes
 *   them (SMOLLM_CONFIG, makeWeights(1)), plus a tokenizer so it can serve text: GPT-2's byte-level BPE from
 *   `../shared/real/tokenizers/gpt2/tokenizer.json` cut to the model's 49152 ids the way SmolLM's is laid out
 *   (`<|endoftext|>`, `<|im_start|>`, `<|im_end|>` at 0, 1, 2 — config.json's bos 1 / eos 2 —, then GPT-2's first
 *   49149 tokens and the merges that build them: GPT-2's merge i makes token 256 + i from lower ids, so a prefix of
 *   the merges is a complete BPE over a prefix of the vocabulary), and a ChatML chat template.
 *
 *   npx tsx bench/load/make_models.ts [--force]
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { saveSafetensors } from '../../lib/io/safetensors';
import { SMOLLM_CONFIG, makeWeights } from '../llm/make_model';

const ROOT = path.resolve(__dirname, '..', '..');
export const EMBED_DIR = path.join(ROOT, 'bench', 'models', 'minilm-l6-random');
export const GEN_DIR = path.join(ROOT, 'bench', 'models', 'smollm-135m-random-serve');
const GPT2_TOKENIZER = path.join(ROOT, '..', 'shared', 'real', 'tokenizers', 'gpt2', 'tokenizer.json');

const SPECIALS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];
const CHATML = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}"
  + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

interface TokenizerJson {
  added_tokens: { id: number; content: string; special: boolean }[];
  model: { type: string; vocab: Record<string, number>; merges: (string | [string, string])[] };
  [k: string]: unknown;
}

/** GPT-2's tokenizer cut to `vocabSize` ids with SmolLM's three special tokens first (see the module comment). */
export function smolTokenizer(gpt2: TokenizerJson, vocabSize: number): TokenizerJson {
  if (gpt2.model?.type !== 'BPE') throw new Error(`${GPT2_TOKENIZER}: field 'model.type' must be "BPE", got ${JSON.stringify(gpt2.model?.type)}`);
  const keep = vocabSize - SPECIALS.length; // GPT-2 ids 0 … keep − 1
  const vocab: Record<string, number> = {};
  SPECIALS.forEach((t, i) => (vocab[t] = i));
  for (const [tok, id] of Object.entries(gpt2.model.vocab)) if (id < keep) vocab[tok] = id + SPECIALS.length;
  const merges = gpt2.model.merges.slice(0, keep - 256);
  for (const [i, m] of merges.entries()) {
    const [a, b] = typeof m === 'string' ? (m.split(' ') as [string, string]) : m;
    if (gpt2.model.vocab[a + b] !== 256 + i) throw new Error(`${GPT2_TOKENIZER}: merge ${i} (${a} ${b}) does not make token ${256 + i}; the cut needs GPT-2's order`);
  }
  if (Object.keys(vocab).length !== vocabSize) throw new Error(`cut vocabulary has ${Object.keys(vocab).length} tokens, expected ${vocabSize}`);
  return {
    ...gpt2,
    added_tokens: SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    model: { ...gpt2.model, vocab, merges },
  };
}

/** Writes the SmolLM-shaped serving folder (config, float32 weights, tokenizer, chat template). */
export async function makeGenFolder(dir = GEN_DIR): Promise<void> {
  if (!fs.existsSync(GPT2_TOKENIZER)) {
    throw new Error(`${GPT2_TOKENIZER} is missing: the SmolLM-shaped folder takes its tokenizer from GPT-2's (see ../shared/real/README.md)`);
  }
  const gpt2 = JSON.parse(fs.readFileSync(GPT2_TOKENIZER, 'utf8')) as TokenizerJson;
  const tok = smolTokenizer(gpt2, SMOLLM_CONFIG.vocab_size);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tok));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), `${JSON.stringify({
    tokenizer_class: 'GPT2Tokenizer', bos_token: '<|im_start|>', eos_token: '<|im_end|>', unk_token: '<|endoftext|>',
    pad_token: '<|endoftext|>', model_max_length: SMOLLM_CONFIG.max_position_embeddings, add_prefix_space: false, chat_template: CHATML,
  }, null, 2)}\n`);
  fs.writeFileSync(path.join(dir, 'config.json'), `${JSON.stringify(SMOLLM_CONFIG, null, 2)}\n`);
  await saveSafetensors(path.join(dir, 'model.safetensors'), makeWeights(1), { format: 'pt' });
}

/** Builds whichever of the two folders is missing (both with `force`). */
export async function ensureBenchModels(force = false): Promise<{ embedModel: string; genModel: string }> {
  if (force || !fs.existsSync(path.join(EMBED_DIR, 'model.safetensors'))) {
    console.error(`building ${path.relative(ROOT, EMBED_DIR)} (bench/embeddings/make_model.py)`);
    const r = spawnSync('/usr/bin/python3', [path.join(ROOT, 'bench', 'embeddings', 'make_model.py'), '--out', EMBED_DIR], { cwd: ROOT, stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`bench/embeddings/make_model.py failed (exit ${r.status}); it needs Debian's python3-torch`);
  }
  if (force || !fs.existsSync(path.join(GEN_DIR, 'model.safetensors'))) {
    console.error(`building ${path.relative(ROOT, GEN_DIR)}`);
    await makeGenFolder();
  }
  return { embedModel: EMBED_DIR, genModel: GEN_DIR };
}

if (require.main === module) {
  const { values } = parseArgs({ options: { force: { type: 'boolean', default: false } } });
  ensureBenchModels(values.force).then(
    (d) => console.log(`ready: ${path.relative(ROOT, d.embedModel)}, ${path.relative(ROOT, d.genModel)}`),
    (e: unknown) => {
      console.error((e as Error).message);
      process.exit(1);
    },
  );
}
