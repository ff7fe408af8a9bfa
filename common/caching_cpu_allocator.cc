#include "common/caching_cpu_allocator.h"

#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <utility>

#include "absl/strings/str_cat.h"

namespace retort {

// Sits in the 64 bytes before every buffer, so a bare data pointer (the raw
// deleter's only argument) finds its owner and size.
struct alignas(64) CachingCpuAllocator::Header {
  const CachingCpuAllocator* owner;
  size_t capacity;  // bytes after the header
  bool size_class;  // from a size class: returned to a free list on free
};

namespace {

constexpr size_t kAlignment = 64;
constexpr size_t kPage = 4096;

}  // namespace

absl::Status CachingCpuAllocator::Options::Validate() const {
  if (min_cached_bytes < kPage) {
    return absl::InvalidArgumentError(
        absl::StrCat("the caching CPU allocator's min_cached_bytes must be at least ", kPage,
                     ", got ", min_cached_bytes));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CachingCpuAllocator>> CachingCpuAllocator::Create(
    const Options& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  return std::unique_ptr<CachingCpuAllocator>(new CachingCpuAllocator(options));
}

CachingCpuAllocator::~CachingCpuAllocator() { ReleaseCached(); }

size_t CachingCpuAllocator::SizeClass(size_t bytes) {
  if (bytes <= kPage) return kPage;
  // Eight classes between consecutive powers of two, page multiples.
  const size_t power = size_t{1} << (63 - __builtin_clzll(bytes));
  const size_t step = std::max(power / 8, kPage);
  return (bytes + step - 1) / step * step;
}

c10::DataPtr CachingCpuAllocator::allocate(size_t bytes) const {
  const c10::Device cpu(c10::DeviceType::CPU);
  if (bytes == 0) return c10::DataPtr(nullptr, nullptr, &Delete, cpu);
  TORCH_CHECK(bytes <= (size_t{1} << 60), "CPU allocator: cannot allocate ", bytes, " bytes");
  const bool size_class = bytes >= options_.min_cached_bytes;
  const size_t capacity = size_class ? SizeClass(bytes) : bytes;
  Header* header = nullptr;
  if (size_class) {
    absl::MutexLock lock(&mu_);
    ++stats_.cached_requests;
    stats_.live_cached_class_bytes += capacity;
    auto it = free_.find(capacity);
    if (it != free_.end() && !it->second.empty()) {
      header = it->second.back();
      it->second.pop_back();
      stats_.cached_bytes -= capacity;
      ++stats_.reused;
    }
  }
  if (header == nullptr) {
    void* raw = nullptr;
    if (posix_memalign(&raw, kAlignment, sizeof(Header) + capacity) != 0) {
      if (size_class) {
        absl::MutexLock lock(&mu_);
        stats_.live_cached_class_bytes -= capacity;
      }
      TORCH_CHECK(false, "CPU allocator: out of memory allocating ", bytes, " bytes");
    }
    header = new (raw) Header{this, capacity, size_class};
  }
  static_assert(sizeof(Header) == kAlignment, "the header keeps the buffer aligned");
  void* data = reinterpret_cast<char*>(header) + sizeof(Header);
  return c10::DataPtr(data, data, &Delete, cpu);
}

c10::DeleterFnPtr CachingCpuAllocator::raw_deleter() const { return &Delete; }

void CachingCpuAllocator::Delete(void* data) {
  if (data == nullptr) return;
  auto* header = reinterpret_cast<Header*>(static_cast<char*>(data) - sizeof(Header));
  if (!header->size_class) {
    std::free(header);
    return;
  }
  header->owner->Release(header);
}

void CachingCpuAllocator::Release(Header* header) const {
  {
    absl::MutexLock lock(&mu_);
    stats_.live_cached_class_bytes -= header->capacity;
    if (stats_.cached_bytes + header->capacity <= options_.max_cached_bytes) {
      free_[header->capacity].push_back(header);
      stats_.cached_bytes += header->capacity;
      return;
    }
  }
  std::free(header);
}

CachingCpuAllocator::Stats CachingCpuAllocator::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void CachingCpuAllocator::ReleaseCached() {
  absl::flat_hash_map<size_t, std::vector<Header*>> released;
  {
    absl::MutexLock lock(&mu_);
    released.swap(free_);
    stats_.cached_bytes = 0;
  }
  for (auto& [capacity, headers] : released) {
    for (Header* header : headers) std::free(header);
  }
}

absl::Status UseCachingCpuAllocator(const CachingCpuAllocator::Options& options) {
#if defined(__SANITIZE_ADDRESS__)
  (void)options;
  return absl::OkStatus();
#else
  static std::atomic<bool> installed{false};
  absl::StatusOr<std::unique_ptr<CachingCpuAllocator>> allocator =
      CachingCpuAllocator::Create(options);
  if (!allocator.ok()) return allocator.status();
  if (installed.exchange(true)) {
    return absl::FailedPreconditionError("the caching CPU allocator is already installed");
  }
  // Never destroyed: buffers it hands out may be freed at any time until the
  // process ends.
  c10::SetCPUAllocator(allocator->release(), /*priority=*/0);
  return absl::OkStatus();
#endif
}

}  // namespace retort
