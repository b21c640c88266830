// Row normalizations: LayerNorm and RMSNorm, each also fused with the
// residual add before it.
//
// Pure functions on pointers and sizes (no N-API); inputs were validated by
// the binding layer. Each picks its kernel path from runtime::active_isa()
// and spreads large inputs over the runtime thread pool, by rows. `x` and
// `y` may alias (in place) unless stated otherwise.
//
// Row strides: `ldx` / `ldy` are the elements between the starts of
// consecutive rows of x / y; 0 means cols (contiguous). A stride above cols
// reads and writes a row-strided view (e.g. a column slice of a wider matrix)
// in place; the elements between rows are never touched. x and y may alias
// only as the same view (x == y and ldx == ldy).
#pragma once

#include <cstdint>

namespace attnode::kernels {

// PyTorch LayerNorm over each row: (x - mean) / sqrt(var + eps) * gamma + beta,
// biased variance. gamma / beta may be null (elementwise_affine = false).
void layer_norm_rows(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t cols,
                     float eps, int64_t ldx = 0, int64_t ldy = 0);

// Residual add fused with LayerNorm, the `norm(x + sublayer(x))` of a
// Transformer layer: per row, s = x + r, then y = layer_norm(s). One pass
// over memory instead of two (the sum row stays in L1), bit-identical to
// binary_op(Add) followed by layer_norm_rows. If `sum` is not null it
// receives s (a pre-norm layer needs the sum as its next residual). y and
// sum may each alias x or r exactly, but not each other. Contiguous rows.
// `rstd` (when not null) receives each row's 1/sqrt(var + eps), what layer_norm_backward_rows needs to run from y.
void add_layer_norm_rows(const float* x, const float* r, const float* gamma, const float* beta, float* y, float* sum,
                         int64_t rows, int64_t cols, float eps, float* rstd = nullptr);

// PyTorch RMSNorm over each row: y = x / sqrt(mean(x^2) + eps) * weight.
// weight may be null (elementwise_affine = false).
void rms_norm_rows(const float* x, const float* weight, float* y, int64_t rows, int64_t cols, float eps,
                   int64_t ldx = 0, int64_t ldy = 0);

// Residual add fused with RMSNorm (a pre-norm decoder's `norm(x + h)`): per
// row, s = x + r, then y = rms_norm(s); `sum`, if not null, receives s.
// Bit-identical to binary_op(Add) followed by rms_norm_rows. Contiguous rows;
// y and sum may each alias x or r exactly, but not each other.
void add_rms_norm_rows(const float* x, const float* r, const float* weight, float* y, float* sum, int64_t rows,
                       int64_t cols, float eps);

// Backward of layer_norm_rows: given x (the forward's input, rows ldx apart), gamma (or null) and dy (rows lddy
// apart), writes dx (rows lddx apart; may alias dy only as the same view) and, when not null, dgamma = sum over
// rows of dy * xhat and dbeta = sum over rows of dy ([cols] each, overwritten). xhat and the row statistics are
// recomputed from x exactly as the forward computes them. Per row, with g = dy * gamma:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
// dgamma / dbeta are summed over fixed chunks of rows and then over the chunks in order, so they do not depend on
// the thread count.
// From the output (when `rstd` is not null: each row's 1/sqrt(var + eps) as the forward computed it): x is then the
// forward's output y = xhat * gamma + beta and xhat = (y - beta) / gamma (beta, gamma may be null), so a training
// step need not keep the input; eps is unused. Exact up to rounding where |beta| is not large against |gamma|
// (the caller checks; a zero gamma loses xhat).
void layer_norm_backward_rows(const float* x, const float* gamma, const float* dy, float* dx, float* dgamma,
                              float* dbeta, int64_t rows, int64_t cols, float eps, int64_t ldx = 0, int64_t lddy = 0,
                              int64_t lddx = 0, const float* beta = nullptr, const float* rstd = nullptr);

// Backward of rms_norm_rows: dx = rstd * (g - xhat * mean(g * xhat)) with g = dy * weight, xhat = x * rstd;
// dweight (when not null) = sum over rows of dy * xhat. Strides, aliasing and determinism as
// layer_norm_backward_rows.
void rms_norm_backward_rows(const float* x, const float* weight, const float* dy, float* dx, float* dweight,
                            int64_t rows, int64_t cols, float eps, int64_t ldx = 0, int64_t lddy = 0, int64_t lddx = 0);

}  // namespace attnode::kernels
