// Row-wise softmax.
//
// Pure function on pointers and sizes (no N-API); inputs were validated by
// the binding layer. Picks its kernel path from runtime::active_isa() and
// spreads large inputs over the runtime thread pool.
#pragma once

#include <cstdint>

namespace attnode::kernels {

// Numerically stable softmax over each row of a [rows, cols] matrix.
// Row strides: `ldx` / `ldy` are the elements between the starts of
// consecutive rows of x / y; 0 means cols (contiguous). A stride above cols
// reads and writes a row-strided view (e.g. a column slice of a wider matrix)
// in place; the elements between rows are never touched. x and y may alias
// only as the same view (x == y and ldx == ldy).
void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols, int64_t ldx = 0, int64_t ldy = 0);

// log_softmax over each row, as PyTorch computes it: (x - max) - log(sum exp(x - max)). Strides and aliasing as
// softmax_rows.
void log_softmax_rows(const float* x, float* y, int64_t rows, int64_t cols, int64_t ldx = 0, int64_t ldy = 0);

// The backward of softmax_rows (log = false) or log_softmax_rows (log = true) from their output y and the
// gradient dy of it, per row: dx = y * (dy - sum(dy * y)) or dx = dy - exp(y) * sum(dy) (PyTorch's
// _softmax_backward_data / _log_softmax_backward_data). Row strides ldy / lddy / lddx (0: cols); dx may alias
// dy or y only as the same view.
void softmax_backward_rows(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols, bool log,
                           int64_t ldy = 0, int64_t lddy = 0, int64_t lddx = 0);

}  // namespace attnode::kernels
