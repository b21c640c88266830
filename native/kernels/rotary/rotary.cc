// Frontend of RoPE (compiled for baseline x86-64): checks the positions,
// builds the cos/sin table of the call's positions once, then rotates the
// rows with the active path's kernel, spread over the thread pool by
// token. Each output row is computed by the same code whichever task it
// lands in, so results do not depend on the thread count.
#include "rotary.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "../common/dispatch.h"
#include "../common/parallel.h"
#include "rotary_isa.h"

namespace attnode::kernels {
namespace {

using RowsFn = void (*)(const float*, int64_t, float*, int64_t, int64_t, const float*, const float*, int64_t, int64_t,
                        bool);

// cos and sin tables of the current call, kept per calling thread between
// calls (the table is rebuilt every call; only the memory is reused).
thread_local std::vector<float> t_table;

// sincos of a table row costs ~20-40 ns per entry; below this many entries
// one thread does it.
constexpr int64_t kTableGrain = 4096;

}  // namespace

int64_t rope(const RopeParams& p) {
  if (p.batch <= 0 || p.seq <= 0 || p.heads <= 0 || p.dim <= 0) return -1;
  const int64_t n_pos = p.positions_batch_stride == 0 ? p.seq : (p.batch - 1) * p.positions_batch_stride + p.seq;
  for (int64_t i = 0; i < n_pos; ++i) {
    if (p.positions[i] < 0) return i;
  }
  const int64_t half = p.rotary_dim / 2;
  float* cos_t = nullptr;
  float* sin_t = nullptr;
  if (half > 0) {
    t_table.resize(static_cast<size_t>(2 * n_pos * half));
    cos_t = t_table.data();
    sin_t = cos_t + n_pos * half;
    // The angle as PyTorch forms it: float32(position) * inv_freq in float32;
    // its cos and sin in double, rounded once.
    for_range(n_pos, rows_per_task(half, kTableGrain), [&](int64_t lo, int64_t hi) {
      for (int64_t t = lo; t < hi; ++t) {
        const float pos = static_cast<float>(p.positions[t]);
        for (int64_t i = 0; i < half; ++i) {
          const double a = static_cast<double>(pos * p.inv_freq[i]);
          cos_t[t * half + i] = static_cast<float>(std::cos(a));
          sin_t[t * half + i] = static_cast<float>(std::sin(a));
        }
      }
    });
  }
  const RowsFn rows_fn = for_active_isa<RowsFn>(portable::rope_rows, avx2::rope_rows, avx512::rope_rows);
  const int64_t tokens = p.batch * p.seq;
  for_range(tokens, rows_per_task(p.heads * p.dim, kGrain), [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t b = t / p.seq, l = t % p.seq;
      const int64_t row = b * p.positions_batch_stride + l;
      const float* x = p.x + b * p.x_strides[0] + l * p.x_strides[1];
      float* y = p.y + b * p.y_strides[0] + l * p.y_strides[1];
      rows_fn(x, p.x_strides[2], y, p.y_strides[2], p.heads, cos_t ? cos_t + row * half : nullptr,
              sin_t ? sin_t + row * half : nullptr, p.dim, p.rotary_dim, p.interleaved);
    }
  });
  return -1;
}

}  // namespace attnode::kernels
