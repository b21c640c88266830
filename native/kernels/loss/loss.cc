// Frontend of the losses (compiled for baseline x86-64): checks the targets
// (each loaded once, into a private copy the row kernels then read), picks
// the per-ISA kernels from runtime::active_isa() on every call and splits
// rows over the thread pool (common/parallel.h).
#include "loss.h"

#include <cstdint>
#include <vector>

#include "../../runtime/cpu_features.h"
#include "../common/dispatch.h"
#include "../common/parallel.h"
#include "loss_isa.h"

namespace attnode::kernels {
namespace {

struct IsaKernels {
  void (*cross_entropy_rows)(const float*, int64_t, const int32_t*, const float*, int64_t, float, float*, float*,
                             int64_t, int64_t);
  void (*cross_entropy_backward_rows)(const float*, int64_t, const float*, const int32_t*, const float*, double,
                                      int64_t, float, const float*, int64_t, float*, int64_t, int64_t, int64_t);
};

constexpr IsaKernels kPortable{portable::cross_entropy_rows, portable::cross_entropy_backward_rows};
constexpr IsaKernels kAvx2{avx2::cross_entropy_rows, avx2::cross_entropy_backward_rows};
constexpr IsaKernels kAvx512{avx512::cross_entropy_rows, avx512::cross_entropy_backward_rows};

const IsaKernels& isa_kernels() { return for_active_isa(kPortable, kAvx2, kAvx512); }

// A private copy of the targets in which a bad one (neither a class nor ignore_index) reads as ignore_index;
// `first_bad` gets its position (or -1). Targets are read once each, so memory changing underneath cannot send a
// kernel outside its row.
std::vector<int32_t> checked_targets(const int32_t* target, int64_t rows, int64_t cols, int64_t ignore_index,
                                     int64_t* first_bad) {
  std::vector<int32_t> t(static_cast<size_t>(rows));
  *first_bad = -1;
  for (int64_t i = 0; i < rows; ++i) {
    const int32_t v = __atomic_load_n(target + i, __ATOMIC_RELAXED);
    const bool ok = v == ignore_index || (v >= 0 && v < cols);
    if (!ok && *first_bad < 0) *first_bad = i;
    t[static_cast<size_t>(i)] = ok ? v : static_cast<int32_t>(ignore_index);
  }
  return t;
}

}  // namespace

int64_t cross_entropy_rows(const float* x, int64_t ldx, const int32_t* target, const float* weight,
                           int64_t ignore_index, float label_smoothing, float* loss, float* lse, int64_t rows,
                           int64_t cols) {
  if (rows <= 0) return -1;
  if (ldx == 0) ldx = cols;
  int64_t bad;
  const std::vector<int32_t> t = checked_targets(target, rows, cols, ignore_index, &bad);
  if (cols <= 0) {
    // No classes: every (valid) target is ignored, the log of an empty sum is -inf.
    for (int64_t i = 0; i < rows; ++i) {
      loss[i] = 0.0f;
      lse[i] = -__builtin_huge_valf();
    }
    return bad;
  }
  const IsaKernels& k = isa_kernels();
  for_range(rows, rows_per_task(cols, kGrain), [&](int64_t b, int64_t e) {
    k.cross_entropy_rows(x + b * ldx, ldx, t.data() + b, weight, ignore_index, label_smoothing, loss + b, lse + b,
                         e - b, cols);
  });
  return bad;
}

int64_t cross_entropy_backward_rows(const float* x, int64_t ldx, const float* lse, const int32_t* target,
                                    const float* weight, int64_t ignore_index, float label_smoothing,
                                    const float* dloss, int64_t dloss_stride, float* dx, int64_t lddx, int64_t rows,
                                    int64_t cols) {
  if (rows <= 0 || cols <= 0) return -1;
  if (ldx == 0) ldx = cols;
  if (lddx == 0) lddx = cols;
  int64_t bad;
  const std::vector<int32_t> t = checked_targets(target, rows, cols, ignore_index, &bad);
  double w_sum = static_cast<double>(cols);
  if (weight) {
    w_sum = 0.0;
    for (int64_t c = 0; c < cols; ++c) w_sum += weight[c];
  }
  const IsaKernels& k = isa_kernels();
  for_range(rows, rows_per_task(cols, kGrain), [&](int64_t b, int64_t e) {
    k.cross_entropy_backward_rows(x + b * ldx, ldx, lse + b, t.data() + b, weight, w_sum, ignore_index,
                                  label_smoothing, dloss + b * dloss_stride, dloss_stride, dx + b * lddx, lddx, e - b,
                                  cols);
  });
  return bad;
}

}  // namespace attnode::kernels
