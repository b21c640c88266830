/**
 * Writers of crafted torch.save files for the reader's tests: a pickle assembler (the opcodes torch emits, and any
 * other byte), a stored zip writer (optionally ZIP64 throughout, with saturated 32-bit fields), and a torch-shaped
 * archive of a state dict built from tensor specs that may be anything a hostile file could say.
 */
import { crc32 } from '../../lib/io/torch/zip';

/** Assembles a pickle byte by byte. */
export class Pickle {
  readonly bytes: number[] = [];

  constructor(protocol: number | null = 2) {
    if (protocol !== null) this.bytes.push(0x80, protocol);
  }

  raw(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }

  private u32(n: number): number[] {
    return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
  }

  str(s: string): this {
    const b = new TextEncoder().encode(s);
    return this.raw(0x58, ...this.u32(b.length), ...b);
  }

  /** An int as torch's pickler writes it: BININT1/BININT2/BININT, LONG1 beyond 32 bits. */
  int(n: number | bigint): this {
    const v = BigInt(n);
    if (v >= 0n && v < 256n) return this.raw(0x4b, Number(v));
    if (v >= 0n && v < 65536n) return this.raw(0x4d, Number(v) & 0xff, Number(v) >> 8);
    if (v >= -(2n ** 31n) && v < 2n ** 31n) return this.raw(0x4a, ...this.u32(Number(BigInt.asUintN(32, v))));
    const out: number[] = [];
    let x = v;
    for (;;) {
      out.push(Number(x & 0xffn));
      x >>= 8n;
      if ((x === 0n && !(out[out.length - 1]! & 0x80)) || (x === -1n && out[out.length - 1]! & 0x80)) break;
    }
    return this.raw(0x8a, out.length, ...out);
  }

  float(x: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, x, false);
    return this.raw(0x47, ...b);
  }

  global(module: string, name: string): this {
    return this.raw(0x63, ...new TextEncoder().encode(`${module}\n${name}\n`));
  }

  mark(): this {
    return this.raw(0x28);
  }

  tuple(): this {
    return this.raw(0x74);
  }

  emptyTuple(): this {
    return this.raw(0x29);
  }

  reduce(): this {
    return this.raw(0x52);
  }

  stop(): Uint8Array {
    this.raw(0x2e);
    return Uint8Array.from(this.bytes);
  }

  /** A value of the tensor specs below: an int, a float, a string or a tuple of those. */
  value(v: SpecValue): this {
    if (Array.isArray(v)) {
      this.mark();
      for (const x of v) this.value(x);
      return this.tuple();
    }
    if (typeof v === 'string') return this.str(v);
    if (typeof v === 'number' && !Number.isInteger(v)) return this.float(v);
    return this.int(v);
  }
}

export type SpecValue = number | bigint | string | SpecValue[];

/** One tensor of a crafted state dict: what its rebuild call says, whatever that is. */
export interface TensorSpec {
  name: string;
  /** torch.<storageType>, e.g. 'FloatStorage' (or anything else). */
  storageType: string;
  key: string;
  /** The element count the persistent id declares. */
  numel: SpecValue;
  offset: SpecValue;
  size: SpecValue;
  stride: SpecValue;
}

/** The pickle torch.save writes for an OrderedDict of tensors (protocol 2, without memo opcodes). */
export function stateDictPickle(specs: TensorSpec[]): Uint8Array {
  const p = new Pickle();
  p.global('collections', 'OrderedDict').emptyTuple().reduce().mark();
  for (const s of specs) {
    p.str(s.name);
    p.global('torch._utils', '_rebuild_tensor_v2').mark();
    p.mark().str('storage').global('torch', s.storageType).str(s.key).str('cpu').value(s.numel).tuple().raw(0x51);
    p.value(s.offset).value(s.size).value(s.stride).raw(0x89);
    p.global('collections', 'OrderedDict').emptyTuple().reduce();
    p.tuple().reduce();
  }
  p.raw(0x75);
  return p.stop();
}

export interface ZipFileEntry {
  name: string;
  data: Uint8Array;
  /** Compression method written in the headers (the data is stored as given whatever it says). */
  method?: number;
  /** A CRC-32 to write instead of the true one. */
  crc?: number;
}

/**
 * A zip archive of stored entries. `zip64`: 'none'; 'records' (ZIP64 end record and locator, 32-bit fields filled
 * where they fit, as Python's zipfile does); 'saturated' (every size and offset 0xFFFFFFFF in the 32-bit fields and
 * given in ZIP64 extra fields and records, as writers do past 4 GiB). `align` pads each entry's data start.
 */
export function zipArchive(entries: ZipFileEntry[], zip64: 'none' | 'records' | 'saturated' = 'none', align = 1): Uint8Array {
  const chunks: Uint8Array[] = [];
  let pos = 0;
  const push = (b: Uint8Array): void => {
    chunks.push(b);
    pos += b.length;
  };
  const central: Uint8Array[] = [];
  const enc = new TextEncoder();
  const sat = zip64 === 'saturated';
  for (const e of entries) {
    const name = enc.encode(e.name);
    const crc = e.crc ?? crc32(e.data);
    const local = pos;
    const pad = (align - ((local + 30 + name.length + 4) % align)) % align;
    const localExtra = new Uint8Array(pad > 0 ? 4 + pad : 0);
    if (pad > 0) new DataView(localExtra.buffer).setUint16(2, pad, true); // id 0 padding field
    const lh = new DataView(new ArrayBuffer(30));
    lh.setUint32(0, 0x04034b50, true);
    lh.setUint16(4, 45, true);
    lh.setUint16(8, e.method ?? 0, true);
    lh.setUint32(14, crc, true);
    lh.setUint32(18, e.data.length, true);
    lh.setUint32(22, e.data.length, true);
    lh.setUint16(26, name.length, true);
    lh.setUint16(28, localExtra.length, true);
    push(new Uint8Array(lh.buffer));
    push(name);
    push(localExtra);
    push(e.data);
    const extra = sat ? new DataView(new ArrayBuffer(28)) : null;
    if (extra) {
      extra.setUint16(0, 0x0001, true);
      extra.setUint16(2, 24, true);
      extra.setBigUint64(4, BigInt(e.data.length), true);
      extra.setBigUint64(12, BigInt(e.data.length), true);
      extra.setBigUint64(20, BigInt(local), true);
    }
    const ch = new DataView(new ArrayBuffer(46));
    ch.setUint32(0, 0x02014b50, true);
    ch.setUint16(4, 45, true);
    ch.setUint16(6, 45, true);
    ch.setUint16(10, e.method ?? 0, true);
    ch.setUint32(16, crc, true);
    ch.setUint32(20, sat ? 0xffffffff : e.data.length, true);
    ch.setUint32(24, sat ? 0xffffffff : e.data.length, true);
    ch.setUint16(28, name.length, true);
    ch.setUint16(30, extra ? extra.byteLength : 0, true);
    ch.setUint32(42, sat ? 0xffffffff : local, true);
    central.push(new Uint8Array(ch.buffer), name, extra ? new Uint8Array(extra.buffer) : new Uint8Array(0));
  }
  const cdOffset = pos;
  for (const c of central) push(c);
  const cdSize = pos - cdOffset;
  if (zip64 !== 'none') {
    const z = new DataView(new ArrayBuffer(56));
    const zOffset = pos;
    z.setUint32(0, 0x06064b50, true);
    z.setBigUint64(4, 44n, true);
    z.setUint16(12, 45, true);
    z.setUint16(14, 45, true);
    z.setBigUint64(24, BigInt(entries.length), true);
    z.setBigUint64(32, BigInt(entries.length), true);
    z.setBigUint64(40, BigInt(cdSize), true);
    z.setBigUint64(48, BigInt(cdOffset), true);
    push(new Uint8Array(z.buffer));
    const l = new DataView(new ArrayBuffer(20));
    l.setUint32(0, 0x07064b50, true);
    l.setBigUint64(8, BigInt(zOffset), true);
    l.setUint32(16, 1, true);
    push(new Uint8Array(l.buffer));
  }
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, sat ? 0xffff : entries.length, true);
  end.setUint16(10, sat ? 0xffff : entries.length, true);
  end.setUint32(12, sat ? 0xffffffff : cdSize, true);
  end.setUint32(16, sat ? 0xffffffff : cdOffset, true);
  push(new Uint8Array(end.buffer));
  const out = new Uint8Array(pos);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** A torch.save archive (`archive/data.pkl`, `archive/data/<key>`, `archive/version`) around a pickle and storages. */
export function torchArchive(
  pickle: Uint8Array,
  storages: Record<string, Uint8Array>,
  opts: { zip64?: 'none' | 'records' | 'saturated'; byteorder?: string } = {},
): Uint8Array {
  const entries: ZipFileEntry[] = [{ name: 'archive/data.pkl', data: pickle }];
  if (opts.byteorder !== undefined) entries.push({ name: 'archive/byteorder', data: new TextEncoder().encode(opts.byteorder) });
  for (const [key, data] of Object.entries(storages)) entries.push({ name: `archive/data/${key}`, data });
  entries.push({ name: 'archive/version', data: new TextEncoder().encode('3\n') });
  return zipArchive(entries, opts.zip64 ?? 'none', 64);
}

/** The entries of a stored zip as this writer (or torch) wrote it, by name (for re-zipping a mutated record). */
export function zipEntries(bytes: Uint8Array): ZipFileEntry[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let eocd = bytes.length - 22;
  while (eocd >= 0 && dv.getUint32(eocd, true) !== 0x06054b50) eocd--;
  const count = dv.getUint16(eocd + 10, true);
  let p = dv.getUint32(eocd + 16, true);
  const out: ZipFileEntry[] = [];
  for (let i = 0; i < count; i++) {
    const size = dv.getUint32(p + 24, true);
    const nameLen = dv.getUint16(p + 28, true);
    const local = dv.getUint32(p + 42, true);
    const name = new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nameLen));
    const start = local + 30 + dv.getUint16(local + 26, true) + dv.getUint16(local + 28, true);
    out.push({ name, data: bytes.slice(start, start + size) });
    p += 46 + nameLen + dv.getUint16(p + 30, true) + dv.getUint16(p + 32, true);
  }
  return out;
}
