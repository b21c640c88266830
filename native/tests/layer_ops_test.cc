// Layer-op kernels vs double-precision naive references, on every ISA path the
// machine can run (runtime::set_isa), awkward sizes, large magnitudes and
// special values; multithreaded results must be bit-identical to
// single-threaded ones. Prints the max error per op and ISA; exit code 1 on
// any failure. Built and run by run_layer_ops_test.sh.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "../kernels/elementwise/elementwise.h"
#include "../kernels/layout/layout.h"
#include "../kernels/norms/norms.h"
#include "../kernels/softmax/softmax.h"
#include "../runtime/cpu_features.h"
#include "../runtime/thread_pool.h"
#include "check.h"

namespace k = attnode::kernels;
namespace rt = attnode::runtime;

namespace {

std::mt19937_64 g_rng(12345);

const std::vector<int64_t> kCols = {1, 3, 15, 16, 17, 31, 33, 767, 768, 1000, 4097};
const std::vector<int64_t> kRows = {1, 2, 37, 300};

float normal(float s = 1.0f) { return std::normal_distribution<float>(0.0f, s)(g_rng); }
float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g_rng); }

// ------------------------------------------------------------------ softmax
void fill_softmax_row(float* r, int64_t n, int kind) {
  for (int64_t j = 0; j < n; ++j) {
    switch (kind) {
      case 0:
        r[j] = normal(3.0f);
        break;
      case 1:  // large-magnitude logits
        r[j] = uniform(-1e4f, 1e4f);
        break;
      case 2:  // constant row
        r[j] = 7.25f;
        break;
      case 3:  // large common offset, small spread
        r[j] = 1e4f + normal(2.0f);
        break;
      case 4:  // some masked (-inf) entries, at least one finite
        r[j] = (j % 3 == 1) ? -INFINITY : normal(1.0f);
        break;
      default:  // near-ties around a negative offset
        r[j] = -5e3f + uniform(-1.0f, 1.0f);
    }
  }
}

void test_softmax(const std::string& isa) {
  for (int64_t cols : kCols) {
    for (int64_t rows : kRows) {
      std::vector<float> x(rows * cols), y(rows * cols);
      for (int64_t r = 0; r < rows; ++r) fill_softmax_row(&x[r * cols], cols, static_cast<int>(r % 6));
      k::softmax_rows(x.data(), y.data(), rows, cols);
      for (int64_t r = 0; r < rows; ++r) {
        const float* xr = &x[r * cols];
        double m = -INFINITY;
        for (int64_t j = 0; j < cols; ++j) m = std::max(m, static_cast<double>(xr[j]));
        double s = 0;
        for (int64_t j = 0; j < cols; ++j) s += std::exp(static_cast<double>(xr[j]) - m);
        double rowsum = 0;
        for (int64_t j = 0; j < cols; ++j) {
          double ref = std::exp(static_cast<double>(xr[j]) - m) / s;
          double got = y[r * cols + j];
          CHECK(std::isfinite(got), "softmax %s %lldx%lld row %lld col %lld = %g", isa.c_str(), (long long)rows,
                (long long)cols, (long long)r, (long long)j, got);
          double ae = std::fabs(got - ref);
          note("softmax abs", isa, ae);
          // Relative error where it is meaningful. Rounding the float
          // difference x - max (as every float softmax does) alone moves
          // exp() by |x - max| * 6e-8 relative, so the bound grows with it.
          const double dist = m - xr[j];
          if (ref >= 1e-6) {
            note("softmax rel p>=1e-6", isa, ae / ref);
            if (ref >= 1e-3) note("softmax rel p>=1e-3", isa, ae / ref);
          }
          rowsum += got;
          CHECK(ae <= 1e-6 && (ref < 1e-6 || ae / ref <= 1e-6 + dist * 1.2e-7),
                "softmax %s cols %lld got %.9g ref %.9g", isa.c_str(), (long long)cols, got, ref);
        }
        CHECK(std::fabs(rowsum - 1.0) < 1e-5, "softmax row sum %g", rowsum);
      }
      // In place gives the same bits.
      std::vector<float> z = x;
      k::softmax_rows(z.data(), z.data(), rows, cols);
      CHECK(same_bits(z, y), "softmax in-place differs (%s, %lldx%lld)", isa.c_str(), (long long)rows, (long long)cols);
    }
  }
  // All -inf row -> NaN (PyTorch), constant row -> uniform, NaN input -> NaN row.
  for (int64_t cols : kCols) {
    std::vector<float> x(3 * cols, -INFINITY), y(3 * cols);
    for (int64_t j = 0; j < cols; ++j) x[cols + j] = -3.0f;
    for (int64_t j = 0; j < cols; ++j) x[2 * cols + j] = 1.0f;
    x[2 * cols + cols / 2] = NAN;
    k::softmax_rows(x.data(), y.data(), 3, cols);
    for (int64_t j = 0; j < cols; ++j) {
      CHECK(std::isnan(y[j]), "softmax all -inf row should be NaN, got %g", y[j]);
      CHECK(std::fabs(y[cols + j] - 1.0 / cols) <= 1e-6 / cols, "softmax constant row %g", y[cols + j]);
      CHECK(std::isnan(y[2 * cols + j]), "softmax row with NaN should be NaN, got %g", y[2 * cols + j]);
    }
  }
}

// ---------------------------------------------------------------- layerNorm
void test_layer_norm(const std::string& isa) {
  const float eps = 1e-5f;
  for (int64_t cols : kCols) {
    for (int64_t rows : kRows) {
      std::vector<float> x(rows * cols), y(rows * cols), g(cols), b(cols);
      for (int64_t j = 0; j < cols; ++j) {
        g[j] = uniform(0.5f, 1.5f);
        b[j] = uniform(-1.0f, 1.0f);
      }
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t j = 0; j < cols; ++j) {
          float v;
          switch (r % 5) {
            case 0:
              v = normal(1.0f);
              break;
            case 1:  // large constant offset: naive E[x^2]-E[x]^2 in float would lose everything
              v = 1e4f + normal(1.0f);
              break;
            case 2:  // constant row -> exactly beta
              v = -123.5f;
              break;
            case 3:
              v = uniform(-1e4f, 1e4f);
              break;
            default:  // outlier first element (the pass-1 shift)
              v = j == 0 ? 50.0f : normal(0.01f) - 3.0f;
          }
          x[r * cols + j] = v;
        }
      }
      for (int affine = 0; affine < 4; ++affine) {
        const float* gp = (affine & 1) ? g.data() : nullptr;
        const float* bp = (affine & 2) ? b.data() : nullptr;
        k::layer_norm_rows(x.data(), gp, bp, y.data(), rows, cols, eps);
        for (int64_t r = 0; r < rows; ++r) {
          const float* xr = &x[r * cols];
          double mean = 0, var = 0;
          for (int64_t j = 0; j < cols; ++j) mean += xr[j];
          mean /= cols;
          for (int64_t j = 0; j < cols; ++j) var += (xr[j] - mean) * (xr[j] - mean);
          var /= cols;
          const double rstd = 1.0 / std::sqrt(var + eps);
          for (int64_t j = 0; j < cols; ++j) {
            double ref = (xr[j] - mean) * rstd * (gp ? gp[j] : 1.0) + (bp ? bp[j] : 0.0);
            double got = y[r * cols + j];
            double e = std::fabs(got - ref) / std::max(1.0, std::fabs(ref));
            note("layerNorm", isa, e);
            CHECK(e <= 2e-6, "layerNorm %s %lldx%lld row %lld got %.9g ref %.9g", isa.c_str(), (long long)rows,
                  (long long)cols, (long long)r, got, ref);
            if (r % 5 == 2) {
              CHECK(got == (bp ? bp[j] : 0.0), "layerNorm constant row must give beta exactly: %.9g", got);
            }
          }
        }
      }
      std::vector<float> z = x, yy(rows * cols);
      k::layer_norm_rows(x.data(), g.data(), b.data(), yy.data(), rows, cols, eps);
      k::layer_norm_rows(z.data(), g.data(), b.data(), z.data(), rows, cols, eps);
      CHECK(same_bits(z, yy), "layerNorm in-place differs");
    }
  }
}

// ------------------------------------------------------------------ RMSNorm
// Row kinds for RMSNorm: every element of a row x * rstd * w carries only
// rstd's error plus two roundings, so the check is relative per element.
float rms_value(int kind, int64_t j) {
  switch (kind) {
    case 0:
      return normal(1.0f);
    case 1:  // large common offset: RMSNorm does not centre, so it is part of the scale
      return 1e4f + normal(1.0f);
    case 2:  // constant row
      return -123.5f;
    case 3:
      return uniform(-1e4f, 1e4f);
    case 4:  // all zero: y must be exactly 0
      return 0.0f;
    case 5:  // tiny values, eps dominates (their squares are float denormals)
      return normal(1e-20f);
    default:  // one outlier
      return j == 0 ? 3e3f : normal(0.01f);
  }
}

double rms_ref_rstd(const float* xr, int64_t cols, float eps) {
  double ss = 0;
  for (int64_t j = 0; j < cols; ++j) ss += static_cast<double>(xr[j]) * xr[j];
  return 1.0 / std::sqrt(ss / cols + eps);
}

// y (rows x cols, row stride ldy) against the double reference of x (stride ldx).
void check_rms_rows(const std::string& isa, const char* what, const float* x, int64_t ldx, const float* w,
                    const float* y, int64_t ldy, int64_t rows, int64_t cols, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    const double rstd = rms_ref_rstd(xr, cols, eps);
    for (int64_t j = 0; j < cols; ++j) {
      const double ref = xr[j] * rstd * (w ? w[j] : 1.0);
      const double got = y[r * ldy + j];
      const double e = std::fabs(got - ref) / std::max(std::fabs(ref), 1e-300);
      note(what, isa, ref == 0.0 ? (got == 0.0 ? 0.0 : 1.0) : e);
      CHECK(ref == 0.0 ? got == 0.0 : e <= 1e-6, "%s %s %lldx%lld row %lld col %lld got %.9g ref %.9g", what,
            isa.c_str(), (long long)rows, (long long)cols, (long long)r, (long long)j, got, ref);
    }
  }
}

void test_rms_norm(const std::string& isa) {
  for (int64_t cols : kCols) {
    for (int64_t rows : kRows) {
      const float eps = rows % 2 ? 1e-6f : 1e-5f;
      std::vector<float> x(rows * cols), y(rows * cols), w(cols);
      for (int64_t j = 0; j < cols; ++j) w[j] = j % 5 == 4 ? -uniform(0.5f, 1.5f) : uniform(0.5f, 1.5f);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < cols; ++j) x[r * cols + j] = rms_value(static_cast<int>(r % 7), j);
      for (const float* wp : {static_cast<const float*>(nullptr), static_cast<const float*>(w.data())}) {
        std::fill(y.begin(), y.end(), NAN);
        k::rms_norm_rows(x.data(), wp, y.data(), rows, cols, eps);
        check_rms_rows(isa, "rmsNorm", x.data(), cols, wp, y.data(), cols, rows, cols, eps);
        // In place gives the same bits.
        std::vector<float> z = x;
        k::rms_norm_rows(z.data(), wp, z.data(), rows, cols, eps);
        CHECK(same_bits(z, y), "rmsNorm in-place differs (%s, %lldx%lld)", isa.c_str(), (long long)rows,
              (long long)cols);
      }
    }
  }
  // rows == 0 (and cols == 0) write nothing.
  std::vector<float> x(64, 1.0f), y(64, -7.0f);
  k::rms_norm_rows(x.data(), nullptr, y.data(), 0, 16, 1e-5f);
  k::rms_norm_rows(x.data(), nullptr, y.data(), 4, 0, 1e-5f);
  k::add_rms_norm_rows(x.data(), x.data(), nullptr, y.data(), y.data() + 32, 0, 16, 1e-5f);
  k::softmax_rows(x.data(), y.data(), 0, 16, 32, 32);
  k::layer_norm_rows(x.data(), nullptr, nullptr, y.data(), 0, 16, 1e-5f, 32, 32);
  for (float v : y) CHECK(v == -7.0f, "rows == 0 wrote %g", v);
}

void test_add_rms_norm(const std::string& isa) {
  const float eps = 1e-5f;
  for (int64_t cols : kCols) {
    for (int64_t rows : {int64_t{1}, int64_t{37}, int64_t{300}}) {
      const int64_t n = rows * cols;
      std::vector<float> x(n), res(n), w(cols);
      for (auto& v : x) v = normal(2.0f);
      for (int64_t i = 0; i < n; ++i) res[i] = i % 11 == 3 ? 1e4f : normal(1.0f);
      for (auto& v : w) v = uniform(-1.5f, 1.5f);
      for (const float* wp : {static_cast<const float*>(nullptr), static_cast<const float*>(w.data())}) {
        // Unfused: binary_op(Add), then rms_norm_rows.
        std::vector<float> s_ref(n), y_ref(n);
        const int64_t shape[1] = {n}, st[1] = {1};
        k::binary_op(k::BinaryOp::Add, x.data(), st, res.data(), st, s_ref.data(), shape, 1);
        k::rms_norm_rows(s_ref.data(), wp, y_ref.data(), rows, cols, eps);
        check_rms_rows(isa, "addRmsNorm", s_ref.data(), cols, wp, y_ref.data(), cols, rows, cols, eps);

        std::vector<float> y(n, NAN), sum(n, NAN);
        k::add_rms_norm_rows(x.data(), res.data(), wp, y.data(), sum.data(), rows, cols, eps);
        CHECK(same_bits(y, y_ref) && same_bits(sum, s_ref), "addRmsNorm differs from add + rmsNorm (%s %lldx%lld)",
              isa.c_str(), (long long)rows, (long long)cols);
        std::fill(y.begin(), y.end(), NAN);
        k::add_rms_norm_rows(x.data(), res.data(), wp, y.data(), nullptr, rows, cols, eps);
        CHECK(same_bits(y, y_ref), "addRmsNorm without sum differs (%s)", isa.c_str());
        // Aliasing: y onto x, y onto r, sum onto x with y separate, sum onto r.
        std::vector<float> a = x, b = res;
        k::add_rms_norm_rows(a.data(), b.data(), wp, a.data(), nullptr, rows, cols, eps);
        CHECK(same_bits(a, y_ref) && b == res, "addRmsNorm y = x in place differs (%s)", isa.c_str());
        a = x;
        k::add_rms_norm_rows(a.data(), b.data(), wp, b.data(), nullptr, rows, cols, eps);
        CHECK(same_bits(b, y_ref) && a == x, "addRmsNorm y = r in place differs (%s)", isa.c_str());
        b = res;
        std::fill(y.begin(), y.end(), NAN);
        k::add_rms_norm_rows(a.data(), b.data(), wp, y.data(), a.data(), rows, cols, eps);
        CHECK(same_bits(a, s_ref) && same_bits(y, y_ref), "addRmsNorm sum = x in place differs (%s)", isa.c_str());
        a = x;
        std::fill(y.begin(), y.end(), NAN);
        k::add_rms_norm_rows(a.data(), b.data(), wp, y.data(), b.data(), rows, cols, eps);
        CHECK(same_bits(b, s_ref) && same_bits(y, y_ref), "addRmsNorm sum = r in place differs (%s)", isa.c_str());
      }
    }
  }
}

// ------------------------------------------------------------- row strides
// Row-strided views: each op on rows of length cols inside wider buffers
// (row stride ld > cols, starting at a column offset) must produce exactly
// the bits of the same rows packed contiguously, and never touch the
// elements between rows.
void test_row_strides(const std::string& isa) {
  struct Op {
    const char* name;
    // (x, ldx, y, ldy, rows, cols); ld 0 = contiguous.
    std::function<void(const float*, int64_t, float*, int64_t, int64_t, int64_t)> run;
  };
  std::vector<float> g(4200), b(4200);
  for (auto& v : g) v = uniform(0.5f, 1.5f);
  for (auto& v : b) v = normal();
  const std::vector<Op> ops = {
      {"softmax", [](const float* x, int64_t lx, float* y, int64_t ly, int64_t r,
                     int64_t c) { k::softmax_rows(x, y, r, c, lx, ly); }},
      {"layerNorm", [&](const float* x, int64_t lx, float* y, int64_t ly, int64_t r,
                        int64_t c) { k::layer_norm_rows(x, g.data(), b.data(), y, r, c, 1e-5f, lx, ly); }},
      {"rmsNorm", [&](const float* x, int64_t lx, float* y, int64_t ly, int64_t r,
                      int64_t c) { k::rms_norm_rows(x, g.data(), y, r, c, 1e-5f, lx, ly); }},
      {"rmsNorm no weight", [](const float* x, int64_t lx, float* y, int64_t ly, int64_t r,
                               int64_t c) { k::rms_norm_rows(x, nullptr, y, r, c, 1e-5f, lx, ly); }},
  };
  const float kGap = -12345.5f;
  for (const Op& op : ops) {
    for (int64_t cols : {int64_t{1}, int64_t{17}, int64_t{64}, int64_t{767}, int64_t{4097}}) {
      for (int64_t rows : {int64_t{1}, int64_t{5}, int64_t{300}}) {
        const int64_t ldx = cols * 3 + 5, ldy = cols + 7, off = cols / 2 + 1;
        std::vector<float> xw(rows * ldx), yw(rows * ldy, kGap), packed(rows * cols), ref(rows * cols);
        for (auto& v : xw) v = normal(3.0f);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < cols; ++j) packed[r * cols + j] = xw[off + r * ldx + j];
        op.run(packed.data(), 0, ref.data(), 0, rows, cols);
        const std::vector<float> x_before = xw;

        // Strided x into strided y (different strides).
        op.run(xw.data() + off, ldx, yw.data() + 1, ldy, rows, cols);
        bool rows_ok = true, gaps_ok = true;
        for (int64_t i = 0; i < rows * ldy; ++i) {
          const int64_t r = (i - 1) / ldy, j = (i - 1) % ldy;
          if (i >= 1 && j < cols && r < rows) {
            rows_ok &= std::memcmp(&yw[i], &ref[r * cols + j], sizeof(float)) == 0;
          } else {
            gaps_ok &= yw[i] == kGap;
          }
        }
        CHECK(rows_ok, "%s strided rows differ from contiguous (%s %lldx%lld)", op.name, isa.c_str(), (long long)rows,
              (long long)cols);
        CHECK(gaps_ok, "%s wrote between strided rows (%s %lldx%lld)", op.name, isa.c_str(), (long long)rows,
              (long long)cols);
        CHECK(same_bits(xw, x_before), "%s modified its strided input", op.name);

        // In place on the strided view (x == y, ldx == ldy).
        op.run(xw.data() + off, ldx, xw.data() + off, ldx, rows, cols);
        rows_ok = gaps_ok = true;
        for (int64_t i = 0; i < rows * ldx; ++i) {
          const int64_t r = i / ldx, j = i % ldx - off;
          if (j >= 0 && j < cols) {
            rows_ok &= std::memcmp(&xw[i], &ref[r * cols + j], sizeof(float)) == 0;
          } else {
            gaps_ok &= std::memcmp(&xw[i], &x_before[i], sizeof(float)) == 0;
          }
        }
        CHECK(rows_ok && gaps_ok, "%s strided in place (%s %lldx%lld): rows %d gaps %d", op.name, isa.c_str(),
              (long long)rows, (long long)cols, rows_ok, gaps_ok);
      }
    }
  }
}

// -------------------------------------------------------------- activations
std::vector<float> activation_inputs(int64_t n) {
  std::vector<float> x(n);
  const float specials[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-7f, -1e-7f, 1e4f, -1e4f, 30.0f, -30.0f, 88.0f, -88.0f};
  for (int64_t i = 0; i < n; ++i) {
    x[i] = (i % 7 == 3) ? specials[(i / 7) % 12] : (i % 2 ? uniform(-10.0f, 10.0f) : normal(2.0f));
  }
  return x;
}

double gelu_ref(double x, bool tanh_approx) {
  if (tanh_approx) {
    // 0.5x(1 + tanh(u)) == x / (1 + exp(-2u)), the second without cancellation.
    double u = std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
    return x / (1.0 + std::exp(-2.0 * u));
  }
  return 0.5 * x * std::erfc(-x / std::sqrt(2.0));
}

// Condition number |x f'(x) / f(x)|: rounding the float argument of an inner
// function (x / sqrt2, u) by half an ulp already moves f by cond * 6e-8
// relative, in every float implementation; deep in the negative tail (x ~ -9)
// that is ~100. The tolerance scales with it.
double gelu_cond(double x, bool tanh_approx) {
  if (x == 0.0) return 1.0;
  double f = gelu_ref(x, tanh_approx), df;
  if (tanh_approx) {
    const double k0 = std::sqrt(2.0 / M_PI);
    double u = k0 * (x + 0.044715 * x * x * x);
    double s = 1.0 / (1.0 + std::exp(-2.0 * u));
    df = s + x * s * (1.0 - s) * 2.0 * k0 * (1.0 + 3.0 * 0.044715 * x * x);
  } else {
    df = 0.5 * std::erfc(-x / std::sqrt(2.0)) + x * std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI);
  }
  return std::fabs(x * df / f);
}

void check_gelu(const std::string& isa, const std::vector<float>& x, const std::vector<float>& y, bool tanh_approx) {
  const std::string op = tanh_approx ? "gelu tanh" : "gelu erf";
  for (size_t i = 0; i < x.size(); ++i) {
    double ref = gelu_ref(x[i], tanh_approx);
    double got = y[i];
    if (std::fabs(ref) < 1e-37) {  // underflow region: absolute
      CHECK(std::fabs(got - ref) <= 1e-37, "%s %s x=%g got %g ref %g", op.c_str(), isa.c_str(), x[i], got, ref);
      continue;
    }
    double e = std::fabs(got - ref) / std::fabs(ref);
    double cond = std::max(1.0, gelu_cond(x[i], tanh_approx));
    if (std::fabs(x[i]) <= 5.0f) note(op + " rel |x|<=5", isa, e);
    note(op + " rel/cond", isa, e / cond);
    CHECK(e <= 1e-6 + cond * 1.2e-7, "%s %s x=%.9g got %.9g ref %.9g rel %g cond %g", op.c_str(), isa.c_str(), x[i],
          got, ref, e, cond);
  }
}

void test_activations(const std::string& isa) {
  std::vector<int64_t> sizes = kCols;
  sizes.push_back(300 * 1000 + 17);  // above the parallel grain
  for (int64_t n : sizes) {
    std::vector<float> x = activation_inputs(n), y(n), z(n);
    k::relu(x.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) CHECK(y[i] == std::max(x[i], 0.0f), "relu %g -> %g", x[i], y[i]);
    k::gelu(x.data(), y.data(), n, false);
    check_gelu(isa, x, y, false);
    k::gelu(x.data(), y.data(), n, true);
    check_gelu(isa, x, y, true);
    z = x;
    k::gelu(z.data(), z.data(), n, true);
    CHECK(same_bits(z, y), "gelu in-place differs");
  }
  // Specials: NaN propagates; +-inf.
  std::vector<float> s = {NAN, INFINITY, -INFINITY}, y(3);
  k::gelu(s.data(), y.data(), 3, false);
  CHECK(std::isnan(y[0]) && y[1] == INFINITY, "gelu erf specials %g %g", y[0], y[1]);
  k::gelu(s.data(), y.data(), 3, true);
  CHECK(std::isnan(y[0]) && y[1] == INFINITY, "gelu tanh specials %g %g", y[0], y[1]);
  k::relu(s.data(), y.data(), 3);
  CHECK(std::isnan(y[0]) && y[1] == INFINITY && y[2] == 0.0f, "relu specials");
}

// ------------------------------------------------------ silu, sigmoid, tanh
double unary_ref(k::UnaryOp op, double x) {
  switch (op) {
    case k::UnaryOp::Silu:
      return x / (1.0 + std::exp(-x));
    case k::UnaryOp::Sigmoid:
      return 1.0 / (1.0 + std::exp(-x));
    default:
      return std::tanh(x);
  }
}

// |got - ref| within a few float ulps of ref (relative), absolute below the
// normal range where the float result itself is denormal or flushed to 0.
bool close_rel(double got, double ref, double rel) {
  if (std::isnan(ref)) return std::isnan(got);
  if (std::isinf(ref)) return got == ref;
  if (std::fabs(ref) < 1e-30) return std::fabs(got - ref) <= 1e-37;
  return std::fabs(got - ref) <= rel * std::fabs(ref);
}

void test_unary(const std::string& isa) {
  const char* names[] = {"silu", "sigmoid", "tanh"};
  std::vector<int64_t> sizes = kCols;
  sizes.push_back(300 * 1000 + 17);  // above the parallel grain
  for (int64_t n : sizes) {
    std::vector<float> x = activation_inputs(n), y(n), z(n);
    for (int opi = 0; opi < 3; ++opi) {
      const auto op = static_cast<k::UnaryOp>(opi);
      k::unary(op, x.data(), y.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double ref = unary_ref(op, x[i]);
        if (std::fabs(ref) >= 1e-30)
          note(std::string(names[opi]) + " rel", isa, std::fabs(y[i] - ref) / std::fabs(ref));
        CHECK(close_rel(y[i], ref, 5e-7), "%s %s x=%.9g got %.9g ref %.9g", names[opi], isa.c_str(), x[i], y[i], ref);
      }
      z = x;
      k::unary(op, z.data(), z.data(), n);
      CHECK(same_bits(z, y), "%s in-place differs", names[opi]);
    }
    // silu(gate) * up: silu rounded to float first, as F.silu(g) * u.
    std::vector<float> up(n);
    for (auto& v : up) v = normal(2.0f);
    k::silu_mul(x.data(), up.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double ref = unary_ref(k::UnaryOp::Silu, x[i]) * up[i];
      if (std::fabs(ref) >= 1e-30) note("siluMul rel", isa, std::fabs(y[i] - ref) / std::fabs(ref));
      CHECK(close_rel(y[i], ref, 8e-7), "siluMul %s g=%.9g u=%.9g got %.9g ref %.9g", isa.c_str(), x[i], up[i], y[i],
            ref);
    }
    z = up;
    k::silu_mul(x.data(), z.data(), z.data(), n);
    CHECK(same_bits(z, y), "siluMul in place (y = up) differs");
  }
  // Specials: NaN propagates; saturation at +-inf; silu(-inf) = -inf / inf = NaN, as PyTorch's formula gives.
  std::vector<float> s = {NAN, INFINITY, -INFINITY}, y(3);
  k::unary(k::UnaryOp::Silu, s.data(), y.data(), 3);
  CHECK(std::isnan(y[0]) && y[1] == INFINITY && std::isnan(y[2]), "silu specials %g %g %g", y[0], y[1], y[2]);
  k::unary(k::UnaryOp::Sigmoid, s.data(), y.data(), 3);
  CHECK(std::isnan(y[0]) && y[1] == 1.0f && y[2] == 0.0f, "sigmoid specials %g %g %g", y[0], y[1], y[2]);
  k::unary(k::UnaryOp::Tanh, s.data(), y.data(), 3);
  CHECK(std::isnan(y[0]) && y[1] == 1.0f && y[2] == -1.0f, "tanh specials %g %g %g", y[0], y[1], y[2]);
}

// ----------------------------------------------------------------- binary
float apply(k::BinaryOp op, float a, float b) {
  switch (op) {
    case k::BinaryOp::Add:
      return a + b;
    case k::BinaryOp::Sub:
      return a - b;
    case k::BinaryOp::Mul:
      return a * b;
    default:
      return a / b;
  }
}

// a and b are given as (buffer, strides over `shape`); the reference walks
// every index with plain scalar float ops, so results must match bit for bit.
void check_binary(const std::string& isa, const std::vector<int64_t>& shape, const std::vector<int64_t>& as,
                  const std::vector<int64_t>& bs, size_t a_len, size_t b_len) {
  std::vector<float> a(a_len), b(b_len);
  for (auto& v : a) v = normal(3.0f);
  for (auto& v : b) v = uniform(0.5f, 4.0f) * (g_rng() & 1 ? 1.0f : -1.0f);
  int64_t total = 1;
  for (int64_t s : shape) total *= s;
  for (int opi = 0; opi < 4; ++opi) {
    auto op = static_cast<k::BinaryOp>(opi);
    std::vector<float> y(total), ref(total);
    k::binary_op(op, a.data(), as.data(), b.data(), bs.data(), y.data(), shape.data(), static_cast<int>(shape.size()));
    std::vector<int64_t> idx(shape.size(), 0);
    for (int64_t i = 0; i < total; ++i) {
      int64_t oa = 0, ob = 0;
      for (size_t d = 0; d < shape.size(); ++d) {
        oa += idx[d] * as[d];
        ob += idx[d] * bs[d];
      }
      ref[i] = apply(op, a[oa], b[ob]);
      for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
        if (++idx[d] < shape[d]) break;
        idx[d] = 0;
      }
    }
    bool ok = same_bits(y, ref);
    note("binary (max |diff|)", isa, 0.0);
    if (!ok) {
      double md = 0;
      for (int64_t i = 0; i < total; ++i) md = std::max(md, static_cast<double>(std::fabs(y[i] - ref[i])));
      note("binary (max |diff|)", isa, md);
    }
    CHECK(ok, "binary op %d %s ndim %zu total %lld", opi, isa.c_str(), shape.size(), (long long)total);
  }
}

std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> s(shape.size());
  int64_t acc = 1;
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    s[d] = acc;
    acc *= shape[d];
  }
  return s;
}

void test_binary(const std::string& isa) {
  for (int64_t cols : kCols) {
    for (int64_t rows : {int64_t{1}, int64_t{3}, int64_t{300}}) {
      std::vector<int64_t> sh = {rows, cols}, cs = contiguous_strides(sh);
      const size_t n = rows * cols;
      check_binary(isa, sh, cs, cs, n, n);                                   // same shape
      check_binary(isa, sh, cs, {0, 1}, n, cols);                            // bias row broadcast along leading dims
      check_binary(isa, sh, cs, {0, 0}, n, 1);                               // scalar b
      check_binary(isa, sh, {0, 0}, cs, 1, n);                               // scalar a (e.g. 1 - x)
      check_binary(isa, sh, cs, {1, 0}, n, rows);                            // column broadcast [R,1]
      check_binary(isa, sh, {1, rows}, cs, n, n);                            // transposed a (strided inner)
      check_binary(isa, {rows, 1, cols}, {cols, 0, 1}, {0, 0, 1}, n, cols);  // size-1 dim
    }
  }
  // N-d broadcasting: [A,1,C] op [1,B,C], [2,3,4,5] vs [3,1,5], a 0-d op, 8 dims.
  check_binary(isa, {5, 7, 33}, {33, 0, 1}, {0, 33, 1}, 5 * 33, 7 * 33);
  check_binary(isa, {2, 3, 4, 5}, contiguous_strides({2, 3, 4, 5}), {0, 5, 0, 1}, 120, 15);
  check_binary(isa, {}, {}, {}, 1, 1);
  check_binary(isa, {2, 1, 3, 2, 2, 1, 3, 5}, contiguous_strides({2, 1, 3, 2, 2, 1, 3, 5}), {0, 0, 1, 0, 3, 0, 0, 0},
               360, 6);
  // Large enough to be split over threads, with a broadcast row.
  check_binary(isa, {1000, 129}, {129, 1}, {0, 1}, 129000, 129);
}

// ------------------------------------------------------ embedding / permute
void test_embedding_permute(const std::string& isa) {
  for (int64_t dim : {int64_t{1}, int64_t{3}, int64_t{16}, int64_t{768}}) {
    const int64_t num = 50, n_ids = 300;
    std::vector<float> w(num * dim), out(n_ids * dim, -1.0f);
    for (auto& v : w) v = normal();
    std::vector<int32_t> ids(n_ids);
    for (auto& id : ids) id = static_cast<int32_t>(g_rng() % num);
    CHECK(k::embedding(w.data(), num, dim, dim, ids.data(), n_ids, out.data(), dim) == -1, "embedding all ids fine");
    for (int64_t i = 0; i < n_ids; ++i) {
      CHECK(std::memcmp(&out[i * dim], &w[ids[i] * dim], dim * sizeof(float)) == 0, "embedding row %lld", (long long)i);
    }
    ids[7] = static_cast<int32_t>(num);
    ids[9] = -1;
    CHECK(k::embedding(w.data(), num, dim, dim, ids.data(), n_ids, out.data(), dim) == 7, "embedding first bad id");
    for (int64_t j = 0; j < dim; ++j) CHECK(out[7 * dim + j] == 0.0f && out[9 * dim + j] == 0.0f, "bad row zeroed");
    // Strided rows: the first `part` columns of rows ld_w apart into rows ld_out apart; the rest of out untouched.
    const int64_t part = (dim + 1) / 2, ld_out = dim + 3;
    std::vector<float> strided(n_ids * ld_out, -2.0f);
    ids[7] = 3;
    ids[9] = 0;
    CHECK(k::embedding(w.data(), num, part, dim, ids.data(), n_ids, strided.data(), ld_out) == -1, "strided gather");
    for (int64_t i = 0; i < n_ids; ++i) {
      CHECK(std::memcmp(&strided[i * ld_out], &w[ids[i] * dim], part * sizeof(float)) == 0, "strided row %lld",
            (long long)i);
      for (int64_t j = part; j < ld_out; ++j) CHECK(strided[i * ld_out + j] == -2.0f, "strided gap untouched");
    }
  }
  const int64_t dims[][4] = {{1, 1, 1, 1},     {2, 3, 4, 5},  {1, 17, 12, 64}, {3, 33, 7, 1},
                             {2, 128, 12, 64}, {4, 5, 31, 3}, {2, 9, 16, 8},   {1, 300, 8, 17}};
  for (const auto& d : dims) {
    const int64_t n = d[0] * d[1] * d[2] * d[3];
    std::vector<float> x(n), y(n, -1.0f);
    for (auto& v : x) v = normal();
    k::permute_0213(x.data(), y.data(), d[0], d[1], d[2], d[3]);
    bool ok = true;
    for (int64_t a = 0; a < d[0]; ++a)
      for (int64_t b = 0; b < d[1]; ++b)
        for (int64_t c = 0; c < d[2]; ++c)
          for (int64_t e = 0; e < d[3]; ++e)
            ok &= y[((a * d[2] + c) * d[1] + b) * d[3] + e] == x[((a * d[1] + b) * d[2] + c) * d[3] + e];
    CHECK(ok, "permute_0213 %lld %lld %lld %lld", (long long)d[0], (long long)d[1], (long long)d[2], (long long)d[3]);
  }
  // index_copy_rows: rows scattered to a permutation of y's rows, strided on both sides, below and above the
  // parallel grain; rows not named keep their values.
  for (int64_t cols : {int64_t{1}, int64_t{5}, int64_t{384}}) {
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{600}}) {
      const int64_t y_rows = 2 * n + 3, ldx = cols + 2, ldy = cols + 1;
      std::vector<float> x(n * ldx), y(y_rows * ldy), want;
      for (auto& v : x) v = normal();
      for (auto& v : y) v = normal();
      want = y;
      std::vector<int32_t> perm(y_rows);
      for (int64_t i = 0; i < y_rows; ++i) perm[i] = static_cast<int32_t>(i);
      std::shuffle(perm.begin(), perm.end(), g_rng);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t c = 0; c < cols; ++c) want[perm[i] * ldy + c] = x[i * ldx + c];
      k::index_copy_rows(x.data(), ldx, y.data(), ldy, cols, perm.data(), n);
      CHECK(same_bits(y, want), "index_copy_rows cols %lld n %lld", (long long)cols, (long long)n);
    }
  }
  (void)isa;
}

// ------------------------------------------------- threads vs single thread
// copy_strided against an index-by-index walk: contiguous, transposed,
// broadcast (stride 0) sources, strided destinations (a slice of a wider
// output, as torch.cat writes), above the parallel grain.
void test_copy_strided(const std::string& isa) {
  struct C {
    std::vector<int64_t> shape, xs, ys;
  };
  const std::vector<C> cases = {
      {{5}, {1}, {1}},
      {{3, 4}, {1, 3}, {4, 1}},                // transposed source
      {{2, 3, 5}, {0, 5, 1}, {45, 15, 1}},     // broadcast over dim 0, into a slice of a wider row
      {{4, 7, 3}, {21, 3, 1}, {7 * 9, 9, 1}},  // cat along the last dim: rows 9 apart
      {{300, 1000}, {1000, 1}, {1017, 1}},     // above the grain, row-strided destination
      {{2, 1, 3, 64}, {192, 5, 64, 1}, {1024, 7, 256, 1}},
      {{37, 53}, {1, 37}, {53, 1}},
  };
  for (const C& c : cases) {
    int64_t xn = 1, yn = 1, total = 1;
    for (size_t d = 0; d < c.shape.size(); ++d) {
      xn += (c.shape[d] - 1) * c.xs[d];
      yn += (c.shape[d] - 1) * c.ys[d];
      total *= c.shape[d];
    }
    std::vector<float> x(xn), y(yn, -3.0f), want(yn, -3.0f);
    for (auto& v : x) v = normal();
    std::vector<int64_t> idx(c.shape.size(), 0);
    for (int64_t i = 0; i < total; ++i) {
      int64_t ox = 0, oy = 0;
      for (size_t d = 0; d < c.shape.size(); ++d) {
        ox += idx[d] * c.xs[d];
        oy += idx[d] * c.ys[d];
      }
      want[oy] = x[ox];
      for (size_t d = c.shape.size(); d-- > 0;) {
        if (++idx[d] < c.shape[d]) break;
        idx[d] = 0;
      }
    }
    k::copy_strided(x.data(), c.xs.data(), y.data(), c.ys.data(), c.shape.data(), static_cast<int>(c.shape.size()));
    CHECK(same_bits(y, want), "copy_strided %s: case with %zu dims differs", isa.c_str(), c.shape.size());
  }
}

void test_threads_identical(const std::string& isa) {
  const int64_t rows = 2048, cols = 768, n = rows * cols;
  std::vector<float> x(n), g(cols), b(cols), bias(cols);
  for (auto& v : x) v = normal(2.0f);
  for (int64_t j = 0; j < cols; ++j) {
    g[j] = uniform(0.5f, 1.5f);
    b[j] = normal();
    bias[j] = normal();
  }
  auto run_all = [&](int threads) {
    set_threads(threads);
    std::vector<std::vector<float>> outs(13, std::vector<float>(n));
    k::softmax_rows(x.data(), outs[0].data(), rows, cols);
    k::layer_norm_rows(x.data(), g.data(), b.data(), outs[1].data(), rows, cols, 1e-5f);
    k::gelu(x.data(), outs[2].data(), n, false);
    k::gelu(x.data(), outs[3].data(), n, true);
    k::relu(x.data(), outs[4].data(), n);
    const int64_t shape[2] = {rows, cols}, as[2] = {cols, 1}, bs[2] = {0, 1};
    k::binary_op(k::BinaryOp::Add, x.data(), as, bias.data(), bs, outs[5].data(), shape, 2);
    k::permute_0213(x.data(), outs[6].data(), 2, 1024, 12, 64);
    k::rms_norm_rows(x.data(), g.data(), outs[7].data(), rows, cols, 1e-5f);
    k::add_rms_norm_rows(x.data(), x.data() + cols, g.data(), outs[8].data(), outs[9].data(), rows - 1, cols, 1e-5f);
    // A column slice [:, 100:484] of x into a row-strided output.
    k::rms_norm_rows(x.data() + 100, nullptr, outs[10].data() + 3, rows, 384, 1e-5f, cols, cols);
    k::unary(k::UnaryOp::Tanh, x.data(), outs[11].data(), n);
    k::silu_mul(x.data(), x.data() + 1, outs[12].data(), n - 1);
    return outs;
  };
  auto one = run_all(1);
  auto two = run_all(2);
  const char* names[] = {"softmax", "layerNorm",  "gelu",           "gelu tanh",       "relu", "binary", "permute",
                         "rmsNorm", "addRmsNorm", "addRmsNorm sum", "rmsNorm strided", "tanh", "siluMul"};
  for (int i = 0; i < 13; ++i)
    CHECK(same_bits(one[i], two[i]), "%s: 2 threads differ from 1 (%s)", names[i], isa.c_str());
  set_threads(2);
}

}  // namespace

int main() {
  set_threads(2);
  const std::vector<std::string> ran = for_each_isa([](const std::string& name, rt::Isa) {
    test_softmax(name);
    test_layer_norm(name);
    test_rms_norm(name);
    test_add_rms_norm(name);
    test_row_strides(name);
    test_activations(name);
    test_unary(name);
    test_binary(name);
    test_embedding_permute(name);
    test_copy_strided(name);
    test_threads_identical(name);
  });
  print_error_table(ran, 22,
                    "(softmax abs: |y - ref|; rel: |y - ref| / ref; layerNorm: |y - ref| / max(1, |ref|);\n"
                    " rmsNorm / addRmsNorm: |y - ref| / |ref| (ref 0 must give exactly 0);\n"
                    " silu/sigmoid/tanh/siluMul rel: |y - ref| / |ref| for |ref| >= 1e-30;\n"
                    " gelu rel: |y - ref| / |ref|; rel/cond: the same over max(1, condition number of gelu at x);\n"
                    " binary/embedding/permute/relu must be bit-exact)");
  return finish();
}
