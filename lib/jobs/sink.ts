/**
 * The JSONL sink: a shard is written to a temporary name (unique per attempt),
 * fsynced, and renamed to its final name only after Redis recorded the commit
 * (store.ts); a rename is atomic, so a shard file is always whole. The
 * manifest (manifest.json) lists every committed shard with its row count and
 * SHA-256, written the same way once the last shard commits.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ManifestEntry, RunSpec } from './store';

/** Appends lines to a temporary shard file, hashing as it goes. */
export class ShardWriter {
  readonly #fd: number;
  readonly #hash = createHash('sha256');
  bytes = 0;
  constructor(readonly tmpPath: string) {
    this.#fd = fs.openSync(tmpPath, 'w');
  }

  write(lines: string[]): void {
    if (!lines.length) return;
    const buf = Buffer.from(lines.join('\n') + '\n');
    this.#hash.update(buf);
    let off = 0;
    while (off < buf.length) off += fs.writeSync(this.#fd, buf, off);
    this.bytes += buf.length;
  }

  /** fsync and close; returns the SHA-256 (hex) of the bytes written. */
  finish(): string {
    fs.fsyncSync(this.#fd);
    fs.closeSync(this.#fd);
    return this.#hash.digest('hex');
  }

  abort(): void {
    try {
      fs.closeSync(this.#fd);
    } catch {
      /* already closed */
    }
    fs.rmSync(this.tmpPath, { force: true });
  }
}

/** fsync a directory, so a rename in it survives a crash of the machine. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Moves a finished temporary file to its final name (atomic) and makes the rename durable. */
export function publish(tmpPath: string, finalPath: string): void {
  fs.renameSync(tmpPath, finalPath);
  fsyncDir(path.dirname(finalPath));
}

/**
 * Removes the temporary copies of a committed shard that other attempts left (a worker killed mid-shard never
 * cleans up). A frozen attempt whose copy goes this way finds its lock lost when it wakes, or, if it had won the
 * commit, that its rename target already holds the same bytes.
 */
export function sweepTemporaries(finalPath: string): void {
  const dir = path.dirname(finalPath);
  const prefix = `.${path.basename(finalPath)}.`;
  for (const name of fs.readdirSync(dir)) if (name.startsWith(prefix) && name.endsWith('.tmp')) fs.rmSync(path.join(dir, name), { force: true });
}

/** SHA-256 of a file, or null when it does not exist. */
export async function fileSha256(file: string): Promise<string | null> {
  const h = createHash('sha256');
  try {
    for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  return h.digest('hex');
}

/** The manifest file of an output directory. */
export const MANIFEST = 'manifest.json';
/** The file naming the run that owns an output directory. */
export const RUN_MARKER = '.attnode-run';

/** Writes DIR/manifest.json atomically (temporary name, fsync, rename). */
export function writeManifest(spec: RunSpec, entries: ManifestEntry[], complete: boolean): string {
  const file = path.join(spec.output, MANIFEST);
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  const doc = {
    runId: spec.runId, input: spec.input, format: spec.format, model: spec.model ?? null, complete,
    shards: spec.shards, rows: entries.reduce((a, e) => a + e.rows, 0), errorRows: entries.reduce((a, e) => a + e.errors, 0),
    files: entries,
  };
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, JSON.stringify(doc, null, 1) + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  publish(tmp, file);
  return file;
}
