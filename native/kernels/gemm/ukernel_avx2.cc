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

// M == 1 against the packed B (see PackedGemvFn): one 16-column panel at a
// time, K blocks in order, four accumulator pairs (k mod 4) summed in a fixed
// order, so every column's arithmetic is the same for any thread count.
void gemv_packed(int64_t k, int64_t kc, const float* x, const float* packed, int64_t n, int64_t j0, int64_t j1,
                 float* c, const Epilogue* ep) {
  const int64_t np = (n + kNR - 1) / kNR;
  for (int64_t j = j0; j < j1; j += kNR) {
    const int64_t q = j / kNR;
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) acc[u][0] = acc[u][1] = _mm256_setzero_ps();
    for (int64_t pc = 0; pc < k; pc += kc) {
      const int64_t kcb = k - pc < kc ? k - pc : kc;
      const float* b = packed + pc * np * kNR + q * kcb * kNR;
      const float* xb = x + pc;
      int64_t p = 0;
      for (; p + 4 <= kcb; p += 4) {
#pragma GCC unroll 4
        for (int u = 0; u < 4; ++u) {
          const __m256 xv = _mm256_broadcast_ss(xb + p + u);
          const float* bu = b + (p + u) * kNR;
          acc[u][0] = _mm256_fmadd_ps(_mm256_load_ps(bu), xv, acc[u][0]);
          acc[u][1] = _mm256_fmadd_ps(_mm256_load_ps(bu + 8), xv, acc[u][1]);
        }
      }
      for (; p < kcb; ++p) {
        const __m256 xv = _mm256_broadcast_ss(xb + p);
        const float* bu = b + p * kNR;
        acc[0][0] = _mm256_fmadd_ps(_mm256_load_ps(bu), xv, acc[0][0]);
        acc[0][1] = _mm256_fmadd_ps(_mm256_load_ps(bu + 8), xv, acc[0][1]);
      }
    }
    alignas(32) float tile[kNR];
    _mm256_store_ps(tile, _mm256_add_ps(_mm256_add_ps(acc[0][0], acc[1][0]), _mm256_add_ps(acc[2][0], acc[3][0])));
    _mm256_store_ps(tile + 8, _mm256_add_ps(_mm256_add_ps(acc[0][1], acc[1][1]), _mm256_add_ps(acc[2][1], acc[3][1])));
    Epilogue e = *ep;
    if (e.bias != nullptr) e.bias += j;
    epilogue_row_scalar(tile, c + j, static_cast<int>(j1 - j < kNR ? j1 - j : kNR), &e);
  }
}

}  // namespace

extern const IsaKernels kAvx2Kernels = {kMR, kNR, kernel_6x16, nullptr, nullptr, nullptr, gemv_packed};

}  // namespace attnode::kernels::gemm_detail
