/**
 * Stored floating-point elements to float32, shared by the weight-file
 * readers (safetensors, torch.save) so every format widens F16 and BF16 and
 * rounds F64 the same way.
 */

/** The stored float encodings attnode reads (all become float32). */
export type StoredFloat = 'F32' | 'F16' | 'BF16' | 'F64';

/** Bytes per element of each stored float encoding. */
export const FLOAT_ITEM_SIZE: Readonly<Record<StoredFloat, number>> = { F32: 4, F16: 2, BF16: 2, F64: 8 };

/** Typed-array views reinterpret bytes in host order. */
export const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** An IEEE 754 binary16 bit pattern as a number (exact: every half is a float32). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

let table: Float32Array | null = null;

/** Every binary16 pattern as float32 (256 KiB, built on first use): one lookup per element. */
function halfTable(): Float32Array {
  if (!table) {
    table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = halfToFloat(h);
  }
  return table;
}

/** The 16-bit elements as a Uint16Array view when they are aligned and in host order, else null. */
function halves(bytes: Uint8Array, n: number, littleEndian: boolean): Uint16Array | null {
  return littleEndian === HOST_IS_LITTLE_ENDIAN && bytes.byteOffset % 2 === 0 ? new Uint16Array(bytes.buffer, bytes.byteOffset, n) : null;
}

/**
 * The `bytes.byteLength / itemSize` elements of `bytes` as float32: F16 and
 * BF16 widened exactly, F64 rounded to nearest. Aligned F32 in host order is
 * a view of `bytes` (no copy) when `mayView`; everything else is a fresh array.
 */
export function floatsFrom(bytes: Uint8Array, kind: StoredFloat, littleEndian: boolean, mayView: boolean): Float32Array {
  const n = Math.floor(bytes.byteLength / FLOAT_ITEM_SIZE[kind]);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (kind) {
    case 'F32': {
      const hostOrder = littleEndian === HOST_IS_LITTLE_ENDIAN;
      if (hostOrder && mayView && bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, n);
      const out = new Float32Array(n);
      // One byte copy into a fresh (aligned) buffer, or a swap per element.
      if (hostOrder) new Uint8Array(out.buffer).set(bytes.subarray(0, 4 * n));
      else for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, littleEndian);
      return out;
    }
    case 'F64': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, littleEndian);
      return out;
    }
    case 'F16': {
      const out = new Float32Array(n);
      const table = halfTable();
      const src = halves(bytes, n, littleEndian);
      if (src) for (let i = 0; i < n; i++) out[i] = table[src[i]!]!;
      else for (let i = 0; i < n; i++) out[i] = table[view.getUint16(2 * i, littleEndian)]!;
      return out;
    }
    case 'BF16': {
      // bfloat16 is the top half of a float32: widen the bits.
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      const src = halves(bytes, n, littleEndian);
      if (src) for (let i = 0; i < n; i++) bits[i] = src[i]! << 16;
      else for (let i = 0; i < n; i++) bits[i] = view.getUint16(2 * i, littleEndian) << 16;
      return out;
    }
  }
}
