// Prints the measured 1-core FMA peak (GFLOP/s, fp32) as one JSON line for `npm run bench:train`, with the probe
// bench/gemm/gemm_bench.cc reports (bench/gemm/fma_peak.h). Needs AVX-512F; prints {"gflops": null} without it.
// An optional argument sets the number of tries (default 7): the best try is the figure, so on a loaded machine more
// tries (bench/encoder.ts uses 150, ~1 s) give a better chance of one running on a core nobody else was using.
#include <cstdio>
#include <cstdlib>

#include "../gemm/fma_peak.h"

int main(int argc, char** argv) {
  const int tries = argc > 1 ? std::atoi(argv[1]) : 7;
  if (!__builtin_cpu_supports("avx512f")) {
    std::printf("{\"gflops\": null, \"reason\": \"no AVX-512F\"}\n");
    return 0;
  }
  std::printf("{\"gflops\": %.1f}\n", attnode_bench::measure_fma_peak_1core(tries > 0 ? tries : 7));
  return 0;
}
