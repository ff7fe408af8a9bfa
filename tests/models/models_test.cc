#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "models/classifier.h"
#include "models/model_spec.h"

namespace retort::models {
namespace {

using ::testing::HasSubstr;

ModelSpec Mlp(std::vector<int64_t> hidden, double dropout = 0, double input_dropout = 0) {
  ModelSpec spec;
  spec.hidden = std::move(hidden);
  spec.dropout = dropout;
  spec.input_dropout = input_dropout;
  return spec;
}

int64_t Parameters(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

TEST(ModelSpecTest, DescribesAndRoundTripsThroughJson) {
  ModelSpec teacher = Mlp({1200, 1200}, 0.5, 0.2);
  EXPECT_EQ(teacher.Describe(), "mlp 784-1200-1200-10 dropout=0.5 input_dropout=0.2");
  absl::StatusOr<ModelSpec> parsed = ModelSpec::FromJson(teacher.ToJson());
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, teacher);
  ModelSpec cnn;
  cnn.architecture = Architecture::kCnn;
  cnn.hidden = {32, 64, 128};
  EXPECT_EQ(cnn.Describe(), "cnn conv32-conv64-fc128-10");
}

TEST(ModelSpecTest, RejectsInvalidSpecsWithReasons) {
  EXPECT_THAT(Mlp({0}).Validate().message(), HasSubstr("hidden widths"));
  EXPECT_THAT(Mlp({10}, 1.0).Validate().message(), HasSubstr("dropout"));
  ModelSpec cnn;
  cnn.architecture = Architecture::kCnn;
  cnn.hidden = {8, 8};
  EXPECT_THAT(cnn.Validate().message(), HasSubstr("three widths"));
  EXPECT_THAT(ParseArchitecture("resnet").status().message(), HasSubstr("use mlp or cnn"));
  EXPECT_FALSE(ModelSpec::FromJson({{"architecture", "mlp"}}).ok());
}

TEST(ClassifierTest, MlpShapesAndParameterCount) {
  auto model = CreateClassifier(Mlp({1200, 1200}, 0.5, 0.2), 1);
  ASSERT_TRUE(model.ok());
  EXPECT_EQ((*model)->forward(torch::randn({5, 1, 28, 28})).sizes(), (std::vector<int64_t>{5, 10}));
  // Hinton et al.'s teacher: 784*1200+1200 + 1200*1200+1200 + 1200*10+10.
  EXPECT_EQ(Parameters(**model), 784 * 1200 + 1200 + 1200 * 1200 + 1200 + 1200 * 10 + 10);
}

TEST(ClassifierTest, CnnShapesAndParameterCount) {
  ModelSpec spec;
  spec.architecture = Architecture::kCnn;
  spec.hidden = {8, 16, 32};
  spec.dropout = 0.25;
  auto model = CreateClassifier(spec, 1);
  ASSERT_TRUE(model.ok());
  EXPECT_EQ((*model)->forward(torch::randn({3, 1, 28, 28})).sizes(), (std::vector<int64_t>{3, 10}));
  EXPECT_EQ(Parameters(**model),
            (1 * 9 * 8 + 8) + (8 * 9 * 16 + 16) + (16 * 7 * 7 * 32 + 32) + (32 * 10 + 10));
}

TEST(ClassifierTest, SameSeedSameWeightsAndDropoutOnlyInTraining) {
  auto a = CreateClassifier(Mlp({50}, 0.5, 0.2), 9);
  auto b = CreateClassifier(Mlp({50}, 0.5, 0.2), 9);
  auto c = CreateClassifier(Mlp({50}, 0.5, 0.2), 10);
  torch::Tensor x = torch::randn({4, 1, 28, 28});
  (*a)->eval();
  (*b)->eval();
  (*c)->eval();
  EXPECT_TRUE(torch::equal((*a)->forward(x), (*b)->forward(x)));
  EXPECT_FALSE(torch::equal((*a)->forward(x), (*c)->forward(x)));
  EXPECT_TRUE(torch::equal((*a)->forward(x), (*a)->forward(x)));  // eval: deterministic
  (*a)->train();
  EXPECT_FALSE(torch::equal((*a)->forward(x), (*a)->forward(x)));  // dropout active
}

}  // namespace
}  // namespace retort::models
