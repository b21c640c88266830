// AVX-512 + AVX512-BF16 attention tile kernel (AttentionPrecision::BFloat16).
// See attention_isa.h for the packed K/V layout.
//
// The same register-blocked flash algorithm as attention_avx512.cc, with the
// two products on vdpbf16ps (16 lanes x 2 bf16 products per instruction,
// float32 accumulation):
//   S (6 x 64) = Q_strip · K_blockᵀ: broadcast the bf16 pair (q[2w], q[2w+1])
//     of a row against 4 vectors of packed key pairs, dk/2 steps instead of dk;
//   P = exp(S - m) in float32 (attention_avx512_strip.inc, identical to the
//     fp32 path), rounded to bf16 pairs of adjacent keys;
//   O (6 x 64 columns) += P · V_block: broadcast the pair (p[2j], p[2j+1])
//     against 4 vectors of packed value pairs, one step per key pair.
// K and V are packed to bf16 once per call (pack_kv), not per query task:
// at 4096 keys each block is read by 43 tasks of its head, and the packed
// copy is half the bytes of the float32 rows.
//
// Only <immintrin.h>/<cstdint>, the SIMD layer (internal linkage) and
// declaration-only headers, helpers in an anonymous namespace: nothing compiled here for AVX512-BF16 can be merged
// into code that runs on other CPUs (ODR; test/isa-isolation.test.ts).
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")
// GCC 12 false positives (see attention_avx512.cc).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wpsabi"

#include <immintrin.h>

#include <cstdint>

#include "../simd/simd_avx512.h"
#include "attention_isa.h"

namespace attnode::kernels::avx512_bf16 {
namespace {

using namespace simd::avx512;

#include "attention_avx512_common.inc"

// The weights and few-rows paths are the shared float32 ones (the frontend
// only sends calls without weights and with more than kAttnSmallRows
// queries here, see effective_precision); the streaming path is below.
#define ATTN_TILE_OWN_STREAMING 1
#include "attention_tile.inc"

namespace {

#include "attention_avx512_strip.inc"

// The bf16 vector types are vectors of 16-bit elements (short in GCC 12,
// __bf16 later): reinterpretations are plain same-size vector casts.
inline __m512bh as_bh(__m512i v) { return (__m512bh)v; }
inline __m512i bh_bits(__m512bh v) { return (__m512i)v; }

// Lanes [0, n) set, n clipped to [0, 16].
inline M lanes(int64_t n) { return n >= W ? static_cast<M>(0xffff) : n <= 0 ? static_cast<M>(0) : tail_mask(n); }

// 32 floats p[0, n) (zeros past n) -> 16 bf16 pairs, word w = (p[2w], p[2w + 1]).
inline __m512i pairs32(const float* p, int64_t n) {
  return bh_bits(_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(lanes(n - W), p + W), _mm512_maskz_loadu_ps(lanes(n), p)));
}

// Geometry of the packed K/V of one call.
struct Packed {
  int64_t dk2, dvp, nblk, kwords, block, slice;  // words: K part of a block, whole block, one (batch, head)
};

inline Packed packed_geometry(const AttentionParams& p) {
  Packed g;
  g.dk2 = (p.dk + 1) / 2;
  g.dvp = round_up_16(p.dv);
  g.nblk = (p.lk + kBk - 1) / kBk;
  g.kwords = g.dk2 * kBk;
  g.block = g.kwords + kBk / 2 * g.dvp;
  g.slice = g.nblk * g.block;
  return g;
}

// ------------------------------------------------------------ strip kernel
struct FastBf16 : StripCtx {
  uint32_t* pbuf;  // kStrip x kBk/2 bf16 pairs of probabilities of the current strip
  uint32_t* q2;    // nq x dk2 bf16 pairs of the task's queries
  int64_t dk2;
};

// One strip of R (<= kStrip) queries [i0, i0 + R) (task rows from r0)
// against key block [j0, j0 + nk), packed at kb (K) and vb (V).
template <int R>
void strip_block(const FastBf16& f, int64_t r0, int64_t i0, int64_t j0, int64_t nk, const uint32_t* kb,
                 const uint32_t* vb) {
  // ---- S = Q · Kᵀ
  const uint32_t* qr[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) qr[r] = f.q2 + (r0 + r) * f.dk2;
  V s[R][kKV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < kKV; ++t) s[r][t] = _mm512_setzero_ps();
  const uint32_t* kt = kb;
  for (int64_t w = 0; w < f.dk2; ++w, kt += kBk) {
    __m512bh kv[kKV];
#pragma GCC unroll 4
    for (int t = 0; t < kKV; ++t) kv[t] = as_bh(_mm512_load_si512(kt + t * W));
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512bh qb = as_bh(_mm512_set1_epi32(static_cast<int>(qr[r][w])));
#pragma GCC unroll 4
      for (int t = 0; t < kKV; ++t) s[r][t] = _mm512_dpbf16_ps(s[r][t], kv[t], qb);
    }
  }
  float alpha[R];
  strip_softmax<R>(f, s, r0, i0, j0, nk, alpha);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    _mm512_store_si512(f.pbuf + r * (kBk / 2), bh_bits(_mm512_cvtne2ps_pbh(s[r][1], s[r][0])));
    _mm512_store_si512(f.pbuf + r * (kBk / 2) + W, bh_bits(_mm512_cvtne2ps_pbh(s[r][3], s[r][2])));
  }
  // ---- O = alpha · O + P · V, over key pairs. An odd kv_end pairs the last
  // key this strip sees with key kv_end, which it must not see: its P is 0,
  // but its V (causally hidden, real data, not padding) may be inf or NaN and
  // 0 · inf is NaN. That half (the high bf16 of each word) of the last pair's
  // V is cleared, as the fp32 path never reads that row.
  const int64_t kv_end = strip_kv_end(*f.p, R, i0, j0, nk);
  const int64_t full_pairs = kv_end / 2;
  const bool odd = (kv_end & 1) != 0;
  const __m512i low_half = _mm512_set1_epi32(0xffff);
  const uint32_t* prow = f.pbuf;
  // One key pair into nv accumulator vectors per row (kKV, or 1 for the
  // column tail); IntConst<n> serves as the compile-time count.
  auto pair_step = [&](auto vectors, V* o, const uint32_t* vr, int64_t jp, bool clear_odd) {
    constexpr int nv = decltype(vectors)::value;
    __m512bh vv[nv];
#pragma GCC unroll 4
    for (int t = 0; t < nv; ++t) {
      const __m512i w = _mm512_load_si512(vr + t * W);
      vv[t] = as_bh(clear_odd ? _mm512_and_si512(w, low_half) : w);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512bh pb = as_bh(_mm512_set1_epi32(static_cast<int>(prow[r * (kBk / 2) + jp])));
#pragma GCC unroll 4
      for (int t = 0; t < nv; ++t) o[r * nv + t] = _mm512_dpbf16_ps(o[r * nv + t], vv[t], pb);
    }
  };
  for (int64_t c = 0; c < f.dvp; c += kKV * W) {
    const int64_t nvec = f.dvp - c < kKV * W ? (f.dvp - c) / W : kKV;
    if (nvec == kKV) {
      V o[R][kKV];
      load_scaled_o<R>(f, r0, c, alpha, o);
      const uint32_t* vr = vb + c;
      for (int64_t jp = 0; jp < full_pairs; ++jp, vr += f.dvp) pair_step(IntConst<kKV>{}, &o[0][0], vr, jp, false);
      if (odd) pair_step(IntConst<kKV>{}, &o[0][0], vr, full_pairs, true);
      store_o<R>(f, r0, c, o);
    } else {
      // Column tail (dvp % 64): one vector at a time (the packed V and the
      // accumulators are padded to whole vectors).
      for (int64_t t = 0; t < nvec; ++t) {
        V o[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) o[r] = mul(ld(f.o + (r0 + r) * f.dvp + c + t * W), set1(alpha[r]));
        const uint32_t* vr = vb + c + t * W;
        for (int64_t jp = 0; jp < full_pairs; ++jp, vr += f.dvp) pair_step(IntConst<1>{}, o, vr, jp, false);
        if (odd) pair_step(IntConst<1>{}, o, vr, full_pairs, true);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) st(f.o + (r0 + r) * f.dvp + c + t * W, o[r]);
      }
    }
  }
}

// This path's streaming tile (declared by attention_tile.inc): queries
// converted to bf16 pairs once per task, then strips against every packed
// key block of the slice.
void tile_streaming(const AttentionParams& p, const Slice& sl, int64_t b, int64_t h, int64_t i0, int64_t nq,
                    float* scratch) {
  const Packed g = packed_geometry(p);
  FastBf16 f;
  init_task(f, p, sl, b, h, nq, scratch);
  f.pbuf = reinterpret_cast<uint32_t*>(scratch);  // before sbuf (kStrip * kBk floats in)
  f.q2 = reinterpret_cast<uint32_t*>(task_tail(f, nq));
  f.dk2 = g.dk2;
  for (int64_t ii = 0; ii < nq; ++ii) {
    const float* qr = sl.q + (i0 + ii) * sl.qs;
    uint32_t* dst = f.q2 + ii * g.dk2;
    for (int64_t w = 0; w < g.dk2; w += W) {
      _mm512_mask_storeu_epi32(dst + w, lanes(g.dk2 - w), pairs32(qr + 2 * w, p.dk - 2 * w));
    }
  }
  // K/V were packed per key/value head (grouped-query attention: heads / kv_heads query heads share one).
  const uint32_t* kv = static_cast<const uint32_t*>(sl.prepared) + (b * p.kv_heads + h / (p.heads / p.kv_heads)) * g.slice;
  // Causal: the tile's last query sees keys < i0 + nq; later blocks are skipped.
  const int64_t j_end = p.causal ? (i0 + nq < p.lk ? i0 + nq : p.lk) : p.lk;
  for (int64_t j0 = 0; j0 < j_end; j0 += kBk) {
    const int64_t nk = j_end - j0 < kBk ? j_end - j0 : kBk;
    const uint32_t* kb = kv + (j0 / kBk) * g.block;
    const uint32_t* vb = kb + g.kwords;
    for (int64_t r0 = 0; r0 < nq; r0 += kStrip) {
      const int64_t n = nq - r0 < kStrip ? nq - r0 : kStrip;
      // Causal: a strip whose rows all precede the block sees none of it.
      if (p.causal && i0 + r0 + n - 1 < j0) continue;
      with_strip_rows(static_cast<int>(n),
                      [&](auto rows) { strip_block<decltype(rows)::value>(f, r0, i0 + r0, j0, nk, kb, vb); });
    }
  }
  finish_task(f, i0, nq);
}

}  // namespace

int64_t packed_kv_words(const AttentionParams& p) { return p.batch * p.kv_heads * packed_geometry(p).slice; }

void pack_kv(const AttentionParams& p, uint32_t* dst, int64_t bh) {
  const Packed g = packed_geometry(p);
  const int64_t b = bh / p.kv_heads, h = bh % p.kv_heads;
  const float* k = p.k + b * p.k_strides[0] + h * p.k_strides[1];
  const float* v = p.v + b * p.v_strides[0] + h * p.v_strides[1];
  const int64_t ks = p.k_strides[2], vs = p.v_strides[2];
  // Word i of a cvtne2ps_pbh(b, a) result holds a[2i], a[2i+1]; this index
  // makes word i (a[i], b[i]) instead: one column of two value rows.
  const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                                              6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  uint32_t* slice = dst + bh * g.slice;
  for (int64_t j0 = 0; j0 < p.lk; j0 += kBk) {
    const int64_t nk = p.lk - j0 < kBk ? p.lk - j0 : kBk;
    uint32_t* kt = slice + (j0 / kBk) * g.block;
    uint32_t* vt = kt + g.kwords;
    // K: 16 keys x 16 pairs, converted row-wise then transposed, so that
    // kt[w * kBk + jj] = (k[j0 + jj][2w], k[j0 + jj][2w + 1]); missing keys 0.
    for (int64_t jg = 0; jg < kBk; jg += W) {
      for (int64_t w0 = 0; w0 < g.dk2; w0 += W) {
        V r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) {
          r[i] = jg + i < nk ? _mm512_castsi512_ps(pairs32(k + (j0 + jg + i) * ks + 2 * w0, p.dk - 2 * w0))
                             : _mm512_setzero_ps();
        }
        transpose16(r);
        const int64_t nw = g.dk2 - w0 < W ? g.dk2 - w0 : W;
        for (int64_t c = 0; c < nw; ++c) _mm512_store_ps(reinterpret_cast<float*>(kt + (w0 + c) * kBk + jg), r[c]);
      }
    }
    // V: vt[jp * dvp + c] = (v[j0 + 2jp][c], v[j0 + 2jp + 1][c]); missing
    // keys and columns past dv are 0 (their P is 0, and 0 * garbage could be NaN).
    for (int64_t jp = 0; jp < kBk / 2; ++jp) {
      const int64_t j = 2 * jp;
      for (int64_t c = 0; c < g.dvp; c += W) {
        const M cm = lanes(p.dv - c);
        const V lo = j < nk ? _mm512_maskz_loadu_ps(cm, v + (j0 + j) * vs + c) : _mm512_setzero_ps();
        const V hi = j + 1 < nk ? _mm512_maskz_loadu_ps(cm, v + (j0 + j + 1) * vs + c) : _mm512_setzero_ps();
        const __m512i x = bh_bits(_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_store_si512(vt + jp * g.dvp + c, _mm512_permutexvar_epi16(interleave, x));
      }
    }
  }
}

}  // namespace attnode::kernels::avx512_bf16
