// Baseline int8 kernels: plain C++ integer loops (4 x 48 tiles), the
// reference quantizer and a GEMV. Same int32 accumulators and the same
// dequantization as the SIMD paths; the store is the fp32 GEMM's scalar
// epilogue (gemm_detail::epilogue_row_scalar).

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "qukernel.h"

namespace attnode::kernels::qgemm_detail {
namespace {

constexpr int kMR = 4;
constexpr int kNR = kQNR;

uint32_t abs_bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u & 0x7fffffffu;
}

float from_bits(uint32_t u) {
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}

float quant_row(const float* x, int64_t k, int8_t* q) {
  uint32_t m = 0;
  for (int64_t i = 0; i < k; ++i) m = abs_bits(x[i]) > m ? abs_bits(x[i]) : m;
  const float amax = from_bits(m);
  if (m == 0 || m >= 0x7f800000u) {
    std::memset(q, 0, static_cast<size_t>(k));
    return amax / 127.0f;
  }
  const float inv = 127.0f / amax;
  for (int64_t i = 0; i < k; ++i) {
    // nearbyint: the current rounding mode, round-half-to-even by default (as cvtps2dq).
    float r = std::nearbyint(x[i] * inv);
    r = r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r;
    q[i] = static_cast<int8_t>(r);
  }
  return amax / 127.0f;
}

// d = float(acc) * (sa * sw), then the fp32 epilogue, one row at a time.
void store_rows(const int32_t (*acc)[kNR], int m, int n, float* c, int64_t ldc, const QStore* st) {
  float row[kNR];
  for (int r = 0; r < m; ++r) {
    const float sa = st->row_scale[r];
    for (int j = 0; j < n; ++j) {
      const float cs = sa * st->col_scale[j];
      row[j] = static_cast<float>(acc[r][j]) * cs;
    }
    gemm_detail::epilogue_row_scalar(row, c + r * ldc, n, &st->ep);
  }
}

void kernel_4x48(int64_t kq, const uint8_t* a, const int8_t* b, float* c, int64_t ldc, int m, int n, const QStore* st) {
  int32_t acc[kMR][kNR] = {};
  const int8_t* as = reinterpret_cast<const int8_t*>(a);
  for (int64_t q = 0; q < kq; ++q) {
    for (int r = 0; r < kMR; ++r) {
      const int8_t* ar = as + (q * kMR + r) * 4;
      const int8_t* bq = b + q * kNR * 4;
      for (int j = 0; j < kNR; ++j) {
        acc[r][j] += ar[0] * bq[4 * j] + ar[1] * bq[4 * j + 1] + ar[2] * bq[4 * j + 2] + ar[3] * bq[4 * j + 3];
      }
    }
  }
  store_rows(acc, m, n, c, ldc, st);
}

void gemv(int64_t kq, const uint8_t* x, const int8_t* packed, int64_t j0, int64_t j1, float* c, int64_t /*n*/,
          const QStore* st) {
  const int8_t* xs = reinterpret_cast<const int8_t*>(x);
  for (int64_t j = j0; j < j1; j += kNR) {
    int32_t acc[1][kNR] = {};
    const int8_t* bp = packed + (j / kNR) * kq * kNR * 4;
    for (int64_t q = 0; q < kq; ++q) {
      const int8_t* xq = xs + q * 4;
      const int8_t* bq = bp + q * kNR * 4;
      for (int t = 0; t < kNR; ++t) {
        acc[0][t] += xq[0] * bq[4 * t] + xq[1] * bq[4 * t + 1] + xq[2] * bq[4 * t + 2] + xq[3] * bq[4 * t + 3];
      }
    }
    QStore s = *st;
    s.col_scale += j;
    s.comp += j;
    if (s.ep.bias != nullptr) s.ep.bias += j;
    store_rows(acc, 1, static_cast<int>(j1 - j < kNR ? j1 - j : kNR), c + j, 0, &s);
  }
}

}  // namespace

extern const QKernels kQPortableKernels = {kMR, false, kernel_4x48, quant_row, gemv, nullptr};

}  // namespace attnode::kernels::qgemm_detail
