/**
 * The native backend: a thin typed wrapper over the addon built from
 * native/: the local node-gyp build in build/Release, else a prebuild from prebuilds/ matching this platform, arch
 * and libc (node-gyp-build's matching), after checking the CPU has the prebuild's baseline (./cpu-baseline.ts).
 *
 * Loading is attempted once, on first import. If it fails (no compiler at
 * install time, an unsupported platform) the library keeps working on the
 * pure-TypeScript backend and says so once on stderr; asking for the native
 * backend explicitly then throws an Error carrying the original cause.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Backend, BackendOps, GemmArgs, GemmGroupArgs, OpArgs, OpName, WeightPrecision } from './backend';
import { checkCpuBaseline, readCpuFlags } from './cpu-baseline';
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
  /** The kernels int8 weights run on now: 'avx512vnni', 'avx2' or 'portable' (follows the active path). */
  int8: 'avx512vnni' | 'avx2' | 'portable';
  /** Whether the process allocator keeps freed buffers for reuse (see native/runtime/memory.h; ATTNODE_MALLOC_TUNING=0 turns it off). */
  allocatorTuned: boolean;
  /**
   * Packed weights live on 2 MiB transparent huge pages (fewer TLB misses when decoding streams them every token):
   * `mode` is the kernel's setting ('always' | 'madvise' | 'never' | 'unknown'), `enabled` whether new weights are
   * advised as huge pages (ATTNODE_HUGE_PAGES=0 turns it off).
   */
  hugePages: { mode: 'always' | 'madvise' | 'never' | 'unknown'; enabled: boolean };
  cpu: {
    vendor: string;
    brand: string;
    features: string[];
    l1dBytes: number;
    l2Bytes: number;
    l3Bytes: number;
    /** cpuid family/model/stepping with the extended fields folded in (AMD Zen 4: family 25; Zen 5: 26). */
    family: number;
    model: number;
    stepping: number;
    /** Microarchitecture named from vendor/family/model ('zen3' | 'zen4' | 'zen5'), '' when not known. */
    uarch: string;
  };
  /**
   * The fp32 GEMM's blocking for this CPU and the active path: `entry` is the measured table row used
   * ('zen4', 'zen5') or 'derived' (rules from the L1d/L2 sizes), with '+env' when ATTNODE_GEMM_BLOCKING
   * changed it; `mr` x `nr` the micro-tile, `kc`/`nc` the largest K block and packed-B width, `ncStream` the
   * packed-B width when few row panels (M <= 32 mr) prefetch the next block into L2 beside the current one,
   * `directA` whether a non-transposed A is read in place instead of packed, `directB` whether a non-transposed,
   * unpacked B is read in place (products of up to 16 mr rows, where its row stride allows) instead of packed.
   */
  gemm: {
    entry: string;
    mr: number;
    nr: number;
    kc: number;
    nc: number;
    ncStream: number;
    directA: boolean;
    directB: boolean;
  };
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
  gemmGroup: { gemms: (GemmArgs & { packedB?: PackedWeight | null })[] };
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
   * as float32, bfloat16 (a RangeError when `info().bf16` is false) or int8 (quantized per column of op(B); every
   * path, k ≤ 133,143).
   */
  packWeight(b: Float32Array, k: number, n: number, transB: boolean, precision?: WeightPrecision): PackedWeight;
  /**
   * The C allocator's byte counts (glibc's mallinfo2; zeros elsewhere), and the huge-page slabs packed weights of
   * 256 KiB and more are carved from: slabs mapped, their bytes, and the bytes of weights living in them.
   */
  memoryStats(): {
    arenaBytes: number; inUseBytes: number; freeBytes: number; mmapBytes: number;
    weightSlabs: number; weightMappedBytes: number; weightBytes: number;
  };
  /** Gives the C allocator's free memory back to the OS (glibc's malloc_trim); true when something was released. */
  trimAllocator(): boolean;
  /** What a packed weight holds. */
  packedWeightInfo(packed: PackedWeight): { precision: WeightPrecision; bytes: number };
  /**
   * Runs the list on the native executor; rejects with the kernel's error, or an AbortError when cancelled.
   * `concurrent`: the list is independent of every other list in flight, so it may run beside other concurrent
   * lists, each whole on one thread (native/runtime/executor.h).
   */
  submit(list: CommandList, options?: { concurrent?: boolean }): Promise<void>;
  /**
   * Runs the list's calls now on the calling thread and keeps them, so it can run again (a recorded decode step
   * replayed per token, lib/models/decode-program.ts). Throws the first failing call's error; a replayed list
   * cannot be submitted.
   */
  runList(list: CommandList): void;
  /**
   * Appends to `list` (being recorded) one call that writes `values` (copied now) into `targets` in order, then
   * runs `program`'s calls as runList would: the async form of a replayed program.
   */
  runListRecord(list: CommandList, program: CommandList, targets: Int32Array[], values: Int32Array): void;
  /** Skips the list's remaining calls if it has not finished. */
  cancel(list: CommandList): void;
  /** Lists queued or running on the executor. */
  pendingJobs(): number;
}

/** Every op, in OpArgs order (a value, for iterating; `satisfies` keeps it complete). */
const OP_TABLE = {
  gemm: true, gemmGroup: true, softmax: true, layerNorm: true, addLayerNorm: true, rmsNorm: true, addRmsNorm: true, relu: true,
  gelu: true, unary: true, siluMul: true, binary: true, embedding: true, permute0213: true, attention: true,
  attentionBackward: true, rope: true, copy: true, indexCopy: true, softmaxBackward: true, layerNormBackward: true,
  rmsNormBackward: true, activationBackward: true, dropoutMask: true, embeddingBackward: true, crossEntropy: true,
  crossEntropyBackward: true,
  sgdStep: true, adamStep: true, clipGradNorm: true,
} as const satisfies Record<OpName, true>;
const OP_NAMES = Object.keys(OP_TABLE) as OpName[];

/** Package root: lib/backend (sources) and dist/backend (build) are both two levels down. */
const packageRoot = path.resolve(__dirname, '..', '..');

/** Where the loaded addon comes from: a prebuild shipped in prebuilds/, or a local build in build/. */
export interface NativeSource {
  kind: 'prebuild' | 'build';
  /** The .node file, relative to the package root. */
  file: string;
}

/** What scripts/install.js recorded in build/attnode-install.json (null when the install step never ran). */
function readInstallNote(): { result?: string; reason?: string } | null {
  try {
    const note = JSON.parse(fs.readFileSync(path.join(packageRoot, 'build', 'attnode-install.json'), 'utf8')) as unknown;
    return typeof note === 'object' && note !== null ? (note as { result?: string; reason?: string }) : null;
  } catch {
    return null;
  }
}

const HOW_TO_BUILD =
  'To get the native backend: install python3, make and a C++ compiler, then run `npm rebuild attnode` ' +
  '(in a clone of attnode: `npm run build:native`)';

/** Why no addon file fits this machine, from the install step's note. */
function noAddonReason(): string {
  const libc = process.platform === 'linux' ? (fs.existsSync('/etc/alpine-release') ? ' (musl)' : ' (glibc)') : '';
  const target = `${process.platform}-${process.arch}${libc}`;
  const note = readInstallNote();
  if (note?.result === 'not-built' && typeof note.reason === 'string') return `no native addon for ${target}: ${note.reason}`;
  if (note === null) {
    return (
      `no native addon for ${target}: no prebuilt one fits and none was built, because the install step did not run ` +
      "(npm's --ignore-scripts, or an install-script policy that blocked it: `npm install-scripts approve attnode`)"
    );
  }
  return `no native addon for ${target} (the install step reported '${String(note.result)}' but left none)`;
}

let loadedFrom: NativeSource | null = null;

function loadAddon(): Addon | null {
  if (process.env.ATTNODE_DISABLE_NATIVE === '1') {
    setNativeLoadError(new Error('the native addon was disabled by ATTNODE_DISABLE_NATIVE=1'));
    return null;
  }
  // The registry says so once, on stderr, the first time it falls back to JS.
  const fail = (why: string, cause?: unknown, how = HOW_TO_BUILD): null => {
    setNativeLoadError(new Error(`attnode: ${why}. ${how}.`, { cause }));
    return null;
  };
  let file: string;
  try {
    // node-gyp-build's matching: build/Release first, then a prebuild for this platform, arch and libc.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const loader = require('node-gyp-build') as { resolve(dir: string): string };
    file = loader.resolve(packageRoot);
  } catch (err) {
    return fail(noAddonReason(), err);
  }
  const rel = path.relative(packageRoot, file);
  const kind = rel.startsWith(`prebuilds${path.sep}`) ? 'prebuild' : 'build';
  if (kind === 'prebuild') {
    // A prebuild is compiled for a fixed baseline (scripts/prebuild.js): check the CPU has it before loading.
    const check = checkCpuBaseline(process.arch, readCpuFlags());
    if (!check.ok) {
      return fail(
        `this CPU lacks ${check.missing.join(', ')}, part of the ${check.baseline.name} baseline the prebuilt addon ` +
          `${rel} is compiled for, so it was not loaded`,
        undefined,
        'To get the native backend, build it for this CPU: `ATTNODE_BUILD_FROM_SOURCE=1 npm rebuild attnode` ' +
          '(needs python3, make and a C++ compiler)',
      );
    }
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const a = require(file) as Addon;
    loadedFrom = { kind, file: rel };
    return a;
  } catch (err) {
    return fail(`the native addon ${rel} could not be loaded (${(err as Error).message.split('\n')[0]})`, err);
  }
}

/** The loaded addon, or null when it could not be loaded. */
export const addon: Addon | null = loadAddon();

/** Where the loaded addon came from (null when none is loaded). */
export function nativeSource(): NativeSource | null {
  return loadedFrom ? { ...loadedFrom } : null;
}

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
  // Each entry remembers the weight's version (GemmArgs.bVersion) it was packed at. A weight updated in place (an
  // optimizer step) drops its stale copy and is packed again on its second use at the new version, not its first:
  // in training every version of a weight is used once (one forward per step), and packing it for that one GEMM is
  // a copy of the weight into fresh memory that the GEMM's own panel packing makes redundant. Inference after
  // training packs on its second call.
  const packedWeights = new WeakMap<ArrayBufferLike, Map<string, { version: number; packed: PackedWeight | null }>>();
  // In front of it, the last packing used with each weight array object (a module's weight is the same array on
  // every call): a hit skips building the string key, which a decode step would otherwise do for every product.
  const lastPacked = new WeakMap<Float32Array, { k: number; n: number; precision: string; version: number; packed: PackedWeight }>();
  const packedFor = (g: GemmArgs): PackedWeight | null => {
    if (g.cacheB && g.bPrecision === 'int8') return int8PackedFor(g);
    if (!g.cacheB || !g.transB || ((g.batch ?? 1) > 1 && (g.strideB ?? 0) !== 0)) return null;
    if (g.ldb !== undefined && g.ldb !== g.k) return null;
    const precision = g.bPrecision ?? 'float32';
    const version = g.bVersion ?? 0;
    const last = lastPacked.get(g.b);
    if (last && last.k === g.k && last.n === g.n && last.precision === precision && last.version === version) return last.packed;
    // Every M packs: the M = 1 product (decode) streams the packed panels sequentially (one stream per K block),
    // where the unpacked GEMV hops through NR-row groups of B; bfloat16 reads the half-size packed weights.
    let byShape = packedWeights.get(g.b.buffer);
    if (!byShape) packedWeights.set(g.b.buffer, (byShape = new Map()));
    const key = `${g.b.byteOffset},${g.b.length},${g.k},${g.n},${precision}`;
    const entry = byShape.get(key);
    if (entry && entry.version === version) {
      if (entry.packed) {
        lastPacked.set(g.b, { k: g.k, n: g.n, precision, version, packed: entry.packed });
        return entry.packed;
      }
    } else if (version !== 0) {
      // First use at this version (see above). bfloat16 always packs: it has no unpacked path. The stale copy is
      // dropped from both maps, so the GC can take it.
      byShape.set(key, { version, packed: null });
      if (last && last.version !== version) lastPacked.delete(g.b);
      if (precision === 'float32') return null;
    }
    const packed = a.packWeight(g.b, g.k, g.n, true, precision);
    byShape.set(key, { version, packed });
    lastPacked.set(g.b, { k: g.k, n: g.n, precision, version, packed });
    return packed;
  };
  // int8 has no unpacked path, so any layout of a constant B packs: a transposed or strided one (a weight view)
  // from a contiguous [n, k] copy of op(B)ᵀ, cached under the view's memory and layout like any other packing.
  const int8Packed = new WeakMap<ArrayBufferLike, Map<string, { version: number; packed: PackedWeight }>>();
  const int8PackedFor = (g: GemmArgs): PackedWeight => {
    if ((g.batch ?? 1) > 1 && (g.strideB ?? 0) !== 0) {
      throw new RangeError(`gemm: bPrecision 'int8' needs one weight for every batch item (strideB 0), got strideB ${g.strideB}`);
    }
    const transB = g.transB ?? false;
    const ldb = g.ldb ?? (transB ? g.k : g.n);
    const version = g.bVersion ?? 0;
    const last = lastPacked.get(g.b);
    if (last && last.k === g.k && last.n === g.n && last.precision === 'int8' && last.version === version && transB && ldb === g.k) {
      return last.packed;
    }
    let byLayout = int8Packed.get(g.b.buffer);
    if (!byLayout) int8Packed.set(g.b.buffer, (byLayout = new Map()));
    const key = `${g.b.byteOffset},${g.b.length},${g.k},${g.n},${transB},${ldb}`;
    const entry = byLayout.get(key);
    if (entry && entry.version === version) return entry.packed;
    let rows = g.b;
    if (!transB || ldb !== g.k) {
      rows = new Float32Array(g.n * g.k);
      for (let j = 0; j < g.n; j++) {
        for (let t = 0; t < g.k; t++) rows[j * g.k + t] = transB ? g.b[j * ldb + t]! : g.b[t * ldb + j]!;
      }
    } else if (rows.length > g.n * g.k) {
      rows = rows.subarray(0, g.n * g.k);
    }
    const packed = a.packWeight(rows, g.k, g.n, true, 'int8');
    byLayout.set(key, { version, packed });
    if (transB && ldb === g.k) lastPacked.set(g.b, { k: g.k, n: g.n, precision: 'int8', version, packed });
    return packed;
  };
  const ops = {} as BackendOps;
  for (const op of OP_NAMES) {
    (ops as Record<OpName, (args: AddonArgs<OpName>) => void>)[op] = (args) => call(op, args);
  }
  // The one op with an addon-only field: a packed copy of a constant B.
  const withPacked = (g: GemmArgs): GemmArgs & { packedB?: PackedWeight } => {
    const packedB = packedFor(g);
    // An int8 packing is of op(B)ᵀ as contiguous rows, whatever layout this call reads B in.
    const int8 = g.cacheB === true && g.bPrecision === 'int8';
    return packedB ? (int8 ? { ...g, packedB, transB: true, ldb: g.k } : { ...g, packedB }) : g;
  };
  ops.gemm = (g: GemmArgs) => call('gemm', withPacked(g));
  ops.gemmGroup = (g: GemmGroupArgs) => {
    // The addon checks the list; an entry that is no object reaches it as is.
    const gemms = Array.isArray(g?.gemms) ? g.gemms.map((x) => (x !== null && typeof x === 'object' ? withPacked(x) : x)) : g?.gemms;
    call('gemmGroup', { gemms } as AddonArgs<'gemmGroup'>);
  };
  return { name: 'native', ...ops };
}

/** The native backend, or null when the addon is not available. */
export const nativeBackend: Backend | null = addon ? makeNativeBackend(addon) : null;
if (nativeBackend) registerBackend(nativeBackend);
