// fp32 GEMM benchmark: attnode sgemm vs OpenBLAS cblas_sgemm vs oneDNN
// dnnl_sgemm on PyTorch-Linear shapes (C = A · Wᵀ, W stored [N, K]).
//
// Peers are interleaved within every repetition (ours, openblas, onednn,
// ours, ...) so drift of a shared machine hits all of them alike; each sample
// times enough back-to-back calls to last >= ~2 ms on warm, reused buffers;
// the reported value is the median sample.

#include <immintrin.h>
#include <omp.h>
#include <sys/utsname.h>

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <cblas.h>
#ifdef HAVE_DNNL
#include <dnnl.h>
#endif

#include "../../native/kernels/gemm/gemm.h"
#include "../../native/runtime/cpu_features.h"
#include "../../native/runtime/thread_pool.h"
#include "fma_peak.h"
#include "int8_section.h"

namespace {

using Clock = std::chrono::steady_clock;

double now_s() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

struct Shape {
  int64_t m, k, n;
};

struct Buffers {
  std::vector<float> a, w, c;
};

// The "% of peak" column uses the nominal Zen 5 figures (225 GFLOP/s per core,
// 430 on 2 cores): on this shared VM the measured FMA loop swings with the
// neighbours' load (it is printed, not used as the denominator).
double nominal_peak(int threads) { return threads <= 1 ? 225.0 : 430.0; }

double gflop(const Shape& s) { return 2.0 * s.m * s.n * s.k / 1e9; }

// Runs fn `calls` times, returns seconds per call.
double time_calls(const std::function<void()>& fn, int calls) {
  double t0 = now_s();
  for (int i = 0; i < calls; ++i) fn();
  return (now_s() - t0) / calls;
}

struct Peer {
  const char* name;
  std::function<void(const Shape&, Buffers&)> call;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string iso_date() {
  char buf[32];
  std::time_t t = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%d", std::localtime(&t));
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  // The int8-weight rows (int8_section.h) run after the fp32 peers; --int8-only skips the peers, --no-int8 the rows.
  bool int8_only = false, with_int8 = true;
  std::string out_dir = "bench/results";
  int reps = 9;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "--quick") quick = true;
    if (s == "--out" && i + 1 < argc) out_dir = argv[++i];
    if (s == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    if (s == "--int8-only") int8_only = true;
    if (s == "--no-int8") with_int8 = false;
  }
  if (quick) reps = std::min(reps, 3);

  namespace rt = attnode::runtime;
  auto& pool = rt::ThreadPool::instance();
  const int max_threads = std::max(1, std::min(2, pool.num_threads() > 1 ? pool.num_threads() : 2));

  std::vector<Shape> shapes;
  const std::vector<int64_t> ms = quick ? std::vector<int64_t>{1, 512} : std::vector<int64_t>{1, 128, 512, 2048};
  const std::vector<std::pair<int64_t, int64_t>> kns =
      quick ? std::vector<std::pair<int64_t, int64_t>>{{768, 768}, {768, 3072}}
            : std::vector<std::pair<int64_t, int64_t>>{{768, 768}, {768, 2304}, {768, 3072}, {3072, 768}};
  for (int64_t m : ms)
    for (auto [k, n] : kns) shapes.push_back({m, k, n});

  const char* corename = openblas_get_corename();
  const char* env_core = std::getenv("OPENBLAS_CORETYPE");
  const char* env_l2 = std::getenv("OPENBLAS_L2_SIZE");
  std::printf("# attnode GEMM benchmark  C[M,N] = A[M,K] · W[N,K]^T (PyTorch Linear), fp32\n");
  std::printf("# cpu: %s | attnode isa: %s | L1d %ld KiB, L2 %ld KiB\n", rt::cpu_info().brand.c_str(),
              rt::isa_name(rt::active_isa()), (long)(rt::cpu_info().l1d_bytes >> 10),
              (long)(rt::cpu_info().l2_bytes >> 10));
  std::printf("# openblas: %s core=%s | OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s\n", openblas_get_config(), corename,
              env_core ? env_core : "(unset)", env_l2 ? env_l2 : "(unset)");
#ifdef HAVE_DNNL
  const dnnl_version_t* dv = dnnl_version();
  std::printf("# onednn: %d.%d.%d (%s runtime)\n", dv->major, dv->minor, dv->patch,
              (dv->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "other"));
#else
  std::printf("# onednn: not available -- apt-get install libdnnl-dev to compare against dnnl_sgemm\n");
#endif
  const double peak1 = attnode_bench::measure_fma_peak_1core();
  std::printf(
      "# FMA peak (measured, 1 core, 512-bit FMA loop): %.1f GFLOP/s; assumed nominal 225 (1 core) / 430 "
      "(2 cores)\n",
      peak1);
  std::printf("# reps=%d (median), peers interleaved per rep, warm-up first\n\n", reps);

  if (int8_only) {
    const std::string md =
        attnode_bench::run_int8_section(reps, quick, out_dir, iso_date(), max_threads, peak1, time_calls);
    std::fputs(md.c_str(), stdout);
    std::printf("\nwrote %s/gemm-int8-latest.md\n", out_dir.c_str());
    return 0;
  }

  std::vector<Peer> peers;
  peers.push_back({"attnode", [](const Shape& s, Buffers& b) {
                     attnode::kernels::GemmParams p;
                     p.m = s.m;
                     p.n = s.n;
                     p.k = s.k;
                     p.a = b.a.data();
                     p.lda = s.k;
                     p.b = b.w.data();
                     p.ldb = s.k;
                     p.trans_b = true;
                     p.c = b.c.data();
                     p.ldc = s.n;
                     attnode::kernels::sgemm(p);
                   }});
  peers.push_back({"openblas", [](const Shape& s, Buffers& b) {
                     cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.m, s.n, s.k, 1.0f, b.a.data(), s.k,
                                 b.w.data(), s.k, 0.0f, b.c.data(), s.n);
                   }});
#ifdef HAVE_DNNL
  peers.push_back({"onednn", [](const Shape& s, Buffers& b) {
                     dnnl_sgemm('N', 'T', s.m, s.n, s.k, 1.0f, b.a.data(), s.k, b.w.data(), s.k, 0.0f, b.c.data(), s.n);
                   }});
#endif
  const size_t np = peers.size();

  struct Row {
    Shape s;
    int threads;
    std::vector<double> gf;
  };
  std::vector<Row> rows;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1, 1);

  for (int nt = 1; nt <= max_threads; ++nt) {
    pool.set_num_threads(nt);
    openblas_set_num_threads(nt);
    omp_set_num_threads(nt);
    for (const Shape& s : shapes) {
      Buffers b;
      b.a.resize(s.m * s.k);
      b.w.resize(s.n * s.k);
      b.c.resize(s.m * s.n);
      for (auto& v : b.a) v = dist(rng);
      for (auto& v : b.w) v = dist(rng);
      // Warm-up (first touch, lazy init, thread spin-up), and size each sample
      // to >= 2 ms (>= 0.5 ms in quick mode).
      std::vector<int> calls(np, 1);
      for (size_t q = 0; q < np; ++q) {
        peers[q].call(s, b);
        double t = time_calls([&] { peers[q].call(s, b); }, 3);
        calls[q] = std::max(1, static_cast<int>((quick ? 5e-4 : 2e-3) / t));
      }
      std::vector<std::vector<double>> samples(np);
      for (int r = 0; r < reps; ++r)
        for (size_t q = 0; q < np; ++q) {
          samples[q].push_back(gflop(s) / time_calls([&] { peers[q].call(s, b); }, calls[q]));
          // OpenBLAS's idle workers busy-wait for ~2^28 cycles after a call: the
          // next peer would run with the other core taken. Let them park first.
          if (nt > 1 && peers[q].name == std::string("openblas")) usleep(150000);
        }
      Row row{s, nt, {}};
      for (size_t q = 0; q < np; ++q) row.gf.push_back(median(samples[q]));
      rows.push_back(row);
    }
  }

  // ---- report ----
  std::string md;
  char line[512];
  auto emit = [&](const char* s) {
    std::fputs(s, stdout);
    md += s;
  };
  std::snprintf(line, sizeof line, "| M | K | N | thr | attnode GF/s | openblas GF/s |%s ours/oblas |%s %% of peak |\n",
                np > 2 ? " onednn GF/s |" : "", np > 2 ? " ours/onednn |" : "");
  emit(line);
  emit(np > 2 ? "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
              : "|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Row& r : rows) {
    const double peak = nominal_peak(r.threads);
    if (np > 2) {
      std::snprintf(line, sizeof line, "| %ld | %ld | %ld | %d | %.1f | %.1f | %.1f | %.3f | %.3f | %.1f%% |\n",
                    (long)r.s.m, (long)r.s.k, (long)r.s.n, r.threads, r.gf[0], r.gf[1], r.gf[2], r.gf[0] / r.gf[1],
                    r.gf[0] / r.gf[2], 100.0 * r.gf[0] / peak);
    } else {
      std::snprintf(line, sizeof line, "| %ld | %ld | %ld | %d | %.1f | %.1f | %.3f | %.1f%% |\n", (long)r.s.m,
                    (long)r.s.k, (long)r.s.n, r.threads, r.gf[0], r.gf[1], r.gf[0] / r.gf[1], 100.0 * r.gf[0] / peak);
    }
    emit(line);
  }
  emit("\n");
  for (int nt = 1; nt <= max_threads; ++nt) {
    for (int which = 0; which < 2; ++which) {  // all shapes, then M > 1 only
      double lr1 = 0, lr2 = 0, lpk = 0;
      int cnt = 0;
      for (const Row& r : rows) {
        if (r.threads != nt || (which == 1 && r.s.m == 1)) continue;
        lr1 += std::log(r.gf[0] / r.gf[1]);
        if (np > 2) lr2 += std::log(r.gf[0] / r.gf[2]);
        lpk += std::log(r.gf[0] / nominal_peak(nt));
        ++cnt;
      }
      if (!cnt) continue;
      std::snprintf(
          line, sizeof line, "geomean %d thread(s), %s: ours/openblas %.3f%s, fraction of nominal FMA peak %.1f%%\n",
          nt, which ? "M>1 shapes" : "all shapes", std::exp(lr1 / cnt),
          np > 2 ? (std::string(", ours/onednn ") + std::to_string(std::exp(lr2 / cnt)).substr(0, 5)).c_str() : "",
          100.0 * std::exp(lpk / cnt));
      emit(line);
    }
  }

  // ---- files ----
  const std::string date = iso_date();
  std::string json = "{\n  \"date\": \"" + date + "\",\n  \"cpu\": \"" + rt::cpu_info().brand + "\",\n";
  json += "  \"isa\": \"" + std::string(rt::isa_name(rt::active_isa())) + "\",\n";
  json += "  \"openblas_config\": \"" + std::string(openblas_get_config()) + "\",\n";
  json += "  \"openblas_coretype_env\": \"" + std::string(env_core ? env_core : "unset") + "\",\n";
  json += "  \"openblas_l2_size_env\": \"" + std::string(env_l2 ? env_l2 : "unset") + "\",\n";
  json += "  \"onednn\": " + std::string(np > 2 ? "true" : "false") + ",\n";
  json += "  \"fma_peak_gflops_1core_measured\": " + std::to_string(peak1) + ",\n";
  json += "  \"quick\": " + std::string(quick ? "true" : "false") + ",\n  \"reps\": " + std::to_string(reps) +
          ",\n  \"results\": [\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::snprintf(line, sizeof line,
                  "    {\"m\": %ld, \"k\": %ld, \"n\": %ld, \"threads\": %d, \"attnode_gflops\": %.2f, "
                  "\"openblas_gflops\": %.2f%s}%s\n",
                  (long)r.s.m, (long)r.s.k, (long)r.s.n, r.threads, r.gf[0], r.gf[1],
                  np > 2 ? (", \"onednn_gflops\": " + std::to_string(r.gf[2])).c_str() : "",
                  i + 1 < rows.size() ? "," : "");
    json += line;
  }
  json += "  ]\n}\n";
  const std::string jpath = out_dir + "/gemm-" + date + (quick ? "-quick" : "") + ".json";
  if (FILE* f = std::fopen(jpath.c_str(), "w")) {
    std::fputs(json.c_str(), f);
    std::fclose(f);
    std::printf("\nwrote %s\n", jpath.c_str());
  }
  const std::string mpath = out_dir + "/gemm-latest.md";
  if (FILE* f = std::fopen(mpath.c_str(), "w")) {
    std::fprintf(f,
                 "# GEMM benchmark (%s%s)\n\nCPU: %s. C = A·Wᵀ fp32, median of %d interleaved reps. "
                 "OpenBLAS %s (core %s), OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s. %% of peak vs nominal 225 (1 thr) / "
                 "430 (2 thr) GFLOP/s; measured 1-core FMA loop at start: %.1f GFLOP/s (machine load).\n\n",
                 date.c_str(), quick ? ", quick" : "", rt::cpu_info().brand.c_str(), reps, openblas_get_config(),
                 corename, env_core ? env_core : "unset", env_l2 ? env_l2 : "unset", peak1);
    std::fputs(md.c_str(), f);
    std::fclose(f);
    std::printf("wrote %s\n", mpath.c_str());
  }
  if (with_int8) {
    std::printf("\n");
    const std::string int8_md =
        attnode_bench::run_int8_section(reps, quick, out_dir, date, max_threads, peak1, time_calls);
    std::fputs(int8_md.c_str(), stdout);
    std::printf("\nwrote %s/gemm-int8-latest.md\n", out_dir.c_str());
  }
  return 0;
}
