// Fused scaled dot-product attention (flash-style): out = softmax(scale·q·kᵀ + masks)·v
// per (batch, head), never materialising the lq×lk score matrix unless the
// caller asks for the weights.
//
// Contract (the binding and the TS side are written against it):
// q, k, v and out are addressed through element strides over (batch, head,
// position) with a contiguous feature axis, so the head split/merge
// transposes of multi-head attention are absorbed (q/k/v can point into one
// packed [L, N, 3E] projection buffer). Pure function: no N-API; the binding
// validated every extent.
#pragma once

#include <cstdint>

namespace attnode::kernels {

struct AttentionMask {
  // Exactly one of f32 / u8 is non-null. f32 values are added to the scaled
  // score; a non-zero u8 value excludes the key (PyTorch bool mask: true =
  // not allowed to attend).
  const float* f32 = nullptr;
  const uint8_t* u8 = nullptr;
  int64_t strides[4] = {0, 0, 0, 0};  // over (batch, head, query, key); 0 broadcasts
};

// Precision of the products Q·Kᵀ and P·V. BFloat16 rounds Q, K, V and the
// probabilities P to bf16 and multiplies them with vdpbf16ps (float32
// accumulation; softmax, masks and the output stay float32): twice the
// multiply-adds per instruction and half the K/V bytes, at ~3 significant
// digits per product. It applies where bf16_attention_available() and the
// call has no weights output and more than kAttnSmallRows queries; other
// calls (and every call on a lowered kernel path) run float32.
enum class AttentionPrecision : uint8_t { Float32, BFloat16 };

struct AttentionParams {
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  float* out = nullptr;
  int64_t q_strides[3] = {0, 0, 0};  // (batch, head, position), in elements
  int64_t k_strides[3] = {0, 0, 0};
  int64_t v_strides[3] = {0, 0, 0};
  int64_t out_strides[3] = {0, 0, 0};
  int64_t batch = 0, heads = 0, lq = 0, lk = 0, dk = 0, dv = 0;
  // Key/value heads (grouped-query attention): query head h reads K/V head
  // h / (heads / kv_heads); k_strides/v_strides address kv_heads heads, so a
  // shared head is never copied. Must divide heads; 0 means heads.
  int64_t kv_heads = 0;
  float scale = 1.0f;
  AttentionMask masks[2];
  int num_masks = 0;
  // Key j visible to query i only when j <= i (PyTorch is_causal: top-left aligned).
  bool causal = false;
  // Optional [batch, heads, lq, lk] contiguous softmax probabilities.
  float* weights = nullptr;
  AttentionPrecision precision = AttentionPrecision::Float32;
  // Pooled keys and values (continuous batching: every sequence's K/V rows
  // live in one pool, each sequence at its own offset and length). When
  // kv_starts is set, batch b reads its keys and values from position
  // kv_starts[b] of k and v (through k_strides[2] / v_strides[2]; the batch
  // strides of k and v are not used). When kv_lengths is set, batch b sees
  // its first kv_lengths[b] <= lk keys only (a shorter sequence of the
  // batch; 0 gives NaN rows, as a fully masked row). Masks are still indexed
  // by (b, h, i, j). Either may be set alone. Such calls run float32 and
  // take no weights output (the caller ensures weights == nullptr).
  const int32_t* kv_starts = nullptr;
  const int32_t* kv_lengths = nullptr;
  // Optional [batch, heads, lq] contiguous: each query row's log-sum-exp
  // L = log Σ_j exp(scale·q·k_j + masks) (NaN for a fully masked row), what
  // attention_backward recomputes the probabilities from. Such calls run
  // float32; not with kv_starts / kv_lengths.
  float* lse = nullptr;
  // Dropout on the probabilities (training): each (b, h, i, j) is zeroed
  // with probability dropout_p and kept ones are scaled by 1 / (1 − p).
  // Which are kept is a hash of (dropout_seed, row (b·heads + h)·lq + i,
  // key j) (attention_tile.inc's dropout_keep; lib/backend/js/attention.ts
  // computes the same bits), so attention_backward regenerates the mask
  // instead of storing it. 0 = none; such calls run float32, without
  // weights output and without kv_starts / kv_lengths.
  float dropout_p = 0.0f;
  uint32_t dropout_seed = 0;
};

// The gradients of one attention call from the gradient of its output
// (FlashAttention-2's backward): with D_i = dO_i · O_i, per key block
//   P = exp(scale·Q·Kᵀ + masks − L),  dV += Pᵀ·dO,  dP = dO·Vᵀ,
//   dS = P ∘ (dP − D),  dQ += scale·dS·K,  dK += scale·dSᵀ·Q,
// never holding more than one query tile × key block of scores: memory is
// per-thread scratch, O(block · d), whatever the sequence lengths.
struct AttentionBackwardParams {
  // q, k, v, out (the forward's output O) with their strides, the sizes,
  // kv_heads, scale, masks, causal and dropout of the forward call; its
  // weights, precision, lse and pooled fields are not read.
  AttentionParams fwd;
  const float* dout = nullptr;  // gradient of out, (batch, head, position) strides, features contiguous
  int64_t dout_strides[3] = {0, 0, 0};
  const float* lse = nullptr;  // the forward's AttentionParams::lse, [batch, heads, lq]
  // Outputs, each optional (null: not computed): dq over [batch, heads, lq,
  // dk], dk and dv over [batch, kv_heads, lk, dk | dv] (a group's query
  // heads summed into their shared key/value head), through their strides.
  float* dq = nullptr;
  float* dk = nullptr;
  float* dv = nullptr;
  int64_t dq_strides[3] = {0, 0, 0};
  int64_t dk_strides[3] = {0, 0, 0};
  int64_t dv_strides[3] = {0, 0, 0};
};

// The CPU has AVX512-BF16 and the active kernel path is avx512.
bool bf16_attention_available();

// The precision attention(p) computes in (see AttentionPrecision).
AttentionPrecision effective_precision(const AttentionParams& p);

// Fully masked query rows (every score -inf, or lk == 0) produce NaN in out
// (and weights), as PyTorch's softmax over all -inf does; causally hidden
// weights are 0. Masks apply in order (float added, u8 excludes). Runs on the
// runtime thread pool, parallel over batch × heads × query blocks, with up
// to `max_threads` threads (<= 0, the default: the pool's size); kernel
// path from active_isa(). Key blocks wholly above the causal diagonal are skipped.
void attention(const AttentionParams& p, int max_threads = 0);

// Writes the requested gradients (see AttentionBackwardParams). Two parallel
// regions: dK and dV over (batch, kv head, key block) tasks, each walking
// every query tile of its group's heads; dQ over (batch, head, query tile)
// tasks, each walking the key blocks. Every output row is summed by one task
// in a fixed order, so results do not depend on the thread count. Returns
// the workspace bytes the call used (per-thread scratch × threads), which is
// O((dk + dv) · block), never O(lq · lk).
int64_t attention_backward(const AttentionBackwardParams& p, int max_threads = 0);

}  // namespace attnode::kernels
