#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "data/augment.h"
#include "data/sampler.h"
#include "data/shuffle.h"

namespace retort::data {
namespace {

ShuffleSampler Make(int64_t size, int64_t batch, uint64_t seed, int rank = 0, int world = 1) {
  absl::StatusOr<ShuffleSampler> sampler = ShuffleSampler::Create(
      {.dataset_size = size, .batch_size = batch, .seed = seed, .rank = rank, .world_size = world});
  EXPECT_TRUE(sampler.ok()) << sampler.status();
  return *std::move(sampler);
}

TEST(ShuffleTest, IsAPermutationAndDependsOnSeedAndStream) {
  std::vector<int64_t> a(1000), b(1000), c(1000);
  for (int i = 0; i < 1000; ++i) a[i] = b[i] = c[i] = i;
  ShuffleInPlace(a, 1, 0);
  ShuffleInPlace(b, 1, 0);
  ShuffleInPlace(c, 1, 1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(std::set<int64_t>(a.begin(), a.end()).size(), 1000u);
}

TEST(SplitMix64Test, BelowIsRoughlyUniform) {
  SplitMix64 rng(42);
  std::vector<int> counts(10);
  for (int i = 0; i < 100000; ++i) ++counts[rng.Below(10)];
  for (int c : counts) EXPECT_NEAR(c, 10000, 500);
}

TEST(ShuffleSamplerTest, EachEpochVisitsDistinctExamplesInANewOrder) {
  ShuffleSampler sampler = Make(103, 10, 7);
  EXPECT_EQ(sampler.batches_per_epoch(), 10);  // the last 3 are dropped
  std::vector<int64_t> epoch0, epoch1;
  for (int b = 0; b < 10; ++b) {
    auto batch = sampler.Next();
    epoch0.insert(epoch0.end(), batch.begin(), batch.end());
  }
  EXPECT_EQ(sampler.state(), (SamplerState{1, 0}));
  for (int b = 0; b < 10; ++b) {
    auto batch = sampler.Next();
    epoch1.insert(epoch1.end(), batch.begin(), batch.end());
  }
  EXPECT_EQ(std::set<int64_t>(epoch0.begin(), epoch0.end()).size(), 100u);
  EXPECT_EQ(std::set<int64_t>(epoch1.begin(), epoch1.end()).size(), 100u);
  EXPECT_NE(epoch0, epoch1);
}

TEST(ShuffleSamplerTest, RestoredSamplerContinuesIdentically) {
  ShuffleSampler original = Make(1000, 32, 3);
  for (int i = 0; i < 45; ++i) original.Next();  // mid-way through epoch 1
  SamplerState saved = original.state();
  ASSERT_TRUE(SamplerState::FromJson(saved.ToJson()).ok());
  EXPECT_EQ(*SamplerState::FromJson(saved.ToJson()), saved);

  ShuffleSampler restored = Make(1000, 32, 3);
  ASSERT_TRUE(restored.Restore(saved).ok());
  for (int i = 0; i < 70; ++i) EXPECT_EQ(original.Next(), restored.Next()) << "batch " << i;
}

TEST(ShuffleSamplerTest, RanksGetDisjointShares) {
  std::set<int64_t> seen;
  for (int rank = 0; rank < 3; ++rank) {
    ShuffleSampler sampler = Make(300, 10, 5, rank, 3);
    EXPECT_EQ(sampler.batches_per_epoch(), 10);
    for (int b = 0; b < 10; ++b) {
      for (int64_t i : sampler.Next()) EXPECT_TRUE(seen.insert(i).second) << i;
    }
  }
  EXPECT_EQ(seen.size(), 300u);
}

TEST(ShuffleSamplerTest, RejectsBadOptionsAndStates) {
  EXPECT_FALSE(ShuffleSampler::Create({.dataset_size = 10, .batch_size = 0}).ok());
  EXPECT_FALSE(ShuffleSampler::Create({.dataset_size = 10, .batch_size = 20}).ok());
  EXPECT_FALSE(
      ShuffleSampler::Create({.dataset_size = 10, .batch_size = 2, .rank = 2, .world_size = 2})
          .ok());
  ShuffleSampler sampler = Make(100, 10, 1);
  absl::Status bad = sampler.Restore({0, 11});
  EXPECT_THAT(bad.message(), ::testing::HasSubstr("batch size"));
  EXPECT_FALSE(SamplerState::FromJson({{"epoch", "x"}}).ok());
}

TEST(JitterTest, ZeroPixelsIsIdentityAndShiftsKeepContent) {
  torch::Tensor images = torch::zeros({4, 1, 8, 8});
  images.index_put_({torch::indexing::Slice(), 0, 4, 4}, 1.0);  // one bright pixel, centred
  at::Generator gen = at::detail::createCPUGenerator(11);
  EXPECT_TRUE(torch::equal(JitterImages(images, 0, gen), images));
  torch::Tensor shifted = JitterImages(images, 2, gen);
  EXPECT_EQ(shifted.sizes(), images.sizes());
  // Each image keeps exactly one bright pixel within 2 of the centre.
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(shifted[i].sum().item<float>(), 1.0f);
    auto where = torch::nonzero(shifted[i][0]);
    EXPECT_LE(std::abs(where[0][0].item<int64_t>() - 4), 2);
    EXPECT_LE(std::abs(where[0][1].item<int64_t>() - 4), 2);
  }
}

TEST(JitterTest, SameGeneratorStateSameShifts) {
  torch::Tensor images = torch::rand({16, 1, 10, 10});
  at::Generator a = at::detail::createCPUGenerator(5);
  at::Generator b = at::detail::createCPUGenerator(5);
  EXPECT_TRUE(torch::equal(JitterImages(images, 3, a), JitterImages(images, 3, b)));
}

}  // namespace
}  // namespace retort::data
