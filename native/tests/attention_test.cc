// Fused attention kernel vs a naive double-precision reference (the same
// algorithm as lib/backend/js/attention.ts), on every ISA path, with strided
// (head-split) layouts, float / bool masks with broadcast strides, causal
// (also lq != lk), fully masked rows (NaN), with and without the weights
// output, multithreaded == single-threaded bit for bit, and K/V packed per
// call == packed per task bit for bit.
// Built and run by run_attention_test.sh.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "../kernels/attention/attention.h"
#include "../runtime/cpu_features.h"
#include "../runtime/thread_pool.h"
#include "check.h"

namespace k = attnode::kernels;
namespace rt = attnode::runtime;

namespace {

std::mt19937_64 g_rng(7);
std::map<std::string, double> g_isa_err;  // isa -> max error

struct Case {
  int64_t b, h, lq, lk, dk, dv;
  bool causal;
  bool head_split;  // q/k/v/out laid out [B, L, H, D] (strides absorb the transpose)
  int mask_kind;    // 0 none, 1 float [lq, lk], 2 bool key padding [B, lk], 3 both, 4 bool [B,H,lq,lk] full,
                    // 5 float stored transposed [lk, lq] (key stride != 1) then bool [H, lq, lk] (batch broadcast)
  int64_t kvh = 0;  // key/value heads (grouped-query attention); 0 = h
};

int64_t kv_heads(const Case& c) { return c.kvh > 0 ? c.kvh : c.h; }

struct Buffers {
  std::vector<float> q, k, v, out, w, fmask;
  std::vector<uint8_t> bmask;
  k::AttentionParams p;
};

// Strides of a [B, heads, l, d] operand (or [B, l, heads, d] when head-split).
void strides_for(const Case& c, int64_t heads, int64_t l, int64_t d, int64_t* s) {
  if (c.head_split) {
    s[0] = l * heads * d;
    s[1] = d;
    s[2] = heads * d;
  } else {
    s[0] = heads * l * d;
    s[1] = l * d;
    s[2] = d;
  }
}

Buffers make(const Case& c) {
  Buffers B;
  std::normal_distribution<float> nd(0.0f, 1.0f);
  B.q.resize(c.b * c.h * c.lq * c.dk);
  // K/V hold only the key/value heads: shared heads are read, never copied.
  B.k.resize(c.b * kv_heads(c) * c.lk * c.dk);
  B.v.resize(c.b * kv_heads(c) * c.lk * c.dv);
  B.out.assign(c.b * c.h * c.lq * c.dv, -7.0f);
  for (auto& x : B.q) x = nd(g_rng);
  for (auto& x : B.k) x = nd(g_rng);
  for (auto& x : B.v) x = nd(g_rng);
  k::AttentionParams& p = B.p;
  p.q = B.q.data();
  p.k = B.k.data();
  p.v = B.v.data();
  p.out = B.out.data();
  strides_for(c, c.h, c.lq, c.dk, p.q_strides);
  strides_for(c, kv_heads(c), c.lk, c.dk, p.k_strides);
  strides_for(c, kv_heads(c), c.lk, c.dv, p.v_strides);
  strides_for(c, c.h, c.lq, c.dv, p.out_strides);
  p.batch = c.b;
  p.heads = c.h;
  p.kv_heads = c.kvh;
  p.lq = c.lq;
  p.lk = c.lk;
  p.dk = c.dk;
  p.dv = c.dv;
  p.scale = 1.0f / std::sqrt(static_cast<float>(std::max<int64_t>(c.dk, 1)));
  p.causal = c.causal;
  if (c.mask_kind == 1 || c.mask_kind == 3) {
    B.fmask.resize(c.lq * c.lk);
    for (auto& x : B.fmask) x = (g_rng() % 5 == 0) ? -INFINITY : nd(g_rng);
    k::AttentionMask& m = p.masks[p.num_masks++];
    m.f32 = B.fmask.data();
    m.strides[2] = c.lk;
    m.strides[3] = 1;
  }
  if (c.mask_kind == 2 || c.mask_kind == 3) {
    // Key padding: batch b keeps its first lk - 3b keys (batch 1+ may be
    // fully masked when lk is small -> NaN rows).
    B.bmask.resize(c.b * c.lk);
    for (int64_t b = 0; b < c.b; ++b)
      for (int64_t j = 0; j < c.lk; ++j) B.bmask[b * c.lk + j] = j >= c.lk - 3 * b;
    k::AttentionMask& m = p.masks[p.num_masks++];
    m.u8 = B.bmask.data();
    m.strides[0] = c.lk;
    m.strides[3] = 1;
  }
  if (c.mask_kind == 4) {
    B.bmask.resize(c.b * c.h * c.lq * c.lk);
    for (size_t i = 0; i < B.bmask.size(); ++i) B.bmask[i] = g_rng() % 3 == 0;
    // Fully mask query row 0 of every (b, h).
    for (int64_t bh = 0; bh < c.b * c.h; ++bh)
      for (int64_t j = 0; j < c.lk; ++j) B.bmask[bh * c.lq * c.lk + j] = 1;
    k::AttentionMask& m = p.masks[p.num_masks++];
    m.u8 = B.bmask.data();
    m.strides[0] = c.h * c.lq * c.lk;
    m.strides[1] = c.lq * c.lk;
    m.strides[2] = c.lk;
    m.strides[3] = 1;
  }
  if (c.mask_kind == 5) {
    B.fmask.resize(c.lq * c.lk);
    for (auto& x : B.fmask) x = (g_rng() % 7 == 0) ? -INFINITY : nd(g_rng);
    k::AttentionMask& m = p.masks[p.num_masks++];
    m.f32 = B.fmask.data();
    m.strides[2] = 1;
    m.strides[3] = c.lq;
    B.bmask.resize(c.h * c.lq * c.lk);
    for (size_t i = 0; i < B.bmask.size(); ++i) B.bmask[i] = g_rng() % 4 == 0;
    k::AttentionMask& m2 = p.masks[p.num_masks++];
    m2.u8 = B.bmask.data();
    m2.strides[1] = c.lq * c.lk;
    m2.strides[2] = c.lk;
    m2.strides[3] = 1;
  }
  return B;
}

// Reference in double; returns out [B,H,lq,dv] and weights [B,H,lq,lk] contiguous.
// Query head h reads key/value head h / (heads / kv_heads) (kv_heads 0 = heads).
void reference(const k::AttentionParams& p, std::vector<double>& out, std::vector<double>& w) {
  const int64_t group = p.kv_heads > 0 ? p.heads / p.kv_heads : 1;
  out.assign(p.batch * p.heads * p.lq * p.dv, 0.0);
  w.assign(p.batch * p.heads * p.lq * p.lk, 0.0);
  std::vector<double> s(p.lk);
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t h = 0; h < p.heads; ++h)
      for (int64_t i = 0; i < p.lq; ++i) {
        const float* qi = p.q + b * p.q_strides[0] + h * p.q_strides[1] + i * p.q_strides[2];
        double mx = -INFINITY;
        const int64_t vis = p.causal ? std::min(p.lk, i + 1) : p.lk;
        for (int64_t j = 0; j < vis; ++j) {
          const float* kj = p.k + b * p.k_strides[0] + (h / group) * p.k_strides[1] + j * p.k_strides[2];
          double dot = 0;
          for (int64_t d = 0; d < p.dk; ++d) dot += static_cast<double>(qi[d]) * kj[d];
          double sc = dot * p.scale;
          for (int mi = 0; mi < p.num_masks; ++mi) {
            const k::AttentionMask& m = p.masks[mi];
            int64_t off = b * m.strides[0] + h * m.strides[1] + i * m.strides[2] + j * m.strides[3];
            if (m.f32) sc += m.f32[off];
            if (m.u8 && m.u8[off]) sc = -INFINITY;
          }
          s[j] = sc;
          mx = std::max(mx, sc);
        }
        double* o = &out[((b * p.heads + h) * p.lq + i) * p.dv];
        double* wr = w.data() + ((b * p.heads + h) * p.lq + i) * p.lk;
        if (mx == -INFINITY) {
          for (int64_t d = 0; d < p.dv; ++d) o[d] = NAN;
          for (int64_t j = 0; j < p.lk; ++j) wr[j] = NAN;
          continue;
        }
        double sum = 0;
        for (int64_t j = 0; j < vis; ++j) sum += (s[j] = std::exp(s[j] - mx));
        for (int64_t j = 0; j < vis; ++j) {
          wr[j] = s[j] / sum;
          const float* vj = p.v + b * p.v_strides[0] + (h / group) * p.v_strides[1] + j * p.v_strides[2];
          for (int64_t d = 0; d < p.dv; ++d) o[d] += wr[j] * vj[d];
        }
      }
}

// Max |got - ref| over out (read through out_strides); NaN must match NaN.
double compare_out(const k::AttentionParams& p, const std::vector<double>& ref, const char* what, const char* isa) {
  double e = 0;
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t h = 0; h < p.heads; ++h)
      for (int64_t i = 0; i < p.lq; ++i)
        for (int64_t d = 0; d < p.dv; ++d) {
          double got = p.out[b * p.out_strides[0] + h * p.out_strides[1] + i * p.out_strides[2] + d];
          double r = ref[((b * p.heads + h) * p.lq + i) * p.dv + d];
          if (std::isnan(r) || std::isnan(got)) {
            CHECK(std::isnan(r) && std::isnan(got), "%s %s NaN mismatch at b%lld h%lld i%lld: got %g ref %g", what, isa,
                  (long long)b, (long long)h, (long long)i, got, r);
            continue;
          }
          e = std::max(e, std::fabs(got - r));
        }
  return e;
}

void run_case(const Case& c, const std::string& isa) {
  Buffers B = make(c);
  std::vector<double> ro, rw;
  reference(B.p, ro, rw);
  char desc[180];
  std::snprintf(desc, sizeof(desc), "B%lld H%lld/%lld lq%lld lk%lld dk%lld dv%lld causal%d split%d mask%d",
                (long long)c.b, (long long)c.h, (long long)kv_heads(c), (long long)c.lq, (long long)c.lk,
                (long long)c.dk, (long long)c.dv, c.causal, c.head_split, c.mask_kind);
  if (std::getenv("ATTN_TEST_VERBOSE")) std::printf("%s %s\n", isa.c_str(), desc);

  // Streaming path, 2 threads then 1 thread (bit-identical).
  rt::ThreadPool::instance().set_num_threads(2);
  k::attention(B.p);
  std::vector<float> out2 = B.out;
  double e = compare_out(B.p, ro, desc, isa.c_str());
  rt::ThreadPool::instance().set_num_threads(1);
  std::fill(B.out.begin(), B.out.end(), -7.0f);
  k::attention(B.p);
  CHECK(std::memcmp(out2.data(), B.out.data(), out2.size() * 4) == 0, "%s %s: 1 vs 2 threads differ", desc,
        isa.c_str());
  rt::ThreadPool::instance().set_num_threads(2);

  // Weights path.
  B.w.assign(c.b * c.h * c.lq * c.lk, -7.0f);
  B.p.weights = B.w.data();
  std::fill(B.out.begin(), B.out.end(), -7.0f);
  k::attention(B.p);
  e = std::max(e, compare_out(B.p, ro, desc, isa.c_str()));
  for (size_t i = 0; i < rw.size(); ++i) {
    if (std::isnan(rw[i]) || std::isnan(B.w[i])) {
      CHECK(std::isnan(rw[i]) && std::isnan(B.w[i]), "%s %s weights NaN mismatch at %zu: %g vs %g", desc, isa.c_str(),
            i, B.w[i], rw[i]);
      continue;
    }
    e = std::max(e, std::fabs(B.w[i] - rw[i]));
  }
  B.p.weights = nullptr;

  // bfloat16 products (avx512 with AVX512-BF16): against the same double
  // reference at bf16 tolerance, thread-count independent, every row written.
  if (isa == "avx512" && k::bf16_attention_available()) {
    B.p.precision = k::AttentionPrecision::BFloat16;
    std::fill(B.out.begin(), B.out.end(), -7.0f);
    k::attention(B.p);
    const double eb = compare_out(B.p, ro, desc, "avx512-bf16");
    double& gb = g_isa_err["avx512-bf16"];
    gb = std::max(gb, eb);
    CHECK(eb <= 2e-2, "%s bf16: max error %g", desc, eb);
    for (float x : B.out) CHECK(x != -7.0f, "%s bf16: output element not written", desc);
    std::vector<float> outb = B.out;
    rt::ThreadPool::instance().set_num_threads(1);
    k::attention(B.p);
    CHECK(std::memcmp(outb.data(), B.out.data(), outb.size() * 4) == 0, "%s bf16: 1 vs 2 threads differ", desc);
    rt::ThreadPool::instance().set_num_threads(2);
    B.p.precision = k::AttentionPrecision::Float32;
    k::attention(B.p);
  }
  double& ge = g_isa_err[isa];
  ge = std::max(ge, e);
  CHECK(e <= 2e-5, "%s %s: max error %g", desc, isa.c_str(), e);
  // Output rows of this layout were all written (the -7 fill is gone unless v had it).
  for (float x : B.out) CHECK(x != -7.0f, "%s %s: output element not written", desc, isa.c_str());
}

// Pooled K/V (kv_starts / kv_lengths): each batch entry against the same
// kernel run alone on a contiguous copy of its pool slice (bit for bit: the
// per-entry params read the same rows in the same order), and against the
// double reference; 1 vs 2 threads identical; an entry of length 0 is NaN.
void run_pooled_case(int64_t b, int64_t h, int64_t kvh, int64_t lq, int64_t dk, const std::vector<int64_t>& lens,
                     bool with_mask, const std::string& isa) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t row = 2 * kvh * dk;  // a pool position: kv_heads keys, then kv_heads values
  int64_t max_len = 0;
  std::vector<int32_t> starts(b), lengths(b);
  int64_t pos = 5;
  for (int64_t i = b; i-- > 0;) {  // entries placed in reverse order, with gaps
    starts[i] = static_cast<int32_t>(pos);
    lengths[i] = static_cast<int32_t>(lens[i]);
    pos += lens[i] + 3;
    max_len = std::max(max_len, lens[i]);
  }
  std::vector<float> poolv(pos * row), q(b * h * lq * dk), out(b * h * lq * dk, -7.0f),
      mask(b * lq * std::max<int64_t>(max_len, 1));
  for (auto& x : poolv) x = nd(g_rng);
  for (auto& x : q) x = nd(g_rng);
  for (auto& x : mask) x = (g_rng() % 6 == 0) ? -INFINITY : nd(g_rng);
  k::AttentionParams p;
  p.q = q.data();
  p.k = poolv.data();
  p.v = poolv.data() + kvh * dk;
  p.out = out.data();
  const int64_t qs[3] = {h * lq * dk, lq * dk, dk};
  const int64_t kvs[3] = {0, dk, row};
  std::copy(qs, qs + 3, p.q_strides);
  std::copy(qs, qs + 3, p.out_strides);
  std::copy(kvs, kvs + 3, p.k_strides);
  std::copy(kvs, kvs + 3, p.v_strides);
  p.batch = b;
  p.heads = h;
  p.kv_heads = kvh;
  p.lq = lq;
  p.lk = max_len;
  p.dk = p.dv = dk;
  p.scale = 1.0f / std::sqrt(static_cast<float>(dk));
  p.kv_starts = starts.data();
  p.kv_lengths = lengths.data();
  if (with_mask) {
    p.num_masks = 1;
    p.masks[0].f32 = mask.data();
    p.masks[0].strides[0] = lq * max_len;
    p.masks[0].strides[2] = max_len;
    p.masks[0].strides[3] = 1;
  }
  char desc[160];
  std::snprintf(desc, sizeof(desc), "pooled B%lld H%lld/%lld lq%lld dk%lld mask%d", (long long)b, (long long)h,
                (long long)kvh, (long long)lq, (long long)dk, with_mask);
  rt::ThreadPool::instance().set_num_threads(2);
  k::attention(p);
  const std::vector<float> out2 = out;
  rt::ThreadPool::instance().set_num_threads(1);
  std::fill(out.begin(), out.end(), -7.0f);
  k::attention(p);
  CHECK(std::memcmp(out2.data(), out.data(), out.size() * 4) == 0, "%s %s: 1 vs 2 threads differ", desc, isa.c_str());
  rt::ThreadPool::instance().set_num_threads(2);
  double e = 0;
  for (int64_t bi = 0; bi < b; ++bi) {
    const int64_t len = lens[bi];
    // The entry alone: its keys copied out of the pool, [1, kvh, len, dk].
    std::vector<float> kc(kvh * len * dk + 1), vc(kvh * len * dk + 1), oc(h * lq * dk, -7.0f);
    for (int64_t hk = 0; hk < kvh; ++hk)
      for (int64_t j = 0; j < len; ++j)
        for (int64_t d = 0; d < dk; ++d) {
          kc[(hk * len + j) * dk + d] = poolv[(starts[bi] + j) * row + hk * dk + d];
          vc[(hk * len + j) * dk + d] = poolv[(starts[bi] + j) * row + (kvh + hk) * dk + d];
        }
    k::AttentionParams s;
    s.q = q.data() + bi * qs[0];
    s.k = kc.data();
    s.v = vc.data();
    s.out = oc.data();
    const int64_t ks1[3] = {0, len * dk, dk};
    std::copy(qs, qs + 3, s.q_strides);
    std::copy(qs, qs + 3, s.out_strides);
    std::copy(ks1, ks1 + 3, s.k_strides);
    std::copy(ks1, ks1 + 3, s.v_strides);
    s.batch = 1;
    s.heads = h;
    s.kv_heads = kvh;
    s.lq = lq;
    s.lk = len;
    s.dk = s.dv = dk;
    s.scale = p.scale;
    if (with_mask) {
      s.num_masks = 1;
      s.masks[0] = p.masks[0];
      s.masks[0].f32 = mask.data() + bi * lq * max_len;
    }
    k::attention(s);
    const float* got = out.data() + bi * qs[0];
    if (len == 0) {
      for (int64_t i = 0; i < h * lq * dk; ++i)
        CHECK(std::isnan(got[i]), "%s: empty entry %lld not NaN", desc, (long long)bi);
      continue;
    }
    CHECK(std::memcmp(got, oc.data(), oc.size() * 4) == 0, "%s %s: entry %lld differs from the kernel run alone", desc,
          isa.c_str(), (long long)bi);
    std::vector<double> ro, rw;
    reference(s, ro, rw);
    for (size_t i = 0; i < ro.size(); ++i) {
      if (std::isnan(ro[i]) || std::isnan(got[i])) {
        CHECK(std::isnan(ro[i]) && std::isnan(got[i]), "%s: NaN mismatch", desc);
        continue;
      }
      e = std::max(e, std::fabs(got[i] - ro[i]));
    }
  }
  double& ge = g_isa_err[isa];
  ge = std::max(ge, e);
  CHECK(e <= 2e-5, "%s %s: max error %g", desc, isa.c_str(), e);
}

// The AVX-512 float32 path packs K and V once per call when a head has
// several query tasks, and lets a lone task transpose its key blocks itself:
// the arithmetic is the same, so the first rows of a long call (packed) must
// equal, bit for bit, a call of only those rows (one task, not packed), with
// the same keys, for every head-dim shape, mask and causal (the first rows'
// visible keys do not depend on lq) and grouped-query head.
void run_packed_vs_task(int64_t lq_long, int64_t nq, int64_t lk, int64_t dk, int64_t dv, bool causal, int mask_kind,
                        int64_t kvh, const std::string& isa) {
  Case c{1, 4, lq_long, lk, dk, dv, causal, true, mask_kind, kvh};
  Buffers B = make(c);
  rt::ThreadPool::instance().set_num_threads(2);
  k::attention(B.p);
  k::AttentionParams s = B.p;
  s.lq = nq;
  std::vector<float> out_short(B.out.size(), -7.0f);
  s.out = out_short.data();
  k::attention(s);
  char desc[160];
  std::snprintf(desc, sizeof(desc), "packed vs task: lq %lld/%lld lk%lld dk%lld dv%lld causal%d mask%d kvh%lld",
                (long long)lq_long, (long long)nq, (long long)lk, (long long)dk, (long long)dv, causal, mask_kind,
                (long long)kvh);
  for (int64_t h = 0; h < c.h; ++h)
    for (int64_t i = 0; i < nq; ++i) {
      const float* a = B.out.data() + h * B.p.out_strides[1] + i * B.p.out_strides[2];
      const float* b = out_short.data() + h * B.p.out_strides[1] + i * B.p.out_strides[2];
      CHECK(std::memcmp(a, b, dv * sizeof(float)) == 0, "%s %s: head %lld row %lld differs", desc, isa.c_str(),
            (long long)h, (long long)i);
    }
}

}  // namespace

int main() {
  std::vector<Case> cases;
  const int64_t lqs[] = {1, 5, 32, 33, 70};
  const int64_t lks[] = {1, 17, 64, 65, 130};
  int n = 0;
  for (int64_t lq : lqs)
    for (int64_t lk : lks) {
      const int64_t dks[] = {1, 8, 64, 72};
      const int64_t dvs[] = {3, 64, 80, 16};
      ++n;
      cases.push_back({1 + n % 2, 1 + n % 3, lq, lk, dks[n % 4], dvs[(n / 4) % 4], n % 3 == 0, n % 2 == 1, n % 6});
      cases.push_back({2, 2, lq, lk, 64, 64, true, n % 2 == 0, (n + 2) % 6});
    }
  // Self-attention sizes of the target models and a causal lq != lk case.
  cases.push_back({2, 12, 128, 128, 64, 64, false, true, 0});
  cases.push_back({1, 8, 200, 200, 64, 64, true, false, 2});
  cases.push_back({1, 2, 40, 100, 32, 32, true, false, 1});
  cases.push_back({1, 1, 3, 0, 8, 8, false, false, 0});  // lk == 0 -> NaN rows
  // Long sequences (96-row tasks of the AVX-512 path: several tasks, 6-row
  // strips with tails, partial key blocks, causal block skipping), head dims
  // 128 and ragged ones, lq != lk both ways, every mask kind.
  cases.push_back({1, 2, 600, 600, 64, 64, true, true, 0});
  cases.push_back({1, 2, 600, 600, 64, 64, false, false, 3});
  cases.push_back({1, 1, 530, 300, 128, 128, true, false, 5});
  cases.push_back({2, 1, 300, 530, 40, 72, true, true, 4});
  cases.push_back({1, 2, 515, 515, 17, 130, false, true, 5});
  cases.push_back({1, 1, 100, 97, 64, 64, true, false, 5});
  cases.push_back({1, 1, 13, 700, 64, 64, false, false, 1});
  // Grouped-query attention (kvh < h): decode steps (the few-rows path),
  // streaming and bf16 tiles, masks over query heads, multi-query (kvh 1),
  // and the long strided K/V copy (lk >= 1024, lq >= 256, head-split).
  cases.push_back({2, 8, 1, 33, 64, 64, false, false, 0, 2});
  cases.push_back({1, 8, 4, 130, 64, 64, false, true, 4, 2});
  cases.push_back({2, 6, 40, 65, 32, 48, true, true, 3, 3});
  cases.push_back({1, 4, 70, 70, 16, 16, false, false, 5, 1});
  cases.push_back({1, 4, 300, 1030, 64, 64, true, true, 1, 2});
  // Decode steps (lq 1) on attention_decode: every head of a kv group in one pass, keys past the prefetch
  // distance, multi-query with a per-head mask, ragged head dims under causal masking, both layouts.
  cases.push_back({2, 8, 1, 700, 64, 64, false, true, 4, 1});
  cases.push_back({2, 8, 1, 700, 64, 64, false, false, 4, 1});
  cases.push_back({1, 6, 1, 130, 40, 24, true, false, 3, 3});
  cases.push_back({3, 9, 1, 577, 64, 64, false, true, 2, 3});

  std::vector<std::string> ran;
  for (rt::Isa isa : {rt::Isa::Portable, rt::Isa::Avx2, rt::Isa::Avx512}) {
    if (!rt::set_isa(isa) || rt::active_isa() != isa) continue;
    ran.push_back(rt::isa_name(isa));
    int before = g_failures;
    for (const Case& c : cases) run_case(c, ran.back());
    // Decode rows of a continuous batch (lq 1, GQA), a prompt chunk (few-rows and streaming paths), an empty entry.
    run_pooled_case(5, 9, 3, 1, 64, {17, 1, 64, 130, 9}, false, ran.back());
    run_pooled_case(3, 4, 4, 1, 8, {5, 0, 70}, true, ran.back());
    run_pooled_case(2, 4, 2, 6, 32, {40, 6}, true, ran.back());
    run_pooled_case(2, 2, 1, 50, 64, {300, 77}, true, ran.back());
    run_packed_vs_task(300, 40, 200, 64, 64, false, 0, 0, ran.back());
    run_packed_vs_task(200, 45, 130, 72, 80, true, 3, 2, ran.back());
    run_packed_vs_task(600, 33, 1030, 17, 130, false, 1, 1, ran.back());
    std::printf("%-9s %zu cases %s\n", ran.back().c_str(), cases.size(), g_failures == before ? "ok" : "FAILED");
  }
  rt::set_isa(rt::detected_isa());
  std::printf("\nmax |error| of out and weights vs double reference:\n");
  if (g_isa_err.count("avx512-bf16")) ran.push_back("avx512-bf16");
  for (auto& s : ran) std::printf("  %-11s %.3g\n", s.c_str(), g_isa_err[s]);
  return finish();
}
