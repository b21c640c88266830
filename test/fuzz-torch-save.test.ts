/**
 * Fuzzing the torch.save reader. Valid crafted state dicts (any storage type, views with offsets and strides,
 * ZIP64 layouts, either byte order) give the values a plain reference gather reads from the storage bytes. Hostile
 * ones (bad sizes, strides and offsets, storages declared larger or smaller than their records, unknown or refused
 * storage types and globals), real torch 1.13 files with flipped, inserted or cut bytes, and pickles mutated
 * inside a valid archive either parse into tensors consistent with what the file says, or throw a RangeError,
 * SyntaxError or TypeError whose message starts with `torch checkpoint:`. Never another exception, a hang, a read
 * outside the input, or an allocation sized by what a file claims instead of what it holds.
 *
 * FUZZ_RUNS / FUZZ_SEED as in helpers/fuzz.ts; test/fuzz-corpus entries of kind 'torch-save' are replayed.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseTorchCheckpoint, type TorchCheckpoint } from '../lib/io/torch/checkpoint';
import { fcParams, loadCorpus } from './helpers/fuzz';
import { Pickle, stateDictPickle, torchArchive, zipArchive, zipEntries, type TensorSpec } from './helpers/torch-save';

const FIXTURES = path.join(__dirname, 'fixtures', 'torch_save');
const fixture = (name: string): Uint8Array => new Uint8Array(readFileSync(path.join(FIXTURES, name)));

/** Parses; checks the outcome is a consistent result or a clean error. Returns 'ok' or the error class name. */
function parseClean(bytes: Uint8Array, options = {}): string {
  let out: TorchCheckpoint;
  try {
    out = parseTorchCheckpoint(bytes, options);
  } catch (e) {
    const err = e as Error;
    expect(['RangeError', 'SyntaxError', 'TypeError'], `${err.constructor.name}: ${err.message}\n${err.stack}`).toContain(err.constructor.name);
    expect(err.message.startsWith('torch checkpoint: '), err.message).toBe(true);
    return err.constructor.name;
  }
  for (const [name, t] of Object.entries(out.tensors)) {
    const span = t.size === 0 ? 0 : 1 + t.shape.reduce((s, d, i) => s + (d - 1) * t.strides[i]!, 0);
    expect(t.data.length, name).toBe(span);
    if (t.data.buffer === bytes.buffer) {
      expect(t.data.byteOffset).toBeGreaterThanOrEqual(bytes.byteOffset);
      expect(t.data.byteOffset + t.data.byteLength).toBeLessThanOrEqual(bytes.byteOffset + bytes.byteLength);
    }
  }
  return 'ok';
}

/** Item size and reader of one element of each storage type, for the reference gather. */
const TYPES: Record<string, { item: number; read: (dv: DataView, at: number, le: boolean) => number }> = {
  FloatStorage: { item: 4, read: (dv, at, le) => dv.getFloat32(at, le) },
  DoubleStorage: { item: 8, read: (dv, at, le) => Math.fround(dv.getFloat64(at, le)) },
  HalfStorage: { item: 2, read: (dv, at, le) => half(dv.getUint16(at, le)) },
  BFloat16Storage: { item: 2, read: (dv, at, le) => new Float32Array(new Uint32Array([dv.getUint16(at, le) << 16]).buffer)[0]! },
  LongStorage: { item: 8, read: (dv, at, le) => Number(dv.getBigInt64(at, le)) },
  IntStorage: { item: 4, read: (dv, at, le) => dv.getInt32(at, le) },
  ShortStorage: { item: 2, read: (dv, at, le) => dv.getInt16(at, le) },
  CharStorage: { item: 1, read: (dv, at) => dv.getInt8(at) },
  ByteStorage: { item: 1, read: (dv, at) => dv.getUint8(at) },
  BoolStorage: { item: 1, read: (dv, at) => (dv.getUint8(at) ? 1 : 0) },
};

/** binary16 → number, written independently of the library (via float32 bit assembly). */
function half(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0x1f) return new Float32Array(new Uint32Array([sign | 0x7f800000 | (frac << 13)]).buffer)[0]!;
  if (exp === 0) return (sign ? -1 : 1) * frac * 2 ** -24;
  return new Float32Array(new Uint32Array([sign | ((exp + 112) << 23) | (frac << 13)]).buffer)[0]!;
}

/** A valid tensor over a storage of `numel` elements: random shape, permuted/sliced strides, an offset that fits. */
const validLayout = (numel: number): fc.Arbitrary<{ offset: number; size: number[]; stride: number[] }> =>
  fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }).chain((size) =>
    fc.tuple(fc.array(fc.integer({ min: 0, max: 5 }), { minLength: size.length, maxLength: size.length }), fc.nat()).map(([stride, off]) => {
      const span = size.includes(0) ? 0 : 1 + size.reduce((s, d, i) => s + (d - 1) * stride[i]!, 0);
      if (span > numel) return { offset: 0, size: size.map(() => 1), stride: size.map(() => 1) };
      return { offset: span === 0 ? off % (numel + 1) : off % (numel - span + 1), size, stride };
    }));

const storageArb = fc.record({
  type: fc.constantFrom(...Object.keys(TYPES)),
  numel: fc.integer({ min: 1, max: 40 }),
  seed: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 8, maxLength: 8 }),
});

/** Random valid archives: storages of any type, 1–4 tensors each, little or big endian, any zip layout. */
const validArb = fc.record({
  storages: fc.array(storageArb, { minLength: 1, maxLength: 3 }),
  byteorder: fc.constantFrom(undefined, 'little', 'big'),
  zip64: fc.constantFrom('none', 'records', 'saturated') as fc.Arbitrary<'none' | 'records' | 'saturated'>,
}).chain((a) => fc.tuple(fc.constant(a), fc.tuple(...a.storages.map((s) => fc.array(validLayout(s.numel), { minLength: 1, maxLength: 4 })))));

function storageBytes(s: { type: string; numel: number; seed: number[] }): Uint8Array {
  const n = s.numel * TYPES[s.type]!.item;
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = s.seed[i % 8]! ^ ((i * 37) & 0xff);
  if (s.type === 'LongStorage') {
    // Keep int64 values inside int32 (an out-of-range one is a separate case): sign-extend each low word.
    const dv = new DataView(b.buffer);
    for (let i = 0; i < s.numel; i++) dv.setBigInt64(8 * i, BigInt(dv.getInt32(8 * i, true)), true);
  }
  return b;
}

describe('torch.save fuzz', () => {
  it('valid crafted archives (any storage type, views, byte order, ZIP64 layout) give the reference values', () => {
    fc.assert(fc.property(validArb, ([a, layouts]) => {
      const specs: TensorSpec[] = [];
      const storages: Record<string, Uint8Array> = {};
      a.storages.forEach((s, k) => {
        storages[String(k)] = storageBytes(s);
        layouts[k]!.forEach((l, j) => specs.push({ name: `t${k}.${j}`, storageType: s.type, key: String(k), numel: s.numel, ...l }));
      });
      const stored: Record<string, Uint8Array> = {};
      // The archive holds the bytes in its byte order: big endian swaps each element.
      a.storages.forEach((s, k) => {
        const b = storages[String(k)]!.slice();
        const item = TYPES[s.type]!.item;
        if (a.byteorder === 'big') for (let i = 0; i < b.length; i += item) b.subarray(i, i + item).reverse();
        stored[String(k)] = b;
      });
      const bytes = torchArchive(stateDictPickle(specs), stored, { zip64: a.zip64, byteorder: a.byteorder });
      const { tensors } = parseTorchCheckpoint(bytes);
      expect(Object.keys(tensors)).toEqual(specs.map((s) => s.name));
      for (const s of specs) {
        const t = tensors[s.name]!;
        const size = s.size as number[];
        const stride = s.stride as number[];
        expect(t.shape).toEqual(size);
        const le = new DataView(storages[s.key]!.buffer);
        const { item, read } = TYPES[s.storageType]!;
        const n = size.reduce((x, y) => x * y, 1);
        const want: number[] = [];
        for (let i = 0; i < n; i++) {
          let rem = i;
          let at = s.offset as number;
          for (let d = size.length - 1; d >= 0; d--) {
            at += (rem % size[d]!) * stride[d]!;
            rem = Math.floor(rem / size[d]!);
          }
          want.push(read(le, at * item, true));
        }
        const got = Array.from(t.contiguous().data as ArrayLike<number>);
        expect(got.map((v) => (Number.isNaN(v) ? 'NaN' : v)), s.name).toEqual(want.map((v) => (Number.isNaN(v) ? 'NaN' : v)));
        expect(t.dtype).toBe(s.storageType === 'BoolStorage' ? 'bool' : item === 1 || /Long|Int|Short/.test(s.storageType) ? 'int32' : 'float32');
      }
      // Tensors of one float storage share its memory.
      for (const s of specs) {
        const t = tensors[s.name]!;
        const first = tensors[specs.find((o) => o.key === s.key)!.name]!;
        if (t.dtype === 'float32' && t.size > 0 && first.size > 0) expect(t.data.buffer).toBe(first.data.buffer);
      }
    }), fcParams(4));
  });

  const evil = fc.constantFrom<number | bigint | string | (number | bigint)[]>(-1, 2 ** 31, 2 ** 53, 2n ** 70n, 1.5, 'x', [], [2 ** 40, 2 ** 40], [-3]);
  const hostileArb = fc.record({
    type: fc.oneof(fc.constantFrom(...Object.keys(TYPES)), fc.constantFrom('ComplexFloatStorage', 'QInt8Storage', 'UntypedStorage', 'EvilStorage', 'Tensor')),
    numelSkew: fc.constantFrom(0, 0, 0, 1, -1, 2 ** 50),
    offset: fc.oneof(fc.nat({ max: 8 }), evil),
    size: fc.oneof(fc.array(fc.nat({ max: 6 }), { maxLength: 3 }), evil),
    stride: fc.oneof(fc.array(fc.nat({ max: 6 }), { maxLength: 3 }), evil),
    record: fc.constantFrom('present', 'present', 'missing', 'short'),
  });

  it('hostile tensor specs (sizes, strides, offsets, storage counts, types, records): parse consistently or a clean error', () => {
    fc.assert(fc.property(fc.array(hostileArb, { minLength: 1, maxLength: 3 }), (list) => {
      const specs: TensorSpec[] = [];
      const storages: Record<string, Uint8Array> = {};
      list.forEach((h, k) => {
        const numel = 12;
        const item = TYPES[h.type]?.item ?? 4;
        if (h.record !== 'missing') storages[String(k)] = new Uint8Array((h.record === 'short' ? numel - 1 : numel) * item).fill(k + 1);
        specs.push({ name: `t${k}`, storageType: h.type, key: String(k), numel: numel + h.numelSkew, offset: h.offset, size: h.size, stride: h.stride });
      });
      const before = process.memoryUsage().arrayBuffers;
      parseClean(torchArchive(stateDictPickle(specs), storages));
      // Nothing the pickle claims (2^50 elements, 2^40-sized dims) is ever allocated.
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 << 20);
    }), fcParams(8));
  });

  const mutation = fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  );
  const mutate = (input: Uint8Array, muts: { kind: string; at: number; value?: number }[]): Uint8Array => {
    let bytes = input.slice();
    for (const m of muts) {
      if (m.kind === 'flip' && bytes.length > 0) bytes[m.at % bytes.length] = m.value!;
      else if (m.kind === 'truncate') bytes = bytes.subarray(0, m.at % (bytes.length + 1));
      else if (m.kind === 'insert') {
        const at = m.at % (bytes.length + 1);
        const next = new Uint8Array(bytes.length + 1);
        next.set(bytes.subarray(0, at));
        next[at] = m.value!;
        next.set(bytes.subarray(at), at + 1);
        bytes = next;
      }
    }
    return bytes;
  };
  const FILES = ['dtypes.pt', 'views.pt', 'nested.pt', 'legacy.pt', 'protocol4.pt', 'zip64.pt', 'big_endian.pt'];

  it('real torch 1.13 files with flipped, inserted or cut bytes', () => {
    fc.assert(fc.property(fc.constantFrom(...FILES), fc.array(mutation, { minLength: 1, maxLength: 3 }), (name, muts) => {
      parseClean(mutate(fixture(name), muts));
    }), fcParams(12));
  });

  it('mutated data.pkl inside a valid archive (right CRCs): the pickle machine itself', () => {
    fc.assert(fc.property(fc.constantFrom('dtypes.pt', 'views.pt', 'nested.pt', 'protocol4.pt'), fc.array(mutation, { minLength: 1, maxLength: 4 }), (name, muts) => {
      const entries = zipEntries(fixture(name)).map((e) => (e.name.endsWith('/data.pkl') ? { ...e, data: mutate(e.data, muts) } : e));
      parseClean(zipArchive(entries));
    }), fcParams(12));
  });

  it('random opcode soup after PROTO 2', () => {
    const ops = [0x28, 0x29, 0x2e, 0x30, 0x31, 0x32, 0x4a, 0x4b, 0x4d, 0x4e, 0x51, 0x52, 0x58, 0x5d, 0x61, 0x62, 0x63, 0x65, 0x68, 0x6a,
      0x71, 0x72, 0x73, 0x74, 0x75, 0x7d, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x93, 0x94, 0x95, 0x81, 0x69, 0x0a];
    fc.assert(fc.property(fc.array(fc.oneof(fc.constantFrom(...ops), fc.integer({ min: 0, max: 255 })), { maxLength: 200 }), (soup) => {
      parseClean(torchArchive(Uint8Array.from([0x80, 2, ...soup]), { 0: new Uint8Array(16) }));
    }), fcParams(12));
  });

  for (const [file, entry] of loadCorpus<{ base64: string; expect: string }>('torch-save')) {
    it(`corpus ${file}: ${entry.note}`, () => {
      expect(parseClean(new Uint8Array(Buffer.from(entry.case.base64, 'base64')))).toBe(entry.case.expect);
    });
  }
});

describe('malicious and malformed files', () => {
  const good: TensorSpec = { name: 'w', storageType: 'FloatStorage', key: '0', numel: 4, offset: 0, size: [2, 2], stride: [2, 1] };
  const archive = (pickle: Uint8Array, storages: Record<string, Uint8Array> = { 0: new Uint8Array(16) }): Uint8Array => torchArchive(pickle, storages);
  const expectError = (bytes: Uint8Array, cls: typeof Error, re: RegExp): void => {
    let err: unknown;
    try {
      parseTorchCheckpoint(bytes);
    } catch (e) {
      err = e;
    }
    expect(err, 'expected an error').toBeInstanceOf(cls);
    expect((err as Error).message).toMatch(/^torch checkpoint: /);
    expect((err as Error).message).toMatch(re);
  };

  it('code-running globals are refused by name, whichever opcode names them, before anything is called', () => {
    for (const [mod, name] of [['posix', 'system'], ['os', 'system'], ['builtins', 'eval'], ['subprocess', 'Popen'], ['__builtin__', 'exec'], ['nt', 'system']]) {
      const viaGlobal = new Pickle().global(mod!, name!).mark().str('echo pwned').tuple().reduce().stop();
      expectError(archive(viaGlobal), TypeError, new RegExp(`global '${mod}\\.${name}' is refused: .*would run code`));
      const viaStack = new Pickle(4).raw(0x8c, mod!.length, ...new TextEncoder().encode(mod)).raw(0x8c, name!.length, ...new TextEncoder().encode(name))
        .raw(0x93).mark().str('x').tuple().reduce().stop();
      expectError(archive(viaStack), TypeError, new RegExp(`global '${mod}\\.${name}' is refused`));
    }
    // A model class of the saving program, numpy, and the tensor kinds attnode cannot hold: refused with the reason.
    expectError(archive(new Pickle().global('__main__', 'Net').emptyTuple().reduce().stop()), TypeError, /'__main__\.Net' is refused: .*save model\.state_dict\(\)/);
    expectError(archive(new Pickle().global('numpy.core.multiarray', '_reconstruct').stop()), TypeError, /numpy arrays are not supported/);
    expectError(archive(new Pickle().global('torch._utils', '_rebuild_qtensor').stop()), TypeError, /quantized tensors are not supported/);
    expectError(archive(new Pickle().global('torch', 'ComplexFloatStorage').stop()), TypeError, /torch\.ComplexFloatStorage is not supported \(complex\)/);
  });

  it('instance-creating and other refused opcodes are TypeErrors naming the opcode', () => {
    expectError(archive(new Pickle().global('collections', 'OrderedDict').emptyTuple().raw(0x81).stop()), TypeError, /NEWOBJ at offset \d+: not supported: this opcode creates an instance/);
    expectError(archive(new Pickle().mark().raw(0x69, ...new TextEncoder().encode('os\nsystem\n')).stop()), TypeError, /INST at offset \d+: not supported/);
    expectError(archive(new Pickle().raw(0x82, 1).stop()), TypeError, /EXT1 .*extension registry/);
    expectError(archive(new Pickle().raw(0x8f).stop()), TypeError, /EMPTY_SET .*builds a set/);
    // BUILD on a tensor (the legacy Tensor.set_ path) is refused.
    const build = stateDictPickle([good]);
    const p = new Pickle().global('torch._utils', '_rebuild_tensor_v2').mark();
    p.mark().str('storage').global('torch', 'FloatStorage').str('0').str('cpu').int(4).tuple().raw(0x51);
    p.int(0).value([4]).value([1]).raw(0x89).global('collections', 'OrderedDict').emptyTuple().reduce().tuple().reduce();
    p.raw(0x7d).raw(0x62);
    expectError(archive(p.stop()), TypeError, /BUILD on tensor/);
    expect(parseClean(archive(build))).toBe('ok');
  });

  it('huge sizes, negative offsets and storages out of range: errors naming the tensor and field, no allocation', () => {
    const before = process.memoryUsage().arrayBuffers;
    expectError(archive(stateDictPickle([{ ...good, size: [2 ** 20, 2 ** 20], stride: [2 ** 20, 1] }])), RangeError, /tensor 'w': size \[1048576, 1048576\] exceeds 2147483647 elements/);
    expectError(archive(stateDictPickle([{ ...good, offset: -1 }])), RangeError, /tensor 'w': storage offset must be a non-negative integer, got -1/);
    expectError(archive(stateDictPickle([{ ...good, stride: [2, -1] }])), RangeError, /tensor 'w': stride \(2, -1\) must hold non-negative integers/);
    expectError(archive(stateDictPickle([{ ...good, offset: 1 }])), RangeError, /tensor 'w': size \[2, 2\], stride \[2, 1\] and storage offset 1 reach element 4 of storage '0', which has 4/);
    expectError(archive(stateDictPickle([{ ...good, size: [2, 2, 2] }])), RangeError, /tensor 'w': stride \[2, 1\] has 2 dims, size \[2, 2, 2\] has 3/);
    expectError(archive(stateDictPickle([{ ...good, size: 'x' }])), TypeError, /tensor 'w': size must be a tuple of integers, got str/);
    // The pickle declares 2^50 elements; the record holds 16 bytes: refused before any read or allocation.
    expectError(archive(stateDictPickle([{ ...good, numel: 2 ** 50 }])), RangeError, /storage '0' has 1125899906842624 elements/);
    expectError(archive(stateDictPickle([{ ...good, numel: 8 }])), RangeError, /archive\/data\/0: 16 bytes, but FloatStorage storage '0' of 8 elements needs 32/);
    expectError(archive(stateDictPickle([good]), {}), RangeError, /storage '0' has no record 'archive\/data\/0'/);
    // Long and string lengths beyond the pickle.
    expectError(archive(new Pickle().raw(0x8b, 0xff, 0xff, 0xff, 0x7f).stop()), RangeError, /LONG4 .*more than 1024/);
    expectError(archive(new Pickle().raw(0x58, 0xff, 0xff, 0xff, 0xff).stop()), RangeError, /BINUNICODE at offset 2 needs 4294967295 bytes/);
    expectError(archive(new Pickle(4).raw(0x8d, 0, 0, 0, 0, 0, 0, 0, 0x40).stop()), RangeError, /BINUNICODE8 .*exceeds the pickle/);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 << 20);
  });

  it('cycles, shared containers and deep nesting end with an error, not a hang or a stack overflow', () => {
    // l = []; l.append(l); l.append(l): walking it would never end.
    const cycle = new Pickle().raw(0x5d, 0x71, 0).raw(0x68, 0, 0x61).raw(0x68, 0, 0x61).stop();
    expectError(archive(cycle), RangeError, /a container holds itself at '0' \(a cycle\)/);
    // 40 levels, each a list holding the level below twice: 2^40 paths from 80 opcodes.
    const dag = new Pickle().raw(0x5d, 0x71, 0);
    for (let i = 0; i < 40; i++) dag.raw(0x30, 0x5d, 0x68, 0, 0x61, 0x68, 0, 0x61, 0x71, 0);
    expectError(archive(dag.stop()), RangeError, /reference each other more often than they exist|nested deeper than 64/);
    // A long list of plain values beside a tensor is ordinary data, walked once: no budget error.
    const long = new Pickle().raw(0x7d).str('vocab').raw(0x5d).mark();
    for (let i = 0; i < 5000; i++) long.int(i);
    long.raw(0x65, 0x73).str('w');
    long.global('torch._utils', '_rebuild_tensor_v2').mark().mark().str('storage').global('torch', 'FloatStorage').str('0').str('cpu').int(4)
      .tuple().raw(0x51).int(0).value([4]).value([1]).raw(0x89).global('collections', 'OrderedDict').emptyTuple().reduce().tuple().reduce().raw(0x73);
    expect(Object.keys(parseTorchCheckpoint(archive(long.stop())).tensors)).toEqual(['w']);
    // 100000 nested lists: the machine is iterative, the walk stops at 64 levels.
    const deep = new Pickle();
    for (let i = 0; i < 100_000; i++) deep.raw(0x5d);
    for (let i = 0; i < 99_999; i++) deep.raw(0x61);
    expectError(archive(deep.stop()), RangeError, /nested deeper than 64 levels/);
  });

  it('malformed pickles are SyntaxErrors naming the opcode and offset', () => {
    expectError(archive(new Pickle().raw(0x68, 7).stop()), SyntaxError, /BINGET at offset 2: memo entry 7 was never stored/);
    expectError(archive(new Pickle().raw(0x61).stop()), SyntaxError, /APPEND at offset 2: the stack is empty/);
    expectError(archive(new Pickle().raw(0x74).stop()), SyntaxError, /TUPLE at offset 2: no MARK to pop to/);
    expectError(archive(new Pickle().raw(0x4e, 0x4e).stop()), SyntaxError, /STOP at offset 4: the stack holds 2 values/);
    expectError(archive(new Pickle().raw(0xfe).stop()), SyntaxError, /unknown opcode 0xfe/);
    expectError(archive(new Pickle().raw(0x4e).stop().subarray(0, 3)), RangeError, /needs 1 bytes, only 0 left \(truncated file\?\)/);
    expectError(archive(Uint8Array.from([...stateDictPickle([good]), 0x4e])), SyntaxError, /1 bytes after the pickle's STOP/);
  });

  it('zip structure: ZIP64 with saturated fields reads; compression, bad CRC, missing ZIP64 data, duplicates are refused', () => {
    const pkl = stateDictPickle([good]);
    const data = new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer);
    for (const z of ['none', 'records', 'saturated'] as const) {
      const { tensors } = parseTorchCheckpoint(torchArchive(pkl, { 0: data }, { zip64: z }));
      expect(Array.from(tensors['w']!.data)).toEqual([1, 2, 3, 4]);
    }
    const entries = zipEntries(torchArchive(pkl, { 0: data }));
    expectError(zipArchive(entries.map((e) => (e.name === 'archive/data/0' ? { ...e, method: 8 } : e))), TypeError, /entry 'archive\/data\/0' is compressed \(deflate\)/);
    expectError(zipArchive(entries.map((e) => (e.name === 'archive/data/0' ? { ...e, method: 99 } : e))), TypeError, /is compressed \(method 99\)/);
    expectError(zipArchive(entries.map((e) => (e.name === 'archive/data/0' ? { ...e, crc: 1234 } : e))), RangeError, /entry 'archive\/data\/0': CRC-32 0x[0-9a-f]+ does not match the directory's 0x000004d2/);
    expectError(zipArchive([...entries, entries[1]!]), RangeError, /entry 'archive\/data\/0' appears twice/);
    // Saturated 32-bit fields with the ZIP64 end record cut away.
    const sat = torchArchive(pkl, { 0: data }, { zip64: 'saturated' });
    const noLocator = new Uint8Array([...sat.subarray(0, sat.length - 22 - 76), ...sat.subarray(sat.length - 22)]);
    expectError(noLocator, RangeError, /the end record asks for ZIP64 but no ZIP64 locator precedes it/);
    expectError(zipArchive([{ name: 'other/thing.txt', data: new Uint8Array(3) }]), TypeError, /a zip archive without '<archive>\/data\.pkl' \(entries: other\/thing\.txt\)/);
    expectError(torchArchive(pkl, { 0: data }, { byteorder: 'middle' }), TypeError, /archive\/byteorder: must be 'little' or 'big', got "middle"/);
  });

  it('legacy files: bad magic, truncated storages, a pickled nn.Module', () => {
    const legacy = fixture('legacy.pt');
    expectError(legacy.subarray(0, legacy.length - 10), RangeError, /legacy storage '\d+': \d+ bytes at offset \d+ run past the end/);
    const badMagic = legacy.slice();
    badMagic[4] ^= 1;
    expectError(badMagic, TypeError, /where the legacy format has its magic number/);
    const head = (pickles: Uint8Array[]): Uint8Array => Uint8Array.from(pickles.flatMap((p) => Array.from(p)));
    const magic = new Pickle().int(0x1950a86a20f9469cfc6cn).stop();
    const version = new Pickle().int(1001).stop();
    const sys = new Pickle().raw(0x7d).str('little_endian').raw(0x88, 0x73).stop();
    const module = new Pickle().mark().str('module').str('Net').str('net.py').str('source').tuple().raw(0x51).stop();
    expectError(head([magic, version, sys, module]), TypeError, /the file holds a pickled nn\.Module \(torch\.save\(model\)\)/);
    const bigEndian = new Pickle().raw(0x7d).str('little_endian').raw(0x89, 0x73).stop();
    expectError(head([magic, version, bigEndian]), TypeError, /big-endian machines are not supported/);
  });
});
