// Standalone correctness test for kernels::sgemm / sgemm_batched against a
// double-accumulating reference, on every ISA path the CPU supports, at 1 and
// 2 threads (results must be bit-identical across thread counts). Where the
// CPU has AVX512-BF16, the same cases run again with B packed as bf16
// (pack_b_bf16), against a reference on bf16-rounded inputs.
//
// Operands are allocated with their exact extent, so ASan catches any read or
// write past them; C is surrounded by sentinels (ldc > n) that must survive.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../kernels/gemm/gemm.h"
#include "../runtime/cpu_features.h"
#include "../runtime/huge_pages.h"
#include "../runtime/thread_pool.h"

using attnode::kernels::Activation;
using attnode::kernels::GemmCall;
using attnode::kernels::GemmParams;
using attnode::kernels::sgemm;
using attnode::kernels::sgemm_batched;
using attnode::kernels::sgemm_group;
namespace rt = attnode::runtime;

namespace {

int g_failures = 0;
int g_checks = 0;
std::mt19937_64 g_rng(12345);

float urand(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g_rng); }

double act_ref(double v, Activation act) {
  switch (act) {
    case Activation::Relu:
      return v > 0 ? v : 0;
    case Activation::Gelu:
      return 0.5 * v * std::erfc(-v / std::sqrt(2.0));
    case Activation::GeluTanh:
      // 0.5 v (1 + tanh u) == v / (1 + exp(-2u)), without the cancellation for v << 0.
      return v / (1.0 + std::exp(-2.0 * 0.7978845608028654 * (v + 0.044715 * v * v * v)));
    default:
      return v;
  }
}

// Slope bound of each activation, to turn the pre-activation error into an output bound.
double act_slope(Activation act) { return act == Activation::None || act == Activation::Relu ? 1.0 : 1.2; }

const char* act_name(Activation a) {
  static const char* names[] = {"none", "relu", "gelu", "gelu_tanh"};
  return names[static_cast<int>(a)];
}

struct Case {
  int64_t m, n, k;
  bool ta, tb;
  int64_t pad_a, pad_b, pad_c;
  float alpha, beta;
  bool bias;
  Activation act;
  int64_t batch = 1;
  bool bcast_a = false, bcast_b = false;
};

std::string describe(const Case& c) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "m=%ld n=%ld k=%ld ta=%d tb=%d pads=%ld/%ld/%ld alpha=%g beta=%g bias=%d act=%s batch=%ld%s%s",
                (long)c.m, (long)c.n, (long)c.k, c.ta, c.tb, (long)c.pad_a, (long)c.pad_b, (long)c.pad_c, c.alpha,
                c.beta, c.bias, act_name(c.act), (long)c.batch, c.bcast_a ? " bcastA" : "", c.bcast_b ? " bcastB" : "");
  return buf;
}

constexpr float kSentinel = -777.25f;

// fp32 -> bf16 -> fp32 with round-to-nearest-even, as vcvtneps2bf16 (denormals
// flush to zero; the data has no NaN).
float bf16_round(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) == 0) {
    u &= 0x80000000u;
  } else {
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  }
  std::memcpy(&x, &u, 4);
  return x;
}

// How B reaches sgemm: as stored, packed once with pack_b (fp32 panels: the
// M = 1 products then run the packed GEMV), or packed with pack_b_bf16
// (inputs rounded in the reference). Packed modes need one B for the whole
// batch, so only cases with batch 1 or a broadcast B.
enum class BMode { Plain, PackedFp32, PackedBf16 };

void run_case(const Case& cs, const char* isa, BMode mode = BMode::Plain) {
  const bool bf16 = mode == BMode::PackedBf16;
  // Stored shapes: A is m x k (or k x m), B is k x n (or n x k).
  const int64_t a_rows = cs.ta ? cs.k : cs.m, a_cols = cs.ta ? cs.m : cs.k;
  const int64_t b_rows = cs.tb ? cs.n : cs.k, b_cols = cs.tb ? cs.k : cs.n;
  const int64_t lda = a_cols + cs.pad_a, ldb = b_cols + cs.pad_b, ldc = cs.n + cs.pad_c;
  const int64_t a_ext = a_rows > 0 ? (a_rows - 1) * lda + a_cols : 0;
  const int64_t b_ext = b_rows > 0 ? (b_rows - 1) * ldb + b_cols : 0;
  const int64_t c_ext = (cs.m - 1) * ldc + cs.n;
  const int64_t sa = cs.bcast_a ? 0 : a_ext, sb = cs.bcast_b ? 0 : b_ext, sc = c_ext + 5;
  const int64_t na = cs.bcast_a ? a_ext : sa * cs.batch;
  const int64_t nb = cs.bcast_b ? b_ext : sb * cs.batch;
  const int64_t nc = sc * cs.batch;

  std::vector<float> A(std::max<int64_t>(na, 1)), B(std::max<int64_t>(nb, 1)), C0(nc), bias(cs.n);
  for (auto& v : A) v = urand(-1, 1);
  for (auto& v : B) v = urand(-1, 1);
  for (auto& v : bias) v = urand(-1, 1);
  for (int64_t i = 0; i < nc; ++i) C0[i] = kSentinel;
  for (int64_t bt = 0; bt < cs.batch; ++bt)
    for (int64_t i = 0; i < cs.m; ++i)
      for (int64_t j = 0; j < cs.n; ++j)
        // beta == 0 must not read C: NaN there must not leak into the result.
        C0[bt * sc + i * ldc + j] = cs.beta == 0.0f ? NAN : urand(-1, 1);

  GemmParams p;
  p.m = cs.m;
  p.n = cs.n;
  p.k = cs.k;
  p.a = A.data();
  p.lda = lda;
  p.trans_a = cs.ta;
  p.b = B.data();
  p.ldb = ldb;
  p.trans_b = cs.tb;
  p.ldc = ldc;
  p.alpha = cs.alpha;
  p.beta = cs.beta;
  p.bias = cs.bias ? bias.data() : nullptr;
  p.act = cs.act;
  attnode::kernels::PackedBPtr packed;
  if (bf16) {
    packed = attnode::kernels::pack_b_bf16(B.data(), ldb, cs.tb, cs.k, cs.n);
    if (!packed || attnode::kernels::packed_b_precision(*packed) != attnode::kernels::PackedPrecision::BFloat16) {
      std::printf("FAIL [%s] %s: pack_b_bf16 gave no bf16 matrix\n", isa, describe(cs).c_str());
      ++g_failures;
      return;
    }
    p.packed_b = packed.get();
  } else if (mode == BMode::PackedFp32) {
    packed = attnode::kernels::pack_b(B.data(), ldb, cs.tb, cs.k, cs.n);
    if (cs.k > 0 && cs.n > 0 && !packed) {
      std::printf("FAIL [%s] %s: pack_b gave no matrix\n", isa, describe(cs).c_str());
      ++g_failures;
      return;
    }
    p.packed_b = packed.get();
  }

  std::vector<float> results[2];
  const int threads[2] = {1, 2};
  for (int t = 0; t < 2; ++t) {
    std::vector<float> C = C0;
    p.c = C.data();
    if (cs.batch == 1) {
      attnode::kernels::sgemm(p, threads[t]);
    } else {
      attnode::kernels::sgemm_batched(p, cs.batch, sa, sb, sc, threads[t]);
    }
    results[t] = std::move(C);
  }
  ++g_checks;
  if (std::memcmp(results[0].data(), results[1].data(), nc * sizeof(float)) != 0) {
    std::printf("FAIL [%s] %s: 1-thread and 2-thread results differ\n", isa, describe(cs).c_str());
    ++g_failures;
    return;
  }
  const std::vector<float>& C = results[0];
  int bad = 0;
  for (int64_t bt = 0; bt < cs.batch && bad < 3; ++bt) {
    const float* a = A.data() + bt * sa;
    const float* b = B.data() + bt * sb;
    for (int64_t i = 0; i < cs.m && bad < 3; ++i) {
      for (int64_t j = 0; j < cs.n && bad < 3; ++j) {
        double s = 0, sabs = 0;
        for (int64_t kk = 0; kk < cs.k; ++kk) {
          float af = cs.ta ? a[kk * lda + i] : a[i * lda + kk];
          float bf = cs.tb ? b[j * ldb + kk] : b[kk * ldb + j];
          if (bf16) {
            af = bf16_round(af);
            bf = bf16_round(bf);
          }
          const double av = af, bv = bf;
          s += av * bv;
          sabs += std::fabs(av * bv);
        }
        const double c0 = C0[bt * sc + i * ldc + j];
        double pre = cs.alpha * s + (cs.beta != 0.0f ? cs.beta * c0 : 0.0) + (cs.bias ? bias[j] : 0.0);
        const double scale = std::fabs(cs.alpha) * sabs + (cs.beta != 0.0f ? std::fabs(cs.beta * c0) : 0.0) +
                             (cs.bias ? std::fabs(bias[j]) : 0.0);
        const double ref = act_ref(pre, cs.act);
        const double got = C[bt * sc + i * ldc + j];
        const double tol =
            act_slope(cs.act) * scale * 1.2e-7 * (std::sqrt(double(cs.k)) * 4 + 8) + 2e-6 * std::fabs(ref) + 1e-30;
        if (!(std::fabs(got - ref) <= tol)) {
          std::printf("FAIL [%s] %s: C[%ld][%ld][%ld] = %.9g, ref %.9g (tol %.3g)\n", isa, describe(cs).c_str(),
                      (long)bt, (long)i, (long)j, got, ref, tol);
          ++bad;
        }
      }
      // Sentinels between rows (ldc > n) must be untouched.
      if (i + 1 < cs.m)
        for (int64_t j = cs.n; j < ldc; ++j)
          if (C[bt * sc + i * ldc + j] != kSentinel && bad < 3) {
            std::printf("FAIL [%s] %s: wrote past row end at [%ld][%ld][%ld]\n", isa, describe(cs).c_str(), (long)bt,
                        (long)i, (long)j);
            ++bad;
          }
    }
    for (int64_t x = c_ext; x < sc; ++x)
      if (C[bt * sc + x] != kSentinel && bad < 3) {
        std::printf("FAIL [%s] %s: wrote past C end\n", isa, describe(cs).c_str());
        ++bad;
      }
  }
  if (bad) ++g_failures;
}

// Activations alone (K = 1, B = 1, so the pre-activation is exact): checks the
// vectorised erf/exp to ~1e-6 relative over the whole range incl. the tails.
void activation_accuracy(const char* isa) {
  const int64_t m = 6001, n = 50;
  std::vector<float> A(m), B(n, 1.0f), C(m * n);
  for (int64_t i = 0; i < m; ++i) A[i] = -15.0f + 30.0f * float(i) / float(m - 1);
  for (Activation act : {Activation::Relu, Activation::Gelu, Activation::GeluTanh}) {
    GemmParams p;
    p.m = m;
    p.n = n;
    p.k = 1;
    p.a = A.data();
    p.lda = 1;
    p.b = B.data();
    p.ldb = n;
    p.c = C.data();
    p.ldc = n;
    p.act = act;
    attnode::kernels::sgemm(p, 1);
    double worst = 0;
    float worst_x = 0;
    for (int64_t i = 0; i < m; ++i) {
      const double ref = act_ref(A[i], act);
      for (int64_t j = 0; j < n; ++j) {
        const double got = C[i * n + j];
        // Relative, with an absolute floor far below anything a float GEMM resolves.
        const double err = std::fabs(got - ref) / (std::fabs(ref) + 1e-30);
        if (std::fabs(ref) < 1e-37) continue;
        if (err > worst) {
          worst = err;
          worst_x = A[i];
        }
      }
    }
    ++g_checks;
    const bool ok = worst < 2e-6;
    std::printf("%s [%s] activation %-9s max rel err %.3g (at x=%g)\n", ok ? "ok  " : "FAIL", isa, act_name(act), worst,
                worst_x);
    if (!ok) ++g_failures;
  }
}

// op(A) given as A (the micro-kernel may read its rows in place, see
// GemmTuning::direct_a) and as the stored transpose (always packed): the two
// must give the same bits, since only the addresses the kernel reads differ.
// Shapes cover edge row panels (m % MR), K blocks and the Transformer widths.
void a_in_place_matches_packed(const char* isa) {
  struct Shape {
    int64_t m, n, k;
  };
  const Shape shapes[] = {{128, 768, 768}, {13, 100, 1000}, {37, 96, 385}, {9, 49, 17}, {300, 144, 2000}};
  int bad = 0, n_cases = 0;
  for (const Shape& s : shapes) {
    for (int variant = 0; variant < 2; ++variant) {
      const int64_t lda = s.k + 3 * variant;
      std::vector<float> A(s.m * lda), At(s.k * s.m), B(s.k * s.n), bias(s.n), C1(s.m * s.n), C2(s.m * s.n);
      for (auto& v : A) v = urand(-1, 1);
      for (int64_t i = 0; i < s.m; ++i)
        for (int64_t kk = 0; kk < s.k; ++kk) At[kk * s.m + i] = A[i * lda + kk];
      for (auto& v : B) v = urand(-1, 1);
      for (auto& v : bias) v = urand(-1, 1);
      for (int t = 1; t <= 2; ++t) {
        GemmParams p;
        p.m = s.m;
        p.n = s.n;
        p.k = s.k;
        p.a = A.data();
        p.lda = lda;
        p.b = B.data();
        p.ldb = s.n;
        p.trans_b = variant == 1;  // B's values differ between variants; each compares like with like
        if (p.trans_b) p.ldb = s.k;
        p.bias = bias.data();
        p.act = variant ? Activation::Gelu : Activation::None;
        p.c = C1.data();
        p.ldc = s.n;
        attnode::kernels::sgemm(p, t);
        p.a = At.data();
        p.lda = s.m;
        p.trans_a = true;
        p.c = C2.data();
        attnode::kernels::sgemm(p, t);
        ++g_checks;
        ++n_cases;
        if (std::memcmp(C1.data(), C2.data(), C1.size() * sizeof(float)) != 0) {
          ++g_failures;
          if (++bad <= 5)
            std::printf("FAIL [%s] A in place != A packed: m=%ld n=%ld k=%ld lda=%ld tb=%d t=%d\n", isa, (long)s.m,
                        (long)s.n, (long)s.k, (long)lda, variant, t);
        }
      }
    }
  }
  std::printf("%s [%s]: %d products with A read in place bit-identical to A packed (gemm_tuning: %s, direct A %d)\n",
              bad ? "FAIL" : "ok  ", isa, n_cases, attnode::kernels::gemm_tuning().entry.c_str(),
              attnode::kernels::gemm_tuning().direct_a);
}

// An unpacked, non-transposed B that sgemm reads in place (few row panels, whole column panels, a row stride
// that spreads over the caches: sgemm_reads_b_in_place) must give the bits of the same B pre-packed (pack_b):
// only the addresses the micro-kernel reads differ. With A in place and A packed (transposed), aligned and
// unaligned row strides, bias and GELU, 1 and 2 threads. Counts the products that took the in-place path: a kernel
// path without it (avx2, portable) reports 0 and compares packed with packed.
void b_in_place_matches_packed(const char* isa) {
  struct Shape {
    int64_t m, n, k, ldb;
  };
  const Shape shapes[] = {{128, 768, 768, 768}, {40, 96, 385, 96}, {120, 144, 2000, 149}, {9, 48, 17, 53},
                          {100, 2304, 100, 2304}, {64, 768, 3000, 768}, {256, 768, 768, 768}};
  int bad = 0, n_cases = 0, in_place = 0;
  for (const Shape& s : shapes) {
    std::vector<float> A(s.m * s.k), At(s.k * s.m), B(s.k * s.ldb), bias(s.n), C1(s.m * s.n), C2(s.m * s.n);
    for (auto& v : A) v = urand(-1, 1);
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t kk = 0; kk < s.k; ++kk) At[kk * s.m + i] = A[i * s.k + kk];
    for (auto& v : B) v = urand(-1, 1);
    for (auto& v : bias) v = urand(-1, 1);
    const auto packed = attnode::kernels::pack_b(B.data(), s.ldb, false, s.k, s.n);
    for (int trans_a = 0; trans_a < 2; ++trans_a) {
      for (int t = 1; t <= 2; ++t) {
        GemmParams p;
        p.m = s.m;
        p.n = s.n;
        p.k = s.k;
        p.a = trans_a ? At.data() : A.data();
        p.lda = trans_a ? s.m : s.k;
        p.trans_a = trans_a == 1;
        p.b = B.data();
        p.ldb = s.ldb;
        p.bias = bias.data();
        p.act = trans_a ? Activation::Gelu : Activation::None;
        p.c = C1.data();
        p.ldc = s.n;
        if (attnode::kernels::sgemm_reads_b_in_place(p)) ++in_place;
        attnode::kernels::sgemm(p, t);
        p.packed_b = packed.get();
        p.c = C2.data();
        attnode::kernels::sgemm(p, t);
        ++g_checks;
        ++n_cases;
        if (std::memcmp(C1.data(), C2.data(), C1.size() * sizeof(float)) != 0) {
          ++g_failures;
          if (++bad <= 5)
            std::printf("FAIL [%s] B in place != B packed: m=%ld n=%ld k=%ld ldb=%ld trans_a=%d t=%d\n", isa,
                        (long)s.m, (long)s.n, (long)s.k, (long)s.ldb, trans_a, t);
        }
      }
    }
  }
  const bool want = attnode::kernels::gemm_tuning().direct_b;
  if (want && in_place == 0) {
    ++g_failures;
    std::printf("FAIL [%s] no product read B in place\n", isa);
  }
  std::printf("%s [%s]: %d products with B read in place (of %d) bit-identical to B pre-packed (direct B %d)\n",
              bad || (want && in_place == 0) ? "FAIL" : "ok  ", isa, in_place, n_cases, want);
}

std::vector<Case> make_cases(bool quick) {
  std::vector<Case> cases;
  struct Shape {
    int64_t m, n, k;
  };
  const Shape shapes[] = {{1, 1, 1},     {7, 13, 29},     {1, 768, 768}, {5000, 3, 17}, {3, 5000, 17},  {17, 33, 1000},
                          {64, 48, 384}, {129, 97, 385},  {2, 1, 5},     {8, 48, 16},   {9, 49, 17},    {33, 770, 769},
                          {1, 37, 300},  {200, 300, 100}, {31, 1, 64},   {1, 1, 1000},  {96, 336, 800}, {16, 1000, 40}};
  const Activation acts[] = {Activation::None, Activation::Relu, Activation::Gelu, Activation::GeluTanh};
  int idx = 0;
  for (const Shape& s : shapes) {
    for (int combo = 0; combo < 4; ++combo) {
      Case c;
      c.m = s.m;
      c.n = s.n;
      c.k = s.k;
      c.ta = combo & 1;
      c.tb = combo & 2;
      c.pad_a = (idx % 3 == 0) ? 0 : idx % 5 + 1;
      c.pad_b = (idx % 4 == 1) ? 0 : idx % 7 + 2;
      c.pad_c = idx % 3 == 2 ? 0 : idx % 6 + 1;
      const int e = idx % 6;
      c.alpha = e == 3 ? -0.5f : e == 5 ? 1.75f : 1.0f;
      c.beta = e == 1 ? 1.0f : e == 2 ? 0.5f : e == 4 ? -2.0f : 0.0f;
      c.bias = (idx % 3) != 1;
      c.act = acts[idx % 4];
      cases.push_back(c);
      ++idx;
    }
  }
  // Every activation with bias + beta on an awkward and a kernel-aligned shape.
  for (Activation act : acts)
    for (Shape s : {Shape{37, 101, 203}, Shape{16, 96, 64}}) {
      Case c{s.m, s.n, s.k, false, true, 1, 2, 3, 0.75f, 0.5f, true, act};
      cases.push_back(c);
    }
  // Random shapes.
  for (int r = 0; r < (quick ? 6 : 30); ++r) {
    Case c;
    c.m = 1 + g_rng() % 150;
    c.n = 1 + g_rng() % 150;
    c.k = 1 + g_rng() % 300;
    c.ta = g_rng() & 1;
    c.tb = g_rng() & 1;
    c.pad_a = g_rng() % 4;
    c.pad_b = g_rng() % 4;
    c.pad_c = g_rng() % 4;
    c.alpha = (g_rng() & 1) ? 1.0f : urand(-2, 2);
    c.beta = (g_rng() % 3 == 0) ? 0.0f : urand(-1, 1);
    c.bias = g_rng() & 1;
    c.act = acts[g_rng() % 4];
    cases.push_back(c);
  }
  // Batched, including stride-0 broadcast of either operand (shared weights).
  for (int v = 0; v < 6; ++v) {
    Case c{v < 3 ? 24 : 3,
           40,
           70,
           (v & 1) != 0,
           (v & 2) != 0,
           0,
           1,
           2,
           1.0f,
           v == 4 ? 0.5f : 0.0f,
           v != 2,
           static_cast<Activation>(v % 4)};
    c.batch = v < 3 ? 5 : 7;
    c.bcast_b = v % 3 == 0;
    c.bcast_a = v % 3 == 1;
    cases.push_back(c);
  }
  {
    Case c{1, 64, 128, false, true, 0, 0, 0, 1.0f, 0.0f, true, Activation::Gelu};
    c.batch = 9;
    c.bcast_b = true;
    cases.push_back(c);
  }
  return cases;
}

// The bf16 M = 1 product (the decode GEMV) against the bf16 GEMM: row r of a
// 3-row GEMM and a GEMV of that row alone must agree bit for bit (same
// pair-order dpbf16 chains per K block, same epilogue per block), with every
// epilogue, K blocks of every size, edge panels and 1 or 2 threads.
void bf16_gemv_matches_gemm() {
  struct S {
    int64_t n, k;
  };
  const S shapes[] = {{1, 1},     {47, 3},     {48, 64},    {49, 577}, {200, 576},
                      {960, 576}, {576, 1536}, {3072, 576}, {97, 1025}};
  struct E {
    float alpha, beta;
    bool bias;
    Activation act;
  };
  const E eps[] = {{1.0f, 0.0f, false, Activation::None},
                   {1.0f, 0.0f, true, Activation::Gelu},
                   {0.5f, 1.0f, true, Activation::None},
                   {1.0f, -0.25f, false, Activation::Relu}};
  int bad = 0, n_cases = 0;
  for (const S& s : shapes) {
    std::vector<float> B(static_cast<size_t>(s.n * s.k)), A(static_cast<size_t>(3 * s.k)), bias(s.n), c0(3 * s.n);
    for (float& v : B) v = urand(-1, 1);
    for (float& v : A) v = urand(-1, 1);
    for (float& v : bias) v = urand(-1, 1);
    for (float& v : c0) v = urand(-1, 1);
    auto packed = attnode::kernels::pack_b_bf16(B.data(), s.k, true, s.k, s.n);
    for (const E& e : eps) {
      for (int threads : {1, 2}) {
        GemmParams p;
        p.m = 3;
        p.n = s.n;
        p.k = s.k;
        p.a = A.data();
        p.lda = s.k;
        p.b = B.data();
        p.ldb = s.k;
        p.trans_b = true;
        p.ldc = s.n;
        p.alpha = e.alpha;
        p.beta = e.beta;
        p.bias = e.bias ? bias.data() : nullptr;
        p.act = e.act;
        p.packed_b = packed.get();
        std::vector<float> gemm = c0;
        p.c = gemm.data();
        attnode::kernels::sgemm(p, threads);
        for (int64_t r = 0; r < 3; ++r) {
          std::vector<float> gemv(c0.begin() + r * s.n, c0.begin() + (r + 1) * s.n);
          GemmParams q = p;
          q.m = 1;
          q.a = A.data() + r * s.k;
          q.c = gemv.data();
          attnode::kernels::sgemm(q, threads);
          ++g_checks;
          ++n_cases;
          if (std::memcmp(gemv.data(), gemm.data() + r * s.n, s.n * sizeof(float)) != 0) {
            ++g_failures;
            if (++bad <= 10)
              std::printf("FAIL [avx512-bf16] GEMV != GEMM row %ld: n=%ld k=%ld alpha=%g beta=%g bias=%d act=%s t=%d\n",
                          (long)r, (long)s.n, (long)s.k, e.alpha, e.beta, e.bias, act_name(e.act), threads);
          }
        }
      }
    }
  }
  std::printf("%s [avx512-bf16]: %d M = 1 products bit-identical to their row of the bf16 GEMM\n",
              bad ? "FAIL" : "ok  ", n_cases);
}


// kernels::pack_b / pack_b_bf16 / pack_b_int8 allocate through runtime::alloc_streamed (huge-page slabs): pieces are 64-byte
// aligned and disjoint, a large one gets a slab of its own, slabs go back to the OS when their last piece is
// freed, and (when the kernel offers transparent huge pages) a touched large piece is backed by huge pages.
size_t anon_huge_kib_at(const void* p) {
  FILE* f = std::fopen("/proc/self/smaps", "r");
  if (f == nullptr) return 0;
  char line[512];
  bool in = false;
  size_t kib = 0;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && std::strchr(line, ' ') != nullptr &&
        std::strchr(line, '-') < std::strchr(line, ' ')) {
      in = a >= lo && a < hi;
      continue;
    }
    if (in && std::sscanf(line, "AnonHugePages: %zu kB", &kib) == 1) break;
  }
  std::fclose(f);
  return in ? kib : 0;
}

#define POOL_CHECK(cond, ...)                           \
  do {                                                  \
    ++g_checks;                                         \
    if (!(cond)) {                                      \
      ++g_failures;                                     \
      std::printf("FAIL streamed memory: " __VA_ARGS__); \
      std::printf("\n");                                \
    }                                                   \
  } while (0)

void streamed_memory_pool() {
  namespace r = attnode::runtime;
  const r::StreamedMemoryStats s0 = r::streamed_memory_stats();
  const size_t sizes[] = {r::kMinPooledBytes, 5u << 20, 100, 3u << 20, 40u << 20, 1};
  std::vector<unsigned char*> ps;
  for (size_t i = 0; i < 6; ++i) {
    auto* p = static_cast<unsigned char*>(r::alloc_streamed(sizes[i]));
    POOL_CHECK(reinterpret_cast<uintptr_t>(p) % 64 == 0, "piece %zu not 64-byte aligned", i);
    std::memset(p, static_cast<int>(i + 1), sizes[i]);
    ps.push_back(p);
  }
  for (size_t i = 0; i < 6; ++i) {
    const unsigned char* p = ps[i];
    POOL_CHECK(p[0] == i + 1 && p[sizes[i] - 1] == i + 1, "piece %zu overwritten by another", i);
  }
  const r::StreamedMemoryStats s1 = r::streamed_memory_stats();
  POOL_CHECK(s1.live_pieces == s0.live_pieces + 4, "pooled pieces %zu, want %zu", s1.live_pieces, s0.live_pieces + 4);
  POOL_CHECK(s1.live_bytes == s0.live_bytes + sizes[0] + sizes[1] + sizes[3] + sizes[4], "pooled bytes %zu",
        s1.live_bytes);
  POOL_CHECK(s1.mapped_bytes >= (40u << 20) + (32u << 20) && s1.slabs >= s0.slabs + 1, "slabs %zu, %zu bytes mapped",
        s1.slabs, s1.mapped_bytes);
  const char* mode = r::transparent_huge_pages_mode();
  if (r::huge_pages_enabled() && (std::strcmp(mode, "madvise") == 0 || std::strcmp(mode, "always") == 0)) {
    const size_t kib = anon_huge_kib_at(ps[4] + (20u << 20));
    POOL_CHECK(kib >= 2048, "a touched 40 MiB piece has %zu KiB of huge pages (THP mode %s)", kib, mode);
    std::printf("ok   huge pages: a touched 40 MiB packed-weight piece has %zu KiB on huge pages (THP %s)\n", kib, mode);
  } else {
    std::printf("skip huge-page backing check: THP mode '%s', huge pages %s\n", mode,
                r::huge_pages_enabled() ? "on" : "off (ATTNODE_HUGE_PAGES=0)");
  }
  for (unsigned char* p : ps) r::free_streamed(p);
  const r::StreamedMemoryStats s2 = r::streamed_memory_stats();
  POOL_CHECK(s2.live_pieces == s0.live_pieces && s2.live_bytes == s0.live_bytes, "pieces left after freeing: %zu",
        s2.live_pieces);
  // Only the slab still taking new pieces may stay mapped.
  POOL_CHECK(s2.slabs <= std::max<size_t>(s0.slabs, 1), "slabs left after freeing everything: %zu", s2.slabs);
  // Packed weights use it: packing a 2 MiB weight adds a pooled piece until the PackedB is dropped.
  {
    std::vector<float> b(size_t{1024} * 512, 0.5f);
    auto pk = attnode::kernels::pack_b(b.data(), 512, true, 512, 1024);
    POOL_CHECK(r::streamed_memory_stats().live_pieces == s0.live_pieces + 1, "pack_b did not allocate a pooled piece");
  }
  POOL_CHECK(r::streamed_memory_stats().live_pieces == s0.live_pieces, "dropping the PackedB did not free its piece");
  // So do the int8 panels (1024 x 512 bytes: one pooled piece; the scales and sums are small C allocations).
  {
    std::vector<float> b(size_t{1024} * 512, 0.5f);
    auto pk = attnode::kernels::pack_b_int8(b.data(), 512, true, 512, 1024);
    POOL_CHECK(r::streamed_memory_stats().live_pieces == s0.live_pieces + 1,
               "pack_b_int8 did not allocate a pooled piece (%zu live, %zu before)",
               r::streamed_memory_stats().live_pieces, s0.live_pieces);
  }
  POOL_CHECK(r::streamed_memory_stats().live_pieces == s0.live_pieces,
             "dropping the int8 PackedB did not free its piece");
  std::printf("%s streamed memory: pooled pieces aligned, disjoint, freed with their slabs\n",
              g_failures ? "(see failures)" : "ok  ");
}
}  // namespace

// sgemm_group: a Linear's backward (dW = dZᵀ·X with the bias row sums, dX = dZ·W) and a batched product as one
// group equal, bit for bit, the same calls made one at a time, with 1, 2 and 3 pool threads (2 runs them side by
// side, each on one thread; 3 too; 1 in turn), and outputs outside each call's C stay untouched.
void group_matches_separate(const char* isa) {
  auto& pool = rt::ThreadPool::instance();
  const int threads = pool.num_threads();
  struct Shape {
    int64_t tokens, n_out, n_in;
  };
  const Shape shapes[] = {{256, 768, 256}, {256, 256, 1024}, {37, 100, 53}, {8, 9, 17}};
  int bad = 0;
  for (const Shape& s : shapes) {
    std::vector<float> dz(s.tokens * s.n_out), x(s.tokens * s.n_in), w(s.n_out * s.n_in);
    std::vector<float> qa(3 * 17 * 29), qb(3 * 29 * 31);
    for (auto* v : {&dz, &x, &w, &qa, &qb})
      for (auto& e : *v) e = urand(-1, 1);
    // One set of outputs per run: [0] separate calls, [1..3] groups at 1, 2, 3 threads.
    std::vector<float> dw[4], db[4], dx[4], bq[4];
    for (int r = 0; r < 4; ++r) {
      dw[r].assign(s.n_out * s.n_in + 1, kSentinel);
      db[r].assign(s.n_out + 1, kSentinel);
      dx[r].assign(s.tokens * s.n_in + 1, kSentinel);
      bq[r].assign(3 * 17 * 31 + 1, kSentinel);
      GemmCall calls[3];
      GemmParams& pw = calls[0].p;
      pw.m = s.n_out, pw.n = s.n_in, pw.k = s.tokens, pw.a = dz.data(), pw.lda = s.n_out, pw.trans_a = true;
      pw.b = x.data(), pw.ldb = s.n_in, pw.c = dw[r].data(), pw.ldc = s.n_in, pw.row_sums_a = db[r].data();
      GemmParams& px = calls[1].p;
      px.m = s.tokens, px.n = s.n_in, px.k = s.n_out, px.a = dz.data(), px.lda = s.n_out, px.b = w.data();
      px.ldb = s.n_in, px.c = dx[r].data(), px.ldc = s.n_in;
      GemmParams& pq = calls[2].p;
      pq.m = 17, pq.n = 31, pq.k = 29, pq.a = qa.data(), pq.lda = 29, pq.b = qb.data(), pq.ldb = 31, pq.c = bq[r].data();
      pq.ldc = 31, pq.alpha = 0.5f;
      calls[2].batch = 3, calls[2].stride_a = 17 * 29, calls[2].stride_b = 29 * 31, calls[2].stride_c = 17 * 31;
      if (r == 0) {
        pool.set_num_threads(2);
        sgemm(calls[0].p);
        sgemm(calls[1].p);
        sgemm_batched(calls[2].p, 3, calls[2].stride_a, calls[2].stride_b, calls[2].stride_c);
      } else {
        pool.set_num_threads(r);
        sgemm_group(calls, 3);
      }
    }
    for (int r = 1; r < 4; ++r) {
      ++g_checks;
      if (std::memcmp(dw[r].data(), dw[0].data(), dw[0].size() * 4) != 0 ||
          std::memcmp(db[r].data(), db[0].data(), db[0].size() * 4) != 0 ||
          std::memcmp(dx[r].data(), dx[0].data(), dx[0].size() * 4) != 0 ||
          std::memcmp(bq[r].data(), bq[0].data(), bq[0].size() * 4) != 0) {
        ++bad;
        std::printf("FAIL [%s] group at %d thread(s) differs from separate calls: tokens=%ld out=%ld in=%ld\n", isa, r,
                    (long)s.tokens, (long)s.n_out, (long)s.n_in);
      }
    }
    ++g_checks;
    if (dw[0].back() != kSentinel || db[0].back() != kSentinel || dx[0].back() != kSentinel || bq[0].back() != kSentinel) {
      ++bad;
      std::printf("FAIL [%s] a call wrote past its output\n", isa);
    }
  }
  pool.set_num_threads(threads);
  g_failures += bad;
}

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  auto& pool = rt::ThreadPool::instance();
  if (pool.num_threads() < 2) pool.set_num_threads(2);
  std::printf("cpu: %s | detected isa %s | pool threads %d\n", rt::cpu_info().brand.c_str(),
              rt::isa_name(rt::detected_isa()), pool.num_threads());
  const std::vector<Case> cases = make_cases(quick);
  for (rt::Isa isa : {rt::Isa::Portable, rt::Isa::Avx2, rt::Isa::Avx512}) {
    if (!rt::set_isa(isa) || rt::active_isa() != isa) {
      std::printf("skip [%s]: not supported here (or capped by ATTNODE_ISA)\n", rt::isa_name(isa));
      continue;
    }
    const int before = g_failures;
    size_t packed_cases = 0;
    for (const Case& c : cases) {
      run_case(c, rt::isa_name(isa));
      if (c.batch != 1 && !c.bcast_b) continue;
      run_case(c, rt::isa_name(isa), BMode::PackedFp32);
      ++packed_cases;
    }
    activation_accuracy(rt::isa_name(isa));
    a_in_place_matches_packed(rt::isa_name(isa));
    b_in_place_matches_packed(rt::isa_name(isa));
    group_matches_separate(rt::isa_name(isa));
    std::printf(
        "%s [%s]: %zu GEMM cases, %zu again with B pre-packed (1 vs 2 threads bit-identical, vs double reference); "
        "sgemm_group equal to separate calls at 1-3 threads\n",
        g_failures == before ? "ok  " : "FAIL", rt::isa_name(isa), cases.size(), packed_cases);
  }
  if (rt::set_isa(rt::Isa::Avx512) && attnode::kernels::bf16_gemm_available()) {
    const int before = g_failures;
    size_t n = 0;
    for (const Case& c : cases) {
      if (c.batch != 1 && !c.bcast_b) continue;
      run_case(c, "avx512-bf16", BMode::PackedBf16);
      ++n;
    }
    bf16_gemv_matches_gemm();
    std::printf(
        "%s [avx512-bf16]: %zu GEMM cases with bf16 packed B (1 vs 2 threads bit-identical, vs double "
        "reference on bf16-rounded inputs)\n",
        g_failures == before ? "ok  " : "FAIL", n);
  } else {
    std::printf("skip [avx512-bf16]: no AVX512-BF16 here (or capped by ATTNODE_ISA)\n");
  }
  streamed_memory_pool();
  std::printf("%s: %d checks, %d failures\n", g_failures ? "FAILED" : "PASSED", g_checks, g_failures);
  return g_failures ? 1 : 0;
}
