// SIMD layer, portable: one float lane (V is a plain float), compiled for
// baseline x86-64 (or any other architecture). It provides the interface of
// README.md so that the shared algorithm files (.inc) also instantiate as a
// scalar reference, and the one exp of the portable path (libm's expf,
// < 1 ulp) for the scalar kernels.
//
// Baseline code may use any header. The attnode::simd::portable namespace
// and the anonymous namespace keep it like the other ISA headers (internal
// linkage, no name shared with them).
#pragma once

#include <cmath>
#include <cstdint>

namespace attnode::simd::portable {
namespace {

constexpr int64_t W = 1;
using V = float;
using M = int;        // W == 1: there is never a partial vector
using DAcc = double;  // double accumulator

inline V ld(const float* p) { return *p; }
inline void st(float* p, V v) { *p = v; }
inline M tail_mask(int64_t) { return 0; }  // never called with W == 1
inline V ld_tail(const float*, M, V fill) { return fill; }
inline void st_tail(float*, M, V) {}
inline V set1(float f) { return f; }
inline V add(V a, V b) { return a + b; }
inline V sub(V a, V b) { return a - b; }
inline V mul(V a, V b) { return a * b; }
inline V div(V a, V b) { return a / b; }
// Two roundings: baseline x86-64 has no FMA instruction, and std::fma would be a library call.
inline V fma(V a, V b, V c) { return a * b + c; }
inline V fnma(V a, V b, V c) { return c - a * b; }
// NaN in either -> b, like maxps / minps.
inline V vmax(V a, V b) { return a > b ? a : b; }
inline V vmin(V a, V b) { return a < b ? a : b; }
inline V vsqrt(V a) { return std::sqrt(a); }
inline V vabs(V a) { return std::fabs(a); }
inline V round_nearest(V a) { return std::nearbyint(a); }
inline V select_ge0(V x, V a, V b) { return x >= 0.0f ? a : b; }
inline V neginf_to_zero(V a) { return a == -__builtin_huge_valf() ? 0.0f : a; }
inline V ldexp_int(V p, V n) { return std::ldexp(p, static_cast<int>(n)); }

inline float hmax(V a) { return a; }
inline float hsum(V a) { return a; }
// Lane i of the result = hsum(v[i]), i < W (one lane here).
inline V hsum_lanes(const V* v) { return v[0]; }

inline DAcc dzero() { return 0.0; }
inline DAcc dadd(DAcc acc, V v) { return acc + static_cast<double>(v); }
inline double dsum(DAcc acc) { return acc; }
inline float to_float(double d) { return static_cast<float>(d); }
inline double sqrt_d(double d) { return std::sqrt(d); }

// libm's expf: correctly handles the whole range, < 1 ulp.
inline V vexp(V x) { return std::exp(x); }

}  // namespace
}  // namespace attnode::simd::portable
