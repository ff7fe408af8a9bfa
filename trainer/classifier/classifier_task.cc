#include "trainer/classifier/classifier_task.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "data/augment.h"
#include "distributed/communicator.h"
#include "models/checkpoint_file.h"

namespace retort::trainer {
at::Generator JitterGenerator(uint64_t seed, int64_t step) {
  // SplitMix64 of (seed, step): neighbouring steps get unrelated streams.
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return at::make_generator<at::CPUGeneratorImpl>(z);
}

absl::StatusOr<std::unique_ptr<ClassifierTask>> ClassifierTask::Create(
    Options options, std::shared_ptr<const data::Dataset> train,
    std::shared_ptr<const data::Dataset> validation,
    std::shared_ptr<client::TeacherClient> teacher) {
  RETORT_RETURN_IF_ERROR(options.model.Validate());
  RETORT_RETURN_IF_ERROR(CheckDevice(options.device));
  if (teacher == nullptr) options.loss.alpha = 0.0;
  RETORT_RETURN_IF_ERROR(options.loss.Validate());
  if (options.jitter_pixels < 0 || options.jitter_pixels > 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("--jitter must be in [0, 8] pixels, got ", options.jitter_pixels));
  }
  if (train == nullptr || validation == nullptr) {
    return absl::InvalidArgumentError("the trainer needs a training and a validation set");
  }
  if (train->example_shape() != options.model.input_shape ||
      train->num_classes() != options.model.num_classes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the model ", options.model.Describe(), " does not fit the data (examples of shape [",
        absl::StrJoin(train->example_shape(), ","), "], ", train->num_classes(), " classes)"));
  }
  std::unique_ptr<ClassifierTask> t(new ClassifierTask());
  t->options_ = std::move(options);
  t->train_ = std::move(train);
  t->validation_ = std::move(validation);
  t->teacher_ = std::move(teacher);
  RETORT_ASSIGN_OR_RETURN(t->model_, models::CreateClassifier(t->options_.model, t->options_.seed));
  if (!t->options_.init_from.empty()) {
    absl::StatusOr<nlohmann::json> meta =
        models::ReadCheckpointInto(t->options_.init_from, *t->model_);
    if (!meta.ok()) {
      return absl::Status(meta.status().code(),
                          absl::StrCat("--init_from: ", meta.status().message()));
    }
  }
  t->model_->to(t->options_.device);
  return t;
}

absl::StatusOr<v1::TeacherFingerprint> ClassifierTask::TeacherFingerprint() {
  if (teacher_ == nullptr) return absl::FailedPreconditionError("this run has no teacher");
  return teacher_->Fingerprint();
}

std::unique_ptr<TaskBatch> ClassifierTask::Prepare(const std::vector<int64_t>& indices,
                                                   int64_t step, bool ask_teacher,
                                                   const std::vector<std::string>& hidden_layers) {
  auto b = std::make_unique<ClassifierBatch>();
  data::Batch batch = train_->GetBatch(indices);
  b->inputs = options_.jitter_pixels > 0 ? data::JitterImages(batch.inputs, options_.jitter_pixels,
                                                              JitterGenerator(options_.seed, step))
                                         : batch.inputs;
  b->labels = batch.labels.to(options_.device);
  if (ask_teacher && teacher_ != nullptr) {
    b->teacher = teacher_->SubmitTargets({.inputs = b->inputs,
                                          .temperature = options_.loss.temperature,
                                          .hidden_layers = hidden_layers,
                                          .query_ids = {}});
  }
  b->inputs = b->inputs.to(options_.device);  // after the teacher has its (host) copy
  return b;
}

absl::Status ClassifierTask::AwaitTeacher(TaskBatch& batch) {
  auto& b = static_cast<ClassifierBatch&>(batch);
  if (!b.teacher.valid()) return absl::OkStatus();
  const absl::StatusOr<client::TeacherClient::Targets>& answer = b.teacher.get();
  if (!answer.ok()) return answer.status();
  b.targets = *answer;
  if (b.targets.log_probs.defined()) {
    b.targets.log_probs = b.targets.log_probs.to(options_.device);
  } else if (b.targets.sparse()) {
    b.targets.log_probs = b.targets.Dense(model_->spec().num_classes).to(options_.device);
  }
  for (auto& [name, value] : b.targets.hidden) value = value.to(options_.device);
  return absl::OkStatus();
}

absl::StatusOr<TaskLoss> ClassifierTask::Loss(TaskBatch& batch, int64_t begin, int64_t end,
                                              FeatureAdapters* adapters, double feature_weight) {
  auto& b = static_cast<ClassifierBatch&>(batch);
  const bool whole = begin == 0 && end == b.rows();
  auto rows_of = [&](const torch::Tensor& t) {
    return whole || !t.defined() ? t : t.slice(0, begin, end);
  };
  models::HiddenStates student_hidden;
  const torch::Tensor output =
      adapters != nullptr ? model_->ForwardWithHidden(rows_of(b.inputs), adapters->student_layers(),
                                                      &student_hidden)
                          : model_->forward(rows_of(b.inputs));
  LossTerms terms =
      DistillationLoss(output, rows_of(b.targets.log_probs), rows_of(b.labels), options_.loss);
  TaskLoss loss{.objective = terms.total, .hard = terms.hard, .soft = terms.soft, .feature = {}};
  if (adapters != nullptr) {
    std::map<std::string, torch::Tensor> targets;
    for (const auto& [name, value] : b.targets.hidden) targets[name] = rows_of(value);
    FeatureAdapters::Terms features = adapters->Loss(student_hidden, targets);
    loss.objective = loss.objective + feature_weight * features.total;
    loss.feature = features.total;
  }
  return loss;
}

absl::StatusOr<TaskEvaluation> ClassifierTask::Evaluate(distributed::Communicator* communicator,
                                                        int rank, int world_size) {
  EvalResult all;
  if (world_size == 1) {
    RETORT_ASSIGN_OR_RETURN(all, trainer::Evaluate(*model_, *validation_));
  } else {
    const int64_t n = validation_->size();
    RETORT_ASSIGN_OR_RETURN(
        EvalResult mine,
        EvaluateRange(*model_, *validation_, n * rank / world_size, n * (rank + 1) / world_size));
    torch::Tensor sums =
        torch::tensor({static_cast<double>(mine.examples), static_cast<double>(mine.correct),
                       mine.mean_loss * static_cast<double>(mine.examples)},
                      torch::kFloat64);
    RETORT_RETURN_IF_ERROR(communicator->AllReduceMean({sums}));
    sums.mul_(world_size);
    const auto v = sums.accessor<double, 1>();
    all.examples = std::llround(v[0]);
    all.correct = std::llround(v[1]);
    all.mean_loss = all.examples > 0 ? v[2] / static_cast<double>(all.examples) : 0.0;
  }
  last_evaluation_ = all;
  return TaskEvaluation{.json = all.ToJson(),
                        .score = all.accuracy(),
                        .summary = absl::StrFormat("val acc %.4f (%lld errors)", all.accuracy(),
                                                   static_cast<long long>(all.errors()))};
}

absl::Status ClassifierTask::SaveCheckpoint(const std::string& path,
                                            torch::optim::Optimizer& optimizer,
                                            const checkpoint::TrainingState& state,
                                            const checkpoint::AdapterState& adapters) {
  return checkpoint::SaveTrainingCheckpoint(path, *model_, model_->spec().ToJson(), optimizer,
                                            state, adapters);
}

absl::StatusOr<checkpoint::TrainingState> ClassifierTask::LoadCheckpoint(
    const std::string& path, torch::optim::Optimizer& optimizer,
    const checkpoint::AdapterState& adapters) {
  return checkpoint::LoadTrainingCheckpoint(path, *model_, model_->spec().ToJson(), optimizer,
                                            /*restore_rng=*/true, adapters);
}

absl::StatusOr<nlohmann::json> ClassifierTask::Export(const std::string&) {
  // The classifier ships as best.pt, which the loop keeps.
  return nlohmann::json::object();
}

}  // namespace retort::trainer
