// Losses: the fused log-softmax + cross-entropy of PyTorch 1.13's
// F.cross_entropy (class-index targets, class weights, ignore_index, label
// smoothing), forward and backward, per row of logits.
//
// Pure functions on pointers and sizes (no N-API); inputs were validated by
// the binding layer. Each picks its kernel path from runtime::active_isa()
// and spreads rows over the runtime thread pool; every row is computed by
// the same code whichever chunk it lands in, so results do not depend on the
// thread count.
#pragma once

#include <cstdint>

namespace attnode::kernels {

// Per row i of logits x [rows, cols] (rows ldx apart, 0: cols), with t = target[i], w = weight (all 1 when null),
// lse = log(sum_c exp(x[c])) and eps = label_smoothing:
//   loss[i] = (1 - eps) * w[t] * (lse - x[t]) + (eps / cols) * sum_c w[c] * (lse - x[c]),
// PyTorch's per-element loss before the reduction; a row whose target is ignore_index gets 0 (with no classes at all
// every target must be ignore_index, and lse is -inf). lse[i] receives the
// row's log-sum-exp (for the backward). Returns the position of the first target that is neither in
// [0, cols) nor ignore_index (its row gets loss 0), or -1.
int64_t cross_entropy_rows(const float* x, int64_t ldx, const int32_t* target, const float* weight,
                           int64_t ignore_index, float label_smoothing, float* loss, float* lse, int64_t rows,
                           int64_t cols);

// The gradient of sum_i dloss_i * loss[i] with respect to x, from the forward's lse:
//   dx[i, c] = dloss_i * ((1 - eps) * w[t] * (p_c - [c == t]) + (eps / cols) * (W * p_c - w[c])),
// p = exp(x - lse), W = sum_c w[c]; rows whose target is ignore_index get 0. dloss_i = dloss[i * dloss_stride]
// (stride 0: one value for every row, as a 'mean' or 'sum' reduction gives). dx rows lddx apart (0: cols); dx may
// alias x only as the same view. Returns the position of the first bad target (its row gets 0), or -1.
int64_t cross_entropy_backward_rows(const float* x, int64_t ldx, const float* lse, const int32_t* target,
                                    const float* weight, int64_t ignore_index, float label_smoothing,
                                    const float* dloss, int64_t dloss_stride, float* dx, int64_t lddx, int64_t rows,
                                    int64_t cols);

}  // namespace attnode::kernels
