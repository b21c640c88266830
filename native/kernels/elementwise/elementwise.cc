// Frontend of the element-wise ops (compiled for baseline x86-64): picks the per-ISA
// kernels from runtime::active_isa() on every call (a switch on a cached
// value, so set_isa() takes effect immediately) and splits large inputs over
// the thread pool (common/parallel.h).
#include "elementwise.h"

#include <cstdint>

#include "../../runtime/cpu_features.h"
#include "../common/dispatch.h"
#include "../common/parallel.h"
#include "elementwise_isa.h"

namespace attnode::kernels {
namespace {

struct IsaKernels {
  void (*relu)(const float*, float*, int64_t);
  void (*gelu)(const float*, float*, int64_t, bool);
  void (*unary)(UnaryOp, const float*, float*, int64_t);
  void (*silu_mul)(const float*, const float*, float*, int64_t);
  void (*binary_row)(BinaryOp, const float*, int64_t, const float*, int64_t, float*, int64_t);
};

constexpr IsaKernels kPortable{portable::relu, portable::gelu, portable::unary, portable::silu_mul, portable::binary_row};
constexpr IsaKernels kAvx2{avx2::relu, avx2::gelu, avx2::unary, avx2::silu_mul, avx2::binary_row};
constexpr IsaKernels kAvx512{avx512::relu, avx512::gelu, avx512::unary, avx512::silu_mul, avx512::binary_row};

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

void binary_op(BinaryOp op, const float* a, const int64_t* a_strides, const float* b, const int64_t* b_strides,
               float* y, const int64_t* shape, int ndim) {
  // Canonicalise: drop size-1 dims (their strides are irrelevant) and merge
  // neighbours that are contiguous with each other in both operands (y is
  // contiguous, so always). The fast paths then fall out as 1-D (same shape
  // or scalar operand: stride 1 / 0) or 2-D with a broadcast row (b strides
  // {0, 1}), all served by the ISA row kernel.
  int64_t sh[8], sa[8], sb[8];
  int nd = 0;
  int64_t total = 1;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 0) return;
    if (shape[d] == 1) continue;
    total *= shape[d];
    if (nd > 0 && sa[nd - 1] == a_strides[d] * shape[d] && sb[nd - 1] == b_strides[d] * shape[d]) {
      sh[nd - 1] *= shape[d];
      sa[nd - 1] = a_strides[d];
      sb[nd - 1] = b_strides[d];
    } else {
      sh[nd] = shape[d];
      sa[nd] = a_strides[d];
      sb[nd] = b_strides[d];
      ++nd;
    }
  }
  const IsaKernels& k = isa_kernels();
  if (nd == 0) {  // a single element
    k.binary_row(op, a, 0, b, 0, y, 1);
    return;
  }
  const int64_t n_in = sh[nd - 1], ia = sa[nd - 1], ib = sb[nd - 1];
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
  // Rows over the outer nd-1 dims, walked with an odometer from each task's start.
  const int64_t rows = total / n_in;
  const int outer = nd - 1;
  for_range(rows, rows_per_task(n_in, kCopyGrain), [&](int64_t lo, int64_t hi) {
    int64_t idx[8];
    int64_t rem = lo, oa = 0, ob = 0;
    for (int d = outer - 1; d >= 0; --d) {
      idx[d] = rem % sh[d];
      rem /= sh[d];
      oa += idx[d] * sa[d];
      ob += idx[d] * sb[d];
    }
    for (int64_t r = lo; r < hi; ++r) {
      row(a + oa, b + ob, y + r * n_in, n_in);
      for (int d = outer - 1; d >= 0; --d) {
        oa += sa[d];
        ob += sb[d];
        if (++idx[d] < sh[d]) break;
        oa -= sa[d] * sh[d];
        ob -= sb[d] * sh[d];
        idx[d] = 0;
      }
    }
  });
}

}  // namespace attnode::kernels
