// The int8-weight rows of the GEMM benchmark (gemm_bench.cc): attnode's int8
// GEMM (kernels/qgemm: weights quantized once by pack_b_int8, activations per
// row at every call) against attnode's fp32 GEMM on the same shapes, both with
// pre-packed weights as modules use them (cacheWeight), interleaved within
// every repetition, medians. Also the fp32 GEMM without packing (sgemm's own
// panel packing), and M = 1 (the GEMVs).
#pragma once

#include <immintrin.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "../../native/kernels/gemm/gemm.h"
#include "../../native/kernels/qgemm/qgemm.h"
#include "../../native/runtime/cpu_features.h"
#include "../../native/runtime/thread_pool.h"

namespace attnode_bench {

inline std::string load_average() {
  std::string s = "?";
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    char buf[64] = {};
    if (std::fgets(buf, sizeof buf, f)) {
      s = buf;
      s = s.substr(0, s.find(' ', s.find(' ', s.find(' ') + 1) + 1));  // the 1, 5 and 15 minute averages
    }
    std::fclose(f);
  }
  return s;
}

// vpdpbusd zmm at its throughput: 12 independent chains in registers, per CPU-second of this thread (GOP/s, 128
// operations per instruction). Inline asm: GCC merges identical intrinsic chains. Only called where the CPU has
// AVX512-VNNI.
__attribute__((target("avx512f,avx512bw,avx512vnni"))) inline double measure_vnni_peak_1core() {
  // Twelve named accumulators (an array indexed in the loop went through the stack at -O3: half the rate).
  __m512i a0 = _mm512_set1_epi32(0), a1 = _mm512_set1_epi32(1), a2 = _mm512_set1_epi32(2), a3 = _mm512_set1_epi32(3);
  __m512i a4 = _mm512_set1_epi32(4), a5 = _mm512_set1_epi32(5), a6 = _mm512_set1_epi32(6), a7 = _mm512_set1_epi32(7);
  __m512i a8 = _mm512_set1_epi32(8), a9 = _mm512_set1_epi32(9), a10 = _mm512_set1_epi32(10),
          a11 = _mm512_set1_epi32(11);
  const __m512i x = _mm512_set1_epi32(0x01010101), y = _mm512_set1_epi32(0x02020202);
#define ATTNODE_BENCH_DP(acc) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(y))
  const long iters = 20000000;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    timespec t0, t1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    for (long i = 0; i < iters; ++i) {
      ATTNODE_BENCH_DP(a0);
      ATTNODE_BENCH_DP(a1);
      ATTNODE_BENCH_DP(a2);
      ATTNODE_BENCH_DP(a3);
      ATTNODE_BENCH_DP(a4);
      ATTNODE_BENCH_DP(a5);
      ATTNODE_BENCH_DP(a6);
      ATTNODE_BENCH_DP(a7);
      ATTNODE_BENCH_DP(a8);
      ATTNODE_BENCH_DP(a9);
      ATTNODE_BENCH_DP(a10);
      ATTNODE_BENCH_DP(a11);
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
    const double s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    best = std::max(best, iters * 12.0 * 128 / s / 1e9);
  }
#undef ATTNODE_BENCH_DP
  __m512i t = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                               _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7)));
  t = _mm512_add_epi32(t, _mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10, a11)));
  volatile int sink = _mm512_reduce_add_epi32(t);
  (void)sink;
  return best;
}

// Returns the report (markdown); writes gemm-int8-latest.md and a dated JSON into out_dir.
inline std::string run_int8_section(int reps, bool quick, const std::string& out_dir, const std::string& date,
                                    int max_threads, double fma_peak_1core,
                                    const std::function<double(const std::function<void()>&, int)>& time_calls) {
  namespace k = attnode::kernels;
  namespace rt = attnode::runtime;
  auto& pool = rt::ThreadPool::instance();
  struct S {
    int64_t m, k, n;
  };
  std::vector<S> shapes;
  const std::vector<int64_t> ms = quick ? std::vector<int64_t>{1, 128} : std::vector<int64_t>{1, 128, 512, 2048};
  const std::vector<std::pair<int64_t, int64_t>> kns =
      quick ? std::vector<std::pair<int64_t, int64_t>>{{768, 768}, {768, 3072}}
            : std::vector<std::pair<int64_t, int64_t>>{{768, 768}, {768, 2304}, {768, 3072}, {3072, 768}};
  for (int64_t m : ms)
    for (auto [kk, n] : kns) shapes.push_back({m, kk, n});

  struct Row {
    S s;
    int threads;
    double fp32_packed, fp32, int8;    // G(FL)OP/s, 2 M N K per call, wall time
    double cpu_fp32_packed, cpu_int8;  // the same per CPU-second of the process (all its threads)
    std::string load;
  };
  std::vector<Row> rows;
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> dist(-1, 1);
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  };
  const std::string load_start = load_average();
  const bool vnni = rt::cpu_info().avx512vnni && rt::cpu_info().os_avx512;
  const double vnni_peak = vnni ? measure_vnni_peak_1core() : 0.0;
  for (int nt = 1; nt <= max_threads; ++nt) {
    pool.set_num_threads(nt);
    for (const S& s : shapes) {
      std::vector<float> a(s.m * s.k), w(s.n * s.k), c(s.m * s.n);
      for (auto& v : a) v = dist(rng);
      for (auto& v : w) v = dist(rng);
      const k::PackedBPtr p32 = k::pack_b(w.data(), s.k, true, s.k, s.n);
      const k::PackedBPtr p8 = k::pack_b_int8(w.data(), s.k, true, s.k, s.n);
      auto call = [&](const k::PackedB* packed) {
        k::GemmParams p;
        p.m = s.m;
        p.n = s.n;
        p.k = s.k;
        p.a = a.data();
        p.lda = s.k;
        p.b = w.data();
        p.ldb = s.k;
        p.trans_b = true;
        p.c = c.data();
        p.ldc = s.n;
        p.packed_b = packed;
        k::sgemm(p);
      };
      const std::vector<std::function<void()>> peers = {[&] { call(p32.get()); }, [&] { call(nullptr); },
                                                        [&] { call(p8.get()); }};
      std::vector<int> calls(peers.size());
      for (size_t q = 0; q < peers.size(); ++q) {
        peers[q]();
        const double t = time_calls(peers[q], 3);
        calls[q] = std::max(1, static_cast<int>((quick ? 5e-4 : 2e-3) / t));
      }
      std::vector<std::vector<double>> samples(peers.size()), cpu(peers.size());
      const double gop = 2.0 * s.m * s.n * s.k / 1e9;
      auto cpu_s = [] {
        timespec t;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
        return t.tv_sec + t.tv_nsec * 1e-9;
      };
      for (int r = 0; r < reps; ++r)
        for (size_t q = 0; q < peers.size(); ++q) {
          const double c0 = cpu_s();
          samples[q].push_back(gop / time_calls(peers[q], calls[q]));
          cpu[q].push_back(gop * calls[q] / (cpu_s() - c0));
        }
      rows.push_back({s, nt, median(samples[0]), median(samples[1]), median(samples[2]), median(cpu[0]), median(cpu[2]),
                      load_average()});
    }
  }

  std::string md;
  char line[512];
  std::snprintf(line, sizeof line,
                "## int8 weights (`useWeightPrecision('int8')`): int8 GEMM vs attnode's fp32 GEMM\n\n"
                "CPU: %s; int8 kernels: %s; fp32 kernel path: %s. Median of %d interleaved reps; GOP/s counts "
                "2·M·N·K per call for every column (the int8 call includes quantizing A and dequantizing C). "
                "Measured 1-core fp32 FMA peak at the start: %.1f GFLOP/s (wall); 1-core vpdpbusd peak: %.1f GOP/s per "
                "CPU-second%s. Load average (1/5/15 min) at the start: %s; per row below.\n\n",
                rt::cpu_info().brand.c_str(), k::qgemm_path_name(k::qgemm_path()), rt::isa_name(rt::active_isa()), reps,
                fma_peak_1core, vnni_peak, vnni ? "" : " (no AVX512-VNNI)", load_start.c_str());
  md += line;
  md +=
      "| M | K | N | thr | fp32 packed GF/s | fp32 GF/s | int8 GOP/s | int8 / fp32 packed | int8 / fp32 | "
      "per CPU-s: fp32 packed | int8 | int8 / fp32 packed | load |\n";
  md += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
  for (const Row& r : rows) {
    std::snprintf(
        line, sizeof line, "| %ld | %ld | %ld | %d | %.1f | %.1f | %.1f | %.2f | %.2f | %.1f | %.1f | %.2f | %s |\n",
        (long)r.s.m, (long)r.s.k, (long)r.s.n, r.threads, r.fp32_packed, r.fp32, r.int8, r.int8 / r.fp32_packed,
        r.int8 / r.fp32, r.cpu_fp32_packed, r.cpu_int8, r.cpu_int8 / r.cpu_fp32_packed, r.load.c_str());
    md += line;
  }
  md +=
      "\n(Per CPU-s: G(FL)OP per CPU-second of the whole process, which a shared machine's load moves much less than "
      "wall time; with 2 threads it also counts a worker's spinning. Load: 1/5/15-minute averages after the row.)\n\n";
  for (int nt = 1; nt <= max_threads; ++nt) {
    for (int gemv = 0; gemv < 2; ++gemv) {
      double l1 = 0, l2 = 0, l3 = 0;
      int cnt = 0;
      double worst = 1e9, worst_cpu = 1e9;
      for (const Row& r : rows) {
        if (r.threads != nt || (gemv ? r.s.m != 1 : r.s.m < 128)) continue;
        l1 += std::log(r.int8 / r.fp32_packed);
        l2 += std::log(r.int8 / r.fp32);
        l3 += std::log(r.cpu_int8 / r.cpu_fp32_packed);
        worst = std::min(worst, r.int8 / r.fp32_packed);
        worst_cpu = std::min(worst_cpu, r.cpu_int8 / r.cpu_fp32_packed);
        ++cnt;
      }
      if (!cnt) continue;
      std::snprintf(line, sizeof line,
                    "int8 geomean %d thread(s), %s: wall %.2fx fp32 packed (lowest %.2fx), %.2fx fp32 unpacked; per "
                    "CPU-second %.2fx fp32 packed (lowest %.2fx)%s\n",
                    nt, gemv ? "M = 1 (GEMV)" : "M >= 128", std::exp(l1 / cnt), worst, std::exp(l2 / cnt),
                    std::exp(l3 / cnt), worst_cpu, gemv ? "" : " (target: >= 2.5x)");
      md += line;
    }
    if (vnni_peak > 0 && nt == 1) {
      double lo = 1e9, hi = 0;
      for (const Row& r : rows)
        if (r.threads == 1 && r.s.m >= 128) {
          lo = std::min(lo, r.cpu_int8 / vnni_peak);
          hi = std::max(hi, r.cpu_int8 / vnni_peak);
        }
      std::snprintf(line, sizeof line,
                    "int8 at 1 thread, M >= 128: %.0f-%.0f%% of the measured vpdpbusd peak per CPU-second\n", 100 * lo,
                    100 * hi);
      md += line;
    }
  }
  std::string json = "{\n  \"date\": \"" + date + "\",\n  \"cpu\": \"" + rt::cpu_info().brand + "\",\n";
  json += "  \"int8_kernels\": \"" + std::string(k::qgemm_path_name(k::qgemm_path())) + "\",\n";
  json += "  \"fma_peak_gflops_1core_measured\": " + std::to_string(fma_peak_1core) + ",\n";
  json += "  \"vpdpbusd_peak_gops_1core_per_cpu_s\": " + std::to_string(vnni_peak) + ",\n";
  json += "  \"reps\": " + std::to_string(reps) + ",\n  \"results\": [\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::snprintf(line, sizeof line,
                  "    {\"m\": %ld, \"k\": %ld, \"n\": %ld, \"threads\": %d, \"fp32_packed_gflops\": %.2f, "
                  "\"fp32_gflops\": %.2f, \"int8_gops\": %.2f, \"fp32_packed_gflops_per_cpu_s\": %.2f, "
                  "\"int8_gops_per_cpu_s\": %.2f, \"loadavg\": \"%s\"}%s\n",
                  (long)r.s.m, (long)r.s.k, (long)r.s.n, r.threads, r.fp32_packed, r.fp32, r.int8, r.cpu_fp32_packed,
                  r.cpu_int8, r.load.c_str(), i + 1 < rows.size() ? "," : "");
    json += line;
  }
  json += "  ]\n}\n";
  const std::string jpath = out_dir + "/gemm-int8-" + date + (quick ? "-quick" : "") + ".json";
  if (FILE* f = std::fopen(jpath.c_str(), "w")) {
    std::fputs(json.c_str(), f);
    std::fclose(f);
  }
  if (FILE* f = std::fopen((out_dir + "/gemm-int8-latest.md").c_str(), "w")) {
    std::fprintf(f, "# int8 GEMM benchmark (%s%s)\n\n", date.c_str(), quick ? ", quick" : "");
    std::fputs(md.c_str(), f);
    std::fclose(f);
  }
  return md;
}

}  // namespace attnode_bench
