// attention({ q, k, v, out, qStrides, kStrides, vStrides, outStrides, batch, heads, lq, lk, dk, dv, scale, masks,
//             causal, weights, precision?, kvHeads? })   (AttentionArgs in lib/backend/backend.ts)
// kvHeads (default heads) must divide heads: query head h reads key/value head h / (heads / kvHeads), and
// k/v are checked over [batch, kvHeads, lk] (grouped-query attention).
//
// *Strides = [batch, head, position]
// element strides (feature axis contiguous); masks = array of up to two
// { data: Float32Array | Uint8Array, strides: [b, h, q, k] }; weights is a
// Float32Array of batch·heads·lq·lk elements or null. precision:
// 'float32' (default; also undefined/null) | 'bfloat16' (products in bf16
// where the kernel can, see kernels::AttentionPrecision; a RangeError on a
// CPU without AVX512-BF16, float32 when only the kernel path is lowered, as
// for bf16 weights).
//
// kvStarts / kvLengths (optional Int32Arrays of batch entries; pooled K/V,
// see kernels::AttentionParams): batch b reads keys and values from position
// kvStarts[b] of k and v (kStrides[0] / vStrides[0] unused) and sees its
// first kvLengths[b] <= lk of them. Both are read again when the call runs
// (a replayed list, see runList, moves them between runs) and checked then
// against the k and v extents, so a changed entry fails the call instead of
// reading out of bounds. Such calls compute in float32 and must pass weights: null.
//
// lse (optional Float32Array of batch·heads·lq, not with kvStarts / kvLengths): receives each query row's
// log-sum-exp of its scores (NaN for a fully masked row), what attentionBackward recomputes the probabilities
// from; the call then computes in float32.
//
// dropoutP (optional number in [0, 1), default 0) and dropoutSeed (optional integer in [0, 2^32)): dropout on the
// probabilities with a mask hashed from the seed and each (row, key) (kernels::AttentionParams::dropout_p), so
// attentionBackward given the same two regenerates it; float32, not with weights or kvStarts / kvLengths.
#include "binding/args.h"
#include "binding/bindings.h"
#include "kernels/attention/attention.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnode::binding {
namespace {

// One past the last element reachable through `strides` over `sizes` plus a
// contiguous row of `width` elements.
int64_t reach(const ArgsBase& args, const int64_t* sizes, const int64_t* strides, int n, int64_t width) {
  int64_t last = 0;
  for (int d = 0; d < n; ++d) {
    if (sizes[d] == 0) return 0;
    last += checked_mul(args, sizes[d] - 1, strides[d], "stride reach");
  }
  return width == 0 ? 0 : last + width;
}

// Sufficient condition for distinct (batch, head, position) rows of an
// output never to share an element: ordered by stride, each stride clears
// everything the smaller ones can reach.
bool rows_disjoint(const int64_t* sizes, const int64_t* strides, int64_t width) {
  for (int d = 0; d < 3; ++d) {
    if (sizes[d] == 0) return true;  // no rows at all
  }
  std::array<std::pair<int64_t, int64_t>, 3> dims;  // (stride, size)
  int n = 0;
  for (int d = 0; d < 3; ++d) {
    if (sizes[d] > 1) dims[n++] = {strides[d], sizes[d]};
  }
  // Insertion sort of at most 3 entries (std::sort trips a GCC -Warray-bounds false positive here).
  for (int i = 1; i < n; ++i) {
    for (int j = i; j > 0 && dims[j] < dims[j - 1]; --j) std::swap(dims[j], dims[j - 1]);
  }
  int64_t covered = width;
  for (int i = 0; i < n; ++i) {
    if (dims[i].first < covered) return false;
    covered = dims[i].first * (dims[i].second - 1) + covered;
  }
  return true;
}

// masks: up to two { data: Float32Array | Uint8Array, strides: [b, h, q, k] } into p.masks / p.num_masks.
void parse_masks(NamedArgs& args, kernels::AttentionParams& p, int64_t batch, int64_t heads, int64_t lq, int64_t lk) {
  Napi::Value masks_value = args.value("masks");
  if (!masks_value.IsArray()) {
    args.type_error(std::string("argument 'masks' must be an Array of { data, strides }, got ") +
                    type_name(masks_value));
  }
  Napi::Array masks = masks_value.As<Napi::Array>();
  if (masks.Length() > 2) args.range_error("at most 2 masks are supported, got " + std::to_string(masks.Length()));
  const int64_t mask_sizes[4] = {batch, heads, lq, lk};
  for (uint32_t i = 0; i < masks.Length(); ++i) {
    args.note_read();
    Napi::Value m = masks.Get(i);
    const std::string name = "masks[" + std::to_string(i) + "]";
    if (!m.IsObject()) {
      args.type_error("argument '" + name + "' must be an object { data, strides }, got " + type_name(m));
    }
    Napi::Object mo = m.As<Napi::Object>();
    args.note_read();
    Napi::Value data = mo.Get("data");
    args.note_read();
    Napi::Value strides = mo.Get("strides");
    if (!data.IsTypedArray()) {
      args.type_error("argument '" + name + ".data' must be a Float32Array or Uint8Array, got " + type_name(data));
    }
    const TypedArrayMemory mem = typed_array_memory(args.env(), data);
    args.use_array(data, mem, "masks");
    if (!strides.IsArray() || strides.As<Napi::Array>().Length() != 4) {
      args.type_error("argument '" + name + ".strides' must be an Array of 4 integers");
    }
    int64_t st[4];
    for (uint32_t d = 0; d < 4; ++d) {
      args.note_read();
      Napi::Value sv = strides.As<Napi::Array>().Get(d);
      double x = sv.IsNumber() ? sv.As<Napi::Number>().DoubleValue() : -1;
      if (!(x >= 0 && x <= static_cast<double>(kMaxElements) && x == static_cast<double>(static_cast<int64_t>(x)))) {
        args.range_error("argument '" + name + ".strides' entries must be integers in [0, " +
                         std::to_string(kMaxElements) + "]");
      }
      st[d] = static_cast<int64_t>(x);
      p.masks[i].strides[d] = st[d];
    }
    const int64_t needed = reach(args, mask_sizes, st, 4, 1);
    const int64_t length = static_cast<int64_t>(mem.element_length);
    if (length < needed) {
      args.range_error("argument '" + name + ".data' has " + std::to_string(length) + " elements, expected at least " +
                       std::to_string(needed) + " (strides over [batch, heads, lq, lk])");
    }
    uint8_t* base = static_cast<uint8_t*>(mem.data);
    if (mem.type == napi_float32_array) {
      p.masks[i].f32 = reinterpret_cast<const float*>(base);
    } else if (mem.type == napi_uint8_array) {
      p.masks[i].u8 = base;
    } else {
      args.type_error("argument '" + name + ".data' must be a Float32Array or Uint8Array, got " + type_name(data));
    }
    if (needed == 0) p.masks[i] = kernels::AttentionMask{};  // nothing will be read
  }
  p.num_masks = static_cast<int>(masks.Length());
}

// A (batch, head, position) stride triple named `name`.
std::vector<int64_t> strides3(NamedArgs& args, const char* name) {
  std::vector<int64_t> st = args.int_array(name, 3, 0, kMaxElements);
  if (st.size() != 3) {
    args.range_error(std::string("argument '") + name + "' must have 3 entries (batch, head, position), got " +
                     std::to_string(st.size()));
  }
  return st;
}

// The fields of one attention call that the forward and the backward share.
struct Operands {
  Span<float> q, k, v, out;
  std::vector<int64_t> qs, ks, vs, os;
  int64_t batch, heads, kv_heads, lq, lk, dk, dv;
  double scale;
  bool causal;
  double dropout_p;
  uint32_t dropout_seed;
};

Operands read_operands(NamedArgs& args) {
  Operands o;
  o.q = args.f32("q");
  o.k = args.f32("k");
  o.v = args.f32("v");
  o.out = args.f32("out");
  o.qs = strides3(args, "qStrides");
  o.ks = strides3(args, "kStrides");
  o.vs = strides3(args, "vStrides");
  o.os = strides3(args, "outStrides");
  o.batch = args.integer("batch", 0, kMaxElements);
  o.heads = args.integer("heads", 0, kMaxElements);
  o.kv_heads = args.integer_or("kvHeads", o.heads, 0, kMaxElements);
  o.lq = args.integer("lq", 0, kMaxElements);
  o.lk = args.integer("lk", 0, kMaxElements);
  o.dk = args.integer("dk", 0, kMaxElements);
  o.dv = args.integer("dv", 0, kMaxElements);
  o.scale = args.number("scale");
  o.causal = args.boolean("causal");
  o.dropout_p = args.number_or("dropoutP", 0.0);
  o.dropout_seed = static_cast<uint32_t>(args.integer_or("dropoutSeed", 0, 0, 4294967295LL));
  if (!(o.dropout_p >= 0.0 && o.dropout_p < 1.0)) {
    args.range_error("argument 'dropoutP' must be in [0, 1), got " + js_number(o.dropout_p));
  }
  if (!std::isfinite(o.scale)) args.range_error("argument 'scale' must be finite, got " + js_number(o.scale));
  if (o.heads == 0 ? o.kv_heads != 0 : (o.kv_heads == 0 || o.heads % o.kv_heads != 0)) {
    args.range_error("argument 'kvHeads' must divide heads = " + std::to_string(o.heads) + ", got " +
                     std::to_string(o.kv_heads));
  }
  return o;
}

// The kernel parameters of `o` (masks are parsed separately).
void fill_params(const Operands& o, kernels::AttentionParams& p) {
  p.q = o.q.data;
  p.k = o.k.data;
  p.v = o.v.data;
  p.out = o.out.data;
  std::copy(o.qs.begin(), o.qs.end(), p.q_strides);
  std::copy(o.ks.begin(), o.ks.end(), p.k_strides);
  std::copy(o.vs.begin(), o.vs.end(), p.v_strides);
  std::copy(o.os.begin(), o.os.end(), p.out_strides);
  p.batch = o.batch;
  p.heads = o.heads;
  p.kv_heads = o.kv_heads;
  p.lq = o.lq;
  p.lk = o.lk;
  p.dk = o.dk;
  p.dv = o.dv;
  p.scale = static_cast<float>(o.scale);
  p.causal = o.causal;
  p.dropout_p = static_cast<float>(o.dropout_p);
  p.dropout_seed = o.dropout_seed;
}

}  // namespace

// Pooled calls read up to this many sequences' kvStarts / kvLengths onto the stack when they run (more: the heap).
constexpr int64_t kMaxLiveBatch = 64;

Kernel ParseAttention(NamedArgs& args) {
  const Operands o = read_operands(args);
  const auto &q = o.q, &k = o.k, &v = o.v, &out = o.out;
  const auto &qs = o.qs, &ks = o.ks, &vs = o.vs, &os = o.os;
  const int64_t batch = o.batch, heads = o.heads, kv_heads = o.kv_heads, lq = o.lq, lk = o.lk, dk = o.dk, dv = o.dv;
  auto weights = args.f32_or_null("weights");
  auto lse = args.f32_optional("lse");
  const kernels::AttentionPrecision precision =
      args.bf16_precision("precision") ? kernels::AttentionPrecision::BFloat16 : kernels::AttentionPrecision::Float32;

  const int64_t q_sizes[3] = {batch, heads, lq};
  const int64_t k_sizes[3] = {batch, kv_heads, lk};
  args.require_length(q, "q", reach(args, q_sizes, qs.data(), 3, dk), "qStrides over [batch, heads, lq] + dk");
  auto kv_starts = args.i32_optional("kvStarts");
  auto kv_lengths = args.i32_optional("kvLengths");
  std::vector<int32_t> starts, lengths;
  if (kv_lengths.given) {
    args.require_length(kv_lengths, "kvLengths", batch, "batch");
    lengths.assign(kv_lengths.data, kv_lengths.data + batch);
    for (int64_t b = 0; b < batch; ++b) {
      if (lengths[b] < 0 || lengths[b] > lk) {
        args.range_error("argument 'kvLengths' must hold lengths in [0, lk = " + std::to_string(lk) + "], got " +
                         std::to_string(lengths[b]) + " at index " + std::to_string(b));
      }
    }
  }
  if (kv_starts.given) {
    args.require_length(kv_starts, "kvStarts", batch, "batch");
    starts.assign(kv_starts.data, kv_starts.data + batch);
    // Each entry's keys: kvHeads heads of its own length from its start position.
    int64_t k_need = 0, v_need = 0;
    for (int64_t b = 0; b < batch; ++b) {
      if (starts[b] < 0) {
        args.range_error("argument 'kvStarts' must hold positions >= 0, got " + std::to_string(starts[b]) +
                         " at index " + std::to_string(b));
      }
      const int64_t len = kv_lengths.given ? lengths[b] : lk;
      const int64_t sizes[2] = {kv_heads, len};
      const int64_t k_reach = reach(args, sizes, ks.data() + 1, 2, dk);
      const int64_t v_reach = reach(args, sizes, vs.data() + 1, 2, dv);
      if (k_reach > 0) k_need = std::max(k_need, checked_mul(args, starts[b], ks[2], "kvStarts*kStrides[2]") + k_reach);
      if (v_reach > 0) v_need = std::max(v_need, checked_mul(args, starts[b], vs[2], "kvStarts*vStrides[2]") + v_reach);
    }
    args.require_length(k, "k", k_need, "kStrides over [kvHeads, kvLengths[b]] from kvStarts[b] + dk");
    args.require_length(v, "v", v_need, "vStrides over [kvHeads, kvLengths[b]] from kvStarts[b] + dv");
  } else {
    args.require_length(k, "k", reach(args, k_sizes, ks.data(), 3, dk), "kStrides over [batch, kvHeads, lk] + dk");
    args.require_length(v, "v", reach(args, k_sizes, vs.data(), 3, dv), "vStrides over [batch, kvHeads, lk] + dv");
  }
  const bool pooled = kv_starts.given || kv_lengths.given;
  args.require_length(out, "out", reach(args, q_sizes, os.data(), 3, dv), "outStrides over [batch, heads, lq] + dv");
  if (!rows_disjoint(q_sizes, os.data(), dv)) args.range_error("argument 'outStrides' makes output rows overlap");
  args.require_no_overlap(out, "out", q, "q", false);
  args.require_no_overlap(out, "out", k, "k", false);
  args.require_no_overlap(out, "out", v, "v", false);
  int64_t n_weights = checked_mul(args, checked_mul(args, batch, heads, "batch*heads"),
                                  checked_mul(args, lq, lk, "lq*lk"), "batch*heads*lq*lk");
  if (o.dropout_p > 0 && (weights.given || pooled)) {
    args.range_error(std::string("argument 'dropoutP' must be 0 when ") +
                     (weights.given ? "weights are requested" : "kvStarts or kvLengths is given") + ", got " +
                     js_number(o.dropout_p));
  }
  if (weights.given && pooled) {
    args.range_error("argument 'weights' must be null when kvStarts or kvLengths is given");
  }
  if (lse.given) {
    if (pooled) args.range_error("argument 'lse' must be null when kvStarts or kvLengths is given");
    args.require_length(lse, "lse", checked_mul(args, checked_mul(args, batch, heads, "batch*heads"), lq, "batch*heads*lq"),
                        "batch*heads*lq");
    args.require_no_overlap(lse, "lse", out, "out", false);
    args.require_no_overlap(lse, "lse", q, "q", false);
    args.require_no_overlap(lse, "lse", k, "k", false);
    args.require_no_overlap(lse, "lse", v, "v", false);
    if (weights.given) args.require_no_overlap(lse, "lse", weights, "weights", false);
  }
  if (weights.given) {
    args.require_length(weights, "weights", n_weights, "batch*heads*lq*lk");
    args.require_no_overlap(weights, "weights", out, "out", false);
    args.require_no_overlap(weights, "weights", q, "q", false);
    args.require_no_overlap(weights, "weights", k, "k", false);
    args.require_no_overlap(weights, "weights", v, "v", false);
  }

  kernels::AttentionParams p;
  parse_masks(args, p, batch, heads, lq, lk);
  // dv == 0 still has weights (and log-sum-exps) to write when they were asked for.
  if (batch == 0 || heads == 0 || lq == 0 || (dv == 0 && !(weights.data && n_weights > 0) && !lse.data)) return {};

  fill_params(o, p);
  p.weights = weights.data;
  p.lse = lse.data;
  p.precision = pooled ? kernels::AttentionPrecision::Float32 : precision;
  if (!pooled) return [p] { kernels::attention(p); };
  // The entries are read when the call runs (a recorded list replayed by runList moves them between runs), and
  // checked again then against the extents validated above, so a changed entry can never move a read out of
  // bounds: it fails the call instead.
  const int64_t k_len = k.length, v_len = v.length;
  return [p, live_starts = kv_starts.given ? kv_starts.data : nullptr,
          live_lengths = kv_lengths.given ? kv_lengths.data : nullptr, k_len, v_len] {
    kernels::AttentionParams pp = p;
    int32_t starts[kMaxLiveBatch], lengths[kMaxLiveBatch];
    std::vector<int32_t> starts_big, lengths_big;
    int32_t* s = starts;
    int32_t* l = lengths;
    if (p.batch > kMaxLiveBatch) {
      starts_big.resize(p.batch);
      lengths_big.resize(p.batch);
      s = starts_big.data();
      l = lengths_big.data();
    }
    for (int64_t b = 0; b < p.batch; ++b) {
      l[b] = live_lengths ? live_lengths[b] : static_cast<int32_t>(p.lk);
      s[b] = live_starts ? live_starts[b] : 0;
      if (l[b] < 0 || l[b] > p.lk) {
        throw std::runtime_error(
            "pooledAttention: argument 'kvLengths' must hold lengths in [0, lk = " + std::to_string(p.lk) + "], got " +
            std::to_string(l[b]) + " at index " + std::to_string(b) + " when the call ran");
      }
      if (!live_starts || l[b] == 0) continue;
      const auto need = [&](const int64_t* st, int64_t width) {
        if (width == 0 || p.kv_heads == 0) return int64_t{0};
        return s[b] * st[2] + (p.kv_heads - 1) * st[1] + (l[b] - 1) * st[2] + width;
      };
      if (s[b] < 0 || need(p.k_strides, p.dk) > k_len || need(p.v_strides, p.dv) > v_len) {
        throw std::runtime_error("pooledAttention: argument 'kvStarts' must place sequence " + std::to_string(b) +
                                 " inside k and v, got start " + std::to_string(s[b]) + " with length " +
                                 std::to_string(l[b]) + " when the call ran");
      }
    }
    pp.kv_starts = live_starts ? s : nullptr;
    pp.kv_lengths = l;
    kernels::attention(pp);
  };
}

// attentionBackward({ q, k, v, out, qStrides, kStrides, vStrides, outStrides, batch, heads, kvHeads?, lq, lk, dk, dv,
//                     scale, masks, causal, lse, dOut, dOutStrides, gradQ, gradK, gradV, gradQStrides?,
//                     gradKStrides?, gradVStrides?, workspaceBytes? })   (AttentionBackwardArgs in lib/backend/backend.ts)
// The forward call's fields as attention takes them (out = its output), lse its log-sum-exp output
// [batch, heads, lq], dOut the gradient of out. gradQ over [batch, heads, lq] + dk, gradK / gradV over
// [batch, kvHeads, lk] + dk / dv, each null when not wanted, with its strides (required when it is given); each
// apart from every other array of the call. workspaceBytes: optional Int32Array of one entry that receives the
// kernel's scratch bytes.
Kernel ParseAttentionBackward(NamedArgs& args) {
  const Operands o = read_operands(args);
  const int64_t q_sizes[3] = {o.batch, o.heads, o.lq};
  const int64_t k_sizes[3] = {o.batch, o.kv_heads, o.lk};
  args.require_length(o.q, "q", reach(args, q_sizes, o.qs.data(), 3, o.dk), "qStrides over [batch, heads, lq] + dk");
  args.require_length(o.k, "k", reach(args, k_sizes, o.ks.data(), 3, o.dk), "kStrides over [batch, kvHeads, lk] + dk");
  args.require_length(o.v, "v", reach(args, k_sizes, o.vs.data(), 3, o.dv), "vStrides over [batch, kvHeads, lk] + dv");
  args.require_length(o.out, "out", reach(args, q_sizes, o.os.data(), 3, o.dv),
                      "outStrides over [batch, heads, lq] + dv");
  kernels::AttentionBackwardParams bp;
  parse_masks(args, bp.fwd, o.batch, o.heads, o.lq, o.lk);
  auto lse = args.f32("lse");
  args.require_length(lse, "lse",
                      checked_mul(args, checked_mul(args, o.batch, o.heads, "batch*heads"), o.lq, "batch*heads*lq"),
                      "batch*heads*lq");
  auto dout = args.f32("dOut");
  const std::vector<int64_t> gs = strides3(args, "dOutStrides");
  args.require_length(dout, "dOut", reach(args, q_sizes, gs.data(), 3, o.dv),
                      "dOutStrides over [batch, heads, lq] + dv");
  struct Grad {
    const char* name;
    const char* strides_name;
    const int64_t* sizes;
    int64_t width;
    Span<float> span;
    std::vector<int64_t> strides;
  };
  Grad grads[3] = {{"gradQ", "gradQStrides", q_sizes, o.dk, {}, {}},
                   {"gradK", "gradKStrides", k_sizes, o.dk, {}, {}},
                   {"gradV", "gradVStrides", k_sizes, o.dv, {}, {}}};
  for (Grad& g : grads) {
    g.span = args.f32_or_null(g.name);
    if (!g.span.given) continue;
    g.strides = strides3(args, g.strides_name);
    args.require_length(g.span, g.name, reach(args, g.sizes, g.strides.data(), 3, g.width),
                        std::string(g.strides_name) + " over its [batch, heads, positions] + features");
    if (!rows_disjoint(g.sizes, g.strides.data(), g.width)) {
      args.range_error(std::string("argument '") + g.strides_name + "' makes output rows overlap");
    }
  }
  auto workspace = args.i32_optional("workspaceBytes");
  if (workspace.given) args.require_length(workspace, "workspaceBytes", 1, "one entry");
  for (int i = 0; i < 3; ++i) {
    const Grad& g = grads[i];
    if (!g.span.given) continue;
    args.require_no_overlap(g.span, g.name, o.q, "q", false);
    args.require_no_overlap(g.span, g.name, o.k, "k", false);
    args.require_no_overlap(g.span, g.name, o.v, "v", false);
    args.require_no_overlap(g.span, g.name, o.out, "out", false);
    args.require_no_overlap(g.span, g.name, dout, "dOut", false);
    args.require_no_overlap(g.span, g.name, lse, "lse", false);
    if (workspace.given) args.require_no_overlap(g.span, g.name, workspace, "workspaceBytes", false);
    for (int j = 0; j < i; ++j) {
      if (grads[j].span.given) args.require_no_overlap(g.span, g.name, grads[j].span, grads[j].name, false);
    }
  }
  fill_params(o, bp.fwd);
  bp.dout = dout.data;
  std::copy(gs.begin(), gs.end(), bp.dout_strides);
  bp.lse = lse.data;
  float** outs[3] = {&bp.dq, &bp.dk, &bp.dv};
  int64_t* out_strides[3] = {bp.dq_strides, bp.dk_strides, bp.dv_strides};
  for (int i = 0; i < 3; ++i) {
    if (!grads[i].span.given) continue;
    *outs[i] = grads[i].span.data;
    std::copy(grads[i].strides.begin(), grads[i].strides.end(), out_strides[i]);
  }
  int32_t* ws = workspace.given ? workspace.data : nullptr;
  if (ws && workspace.length > 0) *ws = 0;
  if (o.batch == 0 || o.heads == 0 || (!bp.dq && !bp.dk && !bp.dv)) return {};
  return [bp, ws] {
    const int64_t bytes = kernels::attention_backward(bp);
    if (ws) *ws = static_cast<int32_t>(std::min<int64_t>(bytes, INT32_MAX));
  };
}

}  // namespace attnode::binding
