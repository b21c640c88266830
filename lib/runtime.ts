/**
 * Controls of the native runtime: thread count, kernel path, and what was
 * detected. Without the addon these report the JS backend and say why.
 */
import { addon, nativeSource, type IsaName, type NativeInfo, type NativeSource } from './backend/native';
import { getBackend, getNativeLoadError } from './backend/registry';
import { checkInt } from './errors';

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
