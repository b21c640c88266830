// Element-wise and row-wise layer ops: softmax, layerNorm, activations,
// broadcasting binary ops, embedding gather, head split/merge transpose.
//
// Pure functions on pointers and sizes (no N-API). Inputs were validated by
// the binding layer. Each function picks its kernel path from
// runtime::active_isa() and spreads large inputs over the runtime thread pool.
// `x` and `y` may alias (in place) unless stated otherwise.
#pragma once

#include <cstdint>

namespace attnode::kernels {

// Row strides: `ldx` / `ldy` are the elements between the starts of
// consecutive rows of x / y; 0 means cols (contiguous). A stride above cols
// reads and writes a row-strided view (e.g. a column slice of a wider matrix)
// in place; the elements between rows are never touched. x and y may alias
// only as the same view (x == y and ldx == ldy).

// Numerically stable softmax over each row of a [rows, cols] matrix.
void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols, int64_t ldx = 0, int64_t ldy = 0);

// PyTorch LayerNorm over each row: (x - mean) / sqrt(var + eps) * gamma + beta,
// biased variance. gamma / beta may be null (elementwise_affine = false).
void layer_norm_rows(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t cols,
                     float eps, int64_t ldx = 0, int64_t ldy = 0);

// PyTorch RMSNorm over each row: y = x / sqrt(mean(x^2) + eps) * weight.
// weight may be null (elementwise_affine = false).
void rms_norm_rows(const float* x, const float* weight, float* y, int64_t rows, int64_t cols, float eps,
                   int64_t ldx = 0, int64_t ldy = 0);

// Residual add fused with LayerNorm, the `norm(x + sublayer(x))` of a
// Transformer layer: per row, s = x + r, then y = layer_norm(s). One pass
// over memory instead of two (the sum row stays in L1), bit-identical to
// binary_op(Add) followed by layer_norm_rows. If `sum` is not null it
// receives s (a pre-norm layer needs the sum as its next residual). y and
// sum may each alias x or r exactly, but not each other.
void add_layer_norm_rows(const float* x, const float* r, const float* gamma, const float* beta, float* y, float* sum,
                         int64_t rows, int64_t cols, float eps);

// Residual add fused with RMSNorm (a pre-norm decoder's `norm(x + h)`): per
// row, s = x + r, then y = rms_norm(s); `sum`, if not null, receives s.
// Bit-identical to binary_op(Add) followed by rms_norm_rows. Contiguous rows;
// y and sum may each alias x or r exactly, but not each other.
void add_rms_norm_rows(const float* x, const float* r, const float* weight, float* y, float* sum, int64_t rows,
                       int64_t cols, float eps);

void relu(const float* x, float* y, int64_t n);
// Exact erf form (PyTorch default) or the tanh approximation (approximate='tanh').
void gelu(const float* x, float* y, int64_t n, bool tanh_approx);

enum class BinaryOp : int { Add = 0, Sub = 1, Mul = 2, Div = 3 };
// y[i] = a[i] op b[i] over an `ndim`-dimensional index space `shape`
// (ndim <= 8). Strides are in elements; a stride of 0 broadcasts. y is
// contiguous with that shape. y must not alias a broadcast operand.
void binary_op(BinaryOp op, const float* a, const int64_t* a_strides, const float* b, const int64_t* b_strides,
               float* y, const int64_t* shape, int ndim);

// out[i, :] = weight[ids[i], :]. Every id was checked to be in [0, num) by
// the caller; the kernel still never reads outside weight (it re-checks and
// returns the index of the first bad id, or -1 when all were fine).
int64_t embedding(const float* weight, int64_t num, int64_t dim, const int32_t* ids, int64_t n_ids, float* out);

// [d0, d1, d2, d3] -> [d0, d2, d1, d3]; the head split ([B,S,H,D] -> [B,H,S,D])
// and merge (the inverse) transposes. x and y must not alias.
void permute_0213(const float* x, float* y, int64_t d0, int64_t d1, int64_t d2, int64_t d3);

}  // namespace attnode::kernels
