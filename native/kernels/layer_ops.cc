// Frontend of the layer ops (compiled for baseline x86-64): picks the per-ISA
// kernels from runtime::active_isa() on every call (a switch on a cached
// value, so set_isa() takes effect immediately) and spreads large inputs over
// the thread pool. Small inputs never touch the pool, so batch-1 calls cost
// a function call and nothing else.
//
// Every split is along rows (row ops) or along elements (element-wise ops),
// and each output element is computed by the same code whichever chunk it
// lands in, so results do not depend on the thread count.
#include "layer_ops.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>

#include "../runtime/cpu_features.h"
#include "../runtime/thread_pool.h"
#include "layer_ops_isa.h"

namespace attnode::kernels {
namespace {

struct IsaKernels {
  void (*softmax_rows)(const float*, float*, int64_t, int64_t, int64_t, int64_t);
  void (*layer_norm_rows)(const float*, const float*, const float*, float*, int64_t, int64_t, float, int64_t, int64_t);
  void (*rms_norm_rows)(const float*, const float*, float*, int64_t, int64_t, float, int64_t, int64_t);
  void (*relu)(const float*, float*, int64_t);
  void (*gelu)(const float*, float*, int64_t, bool);
  void (*binary_row)(BinaryOp, const float*, int64_t, const float*, int64_t, float*, int64_t);
};

constexpr IsaKernels kPortable{portable::softmax_rows,  portable::layer_norm_rows,
                               portable::rms_norm_rows, portable::relu,
                               portable::gelu,          portable::binary_row};
constexpr IsaKernels kAvx2{avx2::softmax_rows, avx2::layer_norm_rows, avx2::rms_norm_rows, avx2::relu,
                           avx2::gelu,         avx2::binary_row};
constexpr IsaKernels kAvx512{avx512::softmax_rows, avx512::layer_norm_rows, avx512::rms_norm_rows, avx512::relu,
                             avx512::gelu,         avx512::binary_row};

const IsaKernels& isa_kernels() {
  switch (runtime::active_isa()) {
    case runtime::Isa::Avx512:
      return kAvx512;
    case runtime::Isa::Avx2:
      return kAvx2;
    default:
      return kPortable;
  }
}

// Elements per parallel task. Below this a task is a few microseconds of
// work on one core, comparable to waking the other worker, so it runs inline.
constexpr int64_t kGrain = 32 * 1024;
// Memory-bound ops (relu, binary, copies) do ~1 flop per element and gain
// little from a second core until the data leaves L2.
constexpr int64_t kCopyGrain = 64 * 1024;

int64_t rows_per_task(int64_t cols, int64_t grain) { return std::max<int64_t>(1, grain / std::max<int64_t>(cols, 1)); }

// Runs f(begin, end) over [0, n), in parallel only when n > grain (the pool
// is not even looked up for small inputs).
template <typename F>
void for_range(int64_t n, int64_t grain, F&& f) {
  if (n <= 0) return;
  if (n <= grain) {
    f(int64_t{0}, n);
    return;
  }
  runtime::ThreadPool::instance().parallel_for(n, grain, [&](int64_t b, int64_t e) { f(b, e); });
}

// Fallback inner loop for non-unit, non-zero inner strides (e.g. a transposed
// operand). Scalar IEEE ops give the same bits as the SIMD paths.
void strided_row(BinaryOp op, const float* a, int64_t ia, const float* b, int64_t ib, float* y, int64_t n) {
  switch (op) {
    case BinaryOp::Add:
      for (int64_t i = 0; i < n; ++i) y[i] = a[i * ia] + b[i * ib];
      break;
    case BinaryOp::Sub:
      for (int64_t i = 0; i < n; ++i) y[i] = a[i * ia] - b[i * ib];
      break;
    case BinaryOp::Mul:
      for (int64_t i = 0; i < n; ++i) y[i] = a[i * ia] * b[i * ib];
      break;
    case BinaryOp::Div:
      for (int64_t i = 0; i < n; ++i) y[i] = a[i * ia] / b[i * ib];
      break;
  }
}

}  // namespace

void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols, int64_t ldx, int64_t ldy) {
  if (rows <= 0 || cols <= 0) return;
  if (ldx == 0) ldx = cols;
  if (ldy == 0) ldy = cols;
  const IsaKernels& k = isa_kernels();
  for_range(rows, rows_per_task(cols, kGrain),
            [&](int64_t b, int64_t e) { k.softmax_rows(x + b * ldx, y + b * ldy, e - b, cols, ldx, ldy); });
}

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
      k.binary_row(BinaryOp::Add, x + o, 1, r + o, 1, s, cols);
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
      k.binary_row(BinaryOp::Add, x + o, 1, r + o, 1, s, cols);
      k.rms_norm_rows(s, weight, y + o, 1, cols, eps, cols, cols);
    }
  });
}

void relu(const float* x, float* y, int64_t n) {
  const IsaKernels& k = isa_kernels();
  for_range(n, kCopyGrain, [&](int64_t b, int64_t e) { k.relu(x + b, y + b, e - b); });
}

void gelu(const float* x, float* y, int64_t n, bool tanh_approx) {
  const IsaKernels& k = isa_kernels();
  for_range(n, kGrain, [&](int64_t b, int64_t e) { k.gelu(x + b, y + b, e - b, tanh_approx); });
}

void binary_op(BinaryOp op, const float* a, const int64_t* a_strides, const float* b, const int64_t* b_strides,
               float* y, const int64_t* shape, int ndim) {
  // Canonicalise: drop size-1 dims (their strides are irrelevant) and merge
  // neighbours that are contiguous with each other in both operands (y is
  // contiguous, so always). The fast paths then fall out as 1-D (same shape
  // or scalar operand: stride 1 / 0) or 2-D with a broadcast row (b strides
  // {0, 1}), all served by the ISA row kernel.
  int64_t sh[8], sa[8], sb[8];
  int nd = 0;
  int64_t total = 1;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 0) return;
    if (shape[d] == 1) continue;
    total *= shape[d];
    if (nd > 0 && sa[nd - 1] == a_strides[d] * shape[d] && sb[nd - 1] == b_strides[d] * shape[d]) {
      sh[nd - 1] *= shape[d];
      sa[nd - 1] = a_strides[d];
      sb[nd - 1] = b_strides[d];
    } else {
      sh[nd] = shape[d];
      sa[nd] = a_strides[d];
      sb[nd] = b_strides[d];
      ++nd;
    }
  }
  const IsaKernels& k = isa_kernels();
  if (nd == 0) {  // a single element
    k.binary_row(op, a, 0, b, 0, y, 1);
    return;
  }
  const int64_t n_in = sh[nd - 1], ia = sa[nd - 1], ib = sb[nd - 1];
  const bool unit = (ia == 0 || ia == 1) && (ib == 0 || ib == 1);
  auto row = [&](const float* pa, const float* pb, float* py, int64_t n) {
    if (unit) {
      k.binary_row(op, pa, ia, pb, ib, py, n);
    } else {
      strided_row(op, pa, ia, pb, ib, py, n);
    }
  };
  if (nd == 1) {
    for_range(n_in, kCopyGrain, [&](int64_t lo, int64_t hi) { row(a + lo * ia, b + lo * ib, y + lo, hi - lo); });
    return;
  }
  // Rows over the outer nd-1 dims, walked with an odometer from each task's start.
  const int64_t rows = total / n_in;
  const int outer = nd - 1;
  for_range(rows, rows_per_task(n_in, kCopyGrain), [&](int64_t lo, int64_t hi) {
    int64_t idx[8];
    int64_t rem = lo, oa = 0, ob = 0;
    for (int d = outer - 1; d >= 0; --d) {
      idx[d] = rem % sh[d];
      rem /= sh[d];
      oa += idx[d] * sa[d];
      ob += idx[d] * sb[d];
    }
    for (int64_t r = lo; r < hi; ++r) {
      row(a + oa, b + ob, y + r * n_in, n_in);
      for (int d = outer - 1; d >= 0; --d) {
        oa += sa[d];
        ob += sb[d];
        if (++idx[d] < sh[d]) break;
        oa -= sa[d] * sh[d];
        ob -= sb[d] * sh[d];
        idx[d] = 0;
      }
    }
  });
}

int64_t embedding(const float* weight, int64_t num, int64_t dim, const int32_t* ids, int64_t n_ids, float* out) {
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
        std::memcpy(out + i * dim, weight + id * dim, row_bytes);
      } else {
        std::memset(out + i * dim, 0, row_bytes);
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

}  // namespace attnode::kernels
