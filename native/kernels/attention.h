// Fused scaled dot-product attention (flash-style), the core of
// nn.MultiheadAttention and F.scaled_dot_product_attention:
//
//   out = softmax(scale * q kᵀ + masks) v     per (batch, head)
//
// q, k, v and out are addressed by element strides over (batch, head,
// position) with a contiguous feature axis (so head split/merge transposes
// are absorbed by the strides). Queries are processed in tiles against
// streamed key/value blocks with an online softmax (running max and sum):
// no lq x lk matrix is materialised unless `weights` is requested.
//
// Semantics (PyTorch):
//  * Masks are broadcast over (batch, head, query, key) by element strides
//    (0 broadcasts) and applied in order: a float mask is added to the scaled
//    score, a byte (bool) mask excludes the key where it is non-zero
//    (nn.MultiheadAttention's `true` = not allowed to attend; the TS layer
//    inverts SDPA-style masks before they get here).
//  * causal: key j is visible to query i only when j <= i (PyTorch is_causal,
//    top-left aligned, also when lq != lk). Key blocks wholly above the
//    diagonal are skipped.
//  * A query row whose keys are all excluded (or lk == 0) gives NaN output
//    and NaN weights, as softmax over an all -inf row does in PyTorch 1.13's
//    nn.MultiheadAttention; causally hidden weights are 0.
//
// Pure function on pointers and sizes (no N-API); the binding validated
// every extent. The kernel path is runtime::active_isa().
#pragma once

#include <cstdint>

namespace attnode::kernels {

// Exactly one of f32 / u8 is set for a used mask.
struct AttentionMask {
  const float* f32 = nullptr;         // added to the scaled scores
  const uint8_t* u8 = nullptr;        // non-zero = masked out
  int64_t strides[4] = {0, 0, 0, 0};  // over (batch, head, query, key), in elements
};

struct AttentionParams {
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  float* out = nullptr;
  // Element strides over (batch, head, position); the feature axis is contiguous.
  int64_t q_strides[3] = {0, 0, 0};
  int64_t k_strides[3] = {0, 0, 0};
  int64_t v_strides[3] = {0, 0, 0};
  int64_t out_strides[3] = {0, 0, 0};
  int64_t batch = 0, heads = 0, lq = 0, lk = 0, dk = 0, dv = 0;
  float scale = 1.0f;
  bool causal = false;
  // Contiguous [batch, heads, lq, lk] softmax probabilities, or null (not
  // requested: never materialised). Must not alias the other buffers.
  float* weights = nullptr;
  AttentionMask masks[2];
  int num_masks = 0;
};

// Runs on the runtime thread pool with up to `max_threads` threads
// (<= 0: the pool's current size), split over (batch, head, query tile).
void attention(const AttentionParams& p, int max_threads = 0);

}  // namespace attnode::kernels
