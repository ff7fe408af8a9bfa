#include "common/allocator_tuning.h"

#include <malloc.h>

namespace retort {

void TuneAllocatorForTensors() {
  // 32 MiB is glibc's largest mmap threshold on 64-bit systems.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

}  // namespace retort
