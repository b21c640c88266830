// Portable (baseline x86-64 / any ISA) element-wise kernels. See elementwise_isa.h.
//
// Same algorithms as the SIMD files, written as scalar loops over the
// portable SIMD layer's exp (libm's expf, < 1 ulp), so this
// path doubles as a readable statement of what the vector kernels compute.
// Compiled with the baseline flags, so it may use any header.
#include <cmath>
#include <cstdint>

#include "../simd/simd_portable.h"
#include "elementwise_isa.h"

namespace attnode::kernels::portable {
namespace {
using simd::portable::vexp;

// erfc(z), z >= 0, relative accuracy: the same refitted Numerical Recipes
// form as the SIMD paths (elementwise_map.inc); several times faster
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
  return t * vexp(p - z * z);
}

// x * Phi(x) through erfc so the negative side keeps relative accuracy.
inline float gelu_erf(float x) {
  float half_erfc = 0.5f * erfc_pos(std::fabs(x) * 0.70710678118654752f);
  return x * (x >= 0.0f ? 1.0f - half_erfc : half_erfc);
}

inline float gelu_tanh(float x) {
  float m2u = x * (-2.0f * 0.79788456080286536f) * (1.0f + 0.044715f * x * x);
  return x / (1.0f + vexp(m2u));
}

// PyTorch's formulas, as the SIMD paths (elementwise_map.inc); tanh is libm's.
inline float silu(float x) { return x / (1.0f + vexp(-x)); }
inline float sigmoid(float x) { return 1.0f / (1.0f + vexp(-x)); }

template <typename F>
inline void map_binary(const float* a, int64_t a_inc, const float* b, int64_t b_inc, float* y, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) y[i] = f(a[i * a_inc], b[i * b_inc]);
}

}  // namespace

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

void unary(UnaryOp op, const float* x, float* y, int64_t n) {
  switch (op) {
    case UnaryOp::Silu:
      for (int64_t i = 0; i < n; ++i) y[i] = silu(x[i]);
      break;
    case UnaryOp::Sigmoid:
      for (int64_t i = 0; i < n; ++i) y[i] = sigmoid(x[i]);
      break;
    case UnaryOp::Tanh:
      for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
      break;
  }
}

void silu_mul(const float* gate, const float* up, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = silu(gate[i]) * up[i];
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

namespace {

// The derivatives of elementwise_backward.inc, scalar.
inline float gelu_erf_grad(float x) {
  const float half_erfc = 0.5f * erfc_pos(std::fabs(x) * 0.70710678118654752f);
  const float cdf = x >= 0.0f ? 1.0f - half_erfc : half_erfc;
  const float pdf = 0.3989422804014327f * vexp(x * x * -0.5f);
  return cdf + x * pdf;
}

inline float gelu_tanh_grad(float x) {
  const float kBeta = 0.7978845608028654f, kKappa = 0.044715f;
  const float x2 = x * x;
  const float t = std::tanh(kBeta * (x + kKappa * x2 * x));
  const float left_d = 0.5f * (1.0f + t);
  const float right_d = 0.5f * x * (1.0f - t * t) * kBeta * (1.0f + 3.0f * kKappa * x2);
  return left_d + right_d;
}

inline float silu_grad(float x) {
  const float s = sigmoid(x);
  return s * (1.0f + x * (1.0f - s));
}

}  // namespace

void activation_backward(ActivationGrad op, const float* x, const float* dy, float* dx, int64_t n) {
  switch (op) {
    case ActivationGrad::Relu:
      // threshold_backward: dy where x > 0; a NaN x passes dy, as in PyTorch.
      for (int64_t i = 0; i < n; ++i) dx[i] = x[i] <= 0.0f ? 0.0f : dy[i];
      break;
    case ActivationGrad::Gelu:
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * gelu_erf_grad(x[i]);
      break;
    case ActivationGrad::GeluTanh:
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * gelu_tanh_grad(x[i]);
      break;
    case ActivationGrad::Silu:
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * silu_grad(x[i]);
      break;
    case ActivationGrad::Sigmoid:
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (x[i] * (1.0f - x[i]));
      break;
    case ActivationGrad::Tanh:
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (1.0f - x[i] * x[i]);
      break;
  }
}

#include "elementwise_random.inc"

}  // namespace attnode::kernels::portable
