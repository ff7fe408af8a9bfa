// ClassifierTask: image (or any fixed-shape) classification as a task of the
// training loop: an MLP or CNN (models::Classifier) trained on hard labels,
// or distilled from a teacher's dense log-probabilities through a
// TeacherClient (DistillationLoss: alpha * T^2 * KL + (1 - alpha) * CE).
//
// Batches are jittered (random translation, per example) from a generator
// seeded by (seed, step), not LibTorch's default generator (dropout draws
// from that), so prefetch depth and resume points leave them unchanged.
// Evaluation is validation accuracy; the loop keeps best.pt.
#ifndef RETORT_TRAINER_CLASSIFIER_TASK_H_
#define RETORT_TRAINER_CLASSIFIER_TASK_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "client/teacher_client.h"
#include "data/dataset.h"
#include "models/classifier.h"
#include "trainer/classifier/distillation_loss.h"
#include "trainer/classifier/evaluate.h"
#include "trainer/task.h"

namespace retort::trainer {

// The generator that jitters step `step`'s batch.
at::Generator JitterGenerator(uint64_t seed, int64_t step);

// A classifier step's batch (what Prepare returns).
struct ClassifierBatch : TaskBatch {
  torch::Tensor inputs;  // jittered
  torch::Tensor labels;
  client::TeacherClient::TargetsFuture teacher;  // valid when the teacher was asked
  client::TeacherClient::Targets targets;        // once AwaitTeacher returned
  int64_t rows() const override { return inputs.size(0); }
};

class ClassifierTask : public Task {
 public:
  struct Options {
    models::ModelSpec model;
    DistillationLossOptions loss;  // alpha is forced to 0 without a teacher
    // A classifier checkpoint (.pt) whose weights start the model instead of
    // fresh ones from `seed`; its architecture must be `model`.
    std::string init_from;
    uint64_t seed = 1;
    int64_t jitter_pixels = 0;           // random translation of inputs, per example, in [0, 8]
    torch::Device device = torch::kCPU;  // where the model and every step tensor live
  };

  // `teacher` may be null (labels only). INVALID_ARGUMENT when the model
  // does not fit the data or options are out of range.
  static absl::StatusOr<std::unique_ptr<ClassifierTask>> Create(
      Options options, std::shared_ptr<const data::Dataset> train,
      std::shared_ptr<const data::Dataset> validation,
      std::shared_ptr<client::TeacherClient> teacher);

  torch::Device device() const override { return options_.device; }
  const char* unit() const override { return "samples"; }
  int64_t units_per_row() const override { return 1; }
  int64_t train_size() const override { return train_->size(); }
  torch::nn::Module& model() override { return *model_; }
  std::vector<models::HiddenLayer> HiddenLayers() override { return model_->HiddenLayers(); }
  bool has_teacher() const override { return teacher_ != nullptr; }
  absl::StatusOr<v1::TeacherFingerprint> TeacherFingerprint() override;
  std::unique_ptr<TaskBatch> Prepare(const std::vector<int64_t>& indices, int64_t step,
                                     bool ask_teacher,
                                     const std::vector<std::string>& hidden_layers) override;
  absl::Status AwaitTeacher(TaskBatch& batch) override;
  absl::StatusOr<TaskLoss> Loss(TaskBatch& batch, int64_t begin, int64_t end,
                                FeatureAdapters* adapters, double feature_weight) override;
  absl::StatusOr<TaskEvaluation> Evaluate(distributed::Communicator* communicator, int rank,
                                          int world_size) override;
  bool keeps_best() const override { return true; }
  absl::Status SaveCheckpoint(const std::string& path, torch::optim::Optimizer& optimizer,
                              const checkpoint::TrainingState& state,
                              const checkpoint::AdapterState& adapters) override;
  absl::StatusOr<checkpoint::TrainingState> LoadCheckpoint(
      const std::string& path, torch::optim::Optimizer& optimizer,
      const checkpoint::AdapterState& adapters) override;
  absl::StatusOr<nlohmann::json> Export(const std::string& out_dir) override;

  models::Classifier& classifier() { return *model_; }
  const Options& options() const { return options_; }
  // The latest evaluation.
  const EvalResult& last_evaluation() const { return last_evaluation_; }

 private:
  ClassifierTask() = default;

  Options options_;
  std::shared_ptr<const data::Dataset> train_, validation_;
  std::shared_ptr<client::TeacherClient> teacher_;
  std::shared_ptr<models::Classifier> model_;
  EvalResult last_evaluation_;
};

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_CLASSIFIER_TASK_H_
