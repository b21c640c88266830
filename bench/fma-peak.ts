/**
 * The measured 1-core fp32 FMA peak (GFLOP/s) that attnode's benchmarks report beside their figures: the probe of
 * bench/gemm/fma_peak.h, built with the system's g++ into a temporary file and run once.
 */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const SOURCE = resolve(__dirname, 'train', 'fma_peak.cc');

/**
 * GFLOP/s, or null (with the reason passed to `say`) when the probe cannot be built or the CPU has no AVX-512F.
 * `tries`: the probe's best of that many ~6 ms runs (default 7); more tries find a quiet slice on a loaded machine.
 */
export function measureFmaPeak(say: (line: string) => void = () => {}, tries = 7): number | null {
  const exe = join(tmpdir(), `attnode-fma-peak-${process.pid}`);
  const b = spawnSync('g++', ['-O2', '-std=c++17', SOURCE, '-o', exe], { encoding: 'utf8' });
  if (b.status !== 0) {
    say(`FMA peak probe not built (${b.error?.message ?? b.stderr.trim().split('\n')[0]}): reported as unknown`);
    return null;
  }
  try {
    const r = spawnSync(exe, [String(tries)], { encoding: 'utf8' });
    const j = JSON.parse(r.stdout) as { gflops: number | null; reason?: string };
    if (j.gflops === null) say(`FMA peak not measured: ${j.reason ?? 'unknown reason'}`);
    return j.gflops;
  } finally {
    rmSync(exe, { force: true });
  }
}
