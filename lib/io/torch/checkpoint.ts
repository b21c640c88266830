/**
 * Reader of PyTorch's `torch.save` files (`pytorch_model.bin`, `model.pt`,
 * `*.pth`), without Python and without running any pickled code.
 *
 * Formats:
 * - zip (torch >= 1.6, the default): a stored zip archive `<archive>/data.pkl`
 *   (the pickled object), `<archive>/data/<key>` (one record per storage, raw
 *   elements), `<archive>/version`, and since torch 2.1 `<archive>/byteorder`
 *   (`little` when absent). ZIP64 archives (over 4 GiB) too; compressed
 *   entries are refused (torch never compresses).
 * - legacy (torch < 1.6, or `_use_new_zipfile_serialization=False`): four
 *   pickles (magic number, protocol version 1001, system info, the object),
 *   the pickled list of storage keys, then each storage as an int64 element
 *   count and its little-endian elements.
 * - The tar format of PyTorch < 0.4 and TorchScript archives (`torch.jit.save`)
 *   are refused with an error that says what they are.
 *
 * Safety: the pickle is run by a restricted machine (./pickle.ts) that
 * resolves only these globals and calls nothing else:
 * `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
 * `torch._utils._rebuild_tensor`, `torch._utils._rebuild_parameter`,
 * `torch._utils._rebuild_parameter_with_state`,
 * `torch._tensor._rebuild_from_type_v2` (for `torch.Tensor` and
 * `torch.nn.parameter.Parameter` only), `torch.Size`, and the storage types
 * `torch.{Float,Double,Half,BFloat16,Long,Int,Short,Char,Byte,Bool}Storage`
 * as persistent ids. Any other global (`os.system`, `builtins.eval`, a model
 * class of the saving program, numpy arrays, quantized or sparse tensors) is
 * an error naming it, raised when the pickle names it, before it could be
 * used. Sizes, strides and offsets are checked against the storage before any
 * element is read, and storages against the file before they are read.
 *
 * Output: every tensor of the saved object, under its dotted path (a state
 * dict's own keys; nested dicts such as `{"state_dict": {...}}` as
 * `state_dict.<key>`, list items by index). Non-tensor values (epoch numbers,
 * hyperparameters) are read and left out. Dtypes as {@link loadSafetensors}
 * gives them: float32, float16, bfloat16 and float64 storages as float32
 * (half and bfloat16 widened exactly, double rounded); int64, int32, int16,
 * int8 and uint8 as int32 (a RangeError for an int64 value outside int32);
 * bool as bool. Complex, quantized and float8 storages are refused.
 *
 * Memory: each storage is read once. Float tensors are views of their
 * storage's one float32 array, so tensors that share a storage (tied
 * embeddings, slices, transposes) share memory, and a non-contiguous tensor
 * is returned as a strided view (`isContiguous()` false) of it. Integer and
 * bool tensors are converted into arrays of their own.
 */
import { constants as bufferConstants } from 'node:buffer';
import { open } from 'node:fs/promises';

import { formatShape, MAX_TENSOR_SIZE } from '../../errors';
import { isContiguousLayout, spanOf } from '../../strided';
import { Tensor } from '../../tensor';
import { floatsFrom, type StoredFloat } from '../elements';
import { isPickleTruncated, PyDict, PyTuple, typeName, unpickle, type PickleHooks } from './pickle';
import { fail, PREFIX, runOnBytes, runOnFile, type Reads } from './reads';
import { looksLikeZip, readZipDirectory, readZipEntry } from './zip';

/** Options of {@link loadTorchCheckpoint} and {@link parseTorchCheckpoint}. */
export interface TorchCheckpointOptions {
  /**
   * Return only the tensors under this entry of the saved dict, keyed as
   * inside it: `'state_dict'` for `torch.save({'state_dict': sd, 'epoch': 3})`,
   * `['model', 'ema']` for an entry nested deeper. Only the storages those
   * tensors use are read. Default: every tensor, under its full dotted path.
   */
  key?: string | readonly string[];
}

/** A parsed torch.save file. */
export interface TorchCheckpoint {
  /** Tensors by dotted path (a null-prototype object, so any name is an ordinary key). */
  tensors: Record<string, Tensor>;
  /** `'zip'` (torch >= 1.6) or `'legacy'` (`_use_new_zipfile_serialization=False`, torch < 1.6). */
  format: 'zip' | 'legacy';
}

type IntKind = 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

interface StorageKind {
  name: string;
  itemSize: number;
  kind: StoredFloat | IntKind;
}

const STORAGE_KINDS: Record<string, StorageKind> = Object.fromEntries(
  ([
    ['FloatStorage', 4, 'F32'], ['DoubleStorage', 8, 'F64'], ['HalfStorage', 2, 'F16'], ['BFloat16Storage', 2, 'BF16'],
    ['LongStorage', 8, 'I64'], ['IntStorage', 4, 'I32'], ['ShortStorage', 2, 'I16'], ['CharStorage', 1, 'I8'],
    ['ByteStorage', 1, 'U8'], ['BoolStorage', 1, 'BOOL'],
  ] as const).map(([name, itemSize, kind]) => [name, { name, itemSize, kind }]),
);

const FLOAT_KINDS: ReadonlySet<string> = new Set(['F32', 'F64', 'F16', 'BF16']);

/** Storage types torch has that attnode cannot represent, and why. */
const REFUSED_STORAGES: Record<string, string> = {
  ComplexFloatStorage: 'complex', ComplexDoubleStorage: 'complex', ComplexHalfStorage: 'complex',
  QInt8Storage: 'quantized', QUInt8Storage: 'quantized', QInt32Storage: 'quantized', QUInt4x2Storage: 'quantized',
  QUInt2x4Storage: 'quantized', Float8_e4m3fnStorage: 'float8', Float8_e5m2Storage: 'float8',
  Float8_e4m3fnuzStorage: 'float8', Float8_e5m2fnuzStorage: 'float8',
  UntypedStorage: 'untyped (a bare storage, not a tensor)', TypedStorage: 'untyped (a bare storage, not a tensor)',
};

/** The callable globals, by qualified name. */
const FUNCTIONS = [
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_tensor',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
  'torch._tensor._rebuild_from_type_v2',
  'torch.Size',
] as const;
/** Types accepted only as `_rebuild_from_type_v2`'s `new_type`. */
const TENSOR_TYPES = ['torch.Tensor', 'torch.nn.parameter.Parameter'] as const;
/** torch.load maps this old module name to the new one; so does this reader. */
const MODULE_ALIASES: Record<string, string> = { 'torch.tensor': 'torch._tensor' };

const ALLOWED_LIST = `${[...FUNCTIONS, ...TENSOR_TYPES].join(', ')}, torch.<dtype>Storage`;

/** Why some well-known refused globals are refused (a hint beyond "not allowed"). */
const GLOBAL_HINTS: Record<string, string> = {
  'torch._utils._rebuild_qtensor': 'quantized tensors are not supported',
  'torch._utils._rebuild_sparse_tensor': 'sparse tensors are not supported',
  'torch._utils._rebuild_sparse_csr_tensor': 'sparse tensors are not supported',
  'torch._utils._rebuild_meta_tensor_no_storage': 'meta tensors have no data',
  'torch._utils._rebuild_wrapper_subclass': 'tensor subclasses are not supported',
  'numpy.core.multiarray._reconstruct': 'numpy arrays are not supported',
  'numpy.core.multiarray.scalar': 'numpy scalars are not supported',
};

/** Modules whose globals in a pickle can only mean running code: named as such in the refusal. */
const CODE_MODULES: ReadonlySet<string> = new Set([
  'os', 'posix', 'nt', 'subprocess', 'builtins', '__builtin__', 'sys', 'shutil', 'socket', 'runpy', 'importlib',
  'pickle', '_pickle', 'code', 'codeop', 'pty', 'commands', 'webbrowser', 'ctypes', 'multiprocessing', 'marshal', 'types',
  'operator', 'functools', 'copyreg', 'pydoc', 'timeit', 'platform', 'asyncio', 'threading', 'signal', 'urllib',
]);

/** A global the reader allows: a marker, never a callable. */
class Global {
  readonly pyType = 'global';
  constructor(readonly qualname: string) {}
}

class StorageType {
  readonly pyType = 'storage type';
  constructor(readonly info: StorageKind) {}
}

/** One storage of the file (a zip record or a legacy storage), as the pickle declares it. */
interface RootStorage {
  key: string;
  info: StorageKind;
  numel: number;
}

/** What a persistent id resolves to: a root storage, or (legacy) a view of one. */
class StorageRef {
  readonly pyType = 'storage';
  constructor(readonly root: RootStorage, readonly offset: number, readonly numel: number) {}
}

/** A rebuilt tensor, its arguments checked only when it is named (so errors name it). */
class TensorRef {
  readonly pyType = 'tensor';
  constructor(readonly storage: unknown, readonly offset: unknown, readonly size: unknown, readonly stride: unknown) {}
}

/** The storages a pickle declared, by key. */
type Roots = Map<string, RootStorage>;

function str(v: unknown): string | null {
  if (typeof v === 'string') return v;
  // Python 2 pickles of the legacy format may hold byte strings; torch decodes them as ASCII.
  if (v instanceof Uint8Array) return String.fromCharCode(...v);
  return null;
}

function safeInt(v: unknown): number | null {
  return typeof v === 'number' && Number.isSafeInteger(v) ? v : null;
}

/** The hooks shared by both formats; `storage` turns a persistent id into a StorageRef. */
function torchHooks(what: string, storage: (pid: PyTuple) => StorageRef): PickleHooks {
  return {
    global(module: string, name: string): unknown {
      const mod = MODULE_ALIASES[module] ?? module;
      const qualname = `${mod}.${name}`;
      if (mod === 'torch' && Object.prototype.hasOwnProperty.call(STORAGE_KINDS, name)) return new StorageType(STORAGE_KINDS[name]!);
      if (mod === 'torch' && Object.prototype.hasOwnProperty.call(REFUSED_STORAGES, name)) {
        fail(TypeError, `${what}: storage type torch.${name} is not supported (${REFUSED_STORAGES[name]})`);
      }
      if ((FUNCTIONS as readonly string[]).includes(qualname) || (TENSOR_TYPES as readonly string[]).includes(qualname)) {
        return new Global(qualname);
      }
      const hint = GLOBAL_HINTS[qualname] ?? (CODE_MODULES.has(mod.split('.')[0]!)
        ? 'loading it would run code (the file may be malicious)'
        : 'if the file holds a whole pickled object (torch.save(model)), save model.state_dict() instead');
      return fail(TypeError, `${what}: global '${qualname}' is refused: this reader rebuilds tensors and never runs pickled code; ` +
        `${hint} (allowed: ${ALLOWED_LIST})`);
    },

    call(func: unknown, args: PyTuple): unknown {
      if (!(func instanceof Global)) fail(TypeError, `${what}: REDUCE calls a ${typeName(func)}, not an allowed function`);
      return callGlobal(what, func as Global, args.items);
    },

    persistentLoad(pid: unknown): unknown {
      if (!(pid instanceof PyTuple) || str(pid.items[0]) !== 'storage') {
        const first = pid instanceof PyTuple ? str(pid.items[0]) : null;
        if (first === 'module') {
          fail(TypeError, `${what}: the file holds a pickled nn.Module (torch.save(model)); save model.state_dict() instead`);
        }
        fail(TypeError, `${what}: persistent id ${typeName(pid)} ${first === null ? '' : `'${first}' `}is not a storage reference`);
      }
      return storage(pid as PyTuple);
    },

    build(obj: unknown, state: unknown): void {
      // OrderedDict state dicts carry attributes (`_metadata`: per-module versions); they hold no tensors.
      if (obj instanceof PyDict) return;
      fail(TypeError, `${what}: BUILD on ${typeName(obj)} (state ${typeName(state)}) is not supported`);
    },
  };
}

function callGlobal(what: string, g: Global, args: readonly unknown[]): unknown {
  const arity = (n: number | number[]): void => {
    const ok = Array.isArray(n) ? n.includes(args.length) : args.length === n;
    if (!ok) fail(TypeError, `${what}: ${g.qualname} takes ${Array.isArray(n) ? n.join(' or ') : n} arguments, got ${args.length}`);
  };
  switch (g.qualname) {
    case 'collections.OrderedDict': {
      const d = new PyDict();
      if (args.length === 0) return d;
      // OrderedDict([(k, v), ...]) as older protocols write it.
      arity(1);
      const items = args[0] instanceof PyTuple ? args[0].items : args[0];
      if (!Array.isArray(items)) fail(TypeError, `${what}: collections.OrderedDict takes a list of pairs, got ${typeName(args[0])}`);
      for (const pair of items as unknown[]) {
        if (!(pair instanceof PyTuple) || pair.items.length !== 2) {
          fail(TypeError, `${what}: collections.OrderedDict takes (key, value) pairs, got ${typeName(pair)}`);
        }
        d.map.set((pair as PyTuple).items[0], (pair as PyTuple).items[1]);
      }
      return d;
    }
    case 'torch._utils._rebuild_tensor_v2':
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      arity([6, 7]);
      return new TensorRef(args[0], args[1], args[2], args[3]);
    case 'torch._utils._rebuild_tensor':
      arity(4);
      return new TensorRef(args[0], args[1], args[2], args[3]);
    case 'torch._utils._rebuild_parameter':
    case 'torch._utils._rebuild_parameter_with_state':
      // (data, requires_grad, backward_hooks[, state]): a Parameter is its tensor here.
      arity(g.qualname.endsWith('_state') ? 4 : 3);
      if (!(args[0] instanceof TensorRef)) fail(TypeError, `${what}: ${g.qualname} takes a tensor, got ${typeName(args[0])}`);
      return args[0];
    case 'torch._tensor._rebuild_from_type_v2': {
      // (func, new_type, args, state): a tensor of type new_type rebuilt by func(*args).
      arity(4);
      const [func, type, inner] = args;
      if (!(type instanceof Global) || !(TENSOR_TYPES as readonly string[]).includes(type.qualname)) {
        fail(TypeError, `${what}: _rebuild_from_type_v2 of ${type instanceof Global ? type.qualname : typeName(type)} is not supported (tensor subclass)`);
      }
      if (!(func instanceof Global) || !(inner instanceof PyTuple)) fail(TypeError, `${what}: _rebuild_from_type_v2 takes a rebuild function and a tuple`);
      const result = callGlobal(what, func as Global, (inner as PyTuple).items);
      if (!(result instanceof TensorRef)) fail(TypeError, `${what}: _rebuild_from_type_v2 did not rebuild a tensor`);
      return result;
    }
    case 'torch.Size': {
      arity(1);
      const items = args[0] instanceof PyTuple ? args[0].items : args[0];
      if (!Array.isArray(items)) fail(TypeError, `${what}: torch.Size takes a tuple, got ${typeName(args[0])}`);
      return new PyTuple(items as unknown[]);
    }
    default:
      // torch.Tensor / Parameter as types: only _rebuild_from_type_v2 takes them.
      return fail(TypeError, `${what}: ${g.qualname} cannot be called here`);
  }
}

/** Checks a persistent id's storage type, key and element count, and records the root storage. */
function declareRoot(what: string, roots: Roots, type: unknown, keyValue: unknown, numelValue: unknown): RootStorage {
  const key = str(keyValue);
  if (key === null) fail(TypeError, `${what}: storage key must be a string, got ${typeName(keyValue)}`);
  if (!(type instanceof StorageType)) fail(TypeError, `${what}: storage '${key}': type must be a torch storage type, got ${typeName(type)}`);
  const numel = safeInt(numelValue);
  if (numel === null || numel < 0) fail(RangeError, `${what}: storage '${key}': element count must be a non-negative integer, got ${String(numelValue)}`);
  const info = (type as StorageType).info;
  const seen = roots.get(key!);
  if (seen) {
    if (seen.info !== info || seen.numel !== numel) {
      fail(TypeError, `${what}: storage '${key}' is declared as ${seen.info.name} of ${seen.numel} and as ${info.name} of ${numel}`);
    }
    return seen;
  }
  const root = { key: key!, info, numel: numel! };
  roots.set(key!, root);
  return root;
}

/** Options with `key` as a path. */
interface CheckedOptions {
  key?: readonly string[];
}

function checkOptions(options: TorchCheckpointOptions): CheckedOptions {
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`${PREFIX}argument 'options' must be an object, got ${options === null ? 'null' : typeof options}`);
  }
  const { key } = options;
  if (key === undefined) return {};
  const path = typeof key === 'string' ? [key] : key;
  if (!Array.isArray(path) || path.length === 0 || !path.every((k) => typeof k === 'string')) {
    throw new TypeError(`${PREFIX}option 'key' must be a string or a non-empty array of strings, got ${JSON.stringify(key)}`);
  }
  return { key: path.slice() };
}

// ---------------------------------------------------------------------------------------------------------------
// Tensors of the saved object

/** Nesting deeper than this is not a state dict (and could only be a crafted file). */
const MAX_DEPTH = 64;

/** Walks the saved object and names every tensor; returns [path, tensor] in the object's order. */
function collectTensors(what: string, root: unknown, objects: number, options: CheckedOptions): [string, TensorRef][] {
  let value = root;
  const path = options.key ?? [];
  for (let i = 0; i < path.length; i++) {
    const at = path.slice(0, i).map((k) => `['${k}']`).join('');
    if (!(value instanceof PyDict)) fail(RangeError, `${what}: option 'key': the saved object${at} is a ${typeName(value)}, not a dict`);
    const d = value as PyDict;
    if (!d.map.has(path[i])) {
      const keys = [...d.map.keys()].slice(0, 10).map((k) => (typeof k === 'string' ? `'${k}'` : String(k)));
      fail(RangeError, `${what}: option 'key': the saved object${at} has no entry '${path[i]}' (its keys: ${keys.join(', ')}${d.map.size > 10 ? ', ...' : ''})`);
    }
    value = d.map.get(path[i]);
  }
  const out = new Map<string, TensorRef>();
  // A crafted pickle can reference one container many times (or itself): every visit of a container is counted
  // against the number of containers the pickle created.
  let budget = 2 * objects + 1024;
  const open = new Set<unknown>();
  const shortPath = (p: string | null): string => (p === null ? '?' : p.length > 60 ? `${p.slice(0, 60)}...` : p);
  const walk = (v: unknown, path: string | null, depth: number): void => {
    const container = v instanceof PyDict || v instanceof PyTuple || Array.isArray(v);
    // Only containers and tensors count: a list of a million numbers is one container, walked once.
    if ((container || v instanceof TensorRef) && --budget < 0) {
      fail(RangeError, `${what}: the saved containers reference each other more often than they exist (a crafted file)`);
    }
    if (depth > MAX_DEPTH) fail(RangeError, `${what}: containers nested deeper than ${MAX_DEPTH} levels at '${shortPath(path)}'`);
    if (open.has(v)) fail(RangeError, `${what}: a container holds itself at '${shortPath(path)}' (a cycle)`);
    const child = (seg: string | null): string | null => (path === null || seg === null ? null : path === '' ? seg : `${path}.${seg}`);
    if (v instanceof TensorRef) {
      if (path === null) fail(TypeError, `${what}: a tensor is stored under a dict key that is not a str or int`);
      if (out.has(path!) && out.get(path!) !== v) fail(RangeError, `${what}: two tensors have the key '${path}' (a nested dict key with dots?)`);
      out.set(path!, v);
    } else if (v instanceof PyDict) {
      open.add(v);
      for (const [k, item] of v.map) walk(item, child(keySegment(k)), depth + 1);
      open.delete(v);
    } else if (Array.isArray(v) || v instanceof PyTuple) {
      open.add(v);
      const items = Array.isArray(v) ? v : v.items;
      items.forEach((item, i) => walk(item, child(String(i)), depth + 1));
      open.delete(v);
    }
  };
  walk(value, '', 0);
  return [...out];
}

function keySegment(k: unknown): string | null {
  if (typeof k === 'string') return k;
  if (typeof k === 'number' || typeof k === 'bigint') return String(k);
  if (typeof k === 'boolean') return k ? 'True' : 'False';
  return null;
}

/**
 * A storage's bytes once read, and its float32 elements once converted: a view
 * of the bytes when they are aligned float32 in host order (the input's own
 * bytes, or the fresh buffer a file read filled), else a converted copy.
 */
interface StorageData {
  bytes: Uint8Array;
  littleEndian: boolean;
  floats?: Float32Array;
}

interface Layout {
  root: RootStorage;
  /** Element offset into the root storage. */
  offset: number;
  shape: number[];
  strides: number[];
  size: number;
  span: number;
}

/** Checks a tensor's storage, offset, size and stride against its storage. */
function layoutOf(what: string, name: string, t: TensorRef): Layout {
  const at = `${what}: tensor '${name}'`;
  if (!(t.storage instanceof StorageRef)) fail(TypeError, `${at}: storage is a ${typeName(t.storage)}, not a storage reference`);
  const storage = t.storage as StorageRef;
  const offset = safeInt(t.offset);
  if (offset === null || offset < 0) fail(RangeError, `${at}: storage offset must be a non-negative integer, got ${describe(t.offset)}`);
  const dims = (v: unknown, field: string): number[] => {
    const items = v instanceof PyTuple ? v.items : Array.isArray(v) ? v : null;
    if (items === null) fail(TypeError, `${at}: ${field} must be a tuple of integers, got ${typeName(v)}`);
    if (items!.length > MAX_DEPTH) fail(RangeError, `${at}: ${field} has ${items!.length} dims (more than ${MAX_DEPTH})`);
    return items!.map((d) => {
      const n = safeInt(d);
      if (n === null || n < 0) fail(RangeError, `${at}: ${field} ${describe(v)} must hold non-negative integers`);
      return n!;
    });
  };
  const shape = dims(t.size, 'size');
  const strides = dims(t.stride, 'stride');
  if (strides.length !== shape.length) fail(RangeError, `${at}: stride ${formatShape(strides)} has ${strides.length} dims, size ${formatShape(shape)} has ${shape.length}`);
  let size = 1;
  for (const d of shape) size *= d;
  if (size > MAX_TENSOR_SIZE) fail(RangeError, `${at}: size ${formatShape(shape)} exceeds ${MAX_TENSOR_SIZE} elements`);
  const span = spanOf(shape, strides, size);
  if (size > 0 && offset! + span > storage.numel) {
    fail(RangeError, `${at}: size ${formatShape(shape)}, stride ${formatShape(strides)} and storage offset ${offset} reach element ` +
      `${offset! + span - 1} of storage '${storage.root.key}', which has ${storage.numel}`);
  }
  return { root: storage.root, offset: storage.offset + offset!, shape, strides, size, span };
}

function describe(v: unknown): string {
  if (v instanceof PyTuple) return `(${v.items.map(describe).join(', ')})`;
  if (Array.isArray(v)) return `[${v.map(describe).join(', ')}]`;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (typeof v === 'string') return JSON.stringify(v);
  return typeName(v);
}

/** The element count attnode can hold for one storage, and the bytes node can read into one buffer. */
function checkStorageSize(what: string, root: RootStorage): number {
  const nbytes = root.numel * root.info.itemSize;
  if (root.numel > MAX_TENSOR_SIZE || nbytes > bufferConstants.MAX_LENGTH) {
    fail(RangeError, `${what}: storage '${root.key}' has ${root.numel} elements (${nbytes} bytes), more than one buffer can hold here`);
  }
  return nbytes;
}

function buildTensor(what: string, name: string, l: Layout, data: StorageData): Tensor {
  const { kind } = l.root.info;
  if (FLOAT_KINDS.has(kind)) {
    if (l.size === 0) return new Tensor(new Float32Array(0), l.shape, 'float32');
    const floats = (data.floats ??= floatsFrom(data.bytes, kind as StoredFloat, data.littleEndian, true));
    const view = floats.subarray(l.offset, l.offset + l.span);
    return isContiguousLayout(l.shape, l.strides, l.size)
      ? new Tensor(view.subarray(0, l.size), l.shape, 'float32')
      : new Tensor(view, l.shape, 'float32', l.strides);
  }
  // Integers and bools: gathered through the strides into a contiguous array of their own.
  const dv = new DataView(data.bytes.buffer, data.bytes.byteOffset, data.bytes.byteLength);
  const le = data.littleEndian;
  const item = l.root.info.itemSize;
  const out = kind === 'BOOL' ? new Uint8Array(l.size) : new Int32Array(l.size);
  const idx = new Array<number>(l.shape.length).fill(0);
  let src = l.offset;
  for (let i = 0; i < l.size; i++) {
    const at = src * item;
    switch (kind as IntKind) {
      case 'I64': {
        const lo = dv.getInt32(le ? at : at + 4, le);
        const hi = dv.getInt32(le ? at + 4 : at, le);
        if (hi !== lo >> 31) {
          fail(RangeError, `${what}: tensor '${name}': int64 value ${dv.getBigInt64(at, le)} at index ${i} does not fit in int32`);
        }
        out[i] = lo;
        break;
      }
      case 'I32': out[i] = dv.getInt32(at, le); break;
      case 'I16': out[i] = dv.getInt16(at, le); break;
      case 'I8': out[i] = dv.getInt8(at); break;
      case 'U8': out[i] = dv.getUint8(at); break;
      case 'BOOL': out[i] = dv.getUint8(at) === 0 ? 0 : 1; break;
    }
    // Odometer over the shape: the next element's storage index.
    for (let d = l.shape.length - 1; d >= 0; d--) {
      if (++idx[d]! < l.shape[d]!) {
        src += l.strides[d]!;
        break;
      }
      src -= (l.shape[d]! - 1) * l.strides[d]!;
      idx[d] = 0;
    }
  }
  return kind === 'BOOL'
    ? new Tensor(out as Uint8Array, l.shape, 'bool')
    : new Tensor(out as Int32Array, l.shape, 'int32');
}

/**
 * Names, checks and builds the tensors of an unpickled object: `readStorage`
 * reads a root storage's bytes (each once, in key order).
 */
function* tensorsOf(
  what: string,
  value: unknown,
  objects: number,
  options: CheckedOptions,
  readStorage: (root: RootStorage, nbytes: number) => Reads<StorageData>,
): Reads<Record<string, Tensor>> {
  const named = collectTensors(what, value, objects, options);
  const layouts = named.map(([name, t]) => [name, layoutOf(what, name, t)] as const);
  // torch writes storages in key (string) order: reading them in that order reads the file front to back.
  const used = [...new Set(layouts.map(([, l]) => l.root))].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const data = new Map<RootStorage, StorageData>();
  for (const root of used) data.set(root, yield* readStorage(root, checkStorageSize(what, root)));
  const tensors = Object.create(null) as Record<string, Tensor>;
  for (const [name, l] of layouts) tensors[name] = buildTensor(what, name, l, data.get(l.root)!);
  return tensors;
}

// ---------------------------------------------------------------------------------------------------------------
// The two formats

function* readZipCheckpoint(size: number, options: CheckedOptions): Reads<TorchCheckpoint> {
  const dir = yield* readZipDirectory(size);
  const pkls = [...dir.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  const torchScript = [...dir.keys()].some((n) => /^[^/]+\/constants\.pkl$/.test(n) || /^[^/]+\/code\//.test(n));
  if (torchScript) {
    fail(TypeError, 'a TorchScript archive (torch.jit.save), not a torch.save checkpoint: save its state_dict() with torch.save instead');
  }
  if (pkls.length !== 1) {
    const names = [...dir.keys()].slice(0, 5).join(', ');
    fail(TypeError, pkls.length === 0
      ? `a zip archive without '<archive>/data.pkl' (entries: ${names || 'none'}): not a torch.save file`
      : `a zip archive with ${pkls.length} data.pkl records (${pkls.join(', ')}): not a torch.save file`);
  }
  const what = pkls[0]!;
  const prefix = what.slice(0, -'data.pkl'.length);
  let littleEndian = true;
  const order = dir.get(`${prefix}byteorder`);
  if (order) {
    const text = new TextDecoder().decode(yield* readZipEntry(order, size)).trim();
    if (text !== 'little' && text !== 'big') fail(TypeError, `${prefix}byteorder: must be 'little' or 'big', got ${JSON.stringify(text.slice(0, 20))}`);
    littleEndian = text === 'little';
  }
  const pickle = yield* readZipEntry(dir.get(what)!, size);
  const roots: Roots = new Map();
  const hooks = torchHooks(what, (pid) => {
    // ('storage', storage_type, key, location, numel)
    if (pid.items.length !== 5) fail(TypeError, `${what}: storage persistent id has ${pid.items.length} fields, expected 5`);
    const root = declareRoot(what, roots, pid.items[1], pid.items[2], pid.items[4]);
    return new StorageRef(root, 0, root.numel);
  });
  const { value, end, objects } = unpickle(pickle, 0, what, hooks);
  if (end !== pickle.byteLength) fail(SyntaxError, `${what}: ${pickle.byteLength - end} bytes after the pickle's STOP`);
  const tensors = yield* tensorsOf(what, value, objects, options, function* (root, nbytes) {
    const name = `${prefix}data/${root.key}`;
    const entry = dir.get(name);
    if (!entry) fail(RangeError, `${what}: storage '${root.key}' has no record '${name}' (truncated or corrupt file?)`);
    if (entry!.size !== nbytes) {
      fail(RangeError, `${name}: ${entry!.size} bytes, but ${root.info.name} storage '${root.key}' of ${root.numel} elements needs ${nbytes}`);
    }
    const bytes = yield* readZipEntry(entry!, size);
    return { bytes, littleEndian };
  });
  return { tensors, format: 'zip' };
}

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;

/** What the pickles at the head of a legacy file say. */
interface LegacyHead {
  value: unknown;
  objects: number;
  roots: Roots;
  keys: string[];
  /** Offset of the first storage. */
  end: number;
}

function parseLegacyHead(head: Uint8Array): LegacyHead {
  const what = 'legacy pickle';
  const plain = torchHooks(what, () => fail(TypeError, `${what}: a storage reference outside the object pickle`));
  const magic = unpickle(head, 0, 'legacy magic number', plain);
  if (magic.value !== LEGACY_MAGIC) {
    fail(TypeError, `not a torch.save file: a pickle of ${typeName(magic.value)} where the legacy format has its magic number`);
  }
  const protocol = unpickle(head, magic.end, 'legacy protocol version', plain);
  if (protocol.value !== LEGACY_PROTOCOL) fail(TypeError, `legacy protocol version must be ${LEGACY_PROTOCOL}, got ${describe(protocol.value)}`);
  const sys = unpickle(head, protocol.end, 'legacy system info', plain);
  if (!(sys.value instanceof PyDict)) fail(TypeError, `legacy system info must be a dict, got ${typeName(sys.value)}`);
  if ((sys.value as PyDict).map.get('little_endian') !== true) {
    fail(TypeError, 'legacy system info: little_endian is not True; files saved on big-endian machines are not supported');
  }
  const roots: Roots = new Map();
  const views = new Map<string, StorageRef>();
  const hooks = torchHooks(what, (pid) => {
    // ('storage', storage_type, root_key, location, numel, view_metadata)
    if (pid.items.length !== 6) fail(TypeError, `${what}: storage persistent id has ${pid.items.length} fields, expected 6`);
    const root = declareRoot(what, roots, pid.items[1], pid.items[2], pid.items[4]);
    const view = pid.items[5];
    if (view === null) return new StorageRef(root, 0, root.numel);
    // (view_key, offset, size): a storage view of old PyTorch versions.
    const [vkey, voff, vsize] = view instanceof PyTuple ? view.items : [];
    const key = str(vkey);
    const off = safeInt(voff);
    const n = safeInt(vsize);
    if (key === null || off === null || n === null || off < 0 || n < 0 || off + n > root.numel) {
      fail(RangeError, `${what}: storage view ${describe(view)} of storage '${root.key}' (${root.numel} elements) is out of range`);
    }
    const ref = views.get(key!) ?? new StorageRef(root, off!, n!);
    views.set(key!, ref);
    return ref;
  });
  const main = unpickle(head, sys.end, what, hooks);
  const keysPickle = unpickle(head, main.end, 'legacy storage keys', plain);
  const list = keysPickle.value;
  if (!Array.isArray(list)) fail(TypeError, `legacy storage keys must be a list, got ${typeName(list)}`);
  const keys = (list as unknown[]).map((k) => {
    const s = str(k);
    if (s === null) fail(TypeError, `legacy storage keys must be strings, got ${typeName(k)}`);
    if (!roots.has(s!)) fail(TypeError, `legacy storage keys: '${s}' is not a storage of the pickle`);
    return s!;
  });
  if (new Set(keys).size !== keys.length) fail(TypeError, 'legacy storage keys: a key appears twice');
  for (const key of roots.keys()) if (!keys.includes(key)) fail(RangeError, `legacy storage keys: storage '${key}' is missing`);
  return { value: main.value, objects: main.objects, roots, keys, end: keysPickle.end };
}

function* readLegacyCheckpoint(size: number, options: CheckedOptions): Reads<TorchCheckpoint> {
  // The pickles come first and their length is known only by parsing them: read a growing head until they fit.
  let chunk = Math.min(size, 1 << 16);
  let head: LegacyHead;
  for (;;) {
    const bytes = yield { offset: 0, length: chunk };
    try {
      head = parseLegacyHead(bytes);
      break;
    } catch (e) {
      if (!isPickleTruncated(e) || chunk === size) throw e;
      chunk = Math.min(size, chunk * 4);
    }
  }
  // Storages follow in key order: an int64 element count, then the elements (little-endian).
  const where = new Map<string, number>();
  let cursor = head.end;
  for (const key of head.keys) {
    const root = head.roots.get(key)!;
    if (cursor + 8 > size) fail(RangeError, `legacy storage '${key}': its element count at offset ${cursor} is past the end of the file (truncated file?)`);
    const countBytes = yield { offset: cursor, length: 8 };
    const count = new DataView(countBytes.buffer, countBytes.byteOffset, 8).getBigInt64(0, true);
    if (count !== BigInt(root.numel)) {
      fail(RangeError, `legacy storage '${key}': the file stores ${count} elements, the pickle declares ${root.numel} (corrupt file?)`);
    }
    const nbytes = root.numel * root.info.itemSize;
    if (cursor + 8 + nbytes > size) {
      fail(RangeError, `legacy storage '${key}': ${nbytes} bytes at offset ${cursor + 8} run past the end of the ${size}-byte file (truncated file?)`);
    }
    where.set(key, cursor + 8);
    cursor += 8 + nbytes;
  }
  const tensors = yield* tensorsOf('legacy pickle', head!.value, head!.objects, options, function* (root, nbytes) {
    const bytes = nbytes === 0 ? new Uint8Array(0) : yield { offset: where.get(root.key)!, length: nbytes };
    return { bytes, littleEndian: true };
  });
  return { tensors, format: 'legacy' };
}

function* readCheckpoint(size: number, options: TorchCheckpointOptions): Reads<TorchCheckpoint> {
  const opts = checkOptions(options);
  if (size === 0) fail(RangeError, 'the file is empty');
  const head = yield { offset: 0, length: Math.min(size, 512) };
  if (looksLikeZip(head)) return yield* readZipCheckpoint(size, opts);
  if (head.byteLength >= 262 && String.fromCharCode(...head.subarray(257, 262)) === 'ustar') {
    fail(TypeError, 'a tar archive: the torch.save format of PyTorch < 0.4 is not supported (load it with PyTorch and save it again)');
  }
  if (head[0] === 0x80) return yield* readLegacyCheckpoint(size, opts);
  if (head.byteLength > 8 && head[8] === 0x7b) fail(TypeError, 'not a torch.save file (it looks like safetensors: use loadSafetensors)');
  return fail(TypeError, 'not a torch.save file: neither a zip archive (torch >= 1.6) nor a pickle (the legacy format)');
}

/**
 * Parses a torch.save file held in memory (see the module comment for the
 * formats, what the pickle reader accepts and the dtype mapping).
 *
 * Aligned float32 storages in little-endian order are views into `bytes` (no
 * copy): the tensors keep its buffer alive.
 *
 * @throws RangeError for sizes and offsets that do not fit (truncated file,
 *   a tensor reaching past its storage, an int64 value outside int32);
 *   TypeError for what the reader refuses (a global that is not a tensor
 *   rebuild, a compressed entry, an unsupported storage type, a TorchScript
 *   archive); SyntaxError for a malformed pickle. Messages start with
 *   `torch checkpoint:` and name the record and the tensor at fault.
 */
export function parseTorchCheckpoint(bytes: Uint8Array, options: TorchCheckpointOptions = {}): TorchCheckpoint {
  if (!(bytes instanceof Uint8Array)) throw new TypeError(`parseTorchCheckpoint: argument 'bytes' must be a Uint8Array, got ${typeName(bytes)}`);
  return runOnBytes(readCheckpoint(bytes.byteLength, options), bytes);
}

/**
 * Reads a torch.save file (`pytorch_model.bin`, `model.pt`, `*.pth`): the
 * zip directory and the pickle first, then each storage the tensors use,
 * once, with positional reads (the file is never held twice in memory).
 *
 * @example
 * const { tensors } = await loadTorchCheckpoint('model.pt');
 * model.loadStateDict(tensors);
 * // A training checkpoint {'state_dict': ..., 'epoch': ...}:
 * const { tensors: sd } = await loadTorchCheckpoint('last.ckpt', { key: 'state_dict' });
 *
 * @throws the errors of {@link parseTorchCheckpoint} with the path prepended
 *   to the message (same class; the original is the `cause`), or the
 *   file-system error.
 */
export async function loadTorchCheckpoint(path: string, options: TorchCheckpointOptions = {}): Promise<TorchCheckpoint> {
  if (typeof path !== 'string') throw new TypeError(`loadTorchCheckpoint: argument 'path' must be a string, got ${typeName(path)}`);
  const file = await open(path, 'r');
  try {
    const { size } = await file.stat();
    return await runOnFile(readCheckpoint(size, options), file, size);
  } catch (e) {
    if (e instanceof RangeError) throw new RangeError(`${path}: ${e.message}`, { cause: e });
    if (e instanceof SyntaxError) throw new SyntaxError(`${path}: ${e.message}`, { cause: e });
    if (e instanceof TypeError) throw new TypeError(`${path}: ${e.message}`, { cause: e });
    throw e;
  } finally {
    await file.close();
  }
}
