/**
 * The encoder pipelines on the BERT-family fixture folders: pooled sentence
 * embeddings and class probabilities against PyTorch (scripts/gen_bert_fixtures.py,
 * token ids from the Rust tokenizers), fill-mask against PyTorch's top-k, the
 * caller's order kept through length sorting, batch sizes not changing
 * results, and bad input.
 */
import { mkdtempSync, copyFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { pipeline } from '../lib/index';
import { Tensor } from '../lib/tensor';
import { getNumThreads, setNumThreads } from '../lib/runtime';
import { cosine } from './helpers/reference';

const HF = path.join(__dirname, 'fixtures', 'hf');
const ref = (name: string): Record<string, any> => JSON.parse(readFileSync(path.join(HF, name, 'reference.json'), 'utf8')); // eslint-disable-line @typescript-eslint/no-explicit-any

const rows = (t: Tensor<'float32'>): Float32Array[] => {
  const [n, d] = t.shape as [number, number];
  return Array.from({ length: n }, (_, i) => t.data.slice(i * d, (i + 1) * d));
};

describe('feature-extraction', () => {
  const r = ref('bert-st').pipeline as { texts: string[]; mean: number[]; mean_normalized: number[]; cls: number[] };
  const want = (flat: number[]): number[][] => Array.from({ length: r.texts.length }, (_, i) => flat.slice(i * 32, (i + 1) * 32));

  it('sentence-transformers defaults (mean, normalized) match the PyTorch pooling, cosine >= 0.9999', async () => {
    const p = await pipeline('feature-extraction', path.join(HF, 'bert-st'));
    expect(p.defaults).toEqual({ pooling: 'mean', normalize: true });
    const e = await p(r.texts);
    expect(e.shape).toEqual([r.texts.length, 32]);
    rows(e).forEach((v, i) => {
      expect(cosine(v, want(r.mean_normalized)[i]!)).toBeGreaterThanOrEqual(0.9999);
      expect(Math.hypot(...v)).toBeCloseTo(1, 5);
      v.forEach((x, j) => expect(Math.abs(x - want(r.mean_normalized)[i]![j]!)).toBeLessThan(1e-4));
    });
    const mean = await p(r.texts, { normalize: false });
    rows(mean).forEach((v, i) => v.forEach((x, j) => expect(Math.abs(x - want(r.mean)[i]![j]!)).toBeLessThan(1e-4)));
    const cls = await p(r.texts, { pooling: 'cls', normalize: false });
    rows(cls).forEach((v, i) => expect(cosine(v, want(r.cls)[i]!)).toBeGreaterThanOrEqual(0.9999));
  });

  it('keeps the caller order, and batch size 1 and 32 give the same vectors', async () => {
    const p = await pipeline('feature-extraction', path.join(HF, 'bert-st'), { batchSize: 2 });
    const texts = [...r.texts].reverse();
    const a = await p(texts);
    rows(a).forEach((v, i) => expect(cosine(v, want(r.mean_normalized)[r.texts.length - 1 - i]!)).toBeGreaterThanOrEqual(0.9999));
    const one = await p(texts, { batchSize: 1 });
    const all = await p(texts, { batchSize: 32 });
    for (let i = 0; i < a.data.length; i++) expect(Math.abs(one.data[i]! - all.data[i]!)).toBeLessThan(1e-5);
    const single = await p(texts[0]!);
    expect(single.shape).toEqual([1, 32]);
  });

  it("creation options: backend 'js' and weightPrecision 'bfloat16' reach the model; unknown ones are refused", async () => {
    const js = await pipeline('feature-extraction', path.join(HF, 'bert-st'), { backend: 'js' });
    expect(js.model.backend.name).toBe('js');
    rows(await js(r.texts)).forEach((v, i) => v.forEach((x, j) => expect(Math.abs(x - want(r.mean_normalized)[i]![j]!)).toBeLessThan(1e-4)));
    const bf = await pipeline('feature-extraction', path.join(HF, 'bert-st'), { weightPrecision: 'bfloat16' });
    expect(bf.model.weightPrecision).toBe('bfloat16');
    const e = await bf(r.texts);
    // bf16 weights keep about 3 significant digits: close to, but not equal to, the float32 vectors.
    let exact = true;
    rows(e).forEach((v, i) => {
      expect(cosine(v, want(r.mean_normalized)[i]!)).toBeGreaterThanOrEqual(0.999);
      if (v.some((x, j) => x !== Math.fround(want(r.mean_normalized)[i]![j]!))) exact = false;
    });
    expect(exact).toBe(false);
    await expect(pipeline('feature-extraction', path.join(HF, 'bert-st'), { precision: 'bfloat16' } as never)).rejects.toThrow(/unknown option 'precision'/);
    await expect(pipeline('text-classification', path.join(HF, 'bert-cls'), { weightPrecision: 'fp8' } as never)).rejects.toThrow(/useWeightPrecision: argument 'precision'.*fp8/);
  });

  it('parallelBatches (batches side by side at 2 threads) gives the same vectors as one batch at a time; a non-boolean is refused', async () => {
    const before = getNumThreads();
    try {
      setNumThreads(2);
      const texts = Array.from({ length: 9 }, (_, i) => r.texts[i % r.texts.length]! + ' more'.repeat(i));
      const par = await pipeline('feature-extraction', path.join(HF, 'bert-st'), { batchSize: 2 });
      const seq = await pipeline('feature-extraction', path.join(HF, 'bert-st'), { batchSize: 2, parallelBatches: false });
      const a = await par(texts);
      const b = await seq(texts);
      expect(Array.from(a.data)).toEqual(Array.from(b.data));
      const cls = await pipeline('text-classification', path.join(HF, 'bert-cls'), { batchSize: 2 });
      const cls1 = await pipeline('text-classification', path.join(HF, 'bert-cls'), { batchSize: 2, parallelBatches: false });
      expect(await cls(texts)).toEqual(await cls1(texts));
    } finally {
      setNumThreads(before);
    }
    await expect(pipeline('feature-extraction', path.join(HF, 'bert-st'), { parallelBatches: 1 } as never)).rejects.toThrow(/option 'parallelBatches' must be a boolean, got number/);
  });

  it("'none' returns every token's vector, zeros past each text", async () => {
    const p = await pipeline('feature-extraction', path.join(HF, 'bert-st'));
    const t = await p(['Hello world', 'The quick brown fox jumps over the lazy dog.'], { pooling: 'none', normalize: false });
    expect(t.shape).toEqual([2, 12, 32]);
    expect(Array.from(t.data.subarray(4 * 32, 12 * 32)).every((x) => x === 0)).toBe(true);
    expect(Array.from(t.data.subarray(3 * 32, 4 * 32)).some((x) => x !== 0)).toBe(true);
  });

  it('a plain BERT folder (no modules.json) defaults to mean, not normalized', async () => {
    const p = await pipeline('feature-extraction', path.join(HF, 'bert-cls'));
    expect(p.defaults).toEqual({ pooling: 'mean', normalize: false });
  });
});

describe('text-classification', () => {
  it('softmax probabilities match PyTorch, labels from id2label, order kept', async () => {
    const r = ref('bert-cls').pipeline as { texts: string[]; probs: number[] };
    const p = await pipeline('text-classification', path.join(HF, 'bert-cls'), { batchSize: 4 });
    const labels = ['negative', 'neutral', 'positive'];
    const out = (await p(r.texts)) as { label: string; score: number }[];
    expect(out).toHaveLength(r.texts.length);
    out.forEach((o, i) => {
      const probs = r.probs.slice(i * 3, i * 3 + 3);
      const best = probs.indexOf(Math.max(...probs));
      expect(o.label).toBe(labels[best]);
      expect(Math.abs(o.score - probs[best]!)).toBeLessThan(1e-4);
    });
    const all = (await p(r.texts, { topK: 3, batchSize: 1 })) as { label: string; score: number }[][];
    all.forEach((o, i) => {
      expect(o.map((x) => x.score).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
      for (const x of o) expect(Math.abs(x.score - r.probs[i * 3 + labels.indexOf(x.label)]!)).toBeLessThan(1e-4);
    });
    const single = (await p('Hello world')) as { label: string; score: number }[];
    // Alone it pads to its own length, so only float rounding may differ.
    expect(single).toHaveLength(1);
    expect(single[0]!.label).toBe(out[0]!.label);
    expect(Math.abs(single[0]!.score - out[0]!.score)).toBeLessThan(1e-6);
  });

  it('runs RoBERTa (XLM-R) and DistilBERT classifiers', async () => {
    const x = await pipeline('sentiment-analysis', path.join(HF, 'roberta-xlmr-cls'));
    const logits = ref('roberta-xlmr-cls').logits as number[];
    const [o] = (await x(['Hello world'])) as { label: string; score: number }[];
    const pPos = 1 / (1 + Math.exp(logits[0]! - logits[1]!));
    expect(o!.label).toBe(pPos > 0.5 ? 'POS' : 'NEG');
    expect(Math.abs(o!.score - Math.max(pPos, 1 - pPos))).toBeLessThan(1e-4);
    const d = await pipeline('text-classification', path.join(HF, 'distilbert-cls'));
    const dl = ref('distilbert-cls').logits as number[];
    const [od] = (await d(['Hello world'])) as { label: string; score: number }[];
    const row = dl.slice(0, 3);
    const m = Math.max(...row);
    const s = row.reduce((a, v) => a + Math.exp(v - m), 0);
    expect(Math.abs(od!.score - 1 / s)).toBeLessThan(1e-4);
  });
});

describe('fill-mask', () => {
  it('top-k at the mask matches PyTorch', async () => {
    const r = ref('bert-mlm').fill_mask as { text: string; input_ids: number[]; top_ids: number[]; top_scores: number[] };
    const p = await pipeline('fill-mask', path.join(HF, 'bert-mlm'));
    expect(p.maskToken).toBe('[MASK]');
    expect(p.tokenizer.encode(r.text)).toEqual(r.input_ids);
    const out = (await p(r.text)) as { score: number; token: number; tokenStr: string; sequence: string }[];
    expect(out.map((o) => o.token)).toEqual(r.top_ids);
    out.forEach((o, i) => {
      expect(Math.abs(o.score - r.top_scores[i]!)).toBeLessThan(1e-5);
      expect(o.tokenStr).toBe(p.tokenizer.idToToken(o.token));
      expect(o.sequence).toBe(p.tokenizer.decode([r.input_ids[1]!, o.token], { skipSpecialTokens: true }));
    });
    const many = (await p(['the [MASK] dog', r.text], { topK: 2, batchSize: 1 })) as unknown[][];
    expect(many).toHaveLength(2);
    expect((many[1] as { token: number }[]).map((o) => o.token)).toEqual(r.top_ids.slice(0, 2));
  });

  it('RoBERTa uses <mask>; a text without exactly one mask is an error', async () => {
    const p = await pipeline('fill-mask', path.join(HF, 'roberta-mlm'));
    expect(p.maskToken).toBe('<mask>');
    expect(((await p('Hello <mask>')) as unknown[]).length).toBe(5);
    await expect(p('Hello world')).rejects.toThrow(/argument 'texts'\[0\] must hold exactly one <mask> token, got 0/);
    await expect(p(['a <mask>', '<mask> <mask>'])).rejects.toThrow(/'texts'\[1\] must hold exactly one <mask> token, got 2/);
  });
});

describe('pipeline bad input', () => {
  it('names the task, argument, option or file', async () => {
    await expect(pipeline('summarization' as never, path.join(HF, 'bert-st'))).rejects.toThrow(/argument 'task' "summarization" is not a supported task \(supported: feature-extraction/);
    await expect(pipeline('feature-extraction', 7 as never)).rejects.toThrow(TypeError);
    await expect(pipeline('feature-extraction', path.join(HF, 'bert-st'), { batchSize: 0 })).rejects.toThrow(/batchSize/);
    const p = await pipeline('feature-extraction', path.join(HF, 'bert-st'));
    await expect(p(42 as never)).rejects.toThrow(/argument 'texts' must be a string or an array of strings, got number/);
    await expect(p(['ok', 3] as never)).rejects.toThrow(/argument 'texts' must be a string or an array of strings, got an array holding number/);
    await expect(p(['ok'], { pooling: 'weighted' as never })).rejects.toThrow(/option 'pooling' must be 'mean', 'cls', 'max', 'mean_sqrt_len', 'lasttoken', 'none'/);
    await expect(p(['ok'], { poolng: 'mean' } as never)).rejects.toThrow(/unknown option 'poolng'/);
    await expect(p(['ok'], { batchSize: 1.5 })).rejects.toThrow(/batchSize/);
    expect((await p([])).shape).toEqual([0, 32]);
    // A folder without a tokenizer, and a broken Pooling config.
    const d = mkdtempSync(path.join(tmpdir(), 'attnode-pipe-'));
    for (const f of ['config.json', 'model.safetensors']) copyFileSync(path.join(HF, 'bert-st', f), path.join(d, f));
    await expect(pipeline('feature-extraction', d)).rejects.toThrow(/no tokenizer files/);
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'modules.json']) copyFileSync(path.join(HF, 'bert-st', f), path.join(d, f));
    mkdirSync(path.join(d, '1_Pooling'));
    writeFileSync(path.join(d, '1_Pooling', 'config.json'), JSON.stringify({ pooling_mode_weightedmean_tokens: true }));
    await expect(pipeline('feature-extraction', d)).rejects.toThrow(/1_Pooling.config.json: fields 'pooling_mode_\*' must select exactly one/);
    await expect(pipeline('fill-mask', path.join(HF, 'bert-st'))).rejects.toThrow(/missing keys/);
    const long = 'word '.repeat(200);
    const t = await p([long]);
    expect(t.shape).toEqual([1, 32]); // truncated to the model's positions, not an error
  });
});
