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

// The weights, few-rows and dispatch parts are the shared algorithm; the
// streaming path is this ISA's own register-blocked one, defined below.
#define ATTN_TILE_OWN_STREAMING 1
#include "attention_tile.inc"

namespace {

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

// This ISA's streaming path (declared by attention_tile.inc).
void tile_streaming(const AttentionParams& p, const Slice& sl, int64_t b, int64_t h, int64_t i0, int64_t nq,
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

}  // namespace
}  // namespace attnode::kernels::avx512
