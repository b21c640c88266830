#include "runtime/huge_pages.h"

#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

namespace attnode::runtime {
namespace {

constexpr std::size_t kHuge = std::size_t{2} << 20;
constexpr std::size_t kSlabBytes = std::size_t{32} << 20;
constexpr std::size_t kAlign = 64;
constexpr std::uint64_t kMagic = 0x6174746e68756765ull;  // "attnhuge"

std::size_t round_up(std::size_t a, std::size_t b) { return (a + b - 1) / b * b; }

struct Slab {
  char* base;
  std::size_t size;
  std::size_t used = 0;  // bump offset
  std::size_t live = 0;  // pieces not yet freed
};

// Sits in the kAlign bytes before every piece (pooled or not), so free_streamed
// finds the slab without a search.
struct alignas(kAlign) Header {
  Slab* slab;  // null: the piece came from the C allocator (header at its start)
  std::size_t bytes;
  std::uint64_t magic;
};
static_assert(sizeof(Header) == kAlign, "the header is one alignment unit");

bool env_default() {
  const char* e = std::getenv("ATTNODE_HUGE_PAGES");
  return !(e != nullptr && std::strcmp(e, "0") == 0);
}

struct Pool {
  std::mutex mu;
  Slab* current = nullptr;
  bool huge = env_default();
  StreamedMemoryStats stats;

  Slab* map_slab(std::size_t need) {
    const std::size_t size = need > kSlabBytes ? round_up(need, kHuge) : kSlabBytes;
    // Over-map by one huge page and trim both ends to a 2 MiB-aligned range.
    void* raw = mmap(nullptr, size + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    char* const r = static_cast<char*>(raw);
    char* const base = reinterpret_cast<char*>(round_up(reinterpret_cast<std::uintptr_t>(r), kHuge));
    if (base > r) munmap(r, static_cast<std::size_t>(base - r));
    char* const end = base + size;
    if (r + size + kHuge > end) munmap(end, static_cast<std::size_t>(r + size + kHuge - end));
#if defined(MADV_HUGEPAGE) && defined(MADV_NOHUGEPAGE)
    madvise(base, size, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
#endif
    Slab* s = new (std::nothrow) Slab{base, size};
    if (s == nullptr) {
      munmap(base, size);
      return nullptr;
    }
    ++stats.slabs;
    stats.mapped_bytes += size;
    return s;
  }

  void unmap_slab(Slab* s) {
    munmap(s->base, s->size);
    --stats.slabs;
    stats.mapped_bytes -= s->size;
    delete s;
  }

  // Makes `s` no longer current, unmapping it if nothing lives in it.
  void retire(Slab* s) {
    if (s != nullptr && s->live == 0) unmap_slab(s);
  }

  void* alloc(std::size_t bytes) {
    const std::size_t need = round_up(sizeof(Header) + bytes, kAlign);
    std::lock_guard<std::mutex> lk(mu);
    Slab* s = current;
    if (s == nullptr || s->size - s->used < need) {
      Slab* fresh = map_slab(need);
      if (fresh == nullptr) return nullptr;
      // Keep bumping in whichever slab has more room left after this piece.
      if (s == nullptr || fresh->size - need > s->size - s->used) {
        current = fresh;
        retire(s);
      }
      s = fresh;
    }
    Header* h = reinterpret_cast<Header*>(s->base + s->used);
    s->used += need;
    ++s->live;
    h->slab = s;
    h->bytes = bytes;
    h->magic = kMagic;
    stats.live_bytes += bytes;
    ++stats.live_pieces;
    return h + 1;
  }

  void free(Header* h) {
    std::lock_guard<std::mutex> lk(mu);
    Slab* s = h->slab;
    h->magic = 0;
    stats.live_bytes -= h->bytes;
    --stats.live_pieces;
    if (--s->live > 0) return;
    if (s == current) {
      s->used = 0;  // reuse the mapping (its pages stay backed) for the next pieces
    } else {
      unmap_slab(s);
    }
  }
};

Pool& pool() {
  // Leaked on purpose: pieces may be freed during static destruction (weights held by globals).
  static Pool* p = new Pool();
  return *p;
}

}  // namespace

void* alloc_streamed(std::size_t bytes) {
  if (bytes == 0) bytes = 1;
  void* p = nullptr;
  if (bytes >= kMinPooledBytes) {
    p = pool().alloc(bytes);
  } else {
    void* raw = std::aligned_alloc(kAlign, round_up(sizeof(Header) + bytes, kAlign));
    if (raw != nullptr) {
      Header* h = static_cast<Header*>(raw);
      h->slab = nullptr;
      h->bytes = bytes;
      h->magic = kMagic;
      p = h + 1;
    }
  }
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void free_streamed(void* p) {
  if (p == nullptr) return;
  Header* h = static_cast<Header*>(p) - 1;
  if (h->magic != kMagic) std::abort();  // not ours, or freed twice
  if (h->slab == nullptr) {
    h->magic = 0;
    std::free(h);
    return;
  }
  pool().free(h);
}

bool set_huge_pages(bool on) {
  Pool& p = pool();
  std::lock_guard<std::mutex> lk(p.mu);
  const bool was = p.huge;
  if (was != on) {
    // Later pieces must land in slabs advised the new way.
    Slab* s = p.current;
    p.current = nullptr;
    p.retire(s);
    p.huge = on;
  }
  return was;
}

bool huge_pages_enabled() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lk(p.mu);
  return p.huge;
}

StreamedMemoryStats streamed_memory_stats() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lk(p.mu);
  return p.stats;
}

const char* transparent_huge_pages_mode() {
  static const char* mode = [] {
    const char* m = "unknown";
    FILE* f = std::fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (f == nullptr) return m;
    char buf[128] = {};
    if (std::fgets(buf, sizeof buf, f) != nullptr) {
      if (std::strstr(buf, "[always]")) m = "always";
      if (std::strstr(buf, "[madvise]")) m = "madvise";
      if (std::strstr(buf, "[never]")) m = "never";
    }
    std::fclose(f);
    return m;
  }();
  return mode;
}

}  // namespace attnode::runtime
