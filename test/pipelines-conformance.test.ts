/**
 * What a Hugging Face / sentence-transformers folder's config files tell the
 * encoder pipelines, checked against PyTorch (scripts/gen_bert_fixtures.py):
 * every sentence-transformers pooling mode, max_seq_length truncation,
 * do_lower_case, Normalize; modules and modes attnode does not compute are
 * errors naming the file and the field; text-classification's scores follow
 * config.json's `problem_type` as transformers' pipeline does.
 */
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { pipeline } from '../lib/index';
import { Tensor } from '../lib/tensor';
import type { TextClassificationResult } from '../lib/pipelines/text-classification';
import { editConfig } from './helpers/hf-folder-copy';

const HF = path.join(__dirname, 'fixtures', 'hf');
type StRef = { texts: string[]; max: number[]; mean_sqrt_len: number[]; lasttoken: number[]; cls: number[]; mean: number[]; truncated_5_mean: number[] };
const r = (JSON.parse(readFileSync(path.join(HF, 'bert-st', 'reference.json'), 'utf8')) as { pipeline: StRef }).pipeline;

/** A copy of a whole fixture folder (tokenizer and sentence-transformers files included). */
function copyFolder(name: string): string {
  const d = mkdtempSync(path.join(tmpdir(), `attnode-${name}-`));
  cpSync(path.join(HF, name), d, { recursive: true });
  return d;
}
const writeJson = (file: string, v: unknown): void => writeFileSync(file, JSON.stringify(v));
const pooling = (modes: Record<string, boolean>): Record<string, unknown> => ({
  word_embedding_dimension: 32, pooling_mode_cls_token: false, pooling_mode_mean_tokens: false, pooling_mode_max_tokens: false,
  pooling_mode_mean_sqrt_len_tokens: false, ...modes,
});
function maxDiff(t: Tensor<'float32'>, want: number[]): number {
  const d = t.contiguous().data;
  expect(d.length).toBe(want.length);
  return want.reduce((m, w, i) => Math.max(m, Math.abs(d[i]! - w)), 0);
}

describe('feature-extraction follows the sentence-transformers config', () => {
  it.each([
    ['pooling_mode_max_tokens', 'max', 'max'],
    ['pooling_mode_mean_sqrt_len_tokens', 'mean_sqrt_len', 'mean_sqrt_len'],
    ['pooling_mode_lasttoken', 'lasttoken', 'lasttoken'],
    ['pooling_mode_cls_token', 'cls', 'cls'],
  ] as const)('%s: the pooling default, within 1e-4 of PyTorch', async (mode, name, key) => {
    const d = copyFolder('bert-st');
    writeJson(path.join(d, '1_Pooling', 'config.json'), pooling({ [mode]: true }));
    const p = await pipeline('feature-extraction', d);
    expect(p.defaults).toMatchObject({ pooling: name, normalize: true });
    expect(maxDiff(await p(r.texts, { normalize: false }), r[key])).toBeLessThan(1e-4);
    // The same pooling chosen per call on a folder that defaults to mean.
    const plain = await pipeline('feature-extraction', path.join(HF, 'bert-st'));
    expect(maxDiff(await plain(r.texts, { pooling: name, normalize: false }), r[key])).toBeLessThan(1e-4);
  });

  it("sentence_bert_config.json: max_seq_length truncates (specials kept), do_lower_case lower-cases", async () => {
    const d = copyFolder('bert-st');
    writeJson(path.join(d, 'sentence_bert_config.json'), { max_seq_length: 5, do_lower_case: false });
    const p = await pipeline('feature-extraction', d);
    expect(p.defaults).toEqual({ pooling: 'mean', normalize: true, maxSeqLength: 5, doLowerCase: false });
    expect(maxDiff(await p(r.texts, { normalize: false }), r.truncated_5_mean)).toBeLessThan(1e-4);
    const upper = r.texts.map((t) => t.toUpperCase());
    // A cased copy of the tokenizer (BertNormalizer lowercase off), so only do_lower_case lower-cases.
    const tokFile = path.join(d, 'tokenizer.json');
    const tok = JSON.parse(readFileSync(tokFile, 'utf8')) as { normalizer: Record<string, unknown> };
    tok.normalizer['lowercase'] = false;
    writeJson(tokFile, tok);
    writeJson(path.join(d, 'sentence_bert_config.json'), { max_seq_length: 64, do_lower_case: true });
    const lower = await pipeline('feature-extraction', d);
    const want = await lower(r.texts.map((t) => t.toLowerCase()), { normalize: false });
    expect(maxDiff(await lower(upper, { normalize: false }), Array.from(want.data))).toBeLessThan(1e-6);
    writeJson(path.join(d, 'sentence_bert_config.json'), { max_seq_length: 64, do_lower_case: false });
    const cased = await pipeline('feature-extraction', d);
    expect(maxDiff(await cased(upper, { normalize: false }), Array.from(want.data))).toBeGreaterThan(1e-3);
  });

  it('modules and pooling modes it does not compute are errors naming the file and field', async () => {
    let d = copyFolder('bert-st');
    const modules = JSON.parse(readFileSync(path.join(d, 'modules.json'), 'utf8')) as unknown[];
    writeJson(path.join(d, 'modules.json'), [...modules, { idx: 3, name: '3', path: '3_Dense', type: 'sentence_transformers.models.Dense' }]);
    await expect(pipeline('feature-extraction', d)).rejects.toThrow(
      /modules.json: field '\[3\].type' "sentence_transformers.models.Dense" is not supported/);
    d = copyFolder('bert-st');
    writeJson(path.join(d, '1_Pooling', 'config.json'), pooling({ pooling_mode_weightedmean_tokens: true }));
    await expect(pipeline('feature-extraction', d)).rejects.toThrow(
      /1_Pooling[/\\]config.json: fields 'pooling_mode_\*' must select exactly one of pooling_mode_cls_token, pooling_mode_mean_tokens, pooling_mode_max_tokens, pooling_mode_mean_sqrt_len_tokens, pooling_mode_lasttoken \(got pooling_mode_weightedmean_tokens\)/);
    d = copyFolder('bert-st');
    writeJson(path.join(d, '1_Pooling', 'config.json'), pooling({ pooling_mode_mean_tokens: true, pooling_mode_max_tokens: true }));
    await expect(pipeline('feature-extraction', d)).rejects.toThrow(/got pooling_mode_mean_tokens, pooling_mode_max_tokens/);
    d = copyFolder('bert-st');
    writeJson(path.join(d, '1_Pooling', 'config.json'), { ...pooling({ pooling_mode_mean_tokens: true }), word_embedding_dimension: 384 });
    await expect(pipeline('feature-extraction', d)).rejects.toThrow(/field 'word_embedding_dimension' is 384 but the model's hidden size is 32/);
    d = copyFolder('bert-st');
    writeJson(path.join(d, 'sentence_bert_config.json'), { max_seq_length: 0 });
    await expect(pipeline('feature-extraction', d)).rejects.toThrow(/sentence_bert_config.json: field 'max_seq_length' must be an integer >= 1, got 0/);
    const p = await pipeline('feature-extraction', path.join(HF, 'bert-st'));
    await expect(p(['x'], { pooling: 'weightedmean' as never })).rejects.toThrow(/option 'pooling' must be 'mean', 'cls', 'max', 'mean_sqrt_len', 'lasttoken', 'none', got "weightedmean"/);
  });
});

describe("text-classification scores follow config.json's problem_type", () => {
  const texts = ['hello world', 'a longer sentence here'];
  const logitsOf = async (dir: string): Promise<number[][]> => {
    const p = await pipeline('text-classification', dir);
    const enc = p.tokenizer(texts, { padding: true });
    const l = p.model.forward(enc.inputIds, { attentionMask: enc.attentionMask, ...(enc.tokenTypeIds ? { tokenTypeIds: enc.tokenTypeIds } : {}) }).logits.contiguous();
    return texts.map((_, i) => Array.from(l.data.subarray(i * 3, i * 3 + 3)));
  };

  it.each([
    ['multi_label_classification', (row: number[]) => row.map((x) => 1 / (1 + Math.exp(-x)))],
    ['regression', (row: number[]) => row],
    ['single_label_classification', (row: number[]) => { const e = row.map((x) => Math.exp(x)); const s = e.reduce((a, b) => a + b); return e.map((x) => x / s); }],
  ] as const)('%s', async (problem, score) => {
    const d = copyFolder('bert-cls');
    editConfig(d, (c) => (c['problem_type'] = problem));
    const logits = await logitsOf(d);
    const p = await pipeline('text-classification', d);
    const got = (await p(texts, { topK: 3 })) as TextClassificationResult[][];
    const labels = p.model.config.id2label;
    got.forEach((row, i) => {
      const want = score(logits[i]!);
      for (const { label, score: s } of row) expect(s).toBeCloseTo(want[labels.indexOf(label)]!, 5);
    });
    if (problem === 'multi_label_classification') expect(got[0]!.reduce((a, x) => a + x.score, 0)).not.toBeCloseTo(1, 3);
  });

  it('an unknown problem_type is an error naming the field', async () => {
    const d = copyFolder('bert-cls');
    editConfig(d, (c) => (c['problem_type'] = 'ranking'));
    await expect(pipeline('text-classification', d)).rejects.toThrow(/config.json: field 'problem_type' "ranking" is not supported/);
  });
});
