// TrainingLoop: the one training engine. Every model family is a Task
// (trainer/task.h) run by this loop; `retort train`, `retort distill`,
// `retort lm train` and the chains all go through it.
//
// What it does, for every task alike:
//   - steps, in epochs (evaluation, an epoch record and a checkpoint at each
//     epoch end) or as a step count (evaluation every `eval_every_steps`);
//   - the optimizer and its learning-rate schedule, gradient clipping;
//   - gradient accumulation over micro-batches (one optimizer step; the
//     all-reduce only in the last micro-batch's backward);
//   - data parallelism over a Communicator: each rank trains its share of
//     every global batch (ShuffleSampler with rank and world size),
//     gradients averaged by the communicator's GradientSync (c10d's DDP
//     Reducer), rank 0's weights broadcast at the start;
//   - teacher prefetch: the next `teacher_prefetch` steps' batches are drawn
//     and sent to the teacher before the current step trains;
//   - checkpoints (CheckpointStore, atomic; every rank writes its own file,
//     rank 0 commits) at epoch ends, every `checkpoint_every_steps`, at the
//     end, when stopped early, when the teacher gives out and when asked to
//     stop (preemption); exact resume from the newest complete one;
//   - metrics.jsonl (one JSON object per logged step, evaluation and epoch),
//     result.json and a progress line with rate and ETA.
//
// Determinism: a resumed run follows the course of an uninterrupted one bit
// for bit whatever the prefetch depth (same batches, same dropout draws, same
// parameters), given a teacher whose answers are deterministic.
//
// Not thread-safe: one thread calls Create and Run.
#ifndef RETORT_TRAINER_TRAINING_LOOP_H_
#define RETORT_TRAINER_TRAINING_LOOP_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "checkpoint/training_checkpoint.h"
#include "common/clock.h"
#include "trainer/feature_matching.h"
#include "trainer/optimizer.h"
#include "trainer/task.h"

namespace retort {
class MetricsWriter;
namespace data {
class ShuffleSampler;
}
}  // namespace retort

namespace retort::checkpoint {
class CheckpointStore;
}  // namespace retort::checkpoint

namespace retort::distributed {
class Communicator;
class GradientSync;
}  // namespace retort::distributed

namespace retort::trainer {

struct TrainingLoopOptions {
  OptimizerOptions optimizer;
  FeatureMatchOptions features;  // adapters between student and teacher layers
  // Length: `epochs` passes over the training set when > 0 (evaluation and a
  // checkpoint at each epoch end), else `steps` optimizer steps.
  int64_t epochs = 0;
  int64_t steps = 0;
  int64_t batch_size = 0;  // global rows per step, divided among the ranks
  uint64_t seed = 1;
  double clip_grad_norm = 0.0;     // 0 disables clipping
  int64_t accumulation_steps = 1;  // micro-batches per rank and step
  int64_t eval_every_steps = 0;    // 0: at epoch ends (epochs mode) and at the end
  bool ask_teacher = true;         // false: the teacher's answers are not needed
  std::string out_dir;
  bool resume = false;     // continue from the newest complete checkpoint, if any
  bool overwrite = false;  // start afresh even if out_dir holds checkpoints
  int64_t checkpoint_every_steps = 0;
  int keep_checkpoints = 3;  // at least 2
  int64_t teacher_prefetch = 4;
  int64_t log_every_steps = 100;  // 0: no step records
  // Stop (after a checkpoint) once this many steps are done; 0: run to the end.
  int64_t stop_after_steps = 0;
  // The settings that determine the course of training; a resumed run must
  // match them (the loop adds the world size and data sizes).
  nlohmann::json config;
  // Data parallelism: the ranks' communicator (null: this process alone).
  std::shared_ptr<distributed::Communicator> communicator;
  int64_t bucket_bytes = int64_t{25} << 20;  // gradient all-reduce buckets
  // Preemption: polled after every step; once it returns true on any rank,
  // every rank finishes that step, the run writes a checkpoint and Run
  // returns with `preempted` set. Null: never.
  std::function<bool()> stop_requested;
  // Test seam: called on every rank after it wrote its file of the
  // checkpoint of a step, before rank 0 commits it.
  std::function<void(int64_t step)> after_checkpoint_file_written;
  std::string label = "train";  // prefix of progress lines
  const Clock* clock = Clock::Real();

  absl::Status Validate() const;
  // Validate less the paths (out_dir), for front ends that check those
  // themselves.
  absl::Status ValidateSettings() const;
};

struct TrainingLoopResult {
  int64_t steps = 0;
  int64_t epochs = 0;               // complete passes over the training set
  int64_t units = 0;                // samples or tokens trained, resumes included
  double train_seconds = 0;         // summed over resumes
  double units_per_second = 0;      // of this process's steps, teacher waits included
  double teacher_wait_seconds = 0;  // of this process
  int64_t resumed_from_step = 0;
  std::string parameters_sha256;  // of the final parameters
  std::string last_checkpoint;    // the newest checkpoint directory
  nlohmann::json final_validation;
  double best_score = -1;  // with a task that keeps best.pt
  int64_t best_epoch = -1;
  // How the run ended: all steps done, stopped at `stop_after_steps`, or
  // asked to stop (stop_requested). A checkpoint of the last step exists in
  // every case; result.json and the task's export only for a completed run
  // or `stop_after_steps`.
  bool completed = false;
  bool preempted = false;
  nlohmann::json task_result;  // what the task's Export returned
  nlohmann::json ToJson(const char* unit) const;
};

class TrainingLoop {
 public:
  // Builds the optimizer (and feature adapters), joins the ranks, and
  // resumes when asked. Errors: INVALID_ARGUMENT for bad options;
  // FAILED_PRECONDITION when out_dir holds a checkpoint and neither resume
  // nor overwrite is set, or when the checkpoint does not match this run.
  static absl::StatusOr<std::unique_ptr<TrainingLoop>> Create(TrainingLoopOptions options,
                                                              std::shared_ptr<Task> task);
  ~TrainingLoop();

  // With several ranks, an error names this rank and says how to restart (a
  // peer that died makes the others' collectives fail within the
  // communicator's timeout). A teacher that gives out fails the run after a
  // checkpoint of the last completed step (one rank).
  absl::StatusOr<TrainingLoopResult> Run();

  Task& task() { return *task_; }
  FeatureAdapters* adapters() { return adapters_.get(); }
  const checkpoint::TrainingState& state() const { return state_; }
  int64_t total_steps() const { return total_steps_; }

 private:
  TrainingLoop() = default;
  struct Means;

  absl::Status Resume();
  absl::StatusOr<TrainingLoopResult> RunSteps();
  absl::Status TrainStep(TaskBatch& batch, const std::vector<int64_t>& indices,
                         bool* teacher_failed);
  absl::StatusOr<Means> AggregateMeans();
  absl::StatusOr<TaskEvaluation> EvaluateAndRecord(int64_t epoch);
  absl::Status EndEpoch(int64_t epoch, double epoch_seconds);
  absl::Status WriteCheckpoint();
  absl::Status CheckRanksAgree();
  // True on every rank once stop_requested returned true on any (a
  // collective with several ranks).
  absl::StatusOr<bool> StopRequested();
  std::vector<torch::Tensor> TrainedParameters();
  checkpoint::AdapterState Adapters() { return {adapters_.get(), adapter_optimizer_.get()}; }
  std::string RankFile() const;
  bool Leader() const { return rank_ == 0; }

  TrainingLoopOptions options_;
  std::shared_ptr<Task> task_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::shared_ptr<FeatureAdapters> adapters_;  // null without feature matching
  std::unique_ptr<torch::optim::Optimizer> adapter_optimizer_;
  std::unique_ptr<data::ShuffleSampler> sampler_;  // at the next step to train
  std::unique_ptr<MetricsWriter> metrics_;
  std::unique_ptr<checkpoint::CheckpointStore> checkpoints_;
  std::unique_ptr<distributed::GradientSync>
      gradient_sync_;  // with a communicator of world size > 1
  int rank_ = 0;
  int world_size_ = 1;
  checkpoint::TrainingState state_;
  int64_t total_steps_ = 0;
  int64_t checkpointed_step_ = -1;
  std::string last_checkpoint_dir_;
  int64_t last_evaluation_step_ = -1;
  double last_step_loss_ = 0, last_hard_ = 0, last_soft_ = 0, last_feature_ = 0;
  double teacher_wait_seconds_ = 0;  // this process
  double last_teacher_wait_ = 0;     // the latest step's
};

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_TRAINING_LOOP_H_
