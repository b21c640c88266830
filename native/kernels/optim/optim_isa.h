// Internal: per-ISA spans of the fused optimizer updates behind optim.h.
//
// Each namespace is implemented by one translation unit compiled for that
// ISA (optim_portable.cc, optim_avx2.cc, optim_avx512.cc), all from the
// shared optim_update.inc. The frontend (optim.cc) forms the float32
// scalars, cuts tensors into blocks and does the threading. Declarations
// only (see elementwise_isa.h for why).
#pragma once

#include <cstdint>

namespace attnode::kernels {

// The float32 scalars of one SGD call (PyTorch rounds each Python scalar to
// float32 where an op uses it).
struct SgdScalars {
  float neg_lr, weight_decay, momentum, one_minus_dampening;
  bool has_weight_decay, has_momentum, nesterov, maximize;
};

// The float32 scalars of one Adam tensor (the bias corrections depend on its step).
struct AdamScalars {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay;
  float bias_correction2_sqrt, neg_step_size;
  bool has_weight_decay, amsgrad, maximize, decoupled;
};

#define ATTNODE_OPTIM_DECLS                                                                                   \
  void sgd_span(float* param, const float* grad, float* buf, int64_t n, const SgdScalars& s, bool init_buffer); \
  void adam_span(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, float* max_exp_avg_sq,     \
                 int64_t n, const AdamScalars& s);                                                              \
  double sum_squares(const float* x, int64_t n);                                                                \
  void scale_span(float* x, int64_t n, float c)
namespace portable {
ATTNODE_OPTIM_DECLS;
}  // namespace portable
namespace avx2 {
ATTNODE_OPTIM_DECLS;
}  // namespace avx2
namespace avx512 {
ATTNODE_OPTIM_DECLS;
}  // namespace avx512
#undef ATTNODE_OPTIM_DECLS

}  // namespace attnode::kernels
