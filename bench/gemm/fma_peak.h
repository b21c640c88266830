// One core's measured 512-bit FMA throughput (what the benchmarks call "peak"): back-to-back independent
// fmadd on 12 accumulators, best of 7 tries (the machine is shared; the best is closest to the hardware).
// Shared by gemm_bench.cc and gemv_bench.cc.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>

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

// GFLOP/s (2 per FMA lane) of one core.
inline double measure_fma_peak_1core() {
  const int64_t iters = 2000000;
  double best = 0;
  volatile double sink = 0;
  for (int t = 0; t < 7; ++t) {
    const auto t0 = std::chrono::steady_clock::now();
    sink = sink + fma_loop(iters);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, iters * 12.0 * 32.0 / dt / 1e9);
  }
  return best;
}
