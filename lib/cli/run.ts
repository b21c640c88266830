/**
 * `attnode run`: batch inference over a JSONL (or CSV) file of rows, on one machine
 * (`attnode submit` / `worker` run the same rows through the same engine, lib/jobs/rows.ts, on many).
 *
 * Input: one row per line, either `[1, 2, 3]` or `{"tokens": [1, 2, 3], "id": <any>}`
 * (blank lines are skipped); with `--model <Hugging Face folder>`, text rows (`"text"` or
 * `{"text": "...", "id": ...}`, `--text-field` names the field) → `{"line", "id"?, "embedding"}` or
 * `{"line", "id"?, "label", "score"}` (classification folders). Output (JSONL, same order): `{"line": n, "id"?, "length": L,
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
import { once } from 'node:events';
import { setNumThreads } from '../runtime';
import { inputFormat, readRows } from '../jobs/readers';
import { loadRowEngine, type BatchOutput, type InputRow, type OutputKind } from '../jobs/rows';
import { UsageError, intFlag, parseFlags } from './args';

export const RUN_USAGE = `usage: attnode run --input in.jsonl|in.csv [--output out.jsonl] [--model m.safetensors|<hf folder>] [--config c.json]
                  [--batch-size N] [--output-kind pooled|tokens|both] [--seed N] [--threads N] [--no-progress]
                  [--precision float32|bfloat16|int8] [--text-field F] [--format jsonl|csv]
  --input        JSONL of token-id rows ([1,2,3] or {"tokens":[...],"id":...}), or of text rows for a
                 Hugging Face folder ("text" or {"text":"...","id":...}); CSV by extension; - for stdin
  --output       JSONL results (default stdout)
  --model        a safetensors state dict for the config's model (default: random weights from --seed), or a
                 Hugging Face encoder folder: text rows → {"embedding"}, or {"label","score"} for a classifier
  --text-field   the text rows' field (default text)
  --format       jsonl or csv (default: by the input's extension)
  --config       the model config JSON (README: "The model config of serve and run"; default a small encoder)
  --batch-size   rows per forward pass (default 32)
  --output-kind  pooled (mean over tokens, default), tokens (every token's vector) or both
  --seed         seed of the random weights when no --model is given (default 0)
  --threads      native threads (default: the available cores)
  --no-progress  no progress bar on stderr
  --precision    weight GEMMs and attention in float32 (default) or bfloat16 (AVX512-BF16 CPUs); int8: int8
                 weight GEMMs (any CPU), attention in float32`;

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
  strings: ['model', 'config', 'input', 'output', 'batch-size', 'output-kind', 'seed', 'threads', 'precision', 'text-field', 'format'],
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

  const format = (() => {
    try {
      return inputFormat(inputPath, values.format);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  })();
  const engine = await loadRowEngine({
    model: values.model, config: values.config, seed, outputKind: kind, precision: values.precision, textField: values['text-field'],
  });
  // After every check of the command line, so a usage error stays one line.
  if (values.model === undefined) console.error('attnode run: no --model given: using random weights (seed ' + seed + ')');
  const fromStdin = inputPath === '-';
  const input = fromStdin ? process.stdin : fs.createReadStream(inputPath);
  const totalBytes = fromStdin ? null : fs.statSync(inputPath).size;
  let bytesRead = 0;
  input.on('data', (c: string | Buffer) => (bytesRead += c.length));
  const output: NodeJS.WritableStream = values.output ? fs.createWriteStream(values.output) : process.stdout;
  const progress = new Progress(totalBytes, !flags.has('no-progress'));

  let rowsDone = 0;
  let errors = 0;
  const write = async ({ lines, errors: e }: BatchOutput): Promise<void> => {
    errors += e.length;
    for (const l of lines) {
      if (!output.write(`${l}\n`)) await once(output, 'drain');
    }
    rowsDone += lines.length;
    progress.update(bytesRead, rowsDone);
  };

  const t0 = performance.now();
  let batch: InputRow[] = [];
  let previous: Promise<BatchOutput> | null = null;
  const flush = async (): Promise<void> => {
    // Start this batch on the executor, then write the previous one while it runs.
    const current = engine.process(batch);
    batch = [];
    if (previous) await write(await previous);
    previous = current;
  };
  for await (const row of readRows(input, format)) {
    batch.push(row);
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
