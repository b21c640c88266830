// Frontend of the fused optimizer updates (compiled for baseline x86-64):
// forms the float32 scalars PyTorch would use, cuts every tensor of the
// call into fixed blocks, and runs the active path's span kernels over the
// blocks on the thread pool. A block's elements are computed by the same
// code whichever thread runs it, and reductions (clip_grad_norm) add the
// blocks' double partial sums in block order, so results do not depend on
// the thread count.
#include "optim.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../common/dispatch.h"
#include "../common/parallel.h"
#include "optim_isa.h"

namespace attnode::kernels {
namespace {

// Elements per block: a few microseconds of Adam work, small enough to
// balance two threads over a handful of large tensors.
constexpr int64_t kBlock = 16 * 1024;

struct Block {
  int64_t tensor, begin, end;
};

// Every tensor's [0, n) in blocks of at most kBlock elements, in order.
template <typename SizeOf>
std::vector<Block> make_blocks(int64_t count, SizeOf size_of, int64_t* total) {
  std::vector<Block> blocks;
  *total = 0;
  for (int64_t t = 0; t < count; ++t) {
    const int64_t n = size_of(t);
    *total += n;
    for (int64_t b = 0; b < n; b += kBlock) blocks.push_back({t, b, std::min(n, b + kBlock)});
  }
  return blocks;
}

// f(block) for every block; on the pool only when the call holds enough
// elements to repay waking it (small groups run inline).
template <typename F>
void for_blocks(const std::vector<Block>& blocks, int64_t total, F&& f) {
  const int64_t nb = static_cast<int64_t>(blocks.size());
  if (total <= kGrain) {
    for (int64_t i = 0; i < nb; ++i) f(blocks[static_cast<size_t>(i)]);
    return;
  }
  runtime::ThreadPool::instance().parallel_for(nb, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) f(blocks[static_cast<size_t>(i)]);
  });
}

using SgdSpanFn = void (*)(float*, const float*, float*, int64_t, const SgdScalars&, bool);
using AdamSpanFn = void (*)(float*, const float*, float*, float*, float*, int64_t, const AdamScalars&);
using SumSquaresFn = double (*)(const float*, int64_t);
using ScaleFn = void (*)(float*, int64_t, float);

// sum |x|^p (p finite, not 2) or max |x| (p = +inf, NaN propagating) over a span, in double.
double span_norm_part(const float* x, int64_t n, double p, SumSquaresFn sum_squares) {
  if (std::isinf(p)) {
    float m = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
      const float a = std::fabs(x[i]);
      if (a > m || a != a) m = a;
      if (m != m) break;  // NaN is final
    }
    return m;
  }
  if (p == 2.0) return sum_squares(x, n);
  double s = 0.0;
  if (p == 1.0) {
    for (int64_t i = 0; i < n; ++i) s += std::fabs(static_cast<double>(x[i]));
  } else {
    for (int64_t i = 0; i < n; ++i) s += std::pow(std::fabs(static_cast<double>(x[i])), p);
  }
  return s;
}

// Partial results of one tensor's blocks, combined; then the norm of order p, rounded to float32.
float finish_norm(const double* parts, int64_t count, double p) {
  if (std::isinf(p)) {
    double m = 0.0;
    for (int64_t i = 0; i < count; ++i) {
      if (parts[i] > m || parts[i] != parts[i]) m = parts[i];
      if (m != m) break;
    }
    return static_cast<float>(m);
  }
  double s = 0.0;
  for (int64_t i = 0; i < count; ++i) s += parts[i];
  if (p == 1.0) return static_cast<float>(s);
  if (p == 2.0) return static_cast<float>(std::sqrt(s));
  return static_cast<float>(std::pow(s, 1.0 / p));
}

}  // namespace

void sgd_step(const SgdParams& p) {
  SgdScalars s;
  s.neg_lr = static_cast<float>(-p.lr);
  s.weight_decay = static_cast<float>(p.weight_decay);
  s.momentum = static_cast<float>(p.momentum);
  s.one_minus_dampening = static_cast<float>(1.0 - p.dampening);
  s.has_weight_decay = p.weight_decay != 0;
  s.has_momentum = p.momentum != 0;
  s.nesterov = p.nesterov;
  s.maximize = p.maximize;
  const SgdSpanFn span = for_active_isa<SgdSpanFn>(portable::sgd_span, avx2::sgd_span, avx512::sgd_span);
  int64_t total = 0;
  const auto blocks = make_blocks(p.count, [&](int64_t t) { return p.tensors[t].n; }, &total);
  for_blocks(blocks, total, [&](const Block& b) {
    const SgdTensor& t = p.tensors[b.tensor];
    span(t.param + b.begin, t.grad + b.begin, t.momentum_buffer ? t.momentum_buffer + b.begin : nullptr,
         b.end - b.begin, s, t.init_buffer);
  });
}

void adam_step(const AdamParams& p) {
  // Per tensor: its step's bias corrections, in double as Python forms them, then rounded to float32 where used.
  std::vector<AdamScalars> scalars(static_cast<size_t>(p.count));
  for (int64_t t = 0; t < p.count; ++t) {
    AdamScalars& s = scalars[static_cast<size_t>(t)];
    const double step = static_cast<double>(p.tensors[t].step);
    const double bias_correction1 = 1.0 - std::pow(p.beta1, step);
    const double bias_correction2 = 1.0 - std::pow(p.beta2, step);
    s.beta1 = static_cast<float>(p.beta1);
    s.one_minus_beta1 = static_cast<float>(1.0 - p.beta1);
    s.beta2 = static_cast<float>(p.beta2);
    s.one_minus_beta2 = static_cast<float>(1.0 - p.beta2);
    s.eps = static_cast<float>(p.eps);
    s.weight_decay = static_cast<float>(p.weight_decay);
    s.decay = static_cast<float>(1.0 - p.lr * p.weight_decay);
    s.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
    s.neg_step_size = static_cast<float>(-(p.lr / bias_correction1));
    s.has_weight_decay = p.weight_decay != 0;
    s.amsgrad = p.amsgrad;
    s.maximize = p.maximize;
    s.decoupled = p.decoupled;
  }
  const AdamSpanFn span = for_active_isa<AdamSpanFn>(portable::adam_span, avx2::adam_span, avx512::adam_span);
  int64_t total = 0;
  const auto blocks = make_blocks(p.count, [&](int64_t t) { return p.tensors[t].n; }, &total);
  for_blocks(blocks, total, [&](const Block& b) {
    const AdamTensor& t = p.tensors[b.tensor];
    span(t.param + b.begin, t.grad + b.begin, t.exp_avg + b.begin, t.exp_avg_sq + b.begin,
         t.max_exp_avg_sq ? t.max_exp_avg_sq + b.begin : nullptr, b.end - b.begin, scalars[static_cast<size_t>(b.tensor)]);
  });
}

void clip_grad_norm(const ClipParams& p) {
  const SumSquaresFn sum_squares =
      for_active_isa<SumSquaresFn>(portable::sum_squares, avx2::sum_squares, avx512::sum_squares);
  const ScaleFn scale = for_active_isa<ScaleFn>(portable::scale_span, avx2::scale_span, avx512::scale_span);
  int64_t total = 0;
  const auto blocks = make_blocks(p.count, [&](int64_t t) { return p.sizes[t]; }, &total);
  std::vector<double> parts(blocks.size());
  for_blocks(blocks, total, [&](const Block& b) {
    parts[static_cast<size_t>(&b - blocks.data())] =
        span_norm_part(p.grads[b.tensor] + b.begin, b.end - b.begin, p.norm_type, sum_squares);
  });
  // Per tensor (torch.norm(g, p), float32), then the norm of those norms.
  std::vector<double> norms(static_cast<size_t>(p.count));
  size_t first = 0;
  for (int64_t t = 0; t < p.count; ++t) {
    size_t last = first;
    while (last < blocks.size() && blocks[last].tensor == t) ++last;
    const float n = finish_norm(parts.data() + first, static_cast<int64_t>(last - first), p.norm_type);
    const double nd = n;
    norms[static_cast<size_t>(t)] = std::isinf(p.norm_type) || p.norm_type == 1.0 ? nd
                                    : p.norm_type == 2.0                           ? nd * nd
                                                                                   : std::pow(nd, p.norm_type);
    first = last;
  }
  const float total_norm = finish_norm(norms.data(), p.count, p.norm_type);
  *p.total_norm = total_norm;
  // max_norm / (total + 1e-6) in float32: Python's float / tensor is reciprocal() * float; then clamp(max=1).
  const float denom = total_norm + static_cast<float>(1e-6);
  float coef = (1.0f / denom) * static_cast<float>(p.max_norm);
  if (coef > 1.0f) coef = 1.0f;
  if (coef == 1.0f) return;  // multiplying by 1 changes nothing
  for_blocks(blocks, total, [&](const Block& b) { scale(p.grads[b.tensor] + b.begin, b.end - b.begin, coef); });
}

}  // namespace attnode::kernels
