// GEMM frontend (baseline-compiled): blocking, packing, threading, dispatch.
//
// Loop nest per call (Goto/BLIS with the cache roles of A and B swapped to
// suit a row-major, vectors-along-N micro-kernel):
//
//   ic (row super-block, normally all of M)
//     pack Ã = op(A)[ic, :] for every pc         -> panels of MR x kc, shared
//     tiles (row block x column block of C), handed out dynamically:
//       pc (KC)          pack B̃ = op(B)[pc, tile cols] -> thread-private, in L2
//         ir (MR)        one A panel (MR*kc*4 ~ L1/4) stays in L1
//           jr (NR)      B̃ streams from L2
//             micro-kernel, epilogue fused into its store on the last pc
//
// Threading: a tile of C is an independent unit of work (it owns its output
// and packs its own B̃), so there is no barrier anywhere in a GEMM. Any
// thread takes the next tile when it is ready; a thread the OS has not
// scheduled simply takes none, and the GEMM runs at one-thread speed instead
// of stalling for a scheduler slice. Ã is packed once by the calling thread
// before the tiles start (M*K elements: ~1% of the multiply for N >= 768).
// K is never split, and kc and the pc boundaries depend only on the shape and
// the CPU (never on the thread count or the tiling), so every element of C
// sees the same operations in the same order: results are bit-identical
// across thread counts.

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "../../runtime/cpu_features.h"
#include "../../runtime/huge_pages.h"
#include "../../runtime/thread_pool.h"
#include "../qgemm/qgemm.h"
#include "gemm.h"
#include "gemm_frame.h"
#include "ukernel.h"

namespace attnode::kernels {
namespace {

using gemm_detail::Bf16Kernels;
using gemm_detail::Epilogue;
using gemm_detail::IsaKernels;
using gemm_detail::TileGrid;
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

}  // namespace

// Layout (fp32): for each K block pc (every block but the last is kc deep),
// all ceil(n / nr) panels of that block, each kc x nr k-major: exactly what
// the tile loop would pack, so a tile's B̃ is a pointer into it.
// bf16: the same in k-pairs (kp pairs in blocks of kcp, see ukernel.h); no
// per-call packing of B exists for bf16, so this is the only B̃ it reads.
class PackedB {
 public:
  PackedPrecision precision = PackedPrecision::Float32;
  Isa isa;
  int64_t k, n, kc, nr;
  bool trans_b;
  float* data = nullptr;  // fp32: 64-byte aligned
  size_t floats = 0;
  int64_t kp = 0, kcp = 0;    // bf16: k-pairs, k-pairs per block
  uint32_t* pairs = nullptr;  // bf16: 64-byte aligned, one word per pair
  size_t words = 0;
  std::shared_ptr<const QPackedB> q;  // int8: quantized panels, scales and column sums (qgemm/qgemm.h)
  ~PackedB() {
    runtime::free_streamed(data);
    runtime::free_streamed(pairs);
  }
  const float* block(int64_t pc, int64_t j0) const {
    return data + pc * ceil_div(n, nr) * nr + (j0 / nr) * std::min(kc, k - pc) * nr;
  }
  const uint32_t* block_bf16(int64_t bp, int64_t j0) const {
    return pairs + bp * ceil_div(n, nr) * nr + (j0 / nr) * std::min(kcp, kp - bp) * nr;
  }
};

namespace {

struct Blocking {
  int64_t kc, nc, mc;
};

// GemmTuning::nc_stream by rule: the current B̃ (kc x nc) and the next block being prefetched (as large) within
// 60% of L2, the rest for the A panels and C; never wider than nc.
int64_t stream_width(const IsaKernels& uk, const runtime::CpuInfo& ci, int64_t kc, int64_t nc) {
  const int64_t w = ci.l2_bytes * 6 / 10 / (2 * kc * 4) / uk.nr * uk.nr;
  return std::clamp<int64_t>(w, uk.nr, std::max<int64_t>(uk.nr, nc));
}

// Rules derived from the cache sizes cpuid reports, for CPUs without a
// measured entry: the A panel (MR x kc) takes ~1/4 of L1, leaving room for
// the streamed B lines and C; the packed B block (kc x nc) ~1/2 of L2.
GemmTuning derived_tuning(const IsaKernels& uk, const runtime::CpuInfo& ci) {
  GemmTuning t;
  t.entry = "derived";
  t.mr = uk.mr;
  t.nr = uk.nr;
  t.kc = std::clamp<int64_t>(ci.l1d_bytes / (4 * uk.mr * 4), 128, 1024);
  t.nc = std::max<int64_t>(uk.nr, (ci.l2_bytes / 2) / (t.kc * 4) / uk.nr * uk.nr);
  t.nc_stream = stream_width(uk, ci, t.kc, t.nc);
  t.direct_a = false;
  // Not a cache-size matter: the pass over B it saves is there on any CPU (only the stride rule is cache-shaped).
  t.direct_b = uk.kernel_strided_b != nullptr;
  return t;
}

// Measured entries for the AVX-512 8 x 48 micro-kernel, by microarchitecture
// (runtime::CpuInfo::uarch). Each was chosen with bench/gemm on that CPU
// against oneDNN's sgemm (bench/results/gemm-*.md).
//  - zen5 (48 KiB L1d, 1 MiB L2): the rules above as they were measured in
//    bench/results/gemm-latest.md (kc 384, nc 336, A packed).
//  - zen4 (32 KiB L1d, 1 MiB L2; zmm FMAs on 256-bit halves, 117 GFLOP/s per
//    core): the rules would give kc 256 (a 768-deep product in three K blocks,
//    C read and written three times); kc 384 with a 480-wide B block (720 KiB
//    of L2) and A read in place measured best (bench/results/gemm-zen4-*.md).
//    nc_stream 192 (the rule's value): at M = 128, one thread, 4-10% over
//    480 in every layout with the next block prefetched (bench/gemm).
//    B read in place at M <= 128 (direct_b): 128 x 768 x 768 x·W 81-89% -> 88-92% of the peak.
//  - zen5 keeps nc_stream = nc and B packed (its behaviour as measured) until measured.
struct TableEntry {
  const char* uarch;
  int64_t kc, nc, nc_stream;
  bool direct_a, direct_b;
};
constexpr TableEntry kAvx512Table[] = {
    {"zen4", 384, 480, 192, true, true},
    {"zen5", 384, 336, 336, false, false},
};

// ATTNODE_GEMM_BLOCKING="kc=384,nc=480,ncs=192,a=rows|packed,b=rows|packed" (any subset) replaces
// fields of the chosen entry, to measure a new CPU without rebuilding; read
// once. Malformed text is ignored (gemm_config().entry then has no "+env").
bool apply_env_blocking(GemmTuning& t) {
  const char* e = std::getenv("ATTNODE_GEMM_BLOCKING");
  if (e == nullptr || *e == '\0') return false;
  GemmTuning o = t;
  const char* s = e;
  while (*s != '\0') {
    char key[8] = {};
    char val[16] = {};
    int used = 0;
    if (std::sscanf(s, "%7[a-z]=%15[a-z0-9]%n", key, val, &used) != 2) return false;
    s += used;
    if (*s == ',') ++s;
    const long v = std::strtol(val, nullptr, 10);
    if (std::strcmp(key, "kc") == 0 && v >= 16 && v <= 8192) {
      o.kc = v;
    } else if (std::strcmp(key, "nc") == 0 && v >= 1 && v <= 65536) {
      o.nc = std::max<int64_t>(o.nr, v / o.nr * o.nr);
    } else if (std::strcmp(key, "ncs") == 0 && v >= 1 && v <= 65536) {
      o.nc_stream = std::max<int64_t>(o.nr, v / o.nr * o.nr);
    } else if (std::strcmp(key, "a") == 0 && (std::strcmp(val, "rows") == 0 || std::strcmp(val, "packed") == 0)) {
      o.direct_a = val[0] == 'r';
    } else if (std::strcmp(key, "b") == 0 && (std::strcmp(val, "rows") == 0 || std::strcmp(val, "packed") == 0)) {
      o.direct_b = val[0] == 'r';
    } else {
      return false;
    }
  }
  t = o;
  return true;
}

GemmTuning choose_tuning(Isa isa) {
  const IsaKernels& uk = kernels_for(isa);
  const auto& ci = runtime::cpu_info();
  GemmTuning t = derived_tuning(uk, ci);
  if (isa == Isa::Avx512) {
    for (const TableEntry& e : kAvx512Table) {
      if (ci.uarch != e.uarch) continue;
      t.entry = e.uarch;
      t.kc = e.kc;
      t.nc = e.nc;
      t.nc_stream = e.nc_stream;
      t.direct_a = e.direct_a;
      t.direct_b = e.direct_b;
    }
  }
  // Only the AVX-512 kernel reads A in place, and only it prefetches the next block (the others keep nc).
  if (uk.kernel_rows == nullptr) t.direct_a = false;
  if (isa != Isa::Avx512) t.nc_stream = t.nc;
  if (apply_env_blocking(t)) t.entry += "+env";
  if (uk.kernel_rows == nullptr) t.direct_a = false;
  if (uk.kernel_strided_b == nullptr) t.direct_b = false;
  return t;
}

const GemmTuning& tuning_for(Isa isa) {
  static const GemmTuning table[3] = {choose_tuning(Isa::Portable), choose_tuning(Isa::Avx2),
                                      choose_tuning(Isa::Avx512)};
  return table[static_cast<int>(isa)];
}

// K and N split into equal blocks of at most the tuning's kc / nc, so no
// block is a thin remainder. mc only bounds the packed-A scratch (Ã is
// streamed panel by panel, not cache-resident). kc depends only on K and the
// CPU, never on M or the thread count (pre-packed B and bit-identical results
// across thread counts rely on that).
// `stream`: the tiles prefetch their next block (GemmTuning::nc_stream applies).
Blocking blocking_for(const IsaKernels& uk, const GemmTuning& tu, int64_t m, int64_t n, int64_t k,
                      bool stream = false) {
  int64_t mc = std::max<int64_t>(uk.mr, (int64_t{8} << 20) / (tu.kc * 4) / uk.mr * uk.mr);
  Blocking b;
  b.kc = ceil_div(k, ceil_div(k, tu.kc));
  const int64_t nc = stream ? tu.nc_stream : tu.nc;
  b.nc = round_up(ceil_div(n, ceil_div(n, nc)), uk.nr);
  b.mc = round_up(ceil_div(m, ceil_div(m, mc)), uk.mr);
  return b;
}

// bf16: the same cache roles with k-pairs. A k-pair of an A panel (MR words)
// and of a B panel (NR words) has the bytes of one fp32 k, so kcp pairs take
// what kc floats did: each block covers twice the K.
struct Bf16Blocking {
  int64_t kcp, nc;
};

Bf16Blocking bf16_blocking_for(const Bf16Kernels& uk, int64_t n, int64_t k) {
  const auto& ci = runtime::cpu_info();
  const int64_t kp = ceil_div(k, 2);
  int64_t kcp = std::clamp<int64_t>(ci.l1d_bytes / (4 * uk.mr * 4), 64, 512);
  kcp = ceil_div(kp, ceil_div(kp, kcp));
  int64_t nc = std::max<int64_t>(uk.nr, (ci.l2_bytes / 2) / (kcp * 4) / uk.nr * uk.nr);
  Bf16Blocking b;
  b.kcp = kcp;
  b.nc = round_up(ceil_div(n, ceil_div(n, nc)), uk.nr);
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

// Ã (and GEMV's gathered x) of the GEMMs this thread calls: read by every
// thread of the region, so separate from the tile scratch below.
Arena& thread_arena() {
  static thread_local Arena arena;
  return arena;
}

// B̃ of the tile this thread is computing.
Arena& tile_arena() {
  static thread_local Arena arena;
  return arena;
}

float* align64(float* p) { return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t{63}); }

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

// Below this many multiply-adds per thread a second thread costs more (waking
// it, its cold caches, the tiles' redundant packing) than it saves.
constexpr double kMinFmaPerThread = 5e5;

int choose_threads(const GemmParams& p, int max_threads) {
  int nt = ThreadPool::instance().num_threads();
  if (max_threads > 0) nt = std::min(nt, max_threads);
  const double fmas = static_cast<double>(p.m) * static_cast<double>(p.n) * static_cast<double>(p.k);
  nt = static_cast<int>(std::min<double>(nt, std::max(1.0, fmas / kMinFmaPerThread)));
  return std::max(nt, 1);
}

// Unpacked B (read through strides, ~10 GB/s per core): ~1M elements per thread.
constexpr int64_t kGemvMinBytesUnpacked = int64_t{4} << 20;
// Pre-packed B, fp32 and bf16 alike: ~1 MiB of weight per thread, the bar measured for the bf16 GEMV (below). The
// fp32 bar was 4 MiB, so at 2 threads no projection of a SmolLM-135M layer (q|k|v 2.2 MB, o 1.3 MB, gate|up
// 7.1 MB, down 3.5 MB) was split and the second thread streamed only the head: 2-thread fp32 decode was 7% faster
// than 1-thread. Bytes are what a thread streams, whatever the precision.
constexpr int64_t kGemvMinBytesF32 = int64_t{1} << 20;
constexpr int64_t kGemvMinBytesBf16 = int64_t{1} << 20;

// Threads for an M = 1 product reading `bytes` of B: one per `min_bytes` (at least one, at most nt).
// ATTNODE_GEMV_MIN_BYTES overrides the bar (for measuring it).
int64_t gemv_threads(int64_t nt, int64_t bytes, int64_t min_bytes) {
  static const int64_t forced = [] {
    const char* e = std::getenv("ATTNODE_GEMV_MIN_BYTES");
    return e ? std::max<int64_t>(1, std::atoll(e)) : int64_t{0};
  }();
  return std::min<int64_t>(nt, std::max<int64_t>(1, bytes / (forced ? forced : min_bytes)));
}

// Runs f(j0, j1) over column ranges of [0, n) on up to `nt` threads for an
// M = 1 product. Range edges stay on multiples of `unit` from column 0, so each
// column is computed by the same code path for any split; a few ranges per
// thread let a late or descheduled thread leave only a small share undone.
template <typename F>
void split_gemv_columns(int64_t n, int64_t unit, int64_t nt, const F& f) {
  const int64_t units = ceil_div(n, unit);
  nt = std::max<int64_t>(1, std::min(nt, units));
  const int64_t ntiles = nt <= 1 ? 1 : std::min<int64_t>(units, 8 * nt);
  ThreadPool::instance().parallel_tiles(
      ntiles,
      [&](int64_t t) {
        const int64_t j0 = std::min(n, units * t / ntiles * unit);
        const int64_t j1 = std::min(n, units * (t + 1) / ntiles * unit);
        if (j0 < j1) f(j0, j1);
      },
      static_cast<int>(nt));
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
  // GEMV streams B once (~10 GB/s per core from L3): below ~1M elements per
  // thread the wake-up of a parked worker costs more than it saves.
  split_gemv_columns(p.n, p.trans_b ? 16 : 128, gemv_threads(nt, 4 * p.k * p.n, kGemvMinBytesUnpacked),
                     [&](int64_t j0, int64_t j1) {
                       if (gemv != nullptr) {
                         gemv(p.k, x, p.b, p.ldb, p.trans_b, j0, j1, p.c, &ep);
                       } else {
                         gemv_generic(p.k, x, p.b, p.ldb, p.trans_b, j0, j1, p.c, &ep);
                       }
                     });
}

// M == 1 against a pre-packed fp32 B (see PackedGemvFn): threads split the
// columns on panel boundaries, so each column's arithmetic is the same for
// any split.
void run_gemv_packed(const IsaKernels& uk, const PackedB& pk, const GemmParams& p, int nt) {
  const float* x = p.a;
  if (p.trans_a && p.lda != 1) {
    float* buf = thread_arena().get(static_cast<size_t>(p.k));
    for (int64_t kk = 0; kk < p.k; ++kk) buf[kk] = p.a[kk * p.lda];
    x = buf;
  }
  const Epilogue ep{p.alpha, p.beta, p.bias, static_cast<int>(p.act)};
  split_gemv_columns(p.n, uk.nr, gemv_threads(nt, 4 * p.k * p.n, kGemvMinBytesF32),
                     [&](int64_t j0, int64_t j1) { uk.gemv_packed(p.k, pk.kc, x, pk.data, p.n, j0, j1, p.c, &ep); });
}

// GemmParams::row_sums_a from op(A) as stored (the paths that do not pack A: M = 1, K = 0, N = 0, bf16).
void row_sums_direct(const GemmParams& p) {
  for (int64_t i = 0; i < p.m; ++i) {
    float s = 0.0f;
    for (int64_t kk = 0; kk < p.k; ++kk) s += op_at(p.a, p.lda, p.trans_a, i, kk);
    float* out = p.row_sums_a + i;
    *out = p.beta == 0.0f ? p.alpha * s : p.alpha * s + p.beta * *out;
  }
}

// row_sums_direct's values with a transposed A read row by row of its storage (each op(A) row is a column there):
// every sum still adds its k in order from 0, so the results are the same bit for bit, with unit-stride reads.
void row_sums_by_columns(const GemmParams& p) {
  if (!p.trans_a) {
    row_sums_direct(p);
    return;
  }
  constexpr int64_t kCols = 256;
  float acc[kCols];
  for (int64_t i0 = 0; i0 < p.m; i0 += kCols) {
    const int64_t cols = std::min(kCols, p.m - i0);
    std::fill(acc, acc + cols, 0.0f);
    for (int64_t kk = 0; kk < p.k; ++kk) {
      const float* row = p.a + kk * p.lda + i0;
      for (int64_t j = 0; j < cols; ++j) acc[j] += row[j];
    }
    for (int64_t j = 0; j < cols; ++j) {
      float* out = p.row_sums_a + i0 + j;
      *out = p.beta == 0.0f ? p.alpha * acc[j] : p.alpha * acc[j] + p.beta * *out;
    }
  }
}

// GemmParams::row_sums_a of rows [ic, ic + ms) from their packed Ã (all of K, block pc at mp * mr * pc, each
// panel of a block min(kc, k - pc) deep), read while it is still in cache. Each row sums its k in order: the
// same values as row_sums_direct.
void row_sums_packed(const GemmParams& p, const float* a_pack, int64_t ic, int64_t ms, int mr, int64_t kc) {
  constexpr int kMaxMr = 32;
  const int64_t mp = ceil_div(ms, mr);
  for (int64_t q = 0; q < mp; ++q) {
    float acc[kMaxMr] = {};
    for (int64_t pc = 0; pc < p.k; pc += kc) {
      const int64_t kcb = std::min(kc, p.k - pc);
      const float* ap = a_pack + mp * mr * pc + q * mr * kcb;
      for (int64_t kk = 0; kk < kcb; ++kk)
        for (int r = 0; r < mr; ++r) acc[r] += ap[kk * mr + r];
    }
    const int64_t rows = std::min<int64_t>(mr, ms - q * mr);
    for (int64_t r = 0; r < rows; ++r) {
      float* out = p.row_sums_a + ic + q * mr + r;
      *out = p.beta == 0.0f ? p.alpha * acc[r] : p.alpha * acc[r] + p.beta * *out;
    }
  }
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

// Budget for the packed Ã of one row super-block (floats): bounds the
// per-thread arena for tall A.
constexpr int64_t kAPackFloats = int64_t{2} << 20;
// Ã is packed in parallel from this many floats on (below, waking a thread costs more than the copy), in chunks
// of about kPackChunkRows rows of one K block.
constexpr int64_t kParallelPackFloats = int64_t{32} << 10;
constexpr int64_t kPackChunkRows = 64;
// Rows per tile when M is split: large enough that re-packing B̃ for each row
// block costs ~2% of the tile's multiply, small enough to balance tall shapes.
constexpr int64_t kTileRows = 384;
// Tiles per thread wanted for balance: a thread that stalls (descheduled)
// or starts late then delays the end by at most a small tile.
constexpr int64_t kTilesPerThread = 8;
// ~1 ms of one-thread work: waking the workers at once costs little by comparison.
constexpr double kEagerWakeFma = 3e7;
// A packed B block is read from memory (or L3) by its first row panel and
// from L2 by the others: with few row panels (M = 128: 16) that first pass is
// a large share of the tile and stalls on the reads. So the micro-kernel
// calls of the later row panels prefetch the next block this thread will
// stream (the tile's next K block; with one thread, the next tile's first
// one), a few lines per call. Beyond this many row panels the first pass is a
// small share and the extra lines would only compete with Ã for L2.
// Measured on Zen 5 at 1 thread (bench/gemm/cold-b.ts): +1..5% for fp32 and
// +3..9% for bf16 at M = 128 with weights from memory, 0..3% from L3.
// An unpacked B is prefetched the same way: the rows (x·W) or k runs (x·Wᵀ)
// the next pack reads, so the pack copies from cache instead of waiting on
// L3/DRAM with the FMA units idle (on Zen 4 the pack of a 768 x 2304 B read
// 9-12 GB/s from L3, 12-16% of an M = 128 product). With the next block in
// L2 beside the current one, the blocks are GemmTuning::nc_stream wide.
// ATTNODE_GEMM_PREFETCH=0 (read once) turns both off, for comparisons;
// ATTNODE_GEMM_SOURCE_PREFETCH=0 only the unpacked one.
constexpr int64_t kPrefetchMaxPasses = 32;

bool prefetch_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("ATTNODE_GEMM_PREFETCH");
    return !(e != nullptr && e[0] == '0');
  }();
  return on;
}

// ATTNODE_GEMM_SOURCE_PREFETCH=0 turns off the prefetch of an unpacked B's next source block (for comparisons).
bool source_prefetch_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("ATTNODE_GEMM_SOURCE_PREFETCH");
    return !(e != nullptr && e[0] == '0');
  }();
  return on;
}

// The tile whose first packed block a thread prefetches while it runs the last K block of its current tile: the
// tile it will most likely run next. With one thread that is t + 1. With more, tiles are claimed dynamically
// (whoever finishes first takes the next), so the threads reserve guesses in the order they reach their last K
// block, which is the order they will finish in when tiles cost the same (equal column blocks), and never below
// the tiles already started (a thread the OS has not scheduled claims nothing, so the guesses cannot drift
// behind the claims). A wrong guess costs one block of prefetch nobody uses, a right one the cold reads at the
// start of a tile: with weights from memory (a 6-layer BERT encoder at 1 x 128) the GEMMs took 8% more CPU at
// 1 thread with the next tile's prefetch off, which is how they ran at 2 threads before this.
class NextTileGuess {
 public:
  explicit NextTileGuess(int nt) : nt_(nt) {}
  // At the start of tile t.
  void started() {
    if (nt_ > 1) started_.fetch_add(1, std::memory_order_relaxed);
  }
  // The likely next tile of the thread that runs tile t (once per tile, at its last K block).
  int64_t next_after(int64_t t) {
    if (nt_ <= 1) return t + 1;
    int64_t h = next_.load(std::memory_order_relaxed);
    for (;;) {
      const int64_t r = std::max(h, started_.load(std::memory_order_relaxed));
      if (next_.compare_exchange_weak(h, r + 1, std::memory_order_relaxed)) return r;
    }
  }

 private:
  const int nt_;
  std::atomic<int64_t> started_{0};
  std::atomic<int64_t> next_{0};
};

// The prefetch of one next block, handed out a few lines per micro-kernel call
// (through the Epilogue) to the calls of row panels 2.. of the current block.
struct NextBlockPrefetch {
  const char* next = nullptr;
  int64_t lines = 0, per_call = 0;

  // `passes` row panels run over the current block, each making `jp` calls of
  // `k_steps` steps (a call prefetches at most one line per 2 steps).
  NextBlockPrefetch() = default;
  NextBlockPrefetch(const void* block, int64_t block_lines, int64_t passes, int64_t jp, int64_t k_steps) {
    if (block == nullptr || passes < 2 || passes > kPrefetchMaxPasses) return;
    next = static_cast<const char*>(block);
    lines = block_lines;
    per_call = std::min(ceil_div(lines, (passes - 1) * jp), k_steps / 2);
  }

  // A strided region instead of a packed block: `runs` runs of `run_bytes`
  // from `base`, `stride` bytes apart (the rows of an unpacked B that the
  // next pack reads: k rows of x·W, or columns' k runs of x·Wᵀ). Lines are
  // counted from each run's start, so an unaligned run takes one more.
  NextBlockPrefetch(const void* base, int64_t run_bytes, int64_t runs, int64_t stride, int64_t passes, int64_t jp,
                    int64_t k_steps) {
    if (base == nullptr || runs <= 0 || passes < 2 || passes > kPrefetchMaxPasses) return;
    const bool aligned = reinterpret_cast<uintptr_t>(base) % 64 == 0 && stride % 64 == 0;
    run = ceil_div(run_bytes, 64) + (aligned ? 0 : 1);
    run_left = run;
    skip = stride - 64 * run;
    next = static_cast<const char*>(base);
    lines = run * runs;
    per_call = std::min(ceil_div(lines, (passes - 1) * jp), k_steps / 2);
  }

  void attach(Epilogue& ep) {
    if (lines <= 0) return;
    const int64_t cnt = std::min(per_call, lines);
    ep.prefetch = next;
    ep.prefetch_lines = static_cast<int>(cnt);
    lines -= cnt;
    if (run == 0) {
      next += 64 * cnt;
      return;
    }
    ep.prefetch_run = static_cast<int>(run);
    ep.prefetch_run_left = static_cast<int>(run_left);
    ep.prefetch_skip = skip;
    for (int64_t c = cnt; c > 0;) {
      const int64_t step = std::min(c, run_left);
      next += 64 * step;
      run_left -= step;
      c -= step;
      if (run_left == 0) {
        next += skip;
        run_left = run;
      }
    }
  }

 private:
  int64_t run = 0, run_left = 0, skip = 0;  // run == 0: contiguous lines
};

// Panels [lo, hi) of `size` rows (or columns) each, the first at element `base`.
struct PanelRange {
  int64_t base, lo, hi, size;
};

// One K block of one tile: each row panel of A against each column panel of
// B̃, the epilogue and the next block's prefetch attached. `call(ir, i,
// m_valid, jr, c, n_valid, ep)` runs the micro-kernel on row panel ir (first
// row i) and column panel jr: it knows where that panel's A and B̃ live
// (packed Ã, A in place, fp32 or bf16), so the fp32 and bf16 paths share this
// loop.
template <typename Call>
void run_block(const Call& call, const GemmParams& p, const PanelRange& rows, const PanelRange& cols, bool last_k,
               const Epilogue& ep_base, NextBlockPrefetch& pf) {
  for (int64_t ir = rows.lo; ir < rows.hi; ++ir) {
    const int64_t i = rows.base + ir * rows.size;
    const int m_valid = static_cast<int>(std::min<int64_t>(rows.size, p.m - i));
    float* crow = p.c + i * p.ldc;
    for (int64_t jr = cols.lo; jr < cols.hi; ++jr) {
      const int64_t j = cols.base + jr * cols.size;
      Epilogue ep = ep_base;
      if (last_k && p.bias != nullptr) ep.bias = p.bias + j;
      if (ir > rows.lo) pf.attach(ep);
      call(ir, i, m_valid, jr, crow + j, static_cast<int>(std::min<int64_t>(cols.size, p.n - j)), &ep);
    }
  }
}

constexpr int64_t kDirectBMaxPanels = 16;

// How many distinct cache sets the rows of a matrix `stride_floats` apart start on, in a cache of `sets` sets of
// 64-byte lines (rows that do not start on line boundaries drift across the sets: counted as all of them).
int64_t row_start_sets(int64_t stride_floats, int64_t sets) {
  const int64_t bytes = stride_floats * 4;
  if (bytes % 64 != 0) return sets;
  int64_t a = bytes / 64 % sets, b = sets;
  if (a == 0) return 1;
  while (a != 0) {
    const int64_t t = b % a;
    b = a;
    a = t;
  }
  return sets / b;
}

// Whether the micro-kernels read a non-transposed, unpacked B in place instead of packing B̃ (see
// MicroKernelStridedBFn): with few row panels (M <= kDirectBMaxPanels MR) the pack is a pass over all of B for
// only a few uses of each element (GemmTuning::direct_b). Zen 4, 1 thread, by thread CPU time, 7 alternating pairs
// under load 8-12: 128 x 768 x 768 81-89% of the peak packed, 88-92% in place (every pair); 128 x 768 x 2304 +1..4% in
// 3 of 4; at M = 256 (32 row panels) no clear gain (a pass over a strided B costs a TLB miss every row or so, once per
// row panel, while the pack's cost is shared by them all). Only when every column panel is whole (N a multiple of NR)
// and when the rows spread over the caches' sets: B's rows 3 KiB apart (N = 768) start on 4 of the 64 L1 set groups and
// on 128 of the 2048 L2 sets (about 3 lines of a 384-row block per 8-way L2 set); 12 KiB apart (N = 3072) on 1 and 32
// (12 lines per set), so such a B is packed. A read in place must spread over L1 as well: its rows 12 KiB apart (K =
// 3072) share one set group, and B's rows crowding more sets measured no gain there (128 x 3072 x 768: 72-82% either
// way). The cache geometry is Zen 4/5's (64-set 32-48 KiB L1d, 1-2 MiB L2); other geometries only make the rule more or
// less cautious.
bool direct_b_ok(const IsaKernels& uk, const GemmTuning& tu, const GemmParams& p, int64_t kc, bool a_in_place) {
  if (!tu.direct_b || uk.kernel_strided_b == nullptr || p.trans_b || p.n % uk.nr != 0) return false;
  if (ceil_div(p.m, uk.mr) > kDirectBMaxPanels) return false;
  constexpr int64_t kL1Sets = 64, kL2Sets = 2048;
  if (a_in_place && row_start_sets(p.lda, kL1Sets) < 4) return false;
  return row_start_sets(p.ldb, kL1Sets) >= 4 && kc <= 4 * row_start_sets(p.ldb, kL2Sets);
}

// TileGrid: see gemm_frame.h.
TileGrid make_tile_grid(int64_t ms, int64_t mp, int64_t n, int64_t nc, int64_t np_total, int nt) {
  TileGrid g;
  g.nrb = 1;
  g.ncb = ceil_div(n, nc);
  if (nt > 1) {
    g.nrb = std::min(mp, ceil_div(ms, kTileRows));
    const int64_t want_cb = ceil_div(kTilesPerThread * nt, g.nrb);
    g.ncb = std::min(np_total, std::max(g.ncb, want_cb));
  }
  g.cb_panels = ceil_div(np_total, g.ncb);
  g.ncb = ceil_div(np_total, g.cb_panels);  // no empty column blocks
  g.rb_panels = ceil_div(mp, g.nrb);
  g.nrb = ceil_div(mp, g.rb_panels);
  return g;
}

void run_gemm(const IsaKernels& uk, const GemmParams& p, int nt) {
  const int mr = uk.mr, nr = uk.nr;
  const GemmTuning& tu = tuning_for(runtime::active_isa());
  // A pre-packed B is usable when it was packed for this ISA with this K blocking (kc does not depend on `stream`).
  const PackedB* packed = p.packed_b;
  if (packed && (packed->precision != PackedPrecision::Float32 || packed->isa != runtime::active_isa() ||
                 packed->kc != blocking_for(uk, tu, p.m, p.n, p.k).kc || packed->nr != nr ||
                 !packed_b_matches(*packed, p.k, p.n, p.trans_b))) {
    packed = nullptr;
  }
  // Whether the tiles will prefetch their next block: few row panels per tile (every M <= kPrefetchMaxPasses MR
  // is one row block at any thread count, see make_tile_grid), a packed B or the source of an unpacked one.
  const bool prefetch = prefetch_enabled() && (packed != nullptr || source_prefetch_enabled());
  const Blocking bl = blocking_for(uk, tu, p.m, p.n, p.k, prefetch && ceil_div(p.m, mr) <= kPrefetchMaxPasses);
  const bool a_in_place = !(p.trans_a || !tu.direct_a || p.row_sums_a != nullptr);
  const bool b_in_place = packed == nullptr && direct_b_ok(uk, tu, p, bl.kc, a_in_place);

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

  // Row super-blocks: equal, whole panels, Ã within budget.
  const int64_t sb_max = std::max<int64_t>(mr, kAPackFloats / p.k / mr * mr);
  const int64_t msb = round_up(ceil_div(p.m, ceil_div(p.m, sb_max)), mr);
  const int64_t np_total = ceil_div(p.n, nr);

  for (int64_t ic = 0; ic < p.m; ic += msb) {
    const int64_t ms = std::min(msb, p.m - ic);
    const int64_t mp = ceil_div(ms, mr);
    // Ã for all of K: block pc starts at mp * mr * pc (every earlier block is bl.kc deep). Not transposed A
    // needs no copy where the ISA's micro-kernel reads its rows in place (a row's k run is contiguous, and the
    // hardware prefetchers follow MR row streams as well as one panel stream): the copy was a pass over all of
    // A through memory (4% of a 2048 x 768 x 768 product on Zen 4). Row sums are taken from the packed copy.
    float* a_pack = nullptr;
    if (!a_in_place) {
      a_pack = align64(thread_arena().get(static_cast<size_t>(mp * mr * p.k + 16)));
      // With more threads, row chunks of whole panels x K blocks are packed in parallel: otherwise the other threads
      // wait while the caller packs (~10% of a 256 x 256 x 256 GEMM's time on 2 threads). A pure copy: the same Ã
      // whoever packs which part.
      const int64_t chunk_rows = std::max<int64_t>(mr, kPackChunkRows / mr * mr);
      const int64_t chunks = nt > 1 && ms * p.k >= kParallelPackFloats ? ceil_div(ms, chunk_rows) : 1;
      if (chunks > 1) {
        ThreadPool::instance().parallel_tiles(
            ceil_div(p.k, bl.kc) * chunks,
            [&](int64_t t) {
              const int64_t pc = t / chunks * bl.kc, kcb = std::min(bl.kc, p.k - pc);
              const int64_t r0 = t % chunks * chunk_rows, rows = std::min(chunk_rows, ms - r0);
              pack_a(ic + r0, rows, pc, kcb, a_pack + mp * mr * pc + r0 * kcb);
            },
            nt);
      } else {
        for (int64_t pc = 0; pc < p.k; pc += bl.kc)
          pack_a(ic, ms, pc, std::min(bl.kc, p.k - pc), a_pack + mp * mr * pc);
      }
      if (p.row_sums_a != nullptr) row_sums_packed(p, a_pack, ic, ms, mr, bl.kc);
    }

    const TileGrid g = make_tile_grid(ms, mp, p.n, bl.nc, np_total, nt);
    const int64_t nrb = g.nrb, ncb = g.ncb, rb_panels = g.rb_panels, cb_panels = g.cb_panels;
    const int64_t b_floats = bl.kc * cb_panels * nr + 16;

    const int64_t ntiles = nrb * ncb;
    NextTileGuess guess(nt);
    auto tile = [&](int64_t t) {
      if (prefetch) guess.started();
      const int64_t rb = t / ncb, cb = t % ncb;
      const int64_t plo = rb * rb_panels, phi = std::min(mp, plo + rb_panels);
      const int64_t j0 = cb * cb_panels * nr, j1 = std::min(p.n, j0 + cb_panels * nr);
      const int64_t jp = ceil_div(j1 - j0, nr);
      float* const b_scratch =
          packed || b_in_place ? nullptr : align64(tile_arena().get(static_cast<size_t>(b_floats)));
      for (int64_t pc = 0; pc < p.k; pc += bl.kc) {
        const int64_t kc = std::min(bl.kc, p.k - pc);
        const bool first_k = pc == 0, last_k = pc + kc >= p.k;
        const Epilogue ep_base{p.alpha, first_k ? p.beta : 1.0f, nullptr, last_k ? static_cast<int>(p.act) : 0};
        const float* b_pack = b_scratch;
        if (packed) {
          b_pack = packed->block(pc, j0);
        } else if (!b_in_place) {
          pack_b(pc, kc, j0, j1 - j0, b_scratch);
        }
        // Next block (see kPrefetchMaxPasses): the tile's next K block, or the first of the tile this thread will
        // likely run next (NextTileGuess). Packed B: that block; unpacked: the source region its pack will read.
        int64_t npc = -1, nj0 = 0, nj1 = 0;
        if (prefetch && !last_k) {
          npc = pc + kc, nj0 = j0, nj1 = j1;
        } else if (prefetch) {
          const int64_t tn = guess.next_after(t);
          if (tn < ntiles) npc = 0, nj0 = tn % ncb * cb_panels * nr, nj1 = std::min(p.n, nj0 + cb_panels * nr);
        }
        NextBlockPrefetch pf;
        if (npc >= 0 && packed != nullptr) {
          const int64_t nkc = std::min(bl.kc, p.k - npc);
          pf = NextBlockPrefetch(packed->block(npc, nj0), nkc * ceil_div(nj1 - nj0, nr) * nr * 4 / 64, phi - plo, jp,
                                 kc);
        } else if (npc >= 0) {
          const int64_t nkc = std::min(bl.kc, p.k - npc);
          if (p.trans_b) {
            pf = NextBlockPrefetch(p.b + nj0 * p.ldb + npc, nkc * 4, nj1 - nj0, p.ldb * 4, phi - plo, jp, kc);
          } else {
            pf = NextBlockPrefetch(p.b + npc * p.ldb + nj0, (nj1 - nj0) * 4, nkc, p.ldb * 4, phi - plo, jp, kc);
          }
        }
        const PanelRange rows{ic, plo, phi, mr}, cols{j0, 0, jp, nr};
        if (b_in_place) {
          const float* const b_blk = p.b + pc * p.ldb + j0;
          const float* const a_blk = a_pack == nullptr ? p.a + pc : a_pack + mp * mr * pc;
          const int64_t lda = a_pack == nullptr ? p.lda : 0;
          run_block(
              [&](int64_t ir, int64_t i, int mv, int64_t jr, float* c, int nv, const Epilogue* ep) {
                const float* a = lda != 0 ? a_blk + i * lda : a_blk + ir * mr * kc;
                uk.kernel_strided_b(kc, a, lda, b_blk + jr * nr, p.ldb, c, p.ldc, mv, nv, ep);
              },
              p, rows, cols, last_k, ep_base, pf);
        } else if (a_pack == nullptr) {
          const float* const a_blk = p.a + pc;
          run_block(
              [&](int64_t, int64_t i, int mv, int64_t jr, float* c, int nv, const Epilogue* ep) {
                uk.kernel_rows(kc, a_blk + i * p.lda, p.lda, b_pack + jr * nr * kc, c, p.ldc, mv, nv, ep);
              },
              p, rows, cols, last_k, ep_base, pf);
        } else {
          const float* const a_blk = a_pack + mp * mr * pc;
          run_block(
              [&](int64_t ir, int64_t, int mv, int64_t jr, float* c, int nv, const Epilogue* ep) {
                uk.kernel(kc, a_blk + ir * mr * kc, b_pack + jr * nr * kc, c, p.ldc, mv, nv, ep);
              },
              p, rows, cols, last_k, ep_base, pf);
        }
      }
    };
    // Long GEMMs wake sleeping workers at once; shorter ones let the pool
    // decide from the first tiles' pace.
    ThreadPool::instance().parallel_tiles(nrb * ncb, tile, nt, static_cast<double>(ms) * p.n * p.k > kEagerWakeFma);
  }
}

// ---- bf16 weights ----

const Bf16Kernels& bf16_kernels() { return gemm_detail::kAvx512Bf16Kernels; }

// As run_gemm, with Ã packed to bf16 pairs and B̃ read from the packed bf16
// matrix. Same tiling and the same guarantees: no barrier, K never split,
// block boundaries fixed by the packing, so results do not depend on the
// thread count.
void run_gemm_bf16(const PackedB& pk, const GemmParams& p, int nt) {
  const Bf16Kernels& uk = bf16_kernels();
  const int mr = uk.mr, nr = uk.nr;
  const int64_t kp = pk.kp, kcp = pk.kcp;
  const Bf16Blocking bl = bf16_blocking_for(uk, p.n, p.k);
  // Row super-blocks: Ã (one word per k-pair and row) within the fp32 path's budget.
  const int64_t sb_max = std::max<int64_t>(mr, kAPackFloats / kp / mr * mr);
  const int64_t msb = round_up(ceil_div(p.m, ceil_div(p.m, sb_max)), mr);
  const int64_t np_total = ceil_div(p.n, nr);

  for (int64_t ic = 0; ic < p.m; ic += msb) {
    const int64_t ms = std::min(msb, p.m - ic);
    const int64_t mp = ceil_div(ms, mr);
    // Ã for all of K: the block at pair bp starts at mp * mr * bp.
    uint32_t* const a_pack =
        reinterpret_cast<uint32_t*>(align64(thread_arena().get(static_cast<size_t>(mp * mr * kp + 16))));
    for (int64_t bp = 0; bp < kp; bp += kcp) {
      uk.pack_a(p.a, p.lda, p.trans_a, ic, ms, 2 * bp, std::min(2 * kcp, p.k - 2 * bp), a_pack + mp * mr * bp);
    }

    const TileGrid g = make_tile_grid(ms, mp, p.n, bl.nc, np_total, nt);
    const bool prefetch = prefetch_enabled();
    NextTileGuess guess(nt);
    auto tile = [&](int64_t t) {
      if (prefetch) guess.started();
      const int64_t rb = t / g.ncb, cb = t % g.ncb;
      const int64_t plo = rb * g.rb_panels, phi = std::min(mp, plo + g.rb_panels);
      const int64_t j0 = cb * g.cb_panels * nr, j1 = std::min(p.n, j0 + g.cb_panels * nr);
      const int64_t jp = ceil_div(j1 - j0, nr);
      for (int64_t bp = 0; bp < kp; bp += kcp) {
        const int64_t kcpb = std::min(kcp, kp - bp);
        const bool first_k = bp == 0, last_k = bp + kcpb >= kp;
        const Epilogue ep_base{p.alpha, first_k ? p.beta : 1.0f, nullptr, last_k ? static_cast<int>(p.act) : 0};
        const uint32_t* const b_pack = pk.block_bf16(bp, j0);
        // Next packed block, as in run_gemm.
        const void* next = nullptr;
        int64_t next_lines = 0;
        if (prefetch && !last_k) {
          next = pk.block_bf16(bp + kcpb, j0);
          next_lines = std::min(kcp, kp - bp - kcpb) * jp * nr * 4 / 64;
        } else if (prefetch) {
          const int64_t tn = guess.next_after(t);
          if (tn < g.nrb * g.ncb) {
            const int64_t j0n = tn % g.ncb * g.cb_panels * nr, j1n = std::min(p.n, j0n + g.cb_panels * nr);
            next = pk.block_bf16(0, j0n);
            next_lines = std::min(kcp, kp) * ceil_div(j1n - j0n, nr) * nr * 4 / 64;
          }
        }
        NextBlockPrefetch pf(next, next_lines, phi - plo, jp, kcpb);
        const PanelRange rows{ic, plo, phi, mr}, cols{j0, 0, jp, nr};
        const uint32_t* const a_blk = a_pack + mp * mr * bp;
        run_block(
            [&](int64_t ir, int64_t, int mv, int64_t jr, float* c, int nv, const Epilogue* ep) {
              uk.kernel(kcpb, a_blk + ir * mr * kcpb, b_pack + jr * nr * kcpb, c, p.ldc, mv, nv, ep);
            },
            p, rows, cols, last_k, ep_base, pf);
      }
    };
    // ~2x the multiply-adds per second of fp32: the same wall-time threshold.
    ThreadPool::instance().parallel_tiles(g.nrb * g.ncb, tile, nt,
                                          static_cast<double>(ms) * p.n * p.k > 2 * kEagerWakeFma);
  }
}

// M == 1 against the packed bf16 B: x is converted to bf16 pairs once, then
// threads split the columns on panel boundaries (each column's arithmetic is
// the same for any split).
void run_gemv_bf16(const PackedB& pk, const GemmParams& p, int nt) {
  const Bf16Kernels& uk = bf16_kernels();
  const int64_t kp = pk.kp;
  float* const buf = align64(thread_arena().get(static_cast<size_t>(p.k + kp + 32)));
  const float* x = p.a;
  if (p.trans_a && p.lda != 1) {
    for (int64_t kk = 0; kk < p.k; ++kk) buf[kk] = p.a[kk * p.lda];
    x = buf;
  }
  uint32_t* const xw = reinterpret_cast<uint32_t*>(align64(buf + p.k));
  uk.pack_x(x, p.k, xw);
  const Epilogue ep{p.alpha, p.beta, p.bias, static_cast<int>(p.act)};
  // A second thread pays off from ~1 MB of bf16 B per thread (measured on
  // Zen 5, 2 threads: 768 x 2304 and up gain 1.3-1.5x hot and from memory;
  // 768 x 768 gains nothing), a lower bar than the fp32 GEMV's: the bf16
  // GEMV streams its single contiguous panel stream fast enough that one
  // core does not saturate memory.
  split_gemv_columns(p.n, uk.nr, gemv_threads(nt, 2 * p.k * p.n, kGemvMinBytesBf16),
                     [&](int64_t j0, int64_t j1) { uk.gemv(kp, pk.kcp, xw, pk.pairs, p.n, j0, j1, p.c, &ep); });
}

void sgemm_impl(const GemmParams& p, int nt) {
  if (p.row_sums_a != nullptr) {
    // Only run_gemm packs A (and sums it there); every other path sums op(A) as stored.
    const PackedB* pk = p.packed_b;
    const bool bf16 = pk != nullptr && pk->precision == PackedPrecision::BFloat16 && bf16_gemm_available() &&
                      packed_b_matches(*pk, p.k, p.n, p.trans_b);
    if (p.m > 0 && (p.m == 1 || p.n <= 0 || p.k <= 0 || bf16)) {
      GemmParams q = p;
      q.row_sums_a = nullptr;
      row_sums_direct(p);
      sgemm_impl(q, nt);
      return;
    }
  }
  if (p.m <= 0 || p.n <= 0) return;
  if (p.k <= 0) {
    run_k_empty(p);
    return;
  }
  const PackedB* pk = p.packed_b;
  // An int8 B has no fp32 twin: its quantized layout is the same for every
  // kernel path, and qgemm picks the int8 kernels of the active one.
  if (pk != nullptr && pk->precision == PackedPrecision::Int8 && packed_b_matches(*pk, p.k, p.n, p.trans_b)) {
    qgemm(*pk->q, p, nt);
    return;
  }
  // A bf16 B runs on the bf16 kernels while they are available; otherwise
  // (path lowered after packing) the fp32 path below reads p.b.
  if (pk != nullptr && pk->precision == PackedPrecision::BFloat16 && bf16_gemm_available() &&
      packed_b_matches(*pk, p.k, p.n, p.trans_b)) {
    if (p.m == 1) {
      run_gemv_bf16(*pk, p, nt);
    } else {
      run_gemm_bf16(*pk, p, nt);
    }
    return;
  }
  const IsaKernels& uk = kernels_for(runtime::active_isa());
  if (p.m == 1) {
    if (pk != nullptr && pk->precision == PackedPrecision::Float32 && uk.gemv_packed != nullptr &&
        pk->isa == runtime::active_isa() && pk->nr == uk.nr && packed_b_matches(*pk, p.k, p.n, p.trans_b)) {
      run_gemv_packed(uk, *pk, p, nt);
    } else {
      run_gemv(uk, p, nt);
    }
    return;
  }
  run_gemm(uk, p, nt);
}

}  // namespace

void sgemm(const GemmParams& p, int max_threads) { sgemm_impl(p, choose_threads(p, max_threads)); }

GemmTuning gemm_tuning() { return tuning_for(runtime::active_isa()); }

bool sgemm_reads_b_in_place(const GemmParams& p) {
  if (p.m <= 1 || p.n <= 0 || p.k <= 0 || p.packed_b != nullptr) return false;
  const IsaKernels& uk = kernels_for(runtime::active_isa());
  const GemmTuning& tu = tuning_for(runtime::active_isa());
  const bool a_in_place = !(p.trans_a || !tu.direct_a || p.row_sums_a != nullptr);
  return direct_b_ok(uk, tu, p, blocking_for(uk, tu, p.m, p.n, p.k).kc, a_in_place);
}

PackedBPtr pack_b(const float* b, int64_t ldb, bool trans_b, int64_t k, int64_t n) {
  if (k <= 0 || n <= 0) return nullptr;
  const Isa isa = runtime::active_isa();
  const IsaKernels& uk = kernels_for(isa);
  const Blocking bl = blocking_for(uk, tuning_for(isa), 1, n, k);
  auto packed = std::make_shared<PackedB>();
  packed->isa = isa;
  packed->k = k;
  packed->n = n;
  packed->kc = bl.kc;
  packed->nr = uk.nr;
  packed->trans_b = trans_b;
  const int64_t np = ceil_div(n, uk.nr);
  packed->floats = static_cast<size_t>(k * np * uk.nr);
  const size_t bytes = (packed->floats * sizeof(float) + 63) / 64 * 64;
  // Decode streams every packed weight once per token: huge pages (runtime/huge_pages.h).
  packed->data = static_cast<float*>(runtime::alloc_streamed(bytes));
  // K blocks are independent: pack them in parallel.
  const int64_t blocks = ceil_div(k, bl.kc);
  ThreadPool::instance().parallel_tiles(blocks, [&](int64_t t) {
    const int64_t pc = t * bl.kc;
    const int64_t kc = std::min(bl.kc, k - pc);
    float* dst = packed->data + pc * np * uk.nr;
    if (uk.pack_b != nullptr) {
      uk.pack_b(b, ldb, trans_b, pc, kc, 0, n, dst);
    } else {
      pack_b_generic(uk.nr, b, ldb, trans_b, pc, kc, 0, n, dst);
    }
  });
  return packed;
}

size_t packed_b_bytes(const PackedB& packed) {
  switch (packed.precision) {
    case PackedPrecision::BFloat16:
      return packed.words * sizeof(uint32_t);
    case PackedPrecision::Int8:
      return qpacked_bytes(*packed.q);
    default:
      return packed.floats * sizeof(float);
  }
}

PackedBPtr pack_b_int8(const float* b, int64_t ldb, bool trans_b, int64_t k, int64_t n) {
  if (k <= 0 || n <= 0) return nullptr;
  auto packed = std::make_shared<PackedB>();
  packed->precision = PackedPrecision::Int8;
  packed->isa = runtime::active_isa();
  packed->k = k;
  packed->n = n;
  packed->kc = k;
  packed->nr = 0;
  packed->trans_b = trans_b;
  packed->q = qpack_b(b, ldb, trans_b, k, n);
  return packed;
}

const QPackedB* packed_b_int8(const PackedB& packed) { return packed.q.get(); }

PackedPrecision packed_b_precision(const PackedB& packed) { return packed.precision; }

bool bf16_gemm_available() {
  const auto& ci = runtime::cpu_info();
  // active_isa() == Avx512 implies the OS saves ZMM state (see detected_isa).
  return ci.avx512bf16 && ci.os_avx512 && runtime::active_isa() == Isa::Avx512;
}

PackedBPtr pack_b_bf16(const float* b, int64_t ldb, bool trans_b, int64_t k, int64_t n) {
  if (k <= 0 || n <= 0 || !bf16_gemm_available()) return nullptr;
  const Bf16Kernels& uk = bf16_kernels();
  const Bf16Blocking bl = bf16_blocking_for(uk, n, k);
  auto packed = std::make_shared<PackedB>();
  packed->precision = PackedPrecision::BFloat16;
  packed->isa = Isa::Avx512;
  packed->k = k;
  packed->n = n;
  packed->kp = ceil_div(k, 2);
  packed->kcp = bl.kcp;
  packed->kc = 2 * bl.kcp;
  packed->nr = uk.nr;
  packed->trans_b = trans_b;
  const int64_t np = ceil_div(n, uk.nr);
  packed->words = static_cast<size_t>(packed->kp * np * uk.nr);
  const size_t bytes = (packed->words * sizeof(uint32_t) + 63) / 64 * 64;
  packed->pairs = static_cast<uint32_t*>(runtime::alloc_streamed(bytes));
  // K blocks x groups of panels are independent: pack them in parallel
  // (a 768-deep weight is a single K block).
  constexpr int64_t kPanelsPerTile = 8;
  const int64_t kp = packed->kp, kcp = bl.kcp;
  const int64_t blocks = ceil_div(kp, kcp), groups = ceil_div(np, kPanelsPerTile);
  ThreadPool::instance().parallel_tiles(blocks * groups, [&](int64_t t) {
    const int64_t bp = (t / groups) * kcp;
    const int64_t kcpb = std::min(kcp, kp - bp);
    const int64_t q0 = (t % groups) * kPanelsPerTile;
    const int64_t q1 = std::min(np, q0 + kPanelsPerTile);
    uint32_t* dst = packed->pairs + bp * np * uk.nr + q0 * kcpb * uk.nr;
    uk.pack_b(b, ldb, trans_b, 2 * bp, std::min(2 * kcpb, k - 2 * bp), q0 * uk.nr, std::min(n, q1 * uk.nr) - q0 * uk.nr,
              dst);
  });
  return packed;
}

bool packed_b_matches(const PackedB& packed, int64_t k, int64_t n, bool trans_b) {
  return packed.k == k && packed.n == n && packed.trans_b == trans_b;
}

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
  // A batch of tiny GEMMs is not worth a second thread either.
  nt = static_cast<int>(std::min<double>(nt, std::max(1.0, fmas * static_cast<double>(batch) / kMinFmaPerThread)));
  // Whole GEMMs per tile when there are enough of them (no Ã shared between
  // threads, no re-packing of B̃) or when each is too small to split well.
  // Same results either way: a GEMM's arithmetic does not depend on its
  // thread count.
  const bool across = nt > 1 && (batch >= 2 * nt || (batch >= nt && fmas < 2.5e7) || nt_each == 1) && batch > 1;
  if (!across) {
    for (int64_t i = 0; i < batch; ++i) sgemm_impl(item(i), nt_each);
    return;
  }
  // Whole GEMMs as tiles, taken dynamically (uneven progress of the threads
  // evens out).
  ThreadPool::instance().parallel_tiles(
      batch, [&](int64_t i) { sgemm_impl(item(i), 1); }, nt);
}

namespace {

double call_fmas(const GemmCall& c) {
  return static_cast<double>(c.p.m) * static_cast<double>(c.p.n) * static_cast<double>(c.p.k) *
         static_cast<double>(std::max<int64_t>(c.batch, 0));
}

void run_call(const GemmCall& c, int max_threads) {
  if (c.batch == 1) {
    sgemm(c.p, max_threads);
  } else {
    sgemm_batched(c.p, c.batch, c.stride_a, c.stride_b, c.stride_c, max_threads);
  }
}

// Below this many multiply-adds per call (~100 us at one thread's speed) a concurrent group wakes sleeping
// workers only once the caller's progress shows it pays (the pool's lazy wake); above, at once: a group has few
// chunks, and a lazy wake would come only after the caller had run the first call alone.
constexpr double kGroupEagerWakeFma = 5e6;

}  // namespace

void sgemm_group(const GemmCall* calls, int count, int max_threads) {
  if (count <= 0) return;
  int nt = ThreadPool::instance().num_threads();
  if (max_threads > 0) nt = std::min(nt, max_threads);
  double total = 0, smallest = -1;
  for (int i = 0; i < count; ++i) {
    const double f = call_fmas(calls[i]);
    total += f;
    smallest = smallest < 0 ? f : std::min(smallest, f);
  }
  // Concurrent when there are at most two threads per call and the group is worth a second thread; else each
  // call split over the threads in turn.
  if (count < 2 || nt < 2 || nt >= 2 * count || total < 2 * kMinFmaPerThread) {
    for (int i = 0; i < count; ++i) run_call(calls[i], max_threads);
    return;
  }
  // A call's row sums (GemmParams::row_sums_a) become a chunk of their own, after the products: summed while the
  // product packs A they would lengthen the call that is already the longest (a Linear's dW packs a transposed A, its
  // dX reads A in place), while the thread that finishes first has nothing else to do. Same values either way.
  GemmCall local[8];
  const GemmParams* sums[8];
  int nsums = 0;
  const bool split_sums = count <= 8;
  for (int i = 0; split_sums && i < count; ++i) {
    local[i] = calls[i];
    if (calls[i].p.row_sums_a != nullptr && calls[i].batch == 1 && calls[i].p.m > 0) {
      sums[nsums++] = &calls[i].p;
      local[i].p.row_sums_a = nullptr;
    }
  }
  const GemmCall* run = split_sums ? local : calls;
  ThreadPool::instance().parallel_tiles(
      count + nsums,
      [&](int64_t i) {
        if (i < count) {
          run_call(run[i], 1);
        } else {
          row_sums_by_columns(*sums[i - count]);
        }
      },
      std::min(nt, count), smallest > kGroupEagerWakeFma);
}

// ---- the blocking framework other GEMM families reuse (gemm_frame.h) ----

namespace gemm_detail {

TileGrid tile_grid(int64_t ms, int64_t mp, int64_t n, int64_t nc, int64_t np_total, int nt) {
  return make_tile_grid(ms, mp, n, nc, np_total, nt);
}

void* frame_thread_scratch(size_t bytes) { return align64(thread_arena().get(bytes / sizeof(float) + 16)); }
void* frame_tile_scratch(size_t bytes) { return align64(tile_arena().get(bytes / sizeof(float) + 16)); }

int frame_threads(double macs, int max_threads) {
  int nt = ThreadPool::instance().num_threads();
  if (max_threads > 0) nt = std::min(nt, max_threads);
  nt = static_cast<int>(std::min<double>(nt, std::max(1.0, macs / kMinFmaPerThread)));
  return std::max(nt, 1);
}

void frame_split_columns(int64_t n, int64_t unit, int64_t nt, runtime::FnRef<void(int64_t j0, int64_t j1)> f) {
  split_gemv_columns(n, unit, nt, f);
}

const int64_t kFrameAPackBytes = kAPackFloats * static_cast<int64_t>(sizeof(float));
const double kFrameEagerWakeFma = kEagerWakeFma;

}  // namespace gemm_detail

}  // namespace attnode::kernels
