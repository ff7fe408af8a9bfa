#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "trainer/optimizer.h"

namespace retort::trainer {
namespace {

TEST(LearningRateTest, WarmupThenCosine) {
  OptimizerOptions o;
  o.learning_rate = 1.0;
  o.warmup_fraction = 0.1;
  o.min_lr_ratio = 0.0;
  const int64_t total = 100;  // 10 warmup steps, 90 decay steps
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 0, total), 0.1);
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 9, total), 1.0);
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 10, total), 1.0);
  // Half-way through the decay: cos(pi/2) = 0, so half the peak.
  EXPECT_NEAR(LearningRateAt(o, 10 + 89 / 2.0, total), 0.5, 0.02);
  EXPECT_NEAR(LearningRateAt(o, 99, total), 0.0, 1e-12);
  o.min_lr_ratio = 0.1;
  EXPECT_NEAR(LearningRateAt(o, 99, total), 0.1, 1e-12);
  for (int64_t s = 10; s < 99; ++s) {
    EXPECT_GE(LearningRateAt(o, s, total), LearningRateAt(o, s + 1, total)) << s;
  }
}

TEST(LearningRateTest, NoWarmup) {
  OptimizerOptions o;
  o.learning_rate = 0.5;
  o.warmup_fraction = 0;
  EXPECT_DOUBLE_EQ(LearningRateAt(o, 0, 10), 0.5);
}

TEST(OptimizerTest, CreatesBothKindsAndSetsLearningRate) {
  torch::Tensor w = torch::ones({3}).requires_grad_();
  OptimizerOptions o;
  o.kind = "sgd";
  o.momentum = 0.0;
  o.learning_rate = 0.1;
  auto sgd = CreateOptimizer(o, {w});
  ASSERT_TRUE(sgd.ok());
  SetLearningRate(**sgd, 0.5);
  (w * w).sum().backward();  // gradient 2w = 2
  (*sgd)->step();
  EXPECT_TRUE(torch::allclose(w, torch::zeros({3})));  // 1 - 0.5 * 2
  o.kind = "adamw";
  EXPECT_TRUE(CreateOptimizer(o, {w}).ok());
}

TEST(OptimizerTest, RejectsBadOptions) {
  OptimizerOptions o;
  o.kind = "lion";
  EXPECT_THAT(std::string(o.Validate().message()), ::testing::HasSubstr("adamw or sgd"));
  o = OptimizerOptions();
  o.learning_rate = -1;
  EXPECT_FALSE(o.Validate().ok());
  o = OptimizerOptions();
  o.warmup_fraction = 1.0;
  EXPECT_FALSE(o.Validate().ok());
}

}  // namespace
}  // namespace retort::trainer
