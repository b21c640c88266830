// Internal: per-ISA row softmax kernels behind softmax.h.
//
// Each namespace is implemented by one translation unit compiled for that ISA
// (softmax_portable.cc, softmax_avx2.cc, softmax_avx512.cc). The frontend (softmax.cc) picks one set from
// runtime::active_isa() and does the threading; these functions are
// single-threaded and work on the range they are given.
//
// Included by the ISA translation units *after* their `#pragma GCC target`,
// so it must stay declarations only: an inline body here would be compiled
// with AVX-512 flags in one TU and baseline flags in another, and the linker
// may keep either copy (ODR hazard).
#pragma once

#include <cstdint>

namespace attnode::kernels {
namespace portable {
// Numerically stable softmax of each of `rows` rows of length `cols`; rows
// start every ldx elements in x and every ldy in y.
void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols, int64_t ldx, int64_t ldy);
void log_softmax_rows(const float* x, float* y, int64_t rows, int64_t cols, int64_t ldx, int64_t ldy);
void softmax_backward_rows(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols, bool log,
                           int64_t ldy, int64_t lddy, int64_t lddx);
}  // namespace portable

namespace avx2 {
// Numerically stable softmax of each of `rows` rows of length `cols`; rows
// start every ldx elements in x and every ldy in y.
void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols, int64_t ldx, int64_t ldy);
void log_softmax_rows(const float* x, float* y, int64_t rows, int64_t cols, int64_t ldx, int64_t ldy);
void softmax_backward_rows(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols, bool log,
                           int64_t ldy, int64_t lddy, int64_t lddx);
}  // namespace avx2

namespace avx512 {
// Numerically stable softmax of each of `rows` rows of length `cols`; rows
// start every ldx elements in x and every ldy in y.
void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols, int64_t ldx, int64_t ldy);
void log_softmax_rows(const float* x, float* y, int64_t rows, int64_t cols, int64_t ldx, int64_t ldy);
void softmax_backward_rows(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols, bool log,
                           int64_t ldy, int64_t lddy, int64_t lddx);
}  // namespace avx512
}  // namespace attnode::kernels
