// Backward kernels vs double-precision references, on every ISA path the
// machine can run (runtime::set_isa): softmax / log_softmax backward and the
// log_softmax forward, LayerNorm and RMSNorm backward (dx and the parameter
// gradients), the activation gradients, the embedding scatter-add and the
// fused cross-entropy forward and backward. Awkward sizes (tails of every
// vector width), strided rows, in-place dx, and results that must be
// bit-identical for 1 and 2 threads. Prints the max error per op and ISA;
// exit code 1 on any failure. Built and run by run_backward_test.sh.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "../kernels/elementwise/elementwise.h"
#include "../kernels/layout/layout.h"
#include "../kernels/loss/loss.h"
#include "../kernels/norms/norms.h"
#include "../kernels/softmax/softmax.h"
#include "../runtime/cpu_features.h"
#include "../runtime/thread_pool.h"
#include "check.h"

namespace k = attnode::kernels;
namespace rt = attnode::runtime;

namespace {

std::mt19937_64 g_rng(4242);

const std::vector<int64_t> kCols = {1, 3, 8, 15, 16, 17, 33, 100, 768, 1025};
const std::vector<int64_t> kRows = {1, 5, 40};

float normal(float s = 1.0f) { return std::normal_distribution<float>(0.0f, s)(g_rng); }
float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g_rng); }
std::vector<float> randv(int64_t n, float s = 1.0f) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = normal(s);
  return v;
}

// max |got - ref| / max(scale, max |ref|): an error relative to the largest value of the vector compared.
double rel_err(const float* got, const std::vector<double>& ref, double floor = 1e-30) {
  double scale = floor, e = 0;
  for (double r : ref) scale = std::max(scale, std::fabs(r));
  for (size_t i = 0; i < ref.size(); ++i) e = std::max(e, std::fabs(got[i] - ref[i]));
  return e / scale;
}

// ------------------------------------------------------------------ softmax
void test_softmax_backward(const std::string& isa) {
  for (int64_t cols : kCols) {
    for (int64_t rows : kRows) {
      const int64_t ld = cols + 3;  // strided rows for y / x
      std::vector<float> x(rows * ld), y(rows * ld), dy = randv(rows * cols), dx(rows * cols);
      for (auto& v : x) v = normal(3.0f);
      for (int log = 0; log < 2; ++log) {
        if (log) {
          k::log_softmax_rows(x.data(), y.data(), rows, cols, ld, ld);
        } else {
          k::softmax_rows(x.data(), y.data(), rows, cols, ld, ld);
        }
        k::softmax_backward_rows(y.data(), dy.data(), dx.data(), rows, cols, log, ld, cols, cols);
        for (int64_t r = 0; r < rows; ++r) {
          const float* xr = &x[r * ld];
          double mx = -INFINITY, se = 0;
          for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, static_cast<double>(xr[j]));
          for (int64_t j = 0; j < cols; ++j) se += std::exp(xr[j] - mx);
          std::vector<double> p(cols), ref(cols), ly(cols);
          double dot = 0, sdy = 0;
          for (int64_t j = 0; j < cols; ++j) {
            p[j] = std::exp(xr[j] - mx) / se;
            ly[j] = xr[j] - mx - std::log(se);
            dot += dy[r * cols + j] * p[j];
            sdy += dy[r * cols + j];
          }
          for (int64_t j = 0; j < cols; ++j) {
            ref[j] = log ? dy[r * cols + j] - p[j] * sdy : p[j] * (dy[r * cols + j] - dot);
          }
          // Relative to the size of the terms that cancel: p·(|dy| + |dot|), or |dy| + p·|Σ dy|.
          double scale = 1e-30, e = 0;
          for (int64_t j = 0; j < cols; ++j) {
            const double g = std::fabs(dy[r * cols + j]);
            scale = std::max(scale, log ? g + p[j] * std::fabs(sdy) : p[j] * (g + std::fabs(dot)));
            e = std::max(e, std::fabs(dx[r * cols + j] - ref[j]));
          }
          e /= scale;
          note(log ? "logSoftmax backward" : "softmax backward", isa, e);
          CHECK(e <= 2e-6, "%s backward %s %lldx%lld row %lld err %.3g", log ? "logSoftmax" : "softmax", isa.c_str(),
                (long long)rows, (long long)cols, (long long)r, e);
          if (log) {
            const double ef = rel_err(&y[r * ld], ly, 1.0);
            note("logSoftmax", isa, ef);
            CHECK(ef <= 2e-6, "logSoftmax forward %s cols %lld err %.3g", isa.c_str(), (long long)cols, ef);
          }
        }
        // In place over dy (the same view).
        std::vector<float> g = dy;
        k::softmax_backward_rows(y.data(), g.data(), g.data(), rows, cols, log, ld, cols, cols);
        CHECK(same_bits(g, dx), "softmax backward in place differs (%s)", isa.c_str());
      }
    }
  }
}

// -------------------------------------------------------------------- norms
// Reference LayerNorm / RMSNorm backward in double: dx, dweight, dbias.
void norm_backward_ref(bool layer, const std::vector<float>& x, int64_t ldx, const std::vector<float>& w,
                       const float* dy, int64_t rows, int64_t cols, float eps, std::vector<double>& dx,
                       std::vector<double>& dw, std::vector<double>& db, std::vector<double>& scale) {
  dx.assign(rows * cols, 0);
  scale.assign(rows, 0);
  dw.assign(cols, 0);
  db.assign(cols, 0);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = &x[r * ldx];
    double mean = 0, var = 0;
    if (layer) {
      for (int64_t j = 0; j < cols; ++j) mean += xr[j];
      mean /= cols;
      for (int64_t j = 0; j < cols; ++j) var += (xr[j] - mean) * (xr[j] - mean);
    } else {
      for (int64_t j = 0; j < cols; ++j) var += static_cast<double>(xr[j]) * xr[j];
    }
    var /= cols;
    const double rstd = 1.0 / std::sqrt(var + eps);
    double a = 0, b = 0;
    std::vector<double> xh(cols), g(cols);
    for (int64_t j = 0; j < cols; ++j) {
      xh[j] = (xr[j] - mean) * rstd;
      g[j] = dy[r * cols + j] * (w.empty() ? 1.0 : w[j]);
      scale[r] = std::max(scale[r], rstd * std::fabs(g[j]));
      a += g[j];
      b += g[j] * xh[j];
      dw[j] += dy[r * cols + j] * xh[j];
      db[j] += dy[r * cols + j];
    }
    a /= cols;
    b /= cols;
    for (int64_t j = 0; j < cols; ++j) dx[r * cols + j] = rstd * (g[j] - (layer ? a : 0.0) - xh[j] * b);
  }
}

void test_norm_backward(const std::string& isa) {
  const float eps = 1e-5f;
  for (int64_t cols : kCols) {
    for (int64_t rows : {int64_t{1}, int64_t{7}, int64_t{40}}) {
      const int64_t ldx = cols + 5;
      std::vector<float> x(rows * ldx), w(cols), dy = randv(rows * cols);
      for (int64_t r = 0; r < rows; ++r) {
        const float offset = r % 3 == 1 ? 1e3f : 0.0f;  // a large common offset in some rows
        for (int64_t j = 0; j < cols; ++j) x[r * ldx + j] = offset + normal(2.0f);
      }
      for (auto& v : w) v = uniform(0.5f, 1.5f);
      for (int layer = 0; layer < 2; ++layer) {
        for (int affine = 0; affine < 2; ++affine) {
          std::vector<float> wv = affine ? w : std::vector<float>{};
          std::vector<double> rdx, rdw, rdb, scale;
          norm_backward_ref(layer, x, ldx, wv, dy.data(), rows, cols, eps, rdx, rdw, rdb, scale);
          std::vector<float> dx(rows * cols), dw(cols, 7.0f), db(cols, 7.0f);
          const float* wp = affine ? w.data() : nullptr;
          if (layer) {
            k::layer_norm_backward_rows(x.data(), wp, dy.data(), dx.data(), dw.data(), db.data(), rows, cols, eps, ldx);
          } else {
            k::rms_norm_backward_rows(x.data(), wp, dy.data(), dx.data(), dw.data(), rows, cols, eps, ldx);
          }
          const std::string name = layer ? "layerNorm backward" : "rmsNorm backward";
          // A row's dx is a difference of terms of size rstd·|g| (it cancels to ~0 for one column): the error is
          // relative to that scale.
          for (int64_t r = 0; r < rows; ++r) {
            double e = 0;
            for (int64_t j = 0; j < cols; ++j) e = std::max(e, std::fabs(dx[r * cols + j] - rdx[r * cols + j]));
            e /= std::max(scale[r], 1e-30);
            note(name + " dx", isa, e);
            CHECK(e <= 2e-6, "%s dx %s %lldx%lld row %lld err %.3g", name.c_str(), isa.c_str(), (long long)rows,
                  (long long)cols, (long long)r, e);
          }
          const double ew = rel_err(dw.data(), rdw, 1e-6);
          note(name + " dweight", isa, ew);
          CHECK(ew <= 2e-5, "%s dweight %s %lldx%lld err %.3g", name.c_str(), isa.c_str(), (long long)rows,
                (long long)cols, ew);
          if (layer) {
            const double eb = rel_err(db.data(), rdb, 1e-6);
            note(name + " dbias", isa, eb);
            CHECK(eb <= 2e-5, "%s dbias %s err %.3g", name.c_str(), isa.c_str(), eb);
          }
          // dx in place over dy, no parameter gradients requested: the same dx.
          std::vector<float> g = dy;
          if (layer) {
            k::layer_norm_backward_rows(x.data(), wp, g.data(), g.data(), nullptr, nullptr, rows, cols, eps, ldx);
          } else {
            k::rms_norm_backward_rows(x.data(), wp, g.data(), g.data(), nullptr, rows, cols, eps, ldx);
          }
          CHECK(same_bits(g, dx), "%s in place without parameter gradients differs (%s)", name.c_str(), isa.c_str());
        }
      }
    }
  }
}

// -------------------------------------------------------------- activations
double act_grad_ref(k::ActivationGrad op, double x) {
  switch (op) {
    case k::ActivationGrad::Relu:
      return x > 0 ? 1 : 0;
    case k::ActivationGrad::Gelu:
      return 0.5 * std::erfc(-x / std::sqrt(2.0)) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI);
    case k::ActivationGrad::GeluTanh: {
      const double b = std::sqrt(2 / M_PI), t = std::tanh(b * (x + 0.044715 * x * x * x));
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * b * (1 + 3 * 0.044715 * x * x);
    }
    case k::ActivationGrad::Silu: {
      const double s = 1 / (1 + std::exp(-x));
      return s * (1 + x * (1 - s));
    }
    case k::ActivationGrad::Sigmoid:
      return x * (1 - x);
    case k::ActivationGrad::Tanh:
      return 1 - x * x;
  }
  return 0;
}

void test_activation_backward(const std::string& isa) {
  const char* names[] = {"relu grad", "gelu grad", "gelu tanh grad", "silu grad", "sigmoid grad", "tanh grad"};
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{16}, int64_t{33}, int64_t{1000}}) {
    for (int o = 0; o < 6; ++o) {
      const auto op = static_cast<k::ActivationGrad>(o);
      std::vector<float> x(n), dy = randv(n), dx(n);
      for (int64_t i = 0; i < n; ++i) {
        float v = normal(3.0f);
        if (i % 11 == 3) v = 0.0f;
        if (op == k::ActivationGrad::Sigmoid) v = 1.0f / (1.0f + std::exp(-v));  // x is the output here
        if (op == k::ActivationGrad::Tanh) v = std::tanh(v);
        x[i] = v;
      }
      k::activation_backward(op, x.data(), dy.data(), dx.data(), n);
      double e = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double ref = dy[i] * act_grad_ref(op, x[i]);
        e = std::max(e, std::fabs(dx[i] - ref) / std::max(1e-6, std::fabs(static_cast<double>(dy[i]))));
      }
      note(names[o], isa, e);
      CHECK(e <= (op == k::ActivationGrad::Relu ? 0.0 : 2e-6), "%s %s n %lld err %.3g", names[o], isa.c_str(),
            (long long)n, e);
      std::vector<float> g = dy;
      k::activation_backward(op, x.data(), g.data(), g.data(), n);
      CHECK(same_bits(g, dx), "%s in place differs (%s)", names[o], isa.c_str());
    }
  }
  // relu at 0, -0 and NaN: 0, 0 and dy (PyTorch's threshold_backward).
  const float xs[3] = {0.0f, -0.0f, NAN}, dys[3] = {2.0f, 3.0f, 4.0f};
  float out[3];
  k::activation_backward(k::ActivationGrad::Relu, xs, dys, out, 3);
  CHECK(out[0] == 0.0f && out[1] == 0.0f && out[2] == 4.0f, "relu grad specials %g %g %g", out[0], out[1], out[2]);
}

// ---------------------------------------------------------------- embedding
void test_embedding_backward(const std::string& isa) {
  for (int64_t dim : {int64_t{1}, int64_t{5}, int64_t{64}, int64_t{300}}) {
    const int64_t num = 11, n = 50, ld = dim + 2;
    std::vector<int32_t> ids(n);
    for (auto& v : ids) v = static_cast<int32_t>(g_rng() % num);
    ids[0] = 3;
    std::vector<float> dy = randv(n * ld), dw(num * dim, 9.0f);
    const int64_t bad = k::embedding_backward(dy.data(), ld, ids.data(), n, dw.data(), num, dim, 3);
    CHECK(bad == -1, "embedding backward reported a bad id");
    std::vector<float> want(num * dim, 0.0f);
    for (int64_t i = 0; i < n; ++i) {
      if (ids[i] == 3) continue;
      for (int64_t c = 0; c < dim; ++c) want[ids[i] * dim + c] += dy[i * ld + c];
    }
    CHECK(same_bits(dw, want), "embedding backward %s dim %lld differs from the ordered sum", isa.c_str(),
          (long long)dim);
  }
  std::vector<int32_t> ids = {1, 7, 0};
  std::vector<float> dy(3 * 4, 1.0f), dw(5 * 4);
  CHECK(k::embedding_backward(dy.data(), 4, ids.data(), 3, dw.data(), 5, 4, -1) == 1, "a bad id must be reported");
}

// ------------------------------------------------------------ cross-entropy
void test_cross_entropy(const std::string& isa) {
  for (int64_t cols : {int64_t{1}, int64_t{2}, int64_t{15}, int64_t{17}, int64_t{100}, int64_t{1000}}) {
    const int64_t rows = 23, ld = cols + 1;
    std::vector<float> x(rows * ld), w(cols);
    for (auto& v : x) v = normal(4.0f);
    for (auto& v : w) v = uniform(0.2f, 2.0f);
    std::vector<int32_t> t(rows);
    for (int64_t i = 0; i < rows; ++i) t[i] = i % 7 == 5 ? -100 : static_cast<int32_t>(g_rng() % cols);
    for (int weighted = 0; weighted < 2; ++weighted) {
      for (float eps : {0.0f, 0.1f}) {
        const float* wp = weighted ? w.data() : nullptr;
        std::vector<float> loss(rows), lse(rows), dloss = randv(rows), dx(rows * cols);
        CHECK(k::cross_entropy_rows(x.data(), ld, t.data(), wp, -100, eps, loss.data(), lse.data(), rows, cols) == -1,
              "cross entropy reported a bad target");
        k::cross_entropy_backward_rows(x.data(), ld, lse.data(), t.data(), wp, -100, eps, dloss.data(), 1, dx.data(),
                                       cols, rows, cols);
        double wsum = 0;
        for (int64_t c = 0; c < cols; ++c) wsum += wp ? wp[c] : 1.0;
        std::vector<double> rl(rows), rdx(rows * cols, 0.0);
        for (int64_t i = 0; i < rows; ++i) {
          const float* xr = &x[i * ld];
          double mx = -INFINITY, se = 0, swx = 0;
          for (int64_t c = 0; c < cols; ++c) mx = std::max(mx, static_cast<double>(xr[c]));
          for (int64_t c = 0; c < cols; ++c) {
            se += std::exp(xr[c] - mx);
            swx += (wp ? wp[c] : 1.0) * xr[c];
          }
          const double l = mx + std::log(se);
          if (t[i] == -100) continue;
          const double wt = wp ? wp[t[i]] : 1.0;
          rl[i] = (1 - eps) * wt * (l - xr[t[i]]) + eps / cols * (l * wsum - swx);
          for (int64_t c = 0; c < cols; ++c) {
            const double p = std::exp(xr[c] - l);
            rdx[i * cols + c] =
                dloss[i] * ((1 - eps) * wt * (p - (c == t[i])) + eps / cols * (wsum * p - (wp ? wp[c] : 1.0)));
          }
        }
        const double el = rel_err(loss.data(), rl, 1.0);
        // Relative to |dloss|·max(w) per row (the terms p − onehot cancel to 0 for a single class).
        double ed = 0;
        for (int64_t i = 0; i < rows; ++i) {
          double wmax = 1;
          if (wp) wmax = *std::max_element(wp, wp + cols);
          const double sc = std::max(1e-30, std::fabs(static_cast<double>(dloss[i])) * wmax);
          for (int64_t c = 0; c < cols; ++c) ed = std::max(ed, std::fabs(dx[i * cols + c] - rdx[i * cols + c]) / sc);
        }
        note("crossEntropy", isa, el);
        note("crossEntropy backward", isa, ed);
        CHECK(el <= 2e-6, "crossEntropy %s cols %lld err %.3g", isa.c_str(), (long long)cols, el);
        CHECK(ed <= 2e-6, "crossEntropy backward %s cols %lld err %.3g", isa.c_str(), (long long)cols, ed);
        // One dloss for every row (stride 0), in place over the logits' own view.
        std::vector<float> xc(x.begin(), x.end());
        const float g = 0.25f;
        k::cross_entropy_backward_rows(xc.data(), ld, lse.data(), t.data(), wp, -100, eps, &g, 0, xc.data(), ld, rows,
                                       cols);
        for (int64_t i = 0; i < rows; ++i) {
          for (int64_t c = 0; c < cols; ++c) {
            const double want = rdx[i * cols + c] / dloss[i] * g;
            CHECK(std::fabs(xc[i * ld + c] - want) <= 1e-5 * std::max(1.0, std::fabs(want)) || dloss[i] == 0.0f,
                  "crossEntropy backward stride 0 in place %s (%lld, %lld)", isa.c_str(), (long long)i, (long long)c);
          }
        }
      }
    }
  }
  std::vector<float> x(6, 0.0f), loss(2), lse(2);
  std::vector<int32_t> t = {1, 3};
  CHECK(k::cross_entropy_rows(x.data(), 3, t.data(), nullptr, -100, 0.0f, loss.data(), lse.data(), 2, 3) == 1,
        "a bad target must be reported");
}

// ------------------------------------------------------------------ threads
void test_threads_identical(const std::string& isa) {
  const int64_t rows = 1500, cols = 384, n = rows * cols;
  std::vector<float> x = randv(n, 2.0f), dy = randv(n), w(cols);
  for (auto& v : w) v = uniform(0.5f, 1.5f);
  std::vector<int32_t> ids(rows), t(rows);
  for (int64_t i = 0; i < rows; ++i) {
    ids[i] = static_cast<int32_t>(g_rng() % 97);
    t[i] = static_cast<int32_t>(g_rng() % cols);
  }
  auto run_all = [&](int threads) {
    set_threads(threads);
    std::vector<std::vector<float>> o(12);
    for (auto& v : o) v.assign(n, 0.0f);
    k::softmax_backward_rows(x.data(), dy.data(), o[0].data(), rows, cols, false);
    k::log_softmax_rows(x.data(), o[1].data(), rows, cols);
    k::layer_norm_backward_rows(x.data(), w.data(), dy.data(), o[2].data(), o[3].data(), o[4].data(), rows, cols,
                                1e-5f);
    k::rms_norm_backward_rows(x.data(), w.data(), dy.data(), o[5].data(), o[6].data(), rows, cols, 1e-5f);
    k::activation_backward(k::ActivationGrad::Gelu, x.data(), dy.data(), o[7].data(), n);
    k::embedding_backward(dy.data(), cols, ids.data(), rows, o[8].data(), 97, cols, -1);
    std::vector<float> lse(rows);
    k::cross_entropy_rows(x.data(), cols, t.data(), w.data(), -100, 0.1f, o[9].data(), lse.data(), rows, cols);
    k::cross_entropy_backward_rows(x.data(), cols, lse.data(), t.data(), w.data(), -100, 0.1f, dy.data(), 1,
                                   o[10].data(), cols, rows, cols);
    k::activation_backward(k::ActivationGrad::Silu, x.data(), dy.data(), o[11].data(), n);
    return o;
  };
  auto one = run_all(1);
  auto two = run_all(2);
  const char* names[] = {
      "softmax backward", "logSoftmax", "layerNorm dx",   "layerNorm dweight", "layerNorm dbias",       "rmsNorm dx",
      "rmsNorm dw",       "gelu grad",  "embedding grad", "crossEntropy",      "crossEntropy backward", "silu grad"};
  for (int i = 0; i < 12; ++i)
    CHECK(same_bits(one[i], two[i]), "%s: 2 threads differ from 1 (%s)", names[i], isa.c_str());
  set_threads(2);
}

}  // namespace

int main() {
  set_threads(2);
  const std::vector<std::string> ran = for_each_isa([](const std::string& name, rt::Isa) {
    test_softmax_backward(name);
    test_norm_backward(name);
    test_activation_backward(name);
    test_embedding_backward(name);
    test_cross_entropy(name);
    test_threads_identical(name);
  });
  print_error_table(ran, 24,
                    "(errors relative to the largest reference value of the row / vector; activations relative to "
                    "|dy|;\n embedding backward must equal the in-order sum bit for bit)");
  return finish();
}
