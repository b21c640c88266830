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

// Query rows per task and keys per streamed block; both multiples of every
// vector width (16 floats).
constexpr int64_t kAttnQueryTile = 32;
constexpr int64_t kAttnKeyBlock = 64;

// Computes out rows [i0, i1) (i1 - i0 <= kAttnQueryTile) of (batch b, head h),
// and their weights rows when p.weights is set. `scratch` is 64-byte aligned
// and holds kAttnKeyBlock * kAttnQueryTile floats (transposed scores), then
// kAttnQueryTile * round_up(dv, 16) (output accumulators), then
// dk * kAttnKeyBlock (>= dk * kAttnQueryTile, the transposed query tile).
// The size is computed in attention.cc: no function bodies in this header.
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
