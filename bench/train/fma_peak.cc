// Prints the measured 1-core FMA peak (GFLOP/s, fp32) as one JSON line for `npm run bench:train`, with the probe
// bench/gemm/gemm_bench.cc reports (bench/gemm/fma_peak.h). Needs AVX-512F; prints {"gflops": null} without it.
#include <cstdio>

#include "../gemm/fma_peak.h"

int main() {
  if (!__builtin_cpu_supports("avx512f")) {
    std::printf("{\"gflops\": null, \"reason\": \"no AVX-512F\"}\n");
    return 0;
  }
  std::printf("{\"gflops\": %.1f}\n", attnode_bench::measure_fma_peak_1core());
  return 0;
}
