// Data movement without arithmetic: the embedding gather, the row scatter
// (index_copy_rows) and the head split/merge transpose. Plain copies (memcpy and scalar loops), the same on
// every kernel path, so there are no per-ISA files.
//
// Pure functions on pointers and sizes (no N-API); inputs were validated by
// the binding layer. Large inputs are spread over the runtime thread pool.
#pragma once

#include <cstdint>

namespace attnode::kernels {

// out[i, :dim] = weight[ids[i], :dim], rows of weight ld_w elements apart
// and rows of out ld_out apart (both >= dim; dim for dense rows): the
// embedding lookup, and any gather of rows over a leading axis (a KV cache's
// beam reorder copies the cached positions of each sequence). Every id was
// checked to be in [0, num) by the caller; the kernel still never reads
// outside weight (it re-checks, zero-fills the row of a bad id and returns
// the index of the first bad id, or -1 when all were fine).
int64_t embedding(const float* weight, int64_t num, int64_t dim, int64_t ld_w, const int32_t* ids, int64_t n_ids,
                  float* out, int64_t ld_out);

// y[index[i] * ldy + c] = x[i * ldx + c] for i < n, c < cols: rows of x
// written to the rows of y that `index` names (PyTorch's index_copy_ along
// dim 0; a step's new keys/values into their sequences' places in a KV
// pool). The caller checked every index is in range and distinct (so rows
// are written by one task each) and that x and y do not overlap.
void index_copy_rows(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t cols, const int32_t* index,
                     int64_t n);
// The embedding's weight gradient (scatter-add): dweight [num, dim] (overwritten) gets, in row r, the sum of the
// rows i of dy (rows ld_dy apart) whose ids[i] == r, in order of i; rows no id names are 0, and so is row
// padding_idx (>= 0; -1 for none), as PyTorch's embedding_backward. Columns are split over threads and every
// element sums its rows in order, so the result does not depend on the thread count. Ids are checked like
// embedding's: returns the position of the first id outside [0, num) (its row is skipped), or -1.
int64_t embedding_backward(const float* dy, int64_t ld_dy, const int32_t* ids, int64_t n_ids, float* dweight,
                           int64_t num, int64_t dim, int64_t padding_idx);

// [d0, d1, d2, d3] -> [d0, d2, d1, d3]; the head split ([B,S,H,D] -> [B,H,S,D])
// and merge (the inverse) transposes. x and y must not alias.
void permute_0213(const float* x, float* y, int64_t d0, int64_t d1, int64_t d2, int64_t d3);

// y[i] = x[i] over an `ndim`-dimensional index space `shape` (ndim <= 8),
// both addressed through element strides: a strided view copied into
// another (torch.cat's slices of its output, a copy into a cache slot). The
// binding checked that y's elements are distinct and that x and y do not
// overlap (or are the same view: then nothing moves).
void copy_strided(const float* x, const int64_t* x_strides, float* y, const int64_t* y_strides, const int64_t* shape,
                  int ndim);

}  // namespace attnode::kernels
