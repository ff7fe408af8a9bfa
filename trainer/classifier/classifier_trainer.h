// ClassifierTrainer: trains one classifier on a dataset, with hard labels only or
// distilled from a teacher through a TeacherClient.
//
// Files in `out_dir`:
//   checkpoints/ckpt-<step>/  training checkpoints (CheckpointStore: written
//                  atomically, the newest `keep_checkpoints` kept) at every
//                  epoch end, every `checkpoint_every_steps`, when stopped
//                  early, and when the teacher pool gives out; `resume`
//                  continues from the newest complete one
//   best.pt        the checkpoint with the best validation accuracy so far
//                  (the student alone: feature adapters live only in
//                  checkpoints/)
//   metrics.jsonl  one JSON object per logged step and per epoch
//   result.json    the ClassifierTrainResult of the last Run, with a hash of the
//                  final parameters
//
// Teacher requests for the next `teacher_prefetch` steps are in flight while
// a step trains (BatchPipeline). A resumed run follows exactly the course of
// an uninterrupted one whatever the prefetch depth: same batches, same
// dropout and jitter draws, same parameters, bit for bit (given a teacher
// whose answers are deterministic).
//
// Not thread-safe: one thread calls Run().
#ifndef RETORT_TRAINER_CLASSIFIER_TRAINER_H_
#define RETORT_TRAINER_CLASSIFIER_TRAINER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "checkpoint/training_checkpoint.h"
#include "client/teacher_client.h"
#include "common/clock.h"
#include "data/dataset.h"
#include "models/classifier.h"
#include "trainer/classifier/classifier_task.h"
#include "trainer/classifier/distillation_loss.h"
#include "trainer/classifier/evaluate.h"
#include "trainer/feature_matching.h"
#include "trainer/optimizer.h"
#include "trainer/training_loop.h"

namespace retort::trainer {

// A classifier run: the loop's options (steps, batches, checkpoints, ranks,
// ...; the classifier's defaults below) and the classifier task's.
struct ClassifierTrainerOptions : TrainingLoopOptions {
  ClassifierTrainerOptions() {
    epochs = 10;
    batch_size = 128;
    label = "train";
  }
  models::ModelSpec model;
  DistillationLossOptions loss;  // used only when there is a teacher
  // A classifier checkpoint (.pt) whose weights start the model instead of
  // fresh ones from `seed`; its architecture must be `model`. This is how a
  // pruned classifier is distilled back ("recovery").
  std::string init_from;
  int64_t jitter_pixels = 0;           // random translation of inputs, per example
  torch::Device device = torch::kCPU;  // where the model and every step tensor live

  absl::Status Validate() const;
  // The settings that determine the course of training (not paths or
  // logging); a resumed run must match them.
  nlohmann::json ToJson() const;
};

struct ClassifierTrainResult {
  int64_t steps = 0;
  int64_t epochs = 0;
  double best_validation_accuracy = 0;
  int64_t best_epoch = 0;
  EvalResult final_validation;
  double train_seconds = 0;         // optimizer work only, summed over resumes
  double samples_per_second = 0;    // of this process's training work
  double teacher_wait_seconds = 0;  // of this process: steps waiting for the teacher
  int64_t resumed_from_step = 0;
  std::string parameters_sha256;  // of the final parameters
  std::string best_checkpoint;
  std::string last_checkpoint;  // the newest checkpoint directory
  bool preempted = false;       // stopped by stop_requested, after a checkpoint
  nlohmann::json ToJson() const;
};

// A classifier run: a ClassifierTask on the TrainingLoop, configured from
// ClassifierTrainerOptions in one place.
class ClassifierTrainer {
 public:
  // `teacher` may be null: then training uses hard labels only. Errors:
  // INVALID_ARGUMENT for bad options; FAILED_PRECONDITION when out_dir holds a
  // checkpoint and neither resume nor overwrite is set, or when the checkpoint
  // to resume does not match this run. Run fails with the teacher's error
  // when the teacher gives out, after checkpointing the last completed step.
  static absl::StatusOr<std::unique_ptr<ClassifierTrainer>> Create(
      ClassifierTrainerOptions options, std::shared_ptr<const data::Dataset> train,
      std::shared_ptr<const data::Dataset> validation,
      std::shared_ptr<client::TeacherClient> teacher);

  // With several ranks, an error names this rank and says how to restart.
  // Stopped by `stop_requested`: OK with `preempted` set.
  absl::StatusOr<ClassifierTrainResult> Run();

  models::Classifier& model() { return task_->classifier(); }
  // The feature-matching adapters; null without feature matching.
  FeatureAdapters* adapters() { return loop_->adapters(); }
  const checkpoint::TrainingState& state() const { return loop_->state(); }

 private:
  ClassifierTrainer() = default;

  std::shared_ptr<ClassifierTask> task_;
  std::unique_ptr<TrainingLoop> loop_;
};

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_CLASSIFIER_TRAINER_H_
