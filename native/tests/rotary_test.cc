// RoPE kernel (kernels::rope) against a scalar reference written from the
// PyTorch formula on every ISA path the machine can run: the angle
// float32(position) * inv_freq in float32, cos/sin in double rounded to
// float32, each product rounded before the sum. Every path must match it bit
// for bit (this file is compiled for baseline x86-64, so the reference has no
// FMA contraction either). Covers both pair layouts, partial rotary dims,
// strided (packed QKV) inputs and outputs, in place, per-batch and shared
// positions, 1 vs 2 threads, and a negative position (reported, nothing
// written). Exit code 1 on any failure. Built and run by run_rotary_test.sh.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../kernels/rotary/rotary.h"
#include "../runtime/cpu_features.h"
#include "../runtime/thread_pool.h"
#include "check.h"

namespace k = attnode::kernels;
namespace rt = attnode::runtime;

namespace {

std::mt19937_64 g_rng(777);

struct Case {
  int64_t batch, seq, heads, dim, rotary_dim;
  bool interleaved, per_batch_positions, packed, in_place;
};

// The element offset of (b, l, h) in a [batch, seq, heads, dim] layout whose
// rows sit inside a wider packed row of `row` features starting at `col`.
struct Layout {
  int64_t s[3];
  int64_t col;
  int64_t size;
};

Layout layout(const Case& c, bool packed) {
  Layout L;
  const int64_t row = packed ? 3 * c.heads * c.dim + 5 : c.heads * c.dim;  // a QKV projection row, plus a gap
  L.col = packed ? c.heads * c.dim + 1 : 0;                                // the "k" part, misaligned by one
  L.s[2] = c.dim;
  L.s[1] = row;
  L.s[0] = c.seq * row;
  L.size = c.batch * c.seq * row;
  return L;
}

void reference(const Case& c, const std::vector<float>& x, const Layout& lx, std::vector<float>& y, const Layout& ly,
               const std::vector<int32_t>& pos, int64_t pbs, const std::vector<float>& inv) {
  const int64_t half = c.rotary_dim / 2;
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t l = 0; l < c.seq; ++l)
      for (int64_t h = 0; h < c.heads; ++h) {
        const float* xr = x.data() + lx.col + b * lx.s[0] + l * lx.s[1] + h * lx.s[2];
        float* yr = y.data() + ly.col + b * ly.s[0] + l * ly.s[1] + h * ly.s[2];
        const float p = static_cast<float>(pos[b * pbs + l]);
        float tmp[512];
        for (int64_t i = 0; i < half; ++i) {
          const float a = p * inv[i];
          const float cs = static_cast<float>(std::cos(static_cast<double>(a)));
          const float sn = static_cast<float>(std::sin(static_cast<double>(a)));
          const int64_t i0 = c.interleaved ? 2 * i : i, i1 = c.interleaved ? 2 * i + 1 : i + half;
          const float x0 = xr[i0], x1 = xr[i1];
          const float p0 = x0 * cs, p1 = x1 * sn, p2 = x1 * cs, p3 = x0 * sn;
          tmp[i0] = p0 - p1;
          tmp[i1] = p2 + p3;
        }
        for (int64_t j = c.rotary_dim; j < c.dim; ++j) tmp[j] = xr[j];
        std::memcpy(yr, tmp, c.dim * sizeof(float));
      }
}

std::vector<float> run_case(const Case& c, const std::string& isa, int threads) {
  rt::ThreadPool::instance().set_num_threads(threads);
  const Layout lx = layout(c, c.packed);
  const Layout ly = c.in_place ? lx : layout(c, false);
  std::vector<float> x(lx.size);
  std::mt19937_64 local(c.batch * 1000003 + c.seq * 1009 + c.dim * 7 + c.rotary_dim + c.interleaved);
  for (auto& v : x) v = std::normal_distribution<float>(0.0f, 2.0f)(local);
  const int64_t pbs = c.per_batch_positions ? c.seq : 0;
  std::vector<int32_t> pos(c.per_batch_positions ? c.batch * c.seq : c.seq);
  for (size_t i = 0; i < pos.size(); ++i)
    pos[i] = static_cast<int32_t>((i * 37 + 3) % 5000 + (i % 3 == 0 ? 100000 : 0));
  std::vector<float> inv(c.rotary_dim / 2);
  for (size_t i = 0; i < inv.size(); ++i) {
    inv[i] =
        static_cast<float>(1.0 / std::pow(10000.0, 2.0 * static_cast<double>(i) / static_cast<double>(c.rotary_dim)));
  }
  std::vector<float> want(c.in_place ? x : std::vector<float>(ly.size, -7.0f));
  reference(c, x, lx, want, ly, pos, pbs, inv);

  std::vector<float> y = c.in_place ? x : std::vector<float>(ly.size, -7.0f);
  k::RopeParams p;
  p.x = (c.in_place ? y.data() : x.data()) + lx.col;
  p.y = y.data() + ly.col;
  p.batch = c.batch;
  p.seq = c.seq;
  p.heads = c.heads;
  p.dim = c.dim;
  p.rotary_dim = c.rotary_dim;
  for (int d = 0; d < 3; ++d) {
    p.x_strides[d] = lx.s[d];
    p.y_strides[d] = ly.s[d];
  }
  p.positions = pos.data();
  p.positions_batch_stride = pbs;
  p.inv_freq = inv.data();
  p.interleaved = c.interleaved;
  CHECK(k::rope(p) == -1, "rope reported a bad position");
  size_t bad = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    if (std::memcmp(&y[i], &want[i], sizeof(float)) != 0) {
      if (bad++ == 0) {
        std::printf("  first mismatch at %zu: got %.9g want %.9g\n", i, y[i], want[i]);
      }
    }
  }
  CHECK(bad == 0,
        "%s: %zu elements differ from the reference (batch %lld seq %lld heads %lld dim %lld rotary %lld "
        "interleaved %d perBatch %d packed %d inPlace %d threads %d)",
        isa.c_str(), bad, (long long)c.batch, (long long)c.seq, (long long)c.heads, (long long)c.dim,
        (long long)c.rotary_dim, c.interleaved, c.per_batch_positions, c.packed, c.in_place, threads);
  return y;
}

void test_rope(const std::string& isa) {
  const int64_t dims[][2] = {{2, 2},   {8, 8},     {16, 16},  {30, 30}, {64, 64},
                             {64, 32}, {128, 128}, {130, 98}, {80, 20}, {6, 0}};
  int n = 0;
  for (auto& d : dims) {
    for (int il = 0; il < 2; ++il) {
      for (int variant = 0; variant < 4; ++variant) {
        Case c{1 + variant % 3,
               variant == 3 ? 67 : 1 + 2 * variant,
               1 + (variant + il) % 4,
               d[0],
               d[1],
               il == 1,
               variant % 2 == 1,
               variant >= 2,
               variant == 1 || variant == 3};
        run_case(c, isa, 2);
        ++n;
      }
    }
  }
  // Large enough to split over the pool: 1 and 2 threads agree bit for bit (both also match the reference).
  Case big{2, 300, 8, 128, 128, false, true, true, false};
  auto one = run_case(big, isa, 1);
  auto two = run_case(big, isa, 2);
  CHECK(one == two, "%s: 2 threads differ from 1", isa.c_str());

  // A negative position: its index is returned and nothing is written.
  std::vector<float> x(2 * 3 * 4, 1.0f), y(x.size(), -1.0f);
  std::vector<int32_t> pos = {0, 1, 2, 3, -5, 4};
  std::vector<float> inv = {1.0f, 0.5f};
  k::RopeParams p;
  p.x = x.data();
  p.y = y.data();
  p.batch = 2;
  p.seq = 3;
  p.heads = 1;
  p.dim = 4;
  p.rotary_dim = 4;
  p.x_strides[0] = 12;
  p.x_strides[1] = 4;
  p.x_strides[2] = 4;
  std::memcpy(p.y_strides, p.x_strides, sizeof(p.x_strides));
  p.positions = pos.data();
  p.positions_batch_stride = 3;
  p.inv_freq = inv.data();
  CHECK(k::rope(p) == 4, "negative position not reported at index 4");
  bool untouched = true;
  for (float v : y) untouched = untouched && v == -1.0f;
  CHECK(untouched, "rope wrote with a negative position");
  std::printf("%-9s %d cases\n", isa.c_str(), n + 2);
}

}  // namespace

int main() {
  for_each_isa([](const std::string& name, rt::Isa) { test_rope(name); });
  return finish();
}
