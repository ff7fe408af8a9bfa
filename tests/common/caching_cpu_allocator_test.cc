#include "common/caching_cpu_allocator.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/CPUAllocator.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

namespace retort {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

std::unique_ptr<CachingCpuAllocator> MakeAllocator(size_t max_cached_bytes) {
  CachingCpuAllocator::Options options;
  options.max_cached_bytes = max_cached_bytes;
  absl::StatusOr<std::unique_ptr<CachingCpuAllocator>> allocator =
      CachingCpuAllocator::Create(options);
  EXPECT_TRUE(allocator.ok()) << allocator.status();
  return std::move(*allocator);
}

torch::Tensor EmptyFloats(CachingCpuAllocator& allocator, std::vector<int64_t> sizes) {
  return at::detail::empty_generic(sizes, &allocator, c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   torch::kFloat, c10::nullopt);
}

TEST(CachingCpuAllocatorTest, SizeClassesAreCloseFittingPageMultiples) {
  std::mt19937_64 rng(7);
  size_t previous_class = 0;
  for (size_t bytes = 1; bytes < 64 * kMiB; bytes += 1 + rng() % (bytes / 3 + 1)) {
    const size_t c = CachingCpuAllocator::SizeClass(bytes);
    EXPECT_GE(c, bytes);
    EXPECT_EQ(c % 4096, 0u) << bytes;
    EXPECT_LE(c, std::max<size_t>(4096, bytes + bytes / 8 + 4096)) << bytes;
    EXPECT_GE(c, previous_class) << "classes grow with the request";
    previous_class = c;
  }
  EXPECT_EQ(CachingCpuAllocator::SizeClass(32 * kMiB), 32 * kMiB);
  EXPECT_EQ(CachingCpuAllocator::SizeClass(32 * kMiB + 1), 36 * kMiB);
}

TEST(CachingCpuAllocatorTest, AFreedBufferServesTheNextRequestOfItsClass) {
  auto allocator = MakeAllocator(64 * kMiB);
  void* first = nullptr;
  {
    c10::DataPtr a = allocator->allocate(3 * kMiB);
    first = a.get();
    std::memset(first, 1, 3 * kMiB);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % 64, 0u);
  }
  EXPECT_EQ(allocator->stats().cached_bytes, CachingCpuAllocator::SizeClass(3 * kMiB));
  {
    // Slightly smaller, same class: the same buffer.
    c10::DataPtr b = allocator->allocate(3 * kMiB - 100);
    EXPECT_EQ(b.get(), first);
    // While b lives, a second request of the class gets a new buffer.
    c10::DataPtr c = allocator->allocate(3 * kMiB);
    EXPECT_NE(c.get(), first);
  }
  const CachingCpuAllocator::Stats stats = allocator->stats();
  EXPECT_EQ(stats.cached_requests, 3);
  EXPECT_EQ(stats.reused, 1);
  EXPECT_EQ(stats.live_cached_class_bytes, 0u);
  EXPECT_EQ(stats.cached_bytes, 2 * CachingCpuAllocator::SizeClass(3 * kMiB));
  allocator->ReleaseCached();
  EXPECT_EQ(allocator->stats().cached_bytes, 0u);
}

TEST(CachingCpuAllocatorTest, SmallRequestsAndZeroBytesBypassTheCache) {
  auto allocator = MakeAllocator(64 * kMiB);
  {
    c10::DataPtr small = allocator->allocate(1000);
    ASSERT_NE(small.get(), nullptr);
    std::memset(small.get(), 7, 1000);
    c10::DataPtr empty = allocator->allocate(0);
    EXPECT_EQ(empty.get(), nullptr);
  }
  EXPECT_EQ(allocator->stats().cached_requests, 0);
  EXPECT_EQ(allocator->stats().cached_bytes, 0u);
}

TEST(CachingCpuAllocatorTest, KeepsAtMostItsCapAndFreesTheRest) {
  auto allocator = MakeAllocator(3 * kMiB);
  {
    std::vector<c10::DataPtr> buffers;
    for (int i = 0; i < 5; ++i) buffers.push_back(allocator->allocate(kMiB));
    EXPECT_EQ(allocator->stats().live_cached_class_bytes, 5 * kMiB);
  }
  EXPECT_EQ(allocator->stats().cached_bytes, 3 * kMiB);
  auto none = MakeAllocator(0);
  { c10::DataPtr a = none->allocate(2 * kMiB); }
  EXPECT_EQ(none->stats().cached_bytes, 0u);
}

TEST(CachingCpuAllocatorTest, RawAllocateAndRawDeleterWork) {
  auto allocator = MakeAllocator(64 * kMiB);
  void* big = allocator->raw_allocate(2 * kMiB);
  void* small = allocator->raw_allocate(100);
  std::memset(big, 3, 2 * kMiB);
  std::memset(small, 3, 100);
  allocator->raw_deleter()(big);
  allocator->raw_deleter()(small);
  EXPECT_EQ(allocator->stats().cached_bytes, 2 * kMiB);
  EXPECT_EQ(allocator->raw_allocate(2 * kMiB), big);
  allocator->raw_deleter()(big);
}

TEST(CachingCpuAllocatorTest, TensorsComputeCorrectlyOnReusedBuffers) {
  auto allocator = MakeAllocator(256 * kMiB);
  torch::manual_seed(3);
  const torch::Tensor x = torch::randn({512, 1024});
  const torch::Tensor doubled = x * 2;
  const torch::Tensor expected = doubled - doubled.logsumexp(1, /*keepdim=*/true);
  for (int step = 0; step < 4; ++step) {
    torch::Tensor buffer = EmptyFloats(*allocator, {512, 1024});
    buffer.copy_(x).mul_(2);
    buffer.sub_(buffer.logsumexp(1, /*keepdim=*/true));
    EXPECT_TRUE(torch::equal(buffer, expected)) << "step " << step;
  }
  const CachingCpuAllocator::Stats stats = allocator->stats();
  EXPECT_EQ(stats.cached_requests, 4);
  EXPECT_EQ(stats.reused, 3);
  EXPECT_EQ(stats.live_cached_class_bytes, 0u);
}

TEST(CachingCpuAllocatorTest, BuffersFreedOnOtherThreadsAreAccountedExactly) {
  constexpr size_t kCap = 24 * kMiB;
  auto allocator = MakeAllocator(kCap);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::vector<c10::DataPtr> held;
      for (int i = 0; i < 400; ++i) {
        held.push_back(allocator->allocate((1 + rng() % 16) * 300 * 1024));
        static_cast<char*>(held.back().get())[0] = 1;
        if (held.size() > 3) held.erase(held.begin() + static_cast<int64_t>(rng() % held.size()));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const CachingCpuAllocator::Stats stats = allocator->stats();
  EXPECT_EQ(stats.live_cached_class_bytes, 0u);
  EXPECT_LE(stats.cached_bytes, kCap);
  EXPECT_EQ(stats.cached_requests, 1600);
  EXPECT_GT(stats.reused, 0);
}

TEST(CachingCpuAllocatorTest, RefusesOptionsThatMakeNoSense) {
  CachingCpuAllocator::Options options;
  options.min_cached_bytes = 16;
  absl::StatusOr<std::unique_ptr<CachingCpuAllocator>> allocator =
      CachingCpuAllocator::Create(options);
  ASSERT_FALSE(allocator.ok());
  EXPECT_NE(allocator.status().message().find("min_cached_bytes"), std::string::npos);
}

TEST(CachingCpuAllocatorTest, BecomesLibTorchsCpuAllocatorOnce) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "not installed under AddressSanitizer";
#else
  c10::Allocator* before = c10::GetCPUAllocator();
  torch::Tensor old = torch::ones({1 << 20});  // from the allocator before
  ASSERT_TRUE(UseCachingCpuAllocator({}).ok());
  c10::Allocator* after = c10::GetCPUAllocator();
  EXPECT_NE(after, before);
  EXPECT_NE(dynamic_cast<CachingCpuAllocator*>(after), nullptr);
  {
    torch::Tensor a = torch::full({1 << 20}, 2.0f);
    EXPECT_EQ((a + old).sum().item<float>(), 3.0f * (1 << 20));
  }
  old = torch::Tensor();  // its own deleter still frees it
  EXPECT_GT(dynamic_cast<CachingCpuAllocator*>(after)->stats().cached_bytes, 0u);
  const absl::Status again = UseCachingCpuAllocator({});
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
#endif
}

}  // namespace
}  // namespace retort
