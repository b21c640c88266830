/**
 * The part of the zip format torch.save (torch >= 1.6) writes: stored
 * (uncompressed) entries, found through the central directory, with ZIP64
 * records when the archive passes 4 GiB or 65535 entries. Compressed or
 * encrypted entries, multi-disk archives and sizes that do not fit the file
 * are errors naming the entry and the field; each entry read is checked
 * against its CRC-32.
 */
import * as zlib from 'node:zlib';
import { fail, type Reads } from './reads';

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const EOCD_SIZE = 22;
const LOCATOR_SIZE = 20;
const ZIP64_EOCD_SIZE = 56;
const CENTRAL_SIZE = 46;
const LOCAL_SIZE = 30;
const MAX_COMMENT = 0xffff;
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;

const METHODS: Record<number, string> = { 8: 'deflate', 9: 'deflate64', 12: 'bzip2', 14: 'lzma', 93: 'zstd', 95: 'xz' };

/** One file of the archive, as the central directory describes it. */
export interface ZipEntry {
  name: string;
  /** Compression method (0 = stored). */
  method: number;
  flags: number;
  crc32: number;
  compressedSize: number;
  size: number;
  /** Offset of the entry's local header. */
  localOffset: number;
}

/** The entries of an archive by name. */
export type ZipDirectory = Map<string, ZipEntry>;

/** True when the file starts like a zip archive (a local header, or an empty archive's end record). */
export function looksLikeZip(head: Uint8Array): boolean {
  if (head.byteLength < 4) return false;
  const sig = new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true);
  return sig === SIG_LOCAL || sig === SIG_EOCD;
}

function u64(view: DataView, at: number, what: string): number {
  const v = view.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(RangeError, `zip: ${what} ${v} is too large (corrupt file?)`);
  return Number(v);
}

/** Reads the central directory of a `size`-byte archive. */
export function* readZipDirectory(size: number): Reads<ZipDirectory> {
  if (size < EOCD_SIZE) fail(RangeError, `zip: the file is ${size} bytes, shorter than a zip end record (truncated file?)`);
  // The end record is the last 22 bytes plus a comment of up to 64 KiB; a ZIP64 locator sits just before it.
  const tailLen = Math.min(size, EOCD_SIZE + MAX_COMMENT + LOCATOR_SIZE);
  const tailStart = size - tailLen;
  const tail = yield { offset: tailStart, length: tailLen };
  const tv = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
  let eocd = -1;
  for (let i = tailLen - EOCD_SIZE; i >= 0; i--) {
    // The signature and a comment length that ends exactly at the end of the file.
    if (tv.getUint32(i, true) === SIG_EOCD && tv.getUint16(i + 20, true) === tailLen - i - EOCD_SIZE) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) fail(RangeError, 'zip: no end-of-central-directory record (truncated or not a zip file)');
  const disk = tv.getUint16(eocd + 4, true);
  const cdDisk = tv.getUint16(eocd + 6, true);
  let count = tv.getUint16(eocd + 10, true);
  let cdSize = tv.getUint32(eocd + 12, true);
  let cdOffset = tv.getUint32(eocd + 16, true);
  const eocdAbs = tailStart + eocd;
  let cdEnd = eocdAbs;
  const saturated = count === U16_MAX || cdSize === U32_MAX || cdOffset === U32_MAX || disk === U16_MAX;
  const hasLocator = eocd >= LOCATOR_SIZE && tv.getUint32(eocd - LOCATOR_SIZE, true) === SIG_ZIP64_LOCATOR;
  if (saturated && !hasLocator) fail(RangeError, 'zip: the end record asks for ZIP64 but no ZIP64 locator precedes it (corrupt file?)');
  if (hasLocator) {
    // ZIP64: the locator before the end record points at the ZIP64 end record, which is authoritative
    // (some writers, Python's zipfile among them, also fill the 16/32-bit fields when the values fit).
    const z64Offset = u64(tv, eocd - LOCATOR_SIZE + 8, 'ZIP64 end record offset');
    if (z64Offset + ZIP64_EOCD_SIZE > eocdAbs - LOCATOR_SIZE) {
      fail(RangeError, `zip: ZIP64 end record offset ${z64Offset} lies outside the file (truncated file?)`);
    }
    const z = yield { offset: z64Offset, length: ZIP64_EOCD_SIZE };
    const zv = new DataView(z.buffer, z.byteOffset, z.byteLength);
    if (zv.getUint32(0, true) !== SIG_ZIP64_EOCD) fail(RangeError, `zip: no ZIP64 end record at offset ${z64Offset} (corrupt file?)`);
    if (zv.getUint32(16, true) !== 0 || zv.getUint32(20, true) !== 0) fail(RangeError, 'zip: multi-disk archives are not supported');
    count = u64(zv, 32, 'ZIP64 entry count');
    cdSize = u64(zv, 40, 'ZIP64 central directory size');
    cdOffset = u64(zv, 48, 'ZIP64 central directory offset');
    cdEnd = z64Offset;
  } else if (disk !== 0 || cdDisk !== 0) {
    fail(RangeError, 'zip: multi-disk archives are not supported');
  }
  if (cdOffset + cdSize > cdEnd) {
    fail(RangeError, `zip: central directory [${cdOffset}, ${cdOffset + cdSize}) runs past its end record at ${cdEnd} (truncated file?)`);
  }
  if (count * CENTRAL_SIZE > cdSize) {
    fail(RangeError, `zip: ${count} entries cannot fit a ${cdSize}-byte central directory (corrupt file?)`);
  }
  const cd = cdSize === 0 ? new Uint8Array(0) : yield { offset: cdOffset, length: cdSize };
  const cv = new DataView(cd.buffer, cd.byteOffset, cd.byteLength);
  const utf8 = new TextDecoder('utf-8');
  const entries: ZipDirectory = new Map();
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + CENTRAL_SIZE > cdSize || cv.getUint32(p, true) !== SIG_CENTRAL) {
      fail(RangeError, `zip: central directory entry ${i} at offset ${cdOffset + p} is not a central header (corrupt file?)`);
    }
    const nameLen = cv.getUint16(p + 28, true);
    const extraLen = cv.getUint16(p + 30, true);
    const commentLen = cv.getUint16(p + 32, true);
    const next = p + CENTRAL_SIZE + nameLen + extraLen + commentLen;
    if (next > cdSize) fail(RangeError, `zip: central directory entry ${i} runs past the directory (corrupt file?)`);
    const name = utf8.decode(cd.subarray(p + CENTRAL_SIZE, p + CENTRAL_SIZE + nameLen));
    let compressedSize = cv.getUint32(p + 20, true);
    let size = cv.getUint32(p + 24, true);
    let localOffset = cv.getUint32(p + 42, true);
    const diskStart = cv.getUint16(p + 34, true);
    if (compressedSize === U32_MAX || size === U32_MAX || localOffset === U32_MAX || diskStart === U16_MAX) {
      // The ZIP64 extra field holds, in this order, only the fields whose 32-bit value is saturated.
      let e = p + CENTRAL_SIZE + nameLen;
      const extraEnd = e + extraLen;
      let found = false;
      while (e + 4 <= extraEnd) {
        const id = cv.getUint16(e, true);
        const len = cv.getUint16(e + 2, true);
        if (e + 4 + len > extraEnd) break;
        if (id === 0x0001) {
          let q = e + 4;
          const take = (what: string): number => {
            if (q + 8 > e + 4 + len) fail(RangeError, `zip: entry '${name}': ZIP64 extra field lacks the ${what}`);
            const v = u64(cv, q, `entry '${name}' ${what}`);
            q += 8;
            return v;
          };
          if (size === U32_MAX) size = take('size');
          if (compressedSize === U32_MAX) compressedSize = take('compressed size');
          if (localOffset === U32_MAX) localOffset = take('local header offset');
          found = true;
          break;
        }
        e += 4 + len;
      }
      if (!found) fail(RangeError, `zip: entry '${name}' has saturated sizes but no ZIP64 extra field (corrupt file?)`);
    }
    if (entries.has(name)) fail(RangeError, `zip: entry '${name}' appears twice in the central directory`);
    entries.set(name, {
      name,
      flags: cv.getUint16(p + 8, true),
      method: cv.getUint16(p + 10, true),
      crc32: cv.getUint32(p + 16, true),
      compressedSize,
      size,
      localOffset,
    });
    p = next;
  }
  return entries;
}

/** Where the data of a stored entry begins (after its local header), checked against the file size. */
export function* entryDataOffset(entry: ZipEntry, fileSize: number): Reads<number> {
  const { name } = entry;
  if (entry.flags & 1) fail(TypeError, `zip: entry '${name}' is encrypted`);
  if (entry.method !== 0) {
    const method = METHODS[entry.method] ?? `method ${entry.method}`;
    fail(TypeError, `zip: entry '${name}' is compressed (${method}); torch.save stores entries uncompressed, so re-zip the checkpoint without compression (zip -0) or save it again with torch.save`);
  }
  if (entry.compressedSize !== entry.size) {
    fail(RangeError, `zip: stored entry '${name}' has compressed size ${entry.compressedSize} != size ${entry.size} (corrupt file?)`);
  }
  if (entry.localOffset + LOCAL_SIZE > fileSize) fail(RangeError, `zip: entry '${name}': local header offset ${entry.localOffset} lies outside the file (truncated file?)`);
  const head = yield { offset: entry.localOffset, length: LOCAL_SIZE };
  const hv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (hv.getUint32(0, true) !== SIG_LOCAL) fail(RangeError, `zip: entry '${name}': no local header at offset ${entry.localOffset} (corrupt file?)`);
  const start = entry.localOffset + LOCAL_SIZE + hv.getUint16(26, true) + hv.getUint16(28, true);
  if (start + entry.size > fileSize) {
    fail(RangeError, `zip: entry '${name}': ${entry.size} bytes at offset ${start} run past the end of the ${fileSize}-byte file (truncated file?)`);
  }
  return start;
}

/** Reads a stored entry's bytes and checks them against its CRC-32. */
export function* readZipEntry(entry: ZipEntry, fileSize: number): Reads<Uint8Array> {
  const start = yield* entryDataOffset(entry, fileSize);
  const bytes = entry.size === 0 ? new Uint8Array(0) : yield { offset: start, length: entry.size };
  const crc = crc32(bytes);
  if (crc !== entry.crc32) {
    fail(RangeError, `zip: entry '${entry.name}': CRC-32 ${hex(crc)} does not match the directory's ${hex(entry.crc32)} (corrupt file)`);
  }
  return bytes;
}

function hex(v: number): string {
  return `0x${v.toString(16).padStart(8, '0')}`;
}

let table: Uint32Array | null = null;

/** CRC-32 (the zip polynomial): node's zlib.crc32 where it exists (node >= 20.15), else a table. */
export function crc32(bytes: Uint8Array): number {
  const native = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;
  if (native) return native(bytes) >>> 0;
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = table[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
