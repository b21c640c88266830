/**
 * How the torch.save reader gets its bytes. The parser is a generator that
 * yields the byte ranges it needs (the zip directory, data.pkl, each storage)
 * and receives them: run over bytes in memory it slices them, run over a file
 * it reads each range once with positional reads, so a checkpoint of many GiB
 * is never held twice and the parser is one piece of code for both.
 */
import type { FileHandle } from 'node:fs/promises';

/** A range of the file the parser needs; always inside the file (the parser checks before asking). */
export interface ByteRange {
  offset: number;
  length: number;
}

/** A parse step: yields ranges, receives their bytes, returns `T`. */
export type Reads<T> = Generator<ByteRange, T, Uint8Array>;

/** Every message starts with this, as safetensors' start with `safetensors:`. */
export const PREFIX = 'torch checkpoint: ';

type ErrorClass = new (message: string, options?: ErrorOptions) => Error;

/** Throws `ErrorClass` with the reader's prefix. */
export function fail(ErrorClass: ErrorClass, msg: string, cause?: unknown): never {
  throw new ErrorClass(`${PREFIX}${msg}`, cause === undefined ? undefined : { cause });
}

/** Runs a parse over bytes in memory: each range is a view of `bytes` (no copy). */
export function runOnBytes<T>(parse: Reads<T>, bytes: Uint8Array): T {
  let step = parse.next();
  while (!step.done) {
    const { offset, length } = step.value;
    if (offset < 0 || length < 0 || offset + length > bytes.byteLength) {
      fail(RangeError, `internal: read of ${length} bytes at ${offset} outside the ${bytes.byteLength}-byte input`);
    }
    step = parse.next(bytes.subarray(offset, offset + length));
  }
  return step.value;
}

/** node's limit on one read() call. */
const MAX_READ = 2 ** 30;

/**
 * Runs a parse over an open file: each range is read once into a fresh
 * buffer of its own (so a float32 storage can be used in place, aligned).
 */
export async function runOnFile<T>(parse: Reads<T>, file: FileHandle, size: number): Promise<T> {
  let step = parse.next();
  while (!step.done) {
    const { offset, length } = step.value;
    if (offset < 0 || length < 0 || offset + length > size) {
      fail(RangeError, `internal: read of ${length} bytes at ${offset} outside the ${size}-byte file`);
    }
    // allocUnsafeSlow: a buffer of its own (not the shared pool), so its offset is 0 and nothing else is kept alive.
    const buf = Buffer.allocUnsafeSlow(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await file.read(buf, done, Math.min(MAX_READ, length - done), offset + done);
      if (bytesRead === 0) fail(RangeError, `file ended at byte ${offset + done} while reading ${length} bytes at ${offset} (changed while reading?)`);
      done += bytesRead;
    }
    step = parse.next(new Uint8Array(buf.buffer, buf.byteOffset, length));
  }
  return step.value;
}
