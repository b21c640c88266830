// The M = 1 products of a SmolLM-135M decode step, from memory (30 distinct weights per shape, 2 for lm_head),
// against a pure-read stream of the same bytes in the same run: fp32 unpacked (B read through strides), fp32
// pre-packed panels (what cached module weights use) and bf16 packed. Usage: bench/gemm/gemv.sh [threads]
#include <immintrin.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include "../../native/kernels/gemm/gemm.h"
#include "../../native/runtime/thread_pool.h"
#include "fma_peak.h"
using namespace attnode::kernels;
static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
__attribute__((target("avx512f"))) static float read_all(const float* a, size_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (size_t i = 0; i + 64 <= n; i += 64) {
    s0 = _mm512_add_ps(s0, _mm512_loadu_ps(a + i));
    s1 = _mm512_add_ps(s1, _mm512_loadu_ps(a + i + 16));
    s2 = _mm512_add_ps(s2, _mm512_loadu_ps(a + i + 32));
    s3 = _mm512_add_ps(s3, _mm512_loadu_ps(a + i + 48));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}
int main(int argc, char** argv) {
  int nt = argc > 1 ? atoi(argv[1]) : 1;
  attnode::runtime::ThreadPool::instance().set_num_threads(nt);
  std::printf("FMA peak (measured, 1 core, 512-bit FMA loop, best of 7): %.1f GFLOP/s\n", attnode_bench::measure_fma_peak_1core());
  struct S {
    const char* name;
    int n, k;
  } shapes[] = {{"q/o", 576, 576}, {"k/v", 192, 576},     {"gate/up", 1536, 576}, {"down", 576, 1536},
                {"qkv", 960, 576}, {"gateup", 3072, 576}, {"lm_head", 49152, 576}};
  volatile float sink = 0;
  for (auto s : shapes) {
    const int copies = s.n > 10000 ? 2 : 30;
    std::vector<std::vector<float>> w(copies, std::vector<float>((size_t)s.n * s.k));
    for (auto& v : w)
      for (size_t i = 0; i < v.size(); ++i) v[i] = ((i * 2654435761u) % 1000) * 1e-5f;
    std::vector<PackedBPtr> pk, pf;
    for (auto& v : w) pk.push_back(pack_b_bf16(v.data(), s.k, true, s.k, s.n));
    for (auto& v : w) pf.push_back(pack_b(v.data(), s.k, true, s.k, s.n));
    std::vector<float> x(s.k, 0.01f), c(s.n);
    auto run = [&](int mode) {  // 0 read, 1 fp32, 2 bf16
      std::vector<double> ts;
      for (int r = 0; r < 7; ++r) {
        double t0 = now();
        for (int i = 0; i < copies; ++i) {
          if (mode == 0)
            sink = sink + read_all(w[i].data(), w[i].size());
          else {
            GemmParams p;
            p.m = 1;
            p.n = s.n;
            p.k = s.k;
            p.a = x.data();
            p.lda = s.k;
            p.b = w[i].data();
            p.ldb = s.k;
            p.trans_b = true;
            p.c = c.data();
            p.ldc = s.n;
            if (mode == 2) p.packed_b = pk[i].get();
            if (mode == 3) p.packed_b = pf[i].get();
            sgemm(p, nt);
          }
        }
        ts.push_back((now() - t0) / copies);
      }
      std::sort(ts.begin(), ts.end());
      return ts[3];
    };
    double tr = run(0), t32 = run(1), t16 = run(2), tp = run(3);
    double b32 = 4.0 * s.n * s.k, b16 = 2.0 * s.n * s.k;
    printf(
        "%-8s %5dx%-5d read %7.1f us %5.1f GB/s | fp32 %7.1f us %5.1f GB/s (%3.0f%%) | fp32 packed %7.1f us %5.1f GB/s "
        "(%3.0f%%) | bf16 %7.1f us %5.1f GB/s\n",
        s.name, s.n, s.k, tr * 1e6, b32 / tr / 1e9, t32 * 1e6, b32 / t32 / 1e9, 100 * tr / t32, tp * 1e6,
        b32 / tp / 1e9, 100 * tr / tp, t16 * 1e6, b16 / t16 / 1e9);
  }
}
