#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "models/checkpoint_file.h"
#include "teacher/native_teacher.h"

namespace retort::teacher {
namespace {

using ::testing::HasSubstr;

std::shared_ptr<models::Classifier> SmallModel() {
  models::ModelSpec spec;
  spec.hidden = {16};
  spec.dropout = 0.5;  // must be off when serving
  return *models::CreateClassifier(spec, 2);
}

TEST(NativeTeacherTest, ReturnsTemperatureSoftenedLogProbs) {
  auto model = SmallModel();
  std::unique_ptr<NativeTeacher> teacher = NativeTeacher::FromModel(model);
  torch::Tensor x = torch::randn({6, 1, 28, 28});
  absl::StatusOr<torch::Tensor> lp = teacher->LogProbs(x, 4.0);
  ASSERT_TRUE(lp.ok()) << lp.status();
  torch::Tensor expected;
  {
    torch::NoGradGuard no_grad;
    model->eval();
    expected = torch::log_softmax(model->forward(x) / 4.0, 1);
  }
  EXPECT_TRUE(torch::allclose(*lp, expected, 1e-6, 1e-6));
  // Rows are distributions.
  EXPECT_TRUE(torch::allclose(lp->exp().sum(1), torch::ones({6}), 1e-5, 1e-5));
  // Deterministic: no dropout at serving time.
  EXPECT_TRUE(torch::equal(*teacher->LogProbs(x, 4.0), *lp));
}

TEST(NativeTeacherTest, FingerprintDescribesTheModel) {
  auto model = SmallModel();
  auto teacher = NativeTeacher::FromModel(model);
  const v1::TeacherFingerprint& fp = teacher->fingerprint();
  EXPECT_EQ(fp.architecture(), "mlp 784-16-10 dropout=0.5");
  EXPECT_EQ(fp.num_classes(), 10);
  EXPECT_EQ(fp.input_shape_size(), 3);
  EXPECT_EQ(fp.weights_sha256(), models::WeightsSha256(*model));
}

TEST(NativeTeacherTest, ValidatesInputBeforeRunningTheModel) {
  auto teacher = NativeTeacher::FromModel(SmallModel(), /*max_batch=*/8);
  torch::Tensor good = torch::randn({2, 1, 28, 28});
  EXPECT_THAT(teacher->LogProbs(torch::randn({2, 784}), 1.0).status().message(),
              HasSubstr("expected [B,1,28,28]"));
  EXPECT_THAT(teacher->LogProbs(torch::randn({9, 1, 28, 28}), 1.0).status().message(),
              HasSubstr("not in [1, 8]"));
  EXPECT_THAT(teacher->LogProbs(good.to(torch::kDouble), 1.0).status().message(),
              HasSubstr("float32"));
  for (double t : {0.0, -1.0, 1000.0, std::nan(""), double{INFINITY}}) {
    absl::Status status = teacher->LogProbs(good, t).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << t;
    EXPECT_THAT(status.message(), HasSubstr("temperature")) << t;
  }
}

TEST(NativeTeacherTest, CreateLoadsACheckpointAndReportsBadOnes) {
  auto dir =
      std::filesystem::temp_directory_path() / ("retort_teacher_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto model = SmallModel();
  ASSERT_TRUE(models::WriteCheckpoint((dir / "t.pt").string(), *model, {}).ok());
  auto teacher = NativeTeacher::Create({.checkpoint_path = (dir / "t.pt").string()});
  ASSERT_TRUE(teacher.ok()) << teacher.status();
  EXPECT_EQ((*teacher)->fingerprint().weights_sha256(), models::WeightsSha256(*model));
  auto missing = NativeTeacher::Create({.checkpoint_path = (dir / "none.pt").string()});
  EXPECT_THAT(missing.status().message(), HasSubstr("none.pt does not exist"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace retort::teacher
