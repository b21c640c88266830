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

// A row's normalisation: xhat = (x - mean_f) * rstd + shift (forward and backward use the same values).
struct LnStats {
  float mean_f, rstd, shift;
};

LnStats ln_stats(const float* x, int64_t n, float eps) {
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
  return {mean_f, static_cast<float>(rstd), static_cast<float>(-delta * rstd)};
}

void layer_norm_row(const float* x, const float* g, const float* b, float* y, int64_t n, float eps, float* rstd_out) {
  const LnStats st = ln_stats(x, n, eps);
  const float mean_f = st.mean_f, rstd_f = st.rstd, shift = st.shift;
  if (rstd_out) *rstd_out = rstd_f;
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
                     float eps, int64_t ldx, int64_t ldy, float* rstd) {
  for (int64_t r = 0; r < rows; ++r) {
    layer_norm_row(x + r * ldx, gamma, beta, y + r * ldy, cols, eps, rstd ? rstd + r : nullptr);
  }
}

void rms_norm_rows(const float* x, const float* weight, float* y, int64_t rows, int64_t cols, float eps, int64_t ldx,
                   int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r) rms_norm_row(x + r * ldx, weight, y + r * ldy, cols, eps);
}

void add_row(const float* x, const float* r, float* s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) s[i] = x[i] + r[i];
}

namespace {

// The backward of one row, scalar (see norms_backward.inc): xhat = (x - mean_f) * rstd + shift as the forward
// computes it, g = dy * gamma, dx = rstd * (g - centre * mean(g) - xhat * mean(g * xhat)).
void norm_grad_row(const float* x, const float* g, const float* dy, float* dx, float* pg, float* pb, int64_t n,
                   float mean_f, float rstd, float shift, bool centre) {
  double sa = 0.0, sb = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float xh = (x[i] - mean_f) * rstd + shift;
    const float gd = g ? dy[i] * g[i] : dy[i];
    sa += gd;
    sb += static_cast<double>(gd) * xh;
    if (pg) pg[i] += dy[i] * xh;
    if (pb) pb[i] += dy[i];
  }
  const float a = centre ? static_cast<float>(sa / static_cast<double>(n)) : 0.0f;
  const float b = static_cast<float>(sb / static_cast<double>(n));
  for (int64_t i = 0; i < n; ++i) {
    const float xh = (x[i] - mean_f) * rstd + shift;
    const float gd = g ? dy[i] * g[i] : dy[i];
    dx[i] = rstd * ((gd - a) - xh * b);
  }
}

// LayerNorm's backward from the forward's output y: xhat = (y - beta) / gamma, the row's rstd as the forward wrote it.
void layer_norm_grad_from_output_row(const float* y, const float* g, const float* b, const float* dy, float* dx,
                                     float* pg, float* pb, int64_t n, float rstd) {
  auto xhat = [&](int64_t i) {
    float v = b ? y[i] - b[i] : y[i];
    return g ? v / g[i] : v;
  };
  double sa = 0.0, sb = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float xh = xhat(i);
    const float gd = g ? dy[i] * g[i] : dy[i];
    sa += gd;
    sb += static_cast<double>(gd) * xh;
    if (pg) pg[i] += dy[i] * xh;
    if (pb) pb[i] += dy[i];
  }
  const float a = static_cast<float>(sa / static_cast<double>(n));
  const float c = static_cast<float>(sb / static_cast<double>(n));
  for (int64_t i = 0; i < n; ++i) {
    const float gd = g ? dy[i] * g[i] : dy[i];
    dx[i] = rstd * ((gd - a) - xhat(i) * c);
  }
}

}  // namespace

void layer_norm_backward_rows(const float* x, const float* gamma, const float* beta, const float* rstd,
                              const float* dy, float* dx, float* pg, float* pb, int64_t rows, int64_t cols, float eps,
                              int64_t ldx, int64_t lddy, int64_t lddx) {
  for (int64_t r = 0; r < rows; ++r) {
    if (rstd) {
      layer_norm_grad_from_output_row(x + r * ldx, gamma, beta, dy + r * lddy, dx + r * lddx, pg, pb, cols, rstd[r]);
      continue;
    }
    // The row statistics exactly as layer_norm_row computes them.
    const float* xr = x + r * ldx;
    const LnStats st = ln_stats(xr, cols, eps);
    norm_grad_row(xr, gamma, dy + r * lddy, dx + r * lddx, pg, pb, cols, st.mean_f, st.rstd, st.shift, true);
  }
}

void rms_norm_backward_rows(const float* x, const float* weight, const float* dy, float* dx, float* pw, int64_t rows,
                            int64_t cols, float eps, int64_t ldx, int64_t lddy, int64_t lddx) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    double s2 = 0.0;
    for (int64_t i = 0; i < cols; ++i) s2 += static_cast<double>(xr[i]) * xr[i];
    const float rstd = static_cast<float>(1.0 / std::sqrt(s2 / static_cast<double>(cols) + static_cast<double>(eps)));
    norm_grad_row(xr, weight, dy + r * lddy, dx + r * lddx, pw, nullptr, cols, 0.0f, rstd, 0.0f, false);
  }
}

}  // namespace attnode::kernels::portable
