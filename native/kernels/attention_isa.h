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

// Computes out rows [i0, i1) (i1 - i0 <= kAttnMaxTaskRows) of (batch b,
// head h), and their weights rows when p.weights is set. `scratch` is
// 64-byte aligned and holds at least kAttnScratchFloats(dk, dv) floats,
// computed in attention.cc as
//   kAttnKeyBlock * kAttnQueryTile + kAttnMaxTaskRows * (round_up(dv, 16) + 32) + dk * kAttnKeyBlock.
// The 32-row tiles use it as kAttnKeyBlock * kAttnQueryTile floats
// (transposed scores), kAttnQueryTile * round_up(dv, 16) (output
// accumulators), dk * kAttnKeyBlock (the transposed query tile); the AVX-512
// register-blocked path as 2 * 6 * kAttnKeyBlock (probabilities and masked
// scores of one strip, in the first kAttnKeyBlock * kAttnQueryTile), then
// nq * round_up(dv, 16) output accumulators, nq * 16 partial row sums,
// round_up(nq, 16) running maxima and dk * kAttnKeyBlock (the transposed key
// block). No function bodies in this header (see above).
namespace portable {
void attention_tile(const AttentionParams& p, int64_t b, int64_t h, int64_t i0, int64_t i1, float* scratch);
}  // namespace portable
namespace avx2 {
void attention_tile(const AttentionParams& p, int64_t b, int64_t h, int64_t i0, int64_t i1, float* scratch);
}  // namespace avx2
namespace avx512 {
void attention_tile(const AttentionParams& p, int64_t b, int64_t h, int64_t i0, int64_t i1, float* scratch);
}  // namespace avx512

}  // namespace attnode::kernels
