// Process allocator settings that keep freed buffers in the process.
//
// On these VMs the first touch of a fresh page costs ~11 µs per 4 KiB, far
// more than the kernels that fill it. glibc serves large allocations (V8's
// ArrayBuffers, our scratch) with mmap and returns them to the OS on free,
// so every op output would be fresh pages again. Raising the mmap and trim
// thresholds makes freed blocks reusable without faults: RSS settles at the
// high-water mark instead of oscillating. ATTNODE_MALLOC_TUNING=0 opts out.
#pragma once

#include <cstddef>

namespace attnode::runtime {

// Applies the settings once per process (idempotent, thread-safe). Returns
// whether they are in force (false when opted out or not on glibc).
bool configure_process_allocator();

// What the C allocator holds (glibc's mallinfo2; zeros elsewhere): bytes of
// the heap arenas, of blocks in use in them, of free blocks in them, and of
// blocks served by mmap.
struct AllocatorStats {
  std::size_t arena_bytes = 0;
  std::size_t in_use_bytes = 0;
  std::size_t free_bytes = 0;
  std::size_t mmap_bytes = 0;
};
AllocatorStats allocator_stats();

// Gives the allocator's free memory back to the OS (glibc's malloc_trim(0):
// the heap top and every whole free page inside the arenas). Returns whether
// anything was released.
bool trim_allocator();

}  // namespace attnode::runtime
