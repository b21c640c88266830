// fp32 GEMM benchmark: attnode sgemm vs OpenBLAS cblas_sgemm vs oneDNN
// dnnl_sgemm on the Transformer shapes of issue 18 (M = 128, 512, 2048; K x N =
// 768 x 768, 768 x 2304, 768 x 3072, 3072 x 768; plus M = 1), in three
// layouts of the weight:
//   xWt     C = A · Wᵀ, W stored [N, K] (PyTorch Linear)
//   xW      C = A · W,  W stored [K, N]
//   packed  C = A · Wᵀ with attnode's W packed once (kernels::pack_b, what
//           cached module weights use); the peers run their sgemm on the same
//           stored W ('N', 'T'), which is all their sgemm APIs offer.
//
// Peers are interleaved within every repetition (ours, openblas, onednn,
// ours, ...) so drift of a shared machine hits all of them alike; each sample
// times enough back-to-back calls to last >= ~2 ms on warm, reused buffers;
// the reported value is the median sample. Every sample also measures the
// process's CPU time: a peer whose CPU time exceeds its wall time by more
// than the thread count allows (threads it should not have) is flagged, and
// its row is left out of the geometric means. At 1 thread a second ratio
// comes from each call's thread CPU time (what a loaded machine distorts
// least: time the thread spent descheduled is not counted).
//
// "% of peak" is against the FMA peak measured at the start of the run
// (fma_peak.h: one core, back-to-back 512-bit FMAs, timed by thread CPU time),
// times the thread count; at 1 thread also from the call's thread CPU time.
//
// Usage: gemm_bench [--quick] [--reps N] [--threads 1,2] [--m 128,512]
//                   [--layouts xWt,xW,packed] [--shapes 768x768,3072x768] [--out DIR] [--tag NAME]
//                   [--no-int8 | --int8-only]  (the int8-weight rows of int8_section.h)
// Writes DIR/gemm-<tag>-<date>.{md,json}; tag defaults to the CPU's
// microarchitecture (info().native.cpu.uarch) or its brand string.

#include <omp.h>
#include <sys/resource.h>
#include <time.h>
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
#include <vector>

#include <cblas.h>
#ifdef HAVE_DNNL
#include <dnnl.h>
#endif

#include "../../native/kernels/gemm/gemm.h"
#include "../../native/runtime/cpu_features.h"
#include "../../native/runtime/thread_pool.h"
#include "bench_util.h"
#include "fma_peak.h"
#include "int8_section.h"

namespace {

namespace rt = attnode::runtime;
namespace kn = attnode::kernels;
using attnode_bench::median;
using attnode_bench::process_cpu_s;
using attnode_bench::split;
using attnode_bench::wall_s;

double thread_cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

std::string loadavg() {
  double l[3] = {0, 0, 0};
  if (getloadavg(l, 3) != 3) return "?";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f %.2f %.2f", l[0], l[1], l[2]);
  return buf;
}

enum class Layout { XWt = 0, XW = 1, Packed = 2 };
const char* layout_name(Layout l) { return l == Layout::XWt ? "xWt" : l == Layout::XW ? "xW" : "packed"; }

struct Shape {
  int64_t m, k, n;
};

struct Buffers {
  std::vector<float> a, w, c;
  kn::PackedBPtr packed;
};

double gflop(const Shape& s) { return 2.0 * s.m * s.n * s.k / 1e9; }

std::string iso_date() {
  char buf[32];
  std::time_t t = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%d", std::localtime(&t));
  return buf;
}

std::string slug(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      o += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!o.empty() && o.back() != '-') {
      o += '-';
    }
  }
  while (!o.empty() && o.back() == '-') o.pop_back();
  return o.empty() ? "cpu" : o;
}

struct Peer {
  const char* name;
  std::function<void(const Shape&, Layout, Buffers&)> call;
};

// One sample: `calls` back-to-back calls; GFLOP/s by wall time and by the
// calling thread's CPU time, and the process's CPU seconds per wall second.
struct Sample {
  double gf_wall, gf_cpu, cpus;
};

Sample sample(const Peer& peer, const Shape& s, Layout l, Buffers& b, int calls) {
  const double p0 = process_cpu_s(), c0 = thread_cpu_s(), w0 = wall_s();
  for (int i = 0; i < calls; ++i) peer.call(s, l, b);
  const double w = wall_s() - w0, c = thread_cpu_s() - c0, p = process_cpu_s() - p0;
  return {gflop(s) * calls / w, gflop(s) * calls / std::max(c, 1e-9), p / w};
}

struct Row {
  Shape s;
  Layout layout;
  int threads;
  std::vector<double> gf, gf_cpu, cpus;  // per peer: medians
  std::string load;
};

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string out_dir = "bench/results", tag;
  int reps = 11;
  std::vector<int> thread_counts = {1, 2};
  std::vector<int64_t> ms = {1, 128, 512, 2048};
  std::vector<Layout> layouts = {Layout::XWt, Layout::XW, Layout::Packed};
  bool ms_given = false;
  // --shapes KxN,...: only these K x N (for iterating on one shape; the geometric means then cover only them).
  std::vector<std::pair<int64_t, int64_t>> only_kns;
  // The int8-weight rows (int8_section.h) run after the fp32 peers; --int8-only skips the peers, --no-int8 the rows.
  bool int8_only = false, with_int8 = true;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "gemm_bench: %s needs a value\n", s.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (s == "--quick") {
      quick = true;
    } else if (s == "--int8-only") {
      int8_only = true;
    } else if (s == "--no-int8") {
      with_int8 = false;
    } else if (s == "--out") {
      out_dir = next();
    } else if (s == "--tag") {
      tag = next();
    } else if (s == "--reps") {
      reps = std::max(1, std::atoi(next().c_str()));
    } else if (s == "--threads") {
      thread_counts.clear();
      for (auto& t : split(next())) thread_counts.push_back(std::max(1, std::atoi(t.c_str())));
    } else if (s == "--m") {
      ms.clear();
      ms_given = true;
      for (auto& t : split(next())) ms.push_back(std::max<int64_t>(1, std::atoll(t.c_str())));
    } else if (s == "--shapes") {
      for (auto& t : split(next())) {
        long kk = 0, nn = 0;
        if (std::sscanf(t.c_str(), "%ldx%ld", &kk, &nn) != 2 || kk < 1 || nn < 1) {
          std::fprintf(stderr, "gemm_bench: --shapes wants KxN items (e.g. 768x3072), got '%s'\n", t.c_str());
          return 2;
        }
        only_kns.emplace_back(kk, nn);
      }
    } else if (s == "--layouts") {
      layouts.clear();
      for (auto& t : split(next())) {
        if (t == "xWt") {
          layouts.push_back(Layout::XWt);
        } else if (t == "xW") {
          layouts.push_back(Layout::XW);
        } else if (t == "packed") {
          layouts.push_back(Layout::Packed);
        } else {
          std::fprintf(stderr, "gemm_bench: unknown layout '%s' (xWt, xW, packed)\n", t.c_str());
          return 2;
        }
      }
    } else {
      std::fprintf(stderr, "gemm_bench: unknown argument '%s'\n", s.c_str());
      return 2;
    }
  }
  if (quick) {
    reps = std::min(reps, 3);
    if (!ms_given) ms = {1, 512};
  }

  auto& pool = rt::ThreadPool::instance();
  const rt::CpuInfo& ci = rt::cpu_info();
  const kn::GemmTuning tu = kn::gemm_tuning();
  if (tag.empty()) tag = ci.uarch.empty() ? slug(ci.brand) : ci.uarch;

  std::vector<std::pair<int64_t, int64_t>> kns = {{768, 768}, {768, 2304}, {768, 3072}, {3072, 768}};
  if (quick) kns = {{768, 768}, {768, 3072}};
  if (!only_kns.empty()) kns = only_kns;

  const char* corename = openblas_get_corename();
  const char* env_core = std::getenv("OPENBLAS_CORETYPE");
  const char* env_l2 = std::getenv("OPENBLAS_L2_SIZE");
  std::string head;
  char line[1024];
  auto hprintf = [&](const char* fmt, auto... args) {
    std::snprintf(line, sizeof line, fmt, args...);
    std::fputs(line, stdout);
    std::fflush(stdout);
    head += line;
  };
  hprintf("# attnode GEMM benchmark, fp32: C[M,N] = A[M,K] · op(W) in layouts xWt (W [N,K]), xW (W [K,N]), packed\n");
  hprintf("# cpu: %s | %s family %d model %d stepping %d | uarch %s | L1d %ld KiB, L2 %ld KiB, L3 %ld MiB\n",
          ci.brand.c_str(), ci.vendor.c_str(), ci.family, ci.model, ci.stepping,
          ci.uarch.empty() ? "-" : ci.uarch.c_str(), (long)(ci.l1d_bytes >> 10), (long)(ci.l2_bytes >> 10),
          (long)(ci.l3_bytes >> 20));
  hprintf("# attnode isa %s | GEMM tuning entry '%s': micro-tile %dx%d, kc %ld, nc %ld (%ld at M <= %d), A %s, B %s\n",
          rt::isa_name(rt::active_isa()), tu.entry.c_str(), tu.mr, tu.nr, (long)tu.kc, (long)tu.nc, (long)tu.nc_stream,
          32 * tu.mr, tu.direct_a ? "read in place (not transposed)" : "packed",
          tu.direct_b ? "read in place at M <= 128 where its stride allows (x·W)" : "packed");
  hprintf("# openblas: %s core=%s | OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s\n", openblas_get_config(), corename,
          env_core ? env_core : "(unset)", env_l2 ? env_l2 : "(unset)");
#ifdef HAVE_DNNL
  const dnnl_version_t* dv = dnnl_version();
  hprintf("# onednn: %d.%d.%d (%s runtime)\n", dv->major, dv->minor, dv->patch,
          (dv->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "other"));
#else
  hprintf("# onednn: not available -- apt-get install libdnnl-dev to compare against dnnl_sgemm\n");
#endif
  const std::string load_start = loadavg();
  const double peak1 = attnode_bench::measure_fma_peak_1core();
  hprintf(
      "# FMA peak (measured at start, 1 core, 512-bit FMA loop, best of 7): %.1f GFLOP/s; %% of peak = GF/s / "
      "(peak x threads)\n",
      peak1);
  hprintf("# load average at start: %s | reps=%d (median), peers interleaved per rep, warm-up first\n\n",
          load_start.c_str(), reps);

  // What the int8 section times with (wall clock, as before).
  auto time_calls = [](const std::function<void()>& fn, int calls) {
    const double t0 = wall_s();
    for (int i = 0; i < calls; ++i) fn();
    return (wall_s() - t0) / calls;
  };
  const int max_threads = *std::max_element(thread_counts.begin(), thread_counts.end());
  if (int8_only) {
    const std::string md =
        attnode_bench::run_int8_section(reps, quick, out_dir, iso_date(), max_threads, peak1, time_calls);
    std::fputs(md.c_str(), stdout);
    std::printf("\nwrote %s/gemm-int8-latest.md\n", out_dir.c_str());
    return 0;
  }

  std::vector<Peer> peers;
  peers.push_back({"attnode", [](const Shape& s, Layout l, Buffers& b) {
                     kn::GemmParams p;
                     p.m = s.m;
                     p.n = s.n;
                     p.k = s.k;
                     p.a = b.a.data();
                     p.lda = s.k;
                     p.b = b.w.data();
                     p.trans_b = l != Layout::XW;
                     p.ldb = p.trans_b ? s.k : s.n;
                     p.c = b.c.data();
                     p.ldc = s.n;
                     p.packed_b = l == Layout::Packed ? b.packed.get() : nullptr;
                     kn::sgemm(p);
                   }});
  peers.push_back({"openblas", [](const Shape& s, Layout l, Buffers& b) {
                     const bool t = l != Layout::XW;
                     cblas_sgemm(CblasRowMajor, CblasNoTrans, t ? CblasTrans : CblasNoTrans, s.m, s.n, s.k, 1.0f,
                                 b.a.data(), s.k, b.w.data(), t ? s.k : s.n, 0.0f, b.c.data(), s.n);
                   }});
#ifdef HAVE_DNNL
  peers.push_back({"onednn", [](const Shape& s, Layout l, Buffers& b) {
                     const bool t = l != Layout::XW;
                     dnnl_sgemm('N', t ? 'T' : 'N', s.m, s.n, s.k, 1.0f, b.a.data(), s.k, b.w.data(), t ? s.k : s.n,
                                0.0f, b.c.data(), s.n);
                   }});
#endif
  const size_t np = peers.size();
  const bool has_dnnl = np > 2;

  std::vector<Row> rows;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1, 1);

  for (int nt : thread_counts) {
    pool.set_num_threads(nt);
    openblas_set_num_threads(nt);
    omp_set_num_threads(nt);
    std::printf("== %d thread(s), load average %s\n", nt, loadavg().c_str());
    for (Layout layout : layouts) {
      for (int64_t m : ms) {
        // M = 1 (a GEMV: no peer packs for it) only in the PyTorch layout.
        if (m == 1 && layout != Layout::XWt) continue;
        for (auto [k, n] : kns) {
          const Shape s{m, k, n};
          Buffers b;
          b.a.resize(s.m * s.k);
          b.w.resize(s.n * s.k);
          b.c.resize(s.m * s.n);
          for (auto& v : b.a) v = dist(rng);
          for (auto& v : b.w) v = dist(rng);
          if (layout == Layout::Packed) b.packed = kn::pack_b(b.w.data(), s.k, true, s.k, s.n);
          // Warm-up (first touch, lazy init, thread spin-up), and size each
          // sample to >= 2 ms (>= 0.5 ms in quick mode).
          std::vector<int> calls(np, 1);
          for (size_t q = 0; q < np; ++q) {
            peers[q].call(s, layout, b);
            const double t0 = wall_s();
            for (int i = 0; i < 3; ++i) peers[q].call(s, layout, b);
            const double t = (wall_s() - t0) / 3;
            calls[q] = std::max(1, static_cast<int>((quick ? 5e-4 : 2e-3) / t));
          }
          std::vector<std::vector<Sample>> samples(np);
          for (int r = 0; r < reps; ++r)
            for (size_t q = 0; q < np; ++q) {
              samples[q].push_back(sample(peers[q], s, layout, b, calls[q]));
              // OpenBLAS's idle workers busy-wait for ~2^28 cycles after a call: the
              // next peer would run with the other core taken. Let them park first.
              if (nt > 1 && peers[q].name == std::string("openblas")) usleep(150000);
            }
          Row row{s, layout, nt, {}, {}, {}, loadavg()};
          for (size_t q = 0; q < np; ++q) {
            std::vector<double> w, c, u;
            for (const Sample& x : samples[q]) {
              w.push_back(x.gf_wall);
              c.push_back(x.gf_cpu);
              u.push_back(x.cpus);
            }
            row.gf.push_back(median(w));
            row.gf_cpu.push_back(median(c));
            row.cpus.push_back(median(u));
          }
          std::printf("  %-6s %4ld x %4ld x %4ld: attnode %.1f GF/s (%.0f%% of peak)", layout_name(layout), (long)m,
                      (long)k, (long)n, row.gf[0], 100.0 * row.gf[0] / (peak1 * nt));
          if (has_dnnl) std::printf(", onednn %.1f, ratio %.3f", row.gf[2], row.gf[0] / row.gf[2]);
          std::printf("\n");
          std::fflush(stdout);
          rows.push_back(row);
        }
      }
    }
  }
  const std::string load_end = loadavg();

  // A peer used more CPUs than its thread count (+ slack for the timer and the
  // pool's wake-ups): its wall time is not a `threads`-thread figure.
  auto over = [](const Row& r, size_t q) { return r.cpus[q] > r.threads + 0.25; };

  // ---- report ----
  std::string md;
  auto emit = [&](const std::string& s) {
    std::fputs(s.c_str(), stdout);
    md += s;
  };
  emit("\n| layout | M | K | N | thr | attnode GF/s | % of peak | % of peak (thread CPU time) | openblas GF/s |" +
       std::string(has_dnnl ? " onednn GF/s | ours/onednn | ours/onednn (thread CPU time) |" : "") +
       " ours/openblas | CPUs used (ours/oblas" + (has_dnnl ? "/onednn" : "") + ") | load |\n");
  emit(std::string("|---|---:|---:|---:|---:|---:|---:|---:|---:|") + (has_dnnl ? "---:|---:|---:|" : "") +
       "---:|---|---|\n");
  for (const Row& r : rows) {
    std::string cpus;
    for (size_t q = 0; q < np; ++q) {
      char b[32];
      std::snprintf(b, sizeof b, "%s%.2f%s", q ? "/" : "", r.cpus[q],
                    over(r, q)                    ? "(!)"
                    : r.cpus[q] < 0.8 * r.threads ? "(d)"
                                                  : "");
      cpus += b;
    }
    std::string dn;
    if (has_dnnl) {
      char b[128];
      if (r.threads == 1) {
        std::snprintf(b, sizeof b, " %.1f | %.3f | %.3f |", r.gf[2], r.gf[0] / r.gf[2], r.gf_cpu[0] / r.gf_cpu[2]);
      } else {
        std::snprintf(b, sizeof b, " %.1f | %.3f | - |", r.gf[2], r.gf[0] / r.gf[2]);
      }
      dn = b;
    }
    char cpu_pk[32] = "-";
    if (r.threads == 1) std::snprintf(cpu_pk, sizeof cpu_pk, "%.1f%%", 100.0 * r.gf_cpu[0] / peak1);
    std::snprintf(line, sizeof line, "| %s | %ld | %ld | %ld | %d | %.1f | %.1f%% | %s | %.1f |%s %.3f | %s | %s |\n",
                  layout_name(r.layout), (long)r.s.m, (long)r.s.k, (long)r.s.n, r.threads, r.gf[0],
                  100.0 * r.gf[0] / (peak1 * r.threads), cpu_pk, r.gf[1], dn.c_str(), r.gf[0] / r.gf[1], cpus.c_str(),
                  r.load.c_str());
    emit(line);
  }
  emit("\n");

  // Geometric means over the M > 1 target shapes, per layout and thread count
  // (rows where a peer used more CPUs than its thread count are left out).
  std::string summary_json;
  emit(
      "Geometric means over M > 1 (issue 18 targets: ours/onednn >= 1.0; >= 90% of the measured peak at M >= "
      "512):\n\n");
  for (int nt : thread_counts) {
    for (Layout layout : layouts) {
      double l_dn = 0, l_ob = 0, l_cpu = 0, l_pk = 0, min_pk_512 = 1e9, l_pk_cpu = 0, min_pk_cpu = 1e9;
      int cnt = 0, cnt_pk = 0, left_out = 0;
      for (const Row& r : rows) {
        if (r.threads != nt || r.layout != layout || r.s.m == 1) continue;
        bool bad = false;
        for (size_t q = 0; q < np; ++q) bad = bad || over(r, q);
        if (bad) {
          ++left_out;
          continue;
        }
        if (has_dnnl) l_dn += std::log(r.gf[0] / r.gf[2]);
        if (has_dnnl) l_cpu += std::log(r.gf_cpu[0] / r.gf_cpu[2]);
        l_ob += std::log(r.gf[0] / r.gf[1]);
        ++cnt;
        if (r.s.m >= 512) {
          const double f = r.gf[0] / (peak1 * nt);
          l_pk += std::log(f);
          min_pk_512 = std::min(min_pk_512, f);
          const double fc = r.gf_cpu[0] / peak1;
          l_pk_cpu += std::log(fc);
          min_pk_cpu = std::min(min_pk_cpu, fc);
          ++cnt_pk;
        }
      }
      if (cnt == 0) continue;
      std::string dn;
      if (has_dnnl) {
        dn = "ours/onednn " + std::to_string(std::exp(l_dn / cnt)).substr(0, 5);
        if (nt == 1) dn += " (by thread CPU time " + std::to_string(std::exp(l_cpu / cnt)).substr(0, 5) + ")";
        dn += ", ";
      }
      std::string pk = cnt_pk
                           ? ", M >= 512: " + std::to_string(100.0 * std::exp(l_pk / cnt_pk)).substr(0, 4) +
                                 "% of peak (geomean), lowest " + std::to_string(100.0 * min_pk_512).substr(0, 4) + "%"
                           : "";
      if (cnt_pk && nt == 1)
        pk += " (by thread CPU time " + std::to_string(100.0 * std::exp(l_pk_cpu / cnt_pk)).substr(0, 4) +
              "%, lowest " + std::to_string(100.0 * min_pk_cpu).substr(0, 4) + "%)";
      std::snprintf(
          line, sizeof line, "- %d thread(s), %s: %sours/openblas %.3f%s (%d shapes%s)\n", nt, layout_name(layout),
          dn.c_str(), std::exp(l_ob / cnt), pk.c_str(), cnt,
          left_out ? (", " + std::to_string(left_out) + " left out: a peer over its thread count").c_str() : "");
      emit(line);
      char js[512];
      std::snprintf(js, sizeof js,
                    "%s    {\"threads\": %d, \"layout\": \"%s\", \"shapes\": %d, \"left_out\": %d, "
                    "\"ours_over_onednn\": %.4f, \"ours_over_onednn_thread_cpu\": %.4f, \"ours_over_openblas\": %.4f, "
                    "\"peak_fraction_m512_geomean\": %.4f, \"peak_fraction_m512_min\": %.4f, "
                    "\"peak_fraction_m512_thread_cpu_geomean\": %.4f, \"peak_fraction_m512_thread_cpu_min\": %.4f}",
                    summary_json.empty() ? "" : ",\n", nt, layout_name(layout), cnt, left_out,
                    has_dnnl ? std::exp(l_dn / cnt) : 0.0, has_dnnl && nt == 1 ? std::exp(l_cpu / cnt) : 0.0,
                    std::exp(l_ob / cnt), cnt_pk ? std::exp(l_pk / cnt_pk) : 0.0, cnt_pk ? min_pk_512 : 0.0,
                    cnt_pk && nt == 1 ? std::exp(l_pk_cpu / cnt_pk) : 0.0, cnt_pk && nt == 1 ? min_pk_cpu : 0.0);
      summary_json += js;
    }
  }
  emit(
      "\nCPUs used: the process's CPU seconds per wall second while that peer ran (median sample). (!) more than "
      "its thread count: left out of the means. (d) under 0.8 x its thread count: descheduled by other load, so its "
      "wall-time figure is low; at 1 thread the thread-CPU-time ratio is the one load does not distort.\n");
  emit("\nload average at end: " + load_end + "\n");

  // ---- files ----
  const std::string date = iso_date();
  std::string json = "{\n  \"date\": \"" + date + "\",\n  \"cpu\": \"" + ci.brand + "\",\n";
  json += "  \"vendor\": \"" + ci.vendor + "\",\n  \"family\": " + std::to_string(ci.family) +
          ",\n  \"model\": " + std::to_string(ci.model) + ",\n  \"uarch\": \"" + ci.uarch + "\",\n";
  json += "  \"isa\": \"" + std::string(rt::isa_name(rt::active_isa())) + "\",\n";
  json += "  \"gemm_tuning\": {\"entry\": \"" + tu.entry + "\", \"mr\": " + std::to_string(tu.mr) +
          ", \"nr\": " + std::to_string(tu.nr) + ", \"kc\": " + std::to_string(tu.kc) +
          ", \"nc\": " + std::to_string(tu.nc) + ", \"direct_a\": " + (tu.direct_a ? "true" : "false") +
          ", \"direct_b\": " + (tu.direct_b ? "true" : "false") + "},\n";
  json += "  \"openblas_config\": \"" + std::string(openblas_get_config()) + "\",\n";
  json += "  \"onednn\": " + std::string(has_dnnl ? "true" : "false") + ",\n";
  json += "  \"fma_peak_gflops_1core_measured\": " + std::to_string(peak1) + ",\n";
  json += "  \"load_start\": \"" + load_start + "\",\n  \"load_end\": \"" + load_end + "\",\n";
  json += "  \"quick\": " + std::string(quick ? "true" : "false") + ",\n  \"reps\": " + std::to_string(reps) +
          ",\n  \"summary\": [\n" + summary_json + "\n  ],\n  \"results\": [\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::snprintf(line, sizeof line,
                  "    {\"layout\": \"%s\", \"m\": %ld, \"k\": %ld, \"n\": %ld, \"threads\": %d, \"attnode_gflops\": "
                  "%.2f, \"openblas_gflops\": %.2f%s, \"attnode_thread_cpu_gflops\": %.2f%s, \"cpus_used\": [%.2f, "
                  "%.2f%s], \"load\": \"%s\"}%s\n",
                  layout_name(r.layout), (long)r.s.m, (long)r.s.k, (long)r.s.n, r.threads, r.gf[0], r.gf[1],
                  has_dnnl ? (", \"onednn_gflops\": " + std::to_string(r.gf[2])).c_str() : "", r.gf_cpu[0],
                  has_dnnl ? (", \"onednn_thread_cpu_gflops\": " + std::to_string(r.gf_cpu[2])).c_str() : "", r.cpus[0],
                  r.cpus[1], has_dnnl ? (", " + std::to_string(r.cpus[2])).c_str() : "", r.load.c_str(),
                  i + 1 < rows.size() ? "," : "");
    json += line;
  }
  json += "  ]\n}\n";
  const std::string base = out_dir + "/gemm-" + tag + "-" + date + (quick ? "-quick" : "");
  if (FILE* f = std::fopen((base + ".json").c_str(), "w")) {
    std::fputs(json.c_str(), f);
    std::fclose(f);
    std::printf("\nwrote %s.json\n", base.c_str());
  }
  if (FILE* f = std::fopen((base + ".md").c_str(), "w")) {
    std::fprintf(f, "# GEMM benchmark (%s%s): %s\n\n", date.c_str(), quick ? ", quick" : "", ci.brand.c_str());
    std::fputs("```\n", f);
    std::fputs(head.c_str(), f);
    std::fputs("```\n", f);
    std::fputs(md.c_str(), f);
    std::fclose(f);
    std::printf("wrote %s.md\n", base.c_str());
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
