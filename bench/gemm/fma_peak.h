// The FMA throughput probe that defines "peak" in attnode's benchmarks: one core running back-to-back
// independent 512-bit FMAs (12 accumulators, enough to cover the FMA latency on Zen 4/5 and Intel cores).
// Used by bench/gemm/gemm_bench.cc, bench/gemm/gemv_bench.cc and bench/train/fma_peak.cc (the training-step benchmark's header line).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace attnode_bench {

__attribute__((target("avx512f"), noinline)) inline double fma_loop(int64_t iters) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512 m = _mm512_set1_ps(0.9999999f), a = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], m, a);
    __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]), "+v"(acc[4]), "+v"(acc[5]));
  }
  __m512 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, acc[i]);
  float out[16];
  _mm512_storeu_ps(out, s);
  return out[0];
}

// GFLOP/s of one core running back-to-back independent 512-bit FMAs; best of
// several tries (the machine is shared, the best is closest to the hardware).
inline double measure_fma_peak_1core(int tries = 7) {
  using Clock = std::chrono::steady_clock;
  const int64_t iters = 2000000;
  double best = 0;
  volatile double sink = 0;
  for (int t = 0; t < tries; ++t) {
    const auto t0 = Clock::now();
    sink = sink + fma_loop(iters);
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, iters * 12.0 * 32.0 / dt / 1e9);
  }
  return best;
}

}  // namespace attnode_bench
