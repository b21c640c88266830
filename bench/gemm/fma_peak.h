// The FMA throughput probe that defines "peak" in attnode's benchmarks: one core running back-to-back
// independent 512-bit FMAs (12 accumulators, enough to cover the FMA latency on Zen 4/5 and Intel cores).
// Used by bench/gemm/gemm_bench.cc, bench/gemm/gemv_bench.cc and bench/train/fma_peak.cc (the training-step benchmark's
// header line).
#pragma once

#include <immintrin.h>

#include <time.h>
#include <algorithm>

#include <cstdint>

namespace attnode_bench {

__attribute__((target("avx512f"), noinline)) inline double fma_loop(int64_t iters) {
  // Twelve named accumulators, not an array: an array kept its slots in memory and stored all twelve every
  // iteration, which capped the loop at about a third of the FMA rate on Zen 4 (40 of ~118 GFLOP/s).
  __m512 a0 = _mm512_set1_ps(0.000f), a1 = _mm512_set1_ps(0.001f), a2 = _mm512_set1_ps(0.002f),
         a3 = _mm512_set1_ps(0.003f), a4 = _mm512_set1_ps(0.004f), a5 = _mm512_set1_ps(0.005f),
         a6 = _mm512_set1_ps(0.006f), a7 = _mm512_set1_ps(0.007f), a8 = _mm512_set1_ps(0.008f),
         a9 = _mm512_set1_ps(0.009f), a10 = _mm512_set1_ps(0.010f), a11 = _mm512_set1_ps(0.011f);
  const __m512 m = _mm512_set1_ps(0.9999999f), a = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
    a0 = _mm512_fmadd_ps(a0, m, a);
    a1 = _mm512_fmadd_ps(a1, m, a);
    a2 = _mm512_fmadd_ps(a2, m, a);
    a3 = _mm512_fmadd_ps(a3, m, a);
    a4 = _mm512_fmadd_ps(a4, m, a);
    a5 = _mm512_fmadd_ps(a5, m, a);
    a6 = _mm512_fmadd_ps(a6, m, a);
    a7 = _mm512_fmadd_ps(a7, m, a);
    a8 = _mm512_fmadd_ps(a8, m, a);
    a9 = _mm512_fmadd_ps(a9, m, a);
    a10 = _mm512_fmadd_ps(a10, m, a);
    a11 = _mm512_fmadd_ps(a11, m, a);
    // Keeps the compiler from folding the recurrences; every accumulator stays in a register.
    __asm__ volatile(""
                     : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7), "+v"(a8),
                       "+v"(a9), "+v"(a10), "+v"(a11));
  }
  const __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                                 _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)),
                                               _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11))));
  float out[16];
  _mm512_storeu_ps(out, s);
  return out[0];
}

// GFLOP/s of one core running back-to-back independent 512-bit FMAs; best of
// several tries, each timed by the thread's CPU time: the loop only computes,
// so the time it was descheduled on a shared machine is not the core's speed
// (timed by the wall clock, a run at load 15 on 2 vCPUs read half the peak).
inline double measure_fma_peak_1core(int tries = 7) {
  const int64_t iters = 2000000;
  double best = 0;
  volatile double sink = 0;
  auto cpu_s = [] {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
  };
  for (int t = 0; t < tries; ++t) {
    const double t0 = cpu_s();
    sink = sink + fma_loop(iters);
    const double dt = cpu_s() - t0;
    if (dt > 0) best = std::max(best, iters * 12.0 * 32.0 / dt / 1e9);
  }
  return best;
}

}  // namespace attnode_bench
