#include <gtest/gtest.h>

#include "client/caching_teacher_client.h"
#include "tests/client/fake_teacher_client.h"

namespace retort::client {
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

// Feature matching: hidden activations are cached beside the
// log-probabilities, keyed by the layers asked for.
TEST(CachingTeacherClientTest, CachesHiddenLayersPerRow) {
  auto recorder = std::make_shared<Recorder>();
  std::shared_ptr<FakeTeacherClient> inner = Inner(recorder);
  inner->SetHidden({{"h", {4}}, {"g", {2}}}, [](const torch::Tensor& x) {
    torch::Tensor h = torch::tanh(x.flatten(1));
    return std::map<std::string, torch::Tensor>{{"h", h}, {"g", h.narrow(1, 0, 2) * 3}};
  });
  CachingTeacherClient cache(inner, {});
  const torch::Tensor x = torch::randn({6, 1, 2, 2});
  auto ask = [&](const torch::Tensor& rows, std::vector<std::string> layers) {
    absl::StatusOr<TeacherClient::Targets> t = cache.SubmitTargets({rows, 1.0, layers, {}}).get();
    EXPECT_TRUE(t.ok()) << t.status();
    return *t;
  };
  TeacherClient::Targets first = ask(x, {"h"});
  ASSERT_EQ(first.hidden.count("h"), 1u);
  EXPECT_TRUE(torch::allclose(first.hidden["h"], torch::tanh(x.flatten(1))));
  // The same rows in another order come from the cache, hidden states too.
  const torch::Tensor order = torch::tensor({5, 0, 3});
  TeacherClient::Targets again = ask(x.index_select(0, order), {"h"});
  EXPECT_EQ(recorder->batch_sizes, (std::vector<int64_t>{6}));
  EXPECT_TRUE(torch::equal(again.hidden["h"], first.hidden["h"].index_select(0, order)));
  EXPECT_TRUE(torch::equal(again.log_probs, first.log_probs.index_select(0, order)));
  // Other layers, or none, are other entries.
  TeacherClient::Targets both = ask(x, {"h", "g"});
  EXPECT_EQ(recorder->batch_sizes.size(), 2u);
  EXPECT_TRUE(torch::allclose(both.hidden["g"], first.hidden["h"].narrow(1, 0, 2) * 3));
  ASSERT_TRUE(cache.LogProbs(x, 1.0).ok());
  EXPECT_EQ(recorder->batch_sizes.size(), 3u);
  EXPECT_EQ(cache.stats().entries, 18);
}

// A row asked for by a batch still in flight is not asked for again: the hit
// pattern (and so every request the teacher sees) is the same whether the
// caller waits for each batch or submits ahead.
TEST(CachingTeacherClientTest, RowsAskedForAheadCountAsCachedBeforeTheyAreAnswered) {
  auto recorder = std::make_shared<Recorder>();
  CachingTeacherClient cache(Inner(recorder), {});
  torch::Tensor x = torch::randn({6, 1, 2, 2});
  torch::Tensor overlap = torch::cat({x.narrow(0, 2, 2), torch::randn({3, 1, 2, 2})});
  TeacherClient::LogProbsFuture first = cache.Submit(x, 1.0);
  TeacherClient::LogProbsFuture second = cache.Submit(overlap, 1.0);  // before `first` is waited on
  EXPECT_EQ(recorder->batch_sizes, (std::vector<int64_t>{6, 3}));
  const absl::StatusOr<torch::Tensor>& a = first.get();
  const absl::StatusOr<torch::Tensor>& b = second.get();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(torch::equal(b->narrow(0, 0, 2), a->narrow(0, 2, 2)));
  EXPECT_EQ(cache.stats().hits, 2);
  EXPECT_EQ(cache.stats().entries, 9);
  // Waiting in the other order gives the same answers.
  TeacherClient::LogProbsFuture third = cache.Submit(overlap, 1.0);
  EXPECT_TRUE(torch::equal(*third.get(), *b));
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
}  // namespace retort::client
