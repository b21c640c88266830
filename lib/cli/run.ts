/**
 * `attnode run`: batch inference over a JSONL file of token-id rows.
 *
 * Input: one row per line, either `[1, 2, 3]` or `{"tokens": [1, 2, 3], "id": <any>}`
 * (blank lines are skipped). Output (JSONL, same order): `{"line": n, "id"?, "length": L,
 * "pooled": [...]}` (and/or `"embeddings"` with `--output-kind tokens|both`), or
 * `{"line": n, "id"?, "error": "..."}` for a row that is not valid; the exit code is
 * then 1.
 *
 * Streaming with bounded memory: lines are read lazily (readline pulls from the
 * file only as rows are consumed), at most two batches exist at once (one
 * computing on the native executor while the previous one is written), and
 * writes wait for 'drain' when the output's buffer is full (backpressure).
 */
import * as fs from 'node:fs';
import * as readline from 'node:readline';
import { once } from 'node:events';
import { runAsync } from '../async';
import { setNumThreads } from '../runtime';
import { padBatch, unpadRow } from '../serving/batcher';
import { loadServedModel, type ServedModel } from './config';
import { UsageError, intFlag, parseFlags } from './args';
import { applyPrecisionFlag } from './serve';

export const RUN_USAGE = `usage: attnode run --input in.jsonl [--output out.jsonl] [--model m.safetensors] [--config c.json]
                  [--batch-size N] [--output-kind pooled|tokens|both] [--seed N] [--threads N] [--no-progress]
                  [--precision float32|bfloat16]
  --input        JSONL of token-id rows ([1,2,3] or {"tokens":[...],"id":...}); - for stdin
  --output       JSONL results (default stdout)
  --model        a safetensors state dict for the config's model (default: random weights from --seed)
  --config       the model config JSON (README: "The model config of serve and run"; default a small encoder)
  --batch-size   rows per forward pass (default 32)
  --output-kind  pooled (mean over tokens, default), tokens (every token's vector) or both
  --seed         seed of the random weights when no --model is given (default 0)
  --threads      native threads (default: the available cores)
  --no-progress  no progress bar on stderr
  --precision    weight GEMMs and attention in float32 (default) or bfloat16 (AVX512-BF16 CPUs)`;

type OutputKind = 'pooled' | 'tokens' | 'both';

interface Row {
  line: number;
  id?: unknown;
  tokens?: Int32Array;
  error?: string;
}

/** Parses and checks one input line (1-based `line` for messages). */
function parseRow(text: string, line: number, model: ServedModel['encoder']): Row {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return { line, error: `not valid JSON: ${(e as Error).message}` };
  }
  let id: unknown;
  let tokens: unknown = v;
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    id = (v as Record<string, unknown>).id;
    tokens = (v as Record<string, unknown>).tokens;
  }
  const row: Row = id === undefined ? { line } : { line, id };
  if (!Array.isArray(tokens)) return { ...row, error: 'expected an array of token ids or {"tokens": [...]}' };
  if (tokens.length === 0) return { ...row, error: 'empty token list' };
  if (tokens.length > model.maxSeqLen) return { ...row, error: `${tokens.length} tokens; the model accepts at most ${model.maxSeqLen}` };
  const ids = new Int32Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) {
    const t: unknown = tokens[i];
    if (typeof t !== 'number' || !Number.isInteger(t)) return { ...row, error: `token ${i} is not an integer: ${JSON.stringify(t)}` };
    if (t < 0 || t >= model.vocabSize) return { ...row, error: `token ${i} is ${t}, outside [0, ${model.vocabSize})` };
    ids[i] = t;
  }
  return { ...row, tokens: ids };
}

/** Computes a batch of rows (valid ones in one padded forward pass) → their output lines. */
async function runBatch(rows: Row[], model: ServedModel['encoder'], kind: OutputKind): Promise<{ lines: string[]; errors: number }> {
  const valid = rows.filter((r) => r.tokens);
  const results = new Map<Row, string>();
  if (valid.length) {
    const { input, mask } = padBatch('ids', valid.map((r) => r.tokens!), valid.map((r) => r.tokens!.length));
    const out = await runAsync(() => model.forward(input, mask));
    valid.forEach((r, i) => {
      const t = unpadRow(out, i, r.tokens!.length);
      const [len, e] = t.shape as [number, number];
      const rec: Record<string, unknown> = { line: r.line, ...(r.id !== undefined ? { id: r.id } : {}), length: len };
      if (kind !== 'tokens') {
        const acc = new Float64Array(e);
        for (let p = 0; p < len; p++) for (let j = 0; j < e; j++) acc[j]! += t.data[p * e + j]!;
        rec.pooled = Array.from(acc, (x) => Math.fround(x / len));
      }
      if (kind !== 'pooled') rec.embeddings = Array.from({ length: len }, (_, p) => Array.from(t.data.subarray(p * e, (p + 1) * e)));
      results.set(r, JSON.stringify(rec));
    });
  }
  const lines = rows.map((r) => results.get(r) ?? JSON.stringify({ line: r.line, ...(r.id !== undefined ? { id: r.id } : {}), error: r.error }));
  return { lines, errors: rows.length - valid.length };
}

/** A progress line on stderr, redrawn at most every 100 ms, only when stderr is a terminal. */
class Progress {
  readonly #tty = process.stderr.isTTY === true;
  #last = 0;
  readonly #t0 = performance.now();
  constructor(readonly totalBytes: number | null, readonly enabled: boolean) {}

  update(bytes: number, rows: number, force = false): void {
    if (!this.enabled || !this.#tty) return;
    const now = performance.now();
    if (!force && now - this.#last < 100) return;
    this.#last = now;
    const rate = rows / Math.max((now - this.#t0) / 1000, 1e-3);
    let bar = '';
    if (this.totalBytes) {
      const f = Math.min(1, bytes / this.totalBytes);
      const width = 30;
      const full = Math.round(f * width);
      bar = `[${'#'.repeat(full)}${' '.repeat(width - full)}] ${(f * 100).toFixed(0).padStart(3)}% `;
    }
    process.stderr.write(`\r${bar}${rows} rows, ${rate.toFixed(0)} rows/s\x1b[K`);
  }

  done(): void {
    if (this.enabled && this.#tty) process.stderr.write('\n');
  }
}

/** The flags of `attnode run`: those taking a value, and switches. */
export const RUN_FLAGS = {
  strings: ['model', 'config', 'input', 'output', 'batch-size', 'output-kind', 'seed', 'threads', 'precision'],
  booleans: ['no-progress'],
} as const;

/** Runs `attnode run` with the arguments after `run`; resolves with the exit code (0, or 1 when rows failed). */
export async function runMain(args: string[]): Promise<number> {
  const flags = parseFlags(args, RUN_FLAGS.strings, RUN_FLAGS.booleans);
  const values = flags.values;
  const inputPath = values.input;
  if (inputPath === undefined) throw new UsageError('--input is required');
  const batchSize = intFlag('batch-size', values['batch-size'], 32, 1);
  const kind = (values['output-kind'] ?? 'pooled') as OutputKind;
  if (!['pooled', 'tokens', 'both'].includes(kind)) throw new UsageError(`--output-kind must be pooled, tokens or both, got '${kind}'`);
  const seed = intFlag('seed', values.seed, 0);
  if (values.threads !== undefined) setNumThreads(intFlag('threads', values.threads, 1, 1));

  const served = await loadServedModel({ configPath: values.config, modelPath: values.model, seed });
  applyPrecisionFlag(served.module, values.precision);
  // After every check of the command line, so a usage error stays one line.
  if (values.model === undefined) console.error('attnode run: no --model given: using random weights (seed ' + seed + ')');
  const model = served.encoder;
  const fromStdin = inputPath === '-';
  const input = fromStdin ? process.stdin : fs.createReadStream(inputPath);
  const totalBytes = fromStdin ? null : fs.statSync(inputPath).size;
  let bytesRead = 0;
  input.on('data', (c: string | Buffer) => (bytesRead += c.length));
  const output: NodeJS.WritableStream = values.output ? fs.createWriteStream(values.output) : process.stdout;
  const progress = new Progress(totalBytes, !flags.has('no-progress'));

  let rowsDone = 0;
  let errors = 0;
  const write = async ({ lines, errors: e }: { lines: string[]; errors: number }): Promise<void> => {
    errors += e;
    for (const l of lines) {
      if (!output.write(`${l}\n`)) await once(output, 'drain');
    }
    rowsDone += lines.length;
    progress.update(bytesRead, rowsDone);
  };

  const t0 = performance.now();
  let batch: Row[] = [];
  let previous: ReturnType<typeof runBatch> | null = null;
  let lineNo = 0;
  const flush = async (): Promise<void> => {
    // Start this batch on the executor, then write the previous one while it runs.
    const current = runBatch(batch, model, kind);
    batch = [];
    if (previous) await write(await previous);
    previous = current;
  };
  const lines = readline.createInterface({ input, crlfDelay: Infinity });
  for await (const text of lines) {
    lineNo++;
    if (text.trim() === '') continue;
    batch.push(parseRow(text, lineNo, model));
    if (batch.length >= batchSize) await flush();
  }
  if (batch.length) await flush();
  if (previous) await write(await previous);
  progress.update(bytesRead, rowsDone, true);
  progress.done();
  if (values.output) {
    output.end();
    await once(output, 'finish');
  }
  const s = (performance.now() - t0) / 1000;
  console.error(
    `attnode run: ${rowsDone} rows (${errors} with errors) in ${s.toFixed(2)} s, ${(rowsDone / Math.max(s, 1e-3)).toFixed(0)} rows/s` +
      (values.output ? ` → ${values.output}` : ''),
  );
  return errors ? 1 : 0;
}
