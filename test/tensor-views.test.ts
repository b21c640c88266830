/**
 * Strided tensor views: hand-computed layouts, a property test comparing
 * random chains of view ops against a naive nested-array reference, and
 * contiguous() on both backends (bit-exact copies, async recording).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAsync } from '../lib/async';
import type { Backend, BackendName } from '../lib/backend/backend';
import { addon } from '../lib/backend/native';
import { getBackend, setBackend } from '../lib/backend/registry';
import * as ops from '../lib/ops';
import { Tensor, arange, tensor, zeros } from '../lib/tensor';

// ---------------------------------------------------------------------------
// Naive reference: a shape plus its values in row-major order. Every op is
// "output element at index idx is input element at index f(idx)", with no
// notion of strides or memory.

interface Ref {
  shape: number[];
  vals: number[];
}

const prod = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

function unravel(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d]!;
    i = Math.floor(i / shape[d]!);
  }
  return idx;
}

function ravel(idx: readonly number[], shape: readonly number[]): number {
  let off = 0;
  for (let d = 0; d < shape.length; d++) off = off * shape[d]! + idx[d]!;
  return off;
}

function mapRef(src: Ref, shape: number[], f: (idx: number[]) => number[]): Ref {
  const vals: number[] = [];
  for (let i = 0; i < prod(shape); i++) vals.push(src.vals[ravel(f(unravel(i, shape)), src.shape)]!);
  return { shape, vals };
}

function nest(r: Ref): unknown {
  const build = (d: number, off: number): unknown => {
    if (d === r.shape.length) return r.vals[off];
    const inner = prod(r.shape.slice(d + 1));
    return Array.from({ length: r.shape[d]! }, (_, i) => build(d + 1, off + i * inner));
  };
  return build(0, 0);
}

const refOps = {
  transpose(x: Ref, d0: number, d1: number): Ref {
    const shape = x.shape.slice();
    [shape[d0], shape[d1]] = [shape[d1]!, shape[d0]!];
    return mapRef(x, shape, (idx) => {
      const j = idx.slice();
      [j[d0], j[d1]] = [j[d1]!, j[d0]!];
      return j;
    });
  },
  permute(x: Ref, p: number[]): Ref {
    return mapRef(x, p.map((d) => x.shape[d]!), (idx) => {
      const j = new Array<number>(p.length);
      p.forEach((d, i) => (j[d] = idx[i]!));
      return j;
    });
  },
  narrow(x: Ref, dim: number, start: number, len: number): Ref {
    const shape = x.shape.slice();
    shape[dim] = len;
    return mapRef(x, shape, (idx) => idx.map((v, d) => (d === dim ? v + start : v)));
  },
  slice(x: Ref, dim: number, start: number | undefined, end: number | undefined, step: number): Ref {
    // JS Array.prototype.slice has Python's start:end semantics (negatives, clamping); then take every step-th.
    const picks = Array.from({ length: x.shape[dim]! }, (_, i) => i).slice(start, end).filter((_, i) => i % step === 0);
    const shape = x.shape.slice();
    shape[dim] = picks.length;
    return mapRef(x, shape, (idx) => idx.map((v, d) => (d === dim ? picks[v]! : v)));
  },
  select(x: Ref, dim: number, index: number): Ref {
    const shape = x.shape.filter((_, d) => d !== dim);
    return mapRef(x, shape, (idx) => [...idx.slice(0, dim), index, ...idx.slice(dim)]);
  },
  unsqueeze(x: Ref, dim: number): Ref {
    const shape = [...x.shape.slice(0, dim), 1, ...x.shape.slice(dim)];
    return mapRef(x, shape, (idx) => idx.filter((_, d) => d !== dim));
  },
  expand(x: Ref, sizes: number[]): Ref {
    const lead = sizes.length - x.shape.length;
    const shape = sizes.map((s, i) => (s === -1 ? x.shape[i - lead]! : s));
    return mapRef(x, shape, (idx) => idx.slice(lead).map((v, d) => (x.shape[d] === 1 ? 0 : v)));
  },
  reshape(x: Ref, shape: number[]): Ref {
    return { shape, vals: x.vals.slice() };
  },
};

/** Offsets into `t.data` of every element in row-major order, from shape and strides alone. */
function offsets(t: Tensor): number[] {
  return Array.from({ length: t.size }, (_, i) => unravel(i, t.shape).reduce((o, v, d) => o + v * t.strides[d]!, 0));
}

/**
 * Whether `t` can be viewed as `shape` without copying, by brute force: the
 * only candidate stride of a new dim is the offset of its unit index, and the
 * view exists when those strides reproduce every element's offset.
 */
function viewPossible(t: Tensor, shape: number[]): boolean {
  const n = prod(shape);
  if (n === 0) return true;
  const old = offsets(t);
  const strides = shape.map((s, k) => (s === 1 ? 0 : old[prod(shape.slice(k + 1))]! - old[0]!));
  if (strides.some((s) => s < 0)) return false;
  for (let i = 0; i < n; i++) {
    if (unravel(i, shape).reduce((o, v, d) => o + v * strides[d]!, 0) !== old[i]) return false;
  }
  return true;
}

function checkAgainstRef(t: Tensor, r: Ref): void {
  expect(t.shape).toEqual(r.shape);
  expect(t.size).toBe(r.vals.length);
  for (let i = 0; i < r.vals.length; i++) expect(t.get(...unravel(i, r.shape))).toBe(r.vals[i]);
  expect(t.toArray()).toEqual(nest(r));
  expect(Array.from(t.contiguous().data)).toEqual(r.vals);
  // Independent of the implementation's rule: contiguous means data holds exactly the elements in order.
  const off = offsets(t);
  const inOrder = t.size === 0 || (t.data.length === t.size && off.every((o, i) => o === i));
  expect(t.isContiguous()).toBe(inOrder);
  // data covers exactly the reached span.
  expect(t.data.length).toBe(t.size === 0 ? 0 : Math.max(...off) + 1);
}

const ALL_BACKENDS: BackendName[] = ['js', 'native'];
const backends = ALL_BACKENDS.filter((b) => b === 'js' || addon !== null);

describe.each(backends)('contiguous() and view chains on the %s backend', (name) => {
  beforeAll(() => setBackend(name));
  afterAll(() => setBackend(null));

  it('random chains of view ops match the nested-array reference', () => {
    const opArb = fc.record({
      kind: fc.constantFrom('transpose', 'permute', 'narrow', 'slice', 'select', 'unsqueeze', 'squeeze', 'expand', 'view', 'reshape'),
      a: fc.nat(1000),
      b: fc.nat(1000),
      c: fc.nat(1000),
      neg: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 0, maxLength: 4 }), fc.array(opArb, { maxLength: 7 }), (baseShape, chain) => {
        const base = new Tensor(Float32Array.from({ length: prod(baseShape) }, (_, i) => i), baseShape, 'float32');
        let t: Tensor = base;
        let r: Ref = { shape: baseShape.slice(), vals: Array.from(base.data) };
        let copied = false;
        checkAgainstRef(t, r);
        for (const op of chain) {
          const nd = t.ndim;
          // Negative dims address the same dim from the end.
          const dimOf = (v: number, n = nd): [number, number] => {
            const d = v % n;
            return [d, op.neg ? d - n : d];
          };
          switch (op.kind) {
            case 'transpose': {
              if (nd === 0) continue;
              const [d0, a0] = dimOf(op.a);
              const [d1, a1] = dimOf(op.b);
              t = t.transpose(a0, a1);
              r = refOps.transpose(r, d0, d1);
              break;
            }
            case 'permute': {
              const p = Array.from({ length: nd }, (_, i) => i);
              for (let i = nd - 1; i > 0; i--) {
                const j = (op.a * (i + 7) + op.b) % (i + 1);
                [p[i], p[j]] = [p[j]!, p[i]!];
              }
              t = t.permute(op.neg ? p.map((d) => d - nd) : p);
              r = refOps.permute(r, p);
              break;
            }
            case 'narrow': {
              if (nd === 0) continue;
              const [d, ad] = dimOf(op.a);
              const n = r.shape[d]!;
              const start = op.b % (n + 1);
              const len = op.c % (n - start + 1);
              t = t.narrow(ad, op.neg && start < n ? start - n : start, len);
              r = refOps.narrow(r, d, start, len);
              break;
            }
            case 'slice': {
              if (nd === 0) continue;
              const [d, ad] = dimOf(op.a);
              const n = r.shape[d]!;
              // Bounds from -n-2 to n+2 exercise negatives and clamping; 0 stands for "omitted".
              const bound = (v: number): number | undefined => (v % 9 === 0 ? undefined : (v % (2 * n + 5)) - n - 2);
              const start = bound(op.b);
              const end = bound(op.c);
              const step = 1 + ((op.a >> 3) % 3);
              t = t.slice(ad, start, end, step);
              r = refOps.slice(r, d, start, end, step);
              break;
            }
            case 'select': {
              if (nd === 0) continue;
              const [d, ad] = dimOf(op.a);
              const n = r.shape[d]!;
              if (n === 0) continue;
              const i = op.b % n;
              t = t.select(ad, op.neg ? i - n : i);
              r = refOps.select(r, d, i);
              break;
            }
            case 'unsqueeze': {
              const [d, ad] = dimOf(op.a, nd + 1);
              t = t.unsqueeze(ad);
              r = refOps.unsqueeze(r, d);
              break;
            }
            case 'squeeze': {
              if (nd > 0 && op.neg) {
                const [d, ad] = dimOf(op.a);
                t = t.squeeze(ad);
                r = r.shape[d] === 1 ? refOps.reshape(r, r.shape.filter((_, k) => k !== d)) : r;
              } else {
                t = t.squeeze();
                r = refOps.reshape(r, r.shape.filter((n) => n !== 1));
              }
              break;
            }
            case 'expand': {
              const lead = op.c % 2;
              const sizes = [
                ...Array.from({ length: lead }, () => op.b % 3),
                ...t.shape.map((n, i) => (n === 1 ? (op.a + i) % 4 : op.neg ? -1 : n)),
              ];
              if (prod(sizes.map((s, i) => (s === -1 ? t.shape[i - lead]! : s))) > 400) continue;
              t = t.expand(sizes);
              r = refOps.expand(r, sizes);
              break;
            }
            case 'view':
            case 'reshape': {
              // A new shape of the same size: merge two adjacent dims, split one, or flatten.
              let shape = t.shape.slice();
              const mode = op.b % 3;
              if (mode === 0 && nd >= 2) {
                const d = op.a % (nd - 1);
                shape.splice(d, 2, shape[d]! * shape[d + 1]!);
              } else if (mode === 1 && nd >= 1) {
                const d = op.a % nd;
                const n = shape[d]!;
                const f = [2, 3].find((k) => n % k === 0 && n > k);
                if (f === undefined) shape.splice(d, 0, 1);
                else shape.splice(d, 1, f, n / f);
              } else if (t.size > 0) {
                shape = [t.size];
              }
              const possible = viewPossible(t, shape);
              const arg = op.neg && t.size > 0 ? shape.map((n, i) => (i === 0 ? -1 : n)) : shape;
              if (op.kind === 'view') {
                if (!possible) {
                  expect(() => t.view(arg)).toThrow(RangeError);
                  continue;
                }
                const v = t.view(arg);
                expect(v.data.buffer).toBe(t.data.buffer);
                t = v;
              } else {
                const v = t.reshape(arg);
                // A view exactly when one is possible; otherwise a copy into new memory.
                if (t.size > 0) expect(v.data.buffer === t.data.buffer).toBe(possible);
                if (!possible) copied = true;
                t = v;
              }
              r = refOps.reshape(r, shape);
              break;
            }
          }
          checkAgainstRef(t, r);
          if (!copied && t.size > 0) expect(t.data.buffer).toBe(base.data.buffer);
        }
        if (t.size > 0) {
          // The reference value of an element is its index in base: a write through the chain lands there,
          // unless a reshape copied along the way.
          const idx = unravel(chain.length % t.size, t.shape);
          const target = t.get(...idx) as number;
          t.set(idx, -7);
          expect(base.data[target]).toBe(copied ? target : -7);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('contiguous() copies -0, infinities and NaN payloads bit for bit', () => {
    const bits = new Uint32Array([0x80000000, 0x7fc00123, 0xffc00001, 0x7f800000, 0xff800000, 0x3f800000, 0x00000001, 0x80000001]);
    const x = new Tensor(new Float32Array(bits.buffer), [2, 4], 'float32');
    const y = x.transpose(0, 1).contiguous();
    expect(y.isContiguous()).toBe(true);
    expect(y.data.buffer).not.toBe(x.data.buffer);
    const got = new Uint32Array(y.data.buffer, y.data.byteOffset, 8);
    const want = [0, 4, 1, 5, 2, 6, 3, 7].map((i) => bits[i]!);
    expect(Array.from(got)).toEqual(want);
    expect(Object.is(y.get(0, 0), -0)).toBe(true);
  });

  it('contiguous() goes through the backend, in blocks beyond 8 unmergeable dims', () => {
    let calls = 0;
    const real = getBackend(name);
    // The selected backend with its binary wrapped: calls are counted but still computed by it.
    const counting = {
      ...real,
      binary: (...args: unknown[]) => {
        calls++;
        return (real.binary as unknown as (...a: unknown[]) => void)(...args);
      },
    } as unknown as Backend;
    setBackend(counting);
    try {
      const x = arange(2 ** 10).reshape(new Array<number>(10).fill(2));
      const rev = x.permute([9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
      const c = rev.contiguous();
      // Reversing 10 dims leaves 10 unmergeable dims: 2·2 = 4 blocks of 8 dims.
      expect(calls).toBe(4);
      const want = Array.from({ length: 1024 }, (_, i) => ravel(unravel(i, rev.shape).reverse(), x.shape));
      expect(Array.from(c.data)).toEqual(want);
      calls = 0;
      x.transpose(0, 1).contiguous();
      expect(calls).toBe(1);
      calls = 0;
      expect(x.contiguous()).toBe(x);
      expect(calls).toBe(0);
    } finally {
      setBackend(name);
    }
  });

  it('int32 and bool views copy in JS', () => {
    const i = tensor([[1, 2, 3], [4, 5, 6]], null, 'int32').t();
    expect(Array.from(i.contiguous().data)).toEqual([1, 4, 2, 5, 3, 6]);
    expect(i.contiguous().data).toBeInstanceOf(Int32Array);
    const b = tensor([[true, false], [false, false]]).transpose(0, 1);
    expect(b.contiguous().toArray()).toEqual([[true, false], [false, false]]);
    expect(Array.from(b.contiguous().data)).toEqual([1, 0, 0, 0]);
  });
});

describe.runIf(addon !== null)('contiguous() inside runAsync (native)', () => {
  it('a float32 copy is recorded after the kernel that writes its input', async () => {
    const x = arange(12).reshape(3, 4);
    const got = await runAsync(() => ops.add(x, x, { backend: 'native' }).transpose(0, 1).contiguous());
    expect(got.toArray()).toEqual([[0, 8, 16], [2, 10, 18], [4, 12, 20], [6, 14, 22]]);
  });

  it('an int32/bool copy (JS) is refused while recording', async () => {
    const i = zeros([2, 3], 'int32').transpose(0, 1);
    await expect(runAsync(() => i.contiguous())).rejects.toThrow(/runAsync/);
    // Contiguous tensors need no copy, so they are fine.
    const c = zeros([2, 3], 'int32');
    await expect(runAsync(() => c.contiguous())).resolves.toBe(c);
  });
});

describe('views: hand-computed layouts', () => {
  it('transpose swaps shape and strides and shares memory', () => {
    const x = arange(6).reshape(2, 3);
    expect(x.strides).toEqual([3, 1]);
    expect(Object.isFrozen(x.strides)).toBe(true);
    expect(x.strides).toBe(x.strides);
    const y = x.transpose(0, 1);
    expect(y.shape).toEqual([3, 2]);
    expect(y.strides).toEqual([1, 3]);
    expect(y.isContiguous()).toBe(false);
    expect(y.data).toBe(x.data);
    expect(y.toArray()).toEqual([[0, 3], [1, 4], [2, 5]]);
    expect(Array.from(y.contiguous().data)).toEqual([0, 3, 1, 4, 2, 5]);
    expect(y.transpose(-1, -2).isContiguous()).toBe(true);
    expect(x.t().toArray()).toEqual(y.toArray());
    y.set([2, 0], 100);
    expect(x.get(0, 2)).toBe(100);
    expect(Array.from(x.data)).toEqual([0, 1, 100, 3, 4, 5]);
  });

  it('permute reorders dims', () => {
    const x = arange(24).reshape(2, 3, 4);
    const p = x.permute(2, 0, 1);
    expect(p.shape).toEqual([4, 2, 3]);
    expect(p.strides).toEqual([1, 12, 4]);
    expect(p.get(3, 1, 2)).toBe(12 + 8 + 3);
    expect(x.permute([-1, -3, -2]).strides).toEqual([1, 12, 4]);
  });

  it('narrow offsets the data and keeps the strides', () => {
    const x = arange(12).reshape(3, 4);
    const n = x.narrow(1, 1, 2);
    expect(n.toArray()).toEqual([[1, 2], [5, 6], [9, 10]]);
    expect(n.strides).toEqual([4, 1]);
    expect(n.storageOffset).toBe(1);
    expect(n.data.length).toBe(1 + 2 * 4 + 1);
    expect(n.data.buffer).toBe(x.data.buffer);
    expect(x.narrow(0, -1, 1).toArray()).toEqual([[8, 9, 10, 11]]);
    expect(x.narrow(0, 1, 2).isContiguous()).toBe(true);
    n.set([2, 1], -1);
    expect(x.get(2, 2)).toBe(-1);
  });

  it('slice follows Python semantics', () => {
    const x = arange(10);
    expect(x.slice(0, 1, -1, 3).toArray()).toEqual([1, 4, 7]);
    expect(x.slice(0, -3).toArray()).toEqual([7, 8, 9]);
    expect(x.slice(0, null, 4).toArray()).toEqual([0, 1, 2, 3]);
    expect(x.slice(0, -100, 100).toArray()).toEqual(Array.from(x.data));
    expect(x.slice(0, 5, 2).shape).toEqual([0]);
    expect(x.slice(0, 20, 30).shape).toEqual([0]);
    expect(x.slice(0, undefined, undefined, 4).toArray()).toEqual([0, 4, 8]);
    const s = arange(12).reshape(3, 4).slice(1, 1, undefined, 2);
    expect(s.toArray()).toEqual([[1, 3], [5, 7], [9, 11]]);
    expect(s.strides).toEqual([4, 2]);
  });

  it('select removes the dim; item reads the selected scalar', () => {
    const x = arange(6).reshape(2, 3);
    const c = x.select(1, -1);
    expect(c.toArray()).toEqual([2, 5]);
    expect(c.strides).toEqual([3]);
    expect(x.select(0, 1).select(0, 2).item()).toBe(5);
    expect(x.select(0, 1).select(0, 2).shape).toEqual([]);
  });

  it('unsqueeze and squeeze insert and drop size-1 dims', () => {
    const y = arange(6).reshape(2, 3).transpose(0, 1);
    expect(y.unsqueeze(1).shape).toEqual([3, 1, 2]);
    expect(y.unsqueeze(1).strides).toEqual([1, 6, 3]);
    expect(y.unsqueeze(-1).strides).toEqual([1, 3, 1]);
    expect(y.unsqueeze(0).strides).toEqual([3, 1, 3]);
    const z = zeros([1, 3, 1]);
    expect(z.squeeze().shape).toEqual([3]);
    expect(z.squeeze(-1).shape).toEqual([1, 3]);
    expect(z.squeeze(1).shape).toEqual([1, 3, 1]);
    expect(z.squeeze([0, 2]).shape).toEqual([3]);
  });

  it('expand repeats size-1 dims with stride 0', () => {
    const x = tensor([[1], [2]]);
    const e = x.expand(2, 3);
    expect(e.toArray()).toEqual([[1, 1, 1], [2, 2, 2]]);
    expect(e.strides).toEqual([1, 0]);
    expect(e.data.length).toBe(2);
    const e2 = x.expand([4, -1, 3]);
    expect(e2.shape).toEqual([4, 2, 3]);
    expect(e2.strides).toEqual([0, 1, 0]);
    expect(Array.from(e2.contiguous().data)).toEqual(Array.from({ length: 24 }, (_, i) => (Math.floor(i / 3) % 2) + 1));
    e.set([1, 2], 9);
    expect(x.toArray()).toEqual([[1], [9]]);
    expect(e.toArray()).toEqual([[1, 1, 1], [9, 9, 9]]);
    expect(x.expand(2, 0).shape).toEqual([2, 0]);
  });

  it('view refuses incompatible strides; reshape copies only then', () => {
    const x = arange(6).reshape(2, 3);
    const y = x.transpose(0, 1);
    expect(() => y.view(6)).toThrow(RangeError);
    expect(() => y.view(6)).toThrow(/view size is not compatible with input tensor's size and stride.*\.reshape\(\.\.\.\)/);
    const r = y.reshape(6);
    expect(r.data.buffer).not.toBe(x.data.buffer);
    expect(Array.from(r.data)).toEqual([0, 3, 1, 4, 2, 5]);
    // Splitting a dim or adding size-1 dims is always a view.
    const z = arange(24).reshape(2, 3, 4).transpose(0, 1);
    const v = z.view(3, 2, 2, 2);
    expect(v.strides).toEqual([4, 12, 2, 1]);
    expect(v.data).toBe(z.data);
    expect(z.view(3, 1, 2, 4, 1).get(2, 0, 1, 3, 0)).toBe(12 + 8 + 3);
    // Dims 0 and 1 of a narrowed tensor are still contiguous with each other: merging them is a view.
    const n = arange(24).reshape(2, 3, 4).narrow(2, 0, 2);
    const m = n.reshape(6, 2);
    expect(m.strides).toEqual([4, 1]);
    expect(m.data.buffer).toBe(n.data.buffer);
    expect(m.toArray()).toEqual([[0, 1], [4, 5], [8, 9], [12, 13], [16, 17], [20, 21]]);
    expect(() => n.view(2, 6)).toThrow(RangeError);
    expect(n.reshape(2, 6).data.buffer).not.toBe(n.data.buffer);
    expect(n.reshape(-1, 6).shape).toEqual([2, 6]);
    // A size-1 dim does not split a chunk, whatever its stride: dims 0-2 merge across it.
    const w = new Tensor(arange(12).data, [2, 1, 2, 3], 'float32', [2, 50, 1, 4]);
    const wv = w.view(4, 3);
    expect(wv.strides).toEqual([1, 4]);
    expect(wv.toArray()).toEqual([[0, 4, 8], [1, 5, 9], [2, 6, 10], [3, 7, 11]]);
    // A contiguous reshape still shares the typed array itself.
    expect(x.reshape(3, 2).data).toBe(x.data);
  });

  it('empty tensors are contiguous and their views stay empty', () => {
    const e = zeros([0, 3]);
    const t = e.transpose(0, 1);
    expect(t.shape).toEqual([3, 0]);
    expect(t.isContiguous()).toBe(true);
    expect(t.contiguous()).toBe(t);
    expect(t.toArray()).toEqual([[], [], []]);
    expect(t.view(0).shape).toEqual([0]);
    const x = arange(6).reshape(2, 3);
    const n = x.narrow(1, 3, 0);
    expect(n.shape).toEqual([2, 0]);
    expect(n.data.length).toBe(0);
    expect(n.toArray()).toEqual([[], []]);
    expect(x.slice(0, 2).reshape(0, 3).shape).toEqual([0, 3]);
    expect(x.slice(1, 0, 0).expand(4, 2, 0).size).toBe(0);
  });

  it('0-D tensors', () => {
    const s = tensor(5);
    expect(s.strides).toEqual([]);
    expect(s.isContiguous()).toBe(true);
    expect(s.unsqueeze(0).shape).toEqual([1]);
    expect(s.unsqueeze(-1).strides).toEqual([1]);
    expect(s.view(1, 1).toArray()).toEqual([[5]]);
    const e = s.expand(3);
    expect(e.strides).toEqual([0]);
    expect(e.toArray()).toEqual([5, 5, 5]);
    expect(Array.from(e.contiguous().data)).toEqual([5, 5, 5]);
    expect(s.transpose(0, -1).item()).toBe(5);
    expect(s.permute().item()).toBe(5);
    expect(s.squeeze().shape).toEqual([]);
    expect(s.squeeze(0).shape).toEqual([]);
    expect(s.t().item()).toBe(5);
    expect(() => s.select(0, 0)).toThrow(RangeError);
    expect(() => s.narrow(0, 0, 1)).toThrow(RangeError);
    expect(() => s.slice(0)).toThrow(RangeError);
  });

  it('element access, clone, astype and toString read through strides', () => {
    const x = arange(6).reshape(2, 3);
    const y = x.transpose(0, 1);
    expect(y.get(-1, -1)).toBe(5);
    expect(y.get(2, 0)).toBe(2);
    const c = y.clone();
    expect(c.isContiguous()).toBe(true);
    expect(c.toArray()).toEqual(y.toArray());
    c.set([0, 0], 42);
    expect(x.get(0, 0)).toBe(0);
    const i = y.astype('int32');
    expect(i.data).toBeInstanceOf(Int32Array);
    expect(Array.from(i.data)).toEqual([0, 3, 1, 4, 2, 5]);
    expect(y.astype('bool').toArray()).toEqual([[false, true], [true, true], [true, true]]);
    expect(y.toString()).toBe('Tensor(float32, [3, 2]) [[0, 3], [1, 4], [2, 5]]');
    const big = arange(50 * 30).reshape(50, 30).transpose(0, 1);
    expect(big.toString()).toBe('Tensor(float32, [30, 50]) data=[0, 30, 60, ..., 1439, 1469, 1499]');
    expect(x.narrow(1, 1, 1).select(1, 0).toArray()).toEqual([1, 4]);
  });
});

describe('constructor with strides', () => {
  it('wraps a strided layout and trims data to its span', () => {
    const buf = new Float32Array(10).map((_, i) => i);
    const t = new Tensor(buf, [2, 3], 'float32', [4, 1]);
    expect(t.toArray()).toEqual([[0, 1, 2], [4, 5, 6]]);
    expect(t.data.length).toBe(7);
    expect(t.data.buffer).toBe(buf.buffer);
    expect(t.isContiguous()).toBe(false);
    // Size-1 dims do not constrain the stride (PyTorch's contiguity rule).
    const c = new Tensor(buf, [1, 3], 'float32', [100, 1]);
    expect(c.isContiguous()).toBe(true);
    expect(c.strides).toEqual([100, 1]);
    expect(c.data.length).toBe(3);
    expect(c.view(3).strides).toEqual([1]);
    expect(new Tensor(new Float32Array(0), [0, 5], 'float32', [7, 3]).size).toBe(0);
    expect(new Tensor(new Float32Array([3]), [4], 'float32', [0]).toArray()).toEqual([3, 3, 3, 3]);
  });

  it('rejects bad strides and short data with errors naming the argument', () => {
    const buf = new Float32Array(6);
    expect(() => new Tensor(buf, [2, 3], 'float32', [3] as number[])).toThrow(RangeError);
    expect(() => new Tensor(buf, [2, 3], 'float32', [3] as number[])).toThrow(/argument 'strides' must have 2 entries/);
    expect(() => new Tensor(buf, [2, 3], 'float32', [3, -1])).toThrow(/argument 'strides'.*entry 1 is -1/);
    expect(() => new Tensor(buf, [2, 3], 'float32', [3, 0.5])).toThrow(RangeError);
    expect(() => new Tensor(buf, [2, 3], 'float32', [3, '1'] as unknown as number[])).toThrow(TypeError);
    expect(() => new Tensor(buf, [2, 3], 'float32', 3 as unknown as number[])).toThrow(/argument 'strides' must be an array/);
    expect(() => new Tensor(buf, [2, 3], 'float32', [4, 1])).toThrow(RangeError);
    expect(() => new Tensor(buf, [2, 3], 'float32', [4, 1])).toThrow(/argument 'data' must have at least 7 elements.*got 6 elements/);
  });
});

describe('view ops: bad arguments', () => {
  const x = arange(24).reshape(2, 3, 4);
  const cases: [string, () => unknown, typeof RangeError | typeof TypeError, RegExp][] = [
    ['transpose dim out of range', () => x.transpose(0, 3), RangeError, /transpose: argument 'dim1' must be a dim in \[-3, 2\]/],
    ['transpose dim not a number', () => x.transpose('0' as unknown as number, 1), TypeError, /argument 'dim0'/],
    ['permute wrong length', () => x.permute(0, 1), RangeError, /permute: argument 'dims' must have 3 entries/],
    ['permute repeats', () => x.permute(0, 1, -2), RangeError, /argument 'dims' must be a permutation .*dim 1 repeats/],
    ['permute dim out of range', () => x.permute(0, 1, 3), RangeError, /argument 'dims\[2\]'/],
    ['narrow start', () => x.narrow(1, 4, 0), RangeError, /narrow: argument 'start' must be an integer in \[-3, 3\], got 4/],
    ['narrow length', () => x.narrow(1, 1, 3), RangeError, /narrow: argument 'length' must be an integer in \[0, 2\], got 3/],
    ['narrow fractional', () => x.narrow(1, 0.5, 1), RangeError, /argument 'start' must be an integer/],
    ['slice step 0', () => x.slice(0, 0, 2, 0), RangeError, /slice: argument 'step' must be >= 1, got 0/],
    ['slice start type', () => x.slice(0, 'a' as unknown as number), TypeError, /slice: argument 'start'/],
    ['slice dim', () => x.slice(-4), RangeError, /slice: argument 'dim'/],
    ['select index', () => x.select(1, 3), RangeError, /select: argument 'index' must be in \[-3, 2\] for dim 1 of size 3, got 3/],
    ['unsqueeze dim', () => x.unsqueeze(4), RangeError, /unsqueeze: argument 'dim' must be an integer in \[-4, 3\], got 4/],
    ['squeeze dim', () => x.squeeze(3), RangeError, /squeeze: argument 'dim'/],
    ['expand non-singleton', () => x.expand(2, 5, 4), RangeError, /expand: argument 'sizes\[1\]' must be 3 or -1/],
    ['expand too few sizes', () => x.expand(3, 4), RangeError, /argument 'sizes' must have at least 3 entries/],
    ['expand -1 in a new dim', () => x.expand(-1, 2, 3, 4), RangeError, /argument 'sizes\[0\]'/],
    ['expand size type', () => x.expand(2, 'x' as unknown as number, 4), TypeError, /argument 'sizes\[1\]'/],
    ['view wrong size', () => x.view(5, 5), RangeError, /view: argument 'shape' must have 24 elements/],
    ['view two -1', () => x.view(-1, -1), RangeError, /argument 'shape' must contain at most one -1/],
    ['view shape type', () => x.view(['a'] as unknown as number[]), TypeError, /view: argument 'shape'/],
    ['t on 3-D', () => x.t(), RangeError, /t: argument 'this' must have at most 2 dims/],
  ];
  it.each(cases)('%s', (_, f, type, msg) => {
    expect(f).toThrow(type);
    expect(f).toThrow(msg);
  });
});
