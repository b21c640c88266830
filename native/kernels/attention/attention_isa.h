// Internal: per-ISA attention tile kernels behind attention.h.
//
// Declarations and constants only: this header is included after the
// `#pragma GCC target` of the AVX2 / AVX-512 translation units, so an inline
// body here could be emitted with those flags and picked by the linker for
// baseline callers (ODR hazard). For the same reason the ISA files only take
// AttentionParams by const reference and never construct or copy one (its
// implicit constructor is an inline function).
#pragma once

#include <cstdint>

#include "attention.h"

namespace attnode::kernels {

// Query rows of the 32-lane transposed-score tiles (weights output, and the
// AVX2 / portable streaming path) and keys per streamed block; both
// multiples of every vector width (16 floats).
constexpr int64_t kAttnQueryTile = 32;
constexpr int64_t kAttnKeyBlock = 64;
// Most query rows the frontend hands one task (attention_tile's i1 - i0):
// the AVX-512 register-blocked path takes up to this many (a multiple of
// its 6-row strips) so that each packed key block is reused from L1 by
// many queries; paths built on kAttnQueryTile split larger tasks into
// kAttnQueryTile-row tiles. Every query row goes through the same
// arithmetic whatever task it lands in, so the split never changes results.
constexpr int64_t kAttnMaxTaskRows = 96;
// Calls with at most this many query rows take the few-rows path (dot
// products along d; a 32-lane query tile would be mostly padding), and always
// in float32; calls with one query row (a decoding step) without weights
// output or dropout take attention_decode, one task per key/value head.
constexpr int64_t kAttnSmallRows = 8;

// Computes out rows [i0, i1) (i1 - i0 <= kAttnMaxTaskRows) of (batch b,
// head h), and their weights rows when p.weights is set. `prepared` is what
// the ISA's per-call step made (avx512_bf16: K and V packed by pack_kv), or
// null. `scratch` is 64-byte aligned and holds at least
// kAttnScratchFloats(dk, dv) floats, computed in attention.cc as
//   kAttnKeyBlock * kAttnQueryTile + kAttnMaxTaskRows * (round_up(dv, 16) + 32 + ceil(dk / 2) + dk)
//   + dk * kAttnKeyBlock.
// The 32-row tiles use it as kAttnKeyBlock * kAttnQueryTile floats
// (transposed scores), kAttnQueryTile * round_up(dv, 16) (output
// accumulators), dk * kAttnKeyBlock (the transposed query tile); the AVX-512
// register-blocked path as 2 * 6 * kAttnKeyBlock (probabilities and masked
// scores of one strip, in the first kAttnKeyBlock * kAttnQueryTile), then
// nq * round_up(dv, 16) output accumulators, nq * 16 partial row sums,
// round_up(nq, 16) running maxima, dk * kAttnKeyBlock (the transposed key
// block, when K/V were not packed per call) and nq * dk (the queries times
// scale · log2e); the bf16 path puts its bf16 query rows (nq * ceil(dk / 2)
// words) where the fp32 path has the key block. No function bodies in this header
// (see above).
// Backward (attention_backward.inc, every path; the frontend set fwd.kv_heads):
// attention_backward_kv writes dk / dv rows [j0, j0 + kAttnKeyBlock) ∩ [0, lk)
// of (batch b, key/value head hk), summing over every query tile of the
// heads that share hk, and with `with_dq` (only when the one key block holds
// every key, lk <= kAttnKeyBlock) also dq of every such query tile, complete
// since no other block adds to it: the frontend then runs no dq tasks, which
// would recompute the same P and dS; attention_backward_q writes dq rows [i0, i0 +
// kAttnQueryTile) ∩ [0, lq) of (b, h) over every key block it sees. Scratch
// (64-byte aligned; attention.cc's backward_scratch_floats computes its size):
//   st, dst: kAttnKeyBlock * kAttnQueryTile each (transposed P and dS),
//   qt: dk * kAttnQueryTile, gt: dv * kAttnQueryTile (transposed Q and dO tiles),
//   lv, dl: kAttnQueryTile each (the tile's L and D), mrow: kAttnKeyBlock
//   (one query's dropout factors),
//   acc: kAttnKeyBlock * (round_up(dk, 16) + round_up(dv, 16)) (dK and dV of
//   the block; dQ of the tile uses the first kAttnQueryTile * round_up(dk, 16)),
//   then kAttnQueryTile * round_up(dk, 16) (a tile's dQ in the kv task with_dq).
namespace portable {
void attention_tile(const AttentionParams& p, const void* prepared, int64_t b, int64_t h, int64_t i0, int64_t i1,
                    float* scratch);
// One query row (lq == 1) of every query head of key/value heads [hk0, hk1) of batch b (attention_tile.inc's
// decode_group_rows).
void attention_decode(const AttentionParams& p, int64_t b, int64_t hk0, int64_t hk1, float* scratch);
void attention_backward_kv(const AttentionBackwardParams& p, int64_t b, int64_t hk, int64_t j0, bool with_dq,
                           float* scratch);
void attention_backward_q(const AttentionBackwardParams& p, int64_t b, int64_t h, int64_t i0, float* scratch);
}  // namespace portable
namespace avx2 {
void attention_tile(const AttentionParams& p, const void* prepared, int64_t b, int64_t h, int64_t i0, int64_t i1,
                    float* scratch);
// One query row (lq == 1) of every query head of key/value heads [hk0, hk1) of batch b (attention_tile.inc's
// decode_group_rows).
void attention_decode(const AttentionParams& p, int64_t b, int64_t hk0, int64_t hk1, float* scratch);
void attention_backward_kv(const AttentionBackwardParams& p, int64_t b, int64_t hk, int64_t j0, bool with_dq,
                           float* scratch);
void attention_backward_q(const AttentionBackwardParams& p, int64_t b, int64_t h, int64_t i0, float* scratch);
}  // namespace avx2
namespace avx512 {
// The float32 register-blocked streaming path's K and V, packed once per
// call when every (batch, head) has several query tasks (the frontend's
// choice; `prepared` then points here, else each task transposes its key
// blocks itself): per (batch, key/value head) slice, per block of
// kAttnKeyBlock keys, K transposed (dk x kAttnKeyBlock floats, kt[d][jj])
// then V (kAttnKeyBlock x round_up(dv, 16) floats); missing keys and the
// columns past dv are 0. Each block is 64-byte aligned when dst is.
int64_t packed_kv_floats(const AttentionParams& p);
// Packs slice bh = b * kv_heads + h (h a key/value head) into dst (sized by packed_kv_floats).
void pack_kv(const AttentionParams& p, float* dst, int64_t bh);
void attention_tile(const AttentionParams& p, const void* prepared, int64_t b, int64_t h, int64_t i0, int64_t i1,
                    float* scratch);
// One query row (lq == 1) of every query head of key/value heads [hk0, hk1) of batch b (attention_tile.inc's
// decode_group_rows).
void attention_decode(const AttentionParams& p, int64_t b, int64_t hk0, int64_t hk1, float* scratch);
void attention_backward_kv(const AttentionBackwardParams& p, int64_t b, int64_t hk, int64_t j0, bool with_dq,
                           float* scratch);
void attention_backward_q(const AttentionBackwardParams& p, int64_t b, int64_t h, int64_t i0, float* scratch);
}  // namespace avx512
// AVX-512 + AVX512-BF16: the avx512 path with Q·Kᵀ and P·V on vdpbf16ps
// (AttentionPrecision::BFloat16). Per call, K and V of every (batch, head)
// are first packed to bf16 blocks in the layout the strips stream: per
// block of kAttnKeyBlock keys, K as ceil(dk/2) x kAttnKeyBlock words (word
// = the bf16 pair of dims 2w, 2w + 1 of one key) and V as kAttnKeyBlock/2 x
// round_up(dv, 16) words (word = one column of a key pair). Only called when
// the CPU has AVX512-BF16 and the active path is avx512.
namespace avx512_bf16 {
// 32-bit words pack_kv writes for all (batch, head) slices.
int64_t packed_kv_words(const AttentionParams& p);
// Packs K and V of slice bh = b * kv_heads + h (h a key/value head) into dst (sized by packed_kv_words).
void pack_kv(const AttentionParams& p, uint32_t* dst, int64_t bh);
void attention_tile(const AttentionParams& p, const void* prepared, int64_t b, int64_t h, int64_t i0, int64_t i1,
                    float* scratch);
}  // namespace avx512_bf16

}  // namespace attnode::kernels
