// Optimizers and the learning-rate schedule.
#ifndef RETORT_TRAINER_OPTIMIZER_H_
#define RETORT_TRAINER_OPTIMIZER_H_

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"

namespace retort::trainer {

struct OptimizerOptions {
  std::string kind = "adamw";     // "adamw" or "sgd" (with momentum)
  double learning_rate = 1e-3;    // peak learning rate
  double momentum = 0.9;          // sgd only
  double weight_decay = 0.0;      // decoupled for adamw, L2 for sgd
  double warmup_fraction = 0.05;  // share of all steps spent warming up linearly
  double min_lr_ratio = 0.0;      // cosine decays to learning_rate * this

  absl::Status Validate() const;
};

absl::StatusOr<std::unique_ptr<torch::optim::Optimizer>> CreateOptimizer(
    const OptimizerOptions& options, const std::vector<torch::Tensor>& parameters);

// Learning rate at `step` (0-based) of `total_steps`: linear warmup from
// lr/warmup_steps to lr over the first warmup_fraction of the steps, then a
// half cosine from lr down to lr * min_lr_ratio at the last step.
double LearningRateAt(const OptimizerOptions& options, int64_t step, int64_t total_steps);

// Sets the learning rate of every parameter group.
void SetLearningRate(torch::optim::Optimizer& optimizer, double learning_rate);

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_OPTIMIZER_H_
