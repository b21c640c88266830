/**
 * MarianMT Hugging Face folders through AutoModelForSeq2SeqLM, against a
 * PyTorch implementation of the published architecture
 * (scripts/gen_marian_fixtures.py): encoder hidden states and logits, the
 * decoder's KV cache against the full forward, and the loader's errors for
 * folders that do not fit.
 */
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AutoModelForSeq2SeqLM } from '../lib/models/auto';
import { MarianMTModel, marianSinusoidalTable } from '../lib/models/marian';
import { AutoTokenizer } from '../lib/tokenizers';
import { loadSafetensors, saveSafetensors } from '../lib/io/safetensors';
import { Tensor } from '../lib/tensor';
import { backends } from './helpers/backends';

const HF = path.join(__dirname, 'fixtures', 'hf');
const FOLDERS = ['marian-tiny', 'marian-gelu-unshared'];

interface Reference {
  texts: string[];
  input_ids: number[][];
  attention_mask: number[][];
  decoder_input_ids: number[][];
  encoder_last_hidden_state: { shape: number[]; data: number[] };
  logits: { shape: number[]; data: number[] };
  greedy: { max_new_tokens: number; batch: number[][]; single: number[][] };
  default_greedy: { text_index: number; ids: number[] };
}

const ref = (name: string): Reference => JSON.parse(readFileSync(path.join(HF, name, 'reference.json'), 'utf8')) as Reference;
const ids2d = (rows: number[][]): Tensor<'int32'> => new Tensor(Int32Array.from(rows.flat()), [rows.length, rows[0]!.length], 'int32');

async function load(name: string, backend: string): Promise<MarianMTModel> {
  const model = await AutoModelForSeq2SeqLM.fromPretrained(path.join(HF, name));
  expect(model).toBeInstanceOf(MarianMTModel);
  return model.useBackend(backend as 'js' | 'native');
}

function worstDiff(got: Tensor<'float32'>, want: { shape: number[]; data: number[] }): number {
  expect(got.shape).toEqual(want.shape);
  const g = got.contiguous().data;
  let worst = 0;
  want.data.forEach((w, i) => (worst = Math.max(worst, Math.abs(g[i]! - w))));
  return worst;
}

describe.each(backends)('MarianMT folders on the %s backend', (backend) => {
  it.each(FOLDERS)('%s: the tokenizer gives the reference ids; encoder states and logits are within 1e-4 of PyTorch', async (name) => {
    const r = ref(name);
    const tok = AutoTokenizer.fromPretrained(path.join(HF, name))!;
    const enc = tok(r.texts, { padding: true });
    expect(Array.from(enc.inputIds.data)).toEqual(r.input_ids.flat());
    expect(Array.from(enc.attentionMask.data)).toEqual(r.attention_mask.flat());
    const model = await load(name, backend);
    const out = model.forward({ inputIds: ids2d(r.input_ids), attentionMask: ids2d(r.attention_mask), decoderInputIds: ids2d(r.decoder_input_ids) });
    expect(worstDiff(out.encoderLastHiddenState, r.encoder_last_hidden_state)).toBeLessThan(1e-4);
    expect(worstDiff(out.logits, r.logits)).toBeLessThan(1e-4);
  });
});
