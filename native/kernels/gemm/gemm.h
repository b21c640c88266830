// fp32 GEMM, Goto/BLIS style: C = act(alpha * op(A) * op(B) + beta * C + bias).
//
// Pure function on pointers and sizes: knows nothing of N-API. Callers
// (native/binding) have validated every size and pointer extent already.
// Row-major throughout. op(X) = X or Xᵀ as selected by trans_a / trans_b, so
// PyTorch's Linear (y = x · Wᵀ with W stored [out, in]) is trans_b = true and
// needs no transposing copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace attnode::kernels {

// A B operand (typically a Linear weight) packed once, for the ISA active at
// packing time, into the exact panel layout the GEMM streams, so calls that
// reuse it skip packing B (~10-20% of a GEMM at M = 128). Immutable; shared
// by every call that uses it.
class PackedB;
using PackedBPtr = std::shared_ptr<const PackedB>;

// Packs op(B) (k x n; trans_b: B stored [n, k] with row stride ldb, as a
// PyTorch Linear weight). Returns null when packing would not be used
// (k or n is 0).
PackedBPtr pack_b(const float* b, int64_t ldb, bool trans_b, int64_t k, int64_t n);
size_t packed_b_bytes(const PackedB& packed);
// Whether `packed` holds op(B) of this shape and transpose.
bool packed_b_matches(const PackedB& packed, int64_t k, int64_t n, bool trans_b);

// ---- bf16 weights (reduced precision, opt-in; fp32 stays the default and the reference) ----
//
// A B packed in bf16 makes sgemm round op(B) (once, at packing) and op(A)
// (per call) to bf16 with round-to-nearest-even, then multiply on
// AVX512-BF16 (vdpbf16ps) with fp32 accumulation; the epilogue (alpha,
// beta, bias, activation) is the fp32 one. Half the weight bytes and ~2x the
// multiply-adds per cycle, at ~8 significant bits per input: expect relative
// errors around 1e-3..1e-2 against the fp32 product.
enum class PackedPrecision : int { Float32 = 0, BFloat16 = 1, Int8 = 2 };

// Whether the bf16 kernels can run now: the CPU (and OS) support AVX512-BF16
// and the active kernel path is avx512 (not lowered by ATTNODE_ISA/set_isa).
bool bf16_gemm_available();

// Packs op(B) as bf16 (same arguments as pack_b). Returns null when k or n is
// 0 or when !bf16_gemm_available(). Used by sgemm for every M >= 1 (M = 1 runs
// a GEMV over the packed bf16 B) while bf16_gemm_available(); if the path is
// lowered after packing, sgemm ignores it and runs the fp32 path on
// GemmParams::b (which must hold the same fp32 values), until the path is
// raised again.
PackedBPtr pack_b_bf16(const float* b, int64_t ldb, bool trans_b, int64_t k, int64_t n);
PackedPrecision packed_b_precision(const PackedB& packed);

// ---- int8 weights (reduced precision, opt-in; the scheme is in qgemm/qgemm.h) ----
//
// Quantizes op(B) per output column to int8 once (same arguments as pack_b;
// null when k or n is 0). sgemm given it runs the int8 GEMM (qgemm) for every
// M on whichever kernel path is active: the quantized layout does not depend
// on the path, and there is no fp32 fallback (GemmParams::b is not read).
PackedBPtr pack_b_int8(const float* b, int64_t ldb, bool trans_b, int64_t k, int64_t n);
struct QPackedB;
// The quantized weight of an int8 PackedB (null for the other precisions).
const QPackedB* packed_b_int8(const PackedB& packed);

enum class Activation : int { None = 0, Relu = 1, Gelu = 2, GeluTanh = 3 };

struct GemmParams {
  int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;  // op(A) is m x k
  int64_t lda = 0;           // row stride of A as stored (k if !trans_a, m if trans_a)
  bool trans_a = false;
  const float* b = nullptr;  // op(B) is k x n
  int64_t ldb = 0;           // row stride of B as stored (n if !trans_b, k if trans_b)
  bool trans_b = false;
  float* c = nullptr;  // m x n
  int64_t ldc = 0;
  float alpha = 1.0f;
  float beta = 0.0f;            // beta == 0: C is write-only (NaNs in C are not propagated)
  const float* bias = nullptr;  // length n, added to every row, or null
  Activation act = Activation::None;
  // Optional pre-packed op(B) (see pack_b, pack_b_bf16). An fp32 one is used
  // when it matches the shape and the active ISA, for M >= 2; a bf16 one for
  // every M while bf16_gemm_available(). `b` must still be valid (the fp32
  // M = 1 path and any fallback read it), and must hold the same values.
  const PackedB* packed_b = nullptr;
  // Optional, length m: row_sums_a[i] = alpha * sum_k op(A)[i, k] + beta * row_sums_a[i] (beta == 0: not read),
  // the product with a column of ones beside C. A Linear's bias gradient next to its weight gradient
  // (op(A) = dYᵀ): the GEMM sums the A it packs instead of a GEMV reading dY again. Summed in order of k, so
  // independent of the thread count. sgemm only (not sgemm_batched).
  float* row_sums_a = nullptr;
};

// The fp32 GEMM's blocking and micro-kernel for the active ISA, chosen once
// per ISA from what cpuid reports: a measured entry for the microarchitecture
// when the table has one (runtime::CpuInfo::uarch), else rules derived from
// the L1d/L2 sizes; ATTNODE_GEMM_BLOCKING can override fields (see gemm.cc).
struct GemmTuning {
  std::string entry;   // "zen4", "zen5", "derived"; "+env" appended when ATTNODE_GEMM_BLOCKING applied
  int mr = 0, nr = 0;  // micro-tile
  int64_t kc = 0;      // largest K block (K is split into equal blocks of at most kc)
  int64_t nc = 0;      // largest packed-B block width
  // Largest packed-B block width when a tile covers few row panels (M <= 32 MR, any thread count) and the
  // micro-kernel calls prefetch the next block (packed, or the next pack's source rows): the current B̃ and the
  // next block then share L2, so each gets about 30% of it.
  int64_t nc_stream = 0;
  bool direct_a = false;  // micro-kernel reads a non-transposed A in place instead of packing it
  // Micro-kernel reads a non-transposed, unpacked B in place at M <= 16 MR (when its row stride allows, see
  // direct_b_ok in gemm.cc) instead of packing B̃ per tile.
  bool direct_b = false;
};
GemmTuning gemm_tuning();

// Whether sgemm(p) on the active kernel path reads p's B in place instead of packing it (an unpacked,
// non-transposed B at few row panels; see direct_b_ok in gemm.cc). For tests and benchmarks.
bool sgemm_reads_b_in_place(const GemmParams& p);

// Runs on the runtime thread pool with up to `max_threads` threads
// (<= 0: the pool's current size). The kernel path is runtime::active_isa().
void sgemm(const GemmParams& p, int max_threads = 0);

// Batched: `batch` independent GEMMs, operand i at a + i*stride_a etc.
// (a stride of 0 broadcasts that operand). Threads split over batch when
// the batch is large enough, else inside each GEMM.
void sgemm_batched(const GemmParams& p, int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c,
                   int max_threads = 0);

// One GEMM of a group (sgemm_group): sgemm_batched's arguments.
struct GemmCall {
  GemmParams p;
  int64_t batch = 1, stride_a = 0, stride_b = 0, stride_c = 0;
};

// Independent GEMMs (no call writes memory another reads or writes), e.g. a
// Linear's data and weight gradients. With fewer than two threads per GEMM
// they run concurrently, each whole on one thread (a dynamic region over the
// calls: a thread that finishes takes the next one, and a worker that does
// not start leaves them all to the caller), instead of one after another
// split over every thread: small products split across threads pay for their
// shared packing, re-packed panels and the tail of uneven tiles, while whole
// products on separate threads pay nothing. Otherwise one after another as
// sgemm/sgemm_batched. Either way each product equals the one its own call
// gives, bit for bit (its arithmetic does not depend on its thread count).
void sgemm_group(const GemmCall* calls, int count, int max_threads = 0);

}  // namespace attnode::kernels
