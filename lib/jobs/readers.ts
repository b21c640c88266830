/**
 * Streaming input readers (JSONL and CSV): rows with their line numbers, and
 * the shard boundaries of a file as byte ranges, so a worker reads only its
 * shard's bytes and a job in Redis holds a few numbers, never the rows.
 */
import * as fs from 'node:fs';
import * as readline from 'node:readline';
import type { Options as CsvOptions, Parser as CsvParser } from 'csv-parse';

/** csv-parse, loaded when a CSV file is first read: a program that imports the package root never needs it. */
function parseCsv(options: CsvOptions): CsvParser {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('csv-parse') as typeof import('csv-parse')).parse(options);
}
import type { InputRow } from './rows';

/** Input formats. */
export type InputFormat = 'jsonl' | 'csv';

/** One shard of an input file: bytes [start, end), the line count before it and its row count. */
export interface ShardRange {
  shard: number;
  start: number;
  end: number;
  /** Lines of the file before `start` (the shard's first line is lineOffset + 1). */
  lineOffset: number;
  rows: number;
}

/** The format of `file`: `format` when given, else by extension (.csv → csv, anything else → jsonl). */
export function inputFormat(file: string, format?: string): InputFormat {
  if (format === undefined) return /\.csv$/i.test(file) ? 'csv' : 'jsonl';
  if (format !== 'jsonl' && format !== 'csv') throw new TypeError(`--format must be jsonl or csv, got '${format}'`);
  return format;
}

/** Where to start reading a CSV file's rows and with which columns. */
export interface CsvLayout {
  columns: string[];
  /** Byte offset just past the header. */
  dataStart: number;
  /** Lines the header spans. */
  headerLines: number;
}

function csvParser(columns: string[] | true, extra: Record<string, unknown> = {}) {
  return parseCsv({
    columns, info: true, skip_empty_lines: true, relax_column_count: true, record_delimiter: ['\r\n', '\n'], bom: true, ...extra,
  });
}

/**
 * Rows of a JSONL or CSV stream, lazily (the stream is pulled only as rows are
 * consumed). Blank lines are skipped; a JSONL line that is not JSON is a row
 * with `parseError`. Line numbers count from `lineOffset + 1`.
 */
export async function* readRows(
  input: NodeJS.ReadableStream, format: InputFormat, opts: { lineOffset?: number; columns?: string[] } = {},
): AsyncGenerator<InputRow> {
  const offset = opts.lineOffset ?? 0;
  if (format === 'jsonl') {
    let n = offset;
    for await (const text of readline.createInterface({ input, crlfDelay: Infinity })) {
      n++;
      if (text.trim() === '') continue;
      try {
        yield { line: n, value: JSON.parse(text) };
      } catch (e) {
        yield { line: n, parseError: `not valid JSON: ${(e as Error).message}` };
      }
    }
    return;
  }
  const parser = csvParser(opts.columns ?? true);
  input.pipe(parser);
  for await (const rec of parser as AsyncIterable<{ record: Record<string, string>; info: { lines: number } }>) {
    yield { line: offset + rec.info.lines, value: rec.record };
  }
}

/** Reads a CSV file's header (its column names and where the data starts). */
export async function csvLayout(file: string): Promise<CsvLayout> {
  const parser = parseCsv({ info: true, to_line: 1, record_delimiter: ['\r\n', '\n'], bom: true });
  fs.createReadStream(file).pipe(parser);
  let layout: CsvLayout | null = null;
  for await (const rec of parser as AsyncIterable<{ record: string[]; info: { bytes: number; lines: number } }>) {
    layout ??= { columns: rec.record, dataStart: rec.info.bytes, headerLines: rec.info.lines };
  }
  if (!layout || layout.columns.every((c) => c.trim() === '')) throw new TypeError(`${file}: the CSV file has no header line`);
  return layout;
}

/**
 * The shards of `file`: every `shardSize` rows (blank lines do not count) a
 * shard ends at a record boundary. Streams the file once with bounded memory.
 */
export async function* scanShards(file: string, format: InputFormat, shardSize: number, csv?: CsvLayout): AsyncGenerator<ShardRange> {
  let shard = 0;
  if (format === 'csv') {
    const layout = csv ?? (await csvLayout(file));
    let start = layout.dataStart;
    let lineOffset = layout.headerLines;
    let rows = 0;
    let lastEnd = start;
    let lastLines = lineOffset;
    const parser = csvParser(layout.columns);
    fs.createReadStream(file, { start: layout.dataStart }).pipe(parser);
    for await (const rec of parser as AsyncIterable<{ info: { bytes: number; lines: number } }>) {
      rows++;
      lastEnd = layout.dataStart + rec.info.bytes;
      lastLines = layout.headerLines + rec.info.lines;
      if (rows === shardSize) {
        yield { shard: shard++, start, end: lastEnd, lineOffset, rows };
        start = lastEnd;
        lineOffset = lastLines;
        rows = 0;
      }
    }
    if (rows) yield { shard: shard++, start, end: fs.statSync(file).size, lineOffset, rows };
    return;
  }
  let pos = 0;
  let lines = 0;
  let start = 0;
  let lineOffset = 0;
  let rows = 0;
  let nonBlank = false;
  for await (const chunk of fs.createReadStream(file) as AsyncIterable<Buffer>) {
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (b === 0x0a) {
        lines++;
        if (nonBlank) rows++;
        nonBlank = false;
        if (rows === shardSize) {
          const end = pos + i + 1;
          yield { shard: shard++, start, end, lineOffset, rows };
          start = end;
          lineOffset = lines;
          rows = 0;
        }
      } else if (b !== 0x20 && b !== 0x09 && b !== 0x0d) nonBlank = true;
    }
    pos += chunk.length;
  }
  if (nonBlank) rows++; // a last line without a newline
  if (rows) yield { shard: shard++, start, end: pos, lineOffset, rows };
}

/** The rows of one shard of `file`. */
export function readShard(file: string, format: InputFormat, range: ShardRange, columns?: string[]): AsyncGenerator<InputRow> {
  const stream = range.end > range.start ? fs.createReadStream(file, { start: range.start, end: range.end - 1 }) : fs.createReadStream(file, { start: 0, end: -1 });
  return readRows(stream, format, { lineOffset: range.lineOffset, columns });
}
