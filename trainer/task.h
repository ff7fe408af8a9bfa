// Task: what one model family brings to the one training loop
// (trainer/training_loop.h). The loop owns everything every run shares:
// steps and epochs, the optimizer and its schedule, gradient accumulation,
// the communicator and gradient all-reduce, teacher prefetch, the
// log/eval/checkpoint/stop cadence, exact resume, checkpoint-on-teacher-
// failure, preemption, metrics.jsonl, result.json and progress. A task
// supplies what differs: the model, how a step's batch is drawn and sent to
// the teacher, the loss on a slice of it, evaluation and the export at the
// end. ClassifierTask and LmTask are the two today.
//
// Contract. The loop calls Prepare for steps ahead of the one it trains (in
// step order, at most `teacher_prefetch` ahead), then for the step it trains
// AwaitTeacher once and Loss once per micro-batch, each on a disjoint range
// of the batch's rows. A batch's contents depend only on (indices, step):
// the loop's prefetch depth and any resume point leave training unchanged.
// Every tensor a task creates for the step lives on its device().
//
// Not thread-safe: the loop's thread calls every method.
#ifndef RETORT_TRAINER_TASK_H_
#define RETORT_TRAINER_TASK_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "checkpoint/training_checkpoint.h"
#include "models/hidden_layer.h"
#include "retort/v1/teacher.pb.h"
#include "trainer/feature_matching.h"

namespace retort::distributed {
class Communicator;
}  // namespace retort::distributed

namespace retort::trainer {

// One step's batch as the task prepared it, its teacher answer (if any) on
// the way. Task-defined; the loop only counts its rows.
class TaskBatch {
 public:
  virtual ~TaskBatch() = default;
  virtual int64_t rows() const = 0;
};

// The loss of one micro-batch: means over its rows (or tokens).
struct TaskLoss {
  torch::Tensor objective;  // scalar, differentiable: what backward runs on
  torch::Tensor hard;       // scalar: the label term
  torch::Tensor soft;       // scalar: the teacher term; undefined without one
  torch::Tensor feature;    // scalar: feature matching, unweighted; undefined without
};

// One evaluation on the validation set, summed over the ranks.
struct TaskEvaluation {
  nlohmann::json json;  // what metrics.jsonl and result.json show
  double score = 0;     // higher is better (best.pt, when the task keeps one)
  std::string summary;  // for the progress log, e.g. "val acc 0.8912 (1088 errors)"
};

// OK for a device this process can compute on; FAILED_PRECONDITION naming
// the device and the way out otherwise (a CUDA device with a LibTorch built
// without CUDA, or an index past the devices there are).
absl::Status CheckDevice(const torch::Device& device);

class Task {
 public:
  virtual ~Task() = default;

  // Where the model and every step tensor live.
  virtual torch::Device device() const { return torch::kCPU; }
  // What a row of a batch is worth in the unit the progress line and
  // result.json count: 1 sample, or sequence-length tokens.
  virtual const char* unit() const = 0;  // "samples" or "tokens"
  virtual int64_t units_per_row() const = 0;
  virtual int64_t train_size() const = 0;  // rows of the training set

  virtual torch::nn::Module& model() = 0;
  // The student's layers feature matching may tap.
  virtual std::vector<models::HiddenLayer> HiddenLayers() = 0;
  // Null without a teacher; else its fingerprint.
  virtual bool has_teacher() const = 0;
  virtual absl::StatusOr<v1::TeacherFingerprint> TeacherFingerprint() = 0;

  // Draws rows `indices` of the training set for step `step` and, when
  // `ask_teacher`, sends them to the teacher (with `hidden_layers` for
  // feature matching).
  virtual std::unique_ptr<TaskBatch> Prepare(const std::vector<int64_t>& indices, int64_t step,
                                             bool ask_teacher,
                                             const std::vector<std::string>& hidden_layers) = 0;
  // Waits for the teacher's answer to `batch`; its error means the teacher
  // gave out (the loop checkpoints and stops).
  virtual absl::Status AwaitTeacher(TaskBatch& batch) = 0;
  // Forward and loss over rows [begin, end) of `batch`; `adapters` (null
  // without feature matching) add the feature term with weight
  // `feature_weight`.
  virtual absl::StatusOr<TaskLoss> Loss(TaskBatch& batch, int64_t begin, int64_t end,
                                        FeatureAdapters* adapters, double feature_weight) = 0;

  // Called after the step's last backward pass and before the optimizer
  // changes the weights: work the task runs beside the step that reads them
  // (an on-policy rollout generated ahead) must finish here.
  virtual absl::Status BeforeWeightUpdate() { return absl::OkStatus(); }

  // Evaluates on the validation set: rank `rank` of `world_size` takes its
  // share and `communicator` (null for one rank) sums the counts. A
  // collective: every rank calls it at the same step.
  virtual absl::StatusOr<TaskEvaluation> Evaluate(distributed::Communicator* communicator, int rank,
                                                  int world_size) = 0;
  // Whether the loop keeps best.pt (the best-scoring evaluation's weights).
  virtual bool keeps_best() const { return false; }

  // Training checkpoints in the task's format (the architecture it records).
  virtual absl::Status SaveCheckpoint(const std::string& path, torch::optim::Optimizer& optimizer,
                                      const checkpoint::TrainingState& state,
                                      const checkpoint::AdapterState& adapters) = 0;
  virtual absl::StatusOr<checkpoint::TrainingState> LoadCheckpoint(
      const std::string& path, torch::optim::Optimizer& optimizer,
      const checkpoint::AdapterState& adapters) = 0;

  // At the end of a completed run, on rank 0 only: writes what the task
  // ships (e.g. the model in Hugging Face's layout) under `out_dir` and
  // returns fields for result.json.
  virtual absl::StatusOr<nlohmann::json> Export(const std::string& out_dir) = 0;
};

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_TASK_H_
