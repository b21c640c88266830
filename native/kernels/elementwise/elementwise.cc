// Frontend of the element-wise ops (compiled for baseline x86-64): picks the per-ISA
// kernels from runtime::active_isa() on every call (a switch on a cached
// value, so set_isa() takes effect immediately) and splits large inputs over
// the thread pool (common/parallel.h).
#include "elementwise.h"

#include <cmath>
#include <cstdint>

#include "../../runtime/cpu_features.h"
#include "../common/dispatch.h"
#include "../common/parallel.h"
#include "../common/strided_rows.h"
#include "elementwise_isa.h"

namespace attnode::kernels {
namespace {

struct IsaKernels {
  void (*relu)(const float*, float*, int64_t);
  void (*gelu)(const float*, float*, int64_t, bool);
  void (*unary)(UnaryOp, const float*, float*, int64_t);
  void (*silu_mul)(const float*, const float*, float*, int64_t);
  void (*binary_row)(BinaryOp, const float*, int64_t, const float*, int64_t, float*, int64_t);
  void (*activation_backward)(ActivationGrad, const float*, const float*, float*, int64_t);
  void (*dropout_mask)(uint32_t, uint32_t, uint32_t, float, int64_t, int64_t, const float*, float*);
};

constexpr IsaKernels kPortable{portable::relu,     portable::gelu,       portable::unary,
                               portable::silu_mul, portable::binary_row, portable::activation_backward, portable::dropout_mask};
constexpr IsaKernels kAvx2{avx2::relu,     avx2::gelu,       avx2::unary,
                           avx2::silu_mul, avx2::binary_row, avx2::activation_backward, avx2::dropout_mask};
constexpr IsaKernels kAvx512{avx512::relu,     avx512::gelu,       avx512::unary,
                             avx512::silu_mul, avx512::binary_row, avx512::activation_backward, avx512::dropout_mask};

const IsaKernels& isa_kernels() { return for_active_isa(kPortable, kAvx2, kAvx512); }

// Fallback inner loop for non-unit, non-zero inner strides (e.g. a transposed
// operand). Scalar IEEE ops give the same bits as the SIMD paths.
void strided_row(BinaryOp op, const float* a, int64_t ia, const float* b, int64_t ib, float* y, int64_t n) {
  switch (op) {
    case BinaryOp::Add:
      for (int64_t i = 0; i < n; ++i) y[i] = a[i * ia] + b[i * ib];
      break;
    case BinaryOp::Sub:
      for (int64_t i = 0; i < n; ++i) y[i] = a[i * ia] - b[i * ib];
      break;
    case BinaryOp::Mul:
      for (int64_t i = 0; i < n; ++i) y[i] = a[i * ia] * b[i * ib];
      break;
    case BinaryOp::Div:
      for (int64_t i = 0; i < n; ++i) y[i] = a[i * ia] / b[i * ib];
      break;
  }
}

}  // namespace

void relu(const float* x, float* y, int64_t n) {
  const IsaKernels& k = isa_kernels();
  for_range(n, kCopyGrain, [&](int64_t b, int64_t e) { k.relu(x + b, y + b, e - b); });
}

void gelu(const float* x, float* y, int64_t n, bool tanh_approx) {
  const IsaKernels& k = isa_kernels();
  for_range(n, kGrain, [&](int64_t b, int64_t e) { k.gelu(x + b, y + b, e - b, tanh_approx); });
}

void unary(UnaryOp op, const float* x, float* y, int64_t n) {
  const IsaKernels& k = isa_kernels();
  for_range(n, kGrain, [&](int64_t b, int64_t e) { k.unary(op, x + b, y + b, e - b); });
}

void silu_mul(const float* gate, const float* up, float* y, int64_t n) {
  const IsaKernels& k = isa_kernels();
  for_range(n, kGrain, [&](int64_t b, int64_t e) { k.silu_mul(gate + b, up + b, y + b, e - b); });
}

void activation_backward(ActivationGrad op, const float* x, const float* dy, float* dx, int64_t n) {
  const IsaKernels& k = isa_kernels();
  const int64_t grain = op == ActivationGrad::Relu ? kCopyGrain : kGrain;
  for_range(n, grain, [&](int64_t b, int64_t e) { k.activation_backward(op, x + b, dy + b, dx + b, e - b); });
}

void dropout_mask(float* out, int64_t n, double p, uint32_t key0, uint32_t key1, const float* x) {
  const IsaKernels& k = isa_kernels();
  // Exact in double (a power-of-two scaling, then ceil), as dropoutThreshold computes it in JS.
  const auto threshold = static_cast<uint32_t>(std::ceil(p * 16777216.0));
  const auto scale = static_cast<float>(1.0 / (1.0 - p));
  for_range(n, kCopyGrain, [&](int64_t b, int64_t e) {
    k.dropout_mask(key0, key1, threshold, scale, b, e - b, x != nullptr ? x + b : nullptr, out + b);
  });
}

void binary_op(BinaryOp op, const float* a, const int64_t* a_strides, const float* b, const int64_t* b_strides,
               float* y, const int64_t* shape, int ndim) {
  // Canonicalise (common/strided_rows.h; y is contiguous, so always mergeable). The fast paths then fall out as
  // 1-D (same shape or scalar operand: stride 1 / 0) or 2-D with a broadcast row (b strides {0, 1}), all served
  // by the ISA row kernel.
  TwoStrided t;
  if (!coalesce_two(shape, a_strides, b_strides, ndim, t)) return;
  const int nd = t.nd;
  const IsaKernels& k = isa_kernels();
  if (nd == 0) {  // a single element
    k.binary_row(op, a, 0, b, 0, y, 1);
    return;
  }
  const int64_t n_in = t.shape[nd - 1], ia = t.a[nd - 1], ib = t.b[nd - 1];
  const bool unit = (ia == 0 || ia == 1) && (ib == 0 || ib == 1);
  auto row = [&](const float* pa, const float* pb, float* py, int64_t n) {
    if (unit) {
      k.binary_row(op, pa, ia, pb, ib, py, n);
    } else {
      strided_row(op, pa, ia, pb, ib, py, n);
    }
  };
  if (nd == 1) {
    for_range(n_in, kCopyGrain, [&](int64_t lo, int64_t hi) { row(a + lo * ia, b + lo * ib, y + lo, hi - lo); });
    return;
  }
  for_each_row(t, kCopyGrain, [&](int64_t r, int64_t oa, int64_t ob) { row(a + oa, b + ob, y + r * n_in, n_in); });
}

}  // namespace attnode::kernels
