// Frontend of the fused attention kernel (compiled for baseline x86-64):
// picks the per-ISA tile kernel from runtime::active_isa() and spreads the
// (batch, head, query tile) tasks over the thread pool as dynamic tiles. Each
// task writes its own output rows (and weights rows), so results do not depend on the
// thread count or on which thread ran a task.
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "../../runtime/cpu_features.h"
#include "../../runtime/thread_pool.h"
#include "../gemm/gemm_frame.h"
#include "attention.h"
#include "attention_isa.h"

namespace attnode::kernels {
namespace {

using TileFn = void (*)(const AttentionParams&, const void*, int64_t, int64_t, int64_t, int64_t, float*);

TileFn tile_fn(runtime::Isa isa, bool bf16) {
  if (bf16) return avx512_bf16::attention_tile;
  switch (isa) {
    case runtime::Isa::Avx512:
      return avx512::attention_tile;
    case runtime::Isa::Avx2:
      return avx2::attention_tile;
    default:
      return portable::attention_tile;
  }
}

using DecodeFn = void (*)(const AttentionParams&, int64_t, int64_t, int64_t, float*);

DecodeFn decode_fn(runtime::Isa isa) {
  switch (isa) {
    case runtime::Isa::Avx512:
      return avx512::attention_decode;
    case runtime::Isa::Avx2:
      return avx2::attention_decode;
    default:
      return portable::attention_decode;
  }
}

// One query row, no weights output, no dropout: a decoding step (attention_decode).
bool decode_call(const AttentionParams& p) {
  return p.lq == 1 && p.weights == nullptr && p.dropout_p == 0.0f;
}

// Scratch of one attention_decode task over `kv` key/value heads and lk keys (attention_tile.inc's
// decode_group_rows).
int64_t decode_scratch_floats(const AttentionParams& p, int64_t kv, int64_t lk) {
  const int64_t rows = kv * (p.heads / p.kv_heads);
  return rows * ((lk + 15) / 16 * 16 + (p.dv + 15) / 16 * 16 + 2);
}

int64_t scratch_floats(int64_t dk, int64_t dv) {
  return kAttnKeyBlock * kAttnQueryTile + kAttnMaxTaskRows * ((dv + 15) / 16 * 16 + 32 + (dk + 1) / 2 + dk) +
         dk * kAttnKeyBlock;
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

// Floats of one backward task's scratch (the layout in attention_isa.h).
int64_t backward_scratch_floats(int64_t dk, int64_t dv) {
  return 2 * kAttnKeyBlock * kAttnQueryTile + (dk + dv + 2) * kAttnQueryTile +
         kAttnKeyBlock * (1 + (dk + 15) / 16 * 16 + (dv + 15) / 16 * 16) + kAttnQueryTile * ((dk + 15) / 16 * 16);
}

// Per-thread scratch, kept between calls: first touch of fresh pages costs
// more than a small attention call, so it is allocated once and only grows.
template <class T>
struct Scratch {
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> buf;
  int64_t cap = 0;
  T* get(int64_t n) {
    if (n > cap) {
      const size_t bytes = (static_cast<size_t>(n) * sizeof(T) + 63) / 64 * 64;
      buf.reset(static_cast<T*>(std::aligned_alloc(64, bytes)));
      if (!buf) {
        cap = 0;
        throw std::bad_alloc();
      }
      cap = n;
    }
    return buf.get();
  }
};
thread_local Scratch<float> t_scratch;

// Below about this many flops per parallel chunk, waking another thread costs
// more than it saves.
constexpr double kMinTaskFlops = 1 << 20;

// K and V read through wide position strides (heads of one packed [L, N, 3E]
// projection: every key row on its own 4 KiB page) are re-read by every
// query task of a head, each pass a TLB miss per row. For long sequences
// they are first copied to [batch, heads, lk, d] on the calling thread's
// scratch (kept between calls): 245 -> 217 ms for one 4096-token, 8-head
// attention at d = 64 on Zen 5. Only addresses change, so results are the
// same bit for bit. The scratch is the one the calling thread's GEMMs pack Ã
// into (gemm_frame.h): no GEMM runs while an attention call reads its copy, and
// one buffer instead of two per thread is 8 MiB less resident memory in a
// long-sequence training step (2048 keys x 512 features).
constexpr int64_t kPackMinKeys = 1024;
constexpr int64_t kPackMinQueries = 256;  // fewer query tasks re-read K/V too few times to repay the copy
// The calling thread's K/V copy (fp32, or the bf16 path's blocks from avx512_bf16::pack_kv), in the GEMM's
// per-thread scratch.
template <typename T>
T* kv_scratch(int64_t n) {
  return static_cast<T*>(gemm_detail::frame_thread_scratch(static_cast<size_t>(n) * sizeof(T)));
}

bool should_pack_kv(const AttentionParams& p) {
  return p.lk >= kPackMinKeys && p.lq >= kPackMinQueries && (p.k_strides[2] != p.dk || p.v_strides[2] != p.dv);
}

// Copies K and V of every (batch, key/value head) to `dst` and points `p` at the copies.
void pack_kv(AttentionParams& p, float* dst, int threads) {
  const int64_t ks = p.lk * p.dk, vs = p.lk * p.dv, per = ks + vs;
  const AttentionParams src = p;
  runtime::ThreadPool::instance().parallel_tiles(
      p.batch * p.kv_heads,
      [&](int64_t bh) {
        const int64_t b = bh / src.kv_heads, h = bh % src.kv_heads;
        float* kd = dst + bh * per;
        float* vd = kd + ks;
        const float* kp = src.k + b * src.k_strides[0] + h * src.k_strides[1];
        const float* vp = src.v + b * src.v_strides[0] + h * src.v_strides[1];
        for (int64_t j = 0; j < src.lk; ++j) {
          std::copy_n(kp + j * src.k_strides[2], src.dk, kd + j * src.dk);
          std::copy_n(vp + j * src.v_strides[2], src.dv, vd + j * src.dv);
        }
      },
      threads);
  p.k = dst;
  p.v = dst + ks;
  p.k_strides[0] = p.kv_heads * per;
  p.k_strides[1] = per;
  p.k_strides[2] = p.dk;
  p.v_strides[0] = p.kv_heads * per;
  p.v_strides[1] = per;
  p.v_strides[2] = p.dv;
}

// Runs `tasks` (batch, head, query tile) tasks: on the calling thread when
// one thread is allowed or the work is too small to share, else one task per
// pool tile, claimed dynamically (uneven causal tiles balance, and a thread
// the OS has not scheduled takes none instead of holding the others up).
// Returns the number of threads the tasks were offered to.
template <class RunTask>
int run_tasks(int64_t tasks, double flops, int threads, int64_t need, const RunTask& run_task) {
  const int64_t useful = std::min<int64_t>(tasks, static_cast<int64_t>(flops / kMinTaskFlops));
  if (threads <= 1 || useful <= 1) {
    float* scratch = t_scratch.get(need);
    for (int64_t t = 0; t < tasks; ++t) run_task(t, scratch);
    return 1;
  }
  const int n = static_cast<int>(std::min<int64_t>(threads, useful));
  runtime::ThreadPool::instance().parallel_tiles(tasks, [&](int64_t t) { run_task(t, t_scratch.get(need)); }, n);
  return n;
}

int pool_threads(int max_threads) {
  const int n = runtime::ThreadPool::instance().num_threads();
  return max_threads > 0 ? std::min(max_threads, n) : n;
}

// Decoding steps (decode_call) of `entries` one-sequence calls (entry(e) gives each one's params, batch 1 for
// pooled calls): one task per entry with all its key/value heads when one thread does the work (each cache row is
// then read front to back, K of every head together: ~2x the bandwidth of one head's slices per pass on Zen 4),
// else one per (entry, key/value head). A head's arithmetic is the same either way.
template <class Entry>
void run_decode(int64_t entries, int64_t kv_heads, int64_t max_lk, double flops, int threads, runtime::Isa isa,
                const AttentionParams& shape, const Entry& entry) {
  const DecodeFn fn = decode_fn(isa);
  const int64_t useful = std::min<int64_t>(entries * kv_heads, static_cast<int64_t>(flops / kMinTaskFlops));
  if (threads <= 1 || useful <= 1) {
    float* scratch = t_scratch.get(decode_scratch_floats(shape, kv_heads, max_lk));
    for (int64_t e = 0; e < entries; ++e) {
      const auto [p, b] = entry(e);
      fn(p, b, 0, kv_heads, scratch);
    }
    return;
  }
  const int64_t need = decode_scratch_floats(shape, 1, max_lk);
  run_tasks(entries * kv_heads, flops, threads, need, [&](int64_t t, float* scratch) {
    const auto [p, b] = entry(t / kv_heads);
    fn(p, b, t % kv_heads, t % kv_heads + 1, scratch);
  });
}

// Pooled K/V (kv_starts / kv_lengths): each batch entry becomes a
// one-sequence call of its own (q, out and the masks advanced to the entry,
// k and v to its first key, lk its own length), and the (entry, head, query
// tile) tasks of all of them share one parallel region. Built here in the
// baseline frontend, so the ISA tile kernels see ordinary batch-1 params
// (they never copy an AttentionParams themselves, see attention_isa.h).
void attention_pooled(const AttentionParams& params, int max_threads) {
  const int64_t nb = params.batch;
  std::vector<AttentionParams> per(static_cast<size_t>(nb), params);
  double flops = 0;
  for (int64_t b = 0; b < nb; ++b) {
    AttentionParams& s = per[static_cast<size_t>(b)];
    s.batch = 1;
    s.q = params.q + b * params.q_strides[0];
    s.out = params.out + b * params.out_strides[0];
    if (params.kv_starts) {
      s.k = params.k + params.kv_starts[b] * params.k_strides[2];
      s.v = params.v + params.kv_starts[b] * params.v_strides[2];
    } else {
      s.k = params.k + b * params.k_strides[0];
      s.v = params.v + b * params.v_strides[0];
    }
    if (params.kv_lengths) s.lk = params.kv_lengths[b];
    for (int m = 0; m < params.num_masks; ++m) {
      AttentionMask& mk = s.masks[m];
      if (mk.f32) mk.f32 += b * mk.strides[0];
      if (mk.u8) mk.u8 += b * mk.strides[0];
    }
    s.kv_starts = nullptr;
    s.kv_lengths = nullptr;
    s.weights = nullptr;
    s.lse = nullptr;
    s.dropout_p = 0.0f;
    s.precision = AttentionPrecision::Float32;
    if (s.kv_heads <= 0) s.kv_heads = s.heads;
    flops += 2.0 * static_cast<double>(s.heads) * static_cast<double>(s.lq) *
             static_cast<double>(std::max<int64_t>(s.lk, 1)) * static_cast<double>(s.dk + s.dv);
  }
  const runtime::Isa isa = runtime::active_isa();
  if (decode_call(params)) {
    int64_t max_lk = 0;
    for (const AttentionParams& s : per) max_lk = std::max(max_lk, s.lk);
    run_decode(nb, per[0].kv_heads, max_lk, flops, pool_threads(max_threads), isa, per[0], [&](int64_t e) {
      return std::pair<const AttentionParams&, int64_t>(per[static_cast<size_t>(e)], 0);
    });
    return;
  }
  const TileFn fn = tile_fn(isa, false);
  const int64_t rows = task_rows(params, isa);
  const int64_t tiles = (params.lq + rows - 1) / rows;
  const int64_t per_entry = params.heads * tiles;
  const int64_t tasks = nb * per_entry;
  const int64_t need = scratch_floats(params.dk, params.dv);
  auto run_task = [&](int64_t t, float* scratch) {
    const AttentionParams& s = per[static_cast<size_t>(t / per_entry)];
    const int64_t ht = t % per_entry, i0 = (ht % tiles) * rows;
    fn(s, nullptr, 0, ht / tiles, i0, std::min(s.lq, i0 + rows), scratch);
  };
  run_tasks(tasks, flops, pool_threads(max_threads), need, run_task);
}

}  // namespace

bool bf16_attention_available() {
  const runtime::CpuInfo& cpu = runtime::cpu_info();
  return cpu.avx512bf16 && cpu.os_avx512 && runtime::active_isa() == runtime::Isa::Avx512;
}

AttentionPrecision effective_precision(const AttentionParams& p) {
  const bool bf16 = p.precision == AttentionPrecision::BFloat16 && p.weights == nullptr && p.lse == nullptr &&
                    p.dropout_p == 0.0f &&
                    p.lq > kAttnSmallRows &&
                    p.kv_starts == nullptr && p.kv_lengths == nullptr && bf16_attention_available();
  return bf16 ? AttentionPrecision::BFloat16 : AttentionPrecision::Float32;
}

void attention(const AttentionParams& params, int max_threads) {
  if (params.batch <= 0 || params.heads <= 0 || params.lq <= 0) return;
  if (params.kv_starts || params.kv_lengths) {
    attention_pooled(params, max_threads);
    return;
  }
  AttentionParams p = params;
  if (p.kv_heads <= 0) p.kv_heads = p.heads;
  const runtime::Isa isa = runtime::active_isa();  // read once: tile size and kernel must agree
  if (decode_call(p)) {
    const double flops = 2.0 * static_cast<double>(p.batch * p.heads) * static_cast<double>(std::max<int64_t>(p.lk, 1)) *
                         static_cast<double>(p.dk + p.dv);
    run_decode(p.batch, p.kv_heads, p.lk, flops, pool_threads(max_threads), isa, p,
               [&](int64_t b) { return std::pair<const AttentionParams&, int64_t>(p, b); });
    return;
  }
  const bool bf16 = isa == runtime::Isa::Avx512 && effective_precision(p) == AttentionPrecision::BFloat16;
  const int64_t rows = task_rows(p, isa);
  const int64_t tiles = (p.lq + rows - 1) / rows;
  const int64_t tasks = p.batch * p.heads * tiles;
  const int64_t need = scratch_floats(p.dk, p.dv);
  const TileFn fn = tile_fn(isa, bf16);
  const void* prepared = nullptr;
  auto run_task = [&](int64_t t, float* scratch) {
    const int64_t bh = t / tiles, i0 = (t % tiles) * rows;
    fn(p, prepared, bh / p.heads, bh % p.heads, i0, std::min(p.lq, i0 + rows), scratch);
  };
  // Work estimate (causal roughly halves it; the dynamic schedule below
  // evens out the uneven causal tiles).
  const double flops = 2.0 * static_cast<double>(p.batch * p.heads) * static_cast<double>(p.lq) *
                       static_cast<double>(std::max<int64_t>(p.lk, 1)) * static_cast<double>(p.dk + p.dv);
  runtime::ThreadPool& pool = runtime::ThreadPool::instance();
  const int threads = pool_threads(max_threads);
  if (bf16) {
    // K and V once to bf16 blocks, read by every query task of their head.
    uint32_t* kv = kv_scratch<uint32_t>(avx512_bf16::packed_kv_words(p));
    pool.parallel_tiles(
        p.batch * p.kv_heads, [&](int64_t bh) { avx512_bf16::pack_kv(p, kv, bh); }, threads);
    prepared = kv;
  } else if (isa == runtime::Isa::Avx512 && p.weights == nullptr && p.lq > kAttnSmallRows && tiles > 1) {
    // The register-blocked path reads K transposed per key block: packed once
    // here (with V, contiguous) instead of by each of the head's query tasks.
    float* kv = kv_scratch<float>(avx512::packed_kv_floats(p));
    pool.parallel_tiles(
        p.batch * p.kv_heads, [&](int64_t bh) { avx512::pack_kv(p, kv, bh); }, threads);
    prepared = kv;
  } else if (should_pack_kv(p)) {
    pack_kv(p, kv_scratch<float>(p.batch * p.kv_heads * p.lk * (p.dk + p.dv)), threads);
  }
  run_tasks(tasks, flops, threads, need, run_task);
}

using BackwardKvFn = void (*)(const AttentionBackwardParams&, int64_t, int64_t, int64_t, bool, float*);
using BackwardQFn = void (*)(const AttentionBackwardParams&, int64_t, int64_t, int64_t, float*);

int64_t attention_backward(const AttentionBackwardParams& params, int max_threads) {
  AttentionBackwardParams bp = params;
  AttentionParams& p = bp.fwd;
  if (p.batch <= 0 || p.heads <= 0) return 0;
  if (p.kv_heads <= 0) p.kv_heads = p.heads;
  const runtime::Isa isa = runtime::active_isa();
  BackwardKvFn kv_fn = portable::attention_backward_kv;
  BackwardQFn q_fn = portable::attention_backward_q;
  if (isa == runtime::Isa::Avx512) {
    kv_fn = avx512::attention_backward_kv;
    q_fn = avx512::attention_backward_q;
  } else if (isa == runtime::Isa::Avx2) {
    kv_fn = avx2::attention_backward_kv;
    q_fn = avx2::attention_backward_q;
  }
  const int64_t need = backward_scratch_floats(p.dk, p.dv);
  const int threads = pool_threads(max_threads);
  // Multiply-adds of one pass over every (query, key) pair: scores and dP, then two products per pass.
  const double pairs = static_cast<double>(p.batch * p.heads) * static_cast<double>(std::max<int64_t>(p.lq, 1)) *
                       static_cast<double>(std::max<int64_t>(p.lk, 1));
  const double flops = 2.0 * pairs * static_cast<double>(2 * p.dk + 2 * p.dv);
  int used = 0;
  // Keys in one block: the key-block task sees every (query, key) pair of its heads, so it also finishes dq (see
  // attention_isa.h) and P, dS are computed once instead of once per pass. Each dq row is still written by one
  // task, in the same order of operations, whatever the thread count.
  const bool dq_in_kv = bp.dq != nullptr && p.lk > 0 && p.lk <= kAttnKeyBlock;
  if ((bp.dk || bp.dv || dq_in_kv) && p.lk > 0) {
    const int64_t blocks = (p.lk + kAttnKeyBlock - 1) / kAttnKeyBlock;
    used = std::max(used, run_tasks(p.batch * p.kv_heads * blocks, flops, threads, need, [&](int64_t t, float* scratch) {
      const int64_t bh = t / blocks;
      kv_fn(bp, bh / p.kv_heads, bh % p.kv_heads, (t % blocks) * kAttnKeyBlock, dq_in_kv, scratch);
    }));
  }
  if (bp.dq && p.lq > 0 && !dq_in_kv) {
    const int64_t tiles = (p.lq + kAttnQueryTile - 1) / kAttnQueryTile;
    used = std::max(used, run_tasks(p.batch * p.heads * tiles, flops, threads, need, [&](int64_t t, float* scratch) {
      const int64_t bh = t / tiles;
      q_fn(bp, bh / p.heads, bh % p.heads, (t % tiles) * kAttnQueryTile, scratch);
    }));
  }
  const int64_t scratch_bytes = (need * static_cast<int64_t>(sizeof(float)) + 63) / 64 * 64;
  return used * scratch_bytes;
}

}  // namespace attnode::kernels
