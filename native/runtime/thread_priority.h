// Priority of the threads that run kernels in the background.
//
// In a server the JS thread only parses, records and serialises, but it must
// answer promptly; the executor and pool workers do the heavy work. With the
// cores full (more busy threads than cores), equal priorities let the kernel
// threads delay the event loop by whole scheduler slices. Running them a few
// nice levels lower lets the JS thread preempt them when it wakes, and costs
// nothing when the cores are otherwise idle. ATTNODE_WORKER_NICE sets the
// increment (default 5; 0 disables).
#pragma once

namespace attnode::runtime {

// Lowers the calling thread's priority by the configured increment (Linux:
// per thread; elsewhere a no-op). Best effort: failures are ignored.
void lower_background_thread_priority();

}  // namespace attnode::runtime
