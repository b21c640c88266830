// Baseline (SSE2) micro-kernel, 4 x 8: two xmm accumulators per row x 4 rows
// plus operands fit the 16 xmm registers once the compiler vectorises the
// j loop. Also the reference scalar epilogue shared by the fallback paths.

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "gemm.h"
#include "ukernel.h"

namespace attnode::kernels::gemm_detail {
namespace {

constexpr int kMR = 4;
constexpr int kNR = 8;

void kernel_4x8(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int m, int n, const Epilogue* ep) {
  float acc[kMR][kNR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    for (int r = 0; r < kMR; ++r) {
      const float ar = a[r];
      for (int j = 0; j < kNR; ++j) acc[r][j] += ar * b[j];
    }
    a += kMR;
    b += kNR;
  }
  for (int r = 0; r < m; ++r) epilogue_row_scalar(acc[r], c + r * ldc, n, ep);
}

}  // namespace

void epilogue_row_scalar(const float* acc, float* c, int n, const Epilogue* ep) {
  const auto act = static_cast<Activation>(ep->act);
  for (int j = 0; j < n; ++j) {
    float v = acc[j] * ep->alpha;
    if (ep->beta != 0.0f) v = ep->beta * c[j] + v;
    if (ep->bias != nullptr) v += ep->bias[j];
    switch (act) {
      case Activation::Relu:
        v = v > 0.0f ? v : 0.0f;
        break;
      // Double inside: scaling v by 1/sqrt2 in float alone costs ~1e-5
      // relative in the far negative tail (error amplified by z^2).
      case Activation::Gelu: {
        const double x = v;
        v = static_cast<float>(0.5 * x * std::erfc(-x * 0.70710678118654752));
        break;
      }
      case Activation::GeluTanh: {
        const double x = v;
        v = static_cast<float>(x / (1.0 + std::exp(-2.0 * 0.7978845608028654 * (x + 0.044715 * x * x * x))));
        break;
      }
      case Activation::None:
        break;
    }
    c[j] = v;
  }
}

extern const IsaKernels kPortableKernels = {kMR, kNR, kernel_4x8, nullptr, nullptr, nullptr, nullptr};

}  // namespace attnode::kernels::gemm_detail
