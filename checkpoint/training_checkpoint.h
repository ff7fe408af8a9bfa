// Training checkpoints: everything needed to continue a run exactly where it
// stopped — model, optimizer state, step, sampler position, the RNG state of
// LibTorch's default generator (dropout and jitter draw from it), the best
// validation accuracy so far, the teacher's fingerprint and the run's
// configuration. Built on models/checkpoint_file (atomic writes).
#ifndef RETORT_CHECKPOINT_TRAINING_CHECKPOINT_H_
#define RETORT_CHECKPOINT_TRAINING_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "data/sampler.h"

namespace retort::checkpoint {

struct TrainingState {
  int64_t step = 0;  // optimizer steps completed
  data::SamplerState sampler;
  double best_validation_accuracy = -1;
  int64_t best_epoch = -1;
  double train_seconds = 0;            // wall time spent training so far
  std::string teacher_weights_sha256;  // empty when training without a teacher
  nlohmann::json config;               // the resolved run configuration
  nlohmann::json last_validation;      // EvalResult JSON of the latest validation
  // Sums over the current epoch so far, for its summary line.
  double epoch_loss_sum = 0, epoch_soft_sum = 0, epoch_hard_sum = 0, epoch_feature_sum = 0;
  int64_t epoch_steps = 0;
  // Tensors a task carries from one step to the next (an on-policy run's
  // rollout generated ahead), saved and restored with the checkpoint.
  std::map<std::string, torch::Tensor> task_tensors;
};

// Feature-matching adapters (trainer/feature_matching) and their optimizer:
// part of a training checkpoint when set (both or neither), never of the
// student's weights.
struct AdapterState {
  torch::nn::Module* module = nullptr;
  torch::optim::Optimizer* optimizer = nullptr;
};

// Keys of `now` (a run configuration) whose values differ in `stored` or are
// missing there: why a checkpoint cannot be resumed by this run.
std::vector<std::string> ConfigDifferences(const nlohmann::json& stored, const nlohmann::json& now);

// OK when `loaded` (read from `path`) can be continued by a run of `config`
// distilling from teacher weights `teacher_weights_sha256` (empty: no
// teacher); FAILED_PRECONDITION listing the settings that differ, or naming
// both teachers, otherwise.
absl::Status CheckResumable(const std::string& path, const TrainingState& loaded,
                            const nlohmann::json& config,
                            const std::string& teacher_weights_sha256);

// Writes model, optimizer, state, the current default-generator state and
// the adapters, if any. `model_json` describes the model's architecture (a
// classifier's ModelSpec, a Llama's shape) and is stored with it.
absl::Status SaveTrainingCheckpoint(const std::string& path, torch::nn::Module& model,
                                    const nlohmann::json& model_json,
                                    torch::optim::Optimizer& optimizer, const TrainingState& state,
                                    const AdapterState& adapters = {});
// Restores model and optimizer (and the adapters, when set) in place and
// returns the state. Restores the default generator when `restore_rng` is
// set. Errors name the file and say what does not match: a checkpoint of
// another architecture than `model_json` is FAILED_PRECONDITION; missing
// optimizer state, missing or different adapters likewise.
absl::StatusOr<TrainingState> LoadTrainingCheckpoint(
    const std::string& path, torch::nn::Module& model, const nlohmann::json& model_json,
    torch::optim::Optimizer& optimizer, bool restore_rng = true, const AdapterState& adapters = {});

}  // namespace retort::checkpoint

#endif  // RETORT_CHECKPOINT_TRAINING_CHECKPOINT_H_
