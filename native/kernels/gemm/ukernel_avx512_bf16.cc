#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")
// AVX512-BF16 GEMM for bf16 weights: 8 x 48 micro-kernel on vdpbf16ps,
// bf16 pair packers (A at run time, B once by kernels::pack_b_bf16) and a
// GEMV that streams the packed bf16 B. Layouts: see ukernel.h.
//
// vdpbf16ps does 16 lanes x 2 products per instruction (twice the
// multiply-adds of an fp32 FMA) and the packed B is half the bytes, so the
// same 8 x 48 register tiling as the fp32 kernel (24 zmm accumulators, 3 B
// vectors, 1 broadcast; 24 dpbf16 against 11 loads per k-pair) keeps the two
// 512-bit FMA pipes of Zen 4/5 the bottleneck at ~2x the fp32 kernel's
// multiply-adds per cycle. 24 independent accumulators cover the ~6 cycle
// latency at 2 per cycle. Accumulation is fp32 and the store goes through the
// fp32 kernel's epilogue (avx512_common.inc), so alpha/beta/bias/activation
// behave identically; only the rounding of the inputs to bf16 differs.
//
// Only called when the CPU has AVX512-BF16 and the active path is avx512
// (kernels::bf16_gemm_available()). Only <immintrin.h>/<cstdint>/<cstddef>
// and interface headers: any inline function from a shared header
// instantiated here would carry AVX-512 code and could be picked by the
// linker for baseline callers (ODR; test/isa-isolation.test.ts).

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
constexpr int kNR = 48;  // words (bf16 pairs) per k-pair of a B panel

#include "avx512_common.inc"

// Prefetch distance in k-pairs for the B stream (a k-pair of a panel is
// 192 bytes, the same as one k of the fp32 panel).
constexpr int kPfB = 8;
// Packing reads matrix rows straight from L3/DRAM; floats ahead to prefetch.
constexpr int kPfPack = 128;

// The bf16 vector types are vectors of 16-bit elements (short in GCC 12,
// __bf16 later): reinterpretations to/from the integer/float types are plain
// same-size vector casts.
ATTNODE_INLINE __m512bh as_bh(__m512i v) { return (__m512bh)v; }
ATTNODE_INLINE __m512i bh_bits(__m512bh v) { return (__m512i)v; }
ATTNODE_INLINE __m256i bh_bits(__m256bh v) { return (__m256i)v; }

// 32 floats -> 16 bf16 pairs (RNE): lo = p[0, 16), hi = p[16, 32), masked
// lanes read as 0 (so an odd tail pairs with a zero).
ATTNODE_INLINE __m512i pairs32(const float* p, __mmask16 m_lo, __mmask16 m_hi) {
  return bh_bits(_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m_hi, p + 16), _mm512_maskz_loadu_ps(m_lo, p)));
}

// The kn (<= 32) k from k of `rows` (<= 16) rows s + i * ld as bf16 pairs,
// transposed: afterwards r[t] holds pair t of every row (rows past `rows`
// zero). The row-major A packer and the transposed B packer both need it.
ATTNODE_INLINE void load_pair_rows_t(const float* s, int64_t ld, int rows, int64_t k, int kn, __m512 r[16]) {
  const __mmask16 m_lo = tail_mask(kn), m_hi = tail_mask(kn - 16);
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) {
    if (i < rows) {
      _mm_prefetch(reinterpret_cast<const char*>(s + i * ld + k + kPfPack), _MM_HINT_T0);
      r[i] = _mm512_castsi512_ps(pairs32(s + i * ld + k, m_lo, m_hi));
    } else {
      r[i] = _mm512_setzero_ps();
    }
  }
  transpose16(r);
}

void kernel_8x48(int64_t kp, const uint32_t* a, const uint32_t* b, float* c, int64_t ldc, int m, int n,
                 const Epilogue* ep) {
  __m512 acc[kMR][3];
  begin_tile<kMR, 3>(acc, c, ldc, m);
  // Lines of the next B block asked for by the frontend (see the fp32 kernel).
  const char* pf = ep->prefetch;
  int pf_left = ep->prefetch_lines;
  for (int64_t p = 0; p < kp; ++p) {
    if (pf_left > 0 && (p & 1) == 0) {
      _mm_prefetch(pf, _MM_HINT_T0);
      pf += 64;
      --pf_left;
    }
    _mm_prefetch(reinterpret_cast<const char*>(b + kPfB * kNR), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(b + kPfB * kNR + 16), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(b + kPfB * kNR + 32), _MM_HINT_T0);
    const __m512bh b0 = as_bh(_mm512_load_si512(b));
    const __m512bh b1 = as_bh(_mm512_load_si512(b + 16));
    const __m512bh b2 = as_bh(_mm512_load_si512(b + 32));
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r) {
      // One A pair broadcast to every lane (the B operand position, so the
      // compiler can fold it into a {1to16} memory operand).
      const __m512bh av = as_bh(_mm512_set1_epi32(static_cast<int>(a[r])));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], b0, av);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], b1, av);
      acc[r][2] = _mm512_dpbf16_ps(acc[r][2], b2, av);
    }
    a += kMR;
    b += kNR;
  }
  store_tile<kMR, 3>(acc, c, ldc, m, n, ep);
}

void pack_a(const float* a, int64_t lda, bool trans, int64_t i0, int64_t rows, int64_t k0, int64_t kc, uint32_t* dst) {
  const int64_t kpc = (kc + 1) / 2;
  for (int64_t p = 0; p < rows; p += kMR) {
    const int mr = static_cast<int>(rows - p < kMR ? rows - p : kMR);
    uint32_t* d = dst + p * kpc;
    if (trans) {
      // op(A)[i, k] = a[k * lda + i]: each k is a contiguous run of MR rows.
      // Convert the even-k and odd-k runs together, then interleave them
      // into (even, odd) pairs per row.
      const __mmask8 mm = static_cast<__mmask8>((1u << mr) - 1);
      const float* s = a + k0 * lda + i0 + p;
      for (int64_t q = 0; q < kpc; ++q) {
        const __m256 e = _mm256_maskz_loadu_ps(mm, s + 2 * q * lda);
        const __m256 o = 2 * q + 1 < kc ? _mm256_maskz_loadu_ps(mm, s + (2 * q + 1) * lda) : _mm256_setzero_ps();
        const __m256i h = bh_bits(_mm512_cvtneps_pbh(_mm512_insertf32x8(_mm512_castps256_ps512(e), o, 1)));
        const __m128i lo = _mm256_castsi256_si128(h), hi = _mm256_extracti128_si256(h, 1);
        _mm_store_si128(reinterpret_cast<__m128i*>(d + q * kMR), _mm_unpacklo_epi16(lo, hi));
        _mm_store_si128(reinterpret_cast<__m128i*>(d + q * kMR + 4), _mm_unpackhi_epi16(lo, hi));
      }
      continue;
    }
    // Rows are contiguous in k: 32 k of a row become 16 pairs in one vector;
    // transposing the 8 rows' vectors puts each pair index's 8 rows together.
    const float* s = a + (i0 + p) * lda + k0;
    for (int64_t k = 0; k < kc; k += 32) {
      const int kn = static_cast<int>(kc - k < 32 ? kc - k : 32);
      __m512 r[16];
      load_pair_rows_t(s, lda, mr, k, kn, r);
      const int np = (kn + 1) / 2;
      for (int t = 0; t < np; ++t)
        _mm256_store_ps(reinterpret_cast<float*>(d + (k / 2 + t) * kMR), _mm512_castps512_ps256(r[t]));
    }
  }
}

// Word i of the result = (bf16 element i, bf16 element 16 + i): interleaves
// the two halves of a cvtne2ps_pbh result into (even k, odd k) pairs.
alignas(64) constexpr uint16_t kInterleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                                  8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};

void pack_b(const float* b, int64_t ldb, bool trans, int64_t k0, int64_t kc, int64_t j0, int64_t cols, uint32_t* dst) {
  const int64_t kpc = (kc + 1) / 2;
  const __m512i interleave = _mm512_load_si512(kInterleave);
  for (int64_t pp = 0; pp < cols; pp += kNR) {
    const int nr = static_cast<int>(cols - pp < kNR ? cols - pp : kNR);
    uint32_t* d = dst + pp * kpc;
    if (!trans) {
      // Rows of B are contiguous in j: convert the even-k and odd-k rows
      // together, then interleave them per column.
      const __mmask16 mk[3] = {tail_mask(nr), tail_mask(nr - 16), tail_mask(nr - 32)};
      const float* s = b + k0 * ldb + j0 + pp;
      for (int64_t q = 0; q < kpc; ++q) {
        const float* se = s + 2 * q * ldb;
        const bool has_odd = 2 * q + 1 < kc;
#pragma GCC unroll 3
        for (int g = 0; g < 3; ++g) {
          const __m512 e = _mm512_maskz_loadu_ps(mk[g], se + 16 * g);
          const __m512 o = has_odd ? _mm512_maskz_loadu_ps(mk[g], se + ldb + 16 * g) : _mm512_setzero_ps();
          const __m512i v = _mm512_permutexvar_epi16(interleave, bh_bits(_mm512_cvtne2ps_pbh(o, e)));
          _mm512_store_si512(d + q * kNR + 16 * g, v);
        }
      }
      continue;
    }
    // op(B)[k, j] = b[j * ldb + k] (Linear weight): 32 k of a row of B (one
    // column of op(B)) become 16 pairs; transposing 16 such rows gives, per
    // pair index, the 16 columns' pairs. One 16-row group at a time keeps 16
    // read streams (what the hardware prefetcher tracks).
    const float* s = b + (j0 + pp) * ldb + k0;
    for (int g = 0; g < 3 && 16 * g < nr; ++g) {
      const float* sg = s + 16 * g * ldb;
      const int rows = nr - 16 * g < 16 ? nr - 16 * g : 16;
      for (int64_t k = 0; k < kc; k += 32) {
        const int kn = static_cast<int>(kc - k < 32 ? kc - k : 32);
        __m512 r[16];
        load_pair_rows_t(sg, ldb, rows, k, kn, r);
        const int np = (kn + 1) / 2;
        for (int t = 0; t < np; ++t) _mm512_store_ps(reinterpret_cast<float*>(d + (k / 2 + t) * kNR + 16 * g), r[t]);
      }
    }
    for (int g = (nr + 15) / 16; g < 3; ++g)
      for (int64_t q = 0; q < kpc; ++q) _mm512_store_si512(d + q * kNR + 16 * g, _mm512_setzero_si512());
  }
}

void pack_x(const float* x, int64_t k, uint32_t* dst) {
  for (int64_t i = 0; i < k; i += 32) {
    const int kn = static_cast<int>(k - i < 32 ? k - i : 32);
    const __m512i v = pairs32(x + i, tail_mask(kn), tail_mask(kn - 16));
    _mm512_mask_storeu_epi32(dst + i / 2, tail_mask((kn + 1) / 2), v);
  }
}

// M == 1 (decode), streaming the packed bf16 B at memory speed and giving
// exactly the bf16 GEMM's results (kernel_8x48 above with M = 1):
//   - Columns go in chunks of up to kChunk panels, and inside a chunk the K
//     blocks are the outer loop, so the weight is read as one sequential run
//     per (chunk, K block) (every panel of a K block lies back to back), not
//     by hopping between K blocks at every panel.
//   - Each column has one dpbf16 chain per K block, in pair order, stored
//     through the same epilogue as the GEMM's tile store (alpha, beta = the
//     call's beta on the first block and 1 after, bias and activation on the
//     last), with C holding the running sum between blocks: the GEMM's exact
//     sequence of roundings.
//   - One panel at a time, with no software prefetch: the loads then walk
//     the run strictly in address order, one stream the hardware prefetchers
//     keep full. Three chains (one per 16 columns) are enough, since memory
//     delivers a 192-byte k-pair far slower than a dpbf16 completes. Four
//     panels side by side (four streams a panel apart, 12 chains) with
//     prefetches 64 pairs ahead in each (48 KB ahead in all, past L1) read
//     at 7-12 GB/s where a plain read of the same bytes ran at ~15 on the
//     loaded Zen 4; this loop reads at the plain read's speed
//     (bench/gemm/decode_gemv.sh, per-shape rows).
// Tiles start on panel boundaries, so no column's arithmetic depends on the
// thread count.
constexpr int64_t kChunk = 16;

void gemv(int64_t kp, int64_t kcp, const uint32_t* x, const uint32_t* packed, int64_t n, int64_t j0, int64_t j1,
          float* c, const Epilogue* ep) {
  const int64_t np = (n + kNR - 1) / kNR;
  for (int64_t jc = j0; jc < j1; jc += kChunk * kNR) {
    const int64_t jend = j1 - jc < kChunk * kNR ? j1 : jc + kChunk * kNR;
    for (int64_t bp = 0; bp < kp; bp += kcp) {
      const int64_t kcpb = kp - bp < kcp ? kp - bp : kcp;
      const bool first = bp == 0, last = bp + kcpb >= kp;
      Epilogue e{ep->alpha, first ? ep->beta : 1.0f, nullptr, last ? ep->act : 0};
      const uint32_t* xb = x + bp;
      for (int64_t j = jc; j < jend; j += kNR) {
        const uint32_t* b = packed + bp * np * kNR + (j / kNR) * kcpb * kNR;
        __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0;
        for (int64_t p = 0; p < kcpb; ++p, b += kNR) {
          const __m512bh xv = as_bh(_mm512_set1_epi32(static_cast<int>(xb[p])));
          acc0 = _mm512_dpbf16_ps(acc0, as_bh(_mm512_load_si512(b)), xv);
          acc1 = _mm512_dpbf16_ps(acc1, as_bh(_mm512_load_si512(b + 16)), xv);
          acc2 = _mm512_dpbf16_ps(acc2, as_bh(_mm512_load_si512(b + 32)), xv);
        }
        const int nj = static_cast<int>(jend - j < kNR ? jend - j : kNR);
        const float* bias = last && ep->bias ? ep->bias + j : nullptr;
        const __m512 acc[3] = {acc0, acc1, acc2};
#pragma GCC unroll 3
        for (int g = 0; g < 3; ++g) {
          const __mmask16 mk = tail_mask(nj - 16 * g);
          if (!mk) break;
          store_vec(c + j + 16 * g, bias ? bias + 16 * g : nullptr, acc[g], mk, &e);
        }
      }
    }
  }
}

}  // namespace

extern const Bf16Kernels kAvx512Bf16Kernels = {kMR, kNR, kernel_8x48, pack_a, pack_b, pack_x, gemv};

}  // namespace attnode::kernels::gemm_detail
