// int8 GEMM (kernels/qgemm) against a scalar reference of the scheme in
// qgemm.h, on every kernel path this CPU has:
//   - the quantizer's bytes and scales (ties to even, clamping, zero / NaN / Inf rows),
//   - the packed weights read back (both layouts of B),
//   - C bit for bit against the reference's float(acc) * (sa * sw) (+ bias), which
//     also pins the int32 accumulators: for |acc| < 2^23 distinct accumulators
//     give distinct outputs (shapes here keep K <= 520 except the overflow case,
//     which checks the output of an all-127 product whose exact acc is known),
//   - the epilogue (alpha, beta, relu, GELU) within float rounding,
//   - thread counts 1 and 2 bit-identical, the GEMV (M = 1) bit-identical to
//     the same row of the GEMM, batched calls equal to single ones,
//   - vpdpbusd's shifted accumulators wrapping past 2^31 and still exact.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "../kernels/gemm/gemm.h"
#include "../kernels/qgemm/qgemm.h"
#include "check.h"

namespace {

namespace k = attnode::kernels;
namespace rt = attnode::runtime;

uint32_t abs_bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u & 0x7fffffffu;
}

// The scheme's quantizer, written from qgemm.h alone.
float ref_quant(const float* x, int64_t n, int64_t stride, int8_t* q) {
  uint32_t m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, abs_bits(x[i * stride]));
  float amax;
  std::memcpy(&amax, &m, 4);
  if (m == 0 || m >= 0x7f800000u) {
    for (int64_t i = 0; i < n; ++i) q[i] = 0;
    return amax / 127.0f;
  }
  const float inv = 127.0f / amax;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i * stride] * inv;
    float r = std::nearbyint(v);
    r = std::min(127.0f, std::max(-127.0f, r));
    q[i] = static_cast<int8_t>(r);
  }
  return amax / 127.0f;
}

struct Case {
  int64_t m, n, kk;
  bool trans_b;
  bool trans_a = false;  // A passed as its transpose ([k, m], lda = m); the reference reads it as [m, k]
};

std::vector<float> randn(std::mt19937& rng, size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Reference C (alpha 1, beta 0, optional bias, no activation) and the int32 accumulators.
std::vector<float> ref_gemm(const std::vector<float>& a, const std::vector<float>& b, const Case& c, const float* bias,
                            std::vector<int64_t>* accs = nullptr) {
  std::vector<int8_t> qa(c.m * c.kk), qw(c.n * c.kk);
  std::vector<float> sa(c.m), sw(c.n);
  for (int64_t i = 0; i < c.m; ++i) sa[i] = ref_quant(&a[i * c.kk], c.kk, 1, &qa[i * c.kk]);
  for (int64_t j = 0; j < c.n; ++j) {
    sw[j] = c.trans_b ? ref_quant(&b[j * c.kk], c.kk, 1, &qw[j * c.kk]) : ref_quant(&b[j], c.kk, c.n, &qw[j * c.kk]);
  }
  std::vector<float> out(c.m * c.n);
  if (accs) accs->assign(c.m * c.n, 0);
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = 0; j < c.n; ++j) {
      int64_t acc = 0;
      for (int64_t t = 0; t < c.kk; ++t) acc += int64_t{qa[i * c.kk + t]} * qw[j * c.kk + t];
      if (accs) (*accs)[i * c.n + j] = acc;
      const float cs = sa[i] * sw[j];
      float d = static_cast<float>(static_cast<int32_t>(acc)) * cs;
      if (bias) d = d + bias[j];
      out[i * c.n + j] = d;
    }
  return out;
}

std::vector<float> run(const k::PackedB& pk, const std::vector<float>& a, const std::vector<float>& b, const Case& c,
                       const float* bias, float alpha = 1.0f, float beta = 0.0f,
                       k::Activation act = k::Activation::None, const std::vector<float>* c0 = nullptr,
                       int threads = 0) {
  std::vector<float> out = c0 ? *c0 : std::vector<float>(c.m * c.n, std::nanf(""));
  std::vector<float> at;
  if (c.trans_a) {
    at.resize(a.size());
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t t = 0; t < c.kk; ++t) at[t * c.m + i] = a[i * c.kk + t];
  }
  k::GemmParams p;
  p.m = c.m;
  p.n = c.n;
  p.k = c.kk;
  p.a = c.trans_a ? at.data() : a.data();
  p.lda = c.trans_a ? c.m : c.kk;
  p.trans_a = c.trans_a;
  p.b = b.data();
  p.ldb = c.trans_b ? c.kk : c.n;
  p.trans_b = c.trans_b;
  p.c = out.data();
  p.ldc = c.n;
  p.alpha = alpha;
  p.beta = beta;
  p.bias = bias;
  p.act = act;
  p.packed_b = &pk;
  k::sgemm(p, threads);
  return out;
}

void test_quantizer(const std::string& isa) {
  // amax 127: inv is exactly 1, so x * inv = x and the ties below are exact halves.
  std::vector<float> x = {127.0f, 2.5f, -2.5f, 3.5f, -3.5f, 0.5f, -0.5f, 1.5f, 126.5f, -126.5f, 0.49999997f, -127.0f};
  for (int rep = 0; rep < 3; ++rep) x.insert(x.end(), x.begin(), x.begin() + 12);  // 48 values: vector bodies + tails
  std::vector<int8_t> q(x.size()), r(x.size());
  for (size_t len : {size_t{12}, size_t{17}, size_t{33}, size_t{48}}) {
    const float s = k::qgemm_quantize_row(x.data(), static_cast<int64_t>(len), q.data());
    const float rs = ref_quant(x.data(), static_cast<int64_t>(len), 1, r.data());
    CHECK(s == rs, "%s scale %g vs %g", isa.c_str(), s, rs);
    for (size_t i = 0; i < len; ++i)
      CHECK(q[i] == r[i], "%s len %zu q[%zu] = %d, expected %d", isa.c_str(), len, i, q[i], r[i]);
  }
  CHECK(q[1] == 2 && q[2] == -2 && q[3] == 4 && q[4] == -4 && q[5] == 0 && q[8] == 126 && q[9] == -126,
        "%s ties to even: %d %d %d %d %d %d %d", isa.c_str(), q[1], q[2], q[3], q[4], q[5], q[8], q[9]);
  // Random rows of odd lengths against the reference.
  std::mt19937 rng(7);
  for (int64_t len : {1, 5, 31, 64, 100, 767}) {
    auto v = randn(rng, len, 3.0f);
    std::vector<int8_t> a(len), b(len);
    const float s = k::qgemm_quantize_row(v.data(), len, a.data());
    const float rs = ref_quant(v.data(), len, 1, b.data());
    CHECK(s == rs && a == b, "%s random row of %lld", isa.c_str(), static_cast<long long>(len));
  }
  // Zero, NaN and Inf rows: all-zero bytes, scale 0 / NaN / Inf.
  std::vector<float> z(20, 0.0f), nanrow(20, 1.0f), infrow(20, 1.0f);
  nanrow[13] = std::nanf("");
  infrow[3] = -INFINITY;
  std::vector<int8_t> qq(20, 5);
  CHECK(k::qgemm_quantize_row(z.data(), 20, qq.data()) == 0.0f, "%s zero row scale", isa.c_str());
  CHECK(std::isnan(k::qgemm_quantize_row(nanrow.data(), 20, qq.data())), "%s NaN row scale", isa.c_str());
  for (auto v : qq) CHECK(v == 0, "%s NaN row bytes", isa.c_str());
  CHECK(std::isinf(k::qgemm_quantize_row(infrow.data(), 20, qq.data())), "%s Inf row scale", isa.c_str());
}

void test_gemm(const std::string& isa) {
  std::mt19937 rng(42);
  const Case cases[] = {{1, 48, 64, true},   {1, 50, 67, true},     {2, 48, 1, true},  {7, 100, 33, true},
                        {64, 96, 128, true}, {130, 200, 300, true}, {17, 3, 5, false}, {33, 97, 70, false},
                        {9, 144, 520, true}, {200, 49, 129, true},
                        // Enough work for 2 threads at M <= 384: the threads split the rows (run_qgemm_row_blocks),
                        // 2 to 4 row blocks, ragged last panel; K with a tail of 1, 2 and 7 quads past the packer's
                        // 8-quad steps, and a partial last quad; a transposed A through both packings.
                        {37, 150, 900, true}, {300, 100, 200, true}, {128, 96, 3001, true},
                        {45, 130, 410, true, true}, {20, 200, 4100, false, true}};
  for (const Case& c : cases) {
    auto a = randn(rng, c.m * c.kk);
    auto b = randn(rng, c.n * c.kk, 0.05f);
    auto bias = randn(rng, c.n);
    auto pk = k::pack_b_int8(b.data(), c.trans_b ? c.kk : c.n, c.trans_b, c.kk, c.n);
    CHECK(pk && k::packed_b_precision(*pk) == k::PackedPrecision::Int8, "%s pack", isa.c_str());
    // The stored quantized weight is the reference quantization of each column of op(B).
    std::vector<int8_t> q(c.n * c.kk), rq(c.kk);
    std::vector<float> sw(c.n);
    k::qpacked_read(*k::packed_b_int8(*pk), q.data(), sw.data());
    for (int64_t j = 0; j < c.n; ++j) {
      const float rs = c.trans_b ? ref_quant(&b[j * c.kk], c.kk, 1, rq.data()) : ref_quant(&b[j], c.kk, c.n, rq.data());
      CHECK(rs == sw[j] && std::memcmp(rq.data(), &q[j * c.kk], c.kk) == 0, "%s weight column %lld", isa.c_str(),
            static_cast<long long>(j));
    }
    const std::string shape = std::to_string(c.m) + "x" + std::to_string(c.n) + "x" + std::to_string(c.kk);
    const auto ref = ref_gemm(a, b, c, nullptr);
    const auto refb = ref_gemm(a, b, c, bias.data());
    CHECK(same_bits(run(*pk, a, b, c, nullptr), ref), "%s %s: C != reference bit for bit", isa.c_str(), shape.c_str());
    CHECK(same_bits(run(*pk, a, b, c, bias.data()), refb), "%s %s: C + bias != reference bit for bit", isa.c_str(),
          shape.c_str());
    // Thread counts: bit-identical.
    set_threads(2);
    const auto t2 = run(*pk, a, b, c, bias.data(), 1.0f, 0.0f, k::Activation::Gelu, nullptr, 2);
    set_threads(1);
    const auto t1 = run(*pk, a, b, c, bias.data(), 1.0f, 0.0f, k::Activation::Gelu, nullptr, 1);
    set_threads(2);
    CHECK(same_bits(t1, t2), "%s %s: 1 and 2 threads differ", isa.c_str(), shape.c_str());
    // Epilogue: alpha, beta, relu and GELU within float rounding of the fp32 formula on the reference d.
    auto c0 = randn(rng, c.m * c.n);
    for (auto act : {k::Activation::None, k::Activation::Relu, k::Activation::Gelu}) {
      const auto got = run(*pk, a, b, c, bias.data(), 0.5f, 0.25f, act, &c0);
      double err = 0;
      for (int64_t e = 0; e < c.m * c.n; ++e) {
        double v = 0.5 * ref[e] + 0.25 * c0[e] + bias[e % c.n];
        if (act == k::Activation::Relu) v = std::max(v, 0.0);
        if (act == k::Activation::Gelu) v = 0.5 * v * std::erfc(-v / std::sqrt(2.0));
        // Relative to the terms' magnitudes: the sum may cancel.
        const double scale = 0.5 * std::fabs(ref[e]) + 0.25 * std::fabs(c0[e]) + std::fabs(bias[e % c.n]) + 1e-6;
        err = std::max(err, std::fabs(got[e] - v) / scale);
      }
      note("qgemm epilogue", isa, err);
      CHECK(err < 1e-5, "%s %s act %d: relative error %g", isa.c_str(), shape.c_str(), static_cast<int>(act), err);
    }
    // Each row of the GEMM equals the GEMV of that row.
    if (c.m > 1) {
      const auto full = run(*pk, a, b, c, bias.data(), 1.0f, 0.0f, k::Activation::Gelu);
      for (int64_t i : {int64_t{0}, c.m - 1}) {
        const Case row{1, c.n, c.kk, c.trans_b};
        const std::vector<float> ai(a.begin() + i * c.kk, a.begin() + (i + 1) * c.kk);
        const auto g = run(*pk, ai, b, row, bias.data(), 1.0f, 0.0f, k::Activation::Gelu);
        CHECK(std::memcmp(g.data(), &full[i * c.n], c.n * sizeof(float)) == 0, "%s %s: GEMV row %lld != GEMM row",
              isa.c_str(), shape.c_str(), static_cast<long long>(i));
      }
    }
  }
}

void test_edges(const std::string& isa) {
  // Zero and NaN rows of A; a zero column of B.
  const Case c{3, 50, 40, true};
  std::mt19937 rng(3);
  auto a = randn(rng, c.m * c.kk);
  auto b = randn(rng, c.n * c.kk);
  for (int64_t t = 0; t < c.kk; ++t) {
    a[t] = 0.0f;
    b[7 * c.kk + t] = 0.0f;
  }
  a[c.kk + 5] = std::nanf("");
  std::vector<float> bias(c.n, 0.5f);
  auto pk = k::pack_b_int8(b.data(), c.kk, true, c.kk, c.n);
  const auto out = run(*pk, a, b, c, bias.data());
  for (int64_t j = 0; j < c.n; ++j) {
    CHECK(out[j] == 0.5f, "%s zero row gives bias, got %g", isa.c_str(), out[j]);
    CHECK(std::isnan(out[c.n + j]), "%s NaN row gives NaN, got %g", isa.c_str(), out[c.n + j]);
  }
  CHECK(out[2 * c.n + 7] == 0.5f, "%s zero column gives bias, got %g", isa.c_str(), out[2 * c.n + 7]);
  // Special rows inside full panels (the packers quantize a panel's rows together): in 19 rows, row 4 zero, row 9
  // with an Inf, row 17 with a NaN; every other row as the reference, bit for bit.
  {
    const Case s{19, 50, 70, true};
    auto as = randn(rng, s.m * s.kk);
    auto bs = randn(rng, s.n * s.kk);
    for (int64_t t = 0; t < s.kk; ++t) as[4 * s.kk + t] = 0.0f;
    as[9 * s.kk + 33] = -std::numeric_limits<float>::infinity();
    as[17 * s.kk + 69] = std::nanf("");
    auto ps = k::pack_b_int8(bs.data(), s.kk, true, s.kk, s.n);
    const auto got = run(*ps, as, bs, s, bias.data());
    const auto want = ref_gemm(as, bs, s, bias.data());
    for (int64_t i = 0; i < s.m; ++i) {
      for (int64_t j = 0; j < s.n; ++j) {
        const float g = got[i * s.n + j], w = want[i * s.n + j];
        if (i == 9 || i == 17) {
          CHECK(std::isnan(g), "%s Inf/NaN row %lld gives NaN, got %g", isa.c_str(), static_cast<long long>(i), g);
        } else {
          CHECK(std::memcmp(&g, &w, 4) == 0, "%s row %lld col %lld: %g != reference %g", isa.c_str(),
                static_cast<long long>(i), static_cast<long long>(j), g, w);
        }
      }
    }
    CHECK(got[4 * s.n] == 0.5f, "%s zero row in a panel gives bias, got %g", isa.c_str(), got[4 * s.n]);
  }
  // Batched with a broadcast B equals single calls.
  const Case one{5, 60, 70, true};
  auto ab = randn(rng, 3 * one.m * one.kk);
  auto bb = randn(rng, one.n * one.kk);
  auto pb = k::pack_b_int8(bb.data(), one.kk, true, one.kk, one.n);
  std::vector<float> cb(3 * one.m * one.n);
  k::GemmParams p;
  p.m = one.m;
  p.n = one.n;
  p.k = one.kk;
  p.a = ab.data();
  p.lda = one.kk;
  p.b = bb.data();
  p.ldb = one.kk;
  p.trans_b = true;
  p.c = cb.data();
  p.ldc = one.n;
  p.packed_b = pb.get();
  k::sgemm_batched(p, 3, one.m * one.kk, 0, one.m * one.n);
  for (int t = 0; t < 3; ++t) {
    const std::vector<float> at(ab.begin() + t * one.m * one.kk, ab.begin() + (t + 1) * one.m * one.kk);
    const auto single = run(*pb, at, bb, one, nullptr);
    CHECK(std::memcmp(single.data(), &cb[t * one.m * one.n], single.size() * sizeof(float)) == 0, "%s batched item %d",
          isa.c_str(), t);
  }
}

// K = 70000 with every quantized value 127: acc = 127 * 127 * 70000 = 1,129,030,000 < 2^31, while vpdpbusd's shifted
// sum (qa + 128) * qw reaches 255 * 127 * 70000 > 2^31 and wraps; the compensation must undo it exactly.
void test_wrap(const std::string& isa) {
  const Case c{2, 48, 70000, true};
  std::vector<float> a(c.m * c.kk, 1.0f), b(c.n * c.kk, 2.0f);
  for (int64_t t = 0; t < c.kk; t += 2) a[c.kk + t] = -1.0f;  // row 1 alternates: acc = 0
  auto pk = k::pack_b_int8(b.data(), c.kk, true, c.kk, c.n);
  std::vector<int64_t> accs;
  const auto ref = ref_gemm(a, b, c, nullptr, &accs);
  CHECK(accs[0] == int64_t{127} * 127 * 70000 && accs[c.n] == 0, "reference accumulators");
  const auto got = run(*pk, a, b, c, nullptr);
  CHECK(same_bits(got, ref), "%s K = 70000: C %g (row 0), %g (row 1), expected %g, %g", isa.c_str(), got[0], got[c.n],
        ref[0], ref[c.n]);
}

}  // namespace

int main() {
  set_threads(2);
  auto ran = for_each_isa([](const std::string& name, rt::Isa) {
    std::printf("%s: int8 path %s\n", name.c_str(), k::qgemm_path_name(k::qgemm_path()));
    test_quantizer(name);
    test_gemm(name);
    test_edges(name);
    test_wrap(name);
  });
  print_error_table(ran, 18,
                    "(error of the fused epilogue against the fp32 formula on the reference d, relative to the sum of "
                    "its terms' magnitudes)");
  return finish();
}
