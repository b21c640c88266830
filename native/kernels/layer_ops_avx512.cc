// AVX-512 (F/BW/VL/DQ) + FMA layer-op kernels. See layer_ops_isa.h.
//
// The target pragma must come before every include, and this TU includes only
// headers without out-of-line-able inline/template bodies (intrinsics are
// always_inline gnu_inline, <cstdint> is typedefs, our headers are
// declarations): any inline function emitted here would carry AVX-512 code
// and the linker could pick it for baseline callers (ODR hazard). Every
// helper below is in an anonymous namespace for the same reason.
//
// The algorithms live in layer_ops_rows.inc, included below the ISA wrapper
// section; only the wrappers differ between ISAs.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma")
// GCC 12 false positives: _mm512_undefined_ps() inside the intrinsics trips
// -Wmaybe-uninitialized, and lambdas returning __m512 (all internal to this
// TU, never crossing an ABI boundary) trip -Wpsabi.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wpsabi"

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "layer_ops_isa.h"

namespace attnode::kernels::avx512 {
namespace {

// ---------------------------------------------------------------- ISA wrapper
constexpr int64_t W = 16;  // floats per vector
using V = __m512;
using M = __mmask16;  // lanes of a partial (tail) vector
using DAcc = __m512d;

inline V ld(const float* p) { return _mm512_loadu_ps(p); }
inline void st(float* p, V v) { _mm512_storeu_ps(p, v); }
// n in [1, W).
inline M tail_mask(int64_t n) { return static_cast<M>((1u << n) - 1u); }
// Lanes outside the mask read as `fill` and never touch memory (no fault past the end).
inline V ld_tail(const float* p, M m, V fill) { return _mm512_mask_loadu_ps(fill, m, p); }
inline void st_tail(float* p, M m, V v) { _mm512_mask_storeu_ps(p, m, v); }
inline V set1(float f) { return _mm512_set1_ps(f); }
inline V add(V a, V b) { return _mm512_add_ps(a, b); }
inline V sub(V a, V b) { return _mm512_sub_ps(a, b); }
inline V mul(V a, V b) { return _mm512_mul_ps(a, b); }
inline V div(V a, V b) { return _mm512_div_ps(a, b); }
inline V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }    // a*b + c
inline V fnma(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a*b
// maxps/minps return the second operand when either is NaN: callers put the
// data second so NaN propagates.
inline V vmax(V a, V b) { return _mm512_max_ps(a, b); }
inline V vmin(V a, V b) { return _mm512_min_ps(a, b); }
inline V vabs(V a) { return _mm512_abs_ps(a); }
inline V round_nearest(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// where(x >= 0) ? a : b (NaN x selects b).
inline V select_ge0(V x, V a, V b) {
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ), b, a);
}
// p * 2^n for integral n in [-150, 128]; scalef handles overflow to inf and
// gradual underflow to denormals/0 in one instruction.
inline V ldexp_int(V p, V n) { return _mm512_scalef_ps(p, n); }
inline float hmax(V a) { return _mm512_reduce_max_ps(a); }
inline DAcc dzero() { return _mm512_setzero_pd(); }
inline DAcc dadd(DAcc acc, V v) {
  __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
  __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  return _mm512_add_pd(acc, _mm512_add_pd(lo, hi));
}
inline double dsum(DAcc acc) { return _mm512_reduce_add_pd(acc); }
inline float to_float(double d) { return static_cast<float>(d); }
inline double sqrt_d(double d) { return _mm_cvtsd_f64(_mm_sqrt_sd(_mm_setzero_pd(), _mm_set_sd(d))); }

#include "layer_ops_rows.inc"

}  // namespace attnode::kernels::avx512
