/**
 * The native backend: a thin typed wrapper over the addon built from
 * native/ (loaded by node-gyp-build: a matching prebuild from prebuilds/, else
 * the local node-gyp build in build/Release).
 *
 * Loading is attempted once, on first import. If it fails (no compiler at
 * install time, an unsupported platform) the library keeps working on the
 * pure-TypeScript backend and says so once on stderr; asking for the native
 * backend explicitly then throws an Error carrying the original cause.
 */
import * as path from 'node:path';
import type { Backend, BackendOps, GemmArgs, OpArgs, OpName, WeightPrecision } from './backend';
import { registerBackend, setNativeLoadError } from './registry';
import { recordingList, type CommandList } from './recording';

/** What `info()` reports about the native runtime. */
export interface NativeInfo {
  /** Kernel path in use: 'avx512' | 'avx2' | 'portable'. */
  isa: IsaName;
  /** Best path this CPU supports. */
  detectedIsa: IsaName;
  /** ATTNODE_ISA as read at load time, when set. */
  envIsa?: string;
  /** True when ATTNODE_ISA was set to something unknown (it is then ignored). */
  envIsaInvalid: boolean;
  numThreads: number;
  /** Whether bfloat16 weights can be packed now (the CPU has AVX512-BF16 and the active path is avx512). */
  bf16: boolean;
  /** Whether the process allocator keeps freed buffers for reuse (see native/runtime/memory.h; ATTNODE_MALLOC_TUNING=0 turns it off). */
  allocatorTuned: boolean;
  cpu: { vendor: string; brand: string; features: string[]; l1dBytes: number; l2Bytes: number; l3Bytes: number };
  build: { compiler: string; napiVersion: number; kernels: string; debug: boolean; asan: boolean };
}

export type IsaName = 'avx512' | 'avx2' | 'portable';

/** An opaque packed GEMM operand owned by the addon (freed when garbage-collected). */
export type PackedWeight = { readonly __packedWeight: unique symbol };

/**
 * What the addon's op functions take beyond the Backend's arguments: gemm also a packed copy of B (from
 * `packWeight`). Fields the addon does not read (gemm's `cacheB`, `bPrecision`) may be present.
 */
export interface AddonExtraArgs {
  gemm: { packedB?: PackedWeight | null };
}

/** One op's addon argument object: the Backend's, plus the addon-only fields. */
export type AddonArgs<K extends OpName> = OpArgs[K] & (K extends keyof AddonExtraArgs ? AddonExtraArgs[K] : unknown);

/**
 * The ops the addon exports, one per OpArgs entry, each taking its one argument object (checked again in
 * native/binding: the parsers listed in native/binding/op_registry.cc).
 */
export type AddonOps = { [K in OpName]: (args: AddonArgs<K>) => void };

/** Each op's record form: validated now, appended to `list`, run by `submit(list)`. */
export type AddonRecordOps = {
  [K in OpName as `${K}Record`]: (list: CommandList, args: AddonArgs<K>) => void;
};

/** The raw addon surface. */
export interface Addon extends AddonOps, AddonRecordOps {
  info(): NativeInfo;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  setIsa(isa: string): IsaName;
  createCommandList(): CommandList;
  /**
   * Packs op(B) (k × n; transB: B stored [n, k]) into the GEMM's panel layout for the current kernel path,
   * as float32 or bfloat16 (a RangeError when `info().bf16` is false).
   */
  packWeight(b: Float32Array, k: number, n: number, transB: boolean, precision?: WeightPrecision): PackedWeight;
  /** What a packed weight holds. */
  packedWeightInfo(packed: PackedWeight): { precision: WeightPrecision; bytes: number };
  /** Runs the list on the native executor thread; rejects with the kernel's error, or an AbortError when cancelled. */
  submit(list: CommandList): Promise<void>;
  /** Skips the list's remaining calls if it has not finished. */
  cancel(list: CommandList): void;
  /** Lists queued or running on the executor. */
  pendingJobs(): number;
}

/** Every op, in OpArgs order (a value, for iterating; `satisfies` keeps it complete). */
const OP_TABLE = {
  gemm: true, softmax: true, layerNorm: true, addLayerNorm: true, rmsNorm: true, addRmsNorm: true, relu: true,
  gelu: true, unary: true, siluMul: true, binary: true, embedding: true, permute0213: true, attention: true,
  rope: true, copy: true, indexCopy: true, softmaxBackward: true, layerNormBackward: true, rmsNormBackward: true,
  activationBackward: true, embeddingBackward: true, crossEntropy: true, crossEntropyBackward: true,
  sgdStep: true, adamStep: true, clipGradNorm: true,
} as const satisfies Record<OpName, true>;
const OP_NAMES = Object.keys(OP_TABLE) as OpName[];

/** Package root: lib/backend (sources) and dist/backend (build) are both two levels down. */
const packageRoot = path.resolve(__dirname, '..', '..');

function loadAddon(): Addon | null {
  if (process.env.ATTNODE_DISABLE_NATIVE === '1') {
    setNativeLoadError(new Error('the native addon was disabled by ATTNODE_DISABLE_NATIVE=1'));
    return null;
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const load = require('node-gyp-build') as (dir: string) => unknown;
    return load(packageRoot) as Addon;
  } catch (err) {
    const error = new Error(
      `attnode: the native addon could not be loaded (${(err as Error).message.split('\n')[0]}); ` +
        'running on the pure-TypeScript backend. Build it with `npm run build:native` (needs python3, make, g++).',
      { cause: err },
    );
    // The registry says so once, on stderr, the first time it falls back to JS.
    setNativeLoadError(error);
    return null;
  }
}

/** The loaded addon, or null when it could not be loaded. */
export const addon: Addon | null = loadAddon();

function makeNativeBackend(a: Addon): Backend {
  // Immediate call, or appended to the open command list (lib/async.ts).
  const call = <K extends OpName>(op: K, args: AddonArgs<K>): void => {
    const list = recordingList();
    // TypeScript cannot correlate `${K}Record` with K through the key remapping: the record form of op K takes
    // AddonArgs<K> by construction of AddonRecordOps.
    if (list) (a[`${op}Record`] as unknown as (l: CommandList, x: AddonArgs<K>) => void)(list, args);
    else (a[op] as AddonOps[K])(args);
  };
  // Packed weights by array identity, then by "k,n,precision" (the same array
  // could be used with two shapes through reshapes). Weak: a dropped weight
  // takes its packing with it. packWeight packs a contiguous B, so a call
  // with another ldb runs unpacked (and so in float32 even if bPrecision
  // asks for bfloat16, which needs the packed copy).
  // Packed weights by the weight's memory (buffer, then offset, length, shape and precision), not by the array
  // object: a weight view (a row slice of a packed in_proj_weight) is a new array on every call, but the same
  // weight. Weak on the buffer: a dropped weight takes its packing with it.
  // Each entry remembers the weight's version (GemmArgs.bVersion) it was packed at: a weight updated in place (an
  // optimizer step) is re-packed on its next use, replacing the stale copy.
  const packedWeights = new WeakMap<ArrayBufferLike, Map<string, { version: number; packed: PackedWeight }>>();
  const packedFor = (g: GemmArgs): PackedWeight | null => {
    if (!g.cacheB || !g.transB || ((g.batch ?? 1) > 1 && (g.strideB ?? 0) !== 0)) return null;
    if (g.ldb !== undefined && g.ldb !== g.k) return null;
    const precision = g.bPrecision ?? 'float32';
    // float32 at M = 1 never packs (the GEMV path streams B as it is); bfloat16 packs for every M, since
    // its GEMV reads the half-size packed weights.
    if (g.m < 2 && precision === 'float32') return null;
    let byShape = packedWeights.get(g.b.buffer);
    if (!byShape) packedWeights.set(g.b.buffer, (byShape = new Map()));
    const key = `${g.b.byteOffset},${g.b.length},${g.k},${g.n},${precision}`;
    const version = g.bVersion ?? 0;
    const entry = byShape.get(key);
    if (entry && entry.version === version) return entry.packed;
    const packed = a.packWeight(g.b, g.k, g.n, true, precision);
    byShape.set(key, { version, packed });
    return packed;
  };
  const ops = {} as BackendOps;
  for (const op of OP_NAMES) {
    (ops as Record<OpName, (args: AddonArgs<OpName>) => void>)[op] = (args) => call(op, args);
  }
  // The one op with an addon-only field: a packed copy of a constant B.
  ops.gemm = (g: GemmArgs) => {
    const packedB = packedFor(g);
    call('gemm', packedB ? { ...g, packedB } : g);
  };
  return { name: 'native', ...ops };
}

/** The native backend, or null when the addon is not available. */
export const nativeBackend: Backend | null = addon ? makeNativeBackend(addon) : null;
if (nativeBackend) registerBackend(nativeBackend);
