/**
 * The real-model part of `attnode demo` (what `npm start` runs): a trained
 * causal LM streams text from a prompt, token by token as the kernels produce
 * it, then the same prompt runs on the pure-TypeScript backend, with tokens/s
 * for both.
 *
 * The model is `--model` (a Hugging Face folder, or a llama2.c `.bin` with
 * `--tokenizer`), else the embedded default: karpathy's stories260K with its
 * tok512 tokenizer in `models/stories260K/` of the package. A checkout
 * without that folder says so and skips this part (it never downloads).
 */
import { existsSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { availableBackends } from '../backend/registry';
import { loadLlama2c } from '../io/llama2c';
import { AutoModelForCausalLM } from '../models/auto';
import type { GPT2LMHeadModel } from '../models/gpt2';
import type { LlamaForCausalLM } from '../models/llama';
import { Tensor } from '../tensor';
import { AutoTokenizer, IncrementalDecoder } from '../tokenizers';

/** What the story part takes from the command line. */
export interface StoryOptions {
  /** A Hugging Face causal-LM folder or a llama2.c checkpoint; null: the embedded default. */
  model: string | null;
  /** llama2.c `tokenizer.bin` (with a `.bin` model). */
  tokenizer: string | null;
  prompt: string;
  /** New tokens on the native backend (the TS backend runs fewer, see below). */
  maxNewTokens: number;
  quick: boolean;
}

/** Where the embedded default lives, relative to the package root (lib/cli and dist/cli are two levels down). */
export const EMBEDDED_MODEL_DIR = path.resolve(__dirname, '..', '..', 'models', 'stories260K');
const EMBEDDED = { model: 'stories260K.bin', tokenizer: 'tok512.bin' };

interface LoadedStoryModel {
  name: string;
  model: LlamaForCausalLM | GPT2LMHeadModel;
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
  eos: number[];
}

async function loadStoryModel(o: StoryOptions): Promise<LoadedStoryModel | string> {
  let file = o.model;
  let tok = o.tokenizer;
  if (file === null) {
    const m = path.join(EMBEDDED_MODEL_DIR, EMBEDDED.model);
    const t = path.join(EMBEDDED_MODEL_DIR, EMBEDDED.tokenizer);
    if (!existsSync(m) || !existsSync(t)) {
      return `skipped: the embedded model (${path.relative(process.cwd(), m) || m} and ${EMBEDDED.tokenizer}) is not in this checkout; ` +
        'run `attnode demo --model <hf causal-LM folder>` or `--model model.bin --tokenizer tokenizer.bin` (llama2.c)';
    }
    file = m;
    tok = t;
  }
  if (statSync(file).isDirectory()) {
    const model = await AutoModelForCausalLM.fromPretrained(file);
    const t = AutoTokenizer.fromPretrained(file);
    if (!t) throw new Error(`${file}: no tokenizer files; the demo needs text in and out`);
    const eos = t.eosTokenId === null || t.eosTokenId === undefined ? [] : [t.eosTokenId];
    return {
      name: path.basename(path.resolve(file)), model,
      encode: (text) => t.encode(text), decode: (ids) => t.decode(ids, { skipSpecialTokens: true }), eos,
    };
  }
  if (!tok) throw new Error(`${file}: a llama2.c checkpoint needs its tokenizer.bin (--tokenizer)`);
  const { model, tokenizer } = await loadLlama2c(file, { tokenizer: tok });
  const t = tokenizer!;
  return { name: path.basename(file), model, encode: (text) => t.encode(text), decode: (ids) => t.decode(ids), eos: [t.eosTokenId] };
}

/** Greedy generation of up to `n` tokens after `prompt`, each token's text handed to `onText` as it settles. */
async function streamTokens(m: LoadedStoryModel, prompt: number[], n: number, onText: (s: string) => void): Promise<{ ids: number[]; ms: number }> {
  const dec = new IncrementalDecoder((ids) => m.decode(ids), prompt);
  const ids: number[] = [];
  const t0 = performance.now();
  await m.model.generateAsync(new Tensor(Int32Array.from(prompt), [1, prompt.length], 'int32'), {
    // Greedy whatever a folder's generation_config.json says (the demo compares the two backends' tokens).
    maxNewTokens: n, eosTokenId: m.eos, doSample: false,
    onToken: (t) => {
      ids.push(t[0]!);
      onText(dec.push(t[0]!));
    },
  });
  const ms = performance.now() - t0;
  onText(dec.flush());
  return { ids, ms };
}

/** Runs the story part; prints a named skip when there is no model to run. */
export async function runStoryDemo(o: StoryOptions, write: (s: string) => void = (s) => process.stdout.write(s)): Promise<void> {
  const loaded = await loadStoryModel(o);
  if (typeof loaded === 'string') {
    write(`\nReal model: ${loaded}\n`);
    return;
  }
  const m = loaded;
  const prompt = m.encode(o.prompt);
  const params = m.model.numParameters();
  write(`\nReal model: ${m.name} (${(params / 1e6).toFixed(2)}M parameters), greedy, prompt ${JSON.stringify(o.prompt)} (${prompt.length} tokens)\n`);
  const backends = availableBackends();
  const results: { backend: string; tokens: number; ms: number; ids: number[] }[] = [];
  if (backends.includes('native')) {
    m.model.useBackend('native');
    write(`native: ${o.prompt}`);
    const r = await streamTokens(m, prompt, o.maxNewTokens, write);
    write('\n');
    results.push({ backend: 'native', tokens: r.ids.length, ms: r.ms, ids: r.ids });
  }
  // The TS backend is ~10-100x slower: a shorter run gives its rate without a long wait.
  const tsTokens = Math.min(o.maxNewTokens, o.quick ? 8 : 32);
  m.model.useBackend('js');
  const r = await streamTokens(m, prompt, tsTokens, () => {});
  results.push({ backend: 'ts', tokens: r.ids.length, ms: r.ms, ids: r.ids });
  for (const x of results) {
    write(`${x.backend.padEnd(6)} ${String(x.tokens).padStart(4)} new tokens in ${x.ms.toFixed(0)} ms: ${((x.tokens / x.ms) * 1000).toFixed(1)} tokens/s (prompt included)\n`);
  }
  const [nat, ts] = [results.find((x) => x.backend === 'native'), results.find((x) => x.backend === 'ts')!];
  if (nat) {
    const same = ts.ids.every((id, i) => nat.ids[i] === id);
    write(`native vs ts: ${((nat.tokens / nat.ms) / (ts.tokens / ts.ms)).toFixed(1)}x tokens/s; the first ${ts.ids.length} tokens ${same ? 'are the same' : 'DIFFER'} on both backends\n`);
  }
}
