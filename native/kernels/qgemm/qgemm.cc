// int8 GEMM frontend (baseline-compiled): weight quantization and packing,
// per-call activation quantization, dispatch, tiling and threading.
//
// The loop nest is sgemm's (gemm/gemm.cc) without K blocks, on the GEMM's own
// framework (gemm_frame.h: the tile grid, the per-thread scratch, the thread
// bar, the GEMV's column split, the pool):
//
//   ic (row super-block)
//     quantize + pack Ã = qa[ic, :] (all of K)  -> panels of MR rows, shared
//     tiles (row block x column block of C), handed out dynamically:
//       ir (MR)   one A panel (MR * K bytes)
//         jr      one packed B panel (all of K) from the column block, in L2
//           micro-kernel: int32 over all of K, dequantized in its store
//
// On several threads with at most kRowBlockMaxRows rows (a BERT layer at
// batch 1), the threads split the rows instead: each tile packs its own row
// block's A panels, then runs them against every column block, so the call is
// one parallel region with no serial packing step (run_qgemm_row_blocks).
// An A panel is packed 8 rows at a time by the path's packer where it has one
// (AVX512-VNNI: quantized straight from the rows, 8x8 word transposes), else
// one row at a time into a staging row, then one word at a time.
//
// A B panel holds all of K, so the int32 accumulators never leave the
// registers (sgemm's K blocks would need an int32 running sum per element of
// C). The column block is sized so its panels (K * nc bytes) take half of L2.
// K is never split and the kernel of an element does not depend on the tile
// or the thread count: results are identical for any thread count.

#include "qgemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "../../runtime/cpu_features.h"
#include "../../runtime/huge_pages.h"
#include "../../runtime/thread_pool.h"
#include "../gemm/gemm_frame.h"
#include "qukernel.h"

namespace attnode::kernels {

using qgemm_detail::kQNR;
using qgemm_detail::QKernels;
using qgemm_detail::QStore;

struct QPackedB {
  int64_t k = 0, n = 0, kq = 0, np = 0;
  // np panels of kq * kQNR * 4 bytes, 64-byte aligned, from runtime::alloc_streamed: on 2 MiB huge pages like
  // the fp32 and bf16 packed weights (a decode step streams them whole from memory every token).
  int8_t* panels = nullptr;
  float* sw = nullptr;       // np * kQNR scales (0 past n)
  int32_t* comp = nullptr;   // np * kQNR: 128 * sum_k qw (0 past n)
  size_t bytes = 0;
  ~QPackedB() {
    runtime::free_streamed(panels);
    std::free(sw);
    std::free(comp);
  }
  const int8_t* panel(int64_t p) const { return panels + p * kq * kQNR * 4; }
};

namespace {

using runtime::Isa;
using runtime::ThreadPool;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

const QKernels& qkernels(QgemmPath path) {
  switch (path) {
    case QgemmPath::Avx512Vnni:
      return qgemm_detail::kQAvx512VnniKernels;
    case QgemmPath::Avx2:
      return qgemm_detail::kQAvx2Kernels;
    default:
      return qgemm_detail::kQPortableKernels;
  }
}

template <typename T>
T* aligned_array(size_t count) {
  const size_t bytes = std::max<size_t>(64, (count * sizeof(T) + 63) / 64 * 64);
  void* p = std::aligned_alloc(64, bytes);
  if (p == nullptr) throw std::bad_alloc();
  return static_cast<T*>(p);
}

// Row i of op(A) as a contiguous float row: A's own memory when it is one,
// else gathered into buf.
const float* a_row(const GemmParams& p, int64_t i, float* buf) {
  if (!p.trans_a) return p.a + i * p.lda;
  for (int64_t kk = 0; kk < p.k; ++kk) buf[kk] = p.a[kk * p.lda + i];
  return buf;
}

constexpr int kMaxMR = 8;  // the largest MR of the paths (qukernel.h)

size_t round64(size_t bytes) { return (bytes + 63) / 64 * 64; }

// What pack_panel needs beside the panel: a staging row for the generic packing and, for a transposed A, MR
// gathered rows.
size_t panel_scratch_bytes(int mr, int64_t k, int64_t kq, bool trans_a) {
  return round64(static_cast<size_t>(kq * 4)) + (trans_a ? round64(static_cast<size_t>(mr * k * 4)) : 0);
}

// Quantizes rows [i, i + m) of op(A) (m <= MR) into the A panel at dst (kq quads, layout of qukernel.h; rows past
// m zero) and their scales into sa[0, m). scratch: panel_scratch_bytes, 64-byte aligned.
void pack_panel(const QKernels& uk, const GemmParams& p, int64_t i, int m, int64_t kq, uint8_t* dst, float* sa,
                char* scratch) {
  const int mr = uk.mr;
  int8_t* const staging = reinterpret_cast<int8_t*>(scratch);
  float* const gather = reinterpret_cast<float*>(scratch + round64(static_cast<size_t>(kq * 4)));
  const float* rows[kMaxMR];
  for (int r = 0; r < m; ++r) rows[r] = a_row(p, i + r, gather + r * p.k);
  if (uk.pack_panel != nullptr) {
    uk.pack_panel(rows, m, p.k, kq, dst, sa);
    return;
  }
  // One contiguous quantized row (K padded to quads with zeros), then its words into the panel.
  const uint32_t shift = uk.shifted_a ? 0x80808080u : 0u;
  uint32_t* d = reinterpret_cast<uint32_t*>(dst);
  for (int r = 0; r < mr; ++r) {
    if (r < m) {
      std::memset(staging + (p.k & ~int64_t{3}), 0, 4);
      sa[r] = uk.quant_row(rows[r], p.k, staging);
    } else {
      std::memset(staging, 0, static_cast<size_t>(kq * 4));
    }
    for (int64_t q = 0; q < kq; ++q) {
      uint32_t w;
      std::memcpy(&w, staging + 4 * q, 4);
      d[q * mr + r] = w ^ shift;
    }
  }
}

// Quantizes rows [i0, i0 + rows) of op(A) into MR-row panels at dst
// (kq quads each, layout of qukernel.h) and their scales into sa[0, rows).
// Panels are independent: spread over the pool when there is enough work.
void pack_a(const QKernels& uk, const GemmParams& p, int64_t i0, int64_t rows, int64_t kq, uint8_t* dst, float* sa,
            int nt) {
  const int mr = uk.mr;
  const int64_t mp = ceil_div(rows, mr);
  auto panel = [&](int64_t t) {
    auto* scratch = static_cast<char*>(gemm_detail::frame_tile_scratch(panel_scratch_bytes(mr, p.k, kq, p.trans_a)));
    const int m = static_cast<int>(std::min<int64_t>(mr, rows - t * mr));
    pack_panel(uk, p, i0 + t * mr, m, kq, dst + t * mr * kq * 4, sa + t * mr, scratch);
  };
  const int threads = rows * p.k >= (int64_t{1} << 17) ? nt : 1;
  ThreadPool::instance().parallel_tiles(mp, panel, threads);
}

// Columns per block: the block's panels (K bytes per column) take ~1/2 of L2;
// N then split into equal whole panels.
int64_t column_block(int64_t n, int64_t kq) {
  const int64_t l2 = static_cast<int64_t>(runtime::cpu_info().l2_bytes);
  const int64_t nc = std::max<int64_t>(kQNR, (l2 / 2) / (kq * 4) / kQNR * kQNR);
  return ceil_div(ceil_div(n, ceil_div(n, nc)), kQNR) * kQNR;
}

// One packed A panel (rows from i, scales sa) against B panels [qlo, qhi), stored into C.
void panel_row(const QKernels& uk, const QPackedB& w, const GemmParams& p, const uint8_t* ap, const float* sa, int64_t i,
               int64_t qlo, int64_t qhi) {
  const int m_valid = static_cast<int>(std::min<int64_t>(uk.mr, p.m - i));
  float* crow = p.c + i * p.ldc;
  for (int64_t jr = qlo; jr < qhi; ++jr) {
    const int64_t j = jr * kQNR;
    QStore st{sa, w.sw + j, w.comp + j,
              gemm_detail::Epilogue{p.alpha, p.beta, p.bias ? p.bias + j : nullptr, static_cast<int>(p.act)}};
    uk.kernel(w.kq, ap, w.panel(jr), crow + j, p.ldc, m_valid, static_cast<int>(std::min<int64_t>(kQNR, p.n - j)), &st);
  }
}

// ~4x the multiply-adds per second of fp32: sgemm's wall-time bar for waking the workers at once.
bool eager_wake(int64_t rows, const GemmParams& p) {
  return static_cast<double>(rows) * p.n * p.k > 4 * gemm_detail::kFrameEagerWakeFma;
}

// Few rows on several threads (M = 128: a BERT layer at batch 1): the threads split the rows, and each tile packs
// its own rows' A panels and runs them against all of N. One parallel region and no serial step: with the rows
// shared by every tile (run_qgemm's grid at M <= kTileRows), Ã must be packed before any tile starts, and for
// M = 128, K = 768 that packing is too small to be worth a second region, so it ran on one thread while the others
// waited. The price is B read once per row block instead of once per call: nrb row blocks of >= 2 panels each
// stream all of B from L3, 2 * nt of them at most, which at M = 128 (each B panel used by 4 A panels before the
// next) is ~1 byte per cycle per thread.
void run_qgemm_row_blocks(const QKernels& uk, const QPackedB& w, const GemmParams& p, int nt) {
  const int mr = uk.mr;
  const int64_t kq = w.kq;
  const int64_t mp = ceil_div(p.m, mr);
  int64_t nrb = std::min<int64_t>(2 * nt, mp / 2);
  const int64_t rbp = ceil_div(mp, nrb);
  nrb = ceil_div(mp, rbp);
  const int64_t cbp = column_block(p.n, kq) / kQNR;
  const size_t a_bytes = round64(static_cast<size_t>(rbp * mr * kq * 4));
  const size_t sa_bytes = round64(static_cast<size_t>(rbp * mr) * 4);
  const size_t scratch_bytes = a_bytes + sa_bytes + panel_scratch_bytes(mr, p.k, kq, p.trans_a);
  auto tile = [&](int64_t t) {
    auto* base = static_cast<char*>(gemm_detail::frame_tile_scratch(scratch_bytes));
    uint8_t* const a_pack = reinterpret_cast<uint8_t*>(base);
    float* const sa = reinterpret_cast<float*>(base + a_bytes);
    const int64_t plo = t * rbp, phi = std::min(mp, plo + rbp);
    for (int64_t ir = plo; ir < phi; ++ir) {
      const int m = static_cast<int>(std::min<int64_t>(mr, p.m - ir * mr));
      pack_panel(uk, p, ir * mr, m, kq, a_pack + (ir - plo) * mr * kq * 4, sa + (ir - plo) * mr,
                 base + a_bytes + sa_bytes);
    }
    for (int64_t qlo = 0; qlo < w.np; qlo += cbp) {
      for (int64_t ir = plo; ir < phi; ++ir) {
        panel_row(uk, w, p, a_pack + (ir - plo) * mr * kq * 4, sa + (ir - plo) * mr, ir * mr, qlo,
                  std::min(w.np, qlo + cbp));
      }
    }
  };
  // Woken at once above a quarter of the usual bar: a lazy wake decides after the caller's first tile, here 1/nrb
  // of the call (M = 128, K = N = 768: ~90 us into a ~350 us product).
  ThreadPool::instance().parallel_tiles(
      nrb, tile, nt, static_cast<double>(p.m) * p.n * p.k > gemm_detail::kFrameEagerWakeFma);
}

// Rows per call up to which several threads split the rows (run_qgemm_row_blocks) rather than share them: sgemm's
// row-block height (gemm.cc kTileRows), below which its grid gives every thread all the rows.
constexpr int64_t kRowBlockMaxRows = 384;

void run_qgemm(const QKernels& uk, const QPackedB& w, const GemmParams& p, int nt) {
  const int mr = uk.mr;
  const int64_t kq = w.kq;
  const int64_t np_total = w.np;
  // The row split keeps each row block's panels in its thread's tile scratch: only while a block (at most
  // ceil(mp / nt) panels) stays within sgemm's Ã budget, as the shared Ã does.
  const int64_t mp_all = ceil_div(p.m, mr);
  if (nt > 1 && p.m <= kRowBlockMaxRows && mp_all >= 2 * nt &&
      ceil_div(mp_all, nt) * mr * kq * 4 <= gemm_detail::kFrameAPackBytes) {
    run_qgemm_row_blocks(uk, w, p, nt);
    return;
  }
  const int64_t nc = column_block(p.n, kq);
  // Row super-blocks: Ã (MR * K bytes per panel) within sgemm's Ã budget.
  const int64_t sb_max = std::max<int64_t>(mr, gemm_detail::kFrameAPackBytes / (kq * 4) / mr * mr);
  const int64_t msb = ceil_div(ceil_div(p.m, ceil_div(p.m, sb_max)), mr) * mr;
  for (int64_t ic = 0; ic < p.m; ic += msb) {
    const int64_t ms = std::min(msb, p.m - ic);
    const int64_t mp = ceil_div(ms, mr);
    const size_t a_bytes = static_cast<size_t>(mp * mr * kq * 4);
    auto* base = static_cast<char*>(gemm_detail::frame_thread_scratch(a_bytes + static_cast<size_t>(ms) * 4 + 64));
    uint8_t* const a_pack = reinterpret_cast<uint8_t*>(base);
    float* const sa = reinterpret_cast<float*>(base + (a_bytes + 63) / 64 * 64);
    pack_a(uk, p, ic, ms, kq, a_pack, sa, nt);

    const gemm_detail::TileGrid g = gemm_detail::tile_grid(ms, mp, p.n, nc, np_total, nt);
    auto tile = [&](int64_t t) {
      const int64_t rb = t / g.ncb, cb = t % g.ncb;
      const int64_t plo = rb * g.rb_panels, phi = std::min(mp, plo + g.rb_panels);
      const int64_t qlo = cb * g.cb_panels, qhi = std::min(np_total, qlo + g.cb_panels);
      for (int64_t ir = plo; ir < phi; ++ir) panel_row(uk, w, p, a_pack + ir * mr * kq * 4, sa + ir * mr, ic + ir * mr, qlo, qhi);
    };
    ThreadPool::instance().parallel_tiles(g.nrb * g.ncb, tile, nt, eager_wake(ms, p));
  }
}

// M == 1: x quantized once, then threads split the columns on panel boundaries.
void run_qgemv(const QKernels& uk, const QPackedB& w, const GemmParams& p, int nt) {
  const int64_t kq = w.kq;
  auto* base = static_cast<char*>(gemm_detail::frame_thread_scratch(static_cast<size_t>(kq * 4 + 4 * p.k + 128)));
  int8_t* const xq = reinterpret_cast<int8_t*>(base);
  float* const gather = reinterpret_cast<float*>(base + (kq * 4 + 63) / 64 * 64);
  std::memset(xq + (p.k & ~int64_t{3}), 0, 4);
  const float* x = p.a;
  if (p.trans_a && p.lda != 1) {
    for (int64_t kk = 0; kk < p.k; ++kk) gather[kk] = p.a[kk * p.lda];
    x = gather;
  }
  const float sa = uk.quant_row(x, p.k, xq);
  if (uk.shifted_a) {
    for (int64_t i = 0; i < kq * 4; ++i) xq[i] = static_cast<int8_t>(static_cast<uint8_t>(xq[i]) ^ 0x80u);
  }
  const QStore st{&sa, w.sw, w.comp, gemm_detail::Epilogue{p.alpha, p.beta, p.bias, static_cast<int>(p.act)}};
  // A thread per 256 KiB of int8 weights (a decode step's q/k/v, gate/up and down products of a small model take
  // two; each half still streams for ~10 us at 1-thread bandwidth, well above the pool's wake-up). Not measured on
  // a quiet machine yet: the bf16 GEMV's bar is 1 MiB per thread, which kept every product of a SmolLM-135M step
  // but the LM head on one thread. ATTNODE_GEMV_MIN_BYTES overrides it, as it does the fp32/bf16 GEMV's.
  static const int64_t min_bytes = [] {
    const char* e = std::getenv("ATTNODE_GEMV_MIN_BYTES");
    return e ? std::max<int64_t>(1, std::atoll(e)) : int64_t{1} << 18;
  }();
  const int64_t threads = std::min<int64_t>(nt, std::max<int64_t>(1, p.k * p.n / min_bytes));
  gemm_detail::frame_split_columns(p.n, kQNR, threads, [&](int64_t j0, int64_t j1) {
    uk.gemv(kq, reinterpret_cast<const uint8_t*>(xq), w.panels, j0, j1, p.c, p.n, &st);
  });
}

}  // namespace

QgemmPath qgemm_path() {
  switch (runtime::active_isa()) {
    case Isa::Avx512:
      // active_isa() == Avx512 implies the OS saves ZMM state.
      return runtime::cpu_info().avx512vnni ? QgemmPath::Avx512Vnni : QgemmPath::Avx2;
    case Isa::Avx2:
      return QgemmPath::Avx2;
    default:
      return QgemmPath::Portable;
  }
}

const char* qgemm_path_name(QgemmPath path) {
  switch (path) {
    case QgemmPath::Avx512Vnni:
      return "avx512vnni";
    case QgemmPath::Avx2:
      return "avx2";
    default:
      return "portable";
  }
}

std::shared_ptr<const QPackedB> qpack_b(const float* b, int64_t ldb, bool trans_b, int64_t k, int64_t n) {
  if (k <= 0 || n <= 0) return nullptr;
  const QKernels& uk = qkernels(qgemm_path());
  auto w = std::make_shared<QPackedB>();
  w->k = k;
  w->n = n;
  w->kq = ceil_div(k, 4);
  w->np = ceil_div(n, kQNR);
  const int64_t cols = w->np * kQNR;
  const size_t panel_bytes = static_cast<size_t>(w->kq * kQNR * 4);
  w->panels = static_cast<int8_t*>(runtime::alloc_streamed(panel_bytes * static_cast<size_t>(w->np)));
  w->sw = aligned_array<float>(static_cast<size_t>(cols));
  w->comp = aligned_array<int32_t>(static_cast<size_t>(cols));
  w->bytes = panel_bytes * static_cast<size_t>(w->np) + static_cast<size_t>(cols) * 8;
  const int64_t kq = w->kq;
  // Panels are independent: quantize them in parallel, one column at a time.
  ThreadPool::instance().parallel_tiles(w->np, [&](int64_t pi) {
    auto* scratch = static_cast<char*>(gemm_detail::frame_tile_scratch(static_cast<size_t>(kq * 4 + 4 * k + 64)));
    int8_t* qcol = reinterpret_cast<int8_t*>(scratch);
    float* gather = reinterpret_cast<float*>(scratch + (kq * 4 + 63) / 64 * 64);
    int8_t* dst = w->panels + pi * static_cast<int64_t>(panel_bytes);
    for (int jj = 0; jj < kQNR; ++jj) {
      const int64_t j = pi * kQNR + jj;
      std::memset(qcol, 0, static_cast<size_t>(kq * 4));
      float s = 0.0f;
      if (j < n) {
        const float* col = b + j * ldb;
        if (!trans_b) {
          for (int64_t kk = 0; kk < k; ++kk) gather[kk] = b[kk * ldb + j];
          col = gather;
        }
        s = uk.quant_row(col, k, qcol);
      }
      int32_t sum = 0;
      for (int64_t kk = 0; kk < kq * 4; ++kk) {
        dst[(kk / 4 * kQNR + jj) * 4 + kk % 4] = qcol[kk];
        sum += qcol[kk];
      }
      w->sw[j] = s;
      // 128 * sum fits: |sum| <= 127 * K < 2^31 / 128 for K <= kQgemmMaxK.
      w->comp[j] = 128 * sum;
    }
  });
  return w;
}

size_t qpacked_bytes(const QPackedB& w) { return w.bytes; }

void qgemm(const QPackedB& w, const GemmParams& p, int nt) {
  const QKernels& uk = qkernels(qgemm_path());
  // sgemm chose nt for fp32 speed; int8 does ~4x the multiply-adds per second, so a second thread needs ~4x the work.
  nt = gemm_detail::frame_threads(static_cast<double>(p.m) * static_cast<double>(p.n) * static_cast<double>(p.k) / 4,
                                  nt);
  if (p.m == 1) {
    run_qgemv(uk, w, p, nt);
  } else {
    run_qgemm(uk, w, p, nt);
  }
}

void qpacked_read(const QPackedB& w, int8_t* q, float* sw) {
  for (int64_t j = 0; j < w.n; ++j) {
    const int8_t* panel = w.panel(j / kQNR);
    const int64_t jj = j % kQNR;
    for (int64_t kk = 0; kk < w.k; ++kk) q[j * w.k + kk] = panel[(kk / 4 * kQNR + jj) * 4 + kk % 4];
    sw[j] = w.sw[j];
  }
}

float qgemm_quantize_row(const float* x, int64_t k, int8_t* q) {
  const QKernels& uk = qkernels(qgemm_path());
  int8_t* buf = static_cast<int8_t*>(gemm_detail::frame_thread_scratch(static_cast<size_t>(k + 4)));
  const float s = uk.quant_row(x, k, buf);
  std::memcpy(q, buf, static_cast<size_t>(k));
  return s;
}

}  // namespace attnode::kernels
