/**
 * Controls of the native runtime: thread count, kernel path, and what was
 * detected. Without the addon these report the JS backend and say why.
 */
import { addon, nativeSource, type IsaName, type NativeInfo, type NativeSource } from './backend/native';
import { getBackend, getNativeLoadError } from './backend/registry';
import { readFileSync } from 'node:fs';
import { checkInt } from './errors';
import { clearBufferPool, pooledBufferBytes } from './workspace';

/** What {@link info} returns. */
export interface RuntimeInfo {
  /** The backend ops use by default right now. */
  backend: 'native' | 'js';
  /** The native runtime's report, or null when the addon is not loaded. */
  native: NativeInfo | null;
  /** Why the addon is not loaded, when it is not. */
  nativeError: string | null;
  /** Where the loaded addon comes from (a prebuild in prebuilds/ or a local build), or null when none is loaded. */
  nativeSource: NativeSource | null;
  node: string;
  platform: string;
  arch: string;
}

/** The runtime's state: backend, kernel path (ISA), threads, CPU features, build. */
export function info(): RuntimeInfo {
  return {
    backend: getBackend().name,
    native: addon ? addon.info() : null,
    nativeError: addon ? null : (getNativeLoadError()?.message ?? 'not loaded'),
    nativeSource: nativeSource(),
    node: process.version,
    platform: process.platform,
    arch: process.arch,
  };
}

function requireAddon(fn: string): NonNullable<typeof addon> {
  if (!addon) throw new Error(`attnode.${fn}: the native addon is not loaded (${getNativeLoadError()?.message ?? 'unknown reason'})`);
  return addon;
}

/** Sets the native thread pool's size (1 ≤ n ≤ 256). The JS backend is single-threaded. */
export function setNumThreads(n: number): void {
  checkInt('setNumThreads', 'n', n, 1, 256);
  requireAddon('setNumThreads').setNumThreads(n);
}

/** The native thread pool's size (1 without the addon). */
export function getNumThreads(): number {
  return addon ? addon.getNumThreads() : 1;
}

/**
 * Caps the native kernel path: 'avx512', 'avx2' or 'portable' (a path the CPU
 * cannot run is a RangeError). Returns the path now in use. Meant for tests
 * and benchmarks; `ATTNODE_ISA` does the same at load time.
 */
export function setIsa(isa: IsaName): IsaName {
  return requireAddon('setIsa').setIsa(isa);
}

export type { IsaName, NativeInfo, NativeSource };

/** What {@link memoryStats} returns: bytes, by who holds them. */
export interface MemoryStats {
  /** The process's resident set now (/proc/self/status VmRSS; `process.memoryUsage().rss` elsewhere). */
  rss: number;
  /** The highest resident set so far (VmHWM), or null where the OS does not report it. */
  peakRss: number | null;
  /** Live ArrayBuffers (tensors' memory, the pool's idle buffers among them), as V8 counts them. */
  arrayBuffers: number;
  /** Idle buffers in attnode's buffer pool (part of `arrayBuffers`). */
  pooledBuffers: number;
  /** V8's JS heap in use. */
  jsHeapUsed: number;
  /**
   * The C allocator (glibc): heap arenas, blocks in use in them (ArrayBuffers' memory and the kernels' scratch),
   * free blocks in them, blocks served by mmap. Null without the addon or off glibc.
   */
  allocator: { arenaBytes: number; inUseBytes: number; freeBytes: number; mmapBytes: number } | null;
  /**
   * Packed weights of 256 KiB and more (cached Linear weights, `packWeight`) live outside the C allocator, in
   * 2 MiB-aligned slabs advised as transparent huge pages: slabs mapped, their bytes (address space: only touched
   * pages are resident), and the bytes of the weights in them. Null without the addon.
   */
  packedWeights: { slabs: number; mappedBytes: number; bytes: number } | null;
}

function procStatusBytes(field: string): number | null {
  try {
    const text = readFileSync('/proc/self/status', 'utf8');
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * Where the process's memory is: resident set and its peak, live ArrayBuffers and the buffer pool's idle share,
 * the JS heap, and the C allocator's arenas. For diagnosing a training or serving process's footprint
 * (`bench/train/longseq-step.mjs --memory` prints it at each phase of a training step).
 */
export function memoryStats(): MemoryStats {
  const mu = process.memoryUsage();
  const a = addon?.memoryStats() ?? null;
  return {
    rss: procStatusBytes('VmRSS') ?? mu.rss,
    peakRss: procStatusBytes('VmHWM'),
    arrayBuffers: mu.arrayBuffers,
    pooledBuffers: pooledBufferBytes(),
    jsHeapUsed: mu.heapUsed,
    allocator: a && a.arenaBytes + a.mmapBytes > 0
      ? { arenaBytes: a.arenaBytes, inUseBytes: a.inUseBytes, freeBytes: a.freeBytes, mmapBytes: a.mmapBytes }
      : null,
    packedWeights: a ? { slabs: a.weightSlabs, mappedBytes: a.weightMappedBytes, bytes: a.weightBytes } : null,
  };
}

/**
 * Gives idle memory back to the OS: empties the buffer pool (its buffers go to the GC, which frees them at its
 * next collection; call it after dropping your own tensors) and trims the C allocator's free memory
 * (malloc_trim). The pool refills on the next forwards, at the cost of fresh pages. For a process going idle
 * after training or a burst of requests; the steady state needs neither. Returns the bytes the resident set shrank by.
 */
export function releaseMemory(): number {
  const before = procStatusBytes('VmRSS') ?? process.memoryUsage().rss;
  clearBufferPool();
  addon?.trimAllocator();
  const after = procStatusBytes('VmRSS') ?? process.memoryUsage().rss;
  return Math.max(0, before - after);
}
