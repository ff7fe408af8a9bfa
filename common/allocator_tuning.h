// Process-wide malloc settings for tensor workloads.
//
// glibc serves allocations above a threshold (128 KiB, rising dynamically)
// with mmap and returns freed memory to the kernel eagerly, so a forward pass
// whose activations are tens of MB pays page faults for every buffer on every
// call. Measured on the 2-vCPU build machine, the demo's CNN teacher forward
// at batch 256 ran at 3,200 rows/s on glibc's defaults and 5,300 rows/s with
// the settings below (docs/performance.md).
#ifndef RETORT_COMMON_ALLOCATOR_TUNING_H_
#define RETORT_COMMON_ALLOCATOR_TUNING_H_

namespace retort {

// Keeps allocations up to 32 MiB on the heap and freed memory up to 512 MiB
// in the process. Call once at the start of main, before threads start.
// Environment settings (GLIBC_TUNABLES, MALLOC_*_) still apply on top.
void TuneAllocatorForTensors();

}  // namespace retort

#endif  // RETORT_COMMON_ALLOCATOR_TUNING_H_
