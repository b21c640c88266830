// Two strided operands walked over one index space, row by row: the shared
// skeleton of the broadcasting binary op (elementwise/) and the strided copy
// (layout/). Size-1 dims are dropped and neighbours contiguous with each
// other in both operands merged, so dense regions become long rows; the rows
// (the innermost dim) are then split over the thread pool, each task walking
// its rows with an odometer from its own start.
//
// Inline bodies: include only from frontends compiled for baseline x86-64,
// never from a per-ISA file (see simd/README.md).
#pragma once

#include <cstdint>

#include "parallel.h"

namespace attnode::kernels {

// An index space of up to 8 dims and the element strides of two operands over it.
struct TwoStrided {
  int64_t shape[8];
  int64_t a[8];
  int64_t b[8];
  int nd = 0;         // dims left after canonicalising; 0 means a single element
  int64_t total = 1;  // elements
};

// Canonicalises (shape, a_strides, b_strides); false when the space is empty.
inline bool coalesce_two(const int64_t* shape, const int64_t* a_strides, const int64_t* b_strides, int ndim,
                         TwoStrided& t) {
  t.nd = 0;
  t.total = 1;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 0) return false;
    if (shape[d] == 1) continue;
    t.total *= shape[d];
    const int n = t.nd;
    if (n > 0 && t.a[n - 1] == a_strides[d] * shape[d] && t.b[n - 1] == b_strides[d] * shape[d]) {
      t.shape[n - 1] *= shape[d];
      t.a[n - 1] = a_strides[d];
      t.b[n - 1] = b_strides[d];
    } else {
      t.shape[n] = shape[d];
      t.a[n] = a_strides[d];
      t.b[n] = b_strides[d];
      ++t.nd;
    }
  }
  return true;
}

// Calls row(r, offset_a, offset_b) for every row r of the innermost dim (t.nd >= 1), in parallel tasks.
template <class Row>
void for_each_row(const TwoStrided& t, int64_t grain, Row&& row) {
  const int64_t n_in = t.shape[t.nd - 1];
  const int64_t rows = t.total / n_in;
  const int outer = t.nd - 1;
  for_range(rows, rows_per_task(n_in, grain), [&](int64_t lo, int64_t hi) {
    int64_t idx[8];
    int64_t rem = lo, oa = 0, ob = 0;
    for (int d = outer - 1; d >= 0; --d) {
      idx[d] = rem % t.shape[d];
      rem /= t.shape[d];
      oa += idx[d] * t.a[d];
      ob += idx[d] * t.b[d];
    }
    for (int64_t r = lo; r < hi; ++r) {
      row(r, oa, ob);
      for (int d = outer - 1; d >= 0; --d) {
        oa += t.a[d];
        ob += t.b[d];
        if (++idx[d] < t.shape[d]) break;
        oa -= t.a[d] * t.shape[d];
        ob -= t.b[d] * t.shape[d];
        idx[d] = 0;
      }
    }
  });
}

}  // namespace attnode::kernels
