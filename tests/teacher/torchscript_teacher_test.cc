#include "teacher/torchscript_teacher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <torch/script.h>

namespace retort::teacher {
namespace {

using ::testing::HasSubstr;

class TorchScriptTeacherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("retort_torchscript_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  // Saves a module whose forward is x.flatten(1) @ w.
  std::string SaveLinear(const std::string& name, const torch::Tensor& w) const {
    torch::jit::Module m("Tiny");
    m.register_parameter("w", w, /*is_buffer=*/false);
    m.define(R"(
def forward(self, x):
    return x.flatten(1).matmul(self.w)
)");
    m.save(Path(name));
    return Path(name);
  }

  // Saves a module returning (logits, {"h": relu(x @ w1), "x2": 2x}).
  std::string SaveWithHidden(const std::string& name, const torch::Tensor& w1,
                             const torch::Tensor& w2) const {
    torch::jit::Module m("WithHidden");
    m.register_parameter("w1", w1, false);
    m.register_parameter("w2", w2, false);
    m.define(R"(
def forward(self, x):
    h = x.flatten(1).matmul(self.w1).relu()
    return h.matmul(self.w2), {"h": h, "x2": x * 2.0}
)");
    m.save(Path(name));
    return Path(name);
  }

  std::filesystem::path dir_;
};

TEST_F(TorchScriptTeacherTest, LoadsAModuleAndDescribesIt) {
  torch::manual_seed(1);
  const std::string path = SaveLinear("tiny.pt", torch::randn({784, 10}));
  auto teacher = TorchScriptTeacher::Create({.path = path});
  ASSERT_TRUE(teacher.ok()) << teacher.status();
  const v1::TeacherFingerprint& fp = (*teacher)->fingerprint();
  EXPECT_EQ(fp.num_classes(), 10);
  EXPECT_EQ(std::vector<int64_t>(fp.input_shape().begin(), fp.input_shape().end()),
            (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(fp.input_dtype(), v1::DTYPE_FLOAT32);
  EXPECT_EQ(fp.hidden_layers_size(), 0);
  EXPECT_EQ(fp.weights_sha256().size(), 64u);
  EXPECT_THAT(fp.architecture(), HasSubstr("Tiny"));
  EXPECT_THAT(fp.architecture(), HasSubstr("1x28x28->10"));
  EXPECT_EQ((*teacher)->max_batch(), 8192);
}

TEST_F(TorchScriptTeacherTest, WeightsHashIsStableAndFollowsTheWeights) {
  torch::manual_seed(2);
  torch::Tensor w = torch::randn({784, 10});
  const std::string a = SaveLinear("a.pt", w);
  const std::string same = SaveLinear("same.pt", w.clone());
  torch::Tensor w2 = w.clone();
  w2[3][4] += 1e-3f;
  const std::string other = SaveLinear("other.pt", w2);
  auto first = TorchScriptTeacher::Create({.path = a});
  auto again = TorchScriptTeacher::Create({.path = a});
  auto copy = TorchScriptTeacher::Create({.path = same});
  auto different = TorchScriptTeacher::Create({.path = other});
  ASSERT_TRUE(first.ok() && again.ok() && copy.ok() && different.ok());
  EXPECT_EQ((*first)->fingerprint().weights_sha256(), (*again)->fingerprint().weights_sha256());
  EXPECT_EQ((*first)->fingerprint().weights_sha256(), (*copy)->fingerprint().weights_sha256());
  EXPECT_NE((*first)->fingerprint().weights_sha256(), (*different)->fingerprint().weights_sha256());
}

TEST_F(TorchScriptTeacherTest, ForwardAndLogProbsMatchTheModuleMath) {
  torch::manual_seed(3);
  torch::Tensor w = torch::randn({784, 10});
  auto teacher = TorchScriptTeacher::Create({.path = SaveLinear("tiny.pt", w)});
  ASSERT_TRUE(teacher.ok()) << teacher.status();
  torch::Tensor x = torch::randn({5, 1, 28, 28});
  torch::Tensor expected = x.flatten(1).matmul(w);
  absl::StatusOr<TeacherOutput> out = (*teacher)->Forward(x, {});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->logits.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::allclose(out->logits, expected, 1e-5, 1e-5));
  EXPECT_TRUE(out->hidden.empty());
  absl::StatusOr<torch::Tensor> lp = (*teacher)->LogProbs(x, 3.0);
  ASSERT_TRUE(lp.ok()) << lp.status();
  EXPECT_TRUE(torch::allclose(*lp, torch::log_softmax(expected / 3.0, 1), 1e-5, 1e-5));
}

TEST_F(TorchScriptTeacherTest, LogProbsValidatesInputs) {
  auto teacher = TorchScriptTeacher::Create(
      {.path = SaveLinear("tiny.pt", torch::randn({784, 10})), .max_batch = 4});
  ASSERT_TRUE(teacher.ok()) << teacher.status();
  torch::Tensor good = torch::randn({2, 1, 28, 28});
  absl::Status shape = (*teacher)->LogProbs(torch::randn({2, 784}), 1.0).status();
  EXPECT_EQ(shape.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(shape.message(), HasSubstr("expected [B,1,28,28]"));
  EXPECT_THAT((*teacher)->LogProbs(torch::randn({5, 1, 28, 28}), 1.0).status().message(),
              HasSubstr("not in [1, 4]"));
  EXPECT_THAT((*teacher)->LogProbs(good.to(torch::kFloat64), 1.0).status().message(),
              HasSubstr("float32"));
  EXPECT_THAT((*teacher)->LogProbs(good, 0.0).status().message(), HasSubstr("temperature"));
  EXPECT_THAT((*teacher)->LogProbs(good, std::nan("")).status().message(),
              HasSubstr("temperature"));
  EXPECT_TRUE((*teacher)->LogProbs(good, 1.0).ok());
}

TEST_F(TorchScriptTeacherTest, ExposesHiddenLayersOfATupleModule) {
  torch::manual_seed(4);
  torch::Tensor w1 = torch::randn({784, 16}), w2 = torch::randn({16, 7});
  auto teacher = TorchScriptTeacher::Create({.path = SaveWithHidden("hidden.pt", w1, w2)});
  ASSERT_TRUE(teacher.ok()) << teacher.status();
  const v1::TeacherFingerprint& fp = (*teacher)->fingerprint();
  EXPECT_EQ(fp.num_classes(), 7);
  ASSERT_EQ(fp.hidden_layers_size(), 2);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const v1::HiddenLayerInfo& layer : fp.hidden_layers()) {
    shapes[layer.name()] = std::vector<int64_t>(layer.shape().begin(), layer.shape().end());
  }
  EXPECT_EQ(shapes["h"], (std::vector<int64_t>{16}));
  EXPECT_EQ(shapes["x2"], (std::vector<int64_t>{1, 28, 28}));

  torch::Tensor x = torch::randn({3, 1, 28, 28});
  absl::StatusOr<TeacherOutput> out = (*teacher)->Forward(x, {"h"});
  ASSERT_TRUE(out.ok()) << out.status();
  torch::Tensor h = x.flatten(1).matmul(w1).relu();
  EXPECT_TRUE(torch::allclose(out->logits, h.matmul(w2), 1e-4, 1e-4));
  ASSERT_EQ(out->hidden.size(), 1u);  // only what was asked for
  EXPECT_TRUE(torch::allclose(out->hidden.at("h"), h, 1e-5, 1e-5));
  out = (*teacher)->Forward(x, {"x2", "h"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(torch::equal(out->hidden.at("x2"), x * 2.0));
  EXPECT_EQ(out->hidden.at("x2").sizes(), x.sizes());
}

TEST_F(TorchScriptTeacherTest, AFileThatIsNotTorchScriptIsNamedInTheError) {
  const std::string path = Path("garbage.pt");
  {
    std::ofstream out(path, std::ios::binary);
    out << "this is not a zip archive\x01\x02\x03 at all";
  }
  auto teacher = TorchScriptTeacher::Create({.path = path});
  ASSERT_FALSE(teacher.ok());
  EXPECT_EQ(teacher.status().code(), absl::StatusCode::kInvalidArgument) << teacher.status();
  EXPECT_THAT(teacher.status().message(), HasSubstr(path));
  auto missing = TorchScriptTeacher::Create({.path = Path("missing.pt")});
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr(Path("missing.pt")));
}

TEST_F(TorchScriptTeacherTest, AModuleThatRejectsTheInputShapeFailsItsWarmUp) {
  const std::string path = SaveLinear("tiny.pt", torch::randn({784, 10}));
  auto teacher = TorchScriptTeacher::Create({.path = path, .input_shape = {3, 32, 32}});
  ASSERT_FALSE(teacher.ok());
  EXPECT_EQ(teacher.status().code(), absl::StatusCode::kInvalidArgument) << teacher.status();
  EXPECT_THAT(teacher.status().message(), HasSubstr("warm-up"));
  EXPECT_THAT(teacher.status().message(), HasSubstr("[2,3,32,32]"));
  EXPECT_THAT(teacher.status().message(), HasSubstr(path));
}

TEST_F(TorchScriptTeacherTest, AModuleReturningSomethingElseIsRefused) {
  torch::jit::Module m("Strange");
  m.register_parameter("w", torch::randn({784, 10}), false);
  m.define(R"(
def forward(self, x):
    return [x.flatten(1).matmul(self.w)]
)");
  m.save(Path("list.pt"));
  auto teacher = TorchScriptTeacher::Create({.path = Path("list.pt")});
  ASSERT_FALSE(teacher.ok());
  EXPECT_THAT(teacher.status().message(), HasSubstr("forward must return logits or (logits"));
}

}  // namespace
}  // namespace retort::teacher
