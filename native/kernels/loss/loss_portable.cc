// Portable (baseline x86-64 / any ISA) losses. See loss_isa.h.
//
// Same algorithms as the SIMD files (loss_rows.inc), written as scalar loops
// over the portable SIMD layer's exp (libm's expf), sums in double, so this
// path doubles as a readable statement of what the vector kernels compute.
// Compiled with the baseline flags, so it may use any header.
#include <cmath>
#include <cstdint>

#include "../simd/simd_portable.h"
#include "loss_isa.h"

namespace attnode::kernels::portable {
namespace {
using simd::portable::vexp;

void cross_entropy_row(const float* x, int32_t t, const float* w, double w_sum, int64_t ignore_index, float eps,
                       float* loss, float* lse_out, int64_t n) {
  // `m < v` is false for NaN: a NaN is skipped here and comes back through its own exp().
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = m < x[i] ? x[i] : m;
  double sum_exp = 0.0, sum_wx = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    sum_exp += vexp(x[i] - m);
    if (eps > 0.0f) sum_wx += (w ? static_cast<double>(w[i]) : 1.0) * x[i];
  }
  const double lse = static_cast<double>(m) + std::log(sum_exp);
  *lse_out = static_cast<float>(lse);
  if (t == ignore_index) {
    *loss = 0.0f;
    return;
  }
  const double wt = w ? static_cast<double>(w[t]) : 1.0;
  double l = (1.0 - static_cast<double>(eps)) * wt * (lse - static_cast<double>(x[t]));
  if (eps > 0.0f) l += static_cast<double>(eps) / static_cast<double>(n) * (lse * w_sum - sum_wx);
  *loss = static_cast<float>(l);
}

void cross_entropy_backward_row(const float* x, float lse, int32_t t, const float* w, double w_sum,
                                int64_t ignore_index, float eps, float dl, float* dx, int64_t n) {
  if (t == ignore_index) {
    for (int64_t i = 0; i < n; ++i) dx[i] = 0.0f;
    return;
  }
  const double wt = w ? static_cast<double>(w[t]) : 1.0;
  const double se = static_cast<double>(eps) / static_cast<double>(n);
  const float a = static_cast<float>(static_cast<double>(dl) * ((1.0 - static_cast<double>(eps)) * wt + se * w_sum));
  const float b = static_cast<float>(static_cast<double>(dl) * se);
  for (int64_t i = 0; i < n; ++i) dx[i] = a * vexp(x[i] - lse) - b * (w ? w[i] : 1.0f);
  dx[t] -= static_cast<float>(static_cast<double>(dl) * (1.0 - static_cast<double>(eps)) * wt);
}

}  // namespace

void cross_entropy_rows(const float* x, int64_t ldx, const int32_t* target, const float* weight, int64_t ignore_index,
                        float label_smoothing, float* loss, float* lse, int64_t rows, int64_t cols) {
  double w_sum = static_cast<double>(cols);
  if (weight && label_smoothing > 0.0f) {
    w_sum = 0.0;
    for (int64_t c = 0; c < cols; ++c) w_sum += weight[c];
  }
  for (int64_t r = 0; r < rows; ++r) {
    cross_entropy_row(x + r * ldx, target[r], weight, w_sum, ignore_index, label_smoothing, loss + r, lse + r, cols);
  }
}

void cross_entropy_backward_rows(const float* x, int64_t ldx, const float* lse, const int32_t* target,
                                 const float* weight, double w_sum, int64_t ignore_index, float label_smoothing,
                                 const float* dloss, int64_t dloss_stride, float* dx, int64_t lddx, int64_t rows,
                                 int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    cross_entropy_backward_row(x + r * ldx, lse[r], target[r], weight, w_sum, ignore_index, label_smoothing,
                               dloss[r * dloss_stride], dx + r * lddx, cols);
  }
}

}  // namespace attnode::kernels::portable
