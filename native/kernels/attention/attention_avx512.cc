// AVX-512 (F/BW/VL/DQ) + FMA attention tile kernel. See attention_isa.h.
//
// The target pragma comes before every include and this TU includes only
// <immintrin.h>, <cstdint>, the SIMD layer (internal linkage) and our
// declaration-only headers: an inline function emitted here would carry
// AVX-512 code that the linker could pick for baseline callers (ODR hazard;
// simd/README.md). All helpers are in an anonymous namespace for the same
// reason.
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

#include "../simd/simd_avx512.h"
#include "attention_isa.h"

namespace attnode::kernels::avx512 {
namespace {

using namespace simd::avx512;

#include "attention_avx512_common.inc"

// The weights, few-rows and dispatch parts are the shared algorithm; the
// streaming path is this ISA's own register-blocked one, defined below.
#define ATTN_TILE_OWN_STREAMING 1
#include "attention_tile.inc"

namespace {

#include "attention_avx512_strip.inc"

// ------------------------------------------------- register-blocked flash path
// One task = up to kAttnMaxTaskRows queries of one (batch, head). Its
// queries are first copied times scale · log2e (contiguous rows, scores come
// out in log2 units: no scaling per block, and exp is 2^(s - m)). Per key
// block of kBk = 64 keys, K transposed (kt[d][64], from the call's packed
// K/V, or packed by the task itself when the frontend did not pack) is
// shared by every query of the task from L1; then each strip of kStrip = 6
// queries runs, entirely in registers:
//   S (6 x 64, 24 zmm) = Q_strip · K_blockᵀ    broadcast q[r][d] x 4 vectors of kt[d]
//   masks / causal / tail on S, row max, P = 2^(S - m), row sums (vectors)
//   O (6 x 64 columns of v, 24 zmm) = alpha · O + P · V_block   broadcast p[r][j] x 4 vectors of v[j]
// O lives in the task's scratch between key blocks (one load and store per
// strip and block, with the online-softmax rescale folded into the load). Each
// query row goes through exactly the same operations whatever the strip or
// task it lands in, so the results do not depend on the work split.

// Per-task addressing and scratch of the fp32 fast path.
struct Fast : StripCtx {
  float* pbuf;  // kStrip x kBk probabilities of the current strip
  float* kt;    // dk x kBk transposed key block (when the task packs its own)
  float* qs;    // nq x dk queries times scale · log2e
};

// kt[d * kBk + jj] = k[j0 + jj][d] for jj < nk, 0 for nk <= jj < kBk; k rows ks apart.
void transpose_keys(const float* k, int64_t ks, int64_t dk, int64_t j0, int64_t nk, float* kt) {
  for (int64_t g = 0; g < kBk; g += W) {
    for (int64_t dc = 0; dc < dk; dc += W) {
      const int64_t nd = dk - dc < W ? dk - dc : W;
      const M dm = nd == W ? static_cast<M>(0xffff) : tail_mask(nd);
      V r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i)
        r[i] = g + i < nk ? _mm512_maskz_loadu_ps(dm, k + (j0 + g + i) * ks + dc) : _mm512_setzero_ps();
      transpose16(r);
      for (int64_t c = 0; c < nd; ++c) st(kt + (dc + c) * kBk + g, r[c]);
    }
  }
}

// One strip of R (<= kStrip) queries [i0, i0 + R) (task rows from r0)
// against key block [j0, j0 + nk): kt its transposed keys, vb its first
// value row, value rows vs apart.
template <int R>
void strip_block(const Fast& f, int64_t r0, int64_t i0, int64_t j0, int64_t nk, const float* kt, const float* vb,
                 int64_t vs) {
  const AttentionParams& p = *f.p;
  const int64_t dk = p.dk;
  const float* qr = f.qs + r0 * dk;
  // ---- S = Q · Kᵀ (log2 units)
  V s[R][kKV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < kKV; ++t) s[r][t] = _mm512_setzero_ps();
  for (int64_t d = 0; d < dk; ++d, kt += kBk) {
    V kv[kKV];
#pragma GCC unroll 4
    for (int t = 0; t < kKV; ++t) kv[t] = ld(kt + t * W);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const V qb = set1(qr[r * dk + d]);
#pragma GCC unroll 4
      for (int t = 0; t < kKV; ++t) s[r][t] = fma(qb, kv[t], s[r][t]);
    }
  }
  float alpha[R];
  strip_softmax<R, true>(f, s, r0, i0, j0, nk, alpha);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < kKV; ++t) st(f.pbuf + r * kBk + t * W, s[r][t]);
  // ---- O = alpha · O + P · V
  const int64_t kv_end = strip_kv_end(p, R, i0, j0, nk);
  if (p.dropout_p > 0.0f) {
    // After the row sums (strip_softmax): only P·V sees the dropped probabilities.
    const Dropout d = dropout_of(p);
    for (int r = 0; r < R; ++r) apply_dropout(p, d, f.b, f.h, i0 + r, j0, kv_end, f.pbuf + r * kBk, 1);
  }
  const int64_t dv = p.dv;
  for (int64_t c = 0; c < dv; c += kKV * W) {
    const int64_t ncol = dv - c < kKV * W ? dv - c : kKV * W;
    const int nvec = static_cast<int>((ncol + W - 1) / W);
    const M lm = ncol % W == 0 ? static_cast<M>(0xffff) : tail_mask(ncol % W);
    if (nvec == kKV) {
      V o[R][kKV];
      load_scaled_o<R>(f, r0, c, alpha, o);
      const float* vr = vb + c;
      for (int64_t j = 0; j < kv_end; ++j, vr += vs) {
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
      store_o<R>(f, r0, c, o);
    } else {
      // Column tail (dv % 64): one vector at a time.
      for (int t = 0; t < nvec; ++t) {
        const M m = t == nvec - 1 ? lm : static_cast<M>(0xffff);
        V o[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) o[r] = mul(ld(f.o + (r0 + r) * f.dvp + c + t * W), set1(alpha[r]));
        const float* vr = vb + c + t * W;
        for (int64_t j = 0; j < kv_end; ++j, vr += vs) {
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

constexpr auto kPfHint = _MM_HINT_T0;

// Floats of one (batch, key/value head) slice and of one key block of the packed K/V (attention_isa.h).
inline int64_t packed_block_floats(const AttentionParams& p) { return p.dk * kBk + kBk * round_up_16(p.dv); }
inline int64_t packed_slice_floats(const AttentionParams& p) {
  return (p.lk + kBk - 1) / kBk * packed_block_floats(p);
}

// This ISA's streaming path (declared by attention_tile.inc).
void tile_streaming(const AttentionParams& p, const Slice& sl, int64_t b, int64_t h, int64_t i0, int64_t nq,
                    float* scratch) {
  Fast f;
  init_task(f, p, sl, b, h, nq, scratch);
  f.log2_scores = true;
  f.pbuf = scratch;
  f.kt = task_tail(f, nq);
  f.qs = f.kt + p.dk * kBk;
  const int64_t dk = p.dk;
  {
    const V qscale = set1(p.scale * kLog2e);
    for (int64_t ii = 0; ii < nq; ++ii) {
      const float* src = sl.q + (i0 + ii) * sl.qs;
      float* dst = f.qs + ii * dk;
      for (int64_t d = 0; d < dk; d += W) {
        const M m = dk - d >= W ? static_cast<M>(0xffff) : tail_mask(dk - d);
        _mm512_mask_storeu_ps(dst + d, m, mul(_mm512_maskz_loadu_ps(m, src + d), qscale));
      }
    }
  }
  // Causal: the tile's last query sees keys < i0 + nq; later blocks are skipped.
  const int64_t j_end = p.causal ? (i0 + nq < p.lk ? i0 + nq : p.lk) : p.lk;
  const int64_t nstrips = (nq + kStrip - 1) / kStrip;
  if (sl.prepared) {
    // K and V packed by the frontend: contiguous blocks the hardware prefetcher follows.
    const int64_t blk = packed_block_floats(p), dvp = round_up_16(p.dv);
    const float* slice = static_cast<const float*>(sl.prepared) +
                         (b * p.kv_heads + h / (p.heads / p.kv_heads)) * packed_slice_floats(p);
    for (int64_t j0 = 0; j0 < j_end; j0 += kBk) {
      const int64_t nk = j_end - j0 < kBk ? j_end - j0 : kBk;
      const float* kt = slice + (j0 / kBk) * blk;
      const float* vb = kt + dk * kBk;
      for (int64_t r0 = 0; r0 < nq; r0 += kStrip) {
        const int64_t n = nq - r0 < kStrip ? nq - r0 : kStrip;
        // Causal: a strip whose rows all precede the block sees none of it.
        if (p.causal && i0 + r0 + n - 1 < j0) continue;
        with_strip_rows(static_cast<int>(n),
                        [&](auto rows) { strip_block<decltype(rows)::value>(f, r0, i0 + r0, j0, nk, kt, vb, dvp); });
      }
    }
    finish_task(f, i0, nq);
    return;
  }
  // The first block's v rows load while its keys are packed.
  for (int64_t j = 0; j < (j_end < kBk ? j_end : kBk); ++j) {
    const char* vr = reinterpret_cast<const char*>(sl.v + j * sl.vs);
    for (int64_t c = 0; c < p.dv * 4; c += 64) _mm_prefetch(vr + c, kPfHint);
  }
  for (int64_t j0 = 0; j0 < j_end; j0 += kBk) {
    const int64_t nk = j_end - j0 < kBk ? j_end - j0 : kBk;
    transpose_keys(sl.k, sl.ks, dk, j0, nk, f.kt);
    // While the strips run, pull the next block's k and v rows (strided: in
    // a packed [L, N, 3E] projection every row is on its own page) toward
    // the cache, a few rows per strip.
    const int64_t jn = j0 + kBk, nkn = j_end - jn < kBk ? j_end - jn : kBk;
    const int64_t per = nkn > 0 ? (nkn + nstrips - 1) / nstrips : 0;
    for (int64_t r0 = 0, pf = 0; r0 < nq; r0 += kStrip, pf += per) {
      for (int64_t j = pf; j < pf + per && j < nkn; ++j) {
        const char* kr = reinterpret_cast<const char*>(sl.k + (jn + j) * sl.ks);
        const char* vr = reinterpret_cast<const char*>(sl.v + (jn + j) * sl.vs);
        for (int64_t c = 0; c < p.dk * 4; c += 64) _mm_prefetch(kr + c, kPfHint);
        for (int64_t c = 0; c < p.dv * 4; c += 64) _mm_prefetch(vr + c, kPfHint);
      }
      const int64_t n = nq - r0 < kStrip ? nq - r0 : kStrip;
      if (p.causal && i0 + r0 + n - 1 < j0) continue;
      with_strip_rows(static_cast<int>(n), [&](auto rows) {
        strip_block<decltype(rows)::value>(f, r0, i0 + r0, j0, nk, f.kt, sl.v + j0 * sl.vs, sl.vs);
      });
    }
  }
  finish_task(f, i0, nq);
}

}  // namespace

int64_t packed_kv_floats(const AttentionParams& p) {
  return p.batch * p.kv_heads * packed_slice_floats(p);
}

void pack_kv(const AttentionParams& p, float* dst, int64_t bh) {
  const int64_t b = bh / p.kv_heads, h = bh % p.kv_heads;
  const float* k = p.k + b * p.k_strides[0] + h * p.k_strides[1];
  const float* v = p.v + b * p.v_strides[0] + h * p.v_strides[1];
  const int64_t blk = packed_block_floats(p), dvp = round_up_16(p.dv);
  float* slice = dst + bh * packed_slice_floats(p);
  for (int64_t j0 = 0; j0 < p.lk; j0 += kBk) {
    const int64_t nk = p.lk - j0 < kBk ? p.lk - j0 : kBk;
    float* kt = slice + (j0 / kBk) * blk;
    float* vt = kt + p.dk * kBk;
    transpose_keys(k, p.k_strides[2], p.dk, j0, nk, kt);
    for (int64_t jj = 0; jj < kBk; ++jj) {
      float* dr = vt + jj * dvp;
      if (jj >= nk) {
        for (int64_t c = 0; c < dvp; c += W) st(dr + c, _mm512_setzero_ps());
        continue;
      }
      const float* vr = v + (j0 + jj) * p.v_strides[2];
      for (int64_t c = 0; c < dvp; c += W) {
        const M m = p.dv - c >= W ? static_cast<M>(0xffff) : tail_mask(p.dv - c);
        st(dr + c, _mm512_maskz_loadu_ps(m, vr + c));
      }
    }
  }
}

// The backward runs on the shared 32-query tiles (score_keys with kR = 8).
#include "attention_backward.inc"

}  // namespace attnode::kernels::avx512
