// AVX-512 (F/BW/VL/DQ) + FMA attention tile kernel. See attention_isa.h.
//
// The target pragma comes before every include and this TU includes only
// always_inline intrinsics, <cstdint> and our declaration-only headers: an
// inline function emitted here would carry AVX-512 code that the linker could
// pick for baseline callers (ODR hazard). All helpers are in an anonymous
// namespace for the same reason.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma")
// GCC 12 false positives: the self-initialised `__Y = __Y` of
// _mm512_undefined_ps() inside the intrinsics trips -W(maybe-)uninitialized;
// __m512 values passed between internal helpers trip -Wpsabi (no ABI
// boundary is crossed).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wpsabi"

#include <immintrin.h>

#include <cstdint>

#include "attention_isa.h"

namespace attnode::kernels::avx512 {
namespace {

// ---------------------------------------------------------------- ISA wrapper
constexpr int64_t W = 16;  // floats per vector
constexpr int kR = 8;      // keys per score micro-tile: 8 keys x 2 vectors of queries = 16 accumulators
using V = __m512;
using M = __mmask16;

inline V ld(const float* p) { return _mm512_loadu_ps(p); }
inline void st(float* p, V v) { _mm512_storeu_ps(p, v); }
inline M tail_mask(int64_t n) { return static_cast<M>((1u << n) - 1u); }  // n in [1, W)
inline V ld_tail(const float* p, M m, V fill) { return _mm512_mask_loadu_ps(fill, m, p); }
inline void st_tail(float* p, M m, V v) { _mm512_mask_storeu_ps(p, m, v); }
inline V set1(float f) { return _mm512_set1_ps(f); }
inline V add(V a, V b) { return _mm512_add_ps(a, b); }
inline V sub(V a, V b) { return _mm512_sub_ps(a, b); }
inline V mul(V a, V b) { return _mm512_mul_ps(a, b); }
inline V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
inline V vmax(V a, V b) { return _mm512_max_ps(a, b); }  // NaN in either -> b
inline float hmax(V a) { return _mm512_reduce_max_ps(a); }
inline float hsum(V a) { return _mm512_reduce_add_ps(a); }
// -inf lanes -> 0, others (NaN included) unchanged.
inline V neginf_to_zero(V a) {
  return _mm512_mask_mov_ps(a, _mm512_cmp_ps_mask(a, set1(-__builtin_huge_valf()), _CMP_EQ_OQ), _mm512_setzero_ps());
}

// exp(x), Cephes range reduction + degree-6 polynomial (~1 ulp); scalef
// gives inf / denormals / 0 at the ends. Same as layer_ops_avx512.cc.
inline V vexp(V x) {
  x = _mm512_min_ps(set1(89.0f), _mm512_max_ps(set1(-104.0f), x));
  V n = _mm512_roundscale_ps(mul(x, set1(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  V r = _mm512_fnmadd_ps(n, set1(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, set1(-2.12194440e-4f), r);
  V p = set1(1.9875691500e-4f);
  p = fma(p, r, set1(1.3981999507e-3f));
  p = fma(p, r, set1(8.3334519073e-3f));
  p = fma(p, r, set1(4.1665795894e-2f));
  p = fma(p, r, set1(1.6666665459e-1f));
  p = fma(p, r, set1(5.0000001201e-1f));
  p = fma(p, mul(r, r), r);
  return _mm512_scalef_ps(add(p, set1(1.0f)), n);
}

// ----------------------------------------------------------------- algorithm
// (the weights and small-row paths follow attention_tile.inc, the AVX2 /
// portable algorithm; the streaming path below is this ISA's own. Sharing
// the common part through the .inc is a pending clean-up.)
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

// ------------------------------------------------- register-blocked flash path
// One task = up to kAttnMaxTaskRows queries of one (batch, head). Per key
// block of kBk = 64 keys, K is packed transposed once (kt[d][64], shared by
// every query of the task from L1); then each strip of kStrip = 6 queries
// runs, entirely in registers:
//   S (6 x 64, 24 zmm) = Q_strip · K_blockᵀ    broadcast q[r][d] x 4 vectors of kt[d]
//   masks / causal / tail on S, row max, P = exp(S - m), row sums (vectors)
//   O (6 x 64 columns of v, 24 zmm) = alpha · O + P · V_block   broadcast p[r][j] x 4 vectors of v[j]
// O lives in the task's scratch between key blocks (one load and store per
// strip and block, with the online-softmax rescale folded into the load). Each
// query row goes through exactly the same operations whatever the strip or
// task it lands in, so the results do not depend on the work split.

constexpr int kStrip = 6;

// Per-task addressing and scratch of the fast path.
struct Fast {
  const AttentionParams* p;
  Slice sl;
  int64_t b, h, dvp;
  float* pbuf;  // kStrip x kBk probabilities of the current strip
  float* sbuf;  // kStrip x kBk scores, for the user masks
  float* o;     // nq x dvp output accumulators
  float* lv;    // nq x W partial row sums (reduced at the end)
  float* m;     // nq running maxima
  float* kt;    // dk x kBk transposed key block
};

// 16 x 16 transpose of r[0..16) in place (unpack, shuffle, two 128-bit lane
// shuffles: 64 shuffles).
inline void transpose16(V r[16]) {
  V t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  V u[4][4];  // u[g][c]: lane k holds column 4k + c of rows 4g..4g+3
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {
    u[g][0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[g][1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    u[g][2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[g][3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const V x = _mm512_shuffle_f32x4(u[0][c], u[1][c], 0x88), y = _mm512_shuffle_f32x4(u[0][c], u[1][c], 0xDD);
    const V z = _mm512_shuffle_f32x4(u[2][c], u[3][c], 0x88), w = _mm512_shuffle_f32x4(u[2][c], u[3][c], 0xDD);
    r[c] = _mm512_shuffle_f32x4(x, z, 0x88);       // column c
    r[8 + c] = _mm512_shuffle_f32x4(x, z, 0xDD);   // column 8 + c
    r[4 + c] = _mm512_shuffle_f32x4(y, w, 0x88);   // column 4 + c
    r[12 + c] = _mm512_shuffle_f32x4(y, w, 0xDD);  // column 12 + c
  }
}

// kt[d * kBk + jj] = k[j0 + jj][d] for jj < nk, 0 for nk <= jj < kBk.
void pack_keys(const Fast& f, int64_t j0, int64_t nk) {
  const int64_t dk = f.p->dk;
  for (int64_t g = 0; g < kBk; g += W) {
    for (int64_t dc = 0; dc < dk; dc += W) {
      const int64_t nd = dk - dc < W ? dk - dc : W;
      const M dm = nd == W ? static_cast<M>(0xffff) : tail_mask(nd);
      V r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i)
        r[i] = g + i < nk ? _mm512_maskz_loadu_ps(dm, f.sl.k + (j0 + g + i) * f.sl.ks + dc) : _mm512_setzero_ps();
      transpose16(r);
      for (int64_t c = 0; c < nd; ++c) st(f.kt + (dc + c) * kBk + g, r[c]);
    }
  }
}

// User masks (in order) on the row-layout scores sr[0..nk) of query i.
void apply_masks_row(const AttentionParams& p, int64_t b, int64_t h, int64_t i, int64_t j0, int64_t nk, float* sr) {
  for (int mi = 0; mi < p.num_masks; ++mi) {
    const AttentionMask& m = p.masks[mi];
    const int64_t base = b * m.strides[0] + h * m.strides[1] + i * m.strides[2] + j0 * m.strides[3];
    const int64_t s3 = m.strides[3];
    if (m.f32) {
      if (s3 == 1) {
        const float* mr = m.f32 + base;
        for (int64_t jj = 0; jj < nk; jj += W) {
          const M km = nk - jj >= W ? static_cast<M>(0xffff) : tail_mask(nk - jj);
          st_tail(sr + jj, km, add(ld(sr + jj), _mm512_maskz_loadu_ps(km, mr + jj)));
        }
      } else {
        for (int64_t jj = 0; jj < nk; ++jj) sr[jj] += m.f32[base + jj * s3];
      }
    } else if (m.u8) {
      if (s3 == 1) {
        const uint8_t* mr = m.u8 + base;
        for (int64_t jj = 0; jj < nk; jj += W) {
          const M km = nk - jj >= W ? static_cast<M>(0xffff) : tail_mask(nk - jj);
          const __m128i bytes = _mm_maskz_loadu_epi8(km, mr + jj);
          const M ex = _mm512_test_epi32_mask(_mm512_cvtepu8_epi32(bytes), _mm512_set1_epi32(0xff));
          st_tail(sr + jj, ex, set1(kNegInf));
        }
      } else {
        for (int64_t jj = 0; jj < nk; ++jj)
          if (m.u8[base + jj * s3]) sr[jj] = kNegInf;
      }
    }
  }
}

// 2^t for t <= 0 (and NaN): t = n + f with |f| <= 1/2, 2^f by the Cephes
// exp2f polynomial (degree 6, ~1.7e-7 relative), scaled by 2^n with scalef.
// t below -160 (including -inf) gives exactly 0; NaN stays NaN (max keeps
// its second operand when one is NaN).
inline V vexp2(V t) {
  t = _mm512_max_ps(set1(-160.0f), t);
  const V n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const V f = sub(t, n);
  V p = set1(1.535336188319500e-4f);
  p = fma(p, f, set1(1.339887440266574e-3f));
  p = fma(p, f, set1(9.618437357674640e-3f));
  p = fma(p, f, set1(5.550332471162809e-2f));
  p = fma(p, f, set1(2.402264791363012e-1f));
  p = fma(p, f, set1(6.931472028550421e-1f));
  p = fma(p, f, set1(1.0f));
  return _mm512_scalef_ps(p, n);
}
constexpr float kLog2e = 1.44269504088896341f;

// One strip of R (<= kStrip) queries [i0, i0 + R) against key block [j0, j0 + nk).
// `kv_end`: keys at or past j0 + kv_end are hidden from every row of the strip
// (causal), so P·V stops there.
template <int R>
void strip_block(const Fast& f, int64_t r0, int64_t i0, int64_t j0, int64_t nk) {
  const AttentionParams& p = *f.p;
  const int64_t dk = p.dk;
  const float* qr[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) qr[r] = f.sl.q + (i0 + r) * f.sl.qs;
  // ---- S = Q · Kᵀ
  V s[R][kKV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < kKV; ++t) s[r][t] = _mm512_setzero_ps();
  const float* kt = f.kt;
  for (int64_t d = 0; d < dk; ++d, kt += kBk) {
    V kv[kKV];
#pragma GCC unroll 4
    for (int t = 0; t < kKV; ++t) kv[t] = ld(kt + t * W);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const V qb = set1(qr[r][d]);
#pragma GCC unroll 4
      for (int t = 0; t < kKV; ++t) s[r][t] = fma(qb, kv[t], s[r][t]);
    }
  }
  const V vscale = set1(p.scale);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < kKV; ++t) s[r][t] = mul(s[r][t], vscale);
  // ---- exclusions: keys past the block end, causal (j > i), user masks
  const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const bool causal_cut = p.causal && j0 + nk - 1 > i0;  // some key of the block is hidden from row 0
  if (nk < kBk || causal_cut) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      // Visible keys of row r: jj < lim.
      int64_t lim = nk;
      if (p.causal && i0 + r - j0 + 1 < lim) lim = i0 + r - j0 + 1;
#pragma GCC unroll 4
      for (int t = 0; t < kKV; ++t) {
        const int64_t rem = lim - t * W;
        const int32_t cut = static_cast<int32_t>(rem < 0 ? 0 : rem > W ? W : rem);
        const M hide = _mm512_cmpge_epi32_mask(iota, _mm512_set1_epi32(cut));
        s[r][t] = _mm512_mask_mov_ps(s[r][t], hide, set1(kNegInf));
      }
    }
  }
  if (p.num_masks > 0) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int t = 0; t < kKV; ++t) st(f.sbuf + r * kBk + t * W, s[r][t]);
      apply_masks_row(p, f.b, f.h, i0 + r, j0, nk, f.sbuf + r * kBk);
#pragma GCC unroll 4
      for (int t = 0; t < kKV; ++t) s[r][t] = ld(f.sbuf + r * kBk + t * W);
    }
  }
  // ---- online softmax
  float alpha[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const float bm = hmax(vmax(vmax(s[r][0], s[r][1]), vmax(s[r][2], s[r][3])));
    const float mo = f.m[r0 + r];
    const float mn = bm > mo ? bm : mo;  // a NaN bm keeps mo; exp(NaN - m) poisons the sum below
    // A row that has seen only -inf is referenced to 0: exp(-inf - 0) = 0
    // where -inf - -inf would give NaN.
    // exp(s - m) = 2^(s·log2e - c) with c = m·log2e rounded once, and the
    // rescale of the earlier blocks 2^(c_old - c) uses the same rounded c
    // values, so both factors agree exactly on the reference point.
    const float mu = mn == kNegInf ? 0.0f : mn;
    const float c = mu * kLog2e;
    alpha[r] = mn == mo ? 1.0f : _mm_cvtss_f32(_mm512_castps512_ps128(vexp2(set1(mo * kLog2e - c))));
    f.m[r0 + r] = mn;
    const V vc = set1(c), vl = set1(kLog2e);
#pragma GCC unroll 4
    for (int t = 0; t < kKV; ++t) s[r][t] = vexp2(_mm512_fmsub_ps(s[r][t], vl, vc));
    const V sum = add(add(s[r][0], s[r][1]), add(s[r][2], s[r][3]));
    float* lr = f.lv + (r0 + r) * W;
    st(lr, fma(ld(lr), set1(alpha[r]), sum));
#pragma GCC unroll 4
    for (int t = 0; t < kKV; ++t) st(f.pbuf + r * kBk + t * W, s[r][t]);
  }
  // ---- O = alpha · O + P · V
  int64_t kv_end = nk;
  if (p.causal && i0 + R - j0 < kv_end) kv_end = i0 + R - j0;  // keys > last row's i carry P = 0
  const int64_t dv = p.dv;
  const float* vb = f.sl.v + j0 * f.sl.vs;
  for (int64_t c = 0; c < dv; c += kKV * W) {
    const int64_t ncol = dv - c < kKV * W ? dv - c : kKV * W;
    const int nvec = static_cast<int>((ncol + W - 1) / W);
    const M lm = ncol % W == 0 ? static_cast<M>(0xffff) : tail_mask(ncol % W);
    if (nvec == kKV) {
      V o[R][kKV];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const V va = set1(alpha[r]);
        const float* orow = f.o + (r0 + r) * f.dvp + c;
#pragma GCC unroll 4
        for (int t = 0; t < kKV; ++t) o[r][t] = mul(ld(orow + t * W), va);
      }
      const float* vr = vb + c;
      for (int64_t j = 0; j < kv_end; ++j, vr += f.sl.vs) {
        V vv[kKV];
#pragma GCC unroll 4
        for (int t = 0; t < kKV - 1; ++t) vv[t] = ld(vr + t * W);
        vv[kKV - 1] = _mm512_maskz_loadu_ps(lm, vr + (kKV - 1) * W);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const V pb = set1(f.pbuf[r * kBk + j]);
#pragma GCC unroll 4
          for (int t = 0; t < kKV; ++t) o[r][t] = fma(pb, vv[t], o[r][t]);
        }
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        float* orow = f.o + (r0 + r) * f.dvp + c;
#pragma GCC unroll 4
        for (int t = 0; t < kKV; ++t) st(orow + t * W, o[r][t]);
      }
    } else {
      // Column tail (dv % 64): one vector at a time.
      for (int t = 0; t < nvec; ++t) {
        const M m = t == nvec - 1 ? lm : static_cast<M>(0xffff);
        V o[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) o[r] = mul(ld(f.o + (r0 + r) * f.dvp + c + t * W), set1(alpha[r]));
        const float* vr = vb + c + t * W;
        for (int64_t j = 0; j < kv_end; ++j, vr += f.sl.vs) {
          const V vv = _mm512_maskz_loadu_ps(m, vr);
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) o[r] = fma(set1(f.pbuf[r * kBk + j]), vv, o[r]);
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) st(f.o + (r0 + r) * f.dvp + c + t * W, o[r]);
      }
    }
  }
}

void strip_block_n(const Fast& f, int n, int64_t r0, int64_t i0, int64_t j0, int64_t nk) {
  switch (n) {
    case 6:
      return strip_block<6>(f, r0, i0, j0, nk);
    case 5:
      return strip_block<5>(f, r0, i0, j0, nk);
    case 4:
      return strip_block<4>(f, r0, i0, j0, nk);
    case 3:
      return strip_block<3>(f, r0, i0, j0, nk);
    case 2:
      return strip_block<2>(f, r0, i0, j0, nk);
    default:
      return strip_block<1>(f, r0, i0, j0, nk);
  }
}

constexpr auto kPfHint = _MM_HINT_T0;

void tile_fast(const AttentionParams& p, const Slice& sl, int64_t b, int64_t h, int64_t i0, int64_t nq,
               float* scratch) {
  Fast f;
  f.p = &p;
  f.sl = sl;
  f.b = b;
  f.h = h;
  f.dvp = round_up_16(p.dv);
  f.pbuf = scratch;
  f.sbuf = scratch + kStrip * kBk;
  f.o = scratch + kBk * kBq;
  f.lv = f.o + nq * f.dvp;
  f.m = f.lv + nq * W;
  f.kt = f.m + round_up_16(nq);
  for (int64_t i = 0; i < nq * f.dvp; ++i) f.o[i] = 0.0f;
  for (int64_t i = 0; i < nq * W; ++i) f.lv[i] = 0.0f;
  for (int64_t i = 0; i < nq; ++i) f.m[i] = kNegInf;
  // Causal: the tile's last query sees keys < i0 + nq; later blocks are skipped.
  const int64_t j_end = p.causal ? (i0 + nq < p.lk ? i0 + nq : p.lk) : p.lk;
  // The first block's v rows load while its keys are packed.
  for (int64_t j = 0; j < (j_end < kBk ? j_end : kBk); ++j) {
    const char* vr = reinterpret_cast<const char*>(sl.v + j * sl.vs);
    for (int64_t c = 0; c < p.dv * 4; c += 64) _mm_prefetch(vr + c, kPfHint);
  }
  for (int64_t j0 = 0; j0 < j_end; j0 += kBk) {
    const int64_t nk = j_end - j0 < kBk ? j_end - j0 : kBk;
    pack_keys(f, j0, nk);
    // While the strips run, pull the next block's k and v rows (strided: in
    // a packed [L, N, 3E] projection every row is on its own page) toward
    // the cache, a few rows per strip.
    const int64_t jn = j0 + kBk, nkn = j_end - jn < kBk ? j_end - jn : kBk;
    const int64_t nstrips = (nq + kStrip - 1) / kStrip;
    const int64_t per = nkn > 0 ? (nkn + nstrips - 1) / nstrips : 0;
    for (int64_t r0 = 0, pf = 0; r0 < nq; r0 += kStrip, pf += per) {
      for (int64_t j = pf; j < pf + per && j < nkn; ++j) {
        const char* kr = reinterpret_cast<const char*>(sl.k + (jn + j) * sl.ks);
        const char* vr = reinterpret_cast<const char*>(sl.v + (jn + j) * sl.vs);
        for (int64_t c = 0; c < p.dk * 4; c += 64) _mm_prefetch(kr + c, kPfHint);
        for (int64_t c = 0; c < p.dv * 4; c += 64) _mm_prefetch(vr + c, kPfHint);
      }
      const int64_t n = nq - r0 < kStrip ? nq - r0 : kStrip;
      // Causal: a strip whose rows all precede the block sees none of it.
      if (p.causal && i0 + r0 + n - 1 < j0) continue;
      strip_block_n(f, static_cast<int>(n), r0, i0 + r0, j0, nk);
    }
  }
  for (int64_t ii = 0; ii < nq; ++ii) {
    // l == 0 (every key excluded, or lk == 0): NaN, like PyTorch.
    const float l = hsum(ld(f.lv + ii * W));
    const float inv = l == 0.0f ? __builtin_nanf("") : 1.0f / l;
    store_row(sl.out + (i0 + ii) * sl.os, f.o + ii * f.dvp, p.dv, inv);
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
    for (int64_t c0 = i0; c0 < i1; c0 += kBq)
      tile_with_weights(p, sl, b, h, c0, (i1 - c0 < kBq ? i1 - c0 : kBq), scratch);
  } else if (i1 - i0 <= kSmallRows) {
    rows_small(p, sl, b, h, i0, i1 - i0, scratch);
  } else {
    tile_fast(p, sl, b, h, i0, i1 - i0, scratch);
  }
}

}  // namespace attnode::kernels::avx512
