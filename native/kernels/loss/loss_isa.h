// Internal: per-ISA loss kernels behind loss.h.
//
// Each namespace is implemented by one translation unit compiled for that ISA
// (loss_portable.cc, loss_avx2.cc, loss_avx512.cc). The frontend (loss.cc)
// picks one set from runtime::active_isa(), checks the targets and does the
// threading; these functions are single-threaded, work on the rows they are
// given, and trust every target to be in [0, cols) or ignore_index.
//
// Included by the ISA translation units *after* their `#pragma GCC target`,
// so it must stay declarations only (an inline body here could be merged
// across ISAs by the linker: ODR hazard).
#pragma once

#include <cstdint>

namespace attnode::kernels {
namespace portable {
// Backward: w_sum is the sum of the weights (cols without weight), computed once per call by the frontend.
void cross_entropy_rows(const float* x, int64_t ldx, const int32_t* target, const float* weight, int64_t ignore_index,
                        float label_smoothing, float* loss, float* lse, int64_t rows, int64_t cols);
void cross_entropy_backward_rows(const float* x, int64_t ldx, const float* lse, const int32_t* target,
                                 const float* weight, double w_sum, int64_t ignore_index, float label_smoothing,
                                 const float* dloss, int64_t dloss_stride, float* dx, int64_t lddx, int64_t rows,
                                 int64_t cols);
}  // namespace portable

namespace avx2 {
void cross_entropy_rows(const float* x, int64_t ldx, const int32_t* target, const float* weight, int64_t ignore_index,
                        float label_smoothing, float* loss, float* lse, int64_t rows, int64_t cols);
void cross_entropy_backward_rows(const float* x, int64_t ldx, const float* lse, const int32_t* target,
                                 const float* weight, double w_sum, int64_t ignore_index, float label_smoothing,
                                 const float* dloss, int64_t dloss_stride, float* dx, int64_t lddx, int64_t rows,
                                 int64_t cols);
}  // namespace avx2

namespace avx512 {
void cross_entropy_rows(const float* x, int64_t ldx, const int32_t* target, const float* weight, int64_t ignore_index,
                        float label_smoothing, float* loss, float* lse, int64_t rows, int64_t cols);
void cross_entropy_backward_rows(const float* x, int64_t ldx, const float* lse, const int32_t* target,
                                 const float* weight, double w_sum, int64_t ignore_index, float label_smoothing,
                                 const float* dloss, int64_t dloss_stride, float* dx, int64_t lddx, int64_t rows,
                                 int64_t cols);
}  // namespace avx512
}  // namespace attnode::kernels
