// Fused optimizer kernels (kernels::sgd_step, adam_step, clip_grad_norm)
// against a scalar reference written from PyTorch 1.13's single-tensor
// formulas, on every ISA path the machine can run (ATTNODE_ISA caps them the
// same way). The reference fuses exactly where ATen does (std::fma: this
// file is compiled for baseline x86-64, so nothing else contracts), so the
// AVX2 and AVX-512 paths must match it bit for bit; the portable path
// emulates the fma in double and may differ by one rounding, so it is held
// to 2 ulp. Covers every option of SGD (momentum with its first step,
// dampening, nesterov, weight decay, maximize) and Adam/AdamW (amsgrad,
// weight decay, maximize, per-tensor step counts), tails of every length,
// many tensors per call, 1 vs 2 threads (identical), and clip_grad_norm for
// norms 1, 2, 3 and inf. Exit code 1 on any failure. Built and run by
// run_optim_test.sh.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "../kernels/optim/optim.h"
#include "../runtime/cpu_features.h"
#include "../runtime/thread_pool.h"
#include "check.h"

namespace k = attnode::kernels;
namespace rt = attnode::runtime;

namespace {

std::mt19937_64 g_rng(2024);

std::vector<float> randn(int64_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(g_rng);
  return v;
}

// Distance in units in the last place (same sign; 0 for equal bits).
int64_t ulps(float a, float b) {
  if (a == b) return 0;
  if (std::isnan(a) && std::isnan(b)) return 0;
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  if ((ia < 0) != (ib < 0)) return 1 << 30;
  return std::llabs(static_cast<long long>(ia) - ib);
}

// Max ulp distance between two arrays.
int64_t max_ulps(const std::vector<float>& a, const std::vector<float>& b) {
  int64_t m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, ulps(a[i], b[i]));
  return m;
}

// ------------------------------------------------------------ references (PyTorch 1.13, op by op)

void ref_sgd(std::vector<float>& p, const std::vector<float>& g, std::vector<float>& buf, bool init, double lr,
             double momentum, double dampening, double wd, bool nesterov, bool maximize) {
  const float neg_lr = static_cast<float>(-lr), fwd = static_cast<float>(wd), mom = static_cast<float>(momentum);
  const float omd = static_cast<float>(1.0 - dampening);
  for (size_t i = 0; i < p.size(); ++i) {
    float d = maximize ? -g[i] : g[i];
    if (wd != 0) d = std::fma(p[i], fwd, d);
    if (momentum != 0) {
      buf[i] = init ? d : std::fma(d, omd, buf[i] * mom);
      d = nesterov ? std::fma(buf[i], mom, d) : buf[i];
    }
    p[i] = std::fma(d, neg_lr, p[i]);
  }
}

struct AdamState {
  std::vector<float> p, g, m, v, vmax;
  int64_t step;
};

void ref_adam(AdamState& s, double lr, double b1, double b2, double eps, double wd, bool amsgrad, bool maximize,
              bool decoupled) {
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(s.step));
  const double bc2 = 1.0 - std::pow(b2, static_cast<double>(s.step));
  const float bc2s = static_cast<float>(std::sqrt(bc2)), nss = static_cast<float>(-(lr / bc1));
  for (size_t i = 0; i < s.p.size(); ++i) {
    float p = s.p[i], g = maximize ? -s.g[i] : s.g[i];
    if (decoupled)
      p = p * static_cast<float>(1.0 - lr * wd);
    else if (wd != 0)
      g = std::fma(p, static_cast<float>(wd), g);
    s.m[i] = std::fma(g, static_cast<float>(1.0 - b1), s.m[i] * static_cast<float>(b1));
    s.v[i] = std::fma(static_cast<float>(1.0 - b2) * g, g, s.v[i] * static_cast<float>(b2));
    float second = s.v[i];
    if (amsgrad) second = s.vmax[i] = std::max(s.vmax[i], s.v[i]);
    const float denom = std::sqrt(second) / bc2s + static_cast<float>(eps);
    s.p[i] = p + (nss * s.m[i]) / denom;
  }
}

// ------------------------------------------------------------ tests

// Sizes with every tail length of both vector widths, empty, and multi-block tensors.
const int64_t kSizes[] = {0, 1, 5, 8, 15, 16, 17, 31, 33, 100, 16 * 1024 + 3, 40000};

void test_sgd(const std::string& isa, bool exact) {
  struct Opt {
    double lr, momentum, dampening, wd;
    bool nesterov, maximize;
  };
  const Opt opts[] = {{0.1, 0, 0, 0, false, false},         {0.05, 0.9, 0, 0, false, false},
                      {0.05, 0.9, 0.3, 0.01, false, false}, {0.02, 0.8, 0, 0.1, true, false},
                      {0.1, 0.5, 0.1, 0.2, false, true},    {0.3, 0, 0, 0.05, false, true}};
  int cases = 0;
  for (const Opt& o : opts) {
    for (int threads : {1, 2}) {
      rt::ThreadPool::instance().set_num_threads(threads);
      const size_t nt = sizeof(kSizes) / sizeof(kSizes[0]);
      std::vector<std::vector<float>> p(nt), g(nt), buf(nt), rp(nt), rbuf(nt);
      for (size_t t = 0; t < nt; ++t) {
        p[t] = randn(kSizes[t]);
        buf[t].assign(static_cast<size_t>(kSizes[t]), 0.0f);
        rp[t] = p[t];
        rbuf[t] = buf[t];
      }
      for (int step = 0; step < 3; ++step) {
        std::vector<k::SgdTensor> ts(nt);
        for (size_t t = 0; t < nt; ++t) {
          g[t] = randn(kSizes[t]);
          ts[t] = {p[t].data(), g[t].data(), o.momentum != 0 ? buf[t].data() : nullptr, kSizes[t], step == 0};
          ref_sgd(rp[t], g[t], rbuf[t], step == 0, o.lr, o.momentum, o.dampening, o.wd, o.nesterov, o.maximize);
        }
        k::SgdParams sp;
        sp.tensors = ts.data();
        sp.count = static_cast<int64_t>(nt);
        sp.lr = o.lr;
        sp.momentum = o.momentum;
        sp.dampening = o.dampening;
        sp.weight_decay = o.wd;
        sp.nesterov = o.nesterov;
        sp.maximize = o.maximize;
        k::sgd_step(sp);
      }
      for (size_t t = 0; t < nt; ++t) {
        const int64_t dp = max_ulps(p[t], rp[t]), db = max_ulps(buf[t], rbuf[t]);
        CHECK(exact ? dp == 0 && db == 0 : dp <= 2 && db <= 2,
              "%s sgd lr=%g mom=%g damp=%g wd=%g nest=%d max=%d n=%lld: %lld/%lld ulp", isa.c_str(), o.lr, o.momentum,
              o.dampening, o.wd, o.nesterov, o.maximize, (long long)kSizes[t], (long long)dp, (long long)db);
        ++cases;
      }
    }
  }
  std::printf("%-9s sgd: %d cases\n", isa.c_str(), cases);
}

// Runs 4 Adam steps over every size; tensor t skips step 1 when t is odd, so step counts differ inside one call.
std::vector<AdamState> run_adam(bool amsgrad, bool maximize, bool decoupled, double wd, int threads, bool reference) {
  rt::ThreadPool::instance().set_num_threads(threads);
  std::mt19937_64 saved = g_rng;
  g_rng.seed(99);
  const size_t nt = sizeof(kSizes) / sizeof(kSizes[0]);
  std::vector<AdamState> s(nt);
  for (size_t t = 0; t < nt; ++t) {
    const size_t n = static_cast<size_t>(kSizes[t]);
    s[t].p = randn(kSizes[t]);
    s[t].m.assign(n, 0.0f);
    s[t].v.assign(n, 0.0f);
    s[t].vmax.assign(n, 0.0f);
    s[t].step = 0;
  }
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  for (int step = 0; step < 4; ++step) {
    std::vector<k::AdamTensor> ts;
    for (size_t t = 0; t < nt; ++t) {
      // Gradients of changing scale, so that amsgrad's maximum is sometimes the old value.
      s[t].g = randn(kSizes[t], step == 2 ? 0.1f : 1.0f);
      if (step == 1 && t % 2 == 1) continue;
      ++s[t].step;
      if (reference) {
        ref_adam(s[t], lr, b1, b2, eps, wd, amsgrad, maximize, decoupled);
      } else {
        ts.push_back({s[t].p.data(), s[t].g.data(), s[t].m.data(), s[t].v.data(), amsgrad ? s[t].vmax.data() : nullptr,
                      kSizes[t], s[t].step});
      }
    }
    if (!reference) {
      k::AdamParams ap;
      ap.tensors = ts.data();
      ap.count = static_cast<int64_t>(ts.size());
      ap.lr = lr;
      ap.beta1 = b1;
      ap.beta2 = b2;
      ap.eps = eps;
      ap.weight_decay = wd;
      ap.amsgrad = amsgrad;
      ap.maximize = maximize;
      ap.decoupled = decoupled;
      k::adam_step(ap);
    }
  }
  g_rng = saved;
  return s;
}

void test_adam(const std::string& isa, bool exact) {
  int cases = 0;
  for (int variant = 0; variant < 6; ++variant) {
    const bool amsgrad = variant == 1 || variant == 4, maximize = variant == 3, decoupled = variant >= 4;
    const double wd = variant == 0 ? 0.0 : variant == 4 ? 0.01 : 0.05;
    const auto ref = run_adam(amsgrad, maximize, decoupled, wd, 1, true);
    const auto one = run_adam(amsgrad, maximize, decoupled, wd, 1, false);
    const auto two = run_adam(amsgrad, maximize, decoupled, wd, 2, false);
    for (size_t t = 0; t < ref.size(); ++t) {
      const int64_t d = std::max({max_ulps(one[t].p, ref[t].p), max_ulps(one[t].m, ref[t].m),
                                  max_ulps(one[t].v, ref[t].v), max_ulps(one[t].vmax, ref[t].vmax)});
      CHECK(exact ? d == 0 : d <= 2, "%s adam variant %d n=%lld: %lld ulp from the reference", isa.c_str(), variant,
            (long long)kSizes[t], (long long)d);
      CHECK(one[t].p == two[t].p && one[t].m == two[t].m && one[t].v == two[t].v,
            "%s adam variant %d n=%lld: 2 threads differ from 1", isa.c_str(), variant, (long long)kSizes[t]);
      ++cases;
    }
  }
  std::printf("%-9s adam: %d cases\n", isa.c_str(), cases);
}

void test_clip(const std::string& isa) {
  int cases = 0;
  for (double p : {1.0, 2.0, 3.0, static_cast<double>(INFINITY)}) {
    for (double max_norm : {0.5, 1e9}) {
      std::vector<float> results[2];
      float totals[2];
      for (int threads : {1, 2}) {
        rt::ThreadPool::instance().set_num_threads(threads);
        std::mt19937_64 saved = g_rng;
        std::vector<std::vector<float>> g;
        for (int64_t n : kSizes) g.push_back(randn(n));
        g_rng = saved;
        // Reference: per-tensor norms in double rounded to float, then the norm of those.
        double acc = 0;
        for (const auto& x : g) {
          double s = 0;
          for (float v : x)
            s = std::isinf(p) ? std::max(s, std::fabs(static_cast<double>(v)))
                              : s + std::pow(std::fabs(static_cast<double>(v)), p);
          const float nt = static_cast<float>(std::isinf(p) ? s : std::pow(s, 1.0 / p));
          acc = std::isinf(p) ? std::max(acc, static_cast<double>(nt)) : acc + std::pow(static_cast<double>(nt), p);
        }
        const float want = static_cast<float>(std::isinf(p) ? acc : std::pow(acc, 1.0 / p));
        std::vector<float*> ptrs;
        std::vector<int64_t> sizes;
        for (auto& x : g) {
          ptrs.push_back(x.data());
          sizes.push_back(static_cast<int64_t>(x.size()));
        }
        const std::vector<std::vector<float>> before = g;
        float total = -1;
        k::ClipParams cp;
        cp.grads = ptrs.data();
        cp.sizes = sizes.data();
        cp.count = static_cast<int64_t>(ptrs.size());
        cp.max_norm = max_norm;
        cp.norm_type = p;
        cp.total_norm = &total;
        k::clip_grad_norm(cp);
        CHECK(std::fabs(total - want) <= 2e-6 * want, "%s clip p=%g: total %.9g, want %.9g", isa.c_str(), p, total,
              want);
        float coef = (1.0f / (total + static_cast<float>(1e-6))) * static_cast<float>(max_norm);
        if (coef > 1.0f) coef = 1.0f;
        bool scaled_ok = true;
        for (size_t t = 0; t < g.size(); ++t)
          for (size_t i = 0; i < g[t].size(); ++i) scaled_ok &= g[t][i] == before[t][i] * coef;
        CHECK(scaled_ok, "%s clip p=%g max=%g: gradients are not multiplied by %.9g", isa.c_str(), p, max_norm, coef);
        totals[threads - 1] = total;
        for (auto& x : g) results[threads - 1].insert(results[threads - 1].end(), x.begin(), x.end());
        ++cases;
      }
      CHECK(totals[0] == totals[1] && results[0] == results[1], "%s clip p=%g: 2 threads differ from 1", isa.c_str(),
            p);
    }
  }
  std::printf("%-9s clip: %d cases\n", isa.c_str(), cases);
}

}  // namespace

int main() {
  for_each_isa([](const std::string& name, rt::Isa isa) {
    const bool exact = isa != rt::Isa::Portable;
    test_sgd(name, exact);
    test_adam(name, exact);
    test_clip(name);
  });
  return finish();
}
