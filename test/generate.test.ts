/**
 * Greedy generation with key/value caches gives exactly the tokens of full
 * recomputation (the whole decoder over the growing prefix with a causal
 * mask at every step), for the seed encoder-decoder model and the
 * decoder-only CausalLM, sequence-first and batch-first, on every backend;
 * the async forms give the same tokens.
 */
import { describe, expect, it } from 'vitest';
import * as nn from '../lib/nn';
import { Tensor, type BackendName } from '../lib';
import { manualSeed } from '../lib/nn/init';
import { addon } from '../lib/backend/native';
import { TransformerModel } from '../lib/cli/seed-model';
import { generateSeq2Seq, generateSeq2SeqAsync, type Seq2SeqModel } from '../lib/generate';
import { backends } from './helpers/backends';

/** Deterministic ids in [lo, vocab), [len, n] or [n, len] batch-first. */
function ids(len: number, n: number, vocab: number, seed: number, batchFirst = false, lo = 0): Tensor<'int32'> {
  const data = new Int32Array(len * n);
  let s = seed;
  for (let i = 0; i < data.length; i++) data[i] = lo + ((s = (s * 1103515245 + 12345) >>> 0) >>> 8) % (vocab - lo);
  return new Tensor(data, batchFirst ? [n, len] : [len, n], 'int32');
}

/** Token at (position p, sequence b) of ids in either layout. */
function at(t: Tensor<'int32'>, p: number, b: number, batchFirst: boolean): number {
  const n = t.shape[batchFirst ? 0 : 1]!;
  const len = t.shape[batchFirst ? 1 : 0]!;
  return t.data[batchFirst ? b * len + p : p * n + b]!;
}

/** Per-sequence token lists of a generate result. */
function perSequence(t: Tensor<'int32'>, batchFirst: boolean): number[][] {
  const n = t.shape[batchFirst ? 0 : 1]!;
  const len = t.shape[batchFirst ? 1 : 0]!;
  return Array.from({ length: n }, (_, b) => Array.from({ length: len }, (_, p) => at(t, p, b, batchFirst)));
}

/**
 * Reference greedy decoding, written independently of lib/generate: `logitsOf(prefix rows)` runs the whole model
 * on the prefix; the arg-max of each sequence's last position is appended; eos finishes a sequence (then pad).
 */
function referenceGreedy(
  n: number,
  start: number[][],
  maxNew: number,
  eos: number | null,
  pad: number,
  batchFirst: boolean,
  logitsOf: (prefix: Tensor<'int32'>) => Tensor<'float32'>,
): number[][] {
  const seqs = start.map((r) => r.slice());
  const out: number[][] = Array.from({ length: n }, () => []);
  const finished = new Array<boolean>(n).fill(false);
  for (let step = 0; step < maxNew; step++) {
    const len = seqs[0]!.length;
    const data = new Int32Array(len * n);
    for (let b = 0; b < n; b++) for (let p = 0; p < len; p++) data[batchFirst ? b * len + p : p * n + b] = seqs[b]![p]!;
    const logits = logitsOf(new Tensor(data, batchFirst ? [n, len] : [len, n], 'int32'));
    const v = logits.shape[2]!;
    for (let b = 0; b < n; b++) {
      const row = batchFirst ? b * len + len - 1 : (len - 1) * n + b;
      let best = 0;
      for (let j = 1; j < v; j++) if (logits.data[row * v + j]! > logits.data[row * v + best]!) best = j;
      const tok = finished[b] ? pad : best;
      if (tok === eos) finished[b] = true;
      out[b]!.push(tok);
      seqs[b]!.push(tok);
    }
    if (finished.every(Boolean)) break;
  }
  return out;
}

const CONFIGS = [
  { vocab: 23, d: 16, nhead: 2, enc: 1, dec: 2, ff: 32, batch: 3, srcLen: 5, seed: 1 },
  { vocab: 40, d: 32, nhead: 4, enc: 2, dec: 3, ff: 64, batch: 1, srcLen: 7, seed: 2 },
  { vocab: 31, d: 24, nhead: 3, enc: 2, dec: 2, ff: 48, batch: 4, srcLen: 3, seed: 3 },
];

describe.each(backends)('%s backend', (backend: BackendName) => {
  describe('seed model (encoder-decoder)', () => {
    it.each(CONFIGS)('cached generate equals full recomputation, seq-first (%o)', (c) => {
      manualSeed(c.seed);
      const model = new TransformerModel(c.vocab, c.d, c.nhead, c.enc, c.dec, c.ff).eval().useBackend(backend);
      const src = ids(c.srcLen, c.batch, c.vocab, 100 + c.seed);
      const maxNewTokens = 12;
      const got = model.generate(src, { maxNewTokens, bosId: 1 });
      expect(got.shape).toEqual([maxNewTokens, c.batch]);
      const memory = (): Tensor<'float32'> => model.embedding.forward(src);
      const want = referenceGreedy(c.batch, Array.from({ length: c.batch }, () => [1]), maxNewTokens, null, 0, false, (tgt) =>
        model.fc.forward(model.transformer.forward(memory(), model.embedding.forward(tgt), {
          tgtMask: nn.Transformer.generateSquareSubsequentMask(tgt.shape[0]!),
        })));
      expect(perSequence(got, false)).toEqual(want);
      // The library's own no-cache path agrees too.
      expect(Array.from(model.generate(src, { maxNewTokens, bosId: 1, useCache: false }).data)).toEqual(Array.from(got.data));
    });

    it.each(CONFIGS)('cached generate equals full recomputation, batch-first, pre-norm (%o)', (c) => {
      manualSeed(c.seed + 10);
      const model: Seq2SeqModel = {
        embedding: new nn.Embedding({ numEmbeddings: c.vocab, embeddingDim: c.d }).useBackend(backend),
        transformer: new nn.Transformer({
          dModel: c.d, nhead: c.nhead, numEncoderLayers: c.enc, numDecoderLayers: c.dec, dimFeedforward: c.ff,
          batchFirst: true, normFirst: true, activation: 'gelu',
        }).eval().useBackend(backend),
        fc: new nn.Linear({ inFeatures: c.d, outFeatures: c.vocab }).useBackend(backend),
      };
      const src = ids(c.srcLen, c.batch, c.vocab, 200 + c.seed, true);
      const got = generateSeq2Seq(model, src, { maxNewTokens: 10, bosId: 0 });
      expect(got.shape).toEqual([c.batch, 10]);
      const want = referenceGreedy(c.batch, Array.from({ length: c.batch }, () => [0]), 10, null, 0, true, (tgt) =>
        model.fc.forward(model.transformer.forward(model.embedding.forward(src), model.embedding.forward(tgt), {
          tgtMask: nn.Transformer.generateSquareSubsequentMask(tgt.shape[1]!),
        })));
      expect(perSequence(got, true)).toEqual(want);
    });

    it('stops each sequence at eos, pads finished ones, and stops early when all are finished', () => {
      manualSeed(7);
      const model = new TransformerModel(20, 16, 2, 1, 2, 32).eval().useBackend(backend);
      const src = ids(4, 3, 20, 77);
      const free = model.generate(src, { maxNewTokens: 8, bosId: 1 });
      // Choose as eos the token sequence 0 emits at step 2: it finishes there (or earlier).
      const eosId = at(free, 2, 0, false);
      const got = model.generate(src, { maxNewTokens: 8, bosId: 1, eosId, padId: 19 });
      const want = referenceGreedy(3, [[1], [1], [1]], 8, eosId, 19, false, (tgt) =>
        model.fc.forward(model.transformer.forward(model.embedding.forward(src), model.embedding.forward(tgt), {
          tgtMask: nn.Transformer.generateSquareSubsequentMask(tgt.shape[0]!),
        })));
      const seqs = perSequence(got, false);
      expect(seqs).toEqual(want.map((r) => r.slice(0, got.shape[0])));
      const firstEos = seqs[0]!.indexOf(eosId);
      expect(firstEos).toBeGreaterThanOrEqual(0);
      expect(firstEos).toBeLessThanOrEqual(2);
      expect(seqs[0]!.slice(firstEos + 1).every((t) => t === 19)).toBe(true);
      // A shared eos that every sequence emits at once stops generation: one position.
      const all = model.generate(src, { maxNewTokens: 8, bosId: 1, eosId: at(free, 0, 0, false) });
      const firstTokens = perSequence(free, false).map((r) => r[0]);
      if (firstTokens.every((t) => t === firstTokens[0])) expect(all.shape[0]).toBe(1);
    });

    it('handles maxNewTokens 0 and 1 and unbatched src', () => {
      manualSeed(8);
      const model = new TransformerModel(15, 16, 2, 1, 1, 32).eval().useBackend(backend);
      expect(model.generate(ids(3, 2, 15, 5), { maxNewTokens: 0, bosId: 1 }).shape).toEqual([0, 2]);
      expect(model.generate(ids(3, 2, 15, 5), { maxNewTokens: 1, bosId: 1 }).shape).toEqual([1, 2]);
      const src = ids(3, 1, 15, 6);
      const batched = model.generate(src, { maxNewTokens: 5, bosId: 1 });
      const unbatched = model.generate(new Tensor(src.data, [3], 'int32'), { maxNewTokens: 5, bosId: 1 });
      expect(unbatched.shape).toEqual([5]);
      expect(Array.from(unbatched.data)).toEqual(Array.from(batched.data));
      expect(() => model.generate(src, { maxNewTokens: 2, bosId: 1, eos_id: 3 } as never)).toThrow(/unknown option 'eos_id'/);
    });
  });

  describe('CausalLM (decoder-only)', () => {
    it.each([
      { normFirst: true, batchFirst: false, batch: 3, prompt: 4, seed: 1 },
      { normFirst: false, batchFirst: false, batch: 1, prompt: 1, seed: 2 },
      { normFirst: true, batchFirst: true, batch: 2, prompt: 5, seed: 3 },
      { normFirst: false, batchFirst: true, batch: 4, prompt: 2, seed: 4 },
    ])('cached generate equals full recomputation (%o)', (c) => {
      manualSeed(c.seed);
      const lm = new nn.CausalLM({ vocabSize: 29, dModel: 16, nhead: 4, numLayers: 2, normFirst: c.normFirst, batchFirst: c.batchFirst, maxLen: 64 }).eval()
        .useBackend(backend);
      const prompt = ids(c.prompt, c.batch, 29, 300 + c.seed, c.batchFirst);
      const got = lm.generate(prompt, { maxNewTokens: 14 });
      expect(got.shape).toEqual(c.batchFirst ? [c.batch, 14] : [14, c.batch]);
      const start = perSequence(prompt, c.batchFirst);
      const want = referenceGreedy(c.batch, start, 14, null, 0, c.batchFirst, (prefix) => lm.forward(prefix));
      expect(perSequence(got, c.batchFirst)).toEqual(want);
      expect(Array.from(lm.generate(prompt, { maxNewTokens: 14, useCache: false }).data)).toEqual(Array.from(got.data));
    });

    it('forwardStep logits match forward on the prefix; state dict keys are the PyTorch modules\'', () => {
      manualSeed(5);
      const lm = new nn.CausalLM({ vocabSize: 17, dModel: 16, nhead: 2, numLayers: 1, maxLen: 32 }).eval().useBackend(backend);
      const all = ids(6, 2, 17, 9);
      const full = lm.forward(all);
      const cache = lm.createCache({ batch: 2 });
      const first = lm.forwardStep(new Tensor(all.data.slice(0, 8), [4, 2], 'int32'), cache);
      const second = lm.forwardStep(new Tensor(all.data.slice(8), [2, 2], 'int32'), cache);
      const stepped = new Float32Array([...first.data, ...second.data]);
      for (let i = 0; i < full.size; i++) expect(Math.abs(stepped[i]! - full.data[i]!)).toBeLessThan(1e-4);
      expect(Object.keys(lm.stateDict())).toEqual(expect.arrayContaining([
        'embedding.weight', 'pos_encoding.pe', 'transformer.layers.0.self_attn.in_proj_weight', 'transformer.norm.weight',
        'lm_head.weight',
      ]));
      expect(() => lm.forwardStep(new Tensor(new Int32Array(60), [30, 2], 'int32'), cache)).toThrow(/maxLen/);
    });
  });
});

describe.runIf(addon !== null)('async generation (native)', () => {
  it('generateAsync gives the sync tokens for both models', async () => {
    manualSeed(9);
    const model = new TransformerModel(30, 32, 4, 2, 2, 64).eval().useBackend('native');
    const src = ids(6, 2, 30, 11);
    const want = model.generate(src, { maxNewTokens: 9, bosId: 1, eosId: 2 });
    expect(Array.from((await model.generateAsync(src, { maxNewTokens: 9, bosId: 1, eosId: 2 })).data)).toEqual(Array.from(want.data));
    expect(Array.from((await generateSeq2SeqAsync(model, src, { maxNewTokens: 9, bosId: 1, eosId: 2, useCache: false })).data))
      .toEqual(Array.from(want.data));
    const lm = new nn.CausalLM({ vocabSize: 30, dModel: 32, nhead: 4, numLayers: 2 }).eval().useBackend('native');
    const prompt = ids(3, 2, 30, 12);
    const lmWant = lm.generate(prompt, { maxNewTokens: 9 });
    const [a, b] = await Promise.all([lm.generateAsync(prompt, { maxNewTokens: 9 }), lm.generateAsync(prompt, { maxNewTokens: 9 })]);
    expect(Array.from(a.data)).toEqual(Array.from(lmWant.data));
    expect(Array.from(b.data)).toEqual(Array.from(lmWant.data));
  });
});
