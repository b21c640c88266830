// SIMD layer, AVX-512 (F/BW/VL/DQ) + FMA: 16 float lanes. The interface
// every kernel algorithm (.inc) is written against is listed in README.md;
// simd_avx2.h and simd_portable.h provide the same names.
//
// Include only from a translation unit whose first line is
//   #pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma")
// (more features may follow). Everything is in attnode::simd::avx512 and,
// inside it, an anonymous namespace: internal linkage, so every function is
// private to the including TU and never emitted as a weak symbol the linker
// could merge with (or pick for) baseline code. A plain `inline` function
// would be exactly that hazard: one COMDAT copy compiled with AVX-512, kept
// for every caller. The per-ISA namespace also keeps the three headers'
// identical names apart should two ever meet in one TU.
// test/isa-isolation.test.ts checks the objects for weak symbols.
// Without that pragma the first intrinsic fails to compile ("target specific
// option mismatch"); GCC does not update __AVX2__ & co. for the pragma in
// C++, so the header cannot check it with #if.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace attnode::simd::avx512 {
namespace {

constexpr int64_t W = 16;  // floats per vector
using V = __m512;
using M = __mmask16;   // lanes of a partial (tail) vector
using DAcc = __m512d;  // double accumulator lanes (see dadd)

inline V ld(const float* p) { return _mm512_loadu_ps(p); }
inline void st(float* p, V v) { _mm512_storeu_ps(p, v); }
// Lanes [0, n), n in [1, W).
inline M tail_mask(int64_t n) { return static_cast<M>((1u << n) - 1u); }
// Lanes outside the mask read as `fill` and never touch memory (no fault past the end).
inline V ld_tail(const float* p, M m, V fill) { return _mm512_mask_loadu_ps(fill, m, p); }
inline void st_tail(float* p, M m, V v) { _mm512_mask_storeu_ps(p, m, v); }
inline V set1(float f) { return _mm512_set1_ps(f); }
inline V add(V a, V b) { return _mm512_add_ps(a, b); }
inline V sub(V a, V b) { return _mm512_sub_ps(a, b); }
inline V mul(V a, V b) { return _mm512_mul_ps(a, b); }
inline V div(V a, V b) { return _mm512_div_ps(a, b); }
inline V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }    // a*b + c, one rounding
inline V fnma(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a*b, one rounding
// maxps/minps return the second operand when either is NaN: callers put the
// data second so NaN propagates.
inline V vmax(V a, V b) { return _mm512_max_ps(a, b); }
inline V vmin(V a, V b) { return _mm512_min_ps(a, b); }
inline V vsqrt(V a) { return _mm512_sqrt_ps(a); }
inline V vabs(V a) { return _mm512_abs_ps(a); }
inline V round_nearest(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// where(x >= 0) ? a : b (NaN x selects b).
inline V select_ge0(V x, V a, V b) {
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ), b, a);
}
// -inf lanes -> 0, others (NaN included) unchanged.
inline V neginf_to_zero(V a) {
  return _mm512_mask_mov_ps(a, _mm512_cmp_ps_mask(a, set1(-__builtin_huge_valf()), _CMP_EQ_OQ), _mm512_setzero_ps());
}
// p * 2^n for integral n in [-150, 128]; scalef handles overflow to inf and
// gradual underflow to denormals/0 in one instruction.
inline V ldexp_int(V p, V n) { return _mm512_scalef_ps(p, n); }

// Horizontal reductions.
inline float hmax(V a) { return _mm512_reduce_max_ps(a); }
inline float hsum(V a) { return _mm512_reduce_add_ps(a); }
// Lane i of the result = hsum(v[i]), i < W: W horizontal sums at once (a transpose-and-add tree, 45 shuffles and
// adds instead of W separate reductions). The order of the additions is fixed: pairs of lanes within 128-bit
// quarters, then the quarters ((0 + 1) + (2 + 3)).
inline V hsum_lanes(const V* v) {
  V a[8], b[4];
  for (int i = 0; i < 8; ++i)
    a[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; ++i) {
    const __m512d x = _mm512_castps_pd(a[2 * i]), y = _mm512_castps_pd(a[2 * i + 1]);
    b[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  const V d0 = _mm512_add_ps(_mm512_shuffle_f32x4(b[0], b[1], 0x88), _mm512_shuffle_f32x4(b[0], b[1], 0xdd));
  const V d1 = _mm512_add_ps(_mm512_shuffle_f32x4(b[2], b[3], 0x88), _mm512_shuffle_f32x4(b[2], b[3], 0xdd));
  return _mm512_add_ps(_mm512_shuffle_f32x4(d0, d1, 0x88), _mm512_shuffle_f32x4(d0, d1, 0xdd));
}

// Double accumulation of float vectors (long sums stay accurate).
inline DAcc dzero() { return _mm512_setzero_pd(); }
inline DAcc dadd(DAcc acc, V v) {
  __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
  __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  return _mm512_add_pd(acc, _mm512_add_pd(lo, hi));
}
inline double dsum(DAcc acc) { return _mm512_reduce_add_pd(acc); }
// Scalar helpers without <cmath> (whose inline functions would be compiled for this target).
inline float to_float(double d) { return static_cast<float>(d); }
inline double sqrt_d(double d) { return _mm_cvtsd_f64(_mm_sqrt_sd(_mm_setzero_pd(), _mm_set_sd(d))); }

// exp(x), Cephes expf range reduction + degree-6 polynomial, ~1 ulp.
// exp(x) underflows to 0 below about -103.3 and overflows to +inf above
// 88.72; the clamp keeps 2^n in scalef range without changing those
// results. NaN passes through the clamps (data is the second operand).
inline V vexp(V x) {
  x = vmin(set1(89.0f), vmax(set1(-104.0f), x));
  V n = round_nearest(mul(x, set1(1.44269504088896341f)));
  // ln2 split so that n * kLn2Hi is exact (Cephes C1/C2).
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
}  // namespace attnode::simd::avx512
