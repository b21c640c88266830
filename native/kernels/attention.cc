// Frontend of the fused attention kernel (compiled for baseline x86-64):
// picks the per-ISA tile kernel from runtime::active_isa() and spreads the
// (batch, head, query tile) tasks over the thread pool as dynamic tiles. Each
// task writes its own output rows (and weights rows), so results do not depend on the
// thread count or on which thread ran a task.
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <new>

#include "../runtime/cpu_features.h"
#include "../runtime/thread_pool.h"
#include "attention.h"
#include "attention_isa.h"

namespace attnode::kernels {
namespace {

using TileFn = void (*)(const AttentionParams&, int64_t, int64_t, int64_t, int64_t, float*);

TileFn tile_fn(runtime::Isa isa) {
  switch (isa) {
    case runtime::Isa::Avx512:
      return avx512::attention_tile;
    case runtime::Isa::Avx2:
      return avx2::attention_tile;
    default:
      return portable::attention_tile;
  }
}

int64_t scratch_floats(int64_t dk, int64_t dv) {
  return kAttnKeyBlock * kAttnQueryTile + kAttnMaxTaskRows * ((dv + 15) / 16 * 16 + 32) + dk * kAttnKeyBlock;
}

// Query rows per task. The AVX-512 path (without weights) works in 6-row
// strips against packed 64-key blocks: long sequences take 96-row tasks (each
// packed key block serves 16 strips from L1), short ones 48 so that there are
// still enough tasks to spread. The other paths keep their 32-row tiles.
// Depends on the shape and path only, never on the thread count.
int64_t task_rows(const AttentionParams& p, runtime::Isa isa) {
  if (isa != runtime::Isa::Avx512 || p.weights) return kAttnQueryTile;
  return p.lq >= 512 ? kAttnMaxTaskRows : kAttnMaxTaskRows / 2;
}

// Per-thread scratch, kept between calls: first touch of fresh pages costs
// more than a small attention call, so it is allocated once and only grows.
struct Scratch {
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> buf;
  int64_t cap = 0;
  float* get(int64_t n) {
    if (n > cap) {
      const size_t bytes = (static_cast<size_t>(n) * sizeof(float) + 63) / 64 * 64;
      buf.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
      if (!buf) {
        cap = 0;
        throw std::bad_alloc();
      }
      cap = n;
    }
    return buf.get();
  }
};
thread_local Scratch t_scratch;

// Below about this many flops per parallel chunk, waking another thread costs
// more than it saves.
constexpr double kMinTaskFlops = 1 << 20;

}  // namespace

void attention(const AttentionParams& p, int max_threads) {
  if (p.batch <= 0 || p.heads <= 0 || p.lq <= 0) return;
  const runtime::Isa isa = runtime::active_isa();  // read once: tile size and kernel must agree
  const int64_t rows = task_rows(p, isa);
  const int64_t tiles = (p.lq + rows - 1) / rows;
  const int64_t tasks = p.batch * p.heads * tiles;
  const int64_t need = scratch_floats(p.dk, p.dv);
  const TileFn fn = tile_fn(isa);
  auto run_task = [&](int64_t t, float* scratch) {
    const int64_t bh = t / tiles, i0 = (t % tiles) * rows;
    fn(p, bh / p.heads, bh % p.heads, i0, std::min(p.lq, i0 + rows), scratch);
  };
  // Work estimate (causal roughly halves it; the dynamic schedule below
  // evens out the uneven causal tiles).
  const double flops = 2.0 * static_cast<double>(p.batch * p.heads) * static_cast<double>(p.lq) *
                       static_cast<double>(std::max<int64_t>(p.lk, 1)) * static_cast<double>(p.dk + p.dv);
  runtime::ThreadPool& pool = runtime::ThreadPool::instance();
  const int threads = max_threads > 0 ? std::min(max_threads, pool.num_threads()) : pool.num_threads();
  const int64_t useful = std::min<int64_t>(tasks, static_cast<int64_t>(flops / kMinTaskFlops));
  if (threads <= 1 || useful <= 1) {
    float* scratch = t_scratch.get(need);
    for (int64_t t = 0; t < tasks; ++t) run_task(t, scratch);
    return;
  }
  // One (batch, head, query tile) per pool tile, claimed dynamically: the
  // uneven causal tiles balance, and a thread the OS has not scheduled takes
  // none instead of holding the others up.
  pool.parallel_tiles(
      tasks, [&](int64_t t) { run_task(t, t_scratch.get(need)); },
      static_cast<int>(std::min<int64_t>(threads, useful)));
}

}  // namespace attnode::kernels
