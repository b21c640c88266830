// Portable (baseline x86-64 / any ISA) layer-op kernels. See layer_ops_isa.h.
//
// Same algorithms as the SIMD files, written as scalar loops over libm's
// expf (< 1 ulp), so this path doubles as a readable statement of what the
// vector kernels compute. Compiled with the
// baseline flags, so it may use any header.
#include <cmath>
#include <cstdint>

#include "layer_ops_isa.h"

namespace attnode::kernels::portable {
namespace {

void softmax_row(const float* x, float* y, int64_t n) {
  // `m < v` is false for NaN, so a NaN is skipped here; it comes back
  // through its own exp() into the sum and makes the whole row NaN.
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = m < x[i] ? x[i] : m;
  // All -inf row: (-inf) - (-inf) = NaN everywhere, like PyTorch.
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    float e = std::exp(x[i] - m);
    y[i] = e;
    sum += e;
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) y[i] *= inv;
}

void layer_norm_row(const float* x, const float* g, const float* b, float* y, int64_t n, float eps) {
  // Shifted two-pass, see layer_ops_avx512.cc: shift by x[0] so a constant
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

// erfc(z), z >= 0, relative accuracy: the same refitted Numerical Recipes
// form as the SIMD paths (see layer_ops_avx512.cc); several times faster
// than libm's erfcf and as accurate for GELU's purposes.
inline float erfc_pos(float z) {
  const float t = 1.0f / (1.0f + 0.5f * z);
  float p = 0.1419001947448542f;
  p = p * t - 0.664490492877891f;
  p = p * t + 1.1187844040757333f;
  p = p * t - 0.6465708605717445f;
  p = p * t - 0.12052263082762993f;
  p = p * t + 0.02209762345474031f;
  p = p * t + 0.027742403671670413f;
  p = p * t + 0.38802089994470546f;
  p = p * t + 0.998479340734228f;
  p = p * t - 1.2654408369696393f;
  return t * std::exp(p - z * z);
}

// x * Phi(x) through erfc so the negative side keeps relative accuracy.
inline float gelu_erf(float x) {
  float half_erfc = 0.5f * erfc_pos(std::fabs(x) * 0.70710678118654752f);
  return x * (x >= 0.0f ? 1.0f - half_erfc : half_erfc);
}

inline float gelu_tanh(float x) {
  float m2u = x * (-2.0f * 0.79788456080286536f) * (1.0f + 0.044715f * x * x);
  return x / (1.0f + std::exp(m2u));
}

template <typename F>
inline void map_binary(const float* a, int64_t a_inc, const float* b, int64_t b_inc, float* y, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) y[i] = f(a[i * a_inc], b[i * b_inc]);
}

}  // namespace

void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols, int64_t ldx, int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r) softmax_row(x + r * ldx, y + r * ldy, cols);
}

void layer_norm_rows(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t cols,
                     float eps, int64_t ldx, int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r) layer_norm_row(x + r * ldx, gamma, beta, y + r * ldy, cols, eps);
}

void rms_norm_rows(const float* x, const float* weight, float* y, int64_t rows, int64_t cols, float eps, int64_t ldx,
                   int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r) rms_norm_row(x + r * ldx, weight, y + r * ldy, cols, eps);
}

void relu(const float* x, float* y, int64_t n) {
  // Keeps NaN (and -0), like max(0, x) in the SIMD paths.
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

void gelu(const float* x, float* y, int64_t n, bool tanh_approx) {
  if (tanh_approx) {
    for (int64_t i = 0; i < n; ++i) y[i] = gelu_tanh(x[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = gelu_erf(x[i]);
  }
}

void binary_row(BinaryOp op, const float* a, int64_t a_inc, const float* b, int64_t b_inc, float* y, int64_t n) {
  switch (op) {
    case BinaryOp::Add:
      map_binary(a, a_inc, b, b_inc, y, n, [](float u, float v) { return u + v; });
      break;
    case BinaryOp::Sub:
      map_binary(a, a_inc, b, b_inc, y, n, [](float u, float v) { return u - v; });
      break;
    case BinaryOp::Mul:
      map_binary(a, a_inc, b, b_inc, y, n, [](float u, float v) { return u * v; });
      break;
    case BinaryOp::Div:
      map_binary(a, a_inc, b, b_inc, y, n, [](float u, float v) { return u / v; });
      break;
  }
}

}  // namespace attnode::kernels::portable
