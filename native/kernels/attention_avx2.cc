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

// ----------------------------------------------------------------- algorithm
// (textually identical in attention_avx512.cc, attention_avx2.cc and
// attention_portable.cc; only the wrappers above differ)
//
// Scores are kept transposed, st[key][query] (kBk x kBq), so that the online
// softmax runs down the key axis with vertical vector ops over the queries
// of the tile (no horizontal reductions), and the score micro-kernel needs
// only the query tile transposed (once per tile, not per key block).

constexpr int64_t kBq = kAttnQueryTile;
constexpr int64_t kBk = kAttnKeyBlock;
constexpr int kQV = static_cast<int>(kBq / W);  // vectors across a query tile
constexpr int kKV = static_cast<int>(kBk / W);  // vectors across a key block
constexpr float kNegInf = -__builtin_huge_valf();

inline int64_t round_up_16(int64_t n) { return (n + 15) / 16 * 16; }

// Addressing of one (batch, head) slice.
struct Slice {
  const float* q;
  const float* k;
  const float* v;
  float* out;
  int64_t qs, ks, vs, os;  // position strides
};

// qt[d * kBq + ii] = q[i0 + ii][d]; lanes nq..kBq-1 are zero (their scores
// are computed and ignored).
inline void transpose_queries(const Slice& sl, int64_t dk, int64_t i0, int64_t nq, float* qt) {
  for (int64_t ii = 0; ii < kBq; ++ii) {
    if (ii < nq) {
      const float* qr = sl.q + (i0 + ii) * sl.qs;
      for (int64_t d = 0; d < dk; ++d) qt[d * kBq + ii] = qr[d];
    } else {
      for (int64_t d = 0; d < dk; ++d) qt[d * kBq + ii] = 0.0f;
    }
  }
}

// st[r][0..kBq) = scale * k_r . q for R keys: R x kQV accumulators, kQV
// loads of qt and R broadcasts per d. The constant-trip loops are
// force-unrolled so the accumulators stay in registers (GCC -O2 would keep
// them in memory).
template <int R>
inline void score_keys(const float* const* kr, const float* qt, int64_t dk, float scale, float* sc) {
  V c[R][kQV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 32
    for (int t = 0; t < kQV; ++t) c[r][t] = set1(0.0f);
  for (int64_t d = 0; d < dk; ++d) {
    V qv[kQV];
#pragma GCC unroll 32
    for (int t = 0; t < kQV; ++t) qv[t] = ld(qt + d * kBq + t * W);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const V kb = set1(kr[r][d]);
#pragma GCC unroll 32
      for (int t = 0; t < kQV; ++t) c[r][t] = fma(kb, qv[t], c[r][t]);
    }
  }
  const V vs = set1(scale);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 32
    for (int t = 0; t < kQV; ++t) st(sc + r * kBq + t * W, mul(c[r][t], vs));
}

// Applies causal and user masks to the scores of query i against keys
// [j0, j0 + nk), found at sr[jj * stride].
inline void mask_row(const AttentionParams& p, int64_t b, int64_t h, int64_t i, int64_t j0, int64_t nk, float* sr,
                     int64_t stride) {
  if (p.causal) {
    // Key j is hidden from query i when j > i, i.e. jj > i - j0.
    for (int64_t jj = (i - j0 + 1 > 0 ? i - j0 + 1 : 0); jj < nk; ++jj) sr[jj * stride] = kNegInf;
  }
  for (int mi = 0; mi < p.num_masks; ++mi) {
    const AttentionMask& m = p.masks[mi];
    const int64_t base = b * m.strides[0] + h * m.strides[1] + i * m.strides[2] + j0 * m.strides[3];
    const int64_t s3 = m.strides[3];
    if (m.f32) {
      for (int64_t jj = 0; jj < nk; ++jj) sr[jj * stride] += m.f32[base + jj * s3];
    } else if (m.u8) {
      for (int64_t jj = 0; jj < nk; ++jj)
        if (m.u8[base + jj * s3]) sr[jj * stride] = kNegInf;
    }
  }
}

// Transposed scores of the tile's queries against keys [j0, j0 + nk), with
// causal and user masks applied (-inf = excluded).
inline void block_scores(const AttentionParams& p, const Slice& sl, int64_t b, int64_t h, int64_t i0, int64_t nq,
                         int64_t j0, int64_t nk, const float* qt, float* sc) {
  const float* kr[kR];
  int64_t jj = 0;
  for (; jj + kR <= nk; jj += kR) {
    for (int r = 0; r < kR; ++r) kr[r] = sl.k + (j0 + jj + r) * sl.ks;
    score_keys<kR>(kr, qt, p.dk, p.scale, sc + jj * kBq);
  }
  for (; jj < nk; ++jj) {
    kr[0] = sl.k + (j0 + jj) * sl.ks;
    score_keys<1>(kr, qt, p.dk, p.scale, sc + jj * kBq);
  }
  for (int64_t ii = 0; ii < nq; ++ii) mask_row(p, b, h, i0 + ii, j0, nk, sc + ii, kBq);
}

// acc_r[0..dv) += sum_j prob(r, j) * v[j0 + j] for NR rows r at once, with
// prob(r, j) = pr[r * prs + j * pjs]. Sharing each v load between rows and
// keeping NR x 4 independent FMA chains is what makes this loop run near
// FMA throughput. acc rows are padded to 16 floats (stride acs); v is read
// with tail masks (zero fill), so the padding stays 0.
template <int NR>
inline void accumulate_pv(const float* pr, int64_t prs, int64_t pjs, const Slice& sl, int64_t j0, int64_t nk,
                          int64_t dv, float* acc, int64_t acs) {
  const float* vb = sl.v + j0 * sl.vs;
  int64_t c = 0;
  for (; c + 4 * W <= dv; c += 4 * W) {
    V a[NR][4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
      for (int t = 0; t < 4; ++t) a[r][t] = ld(acc + r * acs + c + t * W);
    for (int64_t j = 0; j < nk; ++j) {
      const float* vr = vb + j * sl.vs + c;
      V vv[4];
#pragma GCC unroll 4
      for (int t = 0; t < 4; ++t) vv[t] = ld(vr + t * W);
#pragma GCC unroll 4
      for (int r = 0; r < NR; ++r) {
        const V pb = set1(pr[r * prs + j * pjs]);
#pragma GCC unroll 4
        for (int t = 0; t < 4; ++t) a[r][t] = fma(pb, vv[t], a[r][t]);
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
      for (int t = 0; t < 4; ++t) st(acc + r * acs + c + t * W, a[r][t]);
  }
  for (; c < dv; c += W) {
    const bool full = c + W <= dv;
    const M m = tail_mask(full ? 1 : dv - c);
    V a[NR];
#pragma GCC unroll 4
    for (int r = 0; r < NR; ++r) a[r] = ld(acc + r * acs + c);
    for (int64_t j = 0; j < nk; ++j) {
      const float* vr = vb + j * sl.vs + c;
      const V vv = full ? ld(vr) : ld_tail(vr, m, set1(0.0f));
#pragma GCC unroll 4
      for (int r = 0; r < NR; ++r) a[r] = fma(set1(pr[r * prs + j * pjs]), vv, a[r]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; ++r) st(acc + r * acs + c, a[r]);
  }
}

inline void accumulate_pv_rows(const float* pr, int64_t prs, int64_t pjs, int64_t nrows, const Slice& sl, int64_t j0,
                               int64_t nk, int64_t dv, float* acc, int64_t acs) {
  int64_t r = 0;
  for (; r + 2 <= nrows; r += 2) accumulate_pv<2>(pr + r * prs, prs, pjs, sl, j0, nk, dv, acc + r * acs, acs);
  if (r < nrows) accumulate_pv<1>(pr + r * prs, prs, pjs, sl, j0, nk, dv, acc + r * acs, acs);
}

inline void store_row(float* o, const float* acc, int64_t dv, float scale) {
  const V vs = set1(scale);
  int64_t c = 0;
  for (; c + W <= dv; c += W) st(o + c, mul(ld(acc + c), vs));
  if (c < dv) st_tail(o + c, tail_mask(dv - c), mul(ld(acc + c), vs));
}

// Streaming (flash) path: online softmax over key blocks, never more than a
// kBk x kBq score tile.
void tile_streaming(const AttentionParams& p, const Slice& sl, int64_t b, int64_t h, int64_t i0, int64_t nq,
                    float* scratch) {
  const int64_t dvp = round_up_16(p.dv);
  float* sc = scratch;
  float* acc = sc + kBk * kBq;
  float* qt = acc + kBq * dvp;
  // Per query lane: running max m, running sum l, last rescale factor.
  float mrow[kBq], lrow[kBq], alpha[kBq];
  for (int64_t ii = 0; ii < kBq; ++ii) {
    mrow[ii] = kNegInf;
    lrow[ii] = 0.0f;
  }
  for (int64_t i = 0; i < nq * dvp; ++i) acc[i] = 0.0f;
  transpose_queries(sl, p.dk, i0, nq, qt);
  // Causal: the tile's last query sees keys < i0 + nq; later blocks are skipped.
  const int64_t j_end = p.causal ? (i0 + nq < p.lk ? i0 + nq : p.lk) : p.lk;
  for (int64_t j0 = 0; j0 < j_end; j0 += kBk) {
    const int64_t nk = j_end - j0 < kBk ? j_end - j0 : kBk;
    block_scores(p, sl, b, h, i0, nq, j0, nk, qt, sc);
#pragma GCC unroll 32
    for (int t = 0; t < kQV; ++t) {
      const V mo = ld(mrow + t * W);
      V mx = mo;
      for (int64_t jj = 0; jj < nk; ++jj) mx = vmax(mx, ld(sc + jj * kBq + t * W));
      // A lane that has seen only -inf so far is referenced to 0 instead:
      // exp(-inf - 0) = 0, where -inf - -inf would give NaN. NaN scores
      // still make their row NaN, through exp(NaN) in the sum.
      const V mu = neginf_to_zero(mx);
      const V al = vexp(sub(mo, mu));
      V sum = set1(0.0f);
      for (int64_t jj = 0; jj < nk; ++jj) {
        float* sp = sc + jj * kBq + t * W;
        const V e = vexp(sub(ld(sp), mu));
        st(sp, e);
        sum = add(sum, e);
      }
      st(lrow + t * W, fma(ld(lrow + t * W), al, sum));
      st(mrow + t * W, mx);
      st(alpha + t * W, al);
    }
    for (int64_t ii = 0; ii < nq; ++ii) {
      if (alpha[ii] == 1.0f) continue;
      float* ar = acc + ii * dvp;
      const V va = set1(alpha[ii]);
      for (int64_t c = 0; c < dvp; c += W) st(ar + c, mul(ld(ar + c), va));
    }
    accumulate_pv_rows(sc, 1, kBq, nq, sl, j0, nk, p.dv, acc, dvp);
  }
  for (int64_t ii = 0; ii < nq; ++ii) {
    // l == 0 (every key excluded, or lk == 0): NaN, like PyTorch.
    const float inv = lrow[ii] == 0.0f ? __builtin_nanf("") : 1.0f / lrow[ii];
    store_row(sl.out + (i0 + ii) * sl.os, acc + ii * dvp, p.dv, inv);
  }
}

// Few query rows (e.g. one decoding step): a 32-lane query tile would be
// mostly padding, so scores are dot products along d instead, and the
// online softmax runs along the keys of each row.
constexpr int64_t kSmallRows = 8;

inline float dot(const float* a, const float* b, int64_t n) {
  V s0 = set1(0.0f), s1 = s0;
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    s0 = fma(ld(a + i), ld(b + i), s0);
    s1 = fma(ld(a + i + W), ld(b + i + W), s1);
  }
  for (; i + W <= n; i += W) s0 = fma(ld(a + i), ld(b + i), s0);
  if (i < n) {
    const M m = tail_mask(n - i);
    s1 = fma(ld_tail(a + i, m, set1(0.0f)), ld_tail(b + i, m, set1(0.0f)), s1);
  }
  return hsum(add(s0, s1));
}

inline float row_max(const float* sr) {
  V mx = set1(kNegInf);
#pragma GCC unroll 64
  for (int t = 0; t < kKV; ++t) mx = vmax(mx, ld(sr + t * W));
  return hmax(mx);
}

float exp_block(float* sr, float m);

void rows_small(const AttentionParams& p, const Slice& sl, int64_t b, int64_t h, int64_t i0, int64_t nq,
                float* scratch) {
  const int64_t dvp = round_up_16(p.dv);
  float* sc = scratch;  // nq rows of kBk scores
  float* acc = sc + kBk * kBq;
  float mrow[kSmallRows], lrow[kSmallRows];
  for (int64_t ii = 0; ii < nq; ++ii) {
    mrow[ii] = kNegInf;
    lrow[ii] = 0.0f;
  }
  for (int64_t i = 0; i < nq * dvp; ++i) acc[i] = 0.0f;
  const int64_t j_end = p.causal ? (i0 + nq < p.lk ? i0 + nq : p.lk) : p.lk;
  for (int64_t j0 = 0; j0 < j_end; j0 += kBk) {
    const int64_t nk = j_end - j0 < kBk ? j_end - j0 : kBk;
    for (int64_t ii = 0; ii < nq; ++ii) {
      float* sr = sc + ii * kBk;
      const float* qr = sl.q + (i0 + ii) * sl.qs;
      for (int64_t jj = 0; jj < nk; ++jj) sr[jj] = dot(qr, sl.k + (j0 + jj) * sl.ks, p.dk) * p.scale;
      for (int64_t jj = nk; jj < kBk; ++jj) sr[jj] = kNegInf;
      mask_row(p, b, h, i0 + ii, j0, nk, sr, 1);
      const float bm = row_max(sr);
      const float m_new = bm > mrow[ii] ? bm : mrow[ii];
      if (m_new == kNegInf) {
        // Nothing visible yet: contributes nothing (and avoids -inf - -inf),
        // but NaN scores must still poison the row.
        for (int64_t jj = 0; jj < kBk; ++jj) {
          if (sr[jj] != sr[jj]) lrow[ii] = __builtin_nanf("");
          sr[jj] = 0.0f;
        }
        continue;
      }
      // A NaN bm fails both comparisons above; exp(NaN - m) then reaches the sum.
      float alpha_buf[W];
      st(alpha_buf, vexp(set1(mrow[ii] - m_new)));  // exp(-inf) = 0 for the first visible block
      const float alpha = alpha_buf[0];
      lrow[ii] = lrow[ii] * alpha + exp_block(sr, m_new);
      mrow[ii] = m_new;
      if (alpha != 1.0f) {
        float* ar = acc + ii * dvp;
        const V va = set1(alpha);
        for (int64_t c = 0; c < dvp; c += W) st(ar + c, mul(ld(ar + c), va));
      }
    }
    accumulate_pv_rows(sc, kBk, 1, nq, sl, j0, nk, p.dv, acc, dvp);
  }
  for (int64_t ii = 0; ii < nq; ++ii) {
    const float inv = lrow[ii] == 0.0f ? __builtin_nanf("") : 1.0f / lrow[ii];
    store_row(sl.out + (i0 + ii) * sl.os, acc + ii * dvp, p.dv, inv);
  }
}

// sr[0..kBk) = exp(sr - m), returns the sum.
float exp_block(float* sr, float m) {
  const V vm = set1(m);
  V sum = set1(0.0f);
#pragma GCC unroll 64
  for (int t = 0; t < kKV; ++t) {
    V e = vexp(sub(ld(sr + t * W), vm));
    st(sr + t * W, e);
    sum = add(sum, e);
  }
  return hsum(sum);
}

// Weights requested: the lq x lk matrix is an output anyway, so scores go
// straight into it, are normalised row by row, and then multiply v.
void tile_with_weights(const AttentionParams& p, const Slice& sl, int64_t b, int64_t h, int64_t i0, int64_t nq,
                       float* scratch) {
  const int64_t dvp = round_up_16(p.dv), lk = p.lk;
  float* sc = scratch;
  float* acc = sc + kBk * kBq;
  float* qt = acc + kBq * dvp;
  float* w0 = p.weights + ((b * p.heads + h) * p.lq + i0) * lk;
  transpose_queries(sl, p.dk, i0, nq, qt);
  const int64_t j_end = p.causal ? (i0 + nq < lk ? i0 + nq : lk) : lk;
  for (int64_t j0 = 0; j0 < j_end; j0 += kBk) {
    const int64_t nk = j_end - j0 < kBk ? j_end - j0 : kBk;
    block_scores(p, sl, b, h, i0, nq, j0, nk, qt, sc);
    for (int64_t ii = 0; ii < nq; ++ii)
      for (int64_t jj = 0; jj < nk; ++jj) w0[ii * lk + j0 + jj] = sc[jj * kBq + ii];
  }
  for (int64_t ii = 0; ii < nq; ++ii) {
    float* wr = w0 + ii * lk;
    for (int64_t j = j_end; j < lk; ++j) wr[j] = kNegInf;  // causally hidden -> 0 below
    float m = kNegInf;
    bool nan = false;
    for (int64_t j = 0; j < lk; ++j) {
      nan |= wr[j] != wr[j];
      m = wr[j] > m ? wr[j] : m;
    }
    if (m == kNegInf || nan) {
      // All excluded (or NaN scores): NaN weights, and NaN output below.
      for (int64_t j = 0; j < lk; ++j) wr[j] = __builtin_nanf("");
      continue;
    }
    float sum = 0.0f;
    for (int64_t j0 = 0; j0 < lk; j0 += kBk) {
      // Full-vector exp through the scratch row (tail padded with -inf).
      const int64_t nk = lk - j0 < kBk ? lk - j0 : kBk;
      for (int64_t jj = 0; jj < kBk; ++jj) sc[jj] = jj < nk ? wr[j0 + jj] : kNegInf;
      sum += exp_block(sc, m);
      for (int64_t jj = 0; jj < nk; ++jj) wr[j0 + jj] = sc[jj];
    }
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < lk; ++j) wr[j] *= inv;
  }
  for (int64_t i = 0; i < nq * dvp; ++i) acc[i] = 0.0f;
  for (int64_t j0 = 0; j0 < j_end; j0 += kBk) {
    const int64_t nk = j_end - j0 < kBk ? j_end - j0 : kBk;
    accumulate_pv_rows(w0 + j0, lk, 1, nq, sl, j0, nk, p.dv, acc, dvp);
  }
  // NaN weights make their output rows NaN through the products; lk == 0
  // has no products, so it is forced.
  for (int64_t ii = 0; ii < nq; ++ii)
    store_row(sl.out + (i0 + ii) * sl.os, acc + ii * dvp, p.dv, lk == 0 ? __builtin_nanf("") : 1.0f);
}

}  // namespace

void attention_tile(const AttentionParams& p, int64_t b, int64_t h, int64_t i0, int64_t i1, float* scratch) {
  Slice sl;
  sl.q = p.q + b * p.q_strides[0] + h * p.q_strides[1];
  sl.k = p.k + b * p.k_strides[0] + h * p.k_strides[1];
  sl.v = p.v + b * p.v_strides[0] + h * p.v_strides[1];
  sl.out = p.out + b * p.out_strides[0] + h * p.out_strides[1];
  sl.qs = p.q_strides[2];
  sl.ks = p.k_strides[2];
  sl.vs = p.v_strides[2];
  sl.os = p.out_strides[2];
  if (p.weights) {
    tile_with_weights(p, sl, b, h, i0, i1 - i0, scratch);
  } else if (i1 - i0 <= kSmallRows) {
    rows_small(p, sl, b, h, i0, i1 - i0, scratch);
  } else {
    tile_streaming(p, sl, b, h, i0, i1 - i0, scratch);
  }
}

}  // namespace attnode::kernels::avx2
