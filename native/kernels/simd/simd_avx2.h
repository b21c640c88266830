// SIMD layer, AVX2 + FMA: 8 float lanes. The interface every kernel
// algorithm (.inc) is written against is listed in README.md; simd_avx512.h
// and simd_portable.h provide the same names.
//
// Include only from a translation unit whose first line is
//   #pragma GCC target("avx2,fma")
// Everything is in attnode::simd::avx2 and, inside it, an anonymous
// namespace: internal linkage, so nothing compiled here for AVX2 can become
// a weak symbol that the linker merges with (or picks for) baseline code
// (see simd_avx512.h; test/isa-isolation.test.ts checks it).
// Without that pragma the first intrinsic fails to compile ("target specific
// option mismatch"); GCC does not update __AVX2__ & co. for the pragma in
// C++, so the header cannot check it with #if.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace attnode::simd::avx2 {
namespace {

constexpr int64_t W = 8;  // floats per vector
using V = __m256;
using M = __m256i;     // lanes of a partial (tail) vector: all-ones = active
using DAcc = __m256d;  // double accumulator lanes (see dadd)

inline V ld(const float* p) { return _mm256_loadu_ps(p); }
inline void st(float* p, V v) { _mm256_storeu_ps(p, v); }
// Lanes [0, n), n in [1, W).
inline M tail_mask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
// Lanes outside the mask read as `fill`; vmaskmov never faults on masked-off lanes.
inline V ld_tail(const float* p, M m, V fill) {
  return _mm256_blendv_ps(fill, _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
inline void st_tail(float* p, M m, V v) { _mm256_maskstore_ps(p, m, v); }
inline V set1(float f) { return _mm256_set1_ps(f); }
inline V add(V a, V b) { return _mm256_add_ps(a, b); }
inline V sub(V a, V b) { return _mm256_sub_ps(a, b); }
inline V mul(V a, V b) { return _mm256_mul_ps(a, b); }
inline V div(V a, V b) { return _mm256_div_ps(a, b); }
inline V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }    // a*b + c, one rounding
inline V fnma(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }  // c - a*b, one rounding
// maxps/minps return the second operand when either is NaN: callers put the
// data second so NaN propagates.
inline V vmax(V a, V b) { return _mm256_max_ps(a, b); }
inline V vmin(V a, V b) { return _mm256_min_ps(a, b); }
inline V vsqrt(V a) { return _mm256_sqrt_ps(a); }
inline V vabs(V a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
inline V round_nearest(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// where(x >= 0) ? a : b (NaN x selects b).
inline V select_ge0(V x, V a, V b) { return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ)); }
// -inf lanes -> 0, others (NaN included) unchanged.
inline V neginf_to_zero(V a) {
  return _mm256_blendv_ps(a, _mm256_setzero_ps(), _mm256_cmp_ps(a, set1(-__builtin_huge_valf()), _CMP_EQ_OQ));
}
// p * 2^n for integral n in [-150, 128], as two power-of-two factors that
// are each normal floats, so overflow gives inf and underflow gives
// denormals/0 like a true ldexp (up to one extra rounding for denormals).
inline V ldexp_int(V p, V n) {
  __m256i ni = _mm256_cvtps_epi32(n);
  __m256i e1 = _mm256_srai_epi32(ni, 1);
  __m256i e2 = _mm256_sub_epi32(ni, e1);
  const __m256i bias = _mm256_set1_epi32(127);
  V s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e1, bias), 23));
  V s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

// Horizontal reductions.
inline float hmax(V a) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}
inline float hsum(V a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
// Lane i of the result = hsum(v[i]), i < W: W horizontal sums at once (hadd tree, then the two 128-bit halves).
inline V hsum_lanes(const V* v) {
  const V t0 = _mm256_hadd_ps(v[0], v[1]), t1 = _mm256_hadd_ps(v[2], v[3]);
  const V t2 = _mm256_hadd_ps(v[4], v[5]), t3 = _mm256_hadd_ps(v[6], v[7]);
  const V u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// Double accumulation of float vectors (long sums stay accurate).
inline DAcc dzero() { return _mm256_setzero_pd(); }
inline DAcc dadd(DAcc acc, V v) {
  __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
  __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
  return _mm256_add_pd(acc, _mm256_add_pd(lo, hi));
}
inline double dsum(DAcc acc) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(acc), _mm256_extractf128_pd(acc, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}
// Scalar helpers without <cmath> (whose inline functions would be compiled for this target).
inline float to_float(double d) { return static_cast<float>(d); }
inline double sqrt_d(double d) { return _mm_cvtsd_f64(_mm_sqrt_sd(_mm_setzero_pd(), _mm_set_sd(d))); }

// exp(x): the algorithm of simd_avx512.h (Cephes range reduction + degree-6
// polynomial, ~1 ulp), with 2^n applied by ldexp_int's two factors.
inline V vexp(V x) {
  x = vmin(set1(89.0f), vmax(set1(-104.0f), x));
  V n = round_nearest(mul(x, set1(1.44269504088896341f)));
  V r = fnma(n, set1(0.693359375f), x);
  r = fnma(n, set1(-2.12194440e-4f), r);
  V p = set1(1.9875691500e-4f);
  p = fma(p, r, set1(1.3981999507e-3f));
  p = fma(p, r, set1(8.3334519073e-3f));
  p = fma(p, r, set1(4.1665795894e-2f));
  p = fma(p, r, set1(1.6666665459e-1f));
  p = fma(p, r, set1(5.0000001201e-1f));
  p = fma(p, mul(r, r), r);
  p = add(p, set1(1.0f));
  return ldexp_int(p, n);
}

}  // namespace
}  // namespace attnode::simd::avx2
