// Trainer: trains one classifier on a dataset, with hard labels only or
// distilled from a teacher through a TeacherClient.
//
// Files in `out_dir`:
//   last.pt        the latest training checkpoint (every epoch end, and every
//                  `checkpoint_every_steps`); `resume` continues from it
//   best.pt        the checkpoint with the best validation accuracy so far
//   metrics.jsonl  one JSON object per logged step and per epoch
//
// A resumed run follows exactly the course of an uninterrupted one: same
// batches, same dropout and jitter draws, same parameters.
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
#include "trainer/distillation_loss.h"
#include "trainer/evaluate.h"
#include "trainer/optimizer.h"
#include "trainer/teacher_client.h"
#include "trainer/training_checkpoint.h"

namespace retort::trainer {

struct TrainerOptions {
  models::ModelSpec model;
  OptimizerOptions optimizer;
  DistillationLossOptions loss;  // used only when there is a teacher
  int64_t epochs = 10;
  int64_t batch_size = 128;
  uint64_t seed = 1;
  int64_t jitter_pixels = 0;    // random translation of inputs, per example
  double clip_grad_norm = 0.0;  // 0 disables clipping
  std::string out_dir;
  bool resume = false;                 // continue from out_dir/last.pt when it exists
  bool overwrite = false;              // start afresh even if out_dir holds a checkpoint
  int64_t checkpoint_every_steps = 0;  // 0: only at epoch ends
  int64_t log_every_steps = 100;       // metrics lines; 0 disables step lines
  // Stop (after writing last.pt) once this many steps are done; 0 runs to the
  // end. Lets tests interrupt a run at a chosen step.
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
  double train_seconds = 0;       // optimizer work only, summed over resumes
  double samples_per_second = 0;  // of this process's training work
  std::string best_checkpoint;
  std::string last_checkpoint;
};

class Trainer {
 public:
  // `teacher` may be null: then training uses hard labels only. Errors:
  // INVALID_ARGUMENT for bad options; FAILED_PRECONDITION when out_dir holds a
  // checkpoint and neither resume nor overwrite is set, or when the checkpoint
  // to resume does not match this run.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(
      TrainerOptions options, std::shared_ptr<const data::Dataset> train,
      std::shared_ptr<const data::Dataset> validation, std::shared_ptr<TeacherClient> teacher);

  absl::StatusOr<TrainResult> Run();

  models::Classifier& model() { return *model_; }
  const TrainingState& state() const { return state_; }

 private:
  Trainer() = default;
  absl::Status Resume(const std::string& path);
  absl::Status TrainStep(const std::vector<int64_t>& indices);
  absl::Status EndEpoch(int64_t epoch, double epoch_seconds);
  absl::Status WriteLast();

  TrainerOptions options_;
  std::shared_ptr<const data::Dataset> train_;
  std::shared_ptr<const data::Dataset> validation_;
  std::shared_ptr<TeacherClient> teacher_;
  std::shared_ptr<models::Classifier> model_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::unique_ptr<data::ShuffleSampler> sampler_;
  std::unique_ptr<MetricsWriter> metrics_;
  TrainingState state_;
  int64_t total_steps_ = 0;
  // Sums over the current epoch, for its summary line.
  double epoch_loss_sum_ = 0, epoch_soft_sum_ = 0, epoch_hard_sum_ = 0;
  int64_t epoch_steps_ = 0;
};

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_TRAINER_H_
