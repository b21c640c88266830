#pragma GCC target("avx2,fma")
// AVX2 int8 kernels: vpmaddubsw + vpmaddwd with the sign trick, a 4 x 48
// micro-kernel (two passes of 24 columns), the row quantizer and the GEMV.
// Also the path of AVX-512 CPUs without VNNI. Layouts: qukernel.h.
//
// vpmaddubsw multiplies u8 x s8 and adds adjacent pairs into int16 with
// saturation. Its u8 operand here is |qa| and its s8 operand qw with qa's
// sign applied (vpsignb; zero where qa is 0), so each pair sum is
// qa0 qw0 + qa1 qw1 with |each| <= 127 * 127: at most 32258 < 32767, never
// saturated, and the int32 accumulators are the exact ones of qgemm.h (A is
// not shifted on this path). vpmaddwd against ones then adds the pairs into
// int32 lanes.
//
// Only <immintrin.h>/<cstdint>/<cstddef> and interface headers (ODR: see
// gemm/ukernel_avx512.cc).

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "qukernel.h"

namespace attnode::kernels::qgemm_detail {
namespace {

constexpr int kMR = 4;
constexpr int kNR = kQNR;
constexpr int kQuadBytes = kNR * 4;

#define ATTNODE_INLINE inline __attribute__((always_inline))

// acc += the four-byte dot products of (a's bytes, w's bytes) per int32 lane.
ATTNODE_INLINE __m256i dot4(__m256i acc, __m256i ua, __m256i a, __m256i w, __m256i ones) {
  const __m256i p16 = _mm256_maddubs_epi16(ua, _mm256_sign_epi8(w, a));
  return _mm256_add_epi32(acc, _mm256_madd_epi16(p16, ones));
}

// float(acc) * (sa * sw) for `n` columns of one row, then the scalar fp32 epilogue.
ATTNODE_INLINE void store_row(const __m256i* acc, int nv, float sa, const float* sw, float* c, int n,
                              const gemm_detail::Epilogue* ep) {
  alignas(32) float row[kNR];
  const __m256 sav = _mm256_set1_ps(sa);
  for (int v = 0; v < nv; ++v) {
    const __m256 cs = _mm256_mul_ps(sav, _mm256_loadu_ps(sw + 8 * v));
    _mm256_store_ps(row + 8 * v, _mm256_mul_ps(_mm256_cvtepi32_ps(acc[v]), cs));
  }
  gemm_detail::epilogue_row_scalar(row, c, n, ep);
}

void kernel_4x48(int64_t kq, const uint8_t* a, const int8_t* b, float* c, int64_t ldc, int m, int n, const QStore* st) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[kMR][6];
  // Two passes of 24 columns: 12 accumulators + operands fit the 16 ymm registers.
  for (int h = 0; h < 2; ++h) {
    if (24 * h >= n) {
      for (int r = 0; r < kMR; ++r)
        for (int v = 0; v < 3; ++v) acc[r][3 * h + v] = _mm256_setzero_si256();
      continue;
    }
    __m256i s[kMR][3];
    for (int r = 0; r < kMR; ++r) s[r][0] = s[r][1] = s[r][2] = _mm256_setzero_si256();
    const int32_t* a32 = reinterpret_cast<const int32_t*>(a);
    const int8_t* bh = b + 96 * h;
    for (int64_t q = 0; q < kq; ++q) {
      const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bh));
      const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bh + 32));
      const __m256i w2 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bh + 64));
#pragma GCC unroll 4
      for (int r = 0; r < kMR; ++r) {
        const __m256i av = _mm256_set1_epi32(a32[r]);
        const __m256i ua = _mm256_abs_epi8(av);
        s[r][0] = dot4(s[r][0], ua, av, w0, ones);
        s[r][1] = dot4(s[r][1], ua, av, w1, ones);
        s[r][2] = dot4(s[r][2], ua, av, w2, ones);
      }
      a32 += kMR;
      bh += kQuadBytes;
    }
    for (int r = 0; r < kMR; ++r)
      for (int v = 0; v < 3; ++v) acc[r][3 * h + v] = s[r][v];
  }
  const int nv = (n + 7) / 8;
  for (int r = 0; r < m; ++r) store_row(acc[r], nv, st->row_scale[r], st->col_scale, c + r * ldc, n, &st->ep);
}

ATTNODE_INLINE int round_scalar(float v) { return _mm_cvtss_si32(_mm_set_ss(v)); }  // MXCSR: half to even

float quant_row(const float* x, int64_t k, int8_t* q) {
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
  __m256i mx = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 8 <= k; i += 8)
    mx = _mm256_max_epu32(mx, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)), abs_mask));
  alignas(32) uint32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), mx);
  uint32_t m = 0;
  for (int t = 0; t < 8; ++t) m = lanes[t] > m ? lanes[t] : m;
  for (; i < k; ++i) {
    const uint32_t u = static_cast<uint32_t>(_mm_cvtsi128_si32(_mm_castps_si128(_mm_set_ss(x[i])))) & 0x7fffffffu;
    m = u > m ? u : m;
  }
  const float amax = _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(static_cast<int>(m))));
  if (m == 0 || m >= 0x7f800000u) {
    for (int64_t j = 0; j < k; ++j) q[j] = 0;
    return amax / 127.0f;
  }
  const float invs = 127.0f / amax;
  const __m256 inv = _mm256_set1_ps(invs);
  const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  i = 0;
  for (; i + 32 <= k; i += 32) {
    __m256i v[4];
    for (int t = 0; t < 4; ++t) {
      v[t] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * t), inv));
      v[t] = _mm256_min_epi32(hi, _mm256_max_epi32(lo, v[t]));
    }
    // packs interleave the 128-bit lanes: dword d of the result is (v0lo, v1lo, v2lo, v3lo, v0hi, ...) -> reorder.
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), _mm256_permutevar8x32_epi32(p, order));
  }
  for (; i < k; ++i) {
    int r = round_scalar(x[i] * invs);
    r = r > 127 ? 127 : r < -127 ? -127 : r;
    q[i] = static_cast<int8_t>(r);
  }
  return amax / 127.0f;
}

void gemv(int64_t kq, const uint8_t* x, const int8_t* packed, int64_t j0, int64_t j1, float* c, int64_t /*n*/,
          const QStore* st) {
  const __m256i ones = _mm256_set1_epi16(1);
  const int32_t* x32 = reinterpret_cast<const int32_t*>(x);
  const int64_t stride = kq * kQuadBytes;
  for (int64_t j = j0; j < j1; j += kNR) {
    const int8_t* b = packed + (j / kNR) * stride;
    __m256i acc[6];
    for (int v = 0; v < 6; ++v) acc[v] = _mm256_setzero_si256();
    for (int64_t q = 0; q < kq; ++q) {
      const __m256i av = _mm256_set1_epi32(x32[q]);
      const __m256i ua = _mm256_abs_epi8(av);
      _mm_prefetch(reinterpret_cast<const char*>(b + 32 * kQuadBytes), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(b + 32 * kQuadBytes + 64), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(b + 32 * kQuadBytes + 128), _MM_HINT_T0);
#pragma GCC unroll 6
      for (int v = 0; v < 6; ++v)
        acc[v] = dot4(acc[v], ua, av, _mm256_load_si256(reinterpret_cast<const __m256i*>(b + 32 * v)), ones);
      b += kQuadBytes;
    }
    const int nj = static_cast<int>(j1 - j < kNR ? j1 - j : kNR);
    gemm_detail::Epilogue e = st->ep;
    if (e.bias != nullptr) e.bias += j;
    store_row(acc, (nj + 7) / 8, st->row_scale[0], st->col_scale + j, c + j, nj, &e);
  }
}

}  // namespace

extern const QKernels kQAvx2Kernels = {kMR, false, kernel_4x48, quant_row, gemv, nullptr};

}  // namespace attnode::kernels::qgemm_detail
