#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "trainer/classifier/distillation_loss.h"

namespace retort::trainer {
namespace {

TEST(DistillationLossTest, KlMatchesTheClosedFormForTwoClasses) {
  // Teacher distribution (0.8, 0.2); student logits equal, so (0.5, 0.5).
  torch::Tensor teacher = torch::log(torch::tensor({{0.8, 0.2}}, torch::kDouble));
  torch::Tensor student = torch::zeros({1, 2}, torch::kDouble);
  const double expected = 0.8 * std::log(0.8 / 0.5) + 0.2 * std::log(0.2 / 0.5);
  EXPECT_NEAR(KlDivergence(teacher, torch::log_softmax(student, 1)).item<double>(), expected,
              1e-12);
  // With alpha = 1 the loss is T^2 * KL, and the hard term is still reported.
  for (double t : {1.0, 2.0, 5.0}) {
    LossTerms terms = DistillationLoss(student, teacher, torch::tensor({0}), {t, 1.0});
    EXPECT_NEAR(terms.total.item<double>(), t * t * expected, 1e-12) << t;
    EXPECT_NEAR(terms.hard.item<double>(), std::log(2.0), 1e-12);
  }
}

TEST(DistillationLossTest, IdenticalDistributionsHaveZeroKl) {
  torch::Tensor logits = torch::randn({4, 7}, torch::kDouble);
  const double t = 3.0;
  torch::Tensor teacher = torch::log_softmax(logits / t, 1);
  LossTerms terms = DistillationLoss(logits, teacher, torch::zeros({4}, torch::kLong), {t, 0.5});
  EXPECT_NEAR(terms.soft.item<double>(), 0.0, 1e-12);
}

TEST(DistillationLossTest, AlphaZeroIsExactlyCrossEntropy) {
  torch::Tensor logits = torch::randn({8, 10});
  torch::Tensor labels = torch::randint(0, 10, {8}, torch::kLong);
  torch::Tensor teacher = torch::log_softmax(torch::randn({8, 10}), 1);
  LossTerms terms = DistillationLoss(logits, teacher, labels, {4.0, 0.0});
  EXPECT_TRUE(torch::equal(terms.total, torch::nn::functional::cross_entropy(logits, labels)));
  EXPECT_FALSE(terms.soft.defined());
  // Cross-entropy itself against its definition.
  torch::Tensor manual = -torch::log_softmax(logits, 1).gather(1, labels.unsqueeze(1)).mean();
  EXPECT_NEAR(terms.total.item<double>(), manual.item<double>(), 1e-6);
}

TEST(DistillationLossTest, SoftGradientIsTTimesProbabilityGapOverBatch) {
  // d/dz_s [T^2 KL(p_t || softmax(z_s/T))] = T (p_s - p_t), averaged over
  // the batch: the T^2 factor keeps the gradient from shrinking as 1/T^2.
  const int64_t batch = 3;
  for (double t : {1.0, 2.0, 8.0}) {
    torch::Tensor z_s = torch::randn({batch, 5}, torch::kDouble).requires_grad_();
    torch::Tensor z_t = torch::randn({batch, 5}, torch::kDouble);
    torch::Tensor teacher = torch::log_softmax(z_t / t, 1);
    LossTerms terms = DistillationLoss(z_s, teacher, torch::zeros({batch}, torch::kLong), {t, 1.0});
    terms.total.backward();
    torch::Tensor expected =
        t * (torch::softmax(z_s.detach() / t, 1) - torch::softmax(z_t / t, 1)) / batch;
    EXPECT_TRUE(torch::allclose(z_s.grad(), expected, 1e-10, 1e-12)) << "T=" << t;
  }
}

TEST(DistillationLossTest, GradientsMatchFiniteDifferences) {
  torch::Tensor z_s = torch::randn({4, 6}, torch::kDouble).requires_grad_();
  torch::Tensor teacher = torch::log_softmax(torch::randn({4, 6}, torch::kDouble) / 2.5, 1);
  torch::Tensor labels = torch::tensor({0, 3, 5, 1}, torch::kLong);
  DistillationLossOptions options{2.5, 0.7};
  DistillationLoss(z_s, teacher, labels, options).total.backward();
  torch::Tensor analytic = z_s.grad().clone();
  const double eps = 1e-6;
  torch::Tensor base = z_s.detach().clone();
  for (int64_t i = 0; i < 4; ++i) {
    for (int64_t j = 0; j < 6; ++j) {
      torch::Tensor plus = base.clone(), minus = base.clone();
      plus[i][j] += eps;
      minus[i][j] -= eps;
      double numeric = (DistillationLoss(plus, teacher, labels, options).total.item<double>() -
                        DistillationLoss(minus, teacher, labels, options).total.item<double>()) /
                       (2 * eps);
      EXPECT_NEAR(analytic[i][j].item<double>(), numeric, 1e-8) << i << "," << j;
    }
  }
}

TEST(DistillationLossTest, StableForExtremeLogits) {
  torch::Tensor z_s = torch::tensor({{1000.0f, -1000.0f, 0.0f}});
  torch::Tensor teacher = torch::log_softmax(torch::tensor({{-1000.0f, 1000.0f, 0.0f}}), 1);
  LossTerms terms = DistillationLoss(z_s, teacher, torch::tensor({1}), {1.0, 0.5});
  EXPECT_TRUE(std::isfinite(terms.total.item<float>()));
}

TEST(DistillationLossOptionsTest, Validates) {
  EXPECT_TRUE(DistillationLossOptions({2.0, 0.5}).Validate().ok());
  EXPECT_FALSE(DistillationLossOptions({0.0, 0.5}).Validate().ok());
  EXPECT_FALSE(DistillationLossOptions({NAN, 0.5}).Validate().ok());
  EXPECT_THAT(std::string(DistillationLossOptions({1.0, 1.5}).Validate().message()),
              ::testing::HasSubstr("--alpha"));
}

}  // namespace
}  // namespace retort::trainer
