// Memory for large, long-lived buffers that kernels stream whole on every
// use: the packed weights a batch-1 decode step reads once per token.
//
// Why: the fp32 weights of a SmolLM-135M decode step are 538 MB read once per
// token; on 4 KiB pages that is a TLB miss (a page walk, two-dimensional under
// a hypervisor) every 4 KiB of the stream. On 2 MiB transparent huge pages the
// same read ran at 26 GB/s against 20 GB/s on one Zen 4 core
// (bench/gemm/stream.sh). Linux gives huge pages to anonymous memory that is
// 2 MiB aligned and, when /sys/kernel/mm/transparent_hugepage/enabled is
// "madvise" (the common distribution default), advised with MADV_HUGEPAGE.
//
// So buffers come from slabs: 2 MiB-aligned anonymous mappings of at least
// 32 MiB, advised as huge pages, carved by a bump pointer (64-byte aligned
// pieces, so small weights share huge pages instead of each rounding up to
// 2 MiB). A slab is unmapped when its last piece is freed. Pages are only
// backed once touched, so the unused tail of a slab costs address space, not
// memory. Requests below kMinPooledBytes use the C allocator: they gain
// nothing from huge pages.
//
// ATTNODE_HUGE_PAGES=0 (read once) keeps the slabs but advises them
// MADV_NOHUGEPAGE, for before/after measurements; set_huge_pages() does the
// same at run time for later slabs (benchmarks compare both in one process).
#pragma once

#include <cstddef>

namespace attnode::runtime {

// Requests from this size on come from the huge-page slabs.
constexpr std::size_t kMinPooledBytes = std::size_t{256} << 10;

// 64-byte aligned memory of `bytes` (> 0); throws std::bad_alloc when the
// system has none. Not zeroed. Thread-safe.
void* alloc_streamed(std::size_t bytes);
// Frees memory from alloc_streamed (null is ignored). Thread-safe.
void free_streamed(void* p);

// Whether slabs created from now on are advised as huge pages; returns the
// previous setting. Default: on unless ATTNODE_HUGE_PAGES=0.
bool set_huge_pages(bool on);
bool huge_pages_enabled();

struct StreamedMemoryStats {
  std::size_t slabs = 0;         // live mappings
  std::size_t mapped_bytes = 0;  // their total size (address space)
  std::size_t live_bytes = 0;    // bytes of pieces not yet freed (pooled ones)
  std::size_t live_pieces = 0;
};
StreamedMemoryStats streamed_memory_stats();

// The kernel's transparent huge page mode: "always", "madvise", "never", or
// "unknown" (not Linux, or the file is unreadable).
const char* transparent_huge_pages_mode();

}  // namespace attnode::runtime
