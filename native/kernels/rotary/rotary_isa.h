// Internal: per-ISA RoPE row kernels behind rotary.h.
//
// Each namespace is implemented by one translation unit compiled for that ISA
// (rotary_portable.cc, rotary_avx2.cc, rotary_avx512.cc), all from the shared
// rotary_rows.inc. The frontend (rotary.cc) builds the cos/sin table and does
// the threading. Declarations only (see elementwise_isa.h for why).
#pragma once

#include <cstdint>

namespace attnode::kernels {
// Rotates `rows` rows (row r at x + r * xs, written to y + r * ys) of `dim`
// features with one position's cos/sin (rotary_dim / 2 entries each);
// features past rotary_dim are copied. y may equal x (xs == ys).
#define ATTNODE_ROPE_ROWS_DECL                                                                                   \
  void rope_rows(const float* x, int64_t xs, float* y, int64_t ys, int64_t rows, const float* cos, const float* sin, \
                 int64_t dim, int64_t rotary_dim, bool interleaved)
namespace portable {
ATTNODE_ROPE_ROWS_DECL;
}  // namespace portable
namespace avx2 {
ATTNODE_ROPE_ROWS_DECL;
}  // namespace avx2
namespace avx512 {
ATTNODE_ROPE_ROWS_DECL;
}  // namespace avx512
#undef ATTNODE_ROPE_ROWS_DECL
}  // namespace attnode::kernels
