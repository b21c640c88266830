/**
 * The torch.save reader against files torch 1.13 wrote (scripts/gen_torch_save_fixtures.py): every tensor's values
 * as torch.load returns them (test/fixtures/torch_save/expected.safetensors), torch's strides for views, shared
 * storages as shared memory, nested checkpoints and the `key` option, the legacy format, pickle protocol 4, ZIP64,
 * big-endian archives, and the files the reader must refuse (deflated entries, an os.system pickle, TorchScript,
 * int64 values outside int32), from a file and from bytes in memory.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSafetensors } from '../lib/io/safetensors';
import { loadTorchCheckpoint, parseTorchCheckpoint, type TorchCheckpoint } from '../lib/io/torch/checkpoint';
import * as root from '../lib/index';
import type { Tensor } from '../lib/tensor';
import { Pickle, torchArchive } from './helpers/torch-save';

const DIR = path.join(__dirname, 'fixtures', 'torch_save');
const file = (name: string): string => path.join(DIR, name);
const READABLE = ['dtypes.pt', 'views.pt', 'nested.pt', 'legacy.pt', 'protocol4.pt', 'zip64.pt', 'big_endian.pt'];

const expected = await loadSafetensors(file('expected.safetensors'));
const strides = JSON.parse(expected.metadata['strides']!) as Record<string, number[]>;
const shares = JSON.parse(expected.metadata['shares']!) as string[][];

/** Bit patterns, so NaN, -0 and denormals compare exactly. */
function bits(t: Tensor): number[] {
  const data = t.contiguous().data;
  if (data instanceof Float32Array) return Array.from(new Uint32Array(Float32Array.from(data).buffer));
  return Array.from(data);
}

/** Both ways in: a file read with positional reads, and the same bytes parsed in memory. */
const readers: [string, (name: string) => Promise<TorchCheckpoint>][] = [
  ['loadTorchCheckpoint', (name) => loadTorchCheckpoint(file(name))],
  ['parseTorchCheckpoint', async (name) => parseTorchCheckpoint(new Uint8Array(readFileSync(file(name))))],
];

describe.each(readers)('%s', (_, read) => {
  it.each(READABLE)('%s: every tensor torch.load returns, with its values, dtype, shape and strides', async (name) => {
    const { tensors, format } = await read(name);
    expect(format).toBe(name === 'legacy.pt' ? 'legacy' : 'zip');
    const want = Object.keys(expected.tensors).filter((k) => k.startsWith(`${name}/`));
    expect(want.length).toBeGreaterThan(4);
    expect(Object.keys(tensors).sort()).toEqual(want.map((k) => k.slice(name.length + 1)).sort());
    for (const k of want) {
      const got = tensors[k.slice(name.length + 1)]!;
      const ref = expected.tensors[k]!;
      expect(got.shape, k).toEqual(ref.shape);
      expect(got.dtype, k).toBe(ref.dtype);
      expect(bits(got), k).toEqual(bits(ref));
      // Float tensors keep torch's layout (views of their storage); integer ones are contiguous copies.
      if (got.dtype === 'float32') expect(got.strides, k).toEqual(strides[k]);
      else expect(got.isContiguous(), k).toBe(true);
    }
  });

  it.each(['views.pt', 'legacy.pt', 'zip64.pt', 'big_endian.pt'])('%s: float tensors of one storage share one buffer; the transpose and slices are views', async (name) => {
    const { tensors } = await read(name);
    const groups = shares.filter((g) => g[0]!.startsWith(`${name}/`));
    expect(groups.length).toBeGreaterThan(0);
    for (const group of groups) {
      const ts = group.map((k) => tensors[k.slice(name.length + 1)]!).filter((t) => t.dtype === 'float32');
      for (const t of ts) expect(t.data.buffer).toBe(ts[0]!.data.buffer);
    }
    expect(tensors['w_tied']!.data.byteOffset).toBe(tensors['w']!.data.byteOffset);
    expect(tensors['w_t']!.isContiguous()).toBe(false);
    expect(tensors['w_cols']!.isContiguous()).toBe(false);
    expect(tensors['expanded']!.strides).toEqual([0, 1]);
    // A storage offset: the row starts 2 rows into the storage.
    expect(tensors['w_row']!.data.byteOffset - tensors['w']!.data.byteOffset).toBe(2 * 6 * 4);
  });

  it('nested.pt: a training checkpoint flattens to dotted paths; `key` selects an entry, also a nested one', async () => {
    const all = await read('nested.pt');
    expect(Object.keys(all.tensors)).toEqual([
      'state_dict.enc.weight', 'state_dict.enc.bias', 'optimizer.state.0.exp_avg', 'model.ema.w', 'history.0', 'history.1',
    ]);
    const bytes = new Uint8Array(readFileSync(file('nested.pt')));
    const sd = parseTorchCheckpoint(bytes, { key: 'state_dict' });
    expect(Object.keys(sd.tensors)).toEqual(['enc.weight', 'enc.bias']);
    expect(bits(sd.tensors['enc.weight']!)).toEqual(bits(all.tensors['state_dict.enc.weight']!));
    const ema = await loadTorchCheckpoint(file('nested.pt'), { key: ['model', 'ema'] });
    expect(Object.keys(ema.tensors)).toEqual(['w']);
  });
});

describe('option errors', () => {
  const bytes = new Uint8Array(readFileSync(file('nested.pt')));
  it('a missing key lists the keys there are; a key into a non-dict says what it is', () => {
    expect(() => parseTorchCheckpoint(bytes, { key: 'model_state' })).toThrow(RangeError);
    expect(() => parseTorchCheckpoint(bytes, { key: 'model_state' })).toThrow(
      /option 'key': the saved object has no entry 'model_state' \(its keys: 'state_dict', 'epoch', 'hparams', 'optimizer', 'model', 'history'\)/,
    );
    expect(() => parseTorchCheckpoint(bytes, { key: ['epoch', 'x'] })).toThrow(/the saved object\['epoch'\] is a int, not a dict/);
  });

  it('bad option and argument types are TypeErrors naming them', async () => {
    expect(() => parseTorchCheckpoint(bytes, { key: 3 as unknown as string })).toThrow(/option 'key' must be a string or a non-empty array of strings, got 3/);
    expect(() => parseTorchCheckpoint(bytes, { key: [] })).toThrow(TypeError);
    expect(() => parseTorchCheckpoint('x' as unknown as Uint8Array)).toThrow(/argument 'bytes' must be a Uint8Array, got str/);
    await expect(loadTorchCheckpoint(5 as unknown as string)).rejects.toThrow(/argument 'path' must be a string/);
    await expect(loadTorchCheckpoint(path.join(DIR, 'missing.pt'))).rejects.toThrow(/ENOENT/);
  });
});

describe('files the reader refuses', () => {
  it('deflated entries: a TypeError naming the file, the entry and the method', async () => {
    const err = await loadTorchCheckpoint(file('deflated.pt')).catch((e: Error) => e);
    expect(err).toBeInstanceOf(TypeError);
    expect((err as Error).message).toMatch(/deflated\.pt: torch checkpoint: zip: entry 'views\/data\.pkl' is compressed \(deflate\)/);
  });

  it('an os.system pickle is refused by name, unexecuted', async () => {
    const err = await loadTorchCheckpoint(file('os_system.pt')).catch((e: Error) => e);
    expect(err).toBeInstanceOf(TypeError);
    expect((err as Error).message).toMatch(/os_system\.pt: torch checkpoint: os_system\/data\.pkl: global 'posix\.system' is refused: .*would run code/);
  });

  it('TorchScript archives say what they are', () => {
    expect(() => parseTorchCheckpoint(new Uint8Array(readFileSync(file('torchscript.pt'))))).toThrow(/a TorchScript archive \(torch\.jit\.save\)/);
  });

  it('an int64 value outside int32 is a RangeError naming the tensor and the value; `key` can skip it', () => {
    const bytes = new Uint8Array(readFileSync(file('int64_range.pt')));
    expect(() => parseTorchCheckpoint(bytes)).toThrow(/tensor 'big': int64 value 1099511627776 at index 1 does not fit in int32/);
  });

  it('other files: empty, safetensors, a tar archive, random bytes', () => {
    expect(() => parseTorchCheckpoint(new Uint8Array(0))).toThrow(/the file is empty/);
    const st = new Uint8Array(readFileSync(file('expected.safetensors')));
    expect(() => parseTorchCheckpoint(st)).toThrow(/looks like safetensors: use loadSafetensors/);
    const tar = new Uint8Array(1024);
    tar.set(new TextEncoder().encode('ustar'), 257);
    tar[0] = 0x80;
    expect(() => parseTorchCheckpoint(tar)).toThrow(/a tar archive: the torch\.save format of PyTorch < 0\.4 is not supported/);
    expect(() => parseTorchCheckpoint(new TextEncoder().encode('hello world'))).toThrow(/not a torch\.save file/);
  });

  it('the path is prepended with the same error class (the original is the cause)', async () => {
    const d = mkdtempSync(path.join(tmpdir(), 'attnode-torch-'));
    const p = path.join(d, 'truncated.bin');
    writeFileSync(p, readFileSync(file('views.pt')).subarray(0, 1000));
    const err = await loadTorchCheckpoint(p).catch((e: Error) => e);
    expect(err).toBeInstanceOf(RangeError);
    expect((err as Error).message.startsWith(`${p}: torch checkpoint: zip: no end-of-central-directory record`)).toBe(true);
    expect((err as Error).cause).toBeInstanceOf(RangeError);
  });
});

describe('memory', () => {
  it('aligned float32 storages are views of the input bytes; an unaligned input is copied once per storage', () => {
    const raw = readFileSync(file('views.pt'));
    const bytes = new Uint8Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    const { tensors } = parseTorchCheckpoint(bytes);
    expect(tensors['w']!.data.buffer).toBe(bytes.buffer);
    // Shifted by one byte, nothing is aligned: each storage becomes one fresh array, still shared by its tensors.
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    const moved = parseTorchCheckpoint(shifted.subarray(1)).tensors;
    expect(moved['w']!.data.buffer).not.toBe(shifted.buffer);
    expect(moved['w_t']!.data.buffer).toBe(moved['w']!.data.buffer);
    expect(bits(moved['w_cols']!)).toEqual(bits(tensors['w_cols']!));
  });

  it('with `key`, only the storages of the selected tensors are read (a corrupt other storage goes unnoticed)', () => {
    const bytes = new Uint8Array(readFileSync(file('nested.pt')));
    // Storage keys follow the pickling order: 2 is optimizer.state.0.exp_avg's. Flip a byte of its data.
    const name = new TextEncoder().encode('nested/data/2');
    let at = -1;
    for (let i = 30; i < bytes.length && at < 0; i++) {
      if (bytes[i - 30] === 0x50 && bytes[i - 29] === 0x4b && bytes[i - 28] === 3 && bytes[i - 27] === 4 && name.every((b, j) => bytes[i + j] === b)) at = i - 30;
    }
    expect(at).toBeGreaterThan(0);
    const dv = new DataView(bytes.buffer, bytes.byteOffset);
    bytes[at + 30 + dv.getUint16(at + 26, true) + dv.getUint16(at + 28, true)] ^= 0xff;
    expect(() => parseTorchCheckpoint(bytes)).toThrow(/zip: entry 'nested\/data\/2': CRC-32 0x[0-9a-f]{8} does not match the directory's/);
    expect(Object.keys(parseTorchCheckpoint(bytes, { key: 'state_dict' }).tensors)).toEqual(['enc.weight', 'enc.bias']);
  });
});

describe('rebuild calls of other torch versions', () => {
  const data = { 0: new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer) };
  /** `{'w': <rebuild call>}` where `call(p)` writes the rebuild of a [2, 2] float tensor over storage '0'. */
  const file = (call: (p: Pickle) => void): Uint8Array => {
    const p = new Pickle().raw(0x7d).str('w');
    call(p);
    return torchArchive(p.raw(0x73).stop(), data);
  };
  const storage = (p: Pickle): Pickle => p.mark().str('storage').global('torch', 'FloatStorage').str('0').str('cpu').int(4).tuple().raw(0x51);
  const hooks = (p: Pickle): Pickle => p.global('collections', 'OrderedDict').emptyTuple().reduce();
  const values = (bytes: Uint8Array): number[] => Array.from(parseTorchCheckpoint(bytes).tensors['w']!.contiguous().data);

  it('_rebuild_tensor_v2 with the metadata argument of torch 2.x; torch.Size for the size', () => {
    expect(values(file((p) => {
      p.global('torch._utils', '_rebuild_tensor_v2').mark();
      storage(p).int(0).global('torch', 'Size').mark().value([2, 2]).tuple().reduce().value([1, 2]).raw(0x89);
      hooks(p).raw(0x4e).tuple().reduce();
    }))).toEqual([1, 3, 2, 4]);
  });

  it('the old _rebuild_tensor, _rebuild_parameter(_with_state), and _rebuild_from_type_v2 (also under torch.tensor)', () => {
    const v1 = (p: Pickle): void => {
      p.global('torch._utils', '_rebuild_tensor').mark();
      storage(p).int(0).value([2, 2]).value([2, 1]).tuple().reduce();
    };
    expect(values(file(v1))).toEqual([1, 2, 3, 4]);
    expect(values(file((p) => {
      p.global('torch._utils', '_rebuild_parameter_with_state').mark();
      v1(p);
      p.raw(0x88);
      hooks(p).raw(0x7d).tuple().reduce();
    }))).toEqual([1, 2, 3, 4]);
    for (const mod of ['torch._tensor', 'torch.tensor']) {
      expect(values(file((p) => {
        p.global(mod, '_rebuild_from_type_v2').mark().global('torch._utils', '_rebuild_tensor').global('torch.nn.parameter', 'Parameter');
        p.mark();
        storage(p).int(0).value([2, 2]).value([2, 1]).tuple().raw(0x7d).tuple().reduce();
      }))).toEqual([1, 2, 3, 4]);
    }
    // A tensor subclass of the saving program is refused by name.
    expect(() => values(file((p) => {
      p.global('torch._tensor', '_rebuild_from_type_v2').mark().global('torch._utils', '_rebuild_tensor').global('mylib', 'MyTensor');
    }))).toThrow(/global 'mylib\.MyTensor' is refused/);
  });
});

it('is exported from the package root', () => {
  expect(root.loadTorchCheckpoint).toBe(loadTorchCheckpoint);
  expect(root.parseTorchCheckpoint).toBe(parseTorchCheckpoint);
});
