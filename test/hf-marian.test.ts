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
import fc from 'fast-check';
import { AutoModelForSeq2SeqLM } from '../lib/models/auto';
import { MarianMTModel, marianConfigFromJson, marianSinusoidalTable } from '../lib/models/marian';
import { AutoTokenizer } from '../lib/tokenizers';
import { loadSafetensors, saveSafetensors } from '../lib/io/safetensors';
import { Tensor } from '../lib/tensor';
import { backends } from './helpers/backends';
import { HF, marianFolder } from './helpers/marian-folders';
import { generateWithScores, type GenerationOptions } from '../lib/models/generation';

const FOLDERS = ['marian-tiny', 'marian-gelu-unshared', 'marian-opus-spm'];

interface Reference {
  texts: string[];
  input_ids: number[][];
  attention_mask: number[][];
  decoder_input_ids: number[][];
  encoder_last_hidden_state: { shape: number[]; data: number[] };
  logits: { shape: number[]; data: number[] };
  decoder_attention_mask: number[][];
  masked_logits: { shape: number[]; data: number[] };
  generate: GenerateCase[];
}

/** A generate reference: greedy or beam search with the options in `call` (none: the folder's generation defaults). */
interface GenerateCase {
  name: string;
  input_ids: number[][];
  attention_mask: number[][];
  call: Record<string, number>;
  sequences: number[][];
  sequences_scores?: number[];
}

const ref = (name: string): Reference => JSON.parse(readFileSync(path.join(marianFolder(name), 'reference.json'), 'utf8')) as Reference;
const ids2d = (rows: number[][]): Tensor<'int32'> => new Tensor(Int32Array.from(rows.flat()), [rows.length, rows[0]!.length], 'int32');

async function load(name: string, backend: string): Promise<MarianMTModel> {
  const model = await AutoModelForSeq2SeqLM.fromPretrained(marianFolder(name));
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
    const tok = AutoTokenizer.fromPretrained(marianFolder(name))!;
    const enc = tok(r.texts, { padding: true });
    expect(Array.from(enc.inputIds.data)).toEqual(r.input_ids.flat());
    expect(Array.from(enc.attentionMask.data)).toEqual(r.attention_mask.flat());
    const model = await load(name, backend);
    const out = model.forward({ inputIds: ids2d(r.input_ids), attentionMask: ids2d(r.attention_mask), decoderInputIds: ids2d(r.decoder_input_ids) });
    expect(worstDiff(out.encoderLastHiddenState, r.encoder_last_hidden_state)).toBeLessThan(1e-4);
    expect(worstDiff(out.logits, r.logits)).toBeLessThan(1e-4);
  });

  it.each(FOLDERS)('%s: a right-padded decoderAttentionMask gives the reference logits at every token position', async (name) => {
    const r = ref(name);
    const model = await load(name, backend);
    const out = model.forward({
      inputIds: ids2d(r.input_ids), attentionMask: ids2d(r.attention_mask),
      decoderInputIds: ids2d(r.decoder_input_ids), decoderAttentionMask: ids2d(r.decoder_attention_mask),
    });
    const [n, t, v] = r.masked_logits.shape as [number, number, number];
    const got = out.logits.contiguous().data;
    let worst = 0;
    let compared = 0;
    for (let b = 0; b < n; b++) {
      for (let i = 0; i < t; i++) {
        if (!r.decoder_attention_mask[b]![i]) continue;
        compared++;
        for (let j = 0; j < v; j++) worst = Math.max(worst, Math.abs(got[(b * t + i) * v + j]! - r.masked_logits.data[(b * t + i) * v + j]!));
      }
    }
    expect(compared).toBe(r.decoder_attention_mask.flat().filter(Boolean).length);
    expect(worst).toBeLessThan(1e-4);
  });

  it.each(FOLDERS)('%s: generate gives the reference sequences (greedy and beam search, explicit options and the folder defaults; sync and async)', async (name) => {
    const r = ref(name);
    const model = await load(name, backend);
    for (const c of r.generate) {
      const opts = { attentionMask: ids2d(c.attention_mask), ...c.call };
      const out = model.generate(ids2d(c.input_ids), opts);
      expect([c.name, out.shape]).toEqual([c.name, [c.sequences.length, c.sequences[0]!.length]]);
      expect([c.name, Array.from(out.data)]).toEqual([c.name, c.sequences.flat()]);
      const outAsync = await model.generateAsync(ids2d(c.input_ids), opts);
      expect([c.name, Array.from(outAsync.data)]).toEqual([c.name, c.sequences.flat()]);
      if (c.sequences_scores) {
        const scored = generateWithScores(model, ids2d(c.input_ids), { ...model.generationConfig, ...opts } as GenerationOptions);
        expect(Array.from(scored.sequences.data)).toEqual(c.sequences.flat());
        c.sequences_scores.forEach((s, i) => expect(scored.sequencesScores![i]).toBeCloseTo(s, 4));
      }
    }
  });

  it.each(FOLDERS)('%s: decoding through the cache in chunks gives the logits of the full forward', async (name) => {
    const r = ref(name);
    const model = await load(name, backend);
    const mask = ids2d(r.attention_mask);
    const enc = model.encode(ids2d(r.input_ids), { attentionMask: mask });
    const cache = model.createCache(enc, { attentionMask: mask, capacity: 2 }); // small: the cache grows while decoding
    const [n, t, v] = r.logits.shape as [number, number, number];
    const cuts = [0, 3, 4, t];
    for (let c = 0; c + 1 < cuts.length; c++) {
      const part = r.decoder_input_ids.map((row) => row.slice(cuts[c], cuts[c + 1]));
      const logits = model.decode(ids2d(part), cache).contiguous().data;
      const w = cuts[c + 1]! - cuts[c]!;
      let worst = 0;
      for (let b = 0; b < n; b++) {
        for (let i = 0; i < w; i++) {
          for (let j = 0; j < v; j++) {
            worst = Math.max(worst, Math.abs(logits[(b * w + i) * v + j]! - r.logits.data[(b * t + cuts[c]! + i) * v + j]!));
          }
        }
      }
      expect(worst).toBeLessThan(1e-4);
    }
    expect(cache.length).toBe(t);
    // lastOnly is the last position of a step.
    const last = model.decode(ids2d(r.decoder_input_ids.map(() => [5])), cache, { lastOnly: true });
    expect(last.shape).toEqual([n, 1, v]);
  });

  it.each(FOLDERS)('%s: expanded rows (beams) read their source row\'s memory, as separate copies would', async (name) => {
    const r = ref(name);
    const model = await load(name, backend);
    const mask = ids2d(r.attention_mask);
    const enc = model.encode(ids2d(r.input_ids), { attentionMask: mask });
    const expand = 3;
    const cache = model.createCache(enc, { attentionMask: mask, expand });
    expect(cache.rows).toBe(r.input_ids.length * expand);
    // Copy j of source b decodes the reference ids of source (b + j) % n: each copy differs, all read source b.
    const n = r.input_ids.length;
    const rows = Array.from({ length: n * expand }, (_, k) => r.decoder_input_ids[(Math.floor(k / expand) + (k % expand)) % n]!);
    const got = model.decode(ids2d(rows), cache).contiguous().data;
    const t = rows[0]!.length;
    const v = model.config.decoderVocabSize;
    for (let j = 0; j < expand; j++) {
      // The same rows decoded one source at a time without expansion.
      for (let b = 0; b < n; b++) {
        const single = model.createCache(enc.narrow(0, b, 1).contiguous(), { attentionMask: mask.narrow(0, b, 1).contiguous() });
        const want = model.decode(ids2d([rows[b * expand + j]!]), single).contiguous().data;
        let worst = 0;
        for (let i = 0; i < t * v; i++) worst = Math.max(worst, Math.abs(got[(b * expand + j) * t * v + i]! - want[i]!));
        expect(worst).toBeLessThan(1e-5);
      }
    }
  });
});

describe('MarianMTModel', () => {
  it('computes the sinusoidal position table that the PyTorch reference stored (sin half, cos half)', async () => {
    const file = (await loadSafetensors(path.join(HF, 'marian-gelu-unshared', 'model.safetensors'))).tensors;
    const stored = file['model.encoder.embed_positions.weight']!.contiguous();
    const [p, d] = stored.shape as [number, number];
    const table = marianSinusoidalTable(p, d);
    let worst = 0;
    table.data.forEach((x, i) => (worst = Math.max(worst, Math.abs(x - stored.data[i]!))));
    expect(worst).toBeLessThan(1e-6);
    // Odd widths: ⌈d/2⌉ sine columns, then ⌊d/2⌋ cosine columns.
    const odd = marianSinusoidalTable(3, 5);
    expect(odd.get(2, 2)).toBeCloseTo(Math.sin(2 / Math.pow(10000, 4 / 5)), 6);
    expect(odd.get(2, 4)).toBeCloseTo(Math.cos(2 / Math.pow(10000, 2 / 5)), 6);
  });

  it('keeps Hugging Face\'s keys in its state dict, with the position tables', async () => {
    const model = await load('marian-gelu-unshared', 'js');
    const file = (await loadSafetensors(path.join(HF, 'marian-gelu-unshared', 'model.safetensors'))).tensors;
    expect(Object.keys(model.stateDict()).sort()).toEqual(Object.keys(file).sort());
    const tiny = await load('marian-tiny', 'js');
    const keys = Object.keys(tiny.stateDict());
    expect(keys).toContain('model.shared.weight');
    expect(keys).toContain('final_logits_bias');
    expect(keys).toContain('model.decoder.embed_positions.weight');
    expect(keys.some((k) => k.includes('embed_tokens') || k.startsWith('lm_head'))).toBe(false);
  });

  it('rejects bad arguments naming them', async () => {
    const model = await load('marian-tiny', 'js');
    const ids = ids2d([[5, 6, 0]]);
    expect(() => model.forward(ids as never)).toThrow(/argument 'inputs' must be an object/);
    expect(() => model.forward({ inputIds: ids } as never)).toThrow(/input 'decoderInputIds' must be an int32 Tensor/);
    expect(() => model.forward({ inputIds: ids, decoderInputIds: ids, labels: ids } as never)).toThrow(/unknown input 'labels'/);
    expect(() => model.forward({ inputIds: ids, decoderInputIds: ids2d([[2], [2]]) })).toThrow(/has 2 rows, inputIds 1/);
    expect(() => model.forward({ inputIds: ids, attentionMask: ids2d([[1, 1]]), decoderInputIds: ids2d([[2]]) })).toThrow(/option 'attentionMask'/);
    expect(() => model.forward({ inputIds: ids2d([[1, 0, 0]]), attentionMask: ids2d([[0, 0, 0]]), decoderInputIds: ids2d([[2]]) })).toThrow(/row 0 has no token/);
    expect(() => model.encode(ids2d([Array.from({ length: 65 }, () => 5)]))).toThrow(/position 64 exceeds the model's 64 positions/);
    expect(() => model.encode(ids2d([[5, 9999]]))).toThrow(RangeError);
    const cache = model.createCache(model.encode(ids));
    expect(() => model.decode(ids2d([[2], [2]]), cache)).toThrow(/cache holds 1 sequences/);
    expect(() => model.decode(ids2d([[2]]), {} as never)).toThrow(/argument 'cache' must be a MarianDecoderCache/);
    expect(() => model.createCache(ids as never)).toThrow(/argument 'encoderHiddenStates'/);
    expect(() => new MarianMTModel({ vocabSize: 10, dModel: 30, encoderLayers: 1, decoderLayers: 1, encoderAttentionHeads: 4,
      decoderAttentionHeads: 2, encoderFfnDim: 8, decoderFfnDim: 8 })).toThrow(/divisible by encoderAttentionHeads/);
  });
});

describe('AutoModelForSeq2SeqLM folders', () => {
  /** A copy of a fixture folder, with `edit` applied to its config and `weights` (when given) as its safetensors. */
  async function variant(from: string, edit: (c: Record<string, unknown>) => void, weights?: (w: Record<string, Tensor>) => Record<string, Tensor>): Promise<string> {
    const d = mkdtempSync(path.join(tmpdir(), 'attnode-marian-'));
    const config = JSON.parse(readFileSync(path.join(HF, from, 'config.json'), 'utf8')) as Record<string, unknown>;
    edit(config);
    writeFileSync(path.join(d, 'config.json'), JSON.stringify(config));
    if (weights) {
      const w = weights({ ...(await loadSafetensors(path.join(HF, from, 'model.safetensors'))).tensors });
      await saveSafetensors(path.join(d, 'model.safetensors'), w);
    } else {
      copyFileSync(path.join(HF, from, 'model.safetensors'), path.join(d, 'model.safetensors'));
    }
    return d;
  }

  const logitsOf = (m: MarianMTModel, r: Reference) =>
    m.forward({ inputIds: ids2d(r.input_ids), attentionMask: ids2d(r.attention_mask), decoderInputIds: ids2d(r.decoder_input_ids) }).logits;

  it('loads checkpoints that carry every tied copy (as pytorch_model.bin did) or bare MarianModel keys', async () => {
    const r = ref('marian-tiny');
    const all = await variant('marian-tiny', () => {}, (w) => ({
      ...w, 'model.encoder.embed_tokens.weight': w['model.shared.weight']!, 'model.decoder.embed_tokens.weight': w['model.shared.weight']!,
      'lm_head.weight': w['model.shared.weight']!,
      'model.encoder.embed_positions.weight': marianSinusoidalTable(64, 32), 'model.decoder.embed_positions.weight': marianSinusoidalTable(64, 32),
    }));
    expect(worstDiff(logitsOf(await AutoModelForSeq2SeqLM.fromPretrained(all), r), r.logits)).toBeLessThan(1e-4);
    // The decoder's copy alone (encoder and shared copies left out) is the shared table too.
    const decOnly = await variant('marian-tiny', () => {}, (w) => {
      const { 'model.shared.weight': shared, ...rest } = w;
      return { ...rest, 'model.decoder.embed_tokens.weight': shared! };
    });
    expect(worstDiff(logitsOf(await AutoModelForSeq2SeqLM.fromPretrained(decOnly), r), r.logits)).toBeLessThan(1e-4);
    const bare = await variant('marian-tiny', () => {}, (w) =>
      Object.fromEntries(Object.entries(w).map(([k, t]) => [k === 'final_logits_bias' ? k : k.replace(/^model\./, ''), t])));
    expect(worstDiff(logitsOf(await AutoModelForSeq2SeqLM.fromPretrained(bare), r), r.logits)).toBeLessThan(1e-4);
    // Without final_logits_bias the bias is zeros (transformers' initial value).
    const noBias = await variant('marian-tiny', () => {}, (w) => {
      const { final_logits_bias: bias, ...rest } = w;
      expect(bias).toBeDefined();
      return rest;
    });
    const m = await AutoModelForSeq2SeqLM.fromPretrained(noBias);
    expect(Array.from(m.finalLogitsBias.data).every((x) => x === 0)).toBe(true);
  });

  it('loads a pytorch_model.bin with every tied copy and the position tables (as transformers 4.x saved it)', async () => {
    const r = ref('marian-tiny');
    const m = await AutoModelForSeq2SeqLM.fromPretrained(path.join(HF, 'marian-tiny-bin'));
    expect(worstDiff(logitsOf(m, r), r.logits)).toBeLessThan(1e-4);
    expect(m.generationConfig).toMatchObject({ numBeams: 4, maxNewTokens: 19, badWordsIds: [[2]], forcedEosTokenId: 0, renormalizeLogits: true });
  });

  it.each([
    ['an unknown model_type', (c: Record<string, unknown>) => (c['model_type'] = 'bart'), /field 'model_type' "bart" is not a supported sequence-to-sequence model/],
    ['vocab_size against the embeddings', (c: Record<string, unknown>) => (c['vocab_size'] = 540), /field 'vocab_size' is 540 but model.shared.weight has 539 rows/],
    ['d_model against the embeddings', (c: Record<string, unknown>) => { c['d_model'] = 16; c['encoder_attention_heads'] = 2; c['decoder_attention_heads'] = 2; }, /field 'd_model' is 16 but model.shared.weight has shape \[539, 32\]/],
    ['encoder_layers against the weights', (c: Record<string, unknown>) => (c['encoder_layers'] = 3), /field 'encoder_layers' is 3 but the weights have 2 encoder layers/],
    ['decoder_layers against the weights', (c: Record<string, unknown>) => (c['decoder_layers'] = 1), /field 'decoder_layers' is 1 but the weights have 2 decoder layers/],
    ['decoder_ffn_dim against fc1', (c: Record<string, unknown>) => (c['decoder_ffn_dim'] = 65), /field 'decoder_ffn_dim' is 65 but model.decoder.layers.0.fc1.weight has 64 rows/],
    ['share_encoder_decoder_embeddings false on a shared checkpoint', (c: Record<string, unknown>) => (c['share_encoder_decoder_embeddings'] = false), /field 'share_encoder_decoder_embeddings' is false but the weights have no model.encoder.embed_tokens.weight/],
    ['tie_word_embeddings false without lm_head', (c: Record<string, unknown>) => (c['tie_word_embeddings'] = false), /field 'tie_word_embeddings' is false but the weights have no lm_head.weight/],
    ['an unknown activation', (c: Record<string, unknown>) => (c['activation_function'] = 'mish'), /field 'activation_function' "mish" is not supported/],
    ['heads that do not divide d_model', (c: Record<string, unknown>) => (c['decoder_attention_heads'] = 5), /dModel \(32\) must be divisible by decoderAttentionHeads \(5\)/],
    ['a pad id outside the vocabulary', (c: Record<string, unknown>) => (c['pad_token_id'] = 539), /field 'padTokenId' \(539\) must be below the target vocabulary size 539/],
    ['a non-integer field', (c: Record<string, unknown>) => (c['encoder_ffn_dim'] = '64'), /field 'encoder_ffn_dim' must be an integer >= 1, got "64"/],
    // Architecture fields of BART-era configs: any value but the one MarianMT computes is refused.
    ['learned positions', (c: Record<string, unknown>) => (c['static_position_embeddings'] = false), /field 'static_position_embeddings' false is not supported \(MarianMT computes static_position_embeddings = true/],
    ['pre-norm layers', (c: Record<string, unknown>) => (c['normalize_before'] = true), /field 'normalize_before' true is not supported/],
    ['an embedding norm', (c: Record<string, unknown>) => (c['normalize_embedding'] = true), /field 'normalize_embedding' true is not supported/],
    ['a final layer norm', (c: Record<string, unknown>) => (c['add_final_layer_norm'] = true), /field 'add_final_layer_norm' true is not supported/],
    ['a logits bias layer', (c: Record<string, unknown>) => (c['add_bias_logits'] = true), /field 'add_bias_logits' true is not supported/],
    ['d_model against the attention weights', (c: Record<string, unknown>) => (c['d_model'] = 48),
      /field 'd_model' is 48 but model.shared.weight has shape \[539, 32\]/],
  ])('names the file and field for %s', async (_, edit, message) => {
    const d = await variant('marian-tiny', edit);
    await expect(AutoModelForSeq2SeqLM.fromPretrained(d)).rejects.toThrow(message);
    await expect(AutoModelForSeq2SeqLM.fromPretrained(d)).rejects.toThrow(path.join(d, 'config.json'));
  });

  it('a weight whose shape contradicts the config names the field, the tensor and both shapes', async () => {
    const d = await variant('marian-tiny', () => undefined, (w) => ({
      ...w, 'model.encoder.layers.1.fc2.weight': new Tensor(new Float32Array(32 * 60), [32, 60], 'float32'),
    }));
    await expect(AutoModelForSeq2SeqLM.fromPretrained(d)).rejects.toThrow(
      /config.json: field 'encoder_ffn_dim' \(64\) does not fit tensor model.encoder.layers.1.fc2.weight: expected shape \[32, 64\] from the config, the weights have \[32, 60\]/);
    const q = await variant('marian-tiny', () => undefined, (w) => ({
      ...w, 'model.decoder.layers.0.encoder_attn.k_proj.weight': new Tensor(new Float32Array(16 * 32), [16, 32], 'float32'),
    }));
    await expect(AutoModelForSeq2SeqLM.fromPretrained(q)).rejects.toThrow(
      /field 'd_model' \(32\) does not fit tensor model.decoder.layers.0.encoder_attn.k_proj.weight: expected shape \[32, 32\] from the config, the weights have \[16, 32\]/);
  });

  it('names the problem for stored position tables, a missing weight, a missing config and truncated weights', async () => {
    const pos = await variant('marian-gelu-unshared', (c) => (c['max_position_embeddings'] = 40));
    await expect(AutoModelForSeq2SeqLM.fromPretrained(pos)).rejects.toThrow(/fields 'max_position_embeddings' \(40\) and 'd_model' \(32\) do not fit model.encoder.embed_positions.weight of shape \[48, 32\]/);
    const missing = await variant('marian-tiny', () => {}, (w) => {
      const { 'model.decoder.layers.1.encoder_attn.k_proj.bias': _gone, ...rest } = w;
      return rest;
    });
    await expect(AutoModelForSeq2SeqLM.fromPretrained(missing)).rejects.toThrow(/missing keys \(\d+\): model.decoder.layers.1.encoder_attn.k_proj.bias/);
    const empty = mkdtempSync(path.join(tmpdir(), 'attnode-marian-'));
    await expect(AutoModelForSeq2SeqLM.fromPretrained(empty)).rejects.toThrow(/config.json: not found/);
    const truncated = await variant('marian-tiny', () => {});
    const bytes = readFileSync(path.join(truncated, 'model.safetensors'));
    writeFileSync(path.join(truncated, 'model.safetensors'), bytes.subarray(0, bytes.length - 100));
    await expect(AutoModelForSeq2SeqLM.fromPretrained(truncated)).rejects.toThrow(/model.safetensors/);
    await expect(AutoModelForSeq2SeqLM.fromPretrained(42 as never)).rejects.toThrow(TypeError);
  });

  it('reads any mutation of config.json either as a config or as an Error naming the file (fuzzed)', () => {
    const base = JSON.parse(readFileSync(path.join(HF, 'marian-tiny', 'config.json'), 'utf8')) as Record<string, unknown>;
    const fields = Object.keys(base);
    const value = fc.oneof(fc.constant(null), fc.constant(undefined), fc.boolean(), fc.integer({ min: -5, max: 2000 }),
      fc.double(), fc.string(), fc.constant([]), fc.constant({}), fc.constantFrom('swish', 'gelu', 'relu', 'marian', 'bart'));
    fc.assert(fc.property(fc.array(fc.tuple(fc.constantFrom(...fields), value), { minLength: 1, maxLength: 4 }), (edits) => {
      const c: Record<string, unknown> = { ...base };
      for (const [k, v] of edits) c[k] = v;
      try {
        const r = marianConfigFromJson(c, 'fuzz/config.json');
        expect(r.dModel % r.encoderAttentionHeads).toBe(0);
      } catch (err) {
        expect(err).toBeInstanceOf(Error);
        expect((err as Error).message).toMatch(/^fuzz\/config.json: /);
      }
    }), { numRuns: 300, seed: 14 });
  });
});
