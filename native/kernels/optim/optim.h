// Fused optimizer updates and gradient-norm clipping over lists of tensors.
//
// Pure functions on pointers and sizes (no N-API); the binding validated
// every length and that no output overlaps another buffer. One call updates
// every tensor of a parameter group: the frontend cuts the tensors into
// fixed blocks and spreads the blocks over the thread pool, and each element
// is computed by the same code whichever block or thread it lands in, so
// results do not depend on the thread count.
//
// The arithmetic is PyTorch 1.13's (torch/optim/sgd.py, adam.py, adamw.py,
// single-tensor path, CPU) op by op in float32: every Python scalar is
// rounded to float32 once, `add(x, alpha=a)` is a fused multiply-add
// (ATen's vectorised add is vec::fmadd), addcmul is fma(value*t1, t2, self),
// addcdiv is self + (value*t1)/t2, and the bias corrections are formed in
// double as Python does. So the three kernel paths agree with PyTorch to the
// last bit up to the rare double rounding of the portable path's emulated
// fma.
#pragma once

#include <cstdint>

namespace attnode::kernels {

// One tensor of an SGD update. momentum_buffer is null when momentum == 0.
struct SgdTensor {
  float* param = nullptr;
  const float* grad = nullptr;
  float* momentum_buffer = nullptr;
  int64_t n = 0;
  // First step with momentum: the buffer becomes the (decayed) gradient
  // itself (torch.clone(d_p)) instead of the momentum update.
  bool init_buffer = false;
};

struct SgdParams {
  const SgdTensor* tensors = nullptr;
  int64_t count = 0;
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false, maximize = false;
};

// d = ±grad (+ wd·param); with momentum: buf = init ? d : momentum·buf +
// (1 − dampening)·d, d = nesterov ? d + momentum·buf : buf; param −= lr·d.
void sgd_step(const SgdParams& p);

// One tensor of an Adam/AdamW update. max_exp_avg_sq is null unless amsgrad.
struct AdamTensor {
  float* param = nullptr;
  const float* grad = nullptr;
  float* exp_avg = nullptr;
  float* exp_avg_sq = nullptr;
  float* max_exp_avg_sq = nullptr;
  int64_t n = 0;
  // This tensor's step count after the increment (>= 1): tensors of one
  // group can differ (a parameter without a gradient is skipped).
  int64_t step = 1;
};

struct AdamParams {
  const AdamTensor* tensors = nullptr;
  int64_t count = 0;
  double lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0;
  bool amsgrad = false, maximize = false;
  // AdamW: param *= 1 − lr·wd before the update, instead of adding wd·param
  // to the gradient.
  bool decoupled = false;
};

void adam_step(const AdamParams& p);

// clip_grad_norm_: the norm of order norm_type (> 0, or +inf) of every
// gradient, each rounded to float32 (torch.norm per tensor), then the same
// norm of those norms (the total, written to *total_norm); every gradient
// is then multiplied by min(1, float32(max_norm) · (1 / (total + 1e-6)))
// in float32 (PyTorch's float / tensor is a reciprocal times the scalar).
// Per-tensor sums run in double over fixed blocks added in order.
struct ClipParams {
  float* const* grads = nullptr;
  const int64_t* sizes = nullptr;
  int64_t count = 0;
  double max_norm = 0;
  double norm_type = 2;
  float* total_norm = nullptr;
};

void clip_grad_norm(const ClipParams& p);

}  // namespace attnode::kernels
