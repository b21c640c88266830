// Frontend of the row normalizations (compiled for baseline x86-64): picks the per-ISA
// kernels from runtime::active_isa() on every call (a switch on a cached
// value, so set_isa() takes effect immediately) and splits large inputs over
// the thread pool (common/parallel.h).
#include "norms.h"

#include <cstdint>

#include "../../runtime/cpu_features.h"
#include "../common/dispatch.h"
#include "../common/parallel.h"
#include "norms_isa.h"

namespace attnode::kernels {
namespace {

struct IsaKernels {
  void (*layer_norm_rows)(const float*, const float*, const float*, float*, int64_t, int64_t, float, int64_t, int64_t);
  void (*rms_norm_rows)(const float*, const float*, float*, int64_t, int64_t, float, int64_t, int64_t);
  void (*add_row)(const float*, const float*, float*, int64_t);
};

constexpr IsaKernels kPortable{portable::layer_norm_rows, portable::rms_norm_rows, portable::add_row};
constexpr IsaKernels kAvx2{avx2::layer_norm_rows, avx2::rms_norm_rows, avx2::add_row};
constexpr IsaKernels kAvx512{avx512::layer_norm_rows, avx512::rms_norm_rows, avx512::add_row};

const IsaKernels& isa_kernels() { return for_active_isa(kPortable, kAvx2, kAvx512); }

}  // namespace

void layer_norm_rows(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t cols,
                     float eps, int64_t ldx, int64_t ldy) {
  if (rows <= 0 || cols <= 0) return;
  if (ldx == 0) ldx = cols;
  if (ldy == 0) ldy = cols;
  const IsaKernels& k = isa_kernels();
  for_range(rows, rows_per_task(cols, kGrain), [&](int64_t b, int64_t e) {
    k.layer_norm_rows(x + b * ldx, gamma, beta, y + b * ldy, e - b, cols, eps, ldx, ldy);
  });
}

void rms_norm_rows(const float* x, const float* weight, float* y, int64_t rows, int64_t cols, float eps, int64_t ldx,
                   int64_t ldy) {
  if (rows <= 0 || cols <= 0) return;
  if (ldx == 0) ldx = cols;
  if (ldy == 0) ldy = cols;
  const IsaKernels& k = isa_kernels();
  for_range(rows, rows_per_task(cols, kGrain), [&](int64_t b, int64_t e) {
    k.rms_norm_rows(x + b * ldx, weight, y + b * ldy, e - b, cols, eps, ldx, ldy);
  });
}

void add_layer_norm_rows(const float* x, const float* r, const float* gamma, const float* beta, float* y, float* sum,
                         int64_t rows, int64_t cols, float eps) {
  if (rows <= 0 || cols <= 0) return;
  const IsaKernels& k = isa_kernels();
  // Composed from the per-ISA row kernels, row by row, so each sum row is
  // normalized while still in L1 and the result equals the unfused ops.
  for_range(rows, rows_per_task(cols, kGrain), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t o = i * cols;
      float* s = sum ? sum + o : y + o;
      k.add_row(x + o, r + o, s, cols);
      k.layer_norm_rows(s, gamma, beta, y + o, 1, cols, eps, cols, cols);
    }
  });
}

void add_rms_norm_rows(const float* x, const float* r, const float* weight, float* y, float* sum, int64_t rows,
                       int64_t cols, float eps) {
  if (rows <= 0 || cols <= 0) return;
  const IsaKernels& k = isa_kernels();
  // Same composition as add_layer_norm_rows: the sum row is normalized while
  // still in L1, and the result equals the unfused ops bit for bit.
  for_range(rows, rows_per_task(cols, kGrain), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t o = i * cols;
      float* s = sum ? sum + o : y + o;
      k.add_row(x + o, r + o, s, cols);
      k.rms_norm_rows(s, weight, y + o, 1, cols, eps, cols, cols);
    }
  });
}

}  // namespace attnode::kernels
