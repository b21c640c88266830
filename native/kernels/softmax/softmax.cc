// Frontend of the row softmax (compiled for baseline x86-64): picks the per-ISA
// kernels from runtime::active_isa() on every call (a switch on a cached
// value, so set_isa() takes effect immediately) and splits large inputs over
// the thread pool (common/parallel.h).
#include "softmax.h"

#include <cstdint>

#include "../../runtime/cpu_features.h"
#include "../common/dispatch.h"
#include "../common/parallel.h"
#include "softmax_isa.h"

namespace attnode::kernels {
namespace {

struct IsaKernels {
  void (*softmax_rows)(const float*, float*, int64_t, int64_t, int64_t, int64_t);
  void (*log_softmax_rows)(const float*, float*, int64_t, int64_t, int64_t, int64_t);
  void (*softmax_backward_rows)(const float*, const float*, float*, int64_t, int64_t, bool, int64_t, int64_t, int64_t);
};

constexpr IsaKernels kPortable{portable::softmax_rows, portable::log_softmax_rows, portable::softmax_backward_rows};
constexpr IsaKernels kAvx2{avx2::softmax_rows, avx2::log_softmax_rows, avx2::softmax_backward_rows};
constexpr IsaKernels kAvx512{avx512::softmax_rows, avx512::log_softmax_rows, avx512::softmax_backward_rows};

const IsaKernels& isa_kernels() { return for_active_isa(kPortable, kAvx2, kAvx512); }

}  // namespace

void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols, int64_t ldx, int64_t ldy) {
  if (rows <= 0 || cols <= 0) return;
  if (ldx == 0) ldx = cols;
  if (ldy == 0) ldy = cols;
  const IsaKernels& k = isa_kernels();
  for_range(rows, rows_per_task(cols, kGrain),
            [&](int64_t b, int64_t e) { k.softmax_rows(x + b * ldx, y + b * ldy, e - b, cols, ldx, ldy); });
}

void log_softmax_rows(const float* x, float* y, int64_t rows, int64_t cols, int64_t ldx, int64_t ldy) {
  if (rows <= 0 || cols <= 0) return;
  if (ldx == 0) ldx = cols;
  if (ldy == 0) ldy = cols;
  const IsaKernels& k = isa_kernels();
  for_range(rows, rows_per_task(cols, kGrain),
            [&](int64_t b, int64_t e) { k.log_softmax_rows(x + b * ldx, y + b * ldy, e - b, cols, ldx, ldy); });
}

void softmax_backward_rows(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols, bool log,
                           int64_t ldy, int64_t lddy, int64_t lddx) {
  if (rows <= 0 || cols <= 0) return;
  if (ldy == 0) ldy = cols;
  if (lddy == 0) lddy = cols;
  if (lddx == 0) lddx = cols;
  const IsaKernels& k = isa_kernels();
  for_range(rows, rows_per_task(cols, kGrain), [&](int64_t b, int64_t e) {
    k.softmax_backward_rows(y + b * ldy, dy + b * lddy, dx + b * lddx, e - b, cols, log, ldy, lddy, lddx);
  });
}

}  // namespace attnode::kernels
