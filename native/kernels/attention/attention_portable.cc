// Portable (baseline) attention tile kernel. See attention_isa.h.
//
// The algorithm section is shared text with the SIMD files, instantiated
// here with a one-lane "vector" (plain float) and libm's expf, so it is also
// a readable reference of what they compute.
#include <cmath>
#include <cstdint>

#include "attention_isa.h"

namespace attnode::kernels::portable {
namespace {

// ---------------------------------------------------------------- ISA wrapper
constexpr int64_t W = 1;
constexpr int kR = 1;  // keys per score micro-tile (32 scalar accumulators)
using V = float;
using M = int;

inline V ld(const float* p) { return *p; }
inline void st(float* p, V v) { *p = v; }
inline M tail_mask(int64_t) { return 0; }  // never called with W == 1
inline V ld_tail(const float*, M, V fill) { return fill; }
inline void st_tail(float*, M, V) {}
inline V set1(float f) { return f; }
inline V add(V a, V b) { return a + b; }
inline V sub(V a, V b) { return a - b; }
inline V mul(V a, V b) { return a * b; }
inline V fma(V a, V b, V c) { return a * b + c; }  // no FMA on baseline x86-64; std::fma would be a libcall
inline V vmax(V a, V b) { return a > b ? a : b; }  // NaN in either -> b, like maxps
inline float hmax(V a) { return a; }
inline float hsum(V a) { return a; }
inline V neginf_to_zero(V a) { return a == -__builtin_huge_valf() ? 0.0f : a; }
inline V vexp(V x) { return std::exp(x); }

#include "attention_tile.inc"

}  // namespace attnode::kernels::portable
