// GEMM frontend (baseline-compiled): blocking, packing, threading, dispatch.
//
// Loop nest per call (Goto/BLIS with the cache roles of A and B swapped to
// suit a row-major, vectors-along-N micro-kernel):
//
//   ic (MC rows, normally all of M)
//     pc (KC)            pack Ã = op(A)[ic, pc]        -> panels of MR x kc
//       jc (NC)          pack B̃ = op(B)[pc, jc] (shared) -> panels of kc x NR
//         ir (MR)        one A panel (MR*kc*4 ~ L1/4) stays in L1
//           jr (NR)      B̃ (kc*NC*4 ~ L2/2) streams from L2
//             micro-kernel, epilogue fused into its store on the last pc
//
// B̃ is packed once per (pc, jc) cooperatively by all threads into a double
// buffer, so packing block jc+1 overlaps computing block jc and one barrier
// per block suffices. Threads split the A panels (tall shapes) or the B
// panels of the block (short, wide shapes). K is never split, and the
// blocking depends only on the shape and the CPU, so every element sees the
// same operations in the same order for any thread count: results are
// bit-identical across thread counts.

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "../../runtime/cpu_features.h"
#include "../../runtime/thread_pool.h"
#include "../gemm.h"
#include "ukernel.h"

namespace attnode::kernels {
namespace {

using gemm_detail::Epilogue;
using gemm_detail::IsaKernels;
using runtime::Isa;
using runtime::ThreadPool;

const IsaKernels& kernels_for(Isa isa) {
  switch (isa) {
    case Isa::Avx512:
      return gemm_detail::kAvx512Kernels;
    case Isa::Avx2:
      return gemm_detail::kAvx2Kernels;
    default:
      return gemm_detail::kPortableKernels;
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

struct Blocking {
  int64_t kc, nc, mc;
};

// kc: the A panel (MR x kc) takes ~1/4 of L1, leaving room for the streamed
// B lines and C. nc: the packed B block (kc x nc) takes ~1/2 of L2. mc only
// bounds the packed-A scratch (Ã is streamed panel by panel, not cache-resident).
// K and N are then split into equal blocks so no block is a thin remainder.
Blocking blocking_for(const IsaKernels& uk, int64_t m, int64_t n, int64_t k) {
  const auto& ci = runtime::cpu_info();
  int64_t kc = std::clamp<int64_t>(ci.l1d_bytes / (4 * uk.mr * 4), 128, 1024);
  int64_t nc = std::max<int64_t>(uk.nr, (ci.l2_bytes / 2) / (kc * 4) / uk.nr * uk.nr);
  int64_t mc = std::max<int64_t>(uk.mr, (int64_t{8} << 20) / (kc * 4) / uk.mr * uk.mr);
  Blocking b;
  b.kc = ceil_div(k, ceil_div(k, kc));
  b.nc = round_up(ceil_div(n, ceil_div(n, nc)), uk.nr);
  b.mc = round_up(ceil_div(m, ceil_div(m, mc)), uk.mr);
  return b;
}

// Per-host-thread scratch, grown geometrically and never shrunk, so steady-state
// calls neither allocate nor first-touch pages. Large buffers are 2 MiB aligned
// and advised as huge pages (fewer TLB misses on the packed streams).
class Arena {
 public:
  ~Arena() { std::free(ptr_); }
  float* get(size_t floats) {
    size_t bytes = floats * sizeof(float) + 64;
    if (bytes > cap_) {
      std::free(ptr_);
      size_t want = std::max(bytes, cap_ + cap_ / 2);
      constexpr size_t kHuge = size_t{2} << 20;
      size_t align = want >= kHuge ? kHuge : 64;
      want = (want + align - 1) / align * align;
      ptr_ = std::aligned_alloc(align, want);
      if (ptr_ == nullptr) std::abort();
#ifdef MADV_HUGEPAGE
      if (align == kHuge) madvise(ptr_, want, MADV_HUGEPAGE);
#endif
      cap_ = want;
    }
    return static_cast<float*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  size_t cap_ = 0;
};

Arena& thread_arena() {
  static thread_local Arena arena;
  return arena;
}

// Spinning barrier for the few sync points inside one GEMM region; yields
// when a peer is descheduled (shared, oversubscribed machines).
// `n` is the region's actual thread count (a nested region runs inline with 1).
class Barrier {
 public:
  void wait(int n) {
    if (n <= 1) return;
    int g = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) == n - 1) {
      count_.store(0, std::memory_order_relaxed);
      gen_.store(g + 1, std::memory_order_release);
      return;
    }
    for (int i = 0; gen_.load(std::memory_order_acquire) == g; ++i) {
      if (i < 4096) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      } else {
        std::this_thread::yield();
      }
    }
  }

 private:
  alignas(64) std::atomic<int> count_{0};
  alignas(64) std::atomic<int> gen_{0};
};

// ---- generic packers / GEMV for ISAs without their own ----

inline float op_at(const float* x, int64_t ld, bool trans, int64_t r, int64_t c) {
  return trans ? x[c * ld + r] : x[r * ld + c];
}

void pack_a_generic(int mr, const float* a, int64_t lda, bool trans, int64_t i0, int64_t rows, int64_t k0, int64_t kc,
                    float* dst) {
  for (int64_t p = 0; p < rows; p += mr) {
    float* d = dst + p * kc;
    const int64_t valid = std::min<int64_t>(mr, rows - p);
    for (int64_t k = 0; k < kc; ++k)
      for (int r = 0; r < mr; ++r) d[k * mr + r] = r < valid ? op_at(a, lda, trans, i0 + p + r, k0 + k) : 0.0f;
  }
}

void pack_b_generic(int nr, const float* b, int64_t ldb, bool trans, int64_t k0, int64_t kc, int64_t j0, int64_t cols,
                    float* dst) {
  for (int64_t p = 0; p < cols; p += nr) {
    float* d = dst + p * kc;
    const int64_t valid = std::min<int64_t>(nr, cols - p);
    for (int64_t k = 0; k < kc; ++k)
      for (int j = 0; j < nr; ++j) d[k * nr + j] = j < valid ? op_at(b, ldb, trans, k0 + k, j0 + p + j) : 0.0f;
  }
}

void gemv_generic(int64_t k, const float* x, const float* b, int64_t ldb, bool trans_b, int64_t j0, int64_t j1,
                  float* c, const Epilogue* ep) {
  constexpr int64_t kChunk = 64;
  float acc[kChunk];
  for (int64_t j = j0; j < j1; j += kChunk) {
    const int64_t nj = std::min(kChunk, j1 - j);
    std::fill(acc, acc + nj, 0.0f);
    if (trans_b) {
      for (int64_t t = 0; t < nj; ++t) {
        const float* row = b + (j + t) * ldb;
        float s = 0.0f;
        for (int64_t kk = 0; kk < k; ++kk) s += x[kk] * row[kk];
        acc[t] = s;
      }
    } else {
      for (int64_t kk = 0; kk < k; ++kk) {
        const float* row = b + kk * ldb + j;
        const float xk = x[kk];
        for (int64_t t = 0; t < nj; ++t) acc[t] += xk * row[t];
      }
    }
    Epilogue e = *ep;
    if (e.bias != nullptr) e.bias += j;
    gemm_detail::epilogue_row_scalar(acc, c + j, static_cast<int>(nj), &e);
  }
}

// ---- drivers ----

// Below this many multiply-adds a second thread costs more (wake-up, barrier)
// than it saves.
constexpr double kMinFmaPerThread = 1.5e5;

int choose_threads(const GemmParams& p, int max_threads) {
  int nt = ThreadPool::instance().num_threads();
  if (max_threads > 0) nt = std::min(nt, max_threads);
  const double fmas = static_cast<double>(p.m) * static_cast<double>(p.n) * static_cast<double>(p.k);
  nt = static_cast<int>(std::min<double>(nt, std::max(1.0, fmas / kMinFmaPerThread)));
  return std::max(nt, 1);
}

void run_gemv(const IsaKernels& uk, const GemmParams& p, int nt) {
  const float* x = p.a;
  if (p.trans_a && p.lda != 1) {
    float* buf = thread_arena().get(static_cast<size_t>(p.k));
    for (int64_t kk = 0; kk < p.k; ++kk) buf[kk] = p.a[kk * p.lda];
    x = buf;
  }
  const Epilogue ep{p.alpha, p.beta, p.bias, static_cast<int>(p.act)};
  auto gemv = uk.gemv;
  const int64_t unit = p.trans_b ? 16 : 128;
  const int64_t units = ceil_div(p.n, unit);
  // GEMV streams B once (~10 GB/s per core from L3): below ~1M elements per
  // thread the wake-up of a parked worker costs more than it saves.
  nt = static_cast<int>(std::min<int64_t>({nt, units, std::max<int64_t>(1, p.k * p.n / (1 << 20))}));
  ThreadPool::instance().run(nt, [&](int tid, int nth) {
    const int64_t j0 = std::min(p.n, units * tid / nth * unit);
    const int64_t j1 = std::min(p.n, units * (tid + 1) / nth * unit);
    if (j0 >= j1) return;
    if (gemv != nullptr) {
      gemv(p.k, x, p.b, p.ldb, p.trans_b, j0, j1, p.c, &ep);
    } else {
      gemv_generic(p.k, x, p.b, p.ldb, p.trans_b, j0, j1, p.c, &ep);
    }
  });
}

void run_k_empty(const GemmParams& p) {
  constexpr int kChunk = 256;
  float zeros[kChunk] = {};
  const Epilogue ep0{p.alpha, p.beta, nullptr, static_cast<int>(p.act)};
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.n; j += kChunk) {
      Epilogue ep = ep0;
      if (p.bias != nullptr) ep.bias = p.bias + j;
      gemm_detail::epilogue_row_scalar(zeros, p.c + i * p.ldc + j, static_cast<int>(std::min<int64_t>(kChunk, p.n - j)),
                                       &ep);
    }
  }
}

void run_gemm(const IsaKernels& uk, const GemmParams& p, int nt) {
  const int mr = uk.mr, nr = uk.nr;
  const Blocking bl = blocking_for(uk, p.m, p.n, p.k);
  const int64_t a_floats = bl.mc * bl.kc;
  const int64_t b_floats = bl.kc * bl.nc;
  // Ã, then two B̃ buffers, each 64-byte aligned.
  const int64_t a_span = round_up(a_floats, 16), b_span = round_up(b_floats, 16);
  float* base = thread_arena().get(static_cast<size_t>(a_span + 2 * b_span));
  base = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(base) + 63) & ~uintptr_t{63});
  float* const a_pack = base;
  float* const b_pack[2] = {base + a_span, base + a_span + b_span};

  auto pack_a = [&](int64_t i0, int64_t rows, int64_t k0, int64_t kc, float* dst) {
    if (uk.pack_a != nullptr) {
      uk.pack_a(p.a, p.lda, p.trans_a, i0, rows, k0, kc, dst);
    } else {
      pack_a_generic(mr, p.a, p.lda, p.trans_a, i0, rows, k0, kc, dst);
    }
  };
  auto pack_b = [&](int64_t k0, int64_t kc, int64_t j0, int64_t cols, float* dst) {
    if (uk.pack_b != nullptr) {
      uk.pack_b(p.b, p.ldb, p.trans_b, k0, kc, j0, cols, dst);
    } else {
      pack_b_generic(nr, p.b, p.ldb, p.trans_b, k0, kc, j0, cols, dst);
    }
  };

  Barrier barrier;
  ThreadPool::instance().run(nt, [&](int tid, int nth) {
    // Share [0, total) panels among threads.
    auto share = [&](int64_t total, int64_t* lo, int64_t* hi) {
      *lo = total * tid / nth;
      *hi = total * (tid + 1) / nth;
    };
    for (int64_t ic = 0; ic < p.m; ic += bl.mc) {
      const int64_t mc = std::min(bl.mc, p.m - ic);
      const int64_t mp = ceil_div(mc, mr);
      // Tall blocks: each thread owns a slice of A panels (and packs exactly
      // those). Short blocks: every thread needs all of Ã, threads split B̃.
      const bool split_m = mp >= 4 * nth;
      for (int64_t pc = 0; pc < p.k; pc += bl.kc) {
        const int64_t kc = std::min(bl.kc, p.k - pc);
        const bool first_k = pc == 0, last_k = pc + kc >= p.k;
        const Epilogue ep_base{p.alpha, first_k ? p.beta : 1.0f, nullptr, last_k ? static_cast<int>(p.act) : 0};
        {
          int64_t lo, hi;
          share(mp, &lo, &hi);
          if (lo < hi) pack_a(ic + lo * mr, std::min(mc, hi * mr) - lo * mr, pc, kc, a_pack + lo * mr * kc);
        }
        const int64_t nblocks = ceil_div(p.n, bl.nc);
        auto pack_block = [&](int64_t jb) {
          const int64_t jc = jb * bl.nc;
          const int64_t nc = std::min(bl.nc, p.n - jc);
          int64_t lo, hi;
          share(ceil_div(nc, nr), &lo, &hi);
          if (lo < hi) pack_b(pc, kc, jc + lo * nr, std::min(nc, hi * nr) - lo * nr, b_pack[jb & 1] + lo * nr * kc);
        };
        pack_block(0);
        barrier.wait(nth);
        for (int64_t jb = 0; jb < nblocks; ++jb) {
          // Safe: everyone passed the barrier after block jb-1, the last reader
          // of this buffer.
          if (jb + 1 < nblocks) pack_block(jb + 1);
          const int64_t jc = jb * bl.nc;
          const int64_t nc = std::min(bl.nc, p.n - jc);
          const int64_t np = ceil_div(nc, nr);
          int64_t ilo = 0, ihi = mp, jlo = 0, jhi = np;
          if (split_m) {
            share(mp, &ilo, &ihi);
          } else {
            share(np, &jlo, &jhi);
          }
          const float* bp = b_pack[jb & 1];
          for (int64_t ir = ilo; ir < ihi; ++ir) {
            const int64_t i = ic + ir * mr;
            const int m_valid = static_cast<int>(std::min<int64_t>(mr, p.m - i));
            const float* ap = a_pack + ir * mr * kc;
            float* crow = p.c + i * p.ldc;
            for (int64_t jr = jlo; jr < jhi; ++jr) {
              const int64_t j = jc + jr * nr;
              Epilogue ep = ep_base;
              if (last_k && p.bias != nullptr) ep.bias = p.bias + j;
              uk.kernel(kc, ap, bp + jr * nr * kc, crow + j, p.ldc, m_valid,
                        static_cast<int>(std::min<int64_t>(nr, p.n - j)), &ep);
            }
          }
          barrier.wait(nth);
        }
      }
    }
  });
}

void sgemm_impl(const GemmParams& p, int nt) {
  if (p.m <= 0 || p.n <= 0) return;
  if (p.k <= 0) {
    run_k_empty(p);
    return;
  }
  const IsaKernels& uk = kernels_for(runtime::active_isa());
  if (p.m == 1) {
    run_gemv(uk, p, nt);
    return;
  }
  run_gemm(uk, p, nt);
}

}  // namespace

void sgemm(const GemmParams& p, int max_threads) { sgemm_impl(p, choose_threads(p, max_threads)); }

void sgemm_batched(const GemmParams& p, int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c,
                   int max_threads) {
  if (batch <= 0) return;
  auto item = [&](int64_t i) {
    GemmParams q = p;
    q.a = p.a + i * stride_a;
    q.b = p.b + i * stride_b;
    q.c = p.c + i * stride_c;
    return q;
  };
  const int nt_each = choose_threads(p, max_threads);
  int nt = ThreadPool::instance().num_threads();
  if (max_threads > 0) nt = std::min(nt, max_threads);
  const double fmas = static_cast<double>(p.m) * static_cast<double>(p.n) * static_cast<double>(p.k);
  // Whole GEMMs per thread when there are enough of them (no barriers, no
  // shared packing) or when each is too small to split well. Same results
  // either way: a GEMM's arithmetic does not depend on its thread count.
  const bool across = nt > 1 && (batch >= 2 * nt || (batch >= nt && fmas < 2.5e7) || nt_each == 1) && batch > 1;
  if (!across) {
    for (int64_t i = 0; i < batch; ++i) sgemm_impl(item(i), nt_each);
    return;
  }
  nt = static_cast<int>(std::min<int64_t>(nt, batch));
  ThreadPool::instance().run(nt, [&](int tid, int nth) {
    const int64_t lo = batch * tid / nth, hi = batch * (tid + 1) / nth;
    for (int64_t i = lo; i < hi; ++i) sgemm_impl(item(i), 1);
  });
}

}  // namespace attnode::kernels
