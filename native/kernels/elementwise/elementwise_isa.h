// Internal: per-ISA element-wise kernels behind elementwise.h.
//
// Each namespace is implemented by one translation unit compiled for that ISA
// (elementwise_portable.cc, elementwise_avx2.cc, elementwise_avx512.cc). The
// frontend (elementwise.cc) picks one set from runtime::active_isa() and does
// the threading; these functions are single-threaded and work on the range
// they are given.
//
// Included by the ISA translation units *after* their `#pragma GCC target`,
// so it must stay declarations only: an inline body here would be compiled
// with AVX-512 flags in one TU and baseline flags in another, and the linker
// may keep either copy (ODR hazard).
#pragma once

#include <cstdint>

#include "elementwise.h"

namespace attnode::kernels {
namespace portable {
void relu(const float* x, float* y, int64_t n);
void unary(UnaryOp op, const float* x, float* y, int64_t n);
void silu_mul(const float* gate, const float* up, float* y, int64_t n);
void gelu(const float* x, float* y, int64_t n, bool tanh_approx);
// y[i] = a[i * a_inc] op b[i * b_inc] with a_inc, b_inc in {0, 1} (0 = scalar operand).
void binary_row(BinaryOp op, const float* a, int64_t a_inc, const float* b, int64_t b_inc, float* y, int64_t n);
void activation_backward(ActivationGrad op, const float* x, const float* dy, float* dx, int64_t n);
// Elements [begin, begin + n) of dropout's keep-mask into out[0, n) (see dropout_mask in elementwise.h).
// With x (null: the mask itself), out[j] = x[j] * mask: x and out may be the same array.
void dropout_mask(uint32_t key0, uint32_t key1, uint32_t threshold, float scale, int64_t begin, int64_t n,
                  const float* x, float* out);
}  // namespace portable

namespace avx2 {
void relu(const float* x, float* y, int64_t n);
void unary(UnaryOp op, const float* x, float* y, int64_t n);
void silu_mul(const float* gate, const float* up, float* y, int64_t n);
void gelu(const float* x, float* y, int64_t n, bool tanh_approx);
// y[i] = a[i * a_inc] op b[i * b_inc] with a_inc, b_inc in {0, 1} (0 = scalar operand).
void binary_row(BinaryOp op, const float* a, int64_t a_inc, const float* b, int64_t b_inc, float* y, int64_t n);
void activation_backward(ActivationGrad op, const float* x, const float* dy, float* dx, int64_t n);
// Elements [begin, begin + n) of dropout's keep-mask into out[0, n) (see dropout_mask in elementwise.h).
void dropout_mask(uint32_t key0, uint32_t key1, uint32_t threshold, float scale, int64_t begin, int64_t n,
                  const float* x, float* out);
}  // namespace avx2

namespace avx512 {
void relu(const float* x, float* y, int64_t n);
void unary(UnaryOp op, const float* x, float* y, int64_t n);
void silu_mul(const float* gate, const float* up, float* y, int64_t n);
void gelu(const float* x, float* y, int64_t n, bool tanh_approx);
// y[i] = a[i * a_inc] op b[i * b_inc] with a_inc, b_inc in {0, 1} (0 = scalar operand).
void binary_row(BinaryOp op, const float* a, int64_t a_inc, const float* b, int64_t b_inc, float* y, int64_t n);
void activation_backward(ActivationGrad op, const float* x, const float* dy, float* dx, int64_t n);
// Elements [begin, begin + n) of dropout's keep-mask into out[0, n) (see dropout_mask in elementwise.h).
void dropout_mask(uint32_t key0, uint32_t key1, uint32_t threshold, float scale, int64_t begin, int64_t n,
                  const float* x, float* out);
}  // namespace avx512
}  // namespace attnode::kernels
