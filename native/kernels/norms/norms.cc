// Frontend of the row normalizations (compiled for baseline x86-64): picks the per-ISA
// kernels from runtime::active_isa() on every call (a switch on a cached
// value, so set_isa() takes effect immediately) and splits large inputs over
// the thread pool (common/parallel.h).
#include "norms.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../../runtime/cpu_features.h"
#include "../common/dispatch.h"
#include "../common/parallel.h"
#include "norms_isa.h"

namespace attnode::kernels {
namespace {

struct IsaKernels {
  void (*layer_norm_rows)(const float*, const float*, const float*, float*, int64_t, int64_t, float, int64_t, int64_t,
                          float*);
  void (*rms_norm_rows)(const float*, const float*, float*, int64_t, int64_t, float, int64_t, int64_t);
  void (*add_row)(const float*, const float*, float*, int64_t);
  void (*layer_norm_backward_rows)(const float*, const float*, const float*, const float*, const float*, float*, float*,
                                   float*, int64_t, int64_t, float, int64_t, int64_t, int64_t);
  void (*rms_norm_backward_rows)(const float*, const float*, const float*, float*, float*, int64_t, int64_t, float,
                                 int64_t, int64_t, int64_t);
};

constexpr IsaKernels kPortable{portable::layer_norm_rows, portable::rms_norm_rows, portable::add_row,
                               portable::layer_norm_backward_rows, portable::rms_norm_backward_rows};
constexpr IsaKernels kAvx2{avx2::layer_norm_rows, avx2::rms_norm_rows, avx2::add_row, avx2::layer_norm_backward_rows,
                           avx2::rms_norm_backward_rows};
constexpr IsaKernels kAvx512{avx512::layer_norm_rows, avx512::rms_norm_rows, avx512::add_row,
                             avx512::layer_norm_backward_rows, avx512::rms_norm_backward_rows};

const IsaKernels& isa_kernels() { return for_active_isa(kPortable, kAvx2, kAvx512); }

// Rows per partial sum of the parameter gradients: fixed, so the sums (each chunk's rows in order, then the chunks
// in order) are the same whatever the thread count.
constexpr int64_t kParamGradChunk = 16;

// Runs `rows_fn(r0, r1, partials...)` over fixed chunks of rows, each chunk accumulating into its own row of the
// `n_out` partial buffers, then sums the partials over the chunks into `outs` (in double, chunk order).
template <typename F>
void with_param_partials(int64_t rows, int64_t cols, float* const* outs, int n_out, F rows_fn) {
  const int64_t chunks = (rows + kParamGradChunk - 1) / kParamGradChunk;
  std::vector<float> partial(static_cast<size_t>(chunks * cols * n_out), 0.0f);
  const int64_t per_task = std::max<int64_t>(1, kGrain / (cols * kParamGradChunk));
  for_range(chunks, per_task, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      const int64_t r0 = c * kParamGradChunk, r1 = std::min(rows, r0 + kParamGradChunk);
      float* p = partial.data() + c * cols * n_out;
      rows_fn(r0, r1, p, n_out > 1 ? p + cols : nullptr);
    }
  });
  for_range(cols, std::max<int64_t>(64, kGrain / std::max<int64_t>(chunks, 1)), [&](int64_t b, int64_t e) {
    for (int o = 0; o < n_out; ++o) {
      for (int64_t j = b; j < e; ++j) {
        double s = 0.0;
        for (int64_t c = 0; c < chunks; ++c) s += partial[static_cast<size_t>((c * n_out + o) * cols + j)];
        outs[o][j] = static_cast<float>(s);
      }
    }
  });
}

}  // namespace

void layer_norm_rows(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t cols,
                     float eps, int64_t ldx, int64_t ldy) {
  if (rows <= 0 || cols <= 0) return;
  if (ldx == 0) ldx = cols;
  if (ldy == 0) ldy = cols;
  const IsaKernels& k = isa_kernels();
  for_range(rows, rows_per_task(cols, kGrain), [&](int64_t b, int64_t e) {
    k.layer_norm_rows(x + b * ldx, gamma, beta, y + b * ldy, e - b, cols, eps, ldx, ldy, nullptr);
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

void layer_norm_backward_rows(const float* x, const float* gamma, const float* dy, float* dx, float* dgamma,
                              float* dbeta, int64_t rows, int64_t cols, float eps, int64_t ldx, int64_t lddy,
                              int64_t lddx, const float* beta, const float* rstd) {
  if (rows <= 0 || cols <= 0) {
    if (cols > 0 && rows == 0) {
      if (dgamma) std::fill(dgamma, dgamma + cols, 0.0f);
      if (dbeta) std::fill(dbeta, dbeta + cols, 0.0f);
    }
    return;
  }
  if (ldx == 0) ldx = cols;
  if (lddy == 0) lddy = cols;
  if (lddx == 0) lddx = cols;
  const IsaKernels& k = isa_kernels();
  auto run = [&](int64_t r0, int64_t r1, float* pg, float* pb) {
    k.layer_norm_backward_rows(x + r0 * ldx, gamma, beta, rstd ? rstd + r0 : nullptr, dy + r0 * lddy, dx + r0 * lddx,
                               pg, pb, r1 - r0, cols, eps, ldx, lddy, lddx);
  };
  if (!dgamma && !dbeta) {
    for_range(rows, rows_per_task(cols, kGrain), [&](int64_t b, int64_t e) { run(b, e, nullptr, nullptr); });
    return;
  }
  // Both partials are computed (the row pass has dy * xhat and dy at hand); only the requested ones are kept.
  float* outs[2] = {dgamma, dbeta};
  std::vector<float> unused;
  for (float*& o : outs) {
    if (!o) {
      unused.resize(static_cast<size_t>(cols));
      o = unused.data();
    }
  }
  with_param_partials(rows, cols, outs, 2, run);
}

void rms_norm_backward_rows(const float* x, const float* weight, const float* dy, float* dx, float* dweight,
                            int64_t rows, int64_t cols, float eps, int64_t ldx, int64_t lddy, int64_t lddx) {
  if (rows <= 0 || cols <= 0) {
    if (cols > 0 && rows == 0 && dweight) std::fill(dweight, dweight + cols, 0.0f);
    return;
  }
  if (ldx == 0) ldx = cols;
  if (lddy == 0) lddy = cols;
  if (lddx == 0) lddx = cols;
  const IsaKernels& k = isa_kernels();
  auto run = [&](int64_t r0, int64_t r1, float* pw, float*) {
    k.rms_norm_backward_rows(x + r0 * ldx, weight, dy + r0 * lddy, dx + r0 * lddx, pw, r1 - r0, cols, eps, ldx, lddy,
                             lddx);
  };
  if (!dweight) {
    for_range(rows, rows_per_task(cols, kGrain), [&](int64_t b, int64_t e) { run(b, e, nullptr, nullptr); });
    return;
  }
  float* outs[1] = {dweight};
  with_param_partials(rows, cols, outs, 1, run);
}

void add_layer_norm_rows(const float* x, const float* r, const float* gamma, const float* beta, float* y, float* sum,
                         int64_t rows, int64_t cols, float eps, float* rstd) {
  if (rows <= 0 || cols <= 0) return;
  const IsaKernels& k = isa_kernels();
  // Composed from the per-ISA row kernels, row by row, so each sum row is
  // normalized while still in L1 and the result equals the unfused ops.
  for_range(rows, rows_per_task(cols, kGrain), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t o = i * cols;
      float* s = sum ? sum + o : y + o;
      k.add_row(x + o, r + o, s, cols);
      k.layer_norm_rows(s, gamma, beta, y + o, 1, cols, eps, cols, cols, rstd ? rstd + i : nullptr);
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
