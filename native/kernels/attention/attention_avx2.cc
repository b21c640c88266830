// AVX2 + FMA attention tile kernel. See attention_isa.h.
//
// The target pragma comes before every include and this TU includes only
// always_inline intrinsics, <cstdint> and our declaration-only headers: an
// inline function emitted here would carry AVX2 code that the linker could
// pick for baseline callers (ODR hazard). All helpers are in an anonymous
// namespace for the same reason.
#pragma GCC target("avx2,fma")
// GCC 12 false positives (see attention_avx512.cc).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wpsabi"

#include <immintrin.h>

#include <cstdint>

#include "attention_isa.h"

namespace attnode::kernels::avx2 {
namespace {

// ---------------------------------------------------------------- ISA wrapper
constexpr int64_t W = 8;  // floats per vector
constexpr int kR = 2;     // keys per score micro-tile: 2 keys x 4 vectors of queries (+4 loads: 16 ymm registers)
using V = __m256;
using M = __m256i;

inline V ld(const float* p) { return _mm256_loadu_ps(p); }
inline void st(float* p, V v) { _mm256_storeu_ps(p, v); }
inline M tail_mask(int64_t n) {  // n in [1, W)
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline V ld_tail(const float* p, M m, V fill) {
  return _mm256_blendv_ps(fill, _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
inline void st_tail(float* p, M m, V v) { _mm256_maskstore_ps(p, m, v); }
inline V set1(float f) { return _mm256_set1_ps(f); }
inline V add(V a, V b) { return _mm256_add_ps(a, b); }
inline V sub(V a, V b) { return _mm256_sub_ps(a, b); }
inline V mul(V a, V b) { return _mm256_mul_ps(a, b); }
inline V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
inline V vmax(V a, V b) { return _mm256_max_ps(a, b); }  // NaN in either -> b
inline float hmax(V a) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}
inline float hsum(V a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
// -inf lanes -> 0, others (NaN included) unchanged.
inline V neginf_to_zero(V a) {
  return _mm256_blendv_ps(a, _mm256_setzero_ps(), _mm256_cmp_ps(a, set1(-__builtin_huge_valf()), _CMP_EQ_OQ));
}

// exp(x), same algorithm as layer_ops_avx2.cc: 2^n applied as two normal
// power-of-two factors so overflow gives inf and underflow denormals / 0.
inline V vexp(V x) {
  x = _mm256_min_ps(set1(89.0f), _mm256_max_ps(set1(-104.0f), x));
  V n = _mm256_round_ps(mul(x, set1(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  V r = _mm256_fnmadd_ps(n, set1(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, set1(-2.12194440e-4f), r);
  V p = set1(1.9875691500e-4f);
  p = fma(p, r, set1(1.3981999507e-3f));
  p = fma(p, r, set1(8.3334519073e-3f));
  p = fma(p, r, set1(4.1665795894e-2f));
  p = fma(p, r, set1(1.6666665459e-1f));
  p = fma(p, r, set1(5.0000001201e-1f));
  p = fma(p, mul(r, r), r);
  p = add(p, set1(1.0f));
  __m256i ni = _mm256_cvtps_epi32(n);
  __m256i e1 = _mm256_srai_epi32(ni, 1);
  __m256i e2 = _mm256_sub_epi32(ni, e1);
  const __m256i bias = _mm256_set1_epi32(127);
  V s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e1, bias), 23));
  V s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e2, bias), 23));
  return mul(mul(p, s1), s2);
}

#include "attention_tile.inc"

}  // namespace attnode::kernels::avx2
