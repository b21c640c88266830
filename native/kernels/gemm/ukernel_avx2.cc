#pragma GCC target("avx2,fma")
// AVX2 + FMA micro-kernel, 6 x 16: 12 ymm accumulators + 2 B vectors + 1
// broadcast = 15 of the 16 ymm registers (the classic Haswell BLIS shape).
// Edge tiles and GELU go through the scalar epilogue; this path is the
// fallback for CPUs without AVX-512, not the tuned one.
//
// Only <immintrin.h>/<cstdint>/<cstddef> and interface headers (ODR: see
// ukernel.h).

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "ukernel.h"

namespace attnode::kernels::gemm_detail {
namespace {

constexpr int kMR = 6;
constexpr int kNR = 16;
constexpr int kActRelu = 1;

void kernel_6x16(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int m, int n, const Epilogue* ep) {
  __m256 acc[kMR][2];
#pragma GCC unroll 6
  for (int r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    __m256 b0 = _mm256_load_ps(b);
    __m256 b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
    for (int r = 0; r < kMR; ++r) {
      __m256 av = _mm256_broadcast_ss(a + r);
      acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
    }
    a += kMR;
    b += kNR;
  }
  if (m == kMR && n == kNR && ep->act <= kActRelu) {
    const __m256 va = _mm256_set1_ps(ep->alpha), vb = _mm256_set1_ps(ep->beta);
    for (int r = 0; r < kMR; ++r) {
      float* cr = c + r * ldc;
      for (int h = 0; h < 2; ++h) {
        __m256 v = _mm256_mul_ps(acc[r][h], va);
        if (ep->beta != 0.0f) v = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8 * h), v);
        if (ep->bias != nullptr) v = _mm256_add_ps(v, _mm256_loadu_ps(ep->bias + 8 * h));
        if (ep->act == kActRelu) v = _mm256_max_ps(v, _mm256_setzero_ps());
        _mm256_storeu_ps(cr + 8 * h, v);
      }
    }
    return;
  }
  alignas(32) float tile[kNR];
  for (int r = 0; r < m; ++r) {
    _mm256_store_ps(tile, acc[r][0]);
    _mm256_store_ps(tile + 8, acc[r][1]);
    epilogue_row_scalar(tile, c + r * ldc, n, ep);
  }
}

}  // namespace

extern const IsaKernels kAvx2Kernels = {kMR, kNR, kernel_6x16, nullptr, nullptr, nullptr};

}  // namespace attnode::kernels::gemm_detail
