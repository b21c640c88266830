/**
 * Fuzzing the safetensors reader: random valid files round-trip; random and mutated files (header length, offsets,
 * dtypes, shapes, truncation, JSON garbage, raw byte flips) either parse into tensors that are consistent with the
 * header, or throw a RangeError/SyntaxError/TypeError whose message starts with `safetensors:`. Never anything else:
 * no other exception type, no hang, no read past the buffer (a parsed tensor's data always lies inside the input).
 *
 * FUZZ_RUNS / FUZZ_SEED as in helpers/fuzz.ts; test/fuzz-corpus entries of kind 'safetensors' are replayed.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseSafetensors, serializeSafetensors } from '../lib/io/safetensors';
import { tensor, type Tensor } from '../lib/tensor';
import { fcParams, loadCorpus } from './helpers/fuzz';

const DTYPES = ['BOOL', 'U8', 'I8', 'I16', 'U16', 'I32', 'U32', 'I64', 'U64', 'F16', 'BF16', 'F32', 'F64', 'F8_E4M3', 'F8_E5M2'];
const ITEM: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, I16: 2, U16: 2, I32: 4, U32: 4, I64: 8, U64: 8, F16: 2, BF16: 2, F32: 4, F64: 8, F8_E4M3: 1, F8_E5M2: 1,
};

/** Parses, and checks the outcome is a consistent file or a clean error. Returns 'ok' or the error class name. */
function parseClean(bytes: Uint8Array): string {
  let file: ReturnType<typeof parseSafetensors>;
  try {
    file = parseSafetensors(bytes);
  } catch (e) {
    const err = e as Error;
    expect(['RangeError', 'SyntaxError', 'TypeError'], `${err.constructor.name}: ${err.message}`).toContain(err.constructor.name);
    expect(err.message.startsWith('safetensors: '), err.message).toBe(true);
    return err.constructor.name;
  }
  for (const [name, t] of Object.entries(file.tensors)) {
    expect(t.data.length, name).toBe(t.shape.reduce((a, b) => a * b, 1));
    // Zero-copy views must lie inside the input.
    if (t.data.buffer === bytes.buffer) {
      expect(t.data.byteOffset).toBeGreaterThanOrEqual(bytes.byteOffset);
      expect(t.data.byteOffset + t.data.byteLength).toBeLessThanOrEqual(bytes.byteOffset + bytes.byteLength);
    }
  }
  for (const v of Object.values(file.metadata)) expect(typeof v).toBe('string');
  return 'ok';
}

/** A file from a header object and a data section, with the header length as given (or the true one). */
function rawFile(header: unknown, data: Uint8Array, lengthOverride?: bigint, headerText?: string): Uint8Array {
  const json = new TextEncoder().encode(headerText ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const shapeArb = fc.array(fc.constantFrom(0, 1, 2, 3, 5, 7), { maxLength: 4 });
const nameArb = fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('__proto__', 'constructor', 'a.b', 'weight', ''));

/** Random well-formed tensors (the three dtypes attnode writes). */
const tensorsArb = fc.uniqueArray(
  fc.record({
    name: nameArb.filter((n) => n !== '__metadata__'),
    dtype: fc.constantFrom('float32', 'int32', 'bool') as fc.Arbitrary<'float32' | 'int32' | 'bool'>,
    shape: shapeArb,
    seed: fc.integer(),
  }),
  { selector: (t) => t.name, maxLength: 5 },
).map((list) => {
  const out: Record<string, Tensor> = Object.create(null) as Record<string, Tensor>;
  for (const { name, dtype, shape, seed } of list) {
    const n = shape.reduce((a: number, b: number) => a * b, 1);
    const vals = Array.from({ length: n }, (_, i) => ((seed + i * 7919) % 1000) - 500);
    out[name] = dtype === 'float32' ? tensor(new Float32Array(vals.map((v) => v / 7)), shape, 'float32')
      : dtype === 'int32' ? tensor(new Int32Array(vals), shape, 'int32')
        : tensor(new Uint8Array(vals.map((v) => (v & 1))), shape, 'bool');
  }
  return out;
});

/** Random header entries of any dtype the format names (including unsupported and unknown ones) over random data. */
const headerArb = fc.record({
  entries: fc.array(
    fc.record({
      name: nameArb,
      dtype: fc.oneof(fc.constantFrom(...DTYPES), fc.constantFrom('F128', 'f32', '', 'BOOL ')),
      shape: fc.oneof(shapeArb, fc.constant([-1]), fc.constant([2 ** 31]), fc.constant([1.5]), fc.constant(['2']),
        fc.constant([2 ** 53, 2 ** 53])),
      // Offsets: usually consistent with the running cursor, sometimes off.
      skew: fc.constantFrom(0, 0, 0, 0, -1, 1, 8, -(2 ** 40)),
      swap: fc.boolean(),
    }),
    { maxLength: 4 },
  ),
  metadata: fc.option(fc.dictionary(fc.string({ maxLength: 4 }), fc.oneof(fc.string({ maxLength: 4 }), fc.integer())), { nil: undefined }),
  trailing: fc.constantFrom(0, 0, 1, 3),
  fill: fc.integer({ min: 0, max: 255 }),
});

function fileFromHeader(h: {
  entries: { name: string; dtype: string; shape: unknown[]; skew: number; swap: boolean }[];
  metadata?: Record<string, unknown>;
  trailing: number;
  fill: number;
}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (h.metadata) header.__metadata__ = h.metadata;
  let cursor = 0;
  for (const e of h.entries) {
    const n = e.shape.every((d) => typeof d === 'number' && d >= 0) ? (e.shape as number[]).reduce((a, b) => a * b, 1) : 1;
    const bytes = Math.min(4096, n * (ITEM[e.dtype] ?? 1));
    const begin = cursor;
    const end = cursor + bytes + e.skew;
    cursor += bytes;
    Object.defineProperty(header, e.name, {
      value: { dtype: e.dtype, shape: e.shape, data_offsets: e.swap ? [end, begin] : [begin, end] },
      enumerable: true, configurable: true, writable: true,
    });
  }
  return rawFile(header, new Uint8Array(cursor + h.trailing).fill(h.fill));
}

describe('safetensors fuzz', () => {
  it('well-formed files round-trip exactly', () => {
    fc.assert(fc.property(tensorsArb, fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 })), (tensors, md) => {
      delete (md as Record<string, string>).__metadata__;
      const bytes = serializeSafetensors(tensors, md);
      const back = parseSafetensors(bytes);
      expect(Object.keys(back.tensors).sort()).toEqual(Object.keys(tensors).sort());
      for (const [name, t] of Object.entries(tensors)) {
        expect(back.tensors[name]!.dtype).toBe(t.dtype);
        expect(back.tensors[name]!.shape).toEqual(t.shape);
        expect(Array.from(back.tensors[name]!.data)).toEqual(Array.from(t.data));
      }
    }), fcParams(2));
  });

  it('random headers (any dtype, bad shapes, skewed or swapped offsets, trailing bytes): parse or clean error', () => {
    fc.assert(fc.property(headerArb, (h) => {
      parseClean(fileFromHeader(h as unknown as Parameters<typeof fileFromHeader>[0]));
    }), fcParams(8));
  });

  it('mutated valid files: byte flips, truncation, header-length edits, inserted bytes', () => {
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('length' as const), value: fc.constantFrom(0n, 1n, 7n, 2n ** 32n, 2n ** 63n, 100_000_001n) }),
      fc.record({ kind: fc.constant('lengthDelta' as const), delta: fc.integer({ min: -16, max: 16 }) }),
      fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
    );
    fc.assert(fc.property(tensorsArb, fc.array(mutation, { minLength: 1, maxLength: 3 }), (tensors, muts) => {
      let bytes = serializeSafetensors(tensors);
      for (const m of muts) {
        const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        if (m.kind === 'flip' && bytes.length > 0) bytes[m.at % bytes.length] = m.value;
        else if (m.kind === 'truncate') bytes = bytes.subarray(0, m.at % (bytes.length + 1));
        else if (m.kind === 'length' && bytes.length >= 8) dv.setBigUint64(0, m.value, true);
        else if (m.kind === 'lengthDelta' && bytes.length >= 8) dv.setUint32(0, Math.max(0, dv.getUint32(0, true) + m.delta), true);
        else if (m.kind === 'insert') {
          const at = m.at % (bytes.length + 1);
          const next = new Uint8Array(bytes.length + 1);
          next.set(bytes.subarray(0, at));
          next[at] = m.value;
          next.set(bytes.subarray(at), at + 1);
          bytes = next;
        }
      }
      parseClean(bytes);
    }), fcParams(8));
  });

  it('JSON garbage and non-object headers are clean errors', () => {
    const garbage = fc.oneof(
      fc.string(),
      fc.json(),
      fc.constantFrom('{', '{"a":', '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}', '{"__metadata__":[]}',
        '{"__metadata__":{"k":1}}', '{"a":null}', '{"a":[]}', '{"a":{"dtype":"F32"}}', '[]', 'null', '{}\u0000', '{"\ud800":1}'),
    );
    fc.assert(fc.property(garbage, fc.boolean(), (text, badUtf8) => {
      const bytes = rawFile(undefined, new Uint8Array(0), undefined, text);
      if (badUtf8 && bytes.length > 9) bytes[9] = 0xff;
      parseClean(bytes);
    }), fcParams(8));
  });

  it('a file sliced out of a larger buffer (non-zero byteOffset, unaligned) parses the same', () => {
    fc.assert(fc.property(tensorsArb, fc.integer({ min: 0, max: 7 }), (tensors, shift) => {
      const bytes = serializeSafetensors(tensors);
      const big = new Uint8Array(bytes.length + shift + 5).fill(0xee);
      big.set(bytes, shift);
      const view = big.subarray(shift, shift + bytes.length);
      const a = parseSafetensors(bytes);
      const b = parseSafetensors(view);
      for (const name of Object.keys(a.tensors)) {
        expect(Array.from(b.tensors[name]!.data)).toEqual(Array.from(a.tensors[name]!.data));
      }
      parseClean(view);
    }), fcParams(2));
  });

  for (const [file, entry] of loadCorpus<{ base64: string; expect: string }>('safetensors')) {
    it(`corpus ${file}: ${entry.note}`, () => {
      expect(parseClean(new Uint8Array(Buffer.from(entry.case.base64, 'base64')))).toBe(entry.case.expect);
    });
  }
});
