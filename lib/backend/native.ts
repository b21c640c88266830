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
import type { AttentionArgs, AttentionMask, AttentionPrecision, Backend, GemmArgs, WeightPrecision } from './backend';
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

/**
 * The kernels the addon exposes, with their raw arguments (see native/binding/*_binding.cc for each one's checks):
 * the Backend methods whose arguments are already flat, and the three that take them spread out.
 */
export interface AddonOps
  {
  softmax(x: Float32Array, y: Float32Array, rows: number, cols: number): void;
  layerNorm(x: Float32Array, g: Float32Array | null, b: Float32Array | null, y: Float32Array, rows: number, cols: number, eps: number): void;
  addLayerNorm(x: Float32Array, r: Float32Array, g: Float32Array | null, b: Float32Array | null, y: Float32Array, s: Float32Array | null, rows: number, cols: number, eps: number): void;
  relu(x: Float32Array, y: Float32Array): void;
  gelu(x: Float32Array, y: Float32Array, t: boolean): void;
  embedding(w: Float32Array, num: number, dim: number, ids: Int32Array, out: Float32Array): void;
  permute0213(x: Float32Array, y: Float32Array, d0: number, d1: number, d2: number, d3: number): void;
  gemm(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    m: number,
    n: number,
    k: number,
    transA: boolean,
    transB: boolean,
    alpha: number,
    beta: number,
    bias: Float32Array | null,
    act: number,
    batch: number,
    strideA: number,
    strideB: number,
    strideC: number,
    packedB?: PackedWeight | null,
  ): void;
  binary(
    op: number,
    a: Float32Array,
    aStrides: readonly number[],
    b: Float32Array,
    bStrides: readonly number[],
    y: Float32Array,
    shape: readonly number[],
  ): void;
  attention(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    out: Float32Array,
    qStrides: readonly number[],
    kStrides: readonly number[],
    vStrides: readonly number[],
    outStrides: readonly number[],
    dims: readonly number[],
    scale: number,
    masks: readonly AttentionMask[],
    causal: boolean,
    weights: Float32Array | null,
    precision?: AttentionPrecision,
  ): void;
}

type OpName = keyof AddonOps;

/** An opaque packed GEMM operand owned by the addon (freed when garbage-collected). */
export type PackedWeight = { readonly __packedWeight: unique symbol };

/** Each op's record form: validated now, appended to `list`, run by `submit(list)`. */
type AddonRecordOps = {
  [K in OpName as `${K}Record`]: (list: CommandList, ...args: Parameters<AddonOps[K]>) => void;
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
  const call = <K extends OpName>(op: K, ...args: Parameters<AddonOps[K]>): void => {
    const list = recordingList();
    if (list) (a[`${op}Record`] as (l: CommandList, ...x: Parameters<AddonOps[K]>) => void)(list, ...args);
    else (a[op] as (...x: Parameters<AddonOps[K]>) => void)(...args);
  };
  // Packed weights by array identity, then by "k,n,precision" (the same array
  // could be used with two shapes through reshapes). Weak: a dropped weight
  // takes its packing with it.
  const packedWeights = new WeakMap<Float32Array, Map<string, PackedWeight>>();
  const packedFor = (g: GemmArgs): PackedWeight | null => {
    if (!g.cacheB || !g.transB || ((g.batch ?? 1) > 1 && (g.strideB ?? 0) !== 0)) return null;
    const precision = g.bPrecision ?? 'float32';
    // float32 at M = 1 never packs (the GEMV path streams B as it is); bfloat16 packs for every M, since
    // its GEMV reads the half-size packed weights.
    if (g.m < 2 && precision === 'float32') return null;
    let byShape = packedWeights.get(g.b);
    if (!byShape) packedWeights.set(g.b, (byShape = new Map()));
    const key = `${g.k},${g.n},${precision}`;
    let packed = byShape.get(key);
    if (!packed) {
      packed = a.packWeight(g.b, g.k, g.n, true, precision);
      byShape.set(key, packed);
    }
    return packed;
  };
  // Interim: the addon still takes positional arguments (the named-parameter binding replaces this table).
  return {
    name: 'native',
    gemm: (g: GemmArgs) => {
      const transA = g.transA ?? false;
      const transB = g.transB ?? false;
      if ((g.lda !== undefined && g.lda !== (transA ? g.m : g.k)) || (g.ldb !== undefined && g.ldb !== (transB ? g.k : g.n)) ||
        (g.ldc !== undefined && g.ldc !== g.n)) {
        throw new RangeError('gemm: leading dimensions other than the defaults need the named-parameter addon');
      }
      call('gemm', g.a, g.b, g.c, g.m, g.n, g.k, transA, transB, g.alpha ?? 1, g.beta ?? 0, g.bias ?? null,
        g.act ?? 0, g.batch ?? 1, g.strideA ?? 0, g.strideB ?? 0, g.strideC ?? 0, packedFor(g));
    },
    softmax: (t) => call('softmax', t.x, t.y, t.rows, t.cols),
    layerNorm: (t) => call('layerNorm', t.x, t.weight, t.bias, t.y, t.rows, t.cols, t.eps),
    addLayerNorm: (t) => call('addLayerNorm', t.x, t.residual, t.weight, t.bias, t.y, t.sum, t.rows, t.cols, t.eps),
    rmsNorm: () => {
      throw new Error('rmsNorm: not in this addon build');
    },
    addRmsNorm: () => {
      throw new Error('addRmsNorm: not in this addon build');
    },
    relu: (t) => call('relu', t.x, t.y),
    gelu: (t) => call('gelu', t.x, t.y, t.tanhApprox),
    binary: (t) => call('binary', t.op, t.a, t.aStrides, t.b, t.bStrides, t.y, t.shape),
    embedding: (t) => call('embedding', t.weight, t.num, t.dim, t.ids, t.out),
    permute0213: (t) => call('permute0213', t.x, t.y, t.d0, t.d1, t.d2, t.d3),
    attention: (t: AttentionArgs) =>
      call('attention', t.q, t.k, t.v, t.out, t.qStrides, t.kStrides, t.vStrides, t.outStrides,
        [t.batch, t.heads, t.lq, t.lk, t.dk, t.dv], t.scale, t.masks, t.causal, t.weights, t.precision),
  };
}

/** The native backend, or null when the addon is not available. */
export const nativeBackend: Backend | null = addon ? makeNativeBackend(addon) : null;
if (nativeBackend) registerBackend(nativeBackend);
