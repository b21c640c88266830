// Rotary position embedding (RoPE) over [batch, seq, heads, dim] rows.
//
// Pure function on pointers and sizes (no N-API); the binding validated every
// extent, the strides and the positions. x and y are addressed through
// element strides over (batch, position, head) with a contiguous feature
// axis, so heads of a packed QKV projection are rotated where they lie; y may
// be x itself (same start and strides: in place).
#pragma once

#include <cstdint>

namespace attnode::kernels {

struct RopeParams {
  const float* x = nullptr;
  float* y = nullptr;
  int64_t batch = 0, seq = 0, heads = 0, dim = 0;
  // The first rotary_dim features (even, <= dim) are rotated, the rest copied.
  int64_t rotary_dim = 0;
  int64_t x_strides[3] = {0, 0, 0};  // (batch, position, head), in elements
  int64_t y_strides[3] = {0, 0, 0};
  // Absolute position of (b, l): positions[b * positions_batch_stride + l]
  // (stride 0: one row of seq positions shared by every batch row).
  const int32_t* positions = nullptr;
  int64_t positions_batch_stride = 0;
  // rotary_dim / 2 frequencies: angle(i) = float(position) * inv_freq[i].
  const float* inv_freq = nullptr;
  // false: pairs (i, i + rotary_dim/2) (Hugging Face rotate_half);
  // true: pairs (2i, 2i + 1) (GPT-J, Meta's Llama, llama2.c).
  bool interleaved = false;
};

// Per pair with angle a = float32(float32(position) * inv_freq[i]), c and s
// its cosine and sine (evaluated in double, rounded to float32):
//   y0 = x0*c - x1*s, y1 = x1*c + x0*s
// with each product rounded to float32 before the sum, as PyTorch computes
// x*cos + rotate_half(x)*sin in float32 (no fused multiply-add). The cos/sin
// table of the call's positions is built once per call; rows are spread
// over the thread pool. Returns -1, or the index into `positions` of a
// negative entry (then nothing is written: a recorded call re-checks
// positions JS may have changed since they were validated).
int64_t rope(const RopeParams& p);

}  // namespace attnode::kernels
