// The M = 1 products of a whole SmolLM-135M decode step, in model order (per layer: q|k|v 960x576, o 576x576,
// gate|up 3072x576, down 576x1536; then the 49152x576 head), from memory, with pre-packed fp32, bf16 or int8 weights
// allocated on 4 KiB pages and on 2 MiB huge pages (runtime::set_huge_pages), interleaved rounds; achieved weight
// GB/s and the time per step. Also a plain read of the same bytes (one buffer, each layout) as the reference.
// Then each shape alone (the GEMVs of a SmolLM-135M layer and its head, n x k): enough copies on huge pages to
// read ~128 MB per pass, so every call streams its weight from memory as in decode, fp32, bf16 and int8 GEMV
// against a plain read of the bf16 bytes, interleaved rounds, median GB/s (int8: the bytes of its panels).
// Usage: bench/gemm/decode_gemv.sh [threads] [rounds]
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../../native/kernels/gemm/gemm.h"
#include "../../native/runtime/huge_pages.h"
#include "../../native/runtime/thread_pool.h"
#include "stream_read.h"

using namespace attnode::kernels;
namespace rt = attnode::runtime;

static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Shape {
  int n, k;
};

struct Model {
  std::vector<PackedBPtr> w;
  std::vector<Shape> s;
  double bytes = 0;
};

enum class Prec { F32, BF16, I8 };
static const char* prec_name(Prec p) { return p == Prec::F32 ? "fp32" : p == Prec::BF16 ? "bf16" : "int8"; }
static double prec_bytes(Prec p) { return p == Prec::F32 ? 4.0 : p == Prec::BF16 ? 2.0 : 1.0; }
static PackedBPtr pack(Prec p, const float* src, Shape s) {
  switch (p) {
    case Prec::F32: return pack_b(src, s.k, true, s.k, s.n);
    case Prec::BF16: return pack_b_bf16(src, s.k, true, s.k, s.n);
    default: return pack_b_int8(src, s.k, true, s.k, s.n);
  }
}

static Model build(Prec prec, bool huge, int layers) {
  const bool was = rt::set_huge_pages(huge);
  Model m;
  const Shape layer[] = {{960, 576}, {576, 576}, {3072, 576}, {576, 1536}};
  std::vector<float> src;
  auto add = [&](Shape s) {
    src.resize((size_t)s.n * s.k);
    for (size_t i = 0; i < src.size(); ++i) src[i] = ((i * 2654435761u) % 1000) * 1e-5f - 0.005f;
    m.w.push_back(pack(prec, src.data(), s));
    m.s.push_back(s);
    m.bytes += prec_bytes(prec) * s.n * s.k;
  };
  for (int l = 0; l < layers; ++l)
    for (Shape s : layer) add(s);
  add({49152, 576});
  rt::set_huge_pages(was);
  return m;
}

static void gemv(const PackedB* w, Shape s, int nt, const float* x, float* c) {
  GemmParams p;
  p.m = 1;
  p.n = s.n;
  p.k = s.k;
  p.a = x;
  p.lda = p.k;
  p.b = nullptr;
  p.ldb = p.k;
  p.trans_b = true;
  p.c = c;
  p.ldc = p.n;
  p.packed_b = w;
  sgemm(p, nt);
}

static double step(const Model& m, int nt, std::vector<float>& x, std::vector<float>& c) {
  const double t0 = now();
  for (size_t i = 0; i < m.w.size(); ++i) gemv(m.w[i].get(), m.s[i], nt, x.data(), c.data());
  return now() - t0;
}

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// One shape alone, from memory: fp32, bf16 and int8 GEMVs over copies of the weight (~128 MB of bf16 per pass) and
// a plain read of as many bytes as the bf16 copies, on huge pages, interleaved.
static void shape_rows(int nt, int rounds) {
  const Shape shapes[] = {{576, 576}, {192, 576}, {960, 576}, {1536, 576}, {3072, 576}, {576, 1536}, {49152, 576}};
  std::vector<float> x(1536, 0.01f), c(49152), src;
  const bool was = rt::set_huge_pages(true);
  for (Shape s : shapes) {
    const double bytes16 = 2.0 * s.n * s.k;
    const int copies = std::max(1, static_cast<int>(128e6 / bytes16));
    src.resize(static_cast<size_t>(s.n) * s.k);
    for (size_t i = 0; i < src.size(); ++i) src[i] = ((i * 2654435761u) % 1000) * 1e-5f - 0.005f;
    std::vector<PackedBPtr> w32, w16, w8;
    for (int i = 0; i < copies; ++i) {
      w32.push_back(pack(Prec::F32, src.data(), s));
      if (bf16_gemm_available()) w16.push_back(pack(Prec::BF16, src.data(), s));
      w8.push_back(pack(Prec::I8, src.data(), s));
    }
    const size_t nf = static_cast<size_t>(bytes16 * copies / 4) / 64 * 64;
    float* rd = static_cast<float*>(rt::alloc_streamed(nf * 4));
    for (size_t i = 0; i < nf; ++i) rd[i] = 1e-6f;
    std::vector<double> t32, t16, t8, trd;
    volatile float sink = 0;
    auto pass = [&](const std::vector<PackedBPtr>& w) {
      const double t0 = now();
      for (const auto& m : w) gemv(m.get(), s, nt, x.data(), c.data());
      return now() - t0;
    };
    for (int r = 0; r < rounds; ++r) {
      for (int v = 0; v < 4; ++v) {
        switch ((v + r) % 4) {
          case 0: t32.push_back(pass(w32)); break;
          case 1:
            if (!w16.empty()) t16.push_back(pass(w16));
            break;
          case 2: t8.push_back(pass(w8)); break;
          default: {
            const double t0 = now();
            sink = sink + read_sequential(rd, nf);
            trd.push_back(now() - t0);
          }
        }
      }
    }
    std::printf(
        "%5d x %-4d x %3d copies: fp32 GEMV %5.1f GB/s | bf16 GEMV %5.1f GB/s | int8 GEMV %5.1f GB/s | plain read "
        "%5.1f GB/s\n",
        s.n, s.k, copies, 2 * bytes16 * copies / median(t32) / 1e9,
        t16.empty() ? 0.0 : bytes16 * copies / median(t16) / 1e9, bytes16 / 2 * copies / median(t8) / 1e9,
        nf * 4.0 / median(trd) / 1e9);
    rt::free_streamed(rd);
  }
  rt::set_huge_pages(was);
}

int main(int argc, char** argv) {
  const int nt = argc > 1 ? std::atoi(argv[1]) : 1;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 9;
  const int layers = 30;
  rt::ThreadPool::instance().set_num_threads(nt);
  std::printf("threads %d, THP mode %s\n", nt, rt::transparent_huge_pages_mode());
  std::vector<float> x(1536, 0.01f), c(49152);
  for (Prec prec : {Prec::F32, Prec::BF16, Prec::I8}) {
    if (prec == Prec::BF16 && !bf16_gemm_available()) continue;
    Model m4 = build(prec, false, layers), m2 = build(prec, true, layers);
    // The same bytes as one plain buffer per page size: the read bandwidth the products could reach.
    const size_t nf = (size_t)(m4.bytes / 4) / 64 * 64;
    rt::set_huge_pages(false);
    float* r4 = static_cast<float*>(rt::alloc_streamed(nf * 4));
    rt::set_huge_pages(true);
    float* r2 = static_cast<float*>(rt::alloc_streamed(nf * 4));
    for (size_t i = 0; i < nf; ++i) r4[i] = r2[i] = 1e-6f;
    step(m4, nt, x, c);
    step(m2, nt, x, c);
    std::vector<double> t4, t2, rd4, rd2;
    volatile float sink = 0;
    for (int r = 0; r < rounds; ++r) {
      double t = now();
      sink = sink + read_sequential(r4, nf);
      rd4.push_back(now() - t);
      t = now();
      sink = sink + read_sequential(r2, nf);
      rd2.push_back(now() - t);
      if (r % 2) {
        t4.push_back(step(m4, nt, x, c));
        t2.push_back(step(m2, nt, x, c));
      } else {
        t2.push_back(step(m2, nt, x, c));
        t4.push_back(step(m4, nt, x, c));
      }
    }
    for (auto* v : {&t4, &t2, &rd4, &rd2}) std::sort(v->begin(), v->end());
    auto med = [](const std::vector<double>& v) { return v[v.size() / 2]; };
    const double gb = m4.bytes / 1e9;
    std::printf(
        "%s: %.1f MB/step | 4K pages: %.2f ms (%.1f GB/s, best %.1f) | 2M pages: %.2f ms (%.1f GB/s, best %.1f) | "
        "plain read 1T 4K %.1f GB/s, 2M %.1f GB/s\n",
        prec_name(prec), m4.bytes / 1e6, med(t4) * 1e3, gb / med(t4), gb / t4.front(), med(t2) * 1e3,
        gb / med(t2), gb / t2.front(), gb / med(rd4), gb / med(rd2));
    rt::free_streamed(r4);
    rt::free_streamed(r2);
  }
  std::printf("per shape (n x k), weights from memory on huge pages, %d thread(s), median of %d rounds:\n", nt, rounds);
  shape_rows(nt, rounds);
}
