// Internal: per-ISA row normalization kernels behind norms.h.
//
// Each namespace is implemented by one translation unit compiled for that ISA
// (norms_portable.cc, norms_avx2.cc, norms_avx512.cc). The frontend (norms.cc) picks one set from
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
// Rows start every ldx elements in x and every ldy in y; rstd (when not null) receives each row's 1/sqrt(var + eps).
void layer_norm_rows(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t cols,
                     float eps, int64_t ldx, int64_t ldy, float* rstd);
void rms_norm_rows(const float* x, const float* weight, float* y, int64_t rows, int64_t cols, float eps, int64_t ldx,
                   int64_t ldy);
// s[i] = x[i] + r[i]: the residual add of the fused norms (IEEE adds, so the
// same bits as binary_op(Add)).
void add_row(const float* x, const float* r, float* s, int64_t n);
// Backward over `rows` rows (see norms.h); pg / pb (when not null) accumulate (+=) dy * xhat and dy over them. With
// rstd, x is the forward's output (see norms.h).
void layer_norm_backward_rows(const float* x, const float* gamma, const float* beta, const float* rstd,
                              const float* dy, float* dx, float* pg, float* pb, int64_t rows, int64_t cols, float eps,
                              int64_t ldx, int64_t lddy, int64_t lddx);
void rms_norm_backward_rows(const float* x, const float* weight, const float* dy, float* dx, float* pw, int64_t rows,
                            int64_t cols, float eps, int64_t ldx, int64_t lddy, int64_t lddx);
}  // namespace portable

namespace avx2 {
// Rows start every ldx elements in x and every ldy in y; rstd (when not null) receives each row's 1/sqrt(var + eps).
void layer_norm_rows(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t cols,
                     float eps, int64_t ldx, int64_t ldy, float* rstd);
void rms_norm_rows(const float* x, const float* weight, float* y, int64_t rows, int64_t cols, float eps, int64_t ldx,
                   int64_t ldy);
// s[i] = x[i] + r[i]: the residual add of the fused norms (IEEE adds, so the
// same bits as binary_op(Add)).
void add_row(const float* x, const float* r, float* s, int64_t n);
// Backward over `rows` rows (see norms.h); pg / pb (when not null) accumulate (+=) dy * xhat and dy over them. With
// rstd, x is the forward's output (see norms.h).
void layer_norm_backward_rows(const float* x, const float* gamma, const float* beta, const float* rstd,
                              const float* dy, float* dx, float* pg, float* pb, int64_t rows, int64_t cols, float eps,
                              int64_t ldx, int64_t lddy, int64_t lddx);
void rms_norm_backward_rows(const float* x, const float* weight, const float* dy, float* dx, float* pw, int64_t rows,
                            int64_t cols, float eps, int64_t ldx, int64_t lddy, int64_t lddx);
}  // namespace avx2

namespace avx512 {
// Rows start every ldx elements in x and every ldy in y; rstd (when not null) receives each row's 1/sqrt(var + eps).
void layer_norm_rows(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t cols,
                     float eps, int64_t ldx, int64_t ldy, float* rstd);
void rms_norm_rows(const float* x, const float* weight, float* y, int64_t rows, int64_t cols, float eps, int64_t ldx,
                   int64_t ldy);
// s[i] = x[i] + r[i]: the residual add of the fused norms (IEEE adds, so the
// same bits as binary_op(Add)).
void add_row(const float* x, const float* r, float* s, int64_t n);
// Backward over `rows` rows (see norms.h); pg / pb (when not null) accumulate (+=) dy * xhat and dy over them. With
// rstd, x is the forward's output (see norms.h).
void layer_norm_backward_rows(const float* x, const float* gamma, const float* beta, const float* rstd,
                              const float* dy, float* dx, float* pg, float* pb, int64_t rows, int64_t cols, float eps,
                              int64_t ldx, int64_t lddy, int64_t lddx);
void rms_norm_backward_rows(const float* x, const float* weight, const float* dy, float* dx, float* pw, int64_t rows,
                            int64_t cols, float eps, int64_t ldx, int64_t lddy, int64_t lddx);
}  // namespace avx512
}  // namespace attnode::kernels
