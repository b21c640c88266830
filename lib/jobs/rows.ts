/**
 * Row engines: what `attnode run` and a batch-job worker do with a batch of
 * input rows. One implementation serves both, so a distributed run's output
 * equals `attnode run` on the same input.
 *
 * - Token rows (a `--config` model with `--model m.safetensors`, or random weights):
 *   `[1, 2, 3]` or `{"tokens": [...], "id": ...}` → `{"line", "id"?, "length", "pooled"?, "embeddings"?}`.
 * - Text rows (`--model <Hugging Face folder>`): `"text"` or `{"<textField>": "...", "id": ...}` →
 *   `{"line", "id"?, "embedding": [...]}` (encoders: feature-extraction, the folder's pooling) or
 *   `{"line", "id"?, "label", "score"}` (`*ForSequenceClassification` folders: text-classification).
 *
 * A row that is not valid becomes `{"line", "id"?, "error": "..."}` and an entry of the batch's error list; it
 * never stops the batch.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runAsync } from '../async';
import { padBatch, unpadRow } from '../serving/batcher';
import { applyPrecisionFlag } from '../cli/serve';
import { loadServedModel, type ServedModel } from '../cli/config';
import { featureExtraction, type FeatureExtractionPipeline } from '../pipelines/feature-extraction';
import { textClassification, type TextClassificationPipeline, type TextClassificationResult } from '../pipelines/text-classification';

/** What a token-row model returns per row. */
export type OutputKind = 'pooled' | 'tokens' | 'both';

/** One input row before the model sees it: its 1-based line number and the parsed value (or why it did not parse). */
export interface InputRow {
  line: number;
  value?: unknown;
  parseError?: string;
}

/** A row the model could not take: what the error ledger records. */
export interface RowError {
  line: number;
  id?: unknown;
  reason: string;
}

/**
 * The output of a batch: one JSON line per input row, in input order (or, when the records were asked for, the
 * records those lines would print, and no lines), and the rows that failed.
 */
export interface BatchOutput {
  lines: string[];
  records?: Record<string, unknown>[];
  errors: RowError[];
}

/** What {@link RowEngine.process} returns per row: JSON lines (the JSONL sink, `attnode run`) or the records themselves (the PostgreSQL sink). */
export type BatchForm = 'lines' | 'records';

/** Processes batches of rows with a loaded model. */
export interface RowEngine {
  /** `'tokens'` (config model) or `'feature-extraction'` / `'text-classification'` (a Hugging Face folder). */
  readonly task: 'tokens' | 'feature-extraction' | 'text-classification';
  process(rows: InputRow[], form?: BatchForm): Promise<BatchOutput>;
}

/** What selects and configures a row engine (the same fields for `attnode run` and a job run). */
export interface ModelSpec {
  /** A safetensors state dict (with `config`), a Hugging Face model folder, or absent (random weights). */
  model?: string;
  /** Config file of a token-row model (`lib/cli/config.ts`). */
  config?: string;
  /** Seed of random weights (default 0). */
  seed?: number;
  /** Token rows: pooled, tokens or both (default pooled). */
  outputKind?: OutputKind;
  /** Text rows: the field holding the text (default "text"). */
  textField?: string;
  /** 'float32' (default), 'bfloat16' or 'int8' weight GEMMs. */
  precision?: string;
}

/** A row's line and id as they lead its output record. */
function head(line: number, id: unknown): Record<string, unknown> {
  return id === undefined ? { line } : { line, id };
}

function idOf(v: unknown): unknown {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>).id : undefined;
}

function errorOutput(rows: { line: number; id?: unknown; reason: string }[]): { records: Record<string, unknown>[]; errors: RowError[] } {
  return {
    records: rows.map((r) => ({ ...head(r.line, r.id), error: r.reason })),
    errors: rows.map((r) => (r.id === undefined ? { line: r.line, reason: r.reason } : { line: r.line, id: r.id, reason: r.reason })),
  };
}

/** A batch's records (input order) as the form asked for. */
function batchOutput(records: Record<string, unknown>[], errors: RowError[], form: BatchForm): BatchOutput {
  return form === 'records' ? { lines: [], records, errors } : { lines: records.map((r) => JSON.stringify(r)), errors };
}

interface TokenRow {
  line: number;
  id?: unknown;
  tokens?: Int32Array;
  error?: string;
}

/** Checks one token row (`[...]`, `{"tokens": [...]}`, or a CSV record whose tokens column holds a JSON array). */
function tokenRow(row: InputRow, model: ServedModel['encoder']): TokenRow {
  const { line } = row;
  if (row.parseError !== undefined) return { line, error: row.parseError };
  const v = row.value;
  const id = idOf(v);
  let tokens: unknown = v;
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    tokens = (v as Record<string, unknown>).tokens;
    if (typeof tokens === 'string') {
      try {
        tokens = JSON.parse(tokens);
      } catch {
        return { ...head(line, id), error: `field "tokens" is not a JSON array: ${JSON.stringify(tokens).slice(0, 80)}` } as TokenRow;
      }
    }
  }
  const r: TokenRow = id === undefined ? { line } : { line, id };
  if (!Array.isArray(tokens)) return { ...r, error: 'expected an array of token ids or {"tokens": [...]}' };
  if (tokens.length === 0) return { ...r, error: 'empty token list' };
  if (tokens.length > model.maxSeqLen) return { ...r, error: `${tokens.length} tokens; the model accepts at most ${model.maxSeqLen}` };
  const ids = new Int32Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) {
    const t: unknown = tokens[i];
    if (typeof t !== 'number' || !Number.isInteger(t)) return { ...r, error: `token ${i} is not an integer: ${JSON.stringify(t)}` };
    if (t < 0 || t >= model.vocabSize) return { ...r, error: `token ${i} is ${t}, outside [0, ${model.vocabSize})` };
    ids[i] = t;
  }
  return { ...r, tokens: ids };
}

class TokenEngine implements RowEngine {
  readonly task = 'tokens' as const;
  constructor(readonly model: ServedModel['encoder'], readonly kind: OutputKind) {}

  async process(rows: InputRow[], form: BatchForm = 'lines'): Promise<BatchOutput> {
    const parsed = rows.map((r) => tokenRow(r, this.model));
    const valid = parsed.filter((r) => r.tokens);
    const results = new Map<TokenRow, Record<string, unknown>>();
    if (valid.length) {
      const { input, mask } = padBatch('ids', valid.map((r) => r.tokens!), valid.map((r) => r.tokens!.length));
      const out = await runAsync(() => this.model.forward(input, mask));
      valid.forEach((r, i) => {
        const t = unpadRow(out, i, r.tokens!.length);
        const [len, e] = t.shape as [number, number];
        const rec: Record<string, unknown> = { ...head(r.line, r.id), length: len };
        if (this.kind !== 'tokens') {
          const acc = new Float64Array(e);
          for (let p = 0; p < len; p++) for (let j = 0; j < e; j++) acc[j]! += t.data[p * e + j]!;
          rec.pooled = Array.from(acc, (x) => Math.fround(x / len));
        }
        if (this.kind !== 'pooled') rec.embeddings = Array.from({ length: len }, (_, p) => Array.from(t.data.subarray(p * e, (p + 1) * e)));
        results.set(r, rec);
      });
    }
    const bad = parsed.filter((r) => !r.tokens).map((r) => ({ line: r.line, id: r.id, reason: r.error! }));
    const errs = errorOutput(bad);
    const errRecords = new Map(bad.map((b, i) => [b.line, errs.records[i]!]));
    return batchOutput(parsed.map((r) => results.get(r) ?? errRecords.get(r.line)!), errs.errors, form);
  }
}

type TextPipeline = FeatureExtractionPipeline | TextClassificationPipeline;

class TextEngine implements RowEngine {
  constructor(readonly pipe: TextPipeline, readonly textField: string) {}

  get task(): 'feature-extraction' | 'text-classification' {
    return this.pipe.task;
  }

  async #infer(texts: string[]): Promise<unknown[]> {
    if (this.pipe.task === 'feature-extraction') {
      const t = await this.pipe(texts, { batchSize: texts.length });
      const d = t.shape[1]!;
      return texts.map((_, i) => ({ embedding: Array.from(t.data.subarray(i * d, (i + 1) * d)) }));
    }
    const res = (await this.pipe(texts, { batchSize: texts.length })) as TextClassificationResult[];
    return res.map((r) => ({ label: r.label, score: r.score }));
  }

  async process(rows: InputRow[], form: BatchForm = 'lines'): Promise<BatchOutput> {
    const f = this.textField;
    const checked = rows.map((r) => {
      if (r.parseError !== undefined) return { line: r.line, reason: r.parseError };
      const v = r.value;
      const id = idOf(v);
      const text = typeof v === 'string' ? v : v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>)[f] : undefined;
      if (typeof text !== 'string') return { line: r.line, id, reason: `expected a string or an object with a string field "${f}"` };
      if (text.length === 0) return { line: r.line, id, reason: `field "${f}" is empty` };
      return { line: r.line, id, text };
    });
    const valid = checked.filter((c): c is { line: number; id: unknown; text: string } => 'text' in c);
    const results = new Map<number, Record<string, unknown>>();
    const failed: { line: number; id?: unknown; reason: string }[] = [];
    const record = (c: { line: number; id: unknown }, v: unknown): void => {
      results.set(c.line, { ...head(c.line, c.id), ...(v as object) });
    };
    if (valid.length) {
      let outs: unknown[] | null = null;
      try {
        outs = await this.#infer(valid.map((c) => c.text));
      } catch {
        // One row broke the batch: run the rows alone so only that row fails.
      }
      if (outs) valid.forEach((c, i) => record(c, outs![i]));
      else {
        for (const c of valid) {
          try {
            record(c, (await this.#infer([c.text]))[0]);
          } catch (e) {
            failed.push({ line: c.line, id: c.id, reason: (e as Error).message });
          }
        }
      }
    }
    const bad = [...checked.filter((c) => !('text' in c)) as { line: number; id?: unknown; reason: string }[], ...failed];
    const errs = errorOutput(bad);
    const errRecords = new Map(bad.map((b, i) => [b.line, errs.records[i]!]));
    const order = new Map(rows.map((r, i) => [r.line, i]));
    errs.errors.sort((a, b) => order.get(a.line)! - order.get(b.line)!);
    return batchOutput(rows.map((r) => results.get(r.line) ?? errRecords.get(r.line)!), errs.errors, form);
  }
}

/** Reads a Hugging Face folder's config.json: does it name a sequence-classification architecture? */
function isClassifierFolder(dir: string): boolean {
  const file = path.join(dir, 'config.json');
  let cfg: unknown;
  try {
    cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot be read as JSON (${(e as Error).message})`);
  }
  const arch = (cfg as { architectures?: unknown }).architectures;
  return Array.isArray(arch) && arch.some((a) => typeof a === 'string' && a.endsWith('ForSequenceClassification'));
}

/**
 * Loads the engine a spec describes: a Hugging Face folder → text rows (classification when its config names a
 * `*ForSequenceClassification` architecture, else embeddings); otherwise a token-row model from `config` + weights.
 */
export async function loadRowEngine(spec: ModelSpec): Promise<RowEngine> {
  const model = spec.model;
  if (model !== undefined && fs.existsSync(model) && fs.statSync(model).isDirectory()) {
    if (spec.config !== undefined) throw new TypeError(`--config goes with a safetensors file; ${model} is a model folder with its own config.json`);
    const weightPrecision = spec.precision === 'bfloat16' || spec.precision === 'int8' ? spec.precision : undefined;
    if (spec.precision !== undefined && spec.precision !== 'bfloat16' && spec.precision !== 'int8' && spec.precision !== 'float32') {
      throw new TypeError(`--precision must be float32, bfloat16 or int8, got '${spec.precision}'`);
    }
    const opts = weightPrecision ? { weightPrecision } as const : {};
    const pipe = isClassifierFolder(model) ? await textClassification(model, opts) : await featureExtraction(model, opts);
    return new TextEngine(pipe, spec.textField ?? 'text');
  }
  const kind = spec.outputKind ?? 'pooled';
  if (!['pooled', 'tokens', 'both'].includes(kind)) throw new TypeError(`output kind must be pooled, tokens or both, got '${kind}'`);
  const served = await loadServedModel({ configPath: spec.config, modelPath: model, seed: spec.seed ?? 0 });
  applyPrecisionFlag(served.module, spec.precision);
  return new TokenEngine(served.encoder, kind);
}
