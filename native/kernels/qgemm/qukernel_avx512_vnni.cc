#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")
// AVX512-VNNI int8 kernels: an 8 x 48 micro-kernel on vpdpbusd, the row
// quantizer, the A-panel packer and the M = 1 GEMV. Layouts and arithmetic: qukernel.h, qgemm.h.
//
// vpdpbusd multiplies 64 u8 x s8 pairs and adds each group of four into an
// int32 lane: 4x the multiply-adds of one fp32 FMA per instruction. The
// tiling is the fp32 kernel's (24 zmm accumulators, 3 B vectors, 1 broadcast
// of four A bytes per row): 24 vpdpbusd against 11 loads per quad of k. A
// on this path is shifted to u8 (qa + 128) and the store subtracts each
// column's 128 * sum_k qw, which is exact modulo 2^32 (qgemm.h).
//
// Only called when the CPU has AVX512-VNNI and the active path is avx512.
// Only <immintrin.h>/<cstdint>/<cstddef> and interface headers (ODR: see
// gemm/ukernel_avx512.cc).

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "qukernel.h"

// GCC 12 false positives inside its own avx512fintrin.h (_mm512_undefined_* in
// the conversion/reduce intrinsics).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace attnode::kernels::qgemm_detail {
namespace {

using gemm_detail::Epilogue;

constexpr int kMR = 8;
constexpr int kNR = kQNR;
constexpr int kQuadBytes = kNR * 4;  // one quad of a B panel: 192 bytes, 3 zmm

#include "../gemm/avx512_common.inc"

// Quads ahead to prefetch in the B stream (panels come from L2).
constexpr int kPfB = 8;

// acc += dot4(a (u8), b (s8)) per int32 lane. Inline asm: GCC 12 gives the
// intrinsic an untied destination, and the 8 x 48 kernel then copied and
// spilled its accumulators every k step (half the speed).
ATTNODE_INLINE void dpbusd(__m512i& acc, __m512i a, __m512i b) {
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
}

// acc -> float(acc - comp) * (sa * sw) for the m valid rows (the others 0).
template <int MR>
ATTNODE_INLINE void dequant(const __m512i (&acc)[MR][3], __m512 (&out)[MR][3], int m, const QStore* st) {
  __m512 sw[3];
  __m512i comp[3];
#pragma GCC unroll 3
  for (int v = 0; v < 3; ++v) {
    sw[v] = _mm512_loadu_ps(st->col_scale + 16 * v);
    comp[v] = _mm512_loadu_si512(st->comp + 16 * v);
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    const __m512 sa = _mm512_set1_ps(r < m ? st->row_scale[r] : 0.0f);
#pragma GCC unroll 3
    for (int v = 0; v < 3; ++v) {
      const __m512 cs = _mm512_mul_ps(sa, sw[v]);
      out[r][v] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][v], comp[v])), cs);
    }
  }
}

void kernel_8x48(int64_t kq, const uint8_t* a, const int8_t* b, float* c, int64_t ldc, int m, int n, const QStore* st) {
  __m512i acc[kMR][3];
#pragma GCC unroll 8
  for (int r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = acc[r][2] = _mm512_setzero_si512();
  for (int r = 0; r < m; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 16), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 32), _MM_HINT_T0);
  }
  const int32_t* a32 = reinterpret_cast<const int32_t*>(a);
  for (int64_t q = 0; q < kq; ++q) {
    _mm_prefetch(reinterpret_cast<const char*>(b + kPfB * kQuadBytes), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(b + kPfB * kQuadBytes + 64), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(b + kPfB * kQuadBytes + 128), _MM_HINT_T0);
    const __m512i b0 = _mm512_load_si512(b);
    const __m512i b1 = _mm512_load_si512(b + 64);
    const __m512i b2 = _mm512_load_si512(b + 128);
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r) {
      const __m512i av = _mm512_set1_epi32(a32[r]);
      dpbusd(acc[r][0], av, b0);
      dpbusd(acc[r][1], av, b1);
      dpbusd(acc[r][2], av, b2);
    }
    a32 += kMR;
    b += kQuadBytes;
  }
  __m512 out[kMR][3];
  dequant<kMR>(acc, out, m, st);
  store_tile<kMR, 3>(out, c, ldc, m, n, &st->ep);
}

// amax of x[0, k) as the bits of |x| (qgemm.h: a NaN wins over Inf, Inf over every finite value).
ATTNODE_INLINE uint32_t amax_bits(const float* x, int64_t k) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
  __m512i mx = _mm512_setzero_si512();
  for (int64_t i = 0; i < k; i += 16) {
    const __mmask16 mk = tail_mask(static_cast<int>(k - i < 16 ? k - i : 16));
    mx = _mm512_max_epu32(mx, _mm512_and_si512(_mm512_maskz_loadu_epi32(mk, x + i), abs_mask));
  }
  return _mm512_reduce_max_epu32(mx);
}

float quant_row(const float* x, int64_t k, int8_t* q) {
  const uint32_t m = amax_bits(x, k);
  const float amax = _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(static_cast<int>(m))));
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
  if (m == 0 || m >= 0x7f800000u) {
    for (int64_t i = 0; i < k; i += 16) {
      const __mmask16 mk = tail_mask(static_cast<int>(k - i < 16 ? k - i : 16));
      _mm_mask_storeu_epi8(q + i, mk, _mm_setzero_si128());
    }
    return amax / 127.0f;
  }
  const __m512 inv = _mm512_set1_ps(127.0f / amax);
  for (int64_t i = 0; i < k; i += 16) {
    const __mmask16 mk = tail_mask(static_cast<int>(k - i < 16 ? k - i : 16));
    // cvtps2dq rounds with MXCSR: round-half-to-even (the default, never changed here).
    __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + i), inv));
    v = _mm512_min_epi32(hi, _mm512_max_epi32(lo, v));
    _mm_mask_storeu_epi8(q + i, mk, _mm512_cvtepi32_epi8(v));
  }
  return amax / 127.0f;
}

// In-register transpose of 8 rows x 8 int32 words: v[r] = row r in, v[q] = column q out.
ATTNODE_INLINE void transpose8x8_epi32(__m256i (&v)[8]) {
  __m256i t[8], u[8];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
  }
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    u[4 * h + 0] = _mm256_unpacklo_epi64(t[4 * h + 0], t[4 * h + 2]);
    u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h + 0], t[4 * h + 2]);
    u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
    u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_permute2x128_si256(u[i], u[4 + i], 0x20);
    v[4 + i] = _mm256_permute2x128_si256(u[i], u[4 + i], 0x31);
  }
}

// One A panel straight from the rows, with no staging copy: each row's amax first (quant_row's bit-wise max),
// then 8 quads (32 values) of all 8 rows at a time quantized exactly as quant_row does (x * (127 / amax), rounded
// half to even by cvtps2dq, clamped to +-127), narrowed to one 8-word vector per row, transposed into the panel's
// [quad][row] words and shifted to u8 (qa + 128). Rows past m, rows whose amax is 0 or not finite, and the values
// past k are zeros, as quant_row and the padding give them. (A staging copy of the 8 quantized rows, 24 KiB at
// K = 3072, no longer fit L1 beside the row being read.)
void pack_panel(const float* const* rows, int m, int64_t k, int64_t kq, uint8_t* dst, float* sa) {
  __m512 inv[kMR];
  bool live[kMR];
#pragma GCC unroll 8
  for (int r = 0; r < kMR; ++r) {
    live[r] = false;
    inv[r] = _mm512_setzero_ps();
    if (r >= m) continue;
    const uint32_t mb = amax_bits(rows[r], k);
    const float amax = _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(static_cast<int>(mb))));
    sa[r] = amax / 127.0f;
    if (mb != 0 && mb < 0x7f800000u) {
      live[r] = true;
      inv[r] = _mm512_set1_ps(127.0f / amax);
    }
  }
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
  const __m256i shift = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t q0 = 0; q0 < kq; q0 += 8) {
    const int64_t i = q0 * 4;  // < k: kq = ceil(k / 4)
    const int left = static_cast<int>(k - i < 32 ? k - i : 32);
    const __mmask16 m0 = tail_mask(left), m1 = tail_mask(left - 16);
    __m256i v[8];
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r) {
      if (!live[r]) {
        v[r] = _mm256_setzero_si256();
        continue;
      }
      const float* x = rows[r] + i;
      __m512i a = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m0, x), inv[r]));
      __m512i b = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m1, x + 16), inv[r]));
      a = _mm512_min_epi32(hi, _mm512_max_epi32(lo, a));
      b = _mm512_min_epi32(hi, _mm512_max_epi32(lo, b));
      v[r] = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm512_cvtepi32_epi8(a)), _mm512_cvtepi32_epi8(b), 1);
    }
    transpose8x8_epi32(v);
    const int nq = static_cast<int>(kq - q0 < 8 ? kq - q0 : 8);
    for (int t = 0; t < nq; ++t)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + (q0 + t) * kMR * 4), _mm256_xor_si256(v[t], shift));
  }
}

// M == 1, one panel at a time with no software prefetch: the loads walk the
// packed panels strictly in address order, one stream the hardware
// prefetchers keep full (a panel holds all of K, so the columns' panels lie
// back to back). Three chains are plenty: memory delivers a 192-byte quad
// far slower than a vpdpbusd completes. Four panels side by side, each
// prefetched 48 quads ahead (36 KB in all), read slower than a plain read of
// the same bytes, like the bf16 GEMV did (bench/gemm/decode_gemv.sh). The
// int32 sums are exact, so the order of panels does not change any bit.
void gemv(int64_t kq, const uint8_t* x, const int8_t* packed, int64_t j0, int64_t j1, float* c, int64_t /*n*/,
          const QStore* st) {
  const int64_t stride = kq * kQuadBytes;
  const int32_t* x32 = reinterpret_cast<const int32_t*>(x);
  const __m512 sa = _mm512_set1_ps(st->row_scale[0]);
  for (int64_t j = j0; j < j1; j += kNR) {
    const int8_t* bq = packed + (j / kNR) * stride;
    __m512i acc[3] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
    for (int64_t q = 0; q < kq; ++q, bq += kQuadBytes) {
      const __m512i xv = _mm512_set1_epi32(x32[q]);
      dpbusd(acc[0], xv, _mm512_load_si512(bq));
      dpbusd(acc[1], xv, _mm512_load_si512(bq + 64));
      dpbusd(acc[2], xv, _mm512_load_si512(bq + 128));
    }
    const int nj = static_cast<int>(j1 - j < kNR ? j1 - j : kNR);
#pragma GCC unroll 3
    for (int v = 0; v < 3; ++v) {
      const __mmask16 mk = tail_mask(nj - 16 * v);
      if (!mk) break;
      const int64_t jj = j + 16 * v;
      const __m512 cs = _mm512_mul_ps(sa, _mm512_loadu_ps(st->col_scale + jj));
      const __m512 d = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[v], _mm512_loadu_si512(st->comp + jj))), cs);
      store_vec(c + jj, st->ep.bias ? st->ep.bias + jj : nullptr, d, mk, &st->ep);
    }
  }
}

}  // namespace

extern const QKernels kQAvx512VnniKernels = {kMR, true, kernel_8x48, quant_row, gemv, pack_panel};

}  // namespace attnode::kernels::qgemm_detail
