#include "trainer/feature_matching.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/client/fake_teacher_client.h"
#include "tests/trainer/synthetic_data.h"
#include "trainer/classifier/classifier_trainer.h"

namespace retort::trainer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<models::HiddenLayer> LlamaLayers(int blocks, int64_t width) {
  std::vector<models::HiddenLayer> layers = {{"embed", {width}}};
  for (int i = 0; i < blocks; ++i) layers.push_back({"block." + std::to_string(i), {width}});
  layers.push_back({"final_norm", {width}});
  return layers;
}

std::vector<std::string> Describe(const std::vector<LayerPair>& pairs) {
  std::vector<std::string> out;
  for (const LayerPair& p : pairs) out.push_back(p.student + ":" + p.teacher);
  return out;
}

TEST(LayerMappingTest, UniformDefaultPairsIntermediateLayersEvenly) {
  // Two student blocks against eight teacher blocks: the student's last block
  // meets the teacher's last, the first meets the middle.
  absl::StatusOr<std::vector<LayerPair>> pairs =
      ResolveLayerMapping("", LlamaLayers(2, 64), LlamaLayers(8, 256));
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  EXPECT_THAT(Describe(*pairs), ElementsAre("block.0:block.3", "block.1:block.7"));
  EXPECT_EQ((*pairs)[0].student_shape, std::vector<int64_t>({64}));
  EXPECT_EQ((*pairs)[0].teacher_shape, std::vector<int64_t>({256}));

  // A one-hidden-layer MLP student against a two-layer teacher.
  pairs = ResolveLayerMapping("", {{"fc0", {128}}}, {{"fc0", {1200}}, {"fc1", {1200}}});
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  EXPECT_THAT(Describe(*pairs), ElementsAre("fc0:fc1"));

  // More student layers than teacher layers share them.
  pairs = ResolveLayerMapping("", LlamaLayers(4, 8), LlamaLayers(2, 8));
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  EXPECT_THAT(Describe(*pairs), ElementsAre("block.0:block.0", "block.1:block.0", "block.2:block.1",
                                            "block.3:block.1"));
}

TEST(LayerMappingTest, ExplicitPairsByPositionOrNameWithWeights) {
  absl::StatusOr<std::vector<LayerPair>> pairs =
      ResolveLayerMapping("s1:t2, s2:t8:0.5,embed:embed", LlamaLayers(2, 64), LlamaLayers(8, 256));
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  // s<i> is the residual stream after i blocks.
  EXPECT_THAT(Describe(*pairs), ElementsAre("block.0:block.1", "block.1:block.7", "embed:embed"));
  EXPECT_DOUBLE_EQ((*pairs)[0].weight, 1.0);
  EXPECT_DOUBLE_EQ((*pairs)[1].weight, 0.5);
}

TEST(LayerMappingTest, RejectsLayersEitherSideLacksAndMalformedEntries) {
  const auto student = LlamaLayers(2, 64);
  const auto teacher = LlamaLayers(4, 256);
  absl::StatusOr<std::vector<LayerPair>> pairs = ResolveLayerMapping("s1:t9", student, teacher);
  ASSERT_EQ(pairs.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(pairs.status().message(), HasSubstr("the teacher has no layer 't9'"));
  EXPECT_THAT(pairs.status().message(), HasSubstr("t5=final_norm [256]"));  // lists what exists

  pairs = ResolveLayerMapping("block.5:t1", student, teacher);
  EXPECT_THAT(pairs.status().message(), HasSubstr("the student has no layer 'block.5'"));
  pairs = ResolveLayerMapping("s1", student, teacher);
  EXPECT_THAT(pairs.status().message(), HasSubstr("is not STUDENT:TEACHER"));
  pairs = ResolveLayerMapping("s1:t1:-2", student, teacher);
  EXPECT_THAT(pairs.status().message(), HasSubstr("weight must be a positive number"));
  pairs = ResolveLayerMapping("s1:t1,block.0:block.0", student, teacher);
  EXPECT_THAT(pairs.status().message(), HasSubstr("twice"));
  pairs = ResolveLayerMapping("s-1:t1", student, teacher);
  EXPECT_FALSE(pairs.ok());
  pairs = ResolveLayerMapping("", student, {});
  EXPECT_THAT(pairs.status().message(), HasSubstr("exposes none"));
}

TEST(FeatureAdaptersTest, RejectsAVectorMappedOntoAFeatureMap) {
  absl::StatusOr<std::shared_ptr<FeatureAdapters>> adapters = FeatureAdapters::Create(
      {{.student = "fc0", .teacher = "conv1", .student_shape = {64}, .teacher_shape = {8, 4, 4}}},
      {});
  ASSERT_EQ(adapters.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(adapters.status().message(), HasSubstr("cannot map student layer fc0 [64]"));
}

TEST(FeatureAdaptersTest, MapsFeatureMapsAndTokens) {
  torch::manual_seed(3);
  absl::StatusOr<std::shared_ptr<FeatureAdapters>> adapters = FeatureAdapters::Create(
      {{.student = "conv1",
        .teacher = "conv2",
        .student_shape = {8, 4, 4},
        .teacher_shape = {16, 2, 2}},
       {.student = "conv2", .teacher = "fc", .student_shape = {8, 4, 4}, .teacher_shape = {5}},
       {.student = "block.0", .teacher = "block.3", .student_shape = {6}, .teacher_shape = {10}}},
      {.weight = 1, .match = "", .nonlinear = true});
  ASSERT_TRUE(adapters.ok()) << adapters.status();
  EXPECT_EQ((*adapters)->Adapt(0, torch::randn({3, 8, 4, 4})).sizes(),
            torch::IntArrayRef({3, 16, 2, 2}));
  EXPECT_EQ((*adapters)->Adapt(1, torch::randn({3, 8, 4, 4})).sizes(), torch::IntArrayRef({3, 5}));
  // Tokens: the student's [B, T, d] against the teacher's [B*T, d].
  FeatureAdapters::Terms terms = (*adapters)->Loss({{"conv1", torch::randn({3, 8, 4, 4})},
                                                    {"conv2", torch::randn({3, 8, 4, 4})},
                                                    {"block.0", torch::randn({3, 7, 6})}},
                                                   {{"conv2", torch::randn({3, 16, 2, 2})},
                                                    {"fc", torch::randn({3, 5})},
                                                    {"block.3", torch::randn({21, 10})}});
  ASSERT_EQ(terms.losses.size(), 3u);
  EXPECT_TRUE(std::isfinite(terms.total.item<double>()));
  EXPECT_THROW((*adapters)->Loss({{"conv1", torch::randn({3, 8, 4, 4})}}, {}), c10::Error);

  // Teachers in this process answer with inference tensors.
  torch::Tensor inference_target;
  {
    torch::InferenceMode guard;
    inference_target = torch::randn({21, 10});
  }
  const torch::Tensor student = torch::randn({3, 7, 6}, torch::requires_grad());
  FeatureAdapters::Terms backprop = (*adapters)->Loss({{"conv1", torch::randn({3, 8, 4, 4})},
                                                       {"conv2", torch::randn({3, 8, 4, 4})},
                                                       {"block.0", student}},
                                                      {{"conv2", torch::randn({3, 16, 2, 2})},
                                                       {"fc", torch::randn({3, 5})},
                                                       {"block.3", inference_target}});
  backprop.total.backward();
  EXPECT_TRUE(student.grad().defined());
}

TEST(FeatureAdaptersTest, AMaskDropsPaddingPositions) {
  torch::manual_seed(5);
  absl::StatusOr<std::shared_ptr<FeatureAdapters>> adapters = FeatureAdapters::Create(
      {{.student = "block.0", .teacher = "block.1", .student_shape = {6}, .teacher_shape = {10}}},
      {.weight = 1, .match = "", .loss = FeatureLoss::kMse});
  ASSERT_TRUE(adapters.ok()) << adapters.status();
  const torch::Tensor tokens = torch::randn({2, 3, 6}, torch::requires_grad());
  const torch::Tensor teacher = torch::randn({6, 10});
  const torch::Tensor keep = torch::tensor({true, true, false, true, false, true}).reshape({2, 3});
  FeatureAdapters::Terms masked =
      (*adapters)->Loss({{"block.0", tokens}}, {{"block.1", teacher}}, keep);
  masked.total.backward();
  const torch::Tensor grad = tokens.grad().reshape({6, 6});
  EXPECT_TRUE(torch::all(grad[2] == 0).item<bool>());
  EXPECT_TRUE(torch::all(grad[4] == 0).item<bool>());
  EXPECT_FALSE(torch::all(grad[0] == 0).item<bool>());
  // The loss is the mean over the kept positions alone.
  torch::NoGradGuard no_grad;
  const torch::Tensor adapted = (*adapters)->Adapt(0, tokens).reshape({6, 10});
  const torch::Tensor rows = torch::tensor({0, 1, 3, 5});
  EXPECT_NEAR(
      masked.total.item<double>(),
      torch::mse_loss(adapted.index_select(0, rows), teacher.index_select(0, rows)).item<double>(),
      1e-6);
}

// The adapters' gradients (and the ones reaching the student's activation)
// agree with central differences, for both losses.
TEST(FeatureAdaptersTest, GradientsMatchFiniteDifferences) {
  for (FeatureLoss loss : {FeatureLoss::kMse, FeatureLoss::kCosine}) {
    SCOPED_TRACE(loss == FeatureLoss::kMse ? "mse" : "cosine");
    torch::manual_seed(7);
    absl::StatusOr<std::shared_ptr<FeatureAdapters>> made =
        FeatureAdapters::Create({{.student = "fc0",
                                  .teacher = "fc1",
                                  .weight = 0.7,
                                  .student_shape = {5},
                                  .teacher_shape = {4}}},
                                {.weight = 1, .match = "", .loss = loss, .nonlinear = true});
    ASSERT_TRUE(made.ok()) << made.status();
    FeatureAdapters& adapters = **made;
    adapters.to(torch::kFloat64);
    const torch::Tensor student = torch::randn({6, 5}, torch::kFloat64).requires_grad_(true);
    const torch::Tensor teacher = torch::randn({6, 4}, torch::kFloat64);
    auto evaluate = [&] { return adapters.Loss({{"fc0", student}}, {{"fc1", teacher}}).total; };
    torch::Tensor value = evaluate();
    value.backward();
    std::vector<torch::Tensor> tensors = adapters.parameters();
    tensors.push_back(student);
    for (torch::Tensor& t : tensors) {
      ASSERT_TRUE(t.grad().defined());
      torch::NoGradGuard no_grad;
      const torch::Tensor analytic = t.grad().clone();
      auto flat = t.view(-1);
      for (int64_t i = 0; i < flat.numel(); i += 3) {
        const double h = 1e-6;
        const double saved = flat[i].item<double>();
        flat[i].fill_(saved + h);
        const double up = evaluate().item<double>();
        flat[i].fill_(saved - h);
        const double down = evaluate().item<double>();
        flat[i].fill_(saved);
        EXPECT_NEAR(analytic.view(-1)[i].item<double>(), (up - down) / (2 * h), 1e-6);
      }
    }
  }
}

// --- ClassifierTrainer ---------------------------------------------------------------------------

class FeatureMatchingTrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("retort_feature_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    train_ = testing::Blobs(640, 1);
    validation_ = testing::Blobs(200, 2);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  ClassifierTrainerOptions Options(const std::string& name) {
    ClassifierTrainerOptions o;
    o.model.input_shape = {1, 4, 4};
    o.model.hidden = {32};
    o.model.dropout = 0.2;
    o.epochs = 2;
    o.batch_size = 32;  // 20 steps an epoch
    o.seed = 5;
    o.optimizer.learning_rate = 3e-2;
    o.clip_grad_norm = 5.0;
    o.features.weight = 1.0;
    o.out_dir = (dir_ / name).string();
    o.log_every_steps = 0;
    o.label = name;
    return o;
  }

  // A two-layer teacher exposing both hidden layers.
  static std::shared_ptr<client::FakeTeacherClient> Teacher() {
    at::Generator gen = at::detail::createCPUGenerator(77);
    const torch::Tensor a = torch::randn({16, 24}, gen) * 0.5;
    const torch::Tensor b = torch::randn({24, 12}, gen) * 0.3;
    const torch::Tensor c = torch::randn({12, 10}, gen);
    auto hidden = [a, b](const torch::Tensor& x) {
      torch::Tensor h0 = torch::tanh(x.flatten(1).matmul(a));
      return std::map<std::string, torch::Tensor>{{"h0", h0}, {"h1", torch::tanh(h0.matmul(b))}};
    };
    auto teacher = std::make_shared<client::FakeTeacherClient>(
        [hidden, c](const torch::Tensor& x) { return hidden(x).at("h1").matmul(c); });
    teacher->SetHidden({{"h0", {24}}, {"h1", {12}}}, hidden);
    return teacher;
  }

  absl::StatusOr<ClassifierTrainResult> Train(const ClassifierTrainerOptions& o,
                                              std::unique_ptr<ClassifierTrainer>* keep) {
    auto trainer = ClassifierTrainer::Create(o, train_, validation_, Teacher());
    if (!trainer.ok()) return trainer.status();
    auto result = (*trainer)->Run();
    *keep = std::move(*trainer);
    return result;
  }

  std::filesystem::path dir_;
  std::shared_ptr<data::TensorDataset> train_, validation_;
};

TEST_F(FeatureMatchingTrainerTest, AdaptersTrainAndLiveOnlyInTrainingCheckpoints) {
  ClassifierTrainerOptions o = Options("features");
  o.log_every_steps = 1;
  std::unique_ptr<ClassifierTrainer> trainer;
  absl::StatusOr<ClassifierTrainResult> result = Train(o, &trainer);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_NE(trainer->adapters(), nullptr);
  EXPECT_THAT(Describe(trainer->adapters()->pairs()), ElementsAre("fc0:h1"));

  // The feature loss falls as the adapters and the student learn.
  std::ifstream metrics(o.out_dir + "/metrics.jsonl");
  std::vector<double> feature;
  for (std::string line; std::getline(metrics, line);) {
    nlohmann::json record = nlohmann::json::parse(line);
    if (record["event"] == "epoch") feature.push_back(record["train_feature_loss"].get<double>());
  }
  ASSERT_EQ(feature.size(), 2u);
  EXPECT_LT(feature[1], feature[0]);

  auto keys = [](const std::string& path, const std::string& sub) {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    if (sub.empty()) return archive.keys();
    torch::serialize::InputArchive inner;
    if (!archive.try_read(sub, inner)) return std::vector<std::string>();
    return inner.keys();
  };
  // The training checkpoint carries the adapters and their optimizer ...
  std::vector<std::string> top = keys(result->last_checkpoint + "/training.pt", "");
  EXPECT_THAT(top, ::testing::Contains("adapters"));
  EXPECT_THAT(top, ::testing::Contains("adapter_optimizer"));
  // ... best.pt (the student) holds no adapter tensor.
  for (const std::string& key : keys(result->best_checkpoint, "")) {
    EXPECT_THAT(key, ::testing::Not(HasSubstr("adapter"))) << key;
  }
}

TEST_F(FeatureMatchingTrainerTest, ResumedRunMatchesUninterruptedRunBitForBit) {
  ClassifierTrainerOptions whole_options = Options("whole");
  whole_options.features.match = "s0:t0:0.5,fc0:h1";
  std::unique_ptr<ClassifierTrainer> whole;
  ASSERT_TRUE(Train(whole_options, &whole).ok());

  ClassifierTrainerOptions first = Options("split");
  first.features.match = whole_options.features.match;
  first.stop_after_steps = 27;
  std::unique_ptr<ClassifierTrainer> interrupted;
  ASSERT_TRUE(Train(first, &interrupted).ok());
  ClassifierTrainerOptions second = first;
  second.stop_after_steps = 0;
  second.resume = true;
  std::unique_ptr<ClassifierTrainer> resumed;
  absl::StatusOr<ClassifierTrainResult> rest = Train(second, &resumed);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(rest->resumed_from_step, 27);

  for (auto* pair : {&whole, &resumed}) ASSERT_NE((*pair)->adapters(), nullptr);
  auto a = whole->model().named_parameters();
  auto b = resumed->model().named_parameters();
  for (const auto& item : a) EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << item.key();
  auto aa = whole->adapters()->named_parameters();
  auto ab = resumed->adapters()->named_parameters();
  for (const auto& item : aa) {
    EXPECT_TRUE(torch::equal(item.value(), ab[item.key()])) << item.key();
  }

  // Resuming with another mapping is refused.
  ClassifierTrainerOptions other = first;
  other.features.match = "fc0:h0";
  other.resume = true;
  std::unique_ptr<ClassifierTrainer> refused;
  absl::StatusOr<ClassifierTrainResult> mismatch = Train(other, &refused);
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kFailedPrecondition);
  // So is resuming without feature matching (another objective).
  ClassifierTrainerOptions without = first;
  without.features = FeatureMatchOptions();
  without.resume = true;
  absl::StatusOr<ClassifierTrainResult> dropped = Train(without, &refused);
  EXPECT_EQ(dropped.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(dropped.status().message(), HasSubstr("features"));
}

TEST_F(FeatureMatchingTrainerTest, MappingToALayerTheTeacherLacksIsAClearError) {
  ClassifierTrainerOptions o = Options("bad");
  o.features.match = "s0:t7";
  auto trainer = ClassifierTrainer::Create(o, train_, validation_, Teacher());
  ASSERT_EQ(trainer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(trainer.status().message(), HasSubstr("the teacher has no layer 't7'"));
  EXPECT_THAT(trainer.status().message(), HasSubstr("t0=h0 [24], t1=h1 [12]"));

  // A teacher without hidden layers.
  o.features.match = "";
  auto plain = std::make_shared<client::FakeTeacherClient>(
      [](const torch::Tensor& x) { return x.flatten(1).narrow(1, 0, 10); });
  trainer = ClassifierTrainer::Create(o, train_, validation_, plain);
  EXPECT_THAT(trainer.status().message(), HasSubstr("exposes none"));
  // No teacher at all.
  trainer = ClassifierTrainer::Create(o, train_, validation_, nullptr);
  EXPECT_THAT(trainer.status().message(), HasSubstr("there is no teacher"));
}

}  // namespace
}  // namespace retort::trainer
