/**
 * The instruction-set baseline a prebuilt addon is compiled for, and whether this CPU has it.
 *
 * scripts/prebuild.js compiles the shipped prebuilds for a fixed baseline per arch (x64: `-march=x86-64`, never
 * `-march=native`); the faster kernels (AVX2, AVX-512) are chosen at run time from the CPU. Before
 * lib/backend/native.ts loads a prebuild it checks the CPU's features here, as sharp does for its binaries, so a CPU
 * without them gets a sentence saying so instead of an illegal-instruction crash.
 */
import * as fs from 'node:fs';

/** One arch's baseline: its name and the Linux /proc/cpuinfo feature flags it requires. */
export interface CpuBaseline {
  /** Human-readable name, e.g. 'x86-64 (SSE2)'. */
  name: string;
  /** Feature flags as /proc/cpuinfo spells them ('flags' on x86, 'Features' on arm64). */
  flags: readonly string[];
}

/**
 * Baselines per Node `process.arch` (the same -march as scripts/prebuild.js's MARCH).
 * x86-64: the psABI's base level (x86-64-v1) as /proc/cpuinfo shows it.
 * arm64: ARMv8-A with floating point and Advanced SIMD.
 */
export const BASELINES: Readonly<Record<string, CpuBaseline>> = {
  x64: { name: 'x86-64 (x86-64-v1: SSE2, CMOV, CX8, FXSR, MMX)', flags: ['fpu', 'cx8', 'cmov', 'mmx', 'fxsr', 'sse', 'sse2'] },
  arm64: { name: 'ARMv8-A (fp, asimd)', flags: ['fp', 'asimd'] },
};

/** The outcome of {@link checkCpuBaseline}. */
export type BaselineCheck =
  | { ok: true; baseline: CpuBaseline | null; checked: boolean }
  | { ok: false; baseline: CpuBaseline; missing: string[]; checked: true };

/**
 * The CPU feature flags Linux reports in /proc/cpuinfo (first processor's 'flags' or 'Features' line), or null when
 * they cannot be read (another OS, a sandbox without /proc).
 */
export function readCpuFlags(cpuinfoPath = '/proc/cpuinfo'): string[] | null {
  let text: string;
  try {
    text = fs.readFileSync(cpuinfoPath, 'utf8');
  } catch {
    return null;
  }
  const line = text.split('\n').find((l) => /^(flags|Features)\s*:/.test(l));
  if (!line) return null;
  return line.slice(line.indexOf(':') + 1).trim().split(/\s+/).filter(Boolean);
}

/**
 * Whether a CPU with `flags` can run a prebuild compiled for `arch`'s baseline. `flags` null (unknown) or an arch
 * without a recorded baseline passes with `checked: false`: nothing to check against.
 * @throws TypeError if `arch` is not a string or `flags` is neither null nor an array of strings.
 */
export function checkCpuBaseline(arch: string, flags: readonly string[] | null): BaselineCheck {
  if (typeof arch !== 'string') throw new TypeError(`checkCpuBaseline: argument 'arch' must be a string, got ${typeof arch}`);
  if (flags !== null && (!Array.isArray(flags) || flags.some((f) => typeof f !== 'string'))) {
    throw new TypeError(`checkCpuBaseline: argument 'flags' must be null or an array of strings`);
  }
  const baseline = Object.prototype.hasOwnProperty.call(BASELINES, arch) ? BASELINES[arch]! : null;
  if (!baseline || flags === null) return { ok: true, baseline, checked: false };
  const have = new Set(flags);
  const missing = baseline.flags.filter((f) => !have.has(f));
  return missing.length === 0 ? { ok: true, baseline, checked: true } : { ok: false, baseline, missing, checked: true };
}
