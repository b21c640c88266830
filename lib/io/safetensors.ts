/**
 * Reader and writer for the safetensors format
 * (https://github.com/huggingface/safetensors), the format PyTorch models are
 * loaded from.
 *
 * Layout: an 8-byte little-endian unsigned header length N, then N bytes of
 * UTF-8 JSON `{ name: { dtype, shape, data_offsets: [begin, end] }, ...,
 * "__metadata__"?: { key: string } }`, then the data section. Offsets are
 * relative to the start of the data section, and the tensors must cover it
 * exactly: no overlaps, no holes, no trailing bytes (as the reference
 * implementation enforces).
 *
 * Every tensor is converted to one of the three dtypes attnode computes in:
 *
 * | file dtype                 | Tensor dtype | notes                                      |
 * | -------------------------- | ------------ | ------------------------------------------ |
 * | F32                        | float32      | a view into the file's bytes when aligned  |
 * | F16, BF16, F64             | float32      | F64 is rounded to nearest                  |
 * | I32                        | int32        | a view into the file's bytes when aligned  |
 * | I64, U32, U64              | int32        | RangeError if a value does not fit         |
 * | I8, I16, U16, U8           | int32        | U8 is an integer type, not a boolean       |
 * | BOOL                       | bool         | any non-zero byte reads as true            |
 *
 * FP8 types are recognised but rejected (TypeError): nothing in attnode can
 * use them, and a silent lossy conversion would hide a wrong model file.
 *
 * Writing stores float32 as F32, int32 as I32 and bool as BOOL, ordered the
 * way the reference writer orders them (larger item size first, then by name)
 * so every tensor is aligned to its item size in the file.
 */

import { readFile, writeFile } from 'node:fs/promises';

import { MAX_TENSOR_SIZE } from '../errors';
import { tensor, type Tensor } from '../tensor';
import { floatsFrom, HOST_IS_LITTLE_ENDIAN } from './elements';

/** A parsed safetensors file. */
export interface SafetensorsFile {
  /** Tensors by name (a null-prototype object, so any name is an ordinary key). */
  tensors: Record<string, Tensor>;
  /** The `__metadata__` entries; empty when the file has none. */
  metadata: Record<string, string>;
}

/** The dtype names of the safetensors format. */
export type SafetensorsDtype =
  | 'BOOL'
  | 'U8'
  | 'I8'
  | 'I16'
  | 'U16'
  | 'I32'
  | 'U32'
  | 'I64'
  | 'U64'
  | 'F16'
  | 'BF16'
  | 'F32'
  | 'F64'
  | 'F8_E4M3'
  | 'F8_E5M2';

/** Bytes per element of every dtype the format defines. */
const ITEM_SIZE: Readonly<Record<SafetensorsDtype, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  I16: 2,
  U16: 2,
  I32: 4,
  U32: 4,
  I64: 8,
  U64: 8,
  F16: 2,
  BF16: 2,
  F32: 4,
  F64: 8,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

/** The reference implementation's limit; a larger header is a corrupt or hostile file. */
const MAX_HEADER_SIZE = 100_000_000;

const METADATA_KEY = '__metadata__';

const INT32_MAX = 0x7fffffff;

function fail(ErrorClass: new (message: string, options?: ErrorOptions) => Error, msg: string, cause?: unknown): never {
  throw new ErrorClass(`safetensors: ${msg}`, cause === undefined ? undefined : { cause });
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isDtype(s: string): s is SafetensorsDtype {
  return Object.prototype.hasOwnProperty.call(ITEM_SIZE, s);
}

/** A header entry after validation; offsets are absolute within `bytes`. */
interface Entry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

function validateEntry(name: string, info: unknown): Omit<Entry, 'begin' | 'end'> & { offsets: [number, number] } {
  if (!isPlainObject(info)) fail(TypeError, `tensor '${name}': header entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = info;
  if (typeof dtype !== 'string') fail(TypeError, `tensor '${name}': dtype is not a string`);
  if (!isDtype(dtype)) fail(TypeError, `tensor '${name}': unknown dtype '${dtype}'`);
  if (dtype === 'F8_E4M3' || dtype === 'F8_E5M2') {
    fail(TypeError, `tensor '${name}': unsupported dtype '${dtype}'`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
    fail(TypeError, `tensor '${name}': shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)
  ) {
    fail(
      TypeError,
      `tensor '${name}': data_offsets must be a pair of non-negative integers, got ${JSON.stringify(offsets)}`,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) fail(RangeError, `tensor '${name}': data_offsets [${begin}, ${end}] end before begin`);
  // Any dimension of 0 makes the product 0 however large the others are, so
  // the overflow check only matters when no dimension is 0.
  let expected = ITEM_SIZE[dtype];
  if (shape.includes(0)) expected = 0;
  for (const d of shape as number[]) {
    expected *= d;
    // The Tensor class caps sizes (int32 indexing in the kernels); say so here, naming the tensor.
    if (d > MAX_TENSOR_SIZE || expected > Number.MAX_SAFE_INTEGER || expected / ITEM_SIZE[dtype] > MAX_TENSOR_SIZE) {
      fail(RangeError, `tensor '${name}': shape ${JSON.stringify(shape)} exceeds ${MAX_TENSOR_SIZE} elements`);
    }
  }
  if (end - begin !== expected) {
    fail(
      RangeError,
      `tensor '${name}': data_offsets [${begin}, ${end}] span ${end - begin} bytes but ${dtype} shape ` +
        `${JSON.stringify(shape)} needs ${expected}`,
    );
  }
  return { name, dtype, shape: (shape as number[]).slice(), offsets: [begin, end] };
}

function parseHeader(bytes: Uint8Array): { entries: Entry[]; metadata: Record<string, string> } {
  if (bytes.byteLength < 8) {
    fail(RangeError, `file is ${bytes.byteLength} bytes, shorter than the 8-byte header length`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lenLo = view.getUint32(0, true);
  const lenHi = view.getUint32(4, true);
  if (lenHi !== 0 || lenLo > MAX_HEADER_SIZE) {
    const len = BigInt(lenHi) * 2n ** 32n + BigInt(lenLo);
    fail(RangeError, `header length ${len} exceeds the ${MAX_HEADER_SIZE}-byte limit (corrupt file?)`);
  }
  const headerLen = lenLo;
  if (headerLen > bytes.byteLength - 8) {
    fail(RangeError, `header length ${headerLen} exceeds the ${bytes.byteLength - 8} bytes after it (truncated file?)`);
  }
  if (headerLen === 0 || bytes[8] !== 0x7b) fail(SyntaxError, `header does not start with '{'`);

  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, 8 + headerLen));
  } catch (e) {
    fail(TypeError, 'header is not valid UTF-8', e);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail(SyntaxError, `header is not valid JSON: ${(e as Error).message}`, e);
  }
  if (!isPlainObject(json)) fail(TypeError, 'header is not a JSON object');

  // Null-prototype records: names like '__proto__' must stay ordinary keys.
  const metadata: Record<string, string> = Object.create(null) as Record<string, string>;
  const dataStart = 8 + headerLen;
  const dataLen = bytes.byteLength - dataStart;
  const entries: Entry[] = [];
  for (const [name, info] of Object.entries(json)) {
    if (name === METADATA_KEY) {
      if (info === null) continue;
      if (!isPlainObject(info)) fail(TypeError, `'${METADATA_KEY}' is not an object`);
      for (const [k, v] of Object.entries(info)) {
        if (typeof v !== 'string') fail(TypeError, `metadata value for '${k}' is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const e = validateEntry(name, info);
    const [begin, end] = e.offsets;
    if (end > dataLen) {
      fail(
        RangeError,
        `tensor '${name}': data_offsets [${begin}, ${end}] exceed the ${dataLen}-byte data section (truncated file?)`,
      );
    }
    entries.push({ name, dtype: e.dtype, shape: e.shape, begin: dataStart + begin, end: dataStart + end });
  }

  // The spec requires the tensors to tile the data section exactly.
  const sorted = entries.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = dataStart;
  let prev = '';
  for (const e of sorted) {
    if (e.begin < cursor) fail(RangeError, `tensor '${e.name}' overlaps tensor '${prev}' in the data section`);
    if (e.begin > cursor) {
      fail(RangeError, `data section has a hole of ${e.begin - cursor} bytes before tensor '${e.name}'`);
    }
    cursor = e.end;
    prev = e.name;
  }
  if (cursor !== bytes.byteLength) {
    fail(RangeError, `data section has ${bytes.byteLength - cursor} trailing bytes not covered by any tensor`);
  }
  return { entries, metadata };
}

function decodeEntry(bytes: Uint8Array, e: Entry): Tensor {
  const n = e.shape.reduce((a, b) => a * b, 1);
  const abs = bytes.byteOffset + e.begin;
  const view = new DataView(bytes.buffer, abs, e.end - e.begin);
  switch (e.dtype) {
    case 'F32':
    case 'F64':
    case 'F16':
    case 'BF16':
      // Aligned F32 is a view into the file's bytes; the rest is converted once.
      return tensor(floatsFrom(bytes.subarray(e.begin, e.end), e.dtype, true, true), e.shape, 'float32');
    case 'I32': {
      if (HOST_IS_LITTLE_ENDIAN && abs % 4 === 0) return tensor(new Int32Array(bytes.buffer, abs, n), e.shape, 'int32');
      const out = new Int32Array(n);
      if (HOST_IS_LITTLE_ENDIAN) new Uint8Array(out.buffer).set(bytes.subarray(e.begin, e.end));
      else for (let i = 0; i < n; i++) out[i] = view.getInt32(4 * i, true);
      return tensor(out, e.shape, 'int32');
    }
    case 'I64':
    case 'U64': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const lo = view.getInt32(8 * i, true);
        const hi = view.getInt32(8 * i + 4, true);
        // Fits in int32 iff the high word is the sign extension of the low
        // word (for U64 additionally non-negative).
        if (hi !== lo >> 31 || (e.dtype === 'U64' && lo < 0)) {
          const big = e.dtype === 'I64' ? view.getBigInt64(8 * i, true) : view.getBigUint64(8 * i, true);
          fail(RangeError, `tensor '${e.name}': ${e.dtype} value ${big} at index ${i} does not fit in int32`);
        }
        out[i] = lo;
      }
      return tensor(out, e.shape, 'int32');
    }
    case 'U32': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = view.getUint32(4 * i, true);
        if (v > INT32_MAX) fail(RangeError, `tensor '${e.name}': U32 value ${v} at index ${i} does not fit in int32`);
        out[i] = v;
      }
      return tensor(out, e.shape, 'int32');
    }
    case 'I16': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getInt16(2 * i, true);
      return tensor(out, e.shape, 'int32');
    }
    case 'U16': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getUint16(2 * i, true);
      return tensor(out, e.shape, 'int32');
    }
    case 'I8':
      return tensor(Int32Array.from(new Int8Array(bytes.buffer, abs, n)), e.shape, 'int32');
    case 'U8':
      return tensor(Int32Array.from(new Uint8Array(bytes.buffer, abs, n)), e.shape, 'int32');
    case 'BOOL': {
      const raw = new Uint8Array(bytes.buffer, abs, n);
      // PyTorch writes 0/1; anything else is normalised (C truthiness) so
      // downstream code can rely on 0/1, at the cost of one copy.
      if (raw.every((b) => b <= 1)) return tensor(raw, e.shape, 'bool');
      return tensor(
        Uint8Array.from(raw, (b) => (b === 0 ? 0 : 1)),
        e.shape,
        'bool',
      );
    }
    default:
      return fail(TypeError, `tensor '${e.name}': unsupported dtype '${e.dtype}'`);
  }
}

/**
 * Parses a safetensors file held in memory.
 *
 * Aligned F32 and I32 tensors are views into `bytes` (no copy): mutating them
 * mutates `bytes`, and they keep its buffer alive. Other tensors are converted
 * once into fresh arrays (see the module comment for the dtype mapping).
 *
 * @throws RangeError for sizes and offsets that do not fit the file (truncated
 *   file, header length too large, overlapping tensors, holes or trailing bytes
 *   in the data section, integers that do not fit in int32); SyntaxError for a
 *   header that is not JSON or does not start with `{`; TypeError for a header
 *   of the wrong structure (unknown dtype, bad shape or offsets, non-string
 *   metadata). Messages start with `safetensors:` and name the tensor at fault.
 */
export function parseSafetensors(bytes: Uint8Array): SafetensorsFile {
  const { entries, metadata } = parseHeader(bytes);
  const tensors: Record<string, Tensor> = Object.create(null) as Record<string, Tensor>;
  for (const e of entries) tensors[e.name] = decodeEntry(bytes, e);
  return { tensors, metadata };
}

/**
 * Reads and parses a safetensors file. The file is read once; aligned F32/I32
 * tensors are views into that single buffer.
 *
 * @throws the errors of {@link parseSafetensors}, with the path prepended to
 *   the message (same error class; the original is the `cause`), or the
 *   file-system error.
 */
export async function loadSafetensors(path: string): Promise<SafetensorsFile> {
  const buf = await readFile(path);
  try {
    return parseSafetensors(buf);
  } catch (e) {
    if (e instanceof RangeError) throw new RangeError(`${path}: ${e.message}`, { cause: e });
    if (e instanceof SyntaxError) throw new SyntaxError(`${path}: ${e.message}`, { cause: e });
    if (e instanceof TypeError) throw new TypeError(`${path}: ${e.message}`, { cause: e });
    throw e;
  }
}

const DTYPE_OUT: Readonly<Record<Tensor['dtype'], SafetensorsDtype>> = {
  float32: 'F32',
  int32: 'I32',
  bool: 'BOOL',
};

/**
 * Serializes tensors (and optional string metadata) to safetensors bytes.
 * The header is padded with spaces to a multiple of 8 bytes, and tensors are
 * laid out by decreasing item size then name, so every tensor is aligned.
 *
 * @throws TypeError for the reserved name `__metadata__`, non-string metadata
 *   values, or a tensor whose data length does not match its shape.
 */
export function serializeSafetensors(tensors: Record<string, Tensor>, metadata?: Record<string, string>): Uint8Array {
  const items = Object.entries(tensors).map(([name, t]) => {
    if (name === METADATA_KEY) fail(TypeError, `'${METADATA_KEY}' is reserved and cannot name a tensor`);
    const dtype = DTYPE_OUT[t.dtype];
    if (dtype === undefined) fail(TypeError, `tensor '${name}': cannot write dtype '${String(t.dtype)}'`);
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== n) {
      fail(
        TypeError,
        `tensor '${name}': data has ${t.data.length} elements but shape ${JSON.stringify(t.shape)} needs ${n}`,
      );
    }
    return { name, t, dtype, nbytes: n * ITEM_SIZE[dtype] };
  });
  // Same order as the reference writer: alignment first, then name.
  items.sort((a, b) => ITEM_SIZE[b.dtype] - ITEM_SIZE[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const header: Record<string, unknown> = {};
  if (metadata !== undefined && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') fail(TypeError, `metadata value for '${k}' is not a string`);
    }
    header[METADATA_KEY] = { ...metadata };
  }
  let offset = 0;
  for (const it of items) {
    // defineProperty: a tensor named '__proto__' must become a JSON key, not a prototype.
    Object.defineProperty(header, it.name, {
      value: { dtype: it.dtype, shape: it.t.shape.slice(), data_offsets: [offset, offset + it.nbytes] },
      enumerable: true,
      writable: true,
      configurable: true,
    });
    offset += it.nbytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerLen = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + headerLen + offset);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, headerLen, true);
  dv.setUint32(4, 0, true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLen);
  let pos = 8 + headerLen;
  for (const it of items) {
    const src = it.t.data;
    if (HOST_IS_LITTLE_ENDIAN || it.dtype === 'BOOL') {
      out.set(new Uint8Array(src.buffer, src.byteOffset, it.nbytes), pos);
    } else {
      for (let i = 0; i < src.length; i++) {
        if (it.dtype === 'F32') dv.setFloat32(pos + 4 * i, src[i] as number, true);
        else dv.setInt32(pos + 4 * i, src[i] as number, true);
      }
    }
    pos += it.nbytes;
  }
  return out;
}

/**
 * Writes tensors to a safetensors file (see {@link serializeSafetensors}).
 */
export async function saveSafetensors(
  path: string,
  tensors: Record<string, Tensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  await writeFile(path, serializeSafetensors(tensors, metadata));
}
