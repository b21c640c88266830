// Where the int8 GEMM's time goes, per call, for the products of a BERT-base encoder layer at M = 128 and 1024
// (q/k/v fused 768 -> 2304, out 768 -> 768, ff1 768 -> 3072 with GELU, ff2 3072 -> 768): the A quantization and
// packing alone, the tile loop alone (micro-kernel, dequantization and store, over packed A), the tile loop with
// the GELU epilogue, and whole calls at 1 thread (CPU time of this thread: the work, whatever the machine's load);
// whole calls at 2 threads (wall and process CPU time: on a loaded machine, wall says little). Each against the
// measured vpdpbusd peak of one core. Built by bench/gemm/qgemm_phases.sh.
//
// It includes qgemm.cc itself to time the frontend's internal steps (pack_a, the kernel over packed panels), which
// have no public entry: so this file and qgemm.cc form one translation unit (qgemm.cc is not linked separately).
#include "../../native/kernels/qgemm/qgemm.cc"

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <vector>

#include "int8_section.h"

namespace {

namespace k = attnode::kernels;
using k::qgemm_detail::kQNR;
using k::qgemm_detail::QKernels;
using k::qgemm_detail::QStore;

double thread_cpu() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}
double process_cpu() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}
double wall() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median over reps of the mean µs of `inner` calls, by clock.
template <typename Clock, typename F>
double time_us(Clock clock, F f, int reps, int inner = 3) {
  std::vector<double> v;
  for (int r = 0; r < reps; ++r) {
    const double t0 = clock();
    for (int i = 0; i < inner; ++i) f();
    v.push_back((clock() - t0) / inner * 1e6);
  }
  return median(v);
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(3, std::atoi(argv[1])) : 15;
  auto& pool = attnode::runtime::ThreadPool::instance();
  if (k::qgemm_path() != k::QgemmPath::Avx512Vnni) {
    std::printf("int8 path is %s, not avx512vnni: this probe times the VNNI kernels only\n",
                k::qgemm_path_name(k::qgemm_path()));
    return 0;
  }
  const QKernels& uk = k::qkernels(k::qgemm_path());
  const double peak = attnode_bench::measure_vnni_peak_1core();
  std::printf("vpdpbusd peak of one core: %.0f GOP/s per CPU-second; load %s\n", peak,
              attnode_bench::load_average().c_str());
  std::printf("%-22s %9s %9s %9s %9s %9s | %s\n", "M x N x K", "pack us", "tiles us", "+GELU us", "call us", "GOP/s",
              "2 threads: wall us, CPU us (GOP/s per wall s)");
  struct Shape {
    int64_t m, n, k;
  };
  const Shape shapes[] = {{128, 2304, 768}, {128, 768, 768}, {128, 3072, 768}, {128, 768, 3072},
                          {1024, 2304, 768}, {1024, 768, 768}, {1024, 3072, 768}, {1024, 768, 3072}};
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1, 1);
  for (const Shape& s : shapes) {
    std::vector<float> w(s.n * s.k), a(s.m * s.k), c(s.m * s.n), bias(s.n);
    for (auto& x : w) x = dist(rng);
    for (auto& x : a) x = dist(rng);
    for (auto& x : bias) x = dist(rng);
    const auto qw = k::qpack_b(w.data(), s.k, true, s.k, s.n);
    k::GemmParams p;
    p.a = a.data();
    p.lda = s.k;
    p.c = c.data();
    p.ldc = s.n;
    p.m = s.m;
    p.n = s.n;
    p.k = s.k;
    p.bias = bias.data();
    const int64_t kq = qw->kq, mr = uk.mr, mp = (s.m + mr - 1) / mr;
    std::vector<uint8_t> apack(static_cast<size_t>(mp * mr * kq * 4 + 64));
    std::vector<float> sa(static_cast<size_t>(mp * mr));
    pool.set_num_threads(1);
    const double pack = time_us(thread_cpu, [&] { k::pack_a(uk, p, 0, s.m, kq, apack.data(), sa.data(), 1); }, reps);
    auto tiles = [&](int act) {
      for (int64_t ir = 0; ir < mp; ++ir) {
        const int m_valid = static_cast<int>(std::min<int64_t>(mr, s.m - ir * mr));
        for (int64_t jr = 0; jr < qw->np; ++jr) {
          const int64_t j = jr * kQNR;
          QStore st{sa.data() + ir * mr, qw->sw + j, qw->comp + j,
                    k::gemm_detail::Epilogue{1.0f, 0.0f, bias.data() + j, act}};
          uk.kernel(kq, apack.data() + ir * mr * kq * 4, qw->panel(jr), c.data() + ir * mr * s.n + j, s.n, m_valid,
                    static_cast<int>(std::min<int64_t>(kQNR, s.n - j)), &st);
        }
      }
    };
    const double t_plain = time_us(thread_cpu, [&] { tiles(0); }, reps);
    const double t_gelu = time_us(thread_cpu, [&] { tiles(static_cast<int>(k::Activation::Gelu)); }, reps);
    const double call = time_us(thread_cpu, [&] { k::qgemm(*qw, p, 1); }, reps);
    pool.set_num_threads(2);
    const double w2 = time_us(wall, [&] { k::qgemm(*qw, p, 2); }, reps);
    const double c2 = time_us(process_cpu, [&] { k::qgemm(*qw, p, 2); }, reps);
    const double ops = 2.0 * s.m * s.n * s.k;
    char name[48];
    std::snprintf(name, sizeof name, "%lldx%lldx%lld", static_cast<long long>(s.m), static_cast<long long>(s.n),
                  static_cast<long long>(s.k));
    std::printf("%-22s %9.0f %9.0f %9.0f %9.0f %9.0f | %.0f, %.0f (%.0f)   tiles %.0f%% of peak, call %.0f%%\n", name,
                pack, t_plain, t_gelu, call, ops / call / 1e3, w2, c2, ops / w2 / 1e3, 100 * ops / t_plain / 1e3 / peak,
                100 * ops / call / 1e3 / peak);
  }
  std::printf("load at the end: %s\n", attnode_bench::load_average().c_str());
  return 0;
}
