// How the row-wise and element-wise kernel frontends (softmax, norms,
// elementwise, layout) split work over the runtime thread pool: fixed
// grains, so a split depends only on the sizes, and every output element is
// computed by the same code whichever chunk it lands in (results do not
// depend on the thread count). Small inputs never touch the pool, so
// batch-1 calls cost a function call and nothing else.
//
// Inline bodies: include only from frontends compiled for baseline x86-64,
// never from a per-ISA file (see simd/README.md).
#pragma once

#include <algorithm>
#include <cstdint>

#include "../../runtime/thread_pool.h"

namespace attnode::kernels {

// Elements per parallel task. Below this a task is a few microseconds of
// work on one core, comparable to waking the other worker, so it runs inline.
constexpr int64_t kGrain = 32 * 1024;
// Memory-bound ops (relu, binary, copies) do ~1 flop per element and gain
// little from a second core until the data leaves L2.
constexpr int64_t kCopyGrain = 64 * 1024;

inline int64_t rows_per_task(int64_t cols, int64_t grain) {
  return std::max<int64_t>(1, grain / std::max<int64_t>(cols, 1));
}

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

}  // namespace attnode::kernels
