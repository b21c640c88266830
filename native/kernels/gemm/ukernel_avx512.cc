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
constexpr int kActRelu = 1, kActGelu = 2, kActGeluTanh = 3;

#define ATTNODE_INLINE inline __attribute__((always_inline))

// exp(x), ~1 ulp on [-87, 88] (Cephes expf polynomial, two-constant ln2 reduction).
ATTNODE_INLINE __m512 exp_ps(__m512 x) {
  // max/min with the constant first so a NaN x propagates.
  x = _mm512_min_ps(_mm512_set1_ps(88.7f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  __m512 r2 = _mm512_mul_ps(r, r);
  p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  // scalef saturates to 0 / inf instead of wrapping the exponent field.
  return _mm512_scalef_ps(p, n);
}

// Exact-erf GELU 0.5 x (1 + erf(x / sqrt2)) written through erfc so that the
// negative tail keeps relative accuracy: erfc(z) = t exp(-z^2 + P(t)),
// t = 1 / (1 + z/2), |rel err| < 1.2e-7 (Numerical Recipes erfcc). z^2 = x^2/2
// is split into hi + lo with an FMA so exp's argument carries no rounding of z^2.
ATTNODE_INLINE __m512 gelu_ps(__m512 x) {
  __m512 ax = _mm512_abs_ps(x);
  __m512 z = _mm512_mul_ps(ax, _mm512_set1_ps(0.70710678118654752f));
  __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(z, _mm512_set1_ps(0.5f), _mm512_set1_ps(1.0f)));
  __m512 p = _mm512_set1_ps(0.17087277f);
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.82215223f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.48851587f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.13520398f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.27886807f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.18628806f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.09678418f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.37409196f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.00002368f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.26551223f));
  __m512 xx = _mm512_mul_ps(x, x);
  __m512 hi = _mm512_mul_ps(xx, _mm512_set1_ps(0.5f));
  __m512 lo = _mm512_mul_ps(_mm512_fmsub_ps(x, x, xx), _mm512_set1_ps(0.5f));
  __m512 erfc =
      _mm512_mul_ps(t, _mm512_mul_ps(exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), hi)), exp_ps(_mm512_sub_ps(p, lo))));
  __m512 half_x_erfc = _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)), erfc);
  // x >= 0: x (1 - erfc/2); x < 0: x erfc / 2.
  __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
  return _mm512_mask_mov_ps(_mm512_sub_ps(x, half_x_erfc), neg, half_x_erfc);
}

// -2u = -2 sqrt(2/pi) (x + 0.044715 x^3) evaluated in double and split into
// float hi + lo: for x << 0 the exponent reaches ~100, where one float
// rounding of it is already a 1e-5 relative error of exp.
ATTNODE_INLINE __m512d neg2u_pd(__m256 xf) {
  const __m512d c1 = _mm512_set1_pd(-2.0 * 0.7978845608028654);
  const __m512d c2 = _mm512_set1_pd(-2.0 * 0.7978845608028654 * 0.044715);
  __m512d x = _mm512_cvtps_pd(xf);
  return _mm512_mul_pd(x, _mm512_fmadd_pd(_mm512_mul_pd(x, x), c2, c1));
}

// tanh-GELU as x * sigmoid(2u) = x / (1 + exp(-2u)): same function, no
// cancellation in 1 + tanh(u) for x << 0.
ATTNODE_INLINE __m512 gelu_tanh_ps(__m512 x) {
  __m512d a0 = neg2u_pd(_mm512_castps512_ps256(x));
  __m512d a1 = neg2u_pd(_mm512_extractf32x8_ps(x, 1));
  __m256 h0 = _mm512_cvtpd_ps(a0), h1 = _mm512_cvtpd_ps(a1);
  __m256 l0 = _mm512_cvtpd_ps(_mm512_sub_pd(a0, _mm512_cvtps_pd(h0)));
  __m256 l1 = _mm512_cvtpd_ps(_mm512_sub_pd(a1, _mm512_cvtps_pd(h1)));
  __m512 hi = _mm512_insertf32x8(_mm512_castps256_ps512(h0), h1, 1);
  __m512 lo = _mm512_insertf32x8(_mm512_castps256_ps512(l0), l1, 1);
  __m512 e = _mm512_fmadd_ps(exp_ps(hi), lo, exp_ps(hi));
  return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

ATTNODE_INLINE __m512 activate(__m512 v, int act) {
  switch (act) {
    case kActRelu:
      return _mm512_max_ps(v, _mm512_setzero_ps());
    case kActGelu:
      return gelu_ps(v);
    case kActGeluTanh:
      return gelu_tanh_ps(v);
    default:
      return v;
  }
}

ATTNODE_INLINE __mmask16 tail_mask(int n) {
  return n >= 16 ? static_cast<__mmask16>(0xffff) : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1);
}

ATTNODE_INLINE void store_vec(float* c, const float* bias, __m512 acc, __mmask16 m, const Epilogue* ep) {
  __m512 v = _mm512_mul_ps(acc, _mm512_set1_ps(ep->alpha));
  if (ep->beta != 0.0f) v = _mm512_fmadd_ps(_mm512_set1_ps(ep->beta), _mm512_maskz_loadu_ps(m, c), v);
  if (bias != nullptr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias));
  if (ep->act != 0) v = activate(v, ep->act);
  _mm512_mask_storeu_ps(c, m, v);
}

// Prefetch distance in k-steps for the B stream (B panels live in L2; the A
// panel is small and stays in L1 across the jr loop).
constexpr int kPfB = 8;
// Packing reads matrix rows straight from L3/DRAM; floats ahead to prefetch.
constexpr int kPfPack = 128;

void kernel_8x48(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int m, int n, const Epilogue* ep) {
  __m512 acc[kMR][3];
#pragma GCC unroll 8
  for (int r = 0; r < kMR; ++r) {
    acc[r][0] = _mm512_setzero_ps();
    acc[r][1] = _mm512_setzero_ps();
    acc[r][2] = _mm512_setzero_ps();
  }
  // C is touched only after the k loop; start pulling it in now.
  for (int r = 0; r < m; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 16), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 32), _MM_HINT_T0);
  }
  int64_t k = 0;
  for (; k + 2 <= kc; k += 2) {
#pragma GCC unroll 2
    for (int u = 0; u < 2; ++u) {
      _mm_prefetch(reinterpret_cast<const char*>(b + kPfB * kNR + 16 * u), _MM_HINT_T0);
      __m512 b0 = _mm512_load_ps(b);
      __m512 b1 = _mm512_load_ps(b + 16);
      __m512 b2 = _mm512_load_ps(b + 32);
#pragma GCC unroll 8
      for (int r = 0; r < kMR; ++r) {
        __m512 av = _mm512_set1_ps(a[r]);
        acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        acc[r][2] = _mm512_fmadd_ps(av, b2, acc[r][2]);
      }
      a += kMR;
      b += kNR;
    }
    _mm_prefetch(reinterpret_cast<const char*>(b + kPfB * kNR - 64), _MM_HINT_T0);
  }
  for (; k < kc; ++k) {
    __m512 b0 = _mm512_load_ps(b);
    __m512 b1 = _mm512_load_ps(b + 16);
    __m512 b2 = _mm512_load_ps(b + 32);
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r) {
      __m512 av = _mm512_set1_ps(a[r]);
      acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(av, b2, acc[r][2]);
    }
    a += kMR;
    b += kNR;
  }

  const __mmask16 m0 = tail_mask(n), m1 = tail_mask(n - 16), m2 = tail_mask(n - 32);
  const bool plain = ep->bias == nullptr && ep->act == 0 && ep->alpha == 1.0f && n == kNR;
  if (plain && ep->beta == 0.0f) {
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r) {
      if (r < m) {
        float* cr = c + r * ldc;
        _mm512_storeu_ps(cr, acc[r][0]);
        _mm512_storeu_ps(cr + 16, acc[r][1]);
        _mm512_storeu_ps(cr + 32, acc[r][2]);
      }
    }
    return;
  }
  if (plain && ep->beta == 1.0f) {
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r) {
      if (r < m) {
        float* cr = c + r * ldc;
        _mm512_storeu_ps(cr, _mm512_add_ps(acc[r][0], _mm512_loadu_ps(cr)));
        _mm512_storeu_ps(cr + 16, _mm512_add_ps(acc[r][1], _mm512_loadu_ps(cr + 16)));
        _mm512_storeu_ps(cr + 32, _mm512_add_ps(acc[r][2], _mm512_loadu_ps(cr + 32)));
      }
    }
    return;
  }
  const float* bias = ep->bias;
  for (int r = 0; r < m; ++r) {
    float* cr = c + r * ldc;
    store_vec(cr, bias, acc[r][0], m0, ep);
    if (m1) store_vec(cr + 16, bias ? bias + 16 : nullptr, acc[r][1], m1, ep);
    if (m2) store_vec(cr + 32, bias ? bias + 32 : nullptr, acc[r][2], m2, ep);
  }
}

// In-register 16x16 transpose: r[i] = row i in, r[j] = column j out.
ATTNODE_INLINE void transpose16(__m512 r[16]) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) {
    t[q + 0] = _mm512_shuffle_f32x4(r[q], r[4 + q], 0x88);
    t[q + 4] = _mm512_shuffle_f32x4(r[q], r[4 + q], 0xDD);
    t[q + 8] = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0x88);
    t[q + 12] = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0xDD);
  }
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) {
    r[q + 0] = _mm512_shuffle_f32x4(t[q], t[q + 8], 0x88);
    r[q + 8] = _mm512_shuffle_f32x4(t[q], t[q + 8], 0xDD);
    r[q + 4] = _mm512_shuffle_f32x4(t[q + 4], t[q + 12], 0x88);
    r[q + 12] = _mm512_shuffle_f32x4(t[q + 4], t[q + 12], 0xDD);
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

}  // namespace

extern const IsaKernels kAvx512Kernels = {kMR, kNR, kernel_8x48, pack_a, pack_b, gemv};

}  // namespace attnode::kernels::gemm_detail
