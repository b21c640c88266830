// sgdStep, adamStep, clipGradNorm: validate each op's argument object (the
// OpArgs entries of lib/backend/backend.ts) and call the fused kernels in
// native/kernels/optim/.
//
// The tensors of one parameter group come as parallel lists of
// Float32Arrays (params[i], grads[i], and the optimizer state of tensor i),
// so one call updates the whole group. Every entry of a list is checked
// like a lone argument (type, length against params[i]), and no array the
// kernel writes may share a byte with any other array of the call (sorted
// by buffer and start, one sweep), so the blocks the kernel runs in parallel
// never touch the same memory.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "binding/args.h"
#include "binding/bindings.h"
#include "kernels/optim/optim.h"

namespace attnode::binding {
namespace {

// The longest list accepted (one entry per parameter tensor of a group).
constexpr uint32_t kMaxTensors = 1u << 20;

// A Float32Array[] field; `required_count` < 0: any length (<= kMaxTensors).
std::vector<Span<float>> f32_list(const NamedArgs& args, const char* name, int64_t required_count) {
  Napi::Value v = args.value(name);
  if (!v.IsArray()) args.type_error(std::string("argument '") + name + "' must be an Array of Float32Arrays, got " + type_name(v));
  Napi::Array a = v.As<Napi::Array>();
  const uint32_t len = a.Length();
  if (len > kMaxTensors) {
    args.range_error(std::string("argument '") + name + "' has " + std::to_string(len) + " entries, at most " +
                     std::to_string(kMaxTensors) + " are supported");
  }
  if (required_count >= 0 && len != static_cast<uint64_t>(required_count)) {
    args.range_error(std::string("argument '") + name + "' must have one entry per tensor (" +
                     std::to_string(required_count) + "), got " + std::to_string(len));
  }
  std::vector<Span<float>> out;
  out.reserve(len);
  for (uint32_t i = 0; i < len; ++i) {
    args.note_read();
    Napi::Value e = a.Get(i);
    if (!e.IsTypedArray() || e.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      args.type_error(std::string("argument '") + name + "[" + std::to_string(i) + "]' must be a Float32Array, got " +
                      type_name(e));
    }
    out.push_back(args.f32_value(e, name));
  }
  return out;
}

// Entry i of list `name` must hold `n` elements (the length of params[i]).
void require_same_length(const NamedArgs& args, const Span<float>& s, const char* name, size_t i, int64_t n) {
  if (s.length != n) {
    args.range_error(std::string("argument '") + name + "[" + std::to_string(i) + "]' must have " + std::to_string(n) +
                     " elements (the length of params[" + std::to_string(i) + "]), got " + std::to_string(s.length));
  }
}

struct Region {
  const void* buffer;
  int64_t begin, end;  // bytes
  const char* list;
  size_t index;
  bool written;
};

std::string region_name(const Region& r) { return std::string(r.list) + "[" + std::to_string(r.index) + "]"; }

// No written array may share a byte with any other array of the call (read-only ones may overlap each other).
void require_disjoint(const NamedArgs& args, std::vector<Region> regions) {
  regions.erase(std::remove_if(regions.begin(), regions.end(), [](const Region& r) { return r.begin == r.end; }),
                regions.end());
  std::sort(regions.begin(), regions.end(), [](const Region& a, const Region& b) {
    return a.buffer != b.buffer ? std::less<const void*>()(a.buffer, b.buffer) : a.begin < b.begin;
  });
  const Region* reach = nullptr;          // the region reaching furthest so far in this buffer
  const Region* written_reach = nullptr;  // the written one reaching furthest
  for (const Region& r : regions) {
    if (reach && reach->buffer != r.buffer) reach = written_reach = nullptr;
    const Region* clash = nullptr;
    if (r.written && reach && r.begin < reach->end) clash = reach;
    if (!r.written && written_reach && r.begin < written_reach->end) clash = written_reach;
    if (clash) {
      args.range_error("arrays '" + region_name(*clash) + "' and '" + region_name(r) +
                       "' overlap; the arrays a step writes must not share memory with any other array of the call");
    }
    if (!reach || r.end > reach->end) reach = &r;
    if (r.written && (!written_reach || r.end > written_reach->end)) written_reach = &r;
  }
}

void add_regions(std::vector<Region>& out, const std::vector<Span<float>>& list, const char* name, bool written) {
  for (size_t i = 0; i < list.size(); ++i) {
    out.push_back({list[i].buffer, list[i].byte_begin(), list[i].byte_end(), name, i, written});
  }
}

}  // namespace

Kernel ParseSgdStep(NamedArgs& args) {
  const double lr = args.number("lr");
  const double momentum = args.number("momentum");
  const double dampening = args.number("dampening");
  const double weight_decay = args.number("weightDecay");
  const bool nesterov = args.boolean("nesterov");
  const bool maximize = args.boolean("maximize");
  auto params = f32_list(args, "params", -1);
  const int64_t count = static_cast<int64_t>(params.size());
  auto grads = f32_list(args, "grads", count);
  std::vector<Span<float>> buffers;
  std::vector<int64_t> init;
  if (momentum != 0) {
    buffers = f32_list(args, "momentumBuffers", count);
    init = args.int_array("initMomentum", params.size(), 0, 1);
    if (init.size() != params.size()) {
      args.range_error("argument 'initMomentum' must have one entry per tensor (" + std::to_string(count) + "), got " +
                       std::to_string(init.size()));
    }
  }
  std::vector<Region> regions;
  for (size_t i = 0; i < params.size(); ++i) {
    require_same_length(args, grads[i], "grads", i, params[i].length);
    if (momentum != 0) require_same_length(args, buffers[i], "momentumBuffers", i, params[i].length);
  }
  add_regions(regions, params, "params", true);
  add_regions(regions, grads, "grads", false);
  add_regions(regions, buffers, "momentumBuffers", true);
  require_disjoint(args, std::move(regions));

  std::vector<kernels::SgdTensor> tensors(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    tensors[i].param = params[i].data;
    tensors[i].grad = grads[i].data;
    tensors[i].n = params[i].length;
    if (momentum != 0) {
      tensors[i].momentum_buffer = buffers[i].data;
      tensors[i].init_buffer = init[i] != 0;
    }
  }
  if (tensors.empty()) return {};
  return [tensors = std::move(tensors), lr, momentum, dampening, weight_decay, nesterov, maximize] {
    kernels::SgdParams p;
    p.tensors = tensors.data();
    p.count = static_cast<int64_t>(tensors.size());
    p.lr = lr;
    p.momentum = momentum;
    p.dampening = dampening;
    p.weight_decay = weight_decay;
    p.nesterov = nesterov;
    p.maximize = maximize;
    kernels::sgd_step(p);
  };
}

Kernel ParseAdamStep(NamedArgs& args) {
  const double lr = args.number("lr");
  const double beta1 = args.number("beta1");
  const double beta2 = args.number("beta2");
  const double eps = args.number("eps");
  const double weight_decay = args.number("weightDecay");
  const bool amsgrad = args.boolean("amsgrad");
  const bool maximize = args.boolean("maximize");
  const bool decoupled = args.boolean("decoupled");
  auto params = f32_list(args, "params", -1);
  const int64_t count = static_cast<int64_t>(params.size());
  auto steps = args.int_array("steps", params.size(), 1, int64_t{1} << 53);
  if (steps.size() != params.size()) {
    args.range_error("argument 'steps' must have one entry per tensor (" + std::to_string(count) + "), got " +
                     std::to_string(steps.size()));
  }
  auto grads = f32_list(args, "grads", count);
  auto exp_avgs = f32_list(args, "expAvgs", count);
  auto exp_avg_sqs = f32_list(args, "expAvgSqs", count);
  std::vector<Span<float>> max_sqs;
  if (amsgrad) max_sqs = f32_list(args, "maxExpAvgSqs", count);
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t n = params[i].length;
    require_same_length(args, grads[i], "grads", i, n);
    require_same_length(args, exp_avgs[i], "expAvgs", i, n);
    require_same_length(args, exp_avg_sqs[i], "expAvgSqs", i, n);
    if (amsgrad) require_same_length(args, max_sqs[i], "maxExpAvgSqs", i, n);
  }
  std::vector<Region> regions;
  add_regions(regions, params, "params", true);
  add_regions(regions, grads, "grads", false);
  add_regions(regions, exp_avgs, "expAvgs", true);
  add_regions(regions, exp_avg_sqs, "expAvgSqs", true);
  add_regions(regions, max_sqs, "maxExpAvgSqs", true);
  require_disjoint(args, std::move(regions));

  std::vector<kernels::AdamTensor> tensors(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    kernels::AdamTensor& t = tensors[i];
    t.param = params[i].data;
    t.grad = grads[i].data;
    t.exp_avg = exp_avgs[i].data;
    t.exp_avg_sq = exp_avg_sqs[i].data;
    t.max_exp_avg_sq = amsgrad ? max_sqs[i].data : nullptr;
    t.n = params[i].length;
    t.step = steps[i];
  }
  if (tensors.empty()) return {};
  return [tensors = std::move(tensors), lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled] {
    kernels::AdamParams p;
    p.tensors = tensors.data();
    p.count = static_cast<int64_t>(tensors.size());
    p.lr = lr;
    p.beta1 = beta1;
    p.beta2 = beta2;
    p.eps = eps;
    p.weight_decay = weight_decay;
    p.amsgrad = amsgrad;
    p.maximize = maximize;
    p.decoupled = decoupled;
    kernels::adam_step(p);
  };
}

Kernel ParseClipGradNorm(NamedArgs& args) {
  const double max_norm = args.number("maxNorm");
  const double norm_type = args.number("normType");
  if (!(norm_type > 0)) {
    args.range_error("argument 'normType' must be a positive number or Infinity, got " + js_number(norm_type));
  }
  auto grads = f32_list(args, "grads", -1);
  auto total = args.f32("totalNorm");
  args.require_length(total, "totalNorm", 1, "one element");
  std::vector<Region> regions;
  add_regions(regions, grads, "grads", true);
  regions.push_back({total.buffer, total.byte_begin(), total.byte_begin() + 4, "totalNorm", 0, true});
  require_disjoint(args, std::move(regions));

  std::vector<float*> ptrs(grads.size());
  std::vector<int64_t> sizes(grads.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    ptrs[i] = grads[i].data;
    sizes[i] = grads[i].length;
  }
  float* out = total.data;
  return [ptrs = std::move(ptrs), sizes = std::move(sizes), max_norm, norm_type, out] {
    kernels::ClipParams p;
    p.grads = ptrs.data();
    p.sizes = sizes.data();
    p.count = static_cast<int64_t>(ptrs.size());
    p.max_norm = max_norm;
    p.norm_type = norm_type;
    p.total_norm = out;
    kernels::clip_grad_norm(p);
  };
}

}  // namespace attnode::binding
