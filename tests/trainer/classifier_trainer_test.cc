#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/file_util.h"
#include "tests/client/fake_teacher_client.h"
#include "tests/trainer/synthetic_data.h"
#include "trainer/classifier/classifier_trainer.h"

namespace retort::trainer {
namespace {

using ::testing::HasSubstr;

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("retort_trainer_test_" + std::to_string(::getpid()) + "_" +
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
    o.model.dropout = 0.2;  // exercises the generator state on resume
    o.epochs = 3;
    o.batch_size = 32;  // 20 steps an epoch
    o.seed = 5;
    o.optimizer.learning_rate = 3e-2;
    o.clip_grad_norm = 5.0;
    o.out_dir = (dir_ / name).string();
    o.log_every_steps = 7;
    o.label = name;
    return o;
  }

  absl::StatusOr<ClassifierTrainResult> Train(
      const ClassifierTrainerOptions& o, std::shared_ptr<client::TeacherClient> teacher = nullptr,
      std::unique_ptr<ClassifierTrainer>* keep = nullptr) {
    auto trainer = ClassifierTrainer::Create(o, train_, validation_, std::move(teacher));
    if (!trainer.ok()) return trainer.status();
    auto result = (*trainer)->Run();
    if (keep != nullptr) *keep = std::move(*trainer);
    return result;
  }

  static std::shared_ptr<client::FakeTeacherClient> LinearTeacher(std::string sha = "teacher-a") {
    at::Generator gen = at::detail::createCPUGenerator(77);
    torch::Tensor w = torch::randn({16, 10}, gen);
    return std::make_shared<client::FakeTeacherClient>(
        [w](const torch::Tensor& x) { return x.flatten(1).matmul(w); }, std::move(sha));
  }

  std::filesystem::path dir_;
  std::shared_ptr<data::TensorDataset> train_, validation_;
};

TEST_F(TrainerTest, LearnsTheBlobsAndWritesCheckpointsAndMetrics) {
  std::unique_ptr<ClassifierTrainer> trainer;
  absl::StatusOr<ClassifierTrainResult> result = Train(Options("plain"), nullptr, &trainer);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->steps, 60);
  EXPECT_EQ(result->epochs, 3);
  EXPECT_GT(result->best_validation_accuracy, 0.8);  // chance is 0.1
  EXPECT_TRUE(PathExists(result->best_checkpoint));
  EXPECT_TRUE(PathExists(result->last_checkpoint));
  std::ifstream metrics(Options("plain").out_dir + "/metrics.jsonl");
  int epochs = 0, steps = 0;
  for (std::string line; std::getline(metrics, line);) {
    nlohmann::json record = nlohmann::json::parse(line);
    if (record["event"] == "epoch") ++epochs;
    if (record["event"] == "step") ++steps;
  }
  EXPECT_EQ(epochs, 3);
  EXPECT_EQ(steps, 60 / 7);
}

TEST_F(TrainerTest, ResumedRunMatchesUninterruptedRunBitForBit) {
  // Jitter and dropout draw from the generator the checkpoint must restore.
  ClassifierTrainerOptions whole_options = Options("whole");
  whole_options.jitter_pixels = 1;
  std::unique_ptr<ClassifierTrainer> whole;
  ASSERT_TRUE(Train(whole_options, LinearTeacher(), &whole).ok());

  ClassifierTrainerOptions first = Options("split");
  first.jitter_pixels = 1;
  first.stop_after_steps = 27;  // mid-way through the second epoch
  std::unique_ptr<ClassifierTrainer> interrupted;
  auto partial = Train(first, LinearTeacher(), &interrupted);
  ASSERT_TRUE(partial.ok()) << partial.status();
  EXPECT_EQ(partial->steps, 27);

  ClassifierTrainerOptions second = Options("split");
  second.jitter_pixels = 1;
  second.resume = true;
  std::unique_ptr<ClassifierTrainer> resumed;
  auto rest = Train(second, LinearTeacher(), &resumed);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(rest->steps, 60);

  auto a = whole->model().named_parameters();
  auto b = resumed->model().named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& item : a) {
    EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << item.key();
  }
  EXPECT_EQ(rest->best_validation_accuracy, whole->state().best_validation_accuracy);
}

TEST_F(TrainerTest, DistillationAsksTheTeacherEveryStep) {
  auto teacher = LinearTeacher();
  ClassifierTrainerOptions o = Options("distill");
  o.loss = {2.0, 0.5};
  auto result = Train(o, teacher);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(teacher->calls(), 60);
  // Without a teacher there are no calls and alpha is ignored.
  auto unused = LinearTeacher();
  ClassifierTrainerOptions alone = Options("alone");
  alone.loss = {2.0, 0.0};
  ASSERT_TRUE(Train(alone, unused).ok());
  EXPECT_EQ(unused->calls(), 0);
}

TEST_F(TrainerTest, TeacherErrorsStopTraining) {
  auto teacher = LinearTeacher();
  teacher->FailWith(absl::UnavailableError("teacher went away"));
  auto result = Train(Options("fail"), teacher);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(result.status().message(), HasSubstr("teacher went away"));
}

TEST_F(TrainerTest, RefusesToClobberOrResumeAMismatchedRun) {
  ClassifierTrainerOptions o = Options("guard");
  o.stop_after_steps = 5;
  ASSERT_TRUE(Train(o, LinearTeacher()).ok());

  ClassifierTrainerOptions again = Options("guard");
  auto clobber = Train(again, LinearTeacher());
  EXPECT_EQ(clobber.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(clobber.status().message(), HasSubstr("--resume"));

  ClassifierTrainerOptions other_lr = Options("guard");
  other_lr.resume = true;
  other_lr.optimizer.learning_rate = 0.5;
  auto lr = Train(other_lr, LinearTeacher());
  EXPECT_THAT(lr.status().message(), HasSubstr("optimizer"));

  ClassifierTrainerOptions other_teacher = Options("guard");
  other_teacher.resume = true;
  auto teacher = Train(other_teacher, LinearTeacher("teacher-b"));
  EXPECT_THAT(teacher.status().message(), HasSubstr("teacher"));

  ClassifierTrainerOptions other_model = Options("guard");
  other_model.resume = true;
  other_model.model.hidden = {64};
  auto model = Train(other_model, LinearTeacher());
  EXPECT_THAT(model.status().message(), HasSubstr("mlp 16-32-10"));

  ClassifierTrainerOptions fresh = Options("guard");
  fresh.overwrite = true;
  EXPECT_TRUE(Train(fresh, LinearTeacher()).ok());
}

// Micro-batches weighted by their share of the rows give the whole batch's
// gradient: the same parameters up to float rounding, with and without a
// teacher, also when the micro-batches are of unequal size (32 rows in 3).
TEST_F(TrainerTest, GradientAccumulationMatchesTheWholeBatch) {
  for (int64_t micro : {2, 3}) {
    ClassifierTrainerOptions whole_options = Options("whole" + std::to_string(micro));
    whole_options.model.dropout = 0;  // masks would be drawn per micro-batch
    whole_options.epochs = 1;
    std::unique_ptr<ClassifierTrainer> whole;
    ASSERT_TRUE(Train(whole_options, LinearTeacher(), &whole).ok());

    ClassifierTrainerOptions accumulated_options = whole_options;
    accumulated_options.out_dir = (dir_ / ("accumulated" + std::to_string(micro))).string();
    accumulated_options.accumulation_steps = micro;
    std::unique_ptr<ClassifierTrainer> accumulated;
    auto result = Train(accumulated_options, LinearTeacher(), &accumulated);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->steps, 20);

    auto a = whole->model().named_parameters();
    auto b = accumulated->model().named_parameters();
    double worst = 0;
    for (const auto& item : a) {
      worst = std::max(worst, (item.value() - b[item.key()]).abs().max().item<double>());
    }
    EXPECT_LT(worst, 1e-5) << micro << " micro-batches";
    EXPECT_GT(worst, 0.0) << "the run did not split its batches (bit-identical)";
  }
  ClassifierTrainerOptions o = Options("too_many");
  o.accumulation_steps = 33;  // 32 rows a step
  EXPECT_THAT(Train(o).status().message(), HasSubstr("more micro-batches than rows"));
  o.accumulation_steps = 0;
  EXPECT_THAT(Train(o).status().message(), HasSubstr("--grad_accum_steps"));
}

TEST_F(TrainerTest, RejectsBadOptionsAndMismatchedData) {
  ClassifierTrainerOptions o = Options("bad");
  o.epochs = 0;
  EXPECT_THAT(Train(o).status().message(), HasSubstr("--epochs"));
  o = Options("bad");
  o.model.input_shape = {1, 28, 28};
  EXPECT_THAT(Train(o).status().message(), HasSubstr("does not fit the data"));
  o = Options("bad");
  o.optimizer.learning_rate = 1e6;  // diverges
  o.clip_grad_norm = 0;
  o.optimizer.kind = "sgd";
  auto diverged = Train(o);
  EXPECT_THAT(diverged.status().message(), HasSubstr("diverged"));
}

}  // namespace
}  // namespace retort::trainer
