// Process allocator settings that keep freed buffers in the process.
//
// On these VMs the first touch of a fresh page costs ~11 µs per 4 KiB, far
// more than the kernels that fill it. glibc serves large allocations (V8's
// ArrayBuffers, our scratch) with mmap and returns them to the OS on free,
// so every op output would be fresh pages again. Raising the mmap and trim
// thresholds makes freed blocks reusable without faults: RSS settles at the
// high-water mark instead of oscillating. ATTNODE_MALLOC_TUNING=0 opts out.
#pragma once

namespace attnode::runtime {

// Applies the settings once per process (idempotent, thread-safe). Returns
// whether they are in force (false when opted out or not on glibc).
bool configure_process_allocator();

}  // namespace attnode::runtime
