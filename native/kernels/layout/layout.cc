// Embedding gather, row scatter and head transposes: plain copies, the same on every
// kernel path; large inputs are split over the thread pool
// (common/parallel.h).
#include "layout.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../common/parallel.h"
#include "../common/strided_rows.h"

namespace attnode::kernels {

int64_t embedding(const float* weight, int64_t num, int64_t dim, int64_t ld_w, const int32_t* ids, int64_t n_ids,
                  float* out, int64_t ld_out) {
  // Each id is loaded exactly once and that value is both checked and used,
  // so ids changing underneath (shared memory) can never lead to an
  // out-of-bounds read. Rows of bad ids are zero-filled; the smallest bad
  // position is returned (the caller throws).
  std::atomic<int64_t> first_bad{INT64_MAX};
  const size_t row_bytes = static_cast<size_t>(dim) * sizeof(float);
  for_range(n_ids, rows_per_task(dim, kCopyGrain), [&](int64_t lo, int64_t hi) {
    int64_t bad = INT64_MAX;
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t id = __atomic_load_n(ids + i, __ATOMIC_RELAXED);
      if (id >= 0 && id < num) {
        std::memcpy(out + i * ld_out, weight + id * ld_w, row_bytes);
      } else {
        std::memset(out + i * ld_out, 0, row_bytes);
        if (bad == INT64_MAX) bad = i;
      }
    }
    int64_t cur = first_bad.load(std::memory_order_relaxed);
    while (bad < cur && !first_bad.compare_exchange_weak(cur, bad, std::memory_order_relaxed)) {
    }
  });
  const int64_t r = first_bad.load(std::memory_order_relaxed);
  return r == INT64_MAX ? -1 : r;
}

void index_copy_rows(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t cols, const int32_t* index,
                     int64_t n) {
  if (n <= 0 || cols <= 0) return;
  const size_t row_bytes = static_cast<size_t>(cols) * sizeof(float);
  for_range(n, rows_per_task(cols, kCopyGrain), [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) std::memcpy(y + index[i] * ldy, x + i * ldx, row_bytes);
  });
}

int64_t embedding_backward(const float* dy, int64_t ld_dy, const int32_t* ids, int64_t n_ids, float* dweight,
                           int64_t num, int64_t dim, int64_t padding_idx) {
  if (num <= 0 || dim <= 0) return -1;
  // Ids are read once each, into a private copy checked here: the column tasks then all see the same values.
  std::vector<int32_t> id(static_cast<size_t>(n_ids));
  int64_t first_bad = -1;
  for (int64_t i = 0; i < n_ids; ++i) {
    const int32_t v = __atomic_load_n(ids + i, __ATOMIC_RELAXED);
    const bool ok = v >= 0 && v < num;
    if (!ok && first_bad < 0) first_bad = i;
    id[static_cast<size_t>(i)] = ok && v != padding_idx ? v : -1;
  }
  // Column blocks of at least 16 floats (a cache line); each task owns its columns of every row of dweight.
  const int64_t per_task = std::max<int64_t>(16, (kCopyGrain / std::max<int64_t>(n_ids + num, 1) + 15) / 16 * 16);
  for_range(dim, per_task, [&](int64_t c0, int64_t c1) {
    const size_t bytes = static_cast<size_t>(c1 - c0) * sizeof(float);
    for (int64_t r = 0; r < num; ++r) std::memset(dweight + r * dim + c0, 0, bytes);
    for (int64_t i = 0; i < n_ids; ++i) {
      const int32_t r = id[static_cast<size_t>(i)];
      if (r < 0) continue;
      float* dst = dweight + r * dim;
      const float* src = dy + i * ld_dy;
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  });
  return first_bad;
}

void permute_0213(const float* x, float* y, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  if (d0 <= 0 || d1 <= 0 || d2 <= 0 || d3 <= 0) return;
  // Output order y[a][c][b][:] is written sequentially; input rows are read
  // with stride d2*d3. For short rows (d3 < 16 floats, under a cache line)
  // `tc` output planes c are filled together so each input cache line is
  // used fully while it is hot, with at most 16 concurrent write streams.
  const int64_t tc = d3 >= 16 ? 1 : std::min<int64_t>({d2, 16, std::max<int64_t>(1, 64 / d3)});
  const int64_t ncb = (d2 + tc - 1) / tc;
  const int64_t units = d0 * ncb;
  const size_t row_bytes = static_cast<size_t>(d3) * sizeof(float);
  for_range(units, std::max<int64_t>(1, kCopyGrain / (d1 * tc * d3)), [&](int64_t lo, int64_t hi) {
    for (int64_t u = lo; u < hi; ++u) {
      const int64_t a = u / ncb;
      const int64_t c0 = (u % ncb) * tc, c1 = std::min(d2, c0 + tc);
      const float* xa = x + a * d1 * d2 * d3;
      float* ya = y + a * d2 * d1 * d3;
      for (int64_t b = 0; b < d1; ++b) {
        for (int64_t c = c0; c < c1; ++c) {
          const float* src = xa + (b * d2 + c) * d3;
          float* dst = ya + (c * d1 + b) * d3;
          if (d3 >= 16) {
            std::memcpy(dst, src, row_bytes);
          } else {
            for (int64_t j = 0; j < d3; ++j) dst[j] = src[j];
          }
        }
      }
    }
  });
}

void copy_strided(const float* x, const int64_t* x_strides, float* y, const int64_t* y_strides, const int64_t* shape,
                  int ndim) {
  TwoStrided t;  // x as operand a, y as operand b (common/strided_rows.h)
  if (!coalesce_two(shape, x_strides, y_strides, ndim, t)) return;
  if (t.nd == 0) {
    *y = *x;
    return;
  }
  const int64_t n_in = t.shape[t.nd - 1], ix = t.a[t.nd - 1], iy = t.b[t.nd - 1];
  const bool unit = ix == 1 && iy == 1;
  const size_t row_bytes = static_cast<size_t>(n_in) * sizeof(float);
  for_each_row(t, kCopyGrain, [&](int64_t, int64_t ox, int64_t oy) {
    const float* px = x + ox;
    float* py = y + oy;
    if (px == py) return;  // the same view (checked by the binding): nothing to move
    if (unit) {
      std::memcpy(py, px, row_bytes);
    } else {
      for (int64_t i = 0; i < n_in; ++i) py[i * iy] = px[i * ix];
    }
  });
}

}  // namespace attnode::kernels
