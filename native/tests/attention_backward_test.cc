// Flash-attention backward (kernels::attention_backward) and the forward's
// log-sum-exp output against a materialised double-precision reference:
// softmax probabilities P, dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P ∘ (dP − rowsum(P ∘ dP)),
// dQ = scale·dS·K, dK = scale·dSᵀ·Q. Cases cover float, bool and key-padding
// masks (broadcast strides), causal with lq != lk, grouped kv heads, strided
// (packed projection) operands, sizes off the 32 / 64 block boundaries,
// fully masked rows and empty key sequences, on every kernel path, and the
// results must be bit-identical for 1 and 2 threads. Build:
// native/tests/run_attention_backward_test.sh
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "kernels/attention/attention.h"

using attnode::kernels::AttentionBackwardParams;
using attnode::kernels::AttentionParams;

namespace {

struct Case {
  std::string name;
  int64_t batch, heads, kv_heads, lq, lk, dk, dv;
  bool causal;
  int mask;  // 0 none, 1 float [lq, lk], 2 bool [batch, heads, lq, lk], 3 key padding [batch, lk] bool, 4 float + padding
  bool packed;  // q/k/v read out of one [L, batch, heads * (dk + dk + dv)]-like buffer (wide position strides)
  bool fully_masked_row = false;  // query 0 of batch 0 sees no key
  float dropout = 0.0f;            // dropout on the probabilities (seed kSeed)
};

constexpr uint32_t kSeed = 0x2545f491U;

// The kernel's dropout mask, written out independently: lowbias32 of the seed, row and key; dropped when the top
// 24 bits are below round(p · 2^24); kept ones scaled by 1 / (1 − p).
uint32_t mix(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

double mask_factor(float p, int64_t row, int64_t j) {
  if (p == 0.0f) return 1.0;
  const uint32_t v = mix(mix(mix(static_cast<uint32_t>(row)) ^ kSeed) + static_cast<uint32_t>(j) * 0x9e3779b9U);
  return (v >> 8) < static_cast<uint32_t>(double(p) * 16777216.0 + 0.5) ? 0.0 : static_cast<double>(1.0f / (1.0f - p));
}

struct Data {
  std::vector<float> q, k, v, dout, fmask;
  std::vector<uint8_t> umask;
  int64_t qs[3], ks[3], vs[3];
};

float rnd(std::mt19937& g) { return std::uniform_real_distribution<float>(-1.0f, 1.0f)(g); }

Data make(const Case& c, std::mt19937& g) {
  Data d;
  const int64_t hq = c.heads, hk = c.kv_heads;
  if (c.packed) {
    // Position-major: row (position, batch) holds every head's q, then k, then v.
    const int64_t width = hq * c.dk + hk * c.dk + hk * c.dv;
    const int64_t rows = std::max(c.lq, c.lk) * c.batch;
    d.q.resize(rows * width);
    for (auto& x : d.q) x = rnd(g);
    d.qs[0] = width;
    d.qs[1] = c.dk;
    d.qs[2] = c.batch * width;
    d.ks[0] = width;
    d.ks[1] = c.dk;
    d.ks[2] = c.batch * width;
    d.vs[0] = width;
    d.vs[1] = c.dv;
    d.vs[2] = c.batch * width;
  } else {
    d.q.resize(c.batch * hq * c.lq * c.dk);
    d.k.resize(c.batch * hk * c.lk * c.dk);
    d.v.resize(c.batch * hk * c.lk * c.dv);
    for (auto* a : {&d.q, &d.k, &d.v})
      for (auto& x : *a) x = rnd(g);
    d.qs[0] = hq * c.lq * c.dk;
    d.qs[1] = c.lq * c.dk;
    d.qs[2] = c.dk;
    d.ks[0] = hk * c.lk * c.dk;
    d.ks[1] = c.lk * c.dk;
    d.ks[2] = c.dk;
    d.vs[0] = hk * c.lk * c.dv;
    d.vs[1] = c.lk * c.dv;
    d.vs[2] = c.dv;
  }
  d.dout.resize(c.batch * hq * c.lq * c.dv);
  for (auto& x : d.dout) x = rnd(g);
  d.fmask.resize(c.lq * c.lk);
  for (auto& x : d.fmask) x = 2.0f * rnd(g);
  d.umask.resize(c.batch * hq * c.lq * c.lk);
  for (auto& x : d.umask) x = std::uniform_real_distribution<float>(0, 1)(g) < 0.3f;
  if (c.lk > 0)
    for (int64_t r = 0; r < c.batch * hq * c.lq; ++r) d.umask[r * c.lk] = 0;  // every row keeps key 0
  if (c.fully_masked_row)
    for (int64_t j = 0; j < c.lk; ++j) d.umask[j] = 1;
  return d;
}

// Pointers and masks of the call (k and v inside the packed buffer when packed).
AttentionParams params(const Case& c, Data& d, float* out) {
  AttentionParams p;
  p.q = d.q.data();
  p.k = c.packed ? d.q.data() + c.heads * c.dk : d.k.data();
  p.v = c.packed ? d.q.data() + (c.heads + c.kv_heads) * c.dk : d.v.data();
  p.out = out;
  for (int i = 0; i < 3; ++i) {
    p.q_strides[i] = d.qs[i];
    p.k_strides[i] = d.ks[i];
    p.v_strides[i] = d.vs[i];
  }
  p.out_strides[0] = c.heads * c.lq * c.dv;
  p.out_strides[1] = c.lq * c.dv;
  p.out_strides[2] = c.dv;
  p.batch = c.batch;
  p.heads = c.heads;
  p.kv_heads = c.kv_heads;
  p.lq = c.lq;
  p.lk = c.lk;
  p.dk = c.dk;
  p.dv = c.dv;
  p.scale = 1.0f / std::sqrt(static_cast<float>(c.dk));
  p.causal = c.causal;
  auto fmask = [&](attnode::kernels::AttentionMask& m) {
    m.f32 = d.fmask.data();
    m.strides[0] = 0;
    m.strides[1] = 0;
    m.strides[2] = c.lk;
    m.strides[3] = 1;
  };
  auto umask = [&](attnode::kernels::AttentionMask& m, bool padding) {
    m.u8 = d.umask.data();
    m.strides[0] = c.heads * c.lq * c.lk;
    m.strides[1] = padding ? 0 : c.lq * c.lk;
    m.strides[2] = padding ? 0 : c.lk;
    m.strides[3] = 1;
  };
  if (c.mask == 1) fmask(p.masks[0]);
  if (c.mask == 2) umask(p.masks[0], false);
  if (c.mask == 3) umask(p.masks[0], true);
  if (c.mask == 4) {
    fmask(p.masks[0]);
    umask(p.masks[1], true);
  }
  p.num_masks = c.mask == 0 ? 0 : c.mask == 4 ? 2 : 1;
  p.dropout_p = c.dropout;
  p.dropout_seed = kSeed;
  return p;
}

double mask_value(const attnode::kernels::AttentionMask& m, int64_t b, int64_t h, int64_t i, int64_t j, double s) {
  const int64_t off = b * m.strides[0] + h * m.strides[1] + i * m.strides[2] + j * m.strides[3];
  if (m.f32) return s + m.f32[off];
  return m.u8[off] ? -INFINITY : s;
}

struct Grads {
  std::vector<double> dq, dk, dv, lse, out;
};

// Materialised double-precision reference of the forward's L and the gradients.
Grads reference(const Case& c, const AttentionParams& p, const float* dout) {
  Grads r;
  const int64_t group = c.heads / c.kv_heads;
  r.dq.assign(c.batch * c.heads * c.lq * c.dk, 0.0);
  r.dk.assign(c.batch * c.kv_heads * c.lk * c.dk, 0.0);
  r.dv.assign(c.batch * c.kv_heads * c.lk * c.dv, 0.0);
  r.lse.assign(c.batch * c.heads * c.lq, NAN);
  r.out.assign(c.batch * c.heads * c.lq * c.dv, NAN);
  std::vector<double> s(c.lk), pr(c.lk), dp(c.lk), mk(c.lk);
  for (int64_t b = 0; b < c.batch; ++b) {
    for (int64_t h = 0; h < c.heads; ++h) {
      const int64_t hk = h / group;
      const float* q = p.q + b * p.q_strides[0] + h * p.q_strides[1];
      const float* k = p.k + b * p.k_strides[0] + hk * p.k_strides[1];
      const float* v = p.v + b * p.v_strides[0] + hk * p.v_strides[1];
      for (int64_t i = 0; i < c.lq; ++i) {
        double m = -INFINITY;
        for (int64_t j = 0; j < c.lk; ++j) {
          double x = 0;
          for (int64_t e = 0; e < c.dk; ++e) x += double(q[i * p.q_strides[2] + e]) * k[j * p.k_strides[2] + e];
          x *= p.scale;
          for (int mi = 0; mi < p.num_masks; ++mi) x = mask_value(p.masks[mi], b, h, i, j, x);
          if (c.causal && j > i) x = -INFINITY;
          s[j] = x;
          m = std::max(m, x);
        }
        if (m == -INFINITY) {
          // Fully masked: the softmax row is NaN, so is its dq row and, through Pᵀ·dO and dSᵀ·Q, every dk and
          // dv row of its key/value head (NaN references are skipped by rel_err; the test checks dq's NaN).
          for (int64_t e = 0; e < c.dk; ++e) r.dq[((b * c.heads + h) * c.lq + i) * c.dk + e] = NAN;
          for (int64_t e = 0; e < c.lk * c.dk; ++e) r.dk[(b * c.kv_heads + hk) * c.lk * c.dk + e] = NAN;
          for (int64_t e = 0; e < c.lk * c.dv; ++e) r.dv[(b * c.kv_heads + hk) * c.lk * c.dv + e] = NAN;
          continue;
        }
        double l = 0;
        for (int64_t j = 0; j < c.lk; ++j) l += std::exp(s[j] - m);
        r.lse[(b * c.heads + h) * c.lq + i] = m + std::log(l);
        const float* g = dout + ((b * c.heads + h) * c.lq + i) * c.dv;
        double dsum = 0;
        double* orow = &r.out[((b * c.heads + h) * c.lq + i) * c.dv];
        for (int64_t e = 0; e < c.dv; ++e) orow[e] = 0;
        for (int64_t j = 0; j < c.lk; ++j) {
          pr[j] = std::exp(s[j] - m) / l;
          mk[j] = mask_factor(c.dropout, (b * c.heads + h) * c.lq + i, j);
          double x = 0;
          for (int64_t e = 0; e < c.dv; ++e) {
            x += double(g[e]) * v[j * p.v_strides[2] + e];
            orow[e] += pr[j] * mk[j] * v[j * p.v_strides[2] + e];
          }
          dp[j] = x * mk[j];  // through the dropout mask
          dsum += pr[j] * dp[j];
        }
        for (int64_t j = 0; j < c.lk; ++j) {
          const double ds = pr[j] * (dp[j] - dsum) * p.scale;
          double* dkr = &r.dk[((b * c.kv_heads + hk) * c.lk + j) * c.dk];
          double* dvr = &r.dv[((b * c.kv_heads + hk) * c.lk + j) * c.dv];
          double* dqr = &r.dq[((b * c.heads + h) * c.lq + i) * c.dk];
          for (int64_t e = 0; e < c.dv; ++e) dvr[e] += pr[j] * mk[j] * g[e];
          for (int64_t e = 0; e < c.dk; ++e) {
            dkr[e] += ds * q[i * p.q_strides[2] + e];
            dqr[e] += ds * k[j * p.k_strides[2] + e];
          }
        }
      }
    }
  }
  return r;
}

// Max |a − e| / max(1, max |e|), skipping reference NaN entries (rows of fully masked queries).
double rel_err(const std::vector<float>& a, const std::vector<double>& e) {
  double scale = 1, worst = 0;
  for (double x : e)
    if (std::isfinite(x)) scale = std::max(scale, std::fabs(x));
  for (size_t i = 0; i < e.size(); ++i) {
    if (std::isnan(e[i])) continue;
    const double d = std::fabs(a[i] - e[i]);
    worst = std::max(worst, std::isnan(d) ? INFINITY : d);
  }
  return worst / scale;
}

struct Run {
  std::vector<float> dq, dk, dv, lse, out;
  int64_t workspace = 0;
};

Run run(const Case& c, Data& d) {
  Run r;
  r.out.assign(c.batch * c.heads * c.lq * c.dv, 0.0f);
  r.lse.assign(c.batch * c.heads * c.lq, 0.0f);
  AttentionParams p = params(c, d, r.out.data());
  p.lse = r.lse.data();
  attnode::kernels::attention(p);
  AttentionBackwardParams bp;
  bp.fwd = p;
  bp.fwd.lse = nullptr;
  bp.dout = d.dout.data();
  bp.dout_strides[0] = c.heads * c.lq * c.dv;
  bp.dout_strides[1] = c.lq * c.dv;
  bp.dout_strides[2] = c.dv;
  bp.lse = r.lse.data();
  r.dq.assign(c.batch * c.heads * c.lq * c.dk, -1.0f);
  r.dk.assign(c.batch * c.kv_heads * c.lk * c.dk, -1.0f);
  r.dv.assign(c.batch * c.kv_heads * c.lk * c.dv, -1.0f);
  bp.dq = r.dq.data();
  bp.dk = r.dk.data();
  bp.dv = r.dv.data();
  bp.dq_strides[0] = c.heads * c.lq * c.dk;
  bp.dq_strides[1] = c.lq * c.dk;
  bp.dq_strides[2] = c.dk;
  bp.dk_strides[0] = c.kv_heads * c.lk * c.dk;
  bp.dk_strides[1] = c.lk * c.dk;
  bp.dk_strides[2] = c.dk;
  bp.dv_strides[0] = c.kv_heads * c.lk * c.dv;
  bp.dv_strides[1] = c.lk * c.dv;
  bp.dv_strides[2] = c.dv;
  r.workspace = attnode::kernels::attention_backward(bp);
  return r;
}

}  // namespace

int main() {
  const std::vector<Case> cases = {
      {"plain", 2, 2, 2, 37, 45, 16, 16, false, 0, false},
      {"blocks", 1, 2, 2, 70, 150, 20, 24, false, 0, false},
      {"float mask", 2, 2, 2, 33, 65, 8, 12, false, 1, false},
      {"bool mask", 2, 3, 3, 40, 70, 16, 16, false, 2, false},
      {"key padding", 2, 2, 2, 50, 66, 16, 8, false, 3, false},
      {"float+padding", 2, 2, 2, 31, 129, 12, 16, false, 4, false},
      {"causal", 1, 2, 2, 100, 100, 16, 16, true, 0, false},
      {"causal lq<lk", 1, 2, 2, 40, 130, 16, 16, true, 1, false},
      {"causal lq>lk", 1, 2, 2, 90, 60, 16, 16, true, 3, false},
      {"gqa", 2, 4, 2, 45, 80, 16, 16, true, 0, false},
      {"gqa mqa mask", 1, 3, 1, 35, 70, 8, 8, false, 4, false},
      {"packed", 2, 2, 2, 66, 66, 16, 16, true, 3, true},
      {"packed gqa", 1, 4, 2, 40, 64, 16, 24, false, 1, true},
      {"d=1", 1, 1, 1, 9, 5, 1, 1, false, 0, false},
      {"one query", 1, 2, 2, 1, 77, 16, 16, false, 2, false},
      {"fully masked row", 1, 2, 2, 20, 30, 16, 16, false, 2, false, true},
      {"dropout", 2, 2, 2, 70, 130, 16, 16, false, 1, false, false, 0.3f},
      {"dropout causal gqa packed", 1, 4, 2, 50, 80, 16, 24, true, 3, true, false, 0.5f},
      {"dropout one query", 1, 2, 2, 3, 90, 8, 8, false, 0, false, false, 0.2f},
  };
  const std::vector<std::string> ran = for_each_isa([&](const std::string& isa_name, attnode::runtime::Isa) {
    std::mt19937 g(1234);
    for (const Case& c : cases) {
      Data d = make(c, g);
      set_threads(1);
      const Run one = run(c, d);
      set_threads(2);
      const Run two = run(c, d);
      std::vector<float> out(c.batch * c.heads * c.lq * c.dv);
      const Grads ref = reference(c, params(c, d, out.data()), d.dout.data());
      const double e_lse = rel_err(one.lse, ref.lse), e_dq = rel_err(one.dq, ref.dq), e_dk = rel_err(one.dk, ref.dk),
                   e_dv = rel_err(one.dv, ref.dv);
      note("lse", isa_name, e_lse);
      note("dq", isa_name, e_dq);
      note("dk", isa_name, e_dk);
      note("dv", isa_name, e_dv);
      const double e_out = rel_err(one.out, ref.out);
      note("out", isa_name, e_out);
      CHECK(e_out <= 2e-5, "%s %s: forward out error %g", isa_name.c_str(), c.name.c_str(), e_out);
      const double tol = 2e-5;
      CHECK(e_lse <= tol && e_dq <= tol && e_dk <= tol && e_dv <= tol, "%s %s: lse %g dq %g dk %g dv %g",
            isa_name.c_str(), c.name.c_str(), e_lse, e_dq, e_dk, e_dv);
      CHECK(same_bits(one.dq, two.dq) && same_bits(one.dk, two.dk) && same_bits(one.dv, two.dv),
            "%s %s: 1 and 2 threads differ", isa_name.c_str(), c.name.c_str());
      if (c.fully_masked_row) {
        CHECK(std::isnan(one.lse[0]), "%s %s: L of a fully masked row is %g, expected NaN", isa_name.c_str(),
              c.name.c_str(), one.lse[0]);
        CHECK(std::isnan(one.dq[0]), "%s %s: dq of a fully masked row is %g, expected NaN", isa_name.c_str(),
              c.name.c_str(), one.dq[0]);
      }
      // Workspace: per-thread scratch of one tile and block, never lq x lk (the last term: the dq tile the key-block
      // task accumulates when every key fits in one block).
      const int64_t bound =
          2 * (2 * 64 * 32 + (c.dk + c.dv + 2) * 32 + 64 * (c.dk + c.dv + 33) + 32 * ((c.dk + 15) / 16 * 16)) * 4 + 128;
      CHECK(one.workspace > 0 && one.workspace <= bound / 2 && two.workspace <= bound,
            "%s %s: workspace %lld / %lld bytes, bound %lld", isa_name.c_str(), c.name.c_str(),
            static_cast<long long>(one.workspace), static_cast<long long>(two.workspace),
            static_cast<long long>(bound));
    }
    // Empty key sequence: zero dq (no scores, nothing flows), as the materialised path gives.
    {
      Case c{"empty keys", 1, 1, 1, 5, 0, 4, 4, false, 0, false};
      Data d = make(c, g);
      const Run r = run(c, d);
      bool zero = true;
      for (float x : r.dq) zero = zero && x == 0.0f;
      CHECK(zero, "%s: lk = 0 must give zero dq", isa_name.c_str());
    }
  });
  print_error_table(ran, 10, "(max |error| / max(1, max |reference|); tolerance 2e-5)");
  return finish();
}
