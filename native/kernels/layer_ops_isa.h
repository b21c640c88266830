// Internal: per-ISA row/element kernels behind layer_ops.h.
//
// Each namespace is implemented by one translation unit compiled for that ISA
// (layer_ops_portable.cc, layer_ops_avx2.cc, layer_ops_avx512.cc). The
// frontend (layer_ops.cc) picks one set from runtime::active_isa() and does
// the threading; these functions are single-threaded and work on the range
// they are given.
//
// This header is included by the ISA translation units *after* their
// `#pragma GCC target`, so it must stay declarations only: an inline body
// here would be compiled with AVX-512 flags in one TU and baseline flags in
// another, and the linker may keep either copy (ODR hazard).
#pragma once

#include <cstdint>

#include "layer_ops.h"

namespace attnode::kernels {
namespace portable {
// Numerically stable softmax of each of `rows` rows of length `cols`; rows
// start every ldx elements in x and every ldy in y.
void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols, int64_t ldx, int64_t ldy);
void layer_norm_rows(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t cols,
                     float eps, int64_t ldx, int64_t ldy);
void rms_norm_rows(const float* x, const float* weight, float* y, int64_t rows, int64_t cols, float eps, int64_t ldx,
                   int64_t ldy);
void relu(const float* x, float* y, int64_t n);
void gelu(const float* x, float* y, int64_t n, bool tanh_approx);
// y[i] = a[i * a_inc] op b[i * b_inc] with a_inc, b_inc in {0, 1} (0 = scalar operand).
void binary_row(BinaryOp op, const float* a, int64_t a_inc, const float* b, int64_t b_inc, float* y, int64_t n);
}  // namespace portable

namespace avx2 {
// Numerically stable softmax of each of `rows` rows of length `cols`; rows
// start every ldx elements in x and every ldy in y.
void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols, int64_t ldx, int64_t ldy);
void layer_norm_rows(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t cols,
                     float eps, int64_t ldx, int64_t ldy);
void rms_norm_rows(const float* x, const float* weight, float* y, int64_t rows, int64_t cols, float eps, int64_t ldx,
                   int64_t ldy);
void relu(const float* x, float* y, int64_t n);
void gelu(const float* x, float* y, int64_t n, bool tanh_approx);
// y[i] = a[i * a_inc] op b[i * b_inc] with a_inc, b_inc in {0, 1} (0 = scalar operand).
void binary_row(BinaryOp op, const float* a, int64_t a_inc, const float* b, int64_t b_inc, float* y, int64_t n);
}  // namespace avx2

namespace avx512 {
// Numerically stable softmax of each of `rows` rows of length `cols`; rows
// start every ldx elements in x and every ldy in y.
void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols, int64_t ldx, int64_t ldy);
void layer_norm_rows(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t cols,
                     float eps, int64_t ldx, int64_t ldy);
void rms_norm_rows(const float* x, const float* weight, float* y, int64_t rows, int64_t cols, float eps, int64_t ldx,
                   int64_t ldy);
void relu(const float* x, float* y, int64_t n);
void gelu(const float* x, float* y, int64_t n, bool tanh_approx);
// y[i] = a[i * a_inc] op b[i * b_inc] with a_inc, b_inc in {0, 1} (0 = scalar operand).
void binary_row(BinaryOp op, const float* a, int64_t a_inc, const float* b, int64_t b_inc, float* y, int64_t n);
}  // namespace avx512
}  // namespace attnode::kernels
