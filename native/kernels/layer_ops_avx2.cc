// AVX2 + FMA layer-op kernels. See layer_ops_isa.h.
//
// The target pragma must come before every include, and this TU includes only
// headers without out-of-line-able inline/template bodies (intrinsics are
// always_inline gnu_inline, <cstdint> is typedefs, our headers are
// declarations): any inline function emitted here would carry AVX2 code and
// the linker could pick it for baseline callers (ODR hazard). Every helper
// below is in an anonymous namespace for the same reason.
//
// The algorithm section (below the "ISA wrapper" section) is textually the
// same as in layer_ops_avx512.cc; only the wrappers differ.
#pragma GCC target("avx2,fma")
// GCC 12 false positives: the intrinsics' _mm256_undefined_*() trips
// -Wmaybe-uninitialized, and lambdas returning __m256 (all internal to this
// TU, never crossing an ABI boundary) trip -Wpsabi.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wpsabi"

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "layer_ops_isa.h"

namespace attnode::kernels::avx2 {
namespace {

// ---------------------------------------------------------------- ISA wrapper
constexpr int64_t W = 8;  // floats per vector
using V = __m256;
using M = __m256i;  // lanes of a partial (tail) vector: all-ones = active
using DAcc = __m256d;

inline V ld(const float* p) { return _mm256_loadu_ps(p); }
inline void st(float* p, V v) { _mm256_storeu_ps(p, v); }
// n in [1, W).
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
inline V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }    // a*b + c
inline V fnma(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }  // c - a*b
// maxps/minps return the second operand when either is NaN: callers put the
// data second so NaN propagates.
inline V vmax(V a, V b) { return _mm256_max_ps(a, b); }
inline V vmin(V a, V b) { return _mm256_min_ps(a, b); }
inline V vabs(V a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
inline V round_nearest(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// where(x >= 0) ? a : b (NaN x selects b).
inline V select_ge0(V x, V a, V b) { return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ)); }
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
inline float hmax(V a) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}
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
inline float to_float(double d) { return static_cast<float>(d); }
inline double sqrt_d(double d) { return _mm_cvtsd_f64(_mm_sqrt_sd(_mm_setzero_pd(), _mm_set_sd(d))); }

// ----------------------------------------------------------------- algorithms
// (identical in layer_ops_avx512.cc)

// Sums are accumulated in float vectors over blocks of this many elements and
// then added into double lanes: the float part sees at most
// kBlock / (2 * W) additions per lane (exact enough), the double part keeps
// long rows accurate.
constexpr int64_t kBlock = 1024;

constexpr float kInf = __builtin_huge_valf();

// exp(x), Cephes expf range reduction + degree-6 polynomial, ~1 ulp.
// exp(x) underflows to 0 below about -103.3 and overflows to +inf above
// 88.72; the clamp keeps 2^n in scalef/ldexp range without changing those
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

// erfc(z) for z >= 0 with relative accuracy (~2e-7 + the float rounding of
// z*z in the exponent) also deep in the tail, where 1 - erf(z) would cancel.
// Numerical Recipes' erfcc form t*exp(-z^2 + P(t)), t = 1/(1 + z/2), with P
// refitted (degree 9, weighted least squares on z in [0, 10]) to 4.6e-8
// relative error in exact arithmetic.
inline V verfc_pos(V z) {
  V one = set1(1.0f);
  V t = div(one, fma(z, set1(0.5f), one));
  V p = set1(0.1419001947448542f);
  p = fma(p, t, set1(-0.664490492877891f));
  p = fma(p, t, set1(1.1187844040757333f));
  p = fma(p, t, set1(-0.6465708605717445f));
  p = fma(p, t, set1(-0.12052263082762993f));
  p = fma(p, t, set1(0.02209762345474031f));
  p = fma(p, t, set1(0.027742403671670413f));
  p = fma(p, t, set1(0.38802089994470546f));
  p = fma(p, t, set1(0.998479340734228f));
  p = fma(p, t, set1(-1.2654408369696393f));
  return mul(t, vexp(fnma(z, z, p)));
}

// 0.5 * x * (1 + erf(x / sqrt(2))) = x * Phi(x), Phi(x) = erfc(-x/sqrt2) / 2.
// Evaluated through erfc(|x|/sqrt2) so that the x < 0 side keeps relative
// accuracy instead of the absolute 1e-7 the 1 + erf form gives.
// gelu(-inf) = -inf * 0 = NaN, as the formula (and PyTorch) give.
inline V vgelu_erf(V x) {
  V z = mul(vabs(x), set1(0.70710678118654752f));
  V half_erfc = mul(set1(0.5f), verfc_pos(z));
  return mul(x, select_ge0(x, sub(set1(1.0f), half_erfc), half_erfc));
}

// 0.5 * x * (1 + tanh(u)) with u = sqrt(2/pi) * (x + 0.044715 x^3), written
// as x / (1 + exp(-2u)) (same function, no cancellation for x < 0; exp
// overflowing to inf gives -0 for very negative x, like the tanh form).
inline V vgelu_tanh(V x) {
  V x2 = mul(x, x);
  V m2u = mul(mul(x, set1(-2.0f * 0.79788456080286536f)), fma(x2, set1(0.044715f), set1(1.0f)));
  return div(x, add(set1(1.0f), vexp(m2u)));
}

inline V vrelu(V x) { return vmax(set1(0.0f), x); }

template <typename F>
inline void map_unary(const float* x, float* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    V a = f(ld(x + i));
    V b = f(ld(x + i + W));
    st(y + i, a);
    st(y + i + W, b);
  }
  for (; i + W <= n; i += W) st(y + i, f(ld(x + i)));
  if (i < n) {
    M m = tail_mask(n - i);
    st_tail(y + i, m, f(ld_tail(x + i, m, set1(0.0f))));
  }
}

// a_inc / b_inc: 1 = contiguous, 0 = scalar broadcast.
template <typename F>
inline void map_binary(const float* a, int64_t a_inc, const float* b, int64_t b_inc, float* y, int64_t n, F f) {
  if (a_inc != 0 && b_inc != 0) {
    int64_t i = 0;
    for (; i + W <= n; i += W) st(y + i, f(ld(a + i), ld(b + i)));
    if (i < n) {
      M m = tail_mask(n - i);
      V one = set1(1.0f);
      st_tail(y + i, m, f(ld_tail(a + i, m, one), ld_tail(b + i, m, one)));
    }
  } else if (a_inc != 0) {
    V vb = set1(*b);
    map_unary(a, y, n, [&](V va) { return f(va, vb); });
  } else if (b_inc != 0) {
    V va = set1(*a);
    map_unary(b, y, n, [&](V vb) { return f(va, vb); });
  } else {
    const V r = f(set1(*a), set1(*b));
    int64_t i = 0;
    for (; i + W <= n; i += W) st(y + i, r);
    if (i < n) st_tail(y + i, tail_mask(n - i), r);
  }
}

void softmax_row(const float* x, float* y, int64_t n) {
  // Pass 1: row max. A NaN may be dropped here, but it comes back through
  // its own exp() into the sum, so the whole row still becomes NaN.
  V m0 = set1(-kInf), m1 = m0;
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    m0 = vmax(m0, ld(x + i));
    m1 = vmax(m1, ld(x + i + W));
  }
  for (; i + W <= n; i += W) m0 = vmax(m0, ld(x + i));
  if (i < n) m0 = vmax(m0, ld_tail(x + i, tail_mask(n - i), set1(-kInf)));
  const V vm = set1(hmax(vmax(m0, m1)));

  // Pass 2: e = exp(x - max) into y, sum in float blocks -> double. The
  // largest term is exp(0) = 1, so the sum is >= 1 and the scale below is
  // finite for any finite row (also for +-1e4 logits). A row of all -inf
  // gives (-inf) - (-inf) = NaN everywhere, i.e. NaN output like PyTorch; a
  // +inf logit makes the row NaN (inf - inf), also like PyTorch.
  DAcc acc = dzero();
  for (i = 0; i < n;) {
    const int64_t end = i + kBlock < n ? i + kBlock : n;
    V s0 = set1(0.0f), s1 = s0;
    for (; i + 2 * W <= end; i += 2 * W) {
      V e0 = vexp(sub(ld(x + i), vm));
      V e1 = vexp(sub(ld(x + i + W), vm));
      st(y + i, e0);
      st(y + i + W, e1);
      s0 = add(s0, e0);
      s1 = add(s1, e1);
    }
    for (; i + W <= end; i += W) {
      V e = vexp(sub(ld(x + i), vm));
      st(y + i, e);
      s0 = add(s0, e);
    }
    if (i < end) {
      // Only the last block has a tail; -inf fill makes exp() 0 in the lanes outside.
      M m = tail_mask(end - i);
      V e = vexp(sub(ld_tail(x + i, m, set1(-kInf)), vm));
      st_tail(y + i, m, e);
      s0 = add(s0, e);
      i = end;
    }
    acc = dadd(acc, add(s0, s1));
  }

  // Pass 3: scale (y is hot in L1/L2 for typical rows).
  const V inv = set1(to_float(1.0 / dsum(acc)));
  for (i = 0; i + W <= n; i += W) st(y + i, mul(ld(y + i), inv));
  if (i < n) {
    M m = tail_mask(n - i);
    st_tail(y + i, m, mul(ld_tail(y + i, m, inv), inv));
  }
}

// Sum over the row of f(x_i - c) and (when sq) of (x_i - c)^2, float blocks -> double.
inline void shifted_sums(const float* x, int64_t n, float c, bool sq, double* s1, double* s2) {
  const V vc = set1(c);
  DAcc a1 = dzero(), a2 = dzero();
  for (int64_t i = 0; i < n;) {
    const int64_t end = i + kBlock < n ? i + kBlock : n;
    V p0 = set1(0.0f), p1 = p0, q0 = p0, q1 = p0;
    for (; i + 2 * W <= end; i += 2 * W) {
      V d0 = sub(ld(x + i), vc);
      V d1 = sub(ld(x + i + W), vc);
      p0 = add(p0, d0);
      p1 = add(p1, d1);
      if (sq) {
        q0 = fma(d0, d0, q0);
        q1 = fma(d1, d1, q1);
      }
    }
    for (; i + W <= end; i += W) {
      V d = sub(ld(x + i), vc);
      p0 = add(p0, d);
      if (sq) q0 = fma(d, d, q0);
    }
    if (i < end) {
      // Filling with c makes the lanes outside contribute exactly 0.
      V d = sub(ld_tail(x + i, tail_mask(end - i), vc), vc);
      p0 = add(p0, d);
      if (sq) q0 = fma(d, d, q0);
      i = end;
    }
    a1 = dadd(a1, add(p0, p1));
    if (sq) a2 = dadd(a2, add(q0, q1));
  }
  *s1 = dsum(a1);
  *s2 = sq ? dsum(a2) : 0.0;
}

template <bool kGamma, bool kBeta>
inline void ln_apply(const float* x, const float* g, const float* b, float* y, int64_t n, float mean_f, float rstd,
                     float shift) {
  const V vm = set1(mean_f), vr = set1(rstd), vs = set1(shift), zero = set1(0.0f);
  auto f = [&](V xv, V gv, V bv) {
    V t = fma(sub(xv, vm), vr, vs);
    if (kGamma && kBeta) return fma(t, gv, bv);
    if (kGamma) return mul(t, gv);
    if (kBeta) return add(t, bv);
    return t;
  };
  int64_t i = 0;
  for (; i + W <= n; i += W) st(y + i, f(ld(x + i), kGamma ? ld(g + i) : zero, kBeta ? ld(b + i) : zero));
  if (i < n) {
    M m = tail_mask(n - i);
    st_tail(
        y + i, m,
        f(ld_tail(x + i, m, zero), kGamma ? ld_tail(g + i, m, zero) : zero, kBeta ? ld_tail(b + i, m, zero) : zero));
  }
}

void layer_norm_row(const float* x, const float* g, const float* b, float* y, int64_t n, float eps) {
  // Two passes, both shifted so large common offsets (e.g. 1e4 + noise) do
  // not cancel: x - c is exact (Sterbenz) when x and c are close.
  // Pass 1 shifts by x[0], so a constant row gets mean == x[0] exactly and
  // then x - mean == 0, i.e. the output is exactly beta.
  double s1, s2;
  shifted_sums(x, n, x[0], false, &s1, &s2);
  const double mean = static_cast<double>(x[0]) + s1 / static_cast<double>(n);
  const float mean_f = to_float(mean);
  // Pass 2 around the float mean; `delta` corrects for mean_f's rounding
  // (corrected two-pass algorithm). Biased variance like PyTorch.
  shifted_sums(x, n, mean_f, true, &s1, &s2);
  const double delta = s1 / static_cast<double>(n);
  double var = s2 / static_cast<double>(n) - delta * delta;
  if (var < 0.0) var = 0.0;  // rounding; NaN stays NaN
  const double rstd = 1.0 / sqrt_d(var + static_cast<double>(eps));
  // y = (x - mean_f - delta) * rstd = (x - mean_f) * rstd + shift.
  const float rstd_f = to_float(rstd);
  const float shift = to_float(-delta * rstd);
  if (g && b) {
    ln_apply<true, true>(x, g, b, y, n, mean_f, rstd_f, shift);
  } else if (g) {
    ln_apply<true, false>(x, g, b, y, n, mean_f, rstd_f, shift);
  } else if (b) {
    ln_apply<false, true>(x, g, b, y, n, mean_f, rstd_f, shift);
  } else {
    ln_apply<false, false>(x, g, b, y, n, mean_f, rstd_f, shift);
  }
}

}  // namespace

void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) softmax_row(x + r * cols, y + r * cols, cols);
}

void layer_norm_rows(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t cols,
                     float eps) {
  for (int64_t r = 0; r < rows; ++r) layer_norm_row(x + r * cols, gamma, beta, y + r * cols, cols, eps);
}

void relu(const float* x, float* y, int64_t n) {
  map_unary(x, y, n, [](V v) { return vrelu(v); });
}

void gelu(const float* x, float* y, int64_t n, bool tanh_approx) {
  if (tanh_approx) {
    map_unary(x, y, n, [](V v) { return vgelu_tanh(v); });
  } else {
    map_unary(x, y, n, [](V v) { return vgelu_erf(v); });
  }
}

void binary_row(BinaryOp op, const float* a, int64_t a_inc, const float* b, int64_t b_inc, float* y, int64_t n) {
  switch (op) {
    case BinaryOp::Add:
      map_binary(a, a_inc, b, b_inc, y, n, [](V u, V v) { return add(u, v); });
      break;
    case BinaryOp::Sub:
      map_binary(a, a_inc, b, b_inc, y, n, [](V u, V v) { return sub(u, v); });
      break;
    case BinaryOp::Mul:
      map_binary(a, a_inc, b, b_inc, y, n, [](V u, V v) { return mul(u, v); });
      break;
    case BinaryOp::Div:
      map_binary(a, a_inc, b, b_inc, y, n, [](V u, V v) { return div(u, v); });
      break;
  }
}

}  // namespace attnode::kernels::avx2
