#include <gtest/gtest.h>

#include "trainer/caching_teacher_client.h"
#include "trainer/fake_teacher_client.h"

namespace retort::trainer {
namespace {

struct Recorder {
  std::vector<int64_t> batch_sizes;
};

std::shared_ptr<FakeTeacherClient> Inner(std::shared_ptr<Recorder> recorder) {
  return std::make_shared<FakeTeacherClient>([recorder](const torch::Tensor& x) {
    recorder->batch_sizes.push_back(x.size(0));
    return x.flatten(1).narrow(1, 0, 3) * 2.0;
  });
}

TEST(CachingTeacherClientTest, AnswersRepeatsFromTheCacheAndOnlyAsksForMisses) {
  auto recorder = std::make_shared<Recorder>();
  CachingTeacherClient cache(Inner(recorder), {});
  torch::Tensor x = torch::randn({8, 1, 2, 2});
  auto first = cache.LogProbs(x, 2.0);
  ASSERT_TRUE(first.ok());
  auto second = cache.LogProbs(x, 2.0);
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(torch::equal(*first, *second));
  EXPECT_EQ(recorder->batch_sizes, (std::vector<int64_t>{8}));

  // Half new rows: the inner client sees only those four.
  torch::Tensor mixed = torch::cat({x.narrow(0, 0, 4), torch::randn({4, 1, 2, 2})});
  auto third = cache.LogProbs(mixed, 2.0);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(recorder->batch_sizes, (std::vector<int64_t>{8, 4}));
  EXPECT_TRUE(torch::equal(third->narrow(0, 0, 4), first->narrow(0, 0, 4)));
  torch::Tensor expected = torch::log_softmax(mixed.flatten(1).narrow(1, 0, 3) * 2.0 / 2.0, 1);
  EXPECT_TRUE(torch::allclose(*third, expected));

  // Another temperature is another key.
  ASSERT_TRUE(cache.LogProbs(x, 4.0).ok());
  EXPECT_EQ(recorder->batch_sizes.back(), 8);
  EXPECT_EQ(cache.stats().hits, 8 + 4);
  EXPECT_EQ(cache.stats().entries, 20);
}

TEST(CachingTeacherClientTest, StopsAddingAtCapacityAndPassesErrorsThrough) {
  auto recorder = std::make_shared<Recorder>();
  auto inner = Inner(recorder);
  CachingTeacherClient cache(inner, {.capacity_bytes = 0});
  torch::Tensor x = torch::randn({2, 1, 2, 2});
  ASSERT_TRUE(cache.LogProbs(x, 1.0).ok());
  ASSERT_TRUE(cache.LogProbs(x, 1.0).ok());
  EXPECT_EQ(recorder->batch_sizes.size(), 2u);
  inner->FailWith(absl::UnavailableError("down"));
  EXPECT_EQ(cache.LogProbs(torch::randn({1, 1, 2, 2}), 1.0).status().code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace retort::trainer
