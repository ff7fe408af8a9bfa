#include "trainer/classifier/classifier_trainer.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace retort::trainer {

absl::Status ClassifierTrainerOptions::Validate() const {
  RETORT_RETURN_IF_ERROR(model.Validate());
  RETORT_RETURN_IF_ERROR(loss.Validate());
  if (epochs <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("--epochs must be positive, got ", epochs));
  }
  if (jitter_pixels < 0 || jitter_pixels > 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("--jitter must be in [0, 8] pixels, got ", jitter_pixels));
  }
  return ValidateSettings();
}

nlohmann::json ClassifierTrainerOptions::ToJson() const {
  nlohmann::json json = {{"model", model.ToJson()},
                         {"optimizer",
                          {{"kind", optimizer.kind},
                           {"learning_rate", optimizer.learning_rate},
                           {"momentum", optimizer.momentum},
                           {"weight_decay", optimizer.weight_decay},
                           {"warmup_fraction", optimizer.warmup_fraction},
                           {"min_lr_ratio", optimizer.min_lr_ratio}}},
                         {"temperature", loss.temperature},
                         {"alpha", loss.alpha},
                         {"epochs", epochs},
                         {"batch_size", batch_size},
                         {"seed", seed},
                         {"jitter_pixels", jitter_pixels},
                         {"clip_grad_norm", clip_grad_norm}};
  // Only when on, so checkpoints of runs without them still resume.
  if (features.enabled()) json["features"] = features.ToJson();
  if (!init_from.empty()) json["init_from"] = init_from;
  return json;
}

nlohmann::json ClassifierTrainResult::ToJson() const {
  return {{"steps", steps},
          {"epochs", epochs},
          {"best_validation_accuracy", best_validation_accuracy},
          {"best_epoch", best_epoch},
          {"final_validation", final_validation.ToJson()},
          {"train_seconds", train_seconds},
          {"samples_per_second", samples_per_second},
          {"teacher_wait_seconds", teacher_wait_seconds},
          {"resumed_from_step", resumed_from_step},
          {"parameters_sha256", parameters_sha256},
          {"best_checkpoint", best_checkpoint},
          {"last_checkpoint", last_checkpoint},
          {"preempted", preempted}};
}

absl::StatusOr<std::unique_ptr<ClassifierTrainer>> ClassifierTrainer::Create(
    ClassifierTrainerOptions options, std::shared_ptr<const data::Dataset> train,
    std::shared_ptr<const data::Dataset> validation,
    std::shared_ptr<client::TeacherClient> teacher) {
  RETORT_RETURN_IF_ERROR(options.Validate());
  if (options.out_dir.empty()) return absl::InvalidArgumentError("--out_dir must be set");
  if (teacher == nullptr) options.loss.alpha = 0.0;
  std::unique_ptr<ClassifierTrainer> t(new ClassifierTrainer());
  RETORT_ASSIGN_OR_RETURN(t->task_, ClassifierTask::Create({.model = options.model,
                                                            .loss = options.loss,
                                                            .init_from = options.init_from,
                                                            .seed = options.seed,
                                                            .jitter_pixels = options.jitter_pixels,
                                                            .device = options.device},
                                                           train, validation, std::move(teacher)));
  TrainingLoopOptions loop = options;  // the loop's part
  loop.ask_teacher = options.loss.alpha > 0;
  loop.config = options.ToJson();
  loop.config["train_examples"] = train->size();
  loop.config["validation_examples"] = validation->size();
  RETORT_ASSIGN_OR_RETURN(t->loop_, TrainingLoop::Create(std::move(loop), t->task_));
  return t;
}

absl::StatusOr<ClassifierTrainResult> ClassifierTrainer::Run() {
  RETORT_ASSIGN_OR_RETURN(TrainingLoopResult run, loop_->Run());
  ClassifierTrainResult result;
  result.steps = run.steps;
  result.epochs = run.epochs;
  result.best_validation_accuracy = run.best_score;
  result.best_epoch = run.best_epoch;
  result.final_validation = task_->last_evaluation();
  result.train_seconds = run.train_seconds;
  result.samples_per_second = run.units_per_second;
  result.teacher_wait_seconds = run.teacher_wait_seconds;
  result.resumed_from_step = run.resumed_from_step;
  result.parameters_sha256 = run.parameters_sha256;
  result.best_checkpoint =
      run.task_result.is_object() ? run.task_result.value("best_checkpoint", "") : "";
  result.last_checkpoint = run.last_checkpoint;
  result.preempted = run.preempted;
  return result;
}

}  // namespace retort::trainer
