#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma")
// AVX-512 GEMM micro-kernel (8 x 48), packers and GEMV.
//
// 8 x 48 keeps 24 zmm accumulators + 3 B vectors + 1 broadcast in the 32
// registers; per k it issues 24 FMAs against 11 loads, so the two 512-bit FMA
// pipes of Zen 4/5 (and SKX port 0/5) stay the bottleneck. MR = 8 divides the
// usual token counts, NR = 48 divides 768/2304/3072 (BERT/GPT widths) so the
// hot shapes have no edge tiles.
//
// Only <immintrin.h>/<cstdint>/<cstddef> and interface headers: any inline
// function from a shared header instantiated here would be compiled with
// AVX-512 and could be picked by the linker for baseline callers (ODR).

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "ukernel.h"

// GCC 12 false positive inside its own avx512fintrin.h (_mm512_undefined_ps
// in the cast/reduce intrinsics).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace attnode::kernels::gemm_detail {
namespace {

constexpr int kMR = 8;
constexpr int kNR = 48;

#include "avx512_common.inc"

// Prefetch distance in k-steps for the B stream (B panels live in L2; the A
// panel is small and stays in L1 across the jr loop).
constexpr int kPfB = 8;
// Packing reads matrix rows straight from L3/DRAM; floats ahead to prefetch.
constexpr int kPfPack = 128;

// The k loop on the first NV of the panel's three 16-column vectors (the B
// panel stays 48 wide): NV = 3 is the full tile; NV = 1, 2 serve the last
// column panel when only 16 or 32 of its columns are in the matrix (N = 256
// has 5 full panels and one of 16 columns), where the full tile would spend
// two or one thirds of its multiply-adds on the zero padding. Each element
// of C sees the same FMAs in the same order whatever NV: identical results.
//
// A operand: a packed panel (panel[k * MR + r]), or MR rows of op(A) read
// where they are (row r at rows + r * lda, k contiguous). The same FMAs in
// the same order either way: only the addresses differ, so the two give
// bit-identical tiles.
struct PackedA {
  const float* a;
  ATTNODE_INLINE float at(int r, int64_t k) const { return a[k * kMR + r]; }
};
struct RowsA {
  const float* row[kMR];
  ATTNODE_INLINE float at(int r, int64_t k) const { return row[r][k]; }
};

// B operand: a packed panel (row k at b + k * NR, 64-byte aligned), or rows of a non-transposed B read where they
// are (row k at b + k * ldb, the panel's NR columns contiguous and all inside the matrix). Same FMAs either way.
struct PanelB {
  static constexpr bool kPacked = true;
  const float* b;
  ATTNODE_INLINE int64_t step() const { return kNR; }
};
struct StridedB {
  static constexpr bool kPacked = false;
  const float* b;
  int64_t ldb;
  ATTNODE_INLINE int64_t step() const { return ldb; }
};

template <bool Packed>
ATTNODE_INLINE __m512 load_b(const float* p) {
  return Packed ? _mm512_load_ps(p) : _mm512_loadu_ps(p);
}

template <int NV, typename A, typename B>
ATTNODE_INLINE void kernel_8xnv(int64_t kc, const A& a, const B& bop, float* c, int64_t ldc, int m, int n,
                                const Epilogue* ep) {
  const float* b = bop.b;
  const int64_t step = bop.step();
  __m512 acc[kMR][NV];
  begin_tile<kMR, NV>(acc, c, ldc, m);
  // Lines of the next B block asked for by the frontend: one per two k, so
  // the DRAM/L3 reads spread over the k loop instead of bursting. T0 (into
  // L1 and L2): on Zen 5, T1/T2 prefetches measured no gain.
  const char* pf = ep->prefetch;
  int pf_left = ep->prefetch_lines;
  int run_left = ep->prefetch_run_left;
  // The tile's C lines again, one per two k-steps over the last kLateC: begin_tile's prefetch brought them in at
  // the start, but the B panel streamed since (kc x 192 bytes) has evicted them from L1 by the store. Measured
  // on Zen 4, 1 thread: +1.5..4% at M = 512 and 2048 (C from L3/DRAM there), neutral at M = 128.
  constexpr int64_t kLateC = 64;
  const int c_lines = m * NV;
  int c_next = 0;
  int64_t k = 0;
  for (; k + 2 <= kc; k += 2) {
    if (k + 2 + kLateC > kc && c_next < c_lines) {
      _mm_prefetch(reinterpret_cast<const char*>(c + (c_next / NV) * ldc + 16 * (c_next % NV)), _MM_HINT_T0);
      ++c_next;
    }
    if (pf_left > 0) {
      _mm_prefetch(pf, _MM_HINT_T0);
      pf += 64;
      --pf_left;
      if (--run_left == 0) {
        pf += ep->prefetch_skip;
        run_left = ep->prefetch_run;
      }
    }
#pragma GCC unroll 2
    for (int u = 0; u < 2; ++u) {
      if (B::kPacked) {
        if (16 * u < 16 * NV) _mm_prefetch(reinterpret_cast<const char*>(b + kPfB * kNR + 16 * u), _MM_HINT_T0);
      } else {
        // A row of its own per k: its NV lines (one more when the row is not line-aligned).
#pragma GCC unroll 4
        for (int v = 0; v <= NV; ++v)
          _mm_prefetch(reinterpret_cast<const char*>(b + kPfB * step) + 64 * v - (v == NV ? 1 : 0), _MM_HINT_T0);
      }
      __m512 bv[NV];
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) bv[v] = load_b<B::kPacked>(b + 16 * v);
#pragma GCC unroll 8
      for (int r = 0; r < kMR; ++r) {
        __m512 av = _mm512_set1_ps(a.at(r, k + u));
#pragma GCC unroll 3
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
      }
      b += step;
    }
    if (B::kPacked && NV == 3) _mm_prefetch(reinterpret_cast<const char*>(b + kPfB * kNR - 64), _MM_HINT_T0);
  }
  for (; k < kc; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) bv[v] = load_b<B::kPacked>(b + 16 * v);
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r) {
      __m512 av = _mm512_set1_ps(a.at(r, k));
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
    }
    b += step;
  }

  store_tile<kMR, NV>(acc, c, ldc, m, n, ep);
}

template <typename A, typename B>
ATTNODE_INLINE void kernel_any_n(int64_t kc, const A& a, const B& b, float* c, int64_t ldc, int m, int n,
                                 const Epilogue* ep) {
  if (n > 32) {
    kernel_8xnv<3>(kc, a, b, c, ldc, m, n, ep);
  } else if (n > 16) {
    kernel_8xnv<2>(kc, a, b, c, ldc, m, n, ep);
  } else {
    kernel_8xnv<1>(kc, a, b, c, ldc, m, n, ep);
  }
}

void kernel_8x48(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int m, int n, const Epilogue* ep) {
  kernel_any_n(kc, PackedA{a}, PanelB{b}, c, ldc, m, n, ep);
}

// A read in place: rows past m repeat the first row (their sums are never stored).
ATTNODE_INLINE RowsA rows_a(const float* a, int64_t lda, int m) {
  RowsA ra;
#pragma GCC unroll 8
  for (int r = 0; r < kMR; ++r) ra.row[r] = a + (r < m ? r : 0) * lda;
  return ra;
}

void kernel_8x48_rows(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc, int m, int n,
                      const Epilogue* ep) {
  kernel_any_n(kc, rows_a(a, lda, m), PanelB{b}, c, ldc, m, n, ep);
}

// B read in place (see MicroKernelStridedBFn); A packed (lda == 0) or read in place.
void kernel_8x48_strided_b(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                           int m, int n, const Epilogue* ep) {
  if (lda == 0) {
    kernel_any_n(kc, PackedA{a}, StridedB{b, ldb}, c, ldc, m, n, ep);
  } else {
    kernel_any_n(kc, rows_a(a, lda, m), StridedB{b, ldb}, c, ldc, m, n, ep);
  }
}

void pack_a(const float* a, int64_t lda, bool trans, int64_t i0, int64_t rows, int64_t k0, int64_t kc, float* dst) {
  for (int64_t p = 0; p < rows; p += kMR) {
    const int mr = static_cast<int>(rows - p < kMR ? rows - p : kMR);
    float* d = dst + p * kc;
    if (trans) {
      // op(A)[i, k] = a[k * lda + i]: each k is a contiguous run of MR rows.
      const __mmask8 mm = static_cast<__mmask8>((1u << mr) - 1);
      const float* s = a + k0 * lda + i0 + p;
      for (int64_t k = 0; k < kc; ++k) _mm256_store_ps(d + k * kMR, _mm256_maskz_loadu_ps(mm, s + k * lda));
      continue;
    }
    const float* s = a + (i0 + p) * lda + k0;
    for (int64_t k = 0; k < kc; k += 16) {
      const int kn = static_cast<int>(kc - k < 16 ? kc - k : 16);
      const __mmask16 km = tail_mask(kn);
      __m512 r[16];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) {
        if (i < mr) {
          _mm_prefetch(reinterpret_cast<const char*>(s + i * lda + k + kPfPack), _MM_HINT_T0);
          r[i] = _mm512_maskz_loadu_ps(km, s + i * lda + k);
        } else {
          r[i] = _mm512_setzero_ps();
        }
      }
#pragma GCC unroll 8
      for (int i = 8; i < 16; ++i) r[i] = _mm512_setzero_ps();
      transpose16(r);
      for (int t = 0; t < kn; ++t) _mm256_store_ps(d + (k + t) * kMR, _mm512_castps512_ps256(r[t]));
    }
  }
}

void pack_b(const float* b, int64_t ldb, bool trans, int64_t k0, int64_t kc, int64_t j0, int64_t cols, float* dst) {
  for (int64_t p = 0; p < cols; p += kNR) {
    const int nr = static_cast<int>(cols - p < kNR ? cols - p : kNR);
    float* d = dst + p * kc;
    if (!trans) {
      const __mmask16 m0 = tail_mask(nr), m1 = tail_mask(nr - 16), m2 = tail_mask(nr - 32);
      const float* s = b + k0 * ldb + j0 + p;
      for (int64_t k = 0; k < kc; ++k) {
        const float* sk = s + k * ldb;
        float* dk = d + k * kNR;
        _mm512_store_ps(dk, _mm512_maskz_loadu_ps(m0, sk));
        _mm512_store_ps(dk + 16, _mm512_maskz_loadu_ps(m1, sk + 16));
        _mm512_store_ps(dk + 32, _mm512_maskz_loadu_ps(m2, sk + 32));
      }
      continue;
    }
    // op(B)[k, j] = b[j * ldb + k]: transpose 16 (j) x 16 (k) blocks. One
    // 16-row group at a time keeps 16 read streams (what the hardware
    // prefetcher tracks); the rows come from L3/DRAM, so prefetch ahead too.
    const float* s = b + (j0 + p) * ldb + k0;
    for (int g = 0; g < 3 && 16 * g < nr; ++g) {
      const float* sg = s + 16 * g * ldb;
      const int rows = nr - 16 * g < 16 ? nr - 16 * g : 16;
      for (int64_t k = 0; k < kc; k += 16) {
        const int kn = static_cast<int>(kc - k < 16 ? kc - k : 16);
        const __mmask16 km = tail_mask(kn);
        __m512 r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) {
          if (i < rows) {
            _mm_prefetch(reinterpret_cast<const char*>(sg + i * ldb + k + kPfPack), _MM_HINT_T0);
            r[i] = _mm512_maskz_loadu_ps(km, sg + i * ldb + k);
          } else {
            r[i] = _mm512_setzero_ps();
          }
        }
        transpose16(r);
        for (int t = 0; t < kn; ++t) _mm512_store_ps(d + (k + t) * kNR + 16 * g, r[t]);
      }
    }
    for (int g = (nr + 15) / 16; g < 3; ++g)
      for (int64_t k = 0; k < kc; ++k) _mm512_store_ps(d + k * kNR + 16 * g, _mm512_setzero_ps());
  }
}

// M == 1. trans_b: each output is a dot product of x with a contiguous row of B,
// 8 rows at a time (8 independent FMA chains cover the FMA latency).
// !trans_b: axpy over rows of B, 128 columns (8 accumulators) at a time.
void gemv(int64_t k, const float* x, const float* b, int64_t ldb, bool trans_b, int64_t j0, int64_t j1, float* c,
          const Epilogue* ep) {
  if (trans_b) {
    for (int64_t j = j0; j < j1; j += 16) {
      const int nj = static_cast<int>(j1 - j < 16 ? j1 - j : 16);
      alignas(64) float sums[16] = {};
      for (int h = 0; h < nj; h += 8) {
        const float* rows[8];
        for (int i = 0; i < 8; ++i) rows[i] = b + (j + h + (h + i < nj ? i : 0)) * ldb;
        __m512 acc[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) acc[i] = _mm512_setzero_ps();
        int64_t kk = 0;
        for (; kk + 16 <= k; kk += 16) {
          __m512 xv = _mm512_loadu_ps(x + kk);
#pragma GCC unroll 8
          for (int i = 0; i < 8; ++i) acc[i] = _mm512_fmadd_ps(_mm512_loadu_ps(rows[i] + kk), xv, acc[i]);
        }
        if (kk < k) {
          const __mmask16 km = tail_mask(static_cast<int>(k - kk));
          __m512 xv = _mm512_maskz_loadu_ps(km, x + kk);
#pragma GCC unroll 8
          for (int i = 0; i < 8; ++i) acc[i] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(km, rows[i] + kk), xv, acc[i]);
        }
        for (int i = 0; i < 8 && h + i < nj; ++i) sums[h + i] = _mm512_reduce_add_ps(acc[i]);
      }
      store_vec(c + j, ep->bias ? ep->bias + j : nullptr, _mm512_load_ps(sums), tail_mask(nj), ep);
    }
    return;
  }
  for (int64_t j = j0; j < j1; j += 128) {
    const int nj = static_cast<int>(j1 - j < 128 ? j1 - j : 128);
    __mmask16 mk[8];
    __m512 acc[8];
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) {
      mk[g] = tail_mask(nj - 16 * g);
      acc[g] = _mm512_setzero_ps();
    }
    const float* bj = b + j;
    for (int64_t kk = 0; kk < k; ++kk) {
      __m512 xv = _mm512_set1_ps(x[kk]);
      const float* row = bj + kk * ldb;
#pragma GCC unroll 8
      for (int g = 0; g < 8; ++g) acc[g] = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(mk[g], row + 16 * g), acc[g]);
    }
    for (int g = 0; g < 8 && mk[g]; ++g)
      store_vec(c + j + 16 * g, ep->bias ? ep->bias + j + 16 * g : nullptr, acc[g], mk[g], ep);
  }
}

// M == 1 against the packed fp32 B. Columns go in chunks of up to kChunk
// panels; inside a chunk the K blocks are the outer loop, so the weight is
// read as one sequential stream per (chunk, K block) instead of hopping
// between K blocks at every panel. Per panel, four accumulator sets (k mod 4)
// give 12 independent FMA chains, summed in a fixed order, and the K blocks
// add into the column sums in order: every column's arithmetic is the same
// for any thread count (tiles start on panel boundaries).
void gemv_packed(int64_t k, int64_t kc, const float* x, const float* packed, int64_t n, int64_t j0, int64_t j1,
                 float* c, const Epilogue* ep) {
  // ~6 KB ahead of the loads: the weight comes from memory during decode.
  constexpr int kPf = 32;
  constexpr int64_t kChunk = 16;
  alignas(64) float sums[kChunk * kNR];
  const int64_t np = (n + kNR - 1) / kNR;
  for (int64_t jc = j0; jc < j1; jc += kChunk * kNR) {
    const int64_t jend = j1 - jc < kChunk * kNR ? j1 : jc + kChunk * kNR;
    for (int64_t pc = 0; pc < k; pc += kc) {
      const int64_t kcb = k - pc < kc ? k - pc : kc;
      const float* xb = x + pc;
      for (int64_t j = jc; j < jend; j += kNR) {
        const float* b = packed + pc * np * kNR + (j / kNR) * kcb * kNR;
        __m512 acc[4][3];
#pragma GCC unroll 4
        for (int u = 0; u < 4; ++u) acc[u][0] = acc[u][1] = acc[u][2] = _mm512_setzero_ps();
        int64_t p = 0;
        for (; p + 4 <= kcb; p += 4) {
#pragma GCC unroll 4
          for (int u = 0; u < 4; ++u) {
            const __m512 xv = _mm512_set1_ps(xb[p + u]);
            const float* bu = b + (p + u) * kNR;
            _mm_prefetch(reinterpret_cast<const char*>(bu + kPf * kNR), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(bu + kPf * kNR + 16), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(bu + kPf * kNR + 32), _MM_HINT_T0);
            acc[u][0] = _mm512_fmadd_ps(_mm512_load_ps(bu), xv, acc[u][0]);
            acc[u][1] = _mm512_fmadd_ps(_mm512_load_ps(bu + 16), xv, acc[u][1]);
            acc[u][2] = _mm512_fmadd_ps(_mm512_load_ps(bu + 32), xv, acc[u][2]);
          }
        }
        for (; p < kcb; ++p) {
          const __m512 xv = _mm512_set1_ps(xb[p]);
          const float* bu = b + p * kNR;
          acc[0][0] = _mm512_fmadd_ps(_mm512_load_ps(bu), xv, acc[0][0]);
          acc[0][1] = _mm512_fmadd_ps(_mm512_load_ps(bu + 16), xv, acc[0][1]);
          acc[0][2] = _mm512_fmadd_ps(_mm512_load_ps(bu + 32), xv, acc[0][2]);
        }
        float* sj = sums + (j - jc);
#pragma GCC unroll 3
        for (int g = 0; g < 3; ++g) {
          const __m512 s = _mm512_add_ps(_mm512_add_ps(acc[0][g], acc[1][g]), _mm512_add_ps(acc[2][g], acc[3][g]));
          _mm512_store_ps(sj + 16 * g, pc == 0 ? s : _mm512_add_ps(_mm512_load_ps(sj + 16 * g), s));
        }
      }
    }
    for (int64_t j = jc; j < jend; j += kNR) {
      const int nj = static_cast<int>(jend - j < kNR ? jend - j : kNR);
      const float* bias = ep->bias ? ep->bias + j : nullptr;
#pragma GCC unroll 3
      for (int g = 0; g < 3; ++g) {
        const __mmask16 mk = tail_mask(nj - 16 * g);
        if (!mk) break;
        store_vec(c + j + 16 * g, bias ? bias + 16 * g : nullptr, _mm512_load_ps(sums + (j - jc) + 16 * g), mk, ep);
      }
    }
  }
}

}  // namespace

extern const IsaKernels kAvx512Kernels = {
    kMR, kNR, kernel_8x48, pack_a, pack_b, gemv, gemv_packed, kernel_8x48_rows, kernel_8x48_strided_b};

}  // namespace attnode::kernels::gemm_detail
