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
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/metrics_writer.h"
#include "data/dataset.h"
#include "data/sampler.h"
#include "models/classifier.h"
#include "trainer/batch_pipeline.h"
#include "trainer/checkpoint_store.h"
#include "trainer/communicator.h"
#include "trainer/distillation_loss.h"
#include "trainer/evaluate.h"
#include "trainer/feature_matching.h"
#include "trainer/optimizer.h"
#include "trainer/teacher_client.h"
#include "trainer/training_checkpoint.h"

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
  int64_t jitter_pixels = 0;    // random translation of inputs, per example
  double clip_grad_norm = 0.0;  // 0 disables clipping
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
  // Testing only: SIGKILL this process while writing the checkpoint of this
  // step, after its data file and before its manifest (0: never).
  int64_t crash_while_checkpointing_step = 0;
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
  nlohmann::json ToJson() const;
};

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

  // With several ranks, an error names this rank and says how to restart
  // (a peer that died makes the others' collectives fail within the
  // communicator's timeout).
  absl::StatusOr<TrainResult> Run();

  models::Classifier& model() { return *model_; }
  // The feature-matching adapters; null without feature matching.
  FeatureAdapters* adapters() { return adapters_.get(); }
  const TrainingState& state() const { return state_; }

 private:
  Trainer() = default;
  absl::Status Resume();
  absl::StatusOr<TrainResult> RunSteps();
  // Sums of this epoch so far, averaged over the ranks (a collective: every
  // rank calls it at the same step).
  struct EpochMeans {
    double loss = 0, hard = 0, soft = 0, step_loss = 0, teacher_wait_ms = 0, feature = 0;
  };
  absl::StatusOr<EpochMeans> AggregateEpochMeans();
  AdapterState Adapters() { return {adapters_.get(), adapter_optimizer_.get()}; }
  // Trains one prepared step. Sets *teacher_failed (and changes nothing)
  // when the teacher's answer is an error.
  absl::Status TrainStep(BatchPipeline::Prepared& prepared, bool* teacher_failed);
  absl::Status EndEpoch(int64_t epoch, double epoch_seconds);
  // The validation set, each rank evaluating its 1/W of it and the counts
  // summed over the ranks (a collective).
  absl::StatusOr<EvalResult> EvaluateValidation();
  absl::Status WriteCheckpoint();
  // INTERNAL unless this rank's parameters equal rank 0's (a checksum of
  // each tensor, compared bit for bit). A collective.
  absl::Status CheckRanksAgree();
  // This rank's file in a checkpoint directory.
  std::string RankFile() const;
  bool Leader() const { return rank_ == 0; }

  TrainerOptions options_;
  std::shared_ptr<const data::Dataset> train_;
  std::shared_ptr<const data::Dataset> validation_;
  std::shared_ptr<TeacherClient> teacher_;
  std::shared_ptr<models::Classifier> model_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  // Feature matching: the adapters and their optimizer (null without).
  std::shared_ptr<FeatureAdapters> adapters_;
  std::unique_ptr<torch::optim::Optimizer> adapter_optimizer_;
  std::unique_ptr<data::ShuffleSampler> sampler_;
  std::unique_ptr<MetricsWriter> metrics_;
  std::unique_ptr<CheckpointStore> checkpoints_;
  std::unique_ptr<GradientSync> gradient_sync_;  // with a communicator of world size > 1
  int rank_ = 0;
  int world_size_ = 1;
  TrainingState state_;
  int64_t total_steps_ = 0;
  int64_t checkpointed_step_ = -1;
  std::string last_checkpoint_dir_;
  double last_step_loss_ = 0;
  double teacher_wait_seconds_ = 0;  // this process
  double last_teacher_wait_ = 0;     // the latest step's
};

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_TRAINER_H_
