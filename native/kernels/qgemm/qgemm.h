// int8 GEMM for int8-quantized weights: C = act(alpha * dequant(qA · qW) + beta * C + bias).
//
// Pure function on pointers and sizes, like gemm.h. Reached through sgemm
// with a B packed by kernels::pack_b_int8 (GemmParams::packed_b).
//
// The scheme (the TS backend, lib/backend/js/qgemm.ts, emulates it bit for bit):
//   Rounding. rne(v) is round-half-to-even of a float to an integer; every
//   other operation is one IEEE float32 operation (round to nearest even).
//   amax(v) of a row or column is max |v|; bit-wise, so a NaN wins over Inf
//   and Inf over every finite value.
//   Weights, once at packing, symmetric per output channel j (column j of
//   op(B), row j of a Linear weight):
//     sw[j] = amax / 127,  inv = 127 / amax,
//     qw[j, k] = clamp(rne(B[j, k] * inv), -127, 127)        (int8)
//   Activations, per call, symmetric per row i of op(A), the same formulas:
//     sa[i] = amax / 127,  qa[i, k] = clamp(rne(A[i, k] * (127 / amax)), -127, 127)
//   A row or column whose amax is 0 or not finite quantizes to all zeros
//   with its scale = amax / 127 (0, Inf or NaN), so NaN and Inf reach the
//   output as NaN, and zero rows give exact zeros.
//   Products, exact in int32: acc[i, j] = sum_k qa[i, k] * qw[j, k].
//     |acc| <= 127 * 127 * K < 2^31 for K <= kQgemmMaxK (the binding refuses
//     a larger K). AVX512-VNNI (vpdpbusd: u8 x s8) multiplies the shifted
//     activations qa + 128 (in [1, 255]) and subtracts the column's
//     compensation 128 * sum_k qw[j, k] (precomputed at packing); vpdpbusd
//     wraps modulo 2^32 and so does the subtraction, so the result is the
//     exact acc whenever acc itself fits int32. AVX2 (vpmaddubsw + vpmaddwd)
//     multiplies |qa| (u8) by qw with qa's sign applied (vpsignb): each int16
//     pair sum is at most 2 * 127 * 127 = 32258 < 32767, so it never
//     saturates. Every path yields the same int32 acc.
//   Dequantization, fused into the store:
//     d[i, j] = float(acc) * (sa[i] * sw[j])
//     C[i, j] = act(alpha * d + beta * C[i, j] + bias[j])   (the fp32 GEMM's epilogue)
//   so rows of an M = 1 GEMV are bit-identical to rows of the GEMM, and the
//   results do not depend on the thread count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "../gemm/gemm.h"

namespace attnode::kernels {

// Largest K whose int32 accumulators cannot overflow: 127 * 127 * K < 2^31.
constexpr int64_t kQgemmMaxK = 133143;

// Quantized op(B): n columns x k, in panels of kQNR columns (qukernel.h),
// with the per-column scales and compensations. Immutable once packed.
struct QPackedB;

// Quantizes op(B) (k x n; trans_b: B stored [n, k] with row stride ldb).
// Null when k or n is 0. K must be <= kQgemmMaxK (callers check).
std::shared_ptr<const QPackedB> qpack_b(const float* b, int64_t ldb, bool trans_b, int64_t k, int64_t n);
size_t qpacked_bytes(const QPackedB& w);

// The int8 product for GemmParams p (shape k x n of w; p.b is not read).
// nt threads at most (from sgemm).
void qgemm(const QPackedB& w, const GemmParams& p, int nt);

// Which int8 kernels run now (follows runtime::active_isa(): avx512 with
// AVX512-VNNI -> vnni, avx512 without it and avx2 -> avx2, else portable).
enum class QgemmPath : int { Portable = 0, Avx2 = 1, Avx512Vnni = 2 };
QgemmPath qgemm_path();
const char* qgemm_path_name(QgemmPath path);

// Test hooks. The quantized weight as stored: q [n x k] row-major (column j
// of op(B) is row j) and the scales sw [n].
void qpacked_read(const QPackedB& w, int8_t* q, float* sw);
// One row quantized by the active path's quantizer: q [k], returns sa.
float qgemm_quantize_row(const float* x, int64_t k, int8_t* q);

}  // namespace attnode::kernels
