// Portable (baseline x86-64 / any ISA) row softmax. See softmax_isa.h.
//
// Same algorithms as the SIMD files, written as scalar loops over the
// portable SIMD layer's exp (libm's expf, < 1 ulp), so this
// path doubles as a readable statement of what the vector kernels compute.
// Compiled with the baseline flags, so it may use any header.
#include <cmath>
#include <cstdint>

#include "../simd/simd_portable.h"
#include "softmax_isa.h"

namespace attnode::kernels::portable {
namespace {
using simd::portable::vexp;

void softmax_row(const float* x, float* y, int64_t n) {
  // `m < v` is false for NaN, so a NaN is skipped here; it comes back
  // through its own exp() into the sum and makes the whole row NaN.
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = m < x[i] ? x[i] : m;
  // All -inf row: (-inf) - (-inf) = NaN everywhere, like PyTorch.
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    float e = vexp(x[i] - m);
    y[i] = e;
    sum += e;
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) y[i] *= inv;
}

}  // namespace

void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols, int64_t ldx, int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r) softmax_row(x + r * ldx, y + r * ldy, cols);
}

void log_softmax_rows(const float* x, float* y, int64_t rows, int64_t cols, int64_t ldx, int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    float* yr = y + r * ldy;
    float m = -INFINITY;
    for (int64_t i = 0; i < cols; ++i) m = m < xr[i] ? xr[i] : m;
    double sum = 0.0;
    for (int64_t i = 0; i < cols; ++i) sum += vexp(xr[i] - m);
    const float lse = static_cast<float>(std::log(sum));
    for (int64_t i = 0; i < cols; ++i) yr[i] = (xr[i] - m) - lse;
  }
}

void softmax_backward_rows(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols, bool log,
                           int64_t ldy, int64_t lddy, int64_t lddx) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * ldy;
    const float* gr = dy + r * lddy;
    float* dr = dx + r * lddx;
    double s = 0.0;
    if (log) {
      for (int64_t i = 0; i < cols; ++i) s += gr[i];
      const float sf = static_cast<float>(s);
      for (int64_t i = 0; i < cols; ++i) dr[i] = gr[i] - vexp(yr[i]) * sf;
    } else {
      for (int64_t i = 0; i < cols; ++i) s += static_cast<double>(gr[i]) * yr[i];
      const float sf = static_cast<float>(s);
      for (int64_t i = 0; i < cols; ++i) dr[i] = yr[i] * (gr[i] - sf);
    }
  }
}

}  // namespace attnode::kernels::portable
