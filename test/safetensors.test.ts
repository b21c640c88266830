import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadSafetensors, parseSafetensors, saveSafetensors, serializeSafetensors } from '../lib/io/safetensors';
import { tensor, type Tensor } from '../lib/tensor';

const FIXTURES = join(__dirname, 'fixtures');

/** Raw file builder: lets tests write any header (even invalid) and any data bytes. */
function build(
  header: unknown,
  data: Uint8Array | number[] = [],
  opts: { headerLen?: bigint; rawHeader?: Uint8Array; pad?: number; align?: boolean } = {},
): Uint8Array {
  let h = opts.rawHeader ?? new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const pad = opts.align ? -h.length & 7 : opts.pad;
  if (pad !== undefined) {
    const padded = new Uint8Array(h.length + pad).fill(0x20);
    padded.set(h);
    h = padded;
  }
  const d = data instanceof Uint8Array ? data : Uint8Array.from(data);
  const out = new Uint8Array(8 + h.length + d.length);
  new DataView(out.buffer).setBigUint64(0, opts.headerLen ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}

/** Little-endian bytes of a typed array (the tests run on little-endian hosts, like every Node target). */
function le(arr: ArrayBufferView): Uint8Array {
  return new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength).slice();
}

function single(dtype: string, shape: number[], data: Uint8Array): Uint8Array {
  return build({ t: { dtype, shape, data_offsets: [0, data.length] } }, data, { align: true });
}

function parseOne(dtype: string, shape: number[], data: Uint8Array): Tensor {
  return parseSafetensors(single(dtype, shape, data)).tensors['t']!;
}

/** Bitwise float32 equality (so NaN equals NaN and -0 differs from 0). */
function f32Bits(t: Tensor): number[] {
  const f = Float32Array.from(t.data as Float32Array);
  return Array.from(new Uint32Array(f.buffer));
}

describe('serialize / parse round trip', () => {
  const tensors: Record<string, Tensor> = {
    weight: tensor(Float32Array.from([1, -2.5, 3e-8, Infinity, -0, NaN]), [2, 3], 'float32'),
    ids: tensor(Int32Array.from([0, -1, 2147483647, -2147483648]), [4], 'int32'),
    mask: tensor(Uint8Array.from([1, 0, 0, 1, 1]), [5], 'bool'),
    scalar: tensor(Float32Array.from([7.25]), [], 'float32'),
    empty: tensor(new Float32Array(0), [0, 4], 'float32'),
    emptyInt: tensor(new Int32Array(0), [3, 0], 'int32'),
    emptyBool: tensor(new Uint8Array(0), [0], 'bool'),
    __proto__: tensor(Float32Array.from([1]), [1], 'float32'),
  };
  // The literal above sets the prototype; make '__proto__' an own key as a file could have it.
  Object.defineProperty(tensors, '__proto__', {
    value: tensor(Float32Array.from([42]), [1], 'float32'),
    enumerable: true,
  });

  it('keeps names, dtypes, shapes and exact values', () => {
    const bytes = serializeSafetensors(tensors, { format: 'pt', note: 'ünïcødé ✓' });
    const { tensors: back, metadata } = parseSafetensors(bytes);
    expect(Object.keys(back).sort()).toEqual(Object.keys(tensors).sort());
    for (const [name, t] of Object.entries(tensors)) {
      const b = back[name]!;
      expect(b.dtype, name).toBe(t.dtype);
      expect(b.shape, name).toEqual(t.shape);
      if (t.dtype === 'float32') expect(f32Bits(b), name).toEqual(f32Bits(t));
      else expect(Array.from(b.data), name).toEqual(Array.from(t.data));
    }
    expect(back['__proto__']!.data[0]).toBe(42);
    expect({ ...metadata }).toEqual({ format: 'pt', note: 'ünïcødé ✓' });
  });

  it('pads the header to a multiple of 8 and aligns every tensor, so F32/I32 load as views', () => {
    const bytes = serializeSafetensors(tensors);
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    expect([0x7d, 0x20]).toContain(bytes[8 + n - 1]); // '}' or padding space
    const { tensors: back, metadata } = parseSafetensors(bytes);
    expect(Object.keys(metadata)).toEqual([]);
    expect(back['weight']!.data.buffer).toBe(bytes.buffer);
    expect(back['ids']!.data.buffer).toBe(bytes.buffer);
    // A view: writing through the tensor writes the file bytes.
    (back['weight']!.data as Float32Array)[0] = 99;
    expect(parseSafetensors(bytes).tensors['weight']!.data[0]).toBe(99);
  });

  it('writes metadata first and orders tensors by item size then name, like the reference writer', () => {
    const bytes = serializeSafetensors(
      {
        b: tensor(Uint8Array.from([1]), [1], 'bool'),
        z: tensor(Float32Array.from([1]), [1], 'float32'),
        a: tensor(Int32Array.from([1]), [1], 'int32'),
      },
      { k: 'v' },
    );
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>;
    expect(Object.keys(header)).toEqual(['__metadata__', 'a', 'z', 'b']);
    expect(header['a']).toEqual({ dtype: 'I32', shape: [1], data_offsets: [0, 4] });
    expect(header['b']).toEqual({ dtype: 'BOOL', shape: [1], data_offsets: [8, 9] });
  });

  it('writes an empty file as a valid header', () => {
    const bytes = serializeSafetensors({});
    expect(bytes.length).toBe(16);
    expect(parseSafetensors(bytes)).toEqual({ tensors: {}, metadata: {} });
  });

  it('rejects what it cannot write', () => {
    const t = tensor(Float32Array.from([1]), [1], 'float32');
    expect(() => serializeSafetensors({ __metadata__: t })).toThrow(/'__metadata__' is reserved/);
    expect(() => serializeSafetensors({ t }, { n: 1 as unknown as string })).toThrow(TypeError);
    expect(() => serializeSafetensors({ t }, { n: 1 as unknown as string })).toThrow(/metadata value for 'n'/);
  });

  describe('files', () => {
    let dir = '';
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'attnode-st-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('saveSafetensors / loadSafetensors', async () => {
      const path = join(dir, 'a.safetensors');
      await saveSafetensors(path, tensors, { a: '1' });
      expect(await readFile(path)).toEqual(Buffer.from(serializeSafetensors(tensors, { a: '1' })));
      const { tensors: back, metadata } = await loadSafetensors(path);
      expect(f32Bits(back['weight']!)).toEqual(f32Bits(tensors['weight']!));
      expect(back['weight']!.data.buffer).toBe(back['ids']!.data.buffer); // one read, views into it
      expect(metadata['a']).toBe('1');
    });

    it('loadSafetensors names the file in errors and keeps the error class', async () => {
      const path = join(dir, 'bad.safetensors');
      await writeFile(path, build('{"a":'));
      const err = await loadSafetensors(path).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SyntaxError);
      expect((err as Error).message).toContain(path);
      expect((err as Error).message).toMatch(/not valid JSON/);
      await expect(loadSafetensors(join(dir, 'missing.safetensors'))).rejects.toThrow(/ENOENT/);
    });
  });
});

describe('dtypes', () => {
  it('F32: aligned data is a view, unaligned data is copied once', () => {
    const values = Float32Array.from([1.5, -2, 3.25]);
    const aligned = single('F32', [3], le(values));
    const a = parseSafetensors(aligned).tensors['t']!;
    expect(a.data.buffer).toBe(aligned.buffer);
    expect(Array.from(a.data)).toEqual([1.5, -2, 3.25]);

    // One padding byte in the header puts the data at an odd offset.
    const header = { t: { dtype: 'F32', shape: [3], data_offsets: [0, 12] } };
    let bytes = build(header, le(values), { pad: 1 });
    if ((8 + Number(new DataView(bytes.buffer).getBigUint64(0, true))) % 4 === 0) {
      bytes = build(header, le(values), { pad: 2 });
    }
    const u = parseSafetensors(bytes).tensors['t']!;
    expect(u.data.buffer).not.toBe(bytes.buffer);
    expect(u.dtype).toBe('float32');
    expect(Array.from(u.data)).toEqual([1.5, -2, 3.25]);

    // Same with the file itself at an odd offset inside a larger buffer.
    const outer = new Uint8Array(aligned.length + 1);
    outer.set(aligned, 1);
    const o = parseSafetensors(outer.subarray(1)).tensors['t']!;
    expect(o.data.buffer).not.toBe(outer.buffer);
    expect(Array.from(o.data)).toEqual([1.5, -2, 3.25]);

    // I32 follows the same rule.
    const ints = single('I32', [2], le(Int32Array.from([-7, 2 ** 30])));
    expect(parseSafetensors(ints).tensors['t']!.data.buffer).toBe(ints.buffer);
    const outerI = new Uint8Array(ints.length + 2);
    outerI.set(ints, 2);
    const oi = parseSafetensors(outerI.subarray(2)).tensors['t']!;
    expect(oi.data.buffer).not.toBe(outerI.buffer);
    expect(Array.from(oi.data)).toEqual([-7, 2 ** 30]);
  });

  it('F16 → float32, including subnormals, infinities and NaN', () => {
    const bits = [0x0000, 0x8000, 0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x7c00, 0xfc00, 0x7e00];
    const t = parseOne('F16', [12], le(Uint16Array.from(bits)));
    expect(t.dtype).toBe('float32');
    const expected = [0, -0, 1, -2, 0.5, 65504, 2 ** -24, 1023 * 2 ** -24, 2 ** -14, Infinity, -Infinity, NaN];
    expect(Array.from(t.data)).toEqual(expected);
    expect(Object.is(t.data[1], -0)).toBe(true);
  });

  it('BF16 → float32 (the upper half of the float32 bits)', () => {
    const f = Float32Array.from([1, -2.5, 3.140625, Infinity, NaN, -0]);
    const u32 = new Uint32Array(f.buffer);
    const t = parseOne('BF16', [2, 3], le(Uint16Array.from(u32, (b) => b >>> 16)));
    expect(t.shape).toEqual([2, 3]);
    expect(Array.from(t.data)).toEqual([1, -2.5, 3.140625, Infinity, NaN, -0]);
  });

  it('F64 → float32, rounded to nearest', () => {
    const t = parseOne('F64', [4], le(Float64Array.from([0.1, 1 / 3, 1e300, 16777217])));
    expect(Array.from(t.data)).toEqual([Math.fround(0.1), Math.fround(1 / 3), Infinity, 16777216]);
  });

  it('integer types → int32', () => {
    expect(Array.from(parseOne('I32', [3], le(Int32Array.from([1, -1, 2 ** 31 - 1]))).data)).toEqual([
      1,
      -1,
      2 ** 31 - 1,
    ]);
    const i64 = parseOne('I64', [4], le(BigInt64Array.from([0n, -1n, 2n ** 31n - 1n, -(2n ** 31n)])));
    expect(i64.dtype).toBe('int32');
    expect(Array.from(i64.data)).toEqual([0, -1, 2 ** 31 - 1, -(2 ** 31)]);
    expect(Array.from(parseOne('U64', [2], le(BigUint64Array.from([0n, 2n ** 31n - 1n]))).data)).toEqual([
      0,
      2 ** 31 - 1,
    ]);
    expect(Array.from(parseOne('U32', [2], le(Uint32Array.from([0, 2 ** 31 - 1]))).data)).toEqual([0, 2 ** 31 - 1]);
    expect(Array.from(parseOne('I16', [3], le(Int16Array.from([-32768, 5, 32767]))).data)).toEqual([-32768, 5, 32767]);
    expect(Array.from(parseOne('U16', [2], le(Uint16Array.from([0, 65535]))).data)).toEqual([0, 65535]);
    expect(Array.from(parseOne('I8', [2], le(Int8Array.from([-128, 127]))).data)).toEqual([-128, 127]);
    const u8 = parseOne('U8', [3], Uint8Array.from([0, 1, 255]));
    expect(u8.dtype).toBe('int32');
    expect(Array.from(u8.data)).toEqual([0, 1, 255]);
  });

  it.each([
    [
      'I64',
      le(BigInt64Array.from([1n, 2n ** 31n])),
      /tensor 't': I64 value 2147483648 at index 1 does not fit in int32/,
    ],
    ['I64', le(BigInt64Array.from([-(2n ** 31n) - 1n])), /I64 value -2147483649 at index 0/],
    ['I64', le(BigInt64Array.from([2n ** 62n])), /I64 value 4611686018427387904/],
    ['U64', le(BigUint64Array.from([2n ** 63n])), /U64 value 9223372036854775808/],
    ['U32', le(Uint32Array.from([2 ** 31])), /U32 value 2147483648/],
  ])('%s out of int32 range is a RangeError naming the tensor (%#)', (dtype, data, msg) => {
    const n = data.length / (dtype === 'U32' ? 4 : 8);
    expect(() => parseOne(dtype, [n], data)).toThrow(RangeError);
    expect(() => parseOne(dtype, [n], data)).toThrow(msg);
  });

  it('BOOL → bool; non-0/1 bytes read as true', () => {
    const t = parseOne('BOOL', [4], Uint8Array.from([0, 1, 1, 0]));
    expect(t.dtype).toBe('bool');
    expect(Array.from(t.data)).toEqual([0, 1, 1, 0]);
    expect(Array.from(parseOne('BOOL', [3], Uint8Array.from([0, 2, 255])).data)).toEqual([0, 1, 1]);
  });

  it('zero-size and scalar tensors of every dtype', () => {
    for (const dtype of ['F32', 'F16', 'BF16', 'F64', 'I64', 'I32', 'U8', 'BOOL']) {
      const t = parseOne(dtype, [2, 0, 3], new Uint8Array(0));
      expect(t.shape).toEqual([2, 0, 3]);
      expect(t.data.length).toBe(0);
    }
    const s = parseOne('F64', [], le(Float64Array.from([2.5])));
    expect(s.shape).toEqual([]);
    expect(s.data[0]).toBe(2.5);
  });
});

describe('the Python-written fixture (scripts/gen_fixtures.py)', () => {
  let file: Awaited<ReturnType<typeof loadSafetensors>>;
  beforeAll(async () => {
    file = await loadSafetensors(join(FIXTURES, 'dtypes.safetensors'));
  });

  it('has the metadata', () => {
    expect({ ...file.metadata }).toEqual({ format: 'pt', producer: 'scripts/gen_fixtures.py', unicode: 'ünï ✓' });
  });

  it.each([
    ['f16', 'f16_as_f32'],
    ['bf16', 'bf16_as_f32'],
    ['f64', 'f64_as_f32'],
  ])('%s converts exactly as torch .float() does', (src, ref) => {
    const a = file.tensors[src]!;
    const b = file.tensors[ref]!;
    expect(a.dtype).toBe('float32');
    expect(a.shape).toEqual(b.shape);
    expect(f32Bits(a)).toEqual(f32Bits(b));
  });

  it('converts I64 like torch .int() (values in range)', () => {
    const a = file.tensors['i64']!;
    expect(a.dtype).toBe('int32');
    expect(Array.from(a.data)).toEqual(Array.from(file.tensors['i64_as_i32']!.data));
  });

  it('reads the other dtypes', () => {
    const t = file.tensors;
    expect(f32Bits(t['f32']!)).toEqual(
      f32Bits(tensor(Float32Array.from([0, -0, 1.5, -3.25, 3.4e38, 1e-45, Infinity, -Infinity, NaN]), [9], 'float32')),
    );
    expect(t['f32']!.data.buffer).toBe(t['i32']!.data.buffer); // views into the single read
    expect(t['f32_3d']!.shape).toEqual([2, 3, 4]);
    expect(t['f32_3d']!.data[23]).toBe(11.5);
    expect(t['i32']!.shape).toEqual([2, 2]);
    expect(Array.from(t['i32']!.data)).toEqual([0, -1, 2 ** 31 - 1, -(2 ** 31)]);
    expect(Array.from(t['i16']!.data)).toEqual([0, -1, 32767, -32768]);
    expect(Array.from(t['i8']!.data)).toEqual([0, -1, 127, -128]);
    expect(t['u8']!.dtype).toBe('int32');
    expect(Array.from(t['u8']!.data)).toEqual([0, 1, 7, 255]);
    expect(t['bool']!.dtype).toBe('bool');
    expect(t['bool']!.toArray()).toEqual([
      [true, false, true],
      [false, false, true],
    ]);
    expect(t['empty_f32']!.shape).toEqual([0, 3]);
    expect(t['empty_i64']!.dtype).toBe('int32');
    expect(t['empty_i64']!.shape).toEqual([0]);
    expect(t['scalar_f32']!.shape).toEqual([]);
    expect(t['scalar_f32']!.item()).toBe(2.5);
  });

  it('re-serializes a module fixture (F32 + BOOL) byte-identically to the Python writer', async () => {
    const path = join(FIXTURES, 'mha_bool_mask_2d.safetensors');
    const bytes = new Uint8Array(await readFile(path));
    const { tensors, metadata } = parseSafetensors(bytes);
    expect(serializeSafetensors(tensors, metadata)).toEqual(bytes);
  });
});

describe('malformed files', () => {
  const f32x2 = le(Float32Array.from([1, 2]));
  const ok = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
    ...extra,
  });
  const header = (s: string): Uint8Array => build(s);
  const cases: [string, () => Uint8Array, new (message?: string) => Error, RegExp][] = [
    ['empty file', () => new Uint8Array(0), RangeError, /file is 0 bytes, shorter than the 8-byte header length/],
    ['7 bytes', () => new Uint8Array(7), RangeError, /shorter than the 8-byte header length/],
    [
      'header length past the end',
      () => build(ok(), f32x2, { headerLen: 1000n }),
      RangeError,
      /header length 1000 exceeds the \d+ bytes after it/,
    ],
    [
      'header length 2^40',
      () => build(ok(), f32x2, { headerLen: 2n ** 40n }),
      RangeError,
      /header length 1099511627776 exceeds the 100000000-byte limit/,
    ],
    [
      'header length 2^64-1',
      () => build(ok(), f32x2, { headerLen: 2n ** 64n - 1n }),
      RangeError,
      /exceeds the 100000000-byte limit/,
    ],
    [
      'header length 200 MB',
      () => build(ok(), f32x2, { headerLen: 200_000_000n }),
      RangeError,
      /200000000 exceeds the 100000000-byte limit/,
    ],
    ['zero header length', () => build('', []), SyntaxError, /header does not start with '\{'/],
    ['header not starting with {', () => header(' {}'), SyntaxError, /does not start with '\{'/],
    ['header is an array', () => header('[1, 2]'), SyntaxError, /does not start with '\{'/],
    ['invalid JSON', () => header('{"a": {"dtype": "F32",'), SyntaxError, /header is not valid JSON/],
    ['trailing garbage after JSON', () => header('{} x'), SyntaxError, /not valid JSON/],
    [
      'invalid UTF-8',
      () => build(null, [], { rawHeader: Uint8Array.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]) }),
      TypeError,
      /header is not valid UTF-8/,
    ],
    ['entry not an object', () => build({ a: 5 }), TypeError, /tensor 'a': header entry is not an object/],
    ['entry is null', () => build({ a: null }), TypeError, /tensor 'a': header entry is not an object/],
    [
      'missing dtype',
      () => build({ a: { shape: [2], data_offsets: [0, 8] } }, f32x2),
      TypeError,
      /tensor 'a': dtype is not a string/,
    ],
    [
      'unknown dtype',
      () => build({ a: { dtype: 'F128', shape: [2], data_offsets: [0, 8] } }, f32x2),
      TypeError,
      /tensor 'a': unknown dtype 'F128'/,
    ],
    [
      'lower-case dtype',
      () => build({ a: { dtype: 'f32', shape: [2], data_offsets: [0, 8] } }, f32x2),
      TypeError,
      /unknown dtype 'f32'/,
    ],
    [
      'dtype "__proto__"',
      () => build({ a: { dtype: '__proto__', shape: [2], data_offsets: [0, 8] } }, f32x2),
      TypeError,
      /unknown dtype '__proto__'/,
    ],
    [
      'FP8 dtype',
      () => build({ a: { dtype: 'F8_E4M3', shape: [8], data_offsets: [0, 8] } }, f32x2),
      TypeError,
      /unsupported dtype 'F8_E4M3'/,
    ],
    [
      'shape missing',
      () => build({ a: { dtype: 'F32', data_offsets: [0, 8] } }, f32x2),
      TypeError,
      /shape must be an array of non-negative integers, got undefined/,
    ],
    [
      'negative dim',
      () => build({ a: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, f32x2),
      TypeError,
      /shape must be .*got \[-2\]/,
    ],
    [
      'fractional dim',
      () => build({ a: { dtype: 'F32', shape: [1.5], data_offsets: [0, 8] } }, f32x2),
      TypeError,
      /shape must be/,
    ],
    [
      'string dim',
      () => build({ a: { dtype: 'F32', shape: ['2'], data_offsets: [0, 8] } }, f32x2),
      TypeError,
      /shape must be/,
    ],
    [
      'huge shape',
      () => build({ a: { dtype: 'U8', shape: [2 ** 31, 2 ** 31], data_offsets: [0, 8] } }, f32x2),
      RangeError,
      /tensor 'a': shape .* exceeds 2147483647 elements/,
    ],
    [
      'offsets missing',
      () => build({ a: { dtype: 'F32', shape: [2] } }, f32x2),
      TypeError,
      /data_offsets must be a pair of non-negative integers/,
    ],
    [
      'offsets of length 1',
      () => build({ a: { dtype: 'F32', shape: [2], data_offsets: [8] } }, f32x2),
      TypeError,
      /data_offsets must be a pair/,
    ],
    [
      'offsets of length 3',
      () => build({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8, 8] } }, f32x2),
      TypeError,
      /data_offsets must be a pair/,
    ],
    [
      'string offsets',
      () => build({ a: { dtype: 'F32', shape: [2], data_offsets: ['0', '8'] } }, f32x2),
      TypeError,
      /data_offsets must be a pair/,
    ],
    [
      'negative offset',
      () => build({ a: { dtype: 'F32', shape: [2], data_offsets: [-8, 0] } }, f32x2),
      TypeError,
      /data_offsets must be a pair/,
    ],
    [
      'end before begin',
      () => build({ a: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, f32x2),
      RangeError,
      /tensor 'a': data_offsets \[8, 0\] end before begin/,
    ],
    [
      'size mismatch',
      () => build({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f32x2),
      RangeError,
      /tensor 'a': data_offsets \[0, 8\] span 8 bytes but F32 shape \[3\] needs 12/,
    ],
    [
      'size mismatch for dtype',
      () => build({ a: { dtype: 'F64', shape: [2], data_offsets: [0, 8] } }, f32x2),
      RangeError,
      /F64 shape \[2\] needs 16/,
    ],
    [
      'truncated data',
      () => build(ok(), f32x2.subarray(0, 5)),
      RangeError,
      /tensor 'a': data_offsets \[0, 8\] exceed the 5-byte data section \(truncated file\?\)/,
    ],
    [
      'offsets far out of range',
      () => build({ a: { dtype: 'U8', shape: [8], data_offsets: [2 ** 40, 2 ** 40 + 8] } }, f32x2),
      RangeError,
      /exceed the 8-byte data section/,
    ],
    [
      'overlapping tensors',
      () => build(ok({ b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }), f32x2),
      RangeError,
      /tensor '[ab]' overlaps tensor '[ab]'/,
    ],
    [
      'identical offsets',
      () => build(ok({ b: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }), f32x2),
      RangeError,
      /overlaps/,
    ],
    [
      'hole before the first tensor',
      () => build({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, f32x2),
      RangeError,
      /data section has a hole of 4 bytes before tensor 'a'/,
    ],
    [
      'hole between tensors',
      () =>
        build(
          {
            a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] },
            b: { dtype: 'U8', shape: [2], data_offsets: [6, 8] },
          },
          f32x2,
        ),
      RangeError,
      /hole of 4 bytes before tensor 'b'/,
    ],
    [
      'trailing bytes',
      () => build(ok(), [...f32x2, 0, 0, 0, 0]),
      RangeError,
      /data section has 4 trailing bytes not covered by any tensor/,
    ],
    ['data but no tensors', () => build({}, [1, 2]), RangeError, /2 trailing bytes/],
    [
      'metadata not an object',
      () => build(ok({ __metadata__: 'x' }), f32x2),
      TypeError,
      /'__metadata__' is not an object/,
    ],
    ['metadata array', () => build(ok({ __metadata__: ['x'] }), f32x2), TypeError, /'__metadata__' is not an object/],
    [
      'metadata number value',
      () => build(ok({ __metadata__: { epoch: 3 } }), f32x2),
      TypeError,
      /metadata value for 'epoch' is not a string/,
    ],
    [
      'metadata nested value',
      () => build(ok({ __metadata__: { cfg: { a: '1' } } }), f32x2),
      TypeError,
      /metadata value for 'cfg' is not a string/,
    ],
  ];

  it.each(cases)('%s', (_name, make, ErrorClass, message) => {
    const bytes = make();
    let err: unknown;
    try {
      parseSafetensors(bytes);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ErrorClass);
    expect((err as Error).message).toMatch(/^safetensors: /);
    expect((err as Error).message).toMatch(message);
  });

  it('accepts what the spec allows: trailing-space padding, null metadata, unknown entry fields', () => {
    const bytes = build(
      { __metadata__: null, a: { dtype: 'F32', shape: [2], data_offsets: [0, 8], extra: 1 } },
      f32x2,
      { pad: 5 },
    );
    const { tensors, metadata } = parseSafetensors(bytes);
    expect(Array.from(tensors['a']!.data)).toEqual([1, 2]);
    expect({ ...metadata }).toEqual({});
  });

  it('never crashes or reads past the buffer on corrupted files (deterministic fuzz)', () => {
    const good = serializeSafetensors(
      {
        w: tensor(
          Float32Array.from({ length: 12 }, (_, i) => i),
          [3, 4],
          'float32',
        ),
        ids: tensor(Int32Array.from([1, 2, 3]), [3], 'int32'),
        m: tensor(Uint8Array.from([1, 0]), [2], 'bool'),
      },
      { k: 'v' },
    );
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    let parsed = 0;
    for (let iter = 0; iter < 2000; iter++) {
      let bytes = good.slice();
      const mode = rand(3);
      if (mode === 0) bytes = bytes.slice(0, rand(bytes.length));
      else {
        const flips = 1 + rand(4);
        for (let i = 0; i < flips; i++) {
          // Mostly hit the header, where structure lives.
          const pos = mode === 1 ? rand(Math.min(bytes.length, 200)) : rand(bytes.length);
          bytes[pos] = rand(256);
        }
      }
      try {
        const { tensors } = parseSafetensors(bytes);
        parsed++;
        for (const t of Object.values(tensors)) expect(t.data.length).toBe(t.shape.reduce((a, b) => a * b, 1));
      } catch (e) {
        expect(
          [RangeError, TypeError, SyntaxError].some((C) => e instanceof C),
          String(e),
        ).toBe(true);
        expect((e as Error).message).toMatch(/^safetensors: /);
      }
    }
    expect(parsed).toBeGreaterThan(0);
  });
});
