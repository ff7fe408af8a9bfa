// BatchPipeline (trainer/batch_pipeline.h): steps come out in data order
// whatever order the teacher answers in, and a step's batch depends only on
// the seed and the step, not on the pipeline's depth or where a run resumed.
#include "trainer/batch_pipeline.h"

#include <future>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "client/teacher_client.h"
#include "data/augment.h"
#include "data/dataset.h"
#include "data/sampler.h"
#include "models/classifier.h"
#include "tests/client/fake_teacher_client.h"
#include "trainer/classifier/classifier_task.h"

namespace retort::trainer {
namespace {

constexpr double kTemperature = 2.0;

// A teacher client whose answers the test hands out, in any order it likes.
class ManualTeacherClient : public client::TeacherClient {
 public:
  struct Call {
    torch::Tensor inputs;
    std::shared_ptr<std::promise<absl::StatusOr<client::TeacherClient::Targets>>> promise;
  };

  absl::StatusOr<v1::TeacherFingerprint> Fingerprint() override { return v1::TeacherFingerprint(); }
  client::TeacherClient::TargetsFuture SubmitTargets(const Request& request) override {
    auto promise = std::make_shared<std::promise<absl::StatusOr<client::TeacherClient::Targets>>>();
    calls_.push_back({request.inputs, promise});
    return promise->get_future().share();
  }

  std::vector<Call>& calls() { return calls_; }

 private:
  std::vector<Call> calls_;
};

torch::Tensor FakeLogits(const torch::Tensor& inputs) {
  return inputs.flatten(1).narrow(1, 0, 10) * 3.0;
}

class BatchPipelineTest : public ::testing::Test {
 protected:
  static constexpr int64_t kExamples = 64;
  static constexpr int64_t kBatch = 8;  // 8 steps an epoch

  void SetUp() override {
    torch::manual_seed(11);
    dataset_ = std::make_shared<data::TensorDataset>(torch::rand({kExamples, 1, 28, 28}),
                                                     torch::randint(0, 10, {kExamples}), 10);
  }

  static data::ShuffleSampler Sampler() {
    absl::StatusOr<data::ShuffleSampler> sampler =
        data::ShuffleSampler::Create({.dataset_size = kExamples, .batch_size = kBatch, .seed = 5});
    EXPECT_TRUE(sampler.ok()) << sampler.status();
    return *std::move(sampler);
  }

  // A step as the tests look at it: the pipeline's step and rows, and the
  // classifier task's batch.
  struct Prepared {
    int64_t step = 0;
    std::vector<int64_t> indices;
    torch::Tensor inputs, labels;
    client::TeacherClient::TargetsFuture teacher;
  };

  std::shared_ptr<ClassifierTask> Task(std::shared_ptr<client::TeacherClient> teacher) {
    models::ModelSpec spec;
    spec.input_shape = {1, 28, 28};
    spec.hidden = {8};
    absl::StatusOr<std::unique_ptr<ClassifierTask>> task = ClassifierTask::Create(
        {.model = spec, .loss = {.temperature = kTemperature}, .seed = 9, .jitter_pixels = 2},
        dataset_, dataset_, std::move(teacher));
    EXPECT_TRUE(task.ok()) << task.status();
    return std::move(*task);
  }

  // A pipeline of `depth` over a classifier task with `teacher`.
  struct Pipeline {
    std::shared_ptr<ClassifierTask> task;
    BatchPipeline pipeline;
    Prepared Next() {
      BatchPipeline::Prepared p = pipeline.Next();
      auto& batch = static_cast<ClassifierBatch&>(*p.batch);
      return {p.step, p.indices, batch.inputs, batch.labels, batch.teacher};
    }
  };
  std::unique_ptr<Pipeline> MakePipeline(int64_t depth,
                                         std::shared_ptr<client::TeacherClient> teacher,
                                         data::ShuffleSampler sampler, int64_t first, int64_t end) {
    std::shared_ptr<ClassifierTask> task = Task(std::move(teacher));
    ClassifierTask& t = *task;
    return std::unique_ptr<Pipeline>(new Pipeline{
        std::move(task),
        BatchPipeline({.depth = depth, .ask_teacher = true}, t, std::move(sampler), first, end)});
  }

  // Runs steps [first, end) through a pipeline of `depth` whose sampler was
  // advanced to `first`.
  std::vector<Prepared> Run(int64_t depth, int64_t first, int64_t end,
                            std::shared_ptr<client::TeacherClient> teacher) {
    data::ShuffleSampler sampler = Sampler();
    for (int64_t i = 0; i < first; ++i) sampler.Next();
    std::unique_ptr<Pipeline> pipeline =
        MakePipeline(depth, std::move(teacher), std::move(sampler), first, end);
    std::vector<Prepared> steps;
    for (int64_t step = first; step < end; ++step) steps.push_back(pipeline->Next());
    return steps;
  }

  std::shared_ptr<data::TensorDataset> dataset_;
};

TEST_F(BatchPipelineTest, StepsComeOutInDataOrderWhateverOrderTheTeacherAnswers) {
  constexpr int64_t kDepth = 3, kSteps = 12;
  auto teacher = std::make_shared<ManualTeacherClient>();
  data::ShuffleSampler sampler = Sampler();
  std::unique_ptr<Pipeline> pipeline = MakePipeline(kDepth, teacher, Sampler(), 0, kSteps);

  std::vector<Prepared> steps;
  for (int64_t step = 0; step < kSteps; ++step) {
    steps.push_back(pipeline->Next());
    // The requests for the next `depth` steps are out before this one trains.
    EXPECT_EQ(static_cast<int64_t>(teacher->calls().size()), std::min(step + 1 + kDepth, kSteps));
  }
  ASSERT_EQ(teacher->calls().size(), static_cast<size_t>(kSteps));
  for (const Prepared& p : steps) {
    ASSERT_TRUE(p.teacher.valid());
    EXPECT_EQ(p.teacher.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
        << "step " << p.step << " answered before the teacher did";
  }

  // The teacher answers newest first.
  for (auto it = teacher->calls().rbegin(); it != teacher->calls().rend(); ++it) {
    it->promise->set_value(client::TeacherClient::Targets{
        torch::log_softmax(FakeLogits(it->inputs) / kTemperature, 1), {}, {}, {}});
  }
  for (int64_t step = 0; step < kSteps; ++step) {
    SCOPED_TRACE(absl::StrCat("step ", step));
    const Prepared& p = steps[step];
    EXPECT_EQ(p.step, step);
    const std::vector<int64_t> indices = sampler.Next();
    EXPECT_EQ(p.indices, indices);
    EXPECT_TRUE(torch::equal(p.labels, dataset_->GetBatch(indices).labels));
    EXPECT_TRUE(torch::equal(p.inputs, teacher->calls()[step].inputs));
    const absl::StatusOr<client::TeacherClient::Targets>& answer = p.teacher.get();
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_TRUE(torch::equal(answer->log_probs,
                             torch::log_softmax(FakeLogits(p.inputs) / kTemperature, 1)));
  }
}

TEST_F(BatchPipelineTest, BatchesDependOnlyOnSeedAndStepNotOnDepthOrResumePoint) {
  constexpr int64_t kSteps = 12;  // across an epoch boundary
  auto teacher = std::make_shared<client::FakeTeacherClient>(FakeLogits);
  const std::vector<Prepared> serial = Run(0, 0, kSteps, teacher);
  // LibTorch's default generator (which dropout draws from) moves on between
  // the runs; the jitter must not notice.
  torch::manual_seed(12345);
  torch::randn({100});
  const std::vector<Prepared> deep = Run(5, 0, kSteps, teacher);
  const std::vector<Prepared> resumed = Run(5, 5, kSteps, teacher);
  ASSERT_EQ(serial.size(), static_cast<size_t>(kSteps));
  ASSERT_EQ(deep.size(), static_cast<size_t>(kSteps));
  ASSERT_EQ(resumed.size(), static_cast<size_t>(kSteps - 5));

  bool jittered = false;
  for (int64_t step = 0; step < kSteps; ++step) {
    SCOPED_TRACE(absl::StrCat("step ", step));
    const Prepared& s = serial[step];
    const Prepared& d = deep[step];
    EXPECT_EQ(s.step, step);
    EXPECT_EQ(d.step, step);
    EXPECT_EQ(s.indices, d.indices);
    EXPECT_TRUE(torch::equal(s.inputs, d.inputs));
    EXPECT_TRUE(torch::equal(s.labels, d.labels));
    const absl::StatusOr<client::TeacherClient::Targets>& s_answer = s.teacher.get();
    const absl::StatusOr<client::TeacherClient::Targets>& d_answer = d.teacher.get();
    ASSERT_TRUE(s_answer.ok() && d_answer.ok());
    EXPECT_TRUE(torch::equal(s_answer->log_probs, d_answer->log_probs));
    if (step >= 5) {
      const Prepared& r = resumed[step - 5];
      EXPECT_EQ(r.step, step);
      EXPECT_EQ(r.indices, s.indices);
      EXPECT_TRUE(torch::equal(r.inputs, s.inputs));
    }
    jittered |= !torch::equal(s.inputs, dataset_->GetBatch(s.indices).inputs);
  }
  EXPECT_TRUE(jittered) << "no step's inputs were jittered";
  // Neighbouring steps draw different jitter.
  const torch::Tensor images = dataset_->GetBatch(serial[0].indices).inputs;
  EXPECT_FALSE(torch::equal(data::JitterImages(images, 2, JitterGenerator(9, 0)),
                            data::JitterImages(images, 2, JitterGenerator(9, 1))));
  EXPECT_TRUE(torch::equal(data::JitterImages(images, 2, JitterGenerator(9, 0)), serial[0].inputs));
}

}  // namespace
}  // namespace retort::trainer
