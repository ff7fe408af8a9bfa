// Trainer: trains one classifier on a dataset, with hard labels only or
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
//   result.json    the TrainResult of the last Run, with a hash of the
//                  final parameters
//
// Teacher requests for the next `teacher_prefetch` steps are in flight while
// a step trains (BatchPipeline). A resumed run follows exactly the course of
// an uninterrupted one whatever the prefetch depth: same batches, same
// dropout and jitter draws, same parameters, bit for bit (given a teacher
// whose answers are deterministic).
//
// Not thread-safe: one thread calls Run().
#ifndef RETORT_TRAINER_TRAINER_H_
#define RETORT_TRAINER_TRAINER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "data/dataset.h"
#include "models/classifier.h"
#include "trainer/classifier_task.h"
#include "trainer/distillation_loss.h"
#include "trainer/evaluate.h"
#include "trainer/feature_matching.h"
#include "trainer/optimizer.h"
#include "trainer/teacher_client.h"
#include "trainer/training_checkpoint.h"
#include "trainer/training_loop.h"

namespace retort::trainer {

struct TrainerOptions {
  models::ModelSpec model;
  OptimizerOptions optimizer;
  DistillationLossOptions loss;  // used only when there is a teacher
  // Feature matching through adapters (needs a teacher exposing the layers).
  FeatureMatchOptions features;
  // A classifier checkpoint (.pt) whose weights start the model instead of
  // fresh ones from `seed`; its architecture must be `model`. This is how a
  // pruned classifier is distilled back ("recovery").
  std::string init_from;
  int64_t epochs = 10;
  int64_t batch_size = 128;
  uint64_t seed = 1;
  int64_t jitter_pixels = 0;           // random translation of inputs, per example
  torch::Device device = torch::kCPU;  // where the model and every step tensor live
  double clip_grad_norm = 0.0;         // 0 disables clipping
  std::string out_dir;
  bool resume = false;                 // continue from the newest complete checkpoint, if any
  bool overwrite = false;              // start afresh even if out_dir holds checkpoints
  int64_t checkpoint_every_steps = 0;  // 0: only at epoch ends
  int keep_checkpoints = 3;            // at least 2
  int64_t teacher_prefetch = 4;        // steps whose teacher answers are requested ahead
  // Data parallelism: the ranks' communicator (null: this process alone).
  // Each rank trains on its own share of every global batch (batch_size
  // rows), gradients are averaged by the communicator's GradientSync, rank 0
  // writes logs, metrics and best.pt, every rank writes its own file of each
  // checkpoint and rank 0 commits it.
  std::shared_ptr<Communicator> communicator;
  int64_t bucket_bytes = int64_t{25} << 20;  // gradient all-reduce buckets
  // Gradient accumulation: each rank splits its share of a step's batch into
  // this many micro-batches, runs forward and backward on each in turn
  // (activations of one micro-batch alive at a time) and steps the optimizer
  // once. Gradients are all-reduced only during the last micro-batch's
  // backward. The same parameters as one pass over the whole batch, up to
  // float rounding (models with batch statistics excepted).
  int64_t accumulation_steps = 1;
  // Test seam: called after this rank wrote its file of a step's
  // checkpoint, before the commit (TrainingLoopOptions).
  std::function<void(int64_t step)> after_checkpoint_file_written;
  // Preemption (TrainingLoopOptions::stop_requested); null: never.
  std::function<bool()> stop_requested;
  int64_t log_every_steps = 100;  // metrics lines; 0 disables step lines
  // Stop (after writing a checkpoint) once this many steps are done; 0 runs
  // to the end. Lets tests interrupt a run at a chosen step.
  int64_t stop_after_steps = 0;
  std::string label = "train";  // prefix of progress lines
  const Clock* clock = Clock::Real();

  absl::Status Validate() const;
  // The settings that determine the course of training (not paths or
  // logging); a resumed run must match them.
  nlohmann::json ToJson() const;
};

struct TrainResult {
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
// TrainerOptions in one place.
class Trainer {
 public:
  // `teacher` may be null: then training uses hard labels only. Errors:
  // INVALID_ARGUMENT for bad options; FAILED_PRECONDITION when out_dir holds a
  // checkpoint and neither resume nor overwrite is set, or when the checkpoint
  // to resume does not match this run. Run fails with the teacher's error
  // when the teacher gives out, after checkpointing the last completed step.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(
      TrainerOptions options, std::shared_ptr<const data::Dataset> train,
      std::shared_ptr<const data::Dataset> validation, std::shared_ptr<TeacherClient> teacher);

  // With several ranks, an error names this rank and says how to restart.
  // Stopped by `stop_requested`: OK with `preempted` set.
  absl::StatusOr<TrainResult> Run();

  models::Classifier& model() { return task_->classifier(); }
  // The feature-matching adapters; null without feature matching.
  FeatureAdapters* adapters() { return loop_->adapters(); }
  const TrainingState& state() const { return loop_->state(); }

 private:
  Trainer() = default;

  std::shared_ptr<ClassifierTask> task_;
  std::unique_ptr<TrainingLoop> loop_;
};

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_TRAINER_H_
