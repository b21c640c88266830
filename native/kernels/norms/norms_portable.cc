// Portable (baseline x86-64 / any ISA) row normalizations. See norms_isa.h.
//
// Same algorithms as the SIMD files, written as scalar loops, sums in double, so this
// path doubles as a readable statement of what the vector kernels compute.
// Compiled with the baseline flags, so it may use any header.
#include <cmath>
#include <cstdint>

#include "norms_isa.h"

namespace attnode::kernels::portable {
namespace {

void layer_norm_row(const float* x, const float* g, const float* b, float* y, int64_t n, float eps) {
  // Shifted two-pass, see norms_rows.inc: shift by x[0] so a constant
  // row gives mean == x[0] exactly (output == beta), then the corrected
  // two-pass variance around the float mean.
  const float c = x[0];
  double s1 = 0.0;
  for (int64_t i = 0; i < n; ++i) s1 += static_cast<double>(x[i] - c);
  const float mean_f = static_cast<float>(static_cast<double>(c) + s1 / static_cast<double>(n));
  double d1 = 0.0, d2 = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    float d = x[i] - mean_f;
    d1 += d;
    d2 += static_cast<double>(d) * d;
  }
  const double delta = d1 / static_cast<double>(n);
  double var = d2 / static_cast<double>(n) - delta * delta;
  if (var < 0.0) var = 0.0;
  const double rstd = 1.0 / std::sqrt(var + static_cast<double>(eps));
  const float rstd_f = static_cast<float>(rstd);
  const float shift = static_cast<float>(-delta * rstd);
  for (int64_t i = 0; i < n; ++i) {
    float t = (x[i] - mean_f) * rstd_f + shift;
    if (g) t *= g[i];
    if (b) t += b[i];
    y[i] = t;
  }
}

void rms_norm_row(const float* x, const float* w, float* y, int64_t n, float eps) {
  // Mean of squares in double, like layer_norm_row's variance; all of it
  // before the first store, so y may alias x.
  double s2 = 0.0;
  for (int64_t i = 0; i < n; ++i) s2 += static_cast<double>(x[i]) * x[i];
  const double ms = s2 / static_cast<double>(n);
  const float rstd = static_cast<float>(1.0 / std::sqrt(ms + static_cast<double>(eps)));
  for (int64_t i = 0; i < n; ++i) {
    float t = x[i] * rstd;
    if (w) t *= w[i];
    y[i] = t;
  }
}

}  // namespace

void layer_norm_rows(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t cols,
                     float eps, int64_t ldx, int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r) layer_norm_row(x + r * ldx, gamma, beta, y + r * ldy, cols, eps);
}

void rms_norm_rows(const float* x, const float* weight, float* y, int64_t rows, int64_t cols, float eps, int64_t ldx,
                   int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r) rms_norm_row(x + r * ldx, weight, y + r * ldy, cols, eps);
}

void add_row(const float* x, const float* r, float* s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) s[i] = x[i] + r[i];
}

}  // namespace attnode::kernels::portable
