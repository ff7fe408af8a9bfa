// CachingCpuAllocator: LibTorch's CPU allocator for training processes,
// keeping freed tensor buffers for the next request of the same size class.
//
// Why: a training step allocates the same large temporaries every step (the
// [tokens, vocabulary] logits, their softmax and gradients: 32 MiB each for
// 16 x 128 tokens over 4,096 ids). glibc serves such buffers with mmap and
// unmaps them on free, so every step faults every page back in, zeroed by the
// kernel and charged to the memory cgroup. Measured on the 2-vCPU build
// machine, a language-model step fed from the teacher cache spent about 31 %
// of its cycles in page faults and 4 % in munmap (docs/performance.md).
// Reusing the buffers keeps their pages resident.
//
// Contract:
//   - Requests of at least `min_cached_bytes` are rounded up to a size class
//     (at most 12.5 % larger, a multiple of 4 KiB) and, when freed, kept in
//     that class's free list while the kept bytes stay within
//     `max_cached_bytes`; beyond it they go back to the system at once.
//     Smaller requests go to the system allocator and back on free.
//   - Buffers are 64-byte aligned (as LibTorch's own CPU allocator), not
//     zeroed, and safe to free on any thread.
//   - raw_allocate/raw_deleter work (the buffer carries its own header).
//   - The allocator must outlive every buffer it handed out.
#ifndef RETORT_COMMON_CACHING_CPU_ALLOCATOR_H_
#define RETORT_COMMON_CACHING_CPU_ALLOCATOR_H_

#include <c10/core/Allocator.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace retort {

class CachingCpuAllocator final : public c10::Allocator {
 public:
  struct Options {
    // Requests below this go straight to the system allocator.
    size_t min_cached_bytes = size_t{256} << 10;
    // Freed bytes kept for reuse, at most. 0 caches nothing.
    size_t max_cached_bytes = size_t{2} << 30;

    absl::Status Validate() const;
  };

  struct Stats {
    int64_t cached_requests = 0;         // requests of at least min_cached_bytes
    int64_t reused = 0;                  // of those, served from a free list
    size_t cached_bytes = 0;             // bytes in free lists now
    size_t live_cached_class_bytes = 0;  // bytes handed out in size classes, not yet freed
  };

  static absl::StatusOr<std::unique_ptr<CachingCpuAllocator>> Create(const Options& options);
  ~CachingCpuAllocator() override;

  CachingCpuAllocator(const CachingCpuAllocator&) = delete;
  CachingCpuAllocator& operator=(const CachingCpuAllocator&) = delete;

  c10::DataPtr allocate(size_t bytes) const override;
  c10::DeleterFnPtr raw_deleter() const override;

  Stats stats() const;
  // Returns every kept buffer to the system.
  void ReleaseCached();

  // The size class a request of `bytes` (>= min_cached_bytes) is served from.
  static size_t SizeClass(size_t bytes);

 private:
  struct Header;
  explicit CachingCpuAllocator(const Options& options) : options_(options) {}
  static void Delete(void* data);
  void Release(Header* header) const;

  const Options options_;
  mutable absl::Mutex mu_;
  mutable absl::flat_hash_map<size_t, std::vector<Header*>> free_ ABSL_GUARDED_BY(mu_);
  mutable Stats stats_ ABSL_GUARDED_BY(mu_);
};

// Makes a CachingCpuAllocator with `options` LibTorch's CPU allocator for the
// rest of the process (it is never destroyed: tensors may outlive any scope).
// Call before the first tensor that should use it; buffers allocated earlier
// keep their own deleter. A second call fails. Under AddressSanitizer it
// does nothing (ASan's own allocator must see every free to find misuse).
absl::Status UseCachingCpuAllocator(const CachingCpuAllocator::Options& options);

}  // namespace retort

#endif  // RETORT_COMMON_CACHING_CPU_ALLOCATOR_H_
