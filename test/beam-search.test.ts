/**
 * Beam search and the logits processors against a PyTorch re-implementation
 * of transformers' generate (scripts/gen_beam_fixtures.py →
 * test/fixtures/beam_search.json): GPT-2 and Llama folders, numBeams 2–4,
 * lengthPenalty 0.6/1/1.5/2, earlyStopping false/true/'never',
 * numReturnSequences 1–3, left-padded batches, eos reached early, two eos
 * ids, repetition penalty, no-repeat n-grams, bad words, minNewTokens and a
 * forced eos; sequences token for token and scores within 1e-4, sync and
 * async. Then the decoder-session protocol with an encoder-decoder
 * (nn.Transformer, cross-attention memory shared by the beams, DecoderCache
 * reorder), and the option errors.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AutoModelForCausalLM } from '../lib/models/auto';
import {
  generate, generateAsync, generateWithScores, generateWithScoresAsync,
  type DecoderSession, type DecodingModel, type GenerationModel, type GenerationOptions, type StartDecodingOptions,
} from '../lib/models/generation';
import * as nn from '../lib/nn';
import * as ops from '../lib/ops';
import { manualSeed } from '../lib/nn/init';
import { getBackend } from '../lib/backend/registry';
import { Tensor } from '../lib/tensor';
import type { BackendName } from '../lib/backend/backend';
import { generateSeq2Seq } from '../lib/generate';
import { backends } from './helpers/backends';

interface Case {
  name: string;
  model: string;
  input_ids: number[][];
  attention_mask: number[][];
  options: Record<string, unknown>;
  sequences: number[][];
  sequences_scores?: number[];
}

const FIXTURE = path.join(__dirname, 'fixtures', 'beam_search.json');
const cases = (JSON.parse(readFileSync(FIXTURE, 'utf8')) as { cases: Case[] }).cases;
const ids2d = (rows: number[][]): Tensor<'int32'> => new Tensor(Int32Array.from(rows.flat()), [rows.length, rows[0]!.length], 'int32');
const rowsOf = (t: Tensor<'int32'>): number[][] =>
  Array.from({ length: t.shape[0]! }, (_, r) => Array.from(t.data.subarray(r * t.shape[1]!, (r + 1) * t.shape[1]!)));

/** The case's generate options: the fixture's, plus the attention mask when the prompt has padding. */
function optionsOf(c: Case): GenerationOptions {
  const padded = c.attention_mask.some((row) => row.includes(0));
  return { ...(c.options as unknown as GenerationOptions), ...(padded ? { attentionMask: ids2d(c.attention_mask) } : {}) };
}

const models = new Map<string, GenerationModel>();
async function load(name: string, backend: BackendName): Promise<GenerationModel> {
  const key = `${name}/${backend}`;
  if (!models.has(key)) {
    const m = await AutoModelForCausalLM.fromPretrained(path.join(__dirname, 'fixtures', 'hf', name));
    models.set(key, m.useBackend(backend) as unknown as GenerationModel);
  }
  return models.get(key)!;
}

function expectScores(got: Float32Array | null, want: number[] | undefined): void {
  if (want === undefined) {
    expect(got).toBeNull();
    return;
  }
  expect(got).not.toBeNull();
  expect(got!.length).toBe(want.length);
  want.forEach((w, i) => expect(Math.abs(got![i]! - w)).toBeLessThan(1e-4));
}

describe.each(backends)('generate against the transformers reference on the %s backend', (backend) => {
  it.each(cases.map((c) => [c.name, c] as const))('%s: sequences token for token, scores within 1e-4', async (_, c) => {
    const model = await load(c.model, backend);
    const out = generateWithScores(model, ids2d(c.input_ids), optionsOf(c));
    expect(out.sequences.shape).toEqual([c.sequences.length, c.sequences[0]!.length]);
    expect(rowsOf(out.sequences)).toEqual(c.sequences);
    expectScores(out.sequencesScores, c.sequences_scores);
    // The async form (each step's kernels and cache gathers recorded off the JS thread) gives the same.
    const outAsync = await generateWithScoresAsync(model, ids2d(c.input_ids), optionsOf(c));
    expect(rowsOf(outAsync.sequences)).toEqual(c.sequences);
    expect(Array.from(outAsync.sequencesScores ?? [])).toEqual(Array.from(out.sequencesScores ?? []));
  });

  it("the model's own generate / generateAsync run beam search too", async () => {
    const c = cases.find((x) => x.name === 'beams4_eos_lp1')!;
    const model = (await AutoModelForCausalLM.fromPretrained(path.join(__dirname, 'fixtures', 'hf', c.model))).useBackend(backend);
    expect(rowsOf(model.generate(ids2d(c.input_ids), optionsOf(c)))).toEqual(c.sequences);
    expect(rowsOf(await model.generateAsync(ids2d(c.input_ids), optionsOf(c)))).toEqual(c.sequences);
  });
});

describe('beam search edge cases', () => {
  it('maxNewTokens 0 returns the prompt, numReturnSequences times', async () => {
    const model = await load('gpt2-tiny', 'js');
    const out = generateWithScores(model, ids2d([[5, 6, 7], [8, 9, 10]]), { maxNewTokens: 0, numBeams: 3, numReturnSequences: 2 });
    expect(rowsOf(out.sequences)).toEqual([[5, 6, 7], [5, 6, 7], [8, 9, 10], [8, 9, 10]]);
  });

  it('numBeams 1 with numReturnSequences samples each copy independently', async () => {
    const model = await load('gpt2-tiny', 'js');
    const out = generate(model, ids2d([[5, 6, 7]]), { maxNewTokens: 6, doSample: true, seed: 3, numReturnSequences: 3 });
    expect(out.shape).toEqual([3, 9]);
    const rows = rowsOf(out);
    rows.forEach((r) => expect(r.slice(0, 3)).toEqual([5, 6, 7]));
    expect(new Set(rows.map((r) => r.join(','))).size).toBeGreaterThan(1);
  });
});

/** Sum over the new tokens of log-softmax(full-forward logits) of each row: what a beam's running score adds up. */
function teacherForcedLogprob(model: GenerationModel, rows: number[][], promptLen: number, mask: number[][] | null): number[] {
  const m = model as unknown as { forward(ids: Tensor<'int32'>, o: { attentionMask?: Tensor<'int32'> }): Tensor<'float32'> };
  const width = rows[0]!.length;
  const fullMask = mask ? rows.map((_, r) => [...mask[r]!, ...new Array<number>(width - promptLen).fill(1)]) : null;
  const logits = m.forward(ids2d(rows), fullMask ? { attentionMask: ids2d(fullMask) } : {}).contiguous();
  const v = logits.shape[2]!;
  return rows.map((row, r) => {
    let sum = 0;
    for (let p = promptLen; p < width; p++) {
      const off = (r * width + p - 1) * v;
      let max = -Infinity;
      for (let j = 0; j < v; j++) max = Math.max(max, logits.data[off + j]!);
      let z = 0;
      for (let j = 0; j < v; j++) z += Math.exp(logits.data[off + j]! - max);
      sum += logits.data[off + row[p]!]! - max - Math.log(z);
    }
    return sum;
  });
}

describe.each(backends)('beam sampling (doSample with numBeams > 1) on the %s backend', (backend) => {
  const c = cases.find((x) => x.name === 'beams4_batch_nrs2')!;

  it('is reproducible for a seed (sync and async) and draws different beams for different seeds', async () => {
    const model = await load(c.model, backend);
    const o = { ...optionsOf(c), doSample: true, numBeams: 3, numReturnSequences: 2, temperature: 1.3, topK: 20, topP: 0.9 };
    const results = new Set<string>();
    for (const seed of [1, 2, 3, 4]) {
      const a = generateWithScores(model, ids2d(c.input_ids), { ...o, seed });
      const b = await generateWithScoresAsync(model, ids2d(c.input_ids), { ...o, seed });
      expect(a.sequences.shape[0]).toBe(4);
      expect(rowsOf(b.sequences)).toEqual(rowsOf(a.sequences));
      expect(Array.from(b.sequencesScores!)).toEqual(Array.from(a.sequencesScores!));
      results.add(JSON.stringify(rowsOf(a.sequences)));
    }
    expect(results.size).toBeGreaterThan(1);
  });

  it("returns each beam's summed log-probability (temperature 1: the warpers leave the scores alone)", async () => {
    const model = await load(c.model, backend);
    const promptLen = c.input_ids[0]!.length;
    for (const seed of [5, 6]) {
      // topK 0: no top-k warper (a folder's model otherwise samples with transformers' default top_k of 50).
      const out = generateWithScores(model, ids2d(c.input_ids), { ...optionsOf(c), doSample: true, numBeams: 4, numReturnSequences: 3, seed, topK: 0 });
      expect(out.sequences.shape).toEqual([6, promptLen + 8]);
      const rows = rowsOf(out.sequences);
      const masks = rows.map((_, r) => c.attention_mask[Math.floor(r / 3)]!);
      // No eos and length penalty 1: score = sum of the new tokens' log-probabilities / 8.
      const want = teacherForcedLogprob(model, rows, promptLen, masks);
      want.forEach((w, r) => expect(Math.abs(out.sequencesScores![r]! - w / 8)).toBeLessThan(1e-4));
      rows.forEach((row, r) => expect(row.slice(0, promptLen)).toEqual(c.input_ids[Math.floor(r / 3)]));
    }
  });
});

describe('generate option errors', () => {
  const bad: [string, Partial<GenerationOptions> | Record<string, unknown>, RegExp, typeof TypeError | typeof RangeError][] = [
    ['numBeams 0', { numBeams: 0 }, /option 'numBeams' must be an integer >= 1, got 0/, RangeError],
    ['numBeams 2.5', { numBeams: 2.5 }, /option 'numBeams' must be an integer >= 1, got 2.5/, RangeError],
    ['numBeams as a string', { numBeams: '4' }, /option 'numBeams' must be an integer >= 1, got string/, TypeError],
    ['numReturnSequences > numBeams', { numBeams: 2, numReturnSequences: 3 }, /option 'numReturnSequences' \(3\) must be <= numBeams \(2\)/, RangeError],
    ['numReturnSequences 0', { numBeams: 2, numReturnSequences: 0 }, /option 'numReturnSequences' must be an integer >= 1, got 0/, RangeError],
    ['numReturnSequences with greedy', { numReturnSequences: 2 }, /option 'numReturnSequences' must be 1 for greedy search/, RangeError],
    ['onToken with beams', { numBeams: 2, onToken: () => {} }, /option 'onToken' is not supported with numBeams > 1/, TypeError],
    ['earlyStopping', { numBeams: 2, earlyStopping: 'sometimes' }, /option 'earlyStopping' must be true, false or 'never', got "sometimes"/, TypeError],
    ['lengthPenalty', { numBeams: 2, lengthPenalty: Infinity }, /option 'lengthPenalty' is out of range, got Infinity/, RangeError],
    ['noRepeatNgramSize', { noRepeatNgramSize: -1 }, /option 'noRepeatNgramSize' must be an integer >= 0, got -1/, RangeError],
    ['minNewTokens', { minNewTokens: 1.5 }, /option 'minNewTokens' must be an integer >= 0, got 1.5/, RangeError],
    ['badWordsIds flat', { badWordsIds: [3, 4] }, /option 'badWordsIds' must be an array of non-empty token id arrays, entry 0 is number/, TypeError],
    ['badWordsIds empty entry', { badWordsIds: [[]] }, /entry 0 is empty/, TypeError],
    ['badWordsIds id', { badWordsIds: [[3], [4, 317]] }, /option 'badWordsIds' must hold token ids in \[0, 317\), entry 1 has 317/, RangeError],
    ['forcedEosTokenId', { forcedEosTokenId: -1 }, /option 'forcedEosTokenId' must hold token ids in \[0, 317\), got -1/, RangeError],
    ['eosTokenId', { eosTokenId: [1, 'x'] }, /option 'eosTokenId' must hold token ids/, RangeError],
    ['snake_case name', { num_beams: 4 }, /unknown option 'num_beams' \(did you mean 'numBeams'\?\)/, TypeError],
  ];
  it.each(bad)('%s', async (_, extra, message, kind) => {
    const model = await load('gpt2-tiny', 'js');
    const run = () => generate(model, ids2d([[1, 2, 3]]), { maxNewTokens: 4, ...extra } as GenerationOptions);
    expect(run).toThrow(kind);
    expect(run).toThrow(message);
    await expect(generateAsync(model, ids2d([[1, 2, 3]]), { maxNewTokens: 4, ...extra } as GenerationOptions)).rejects.toThrow(message);
  });
});

// ---------------------------------------------------------------------------
// The decoder-session protocol with an encoder-decoder

const VOCAB = 23;
const START = 1;

/**
 * A tiny batch-first encoder-decoder (embedding → nn.Transformer → linear)
 * implementing DecodingModel the way an encoder-decoder family would: the
 * encoder runs once per input in the first step, its memory is repeated for
 * each input's copies with a gather, and the decoder steps over a
 * DecoderCache that `reorder` gathers. `useCache: false` instead recomputes
 * the decoder over each row's whole history (reordered in JS): the reference.
 */
class TinySeq2Seq implements DecodingModel {
  readonly embedding: nn.Embedding;
  readonly transformer: nn.Transformer;
  readonly fc: nn.Linear;
  readonly config = { vocabSize: VOCAB, maxPositionEmbeddings: 64 };
  generationConfig: DecodingModel['generationConfig'];
  /** Tokens beam search's adjustLogits bans before the log-softmax (like MarianMT's pad). */
  banned: number[] = [];
  reorders: Int32Array[] = [];

  constructor(readonly backendName: BackendName, readonly useCache: boolean) {
    manualSeed(11);
    this.embedding = new nn.Embedding({ numEmbeddings: VOCAB, embeddingDim: 16 });
    this.transformer = new nn.Transformer({ dModel: 16, nhead: 2, numEncoderLayers: 1, numDecoderLayers: 2, dimFeedforward: 32, batchFirst: true }).eval();
    this.fc = new nn.Linear({ inFeatures: 16, outFeatures: VOCAB });
    for (const m of [this.embedding, this.transformer, this.fc]) m.useBackend(backendName);
  }

  get backend() {
    return getBackend(this.backendName);
  }

  startDecoding(inputIds: Tensor<'int32'>, o: StartDecodingOptions): DecoderSession {
    const [n, s] = inputIds.shape as [number, number];
    const rows = n * o.expand;
    const copyOf = Int32Array.from({ length: rows }, (_, r) => Math.floor(r / o.expand));
    let memory: Tensor<'float32'> | null = null;
    let cache: nn.DecoderCache | null = null;
    let history: number[][] = Array.from({ length: rows }, () => []);
    const model = this;
    const encode = (): Tensor<'float32'> => {
      const mem = this.transformer.encoder.forward(this.embedding.forward(inputIds)); // [n, s, E]
      const e = mem.shape[2]!;
      // The beams of an input share its memory: rows gathered from the n encoder outputs.
      return ops.embedding(new Tensor(copyOf, [rows], 'int32'), mem.contiguous().view(n, s * e)).view(rows, s, e);
    };
    return {
      rows,
      prefix: new Tensor(new Int32Array(rows).fill(START), [rows, 1], 'int32'),
      prefixMask: null,
      step(ids, mask) {
        expect(mask).toBeNull();
        memory ??= encode();
        const t = ids.shape[1]!;
        if (model.useCache) {
          cache ??= model.transformer.decoder.createCache(memory, { capacity: 1 + o.maxNewTokens });
          const h = model.transformer.decoder.forwardStep(model.embedding.forward(ids), cache);
          return model.fc.forward(h.narrow(1, t - 1, 1));
        }
        history = history.map((hist, r) => [...hist, ...Array.from(ids.data.subarray(r * t, (r + 1) * t))]);
        const len = history[0]!.length;
        const all = new Tensor(Int32Array.from(history.flat()), [rows, len], 'int32');
        const h = model.transformer.decoder.forward(model.embedding.forward(all), memory, {
          tgtMask: nn.Transformer.generateSquareSubsequentMask(len),
        });
        return model.fc.forward(h.narrow(1, len - 1, 1));
      },
      reorder(rowIndices) {
        model.reorders.push(Int32Array.from(rowIndices));
        if (model.useCache) cache!.reorder(model.backend, rowIndices);
        else history = Array.from(rowIndices, (src) => history[src]!.slice());
      },
      adjustLogits(logits) {
        for (const t of model.banned) logits[t] = -Infinity;
      },
    };
  }
}

describe.each(backends)('an encoder-decoder through the decoder session on the %s backend', (backend) => {
  const src = ids2d([[3, 9, 4, 12, 7], [15, 2, 8, 8, 20]]);

  it('beam search with the DecoderCache reorder equals recomputing each row from its history', async () => {
    const cached = new TinySeq2Seq(backend, true);
    const reference = new TinySeq2Seq(backend, false);
    for (const o of [
      { maxNewTokens: 7, numBeams: 3, numReturnSequences: 2 },
      { maxNewTokens: 8, numBeams: 4, eosTokenId: 5, lengthPenalty: 0.6, noRepeatNgramSize: 2 },
    ] as GenerationOptions[]) {
      const want = generateWithScores(reference, src, o);
      const got = generateWithScores(cached, src, o);
      expect(rowsOf(got.sequences)).toEqual(rowsOf(want.sequences));
      const gotAsync = await generateWithScoresAsync(cached, src, o);
      expect(rowsOf(gotAsync.sequences)).toEqual(rowsOf(want.sequences));
      got.sequencesScores!.forEach((s, i) => expect(Math.abs(s - want.sequencesScores![i]!)).toBeLessThan(1e-4));
      // Only decoder tokens come back, starting with the decoder start token.
      rowsOf(got.sequences).forEach((r) => expect(r[0]).toBe(START));
      expect(got.sequences.shape[0]).toBe(2 * (o.numReturnSequences ?? 1));
    }
    // The beams were reordered (not the identity), never across inputs.
    const moved = cached.reorders.filter((idx) => idx.some((v, i) => v !== i));
    expect(moved.length).toBeGreaterThan(0);
    for (const idx of cached.reorders) idx.forEach((v, i) => expect(Math.floor(v / idx.length * 2)).toBe(Math.floor(i / idx.length * 2)));
  });

  it('greedy decoding gives generateSeq2Seq tokens after the start token', () => {
    const model = new TinySeq2Seq(backend, true);
    const out = generate(model, src, { maxNewTokens: 6 });
    const want = generateSeq2Seq(model, src, { maxNewTokens: 6, bosId: START });
    expect(out.shape).toEqual([2, 7]);
    expect(rowsOf(out).map((r) => r.slice(1))).toEqual(rowsOf(want));
  });

  it("applies adjustLogits before beam search's log-softmax, and the model's generation defaults", () => {
    const model = new TinySeq2Seq(backend, true);
    const plain = rowsOf(generate(model, src, { maxNewTokens: 6, numBeams: 3 }));
    const common = new Map<number, number>();
    plain.flat().forEach((t) => common.set(t, (common.get(t) ?? 0) + 1));
    const top = [...common.entries()].filter(([t]) => t !== START).sort((a, b) => b[1] - a[1])[0]![0];
    model.banned = [top];
    const adjusted = rowsOf(generate(model, src, { maxNewTokens: 6, numBeams: 3 }));
    expect(adjusted.flat()).not.toContain(top);
    // Defaults: numBeams 3 from the model, overridden per call.
    model.banned = [];
    model.generationConfig = { numBeams: 3 };
    expect(rowsOf(generate(model, src, { maxNewTokens: 6 }))).toEqual(plain);
    expect(rowsOf(generate(model, src, { maxNewTokens: 6, numBeams: 1 }))).toEqual(rowsOf(generate(new TinySeq2Seq(backend, true), src, { maxNewTokens: 6 })));
  });
});
