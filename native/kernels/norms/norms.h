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
void add_layer_norm_rows(const float* x, const float* r, const float* gamma, const float* beta, float* y, float* sum,
                         int64_t rows, int64_t cols, float eps);

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

}  // namespace attnode::kernels
