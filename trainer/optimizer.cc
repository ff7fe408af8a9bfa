#include "trainer/optimizer.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace retort::trainer {

absl::Status OptimizerOptions::Validate() const {
  if (kind != "adamw" && kind != "sgd") {
    return absl::InvalidArgumentError(
        absl::StrCat("--optimizer must be adamw or sgd, got '", kind, "'"));
  }
  if (!(learning_rate > 0 && std::isfinite(learning_rate))) {
    return absl::InvalidArgumentError(
        absl::StrCat("--lr must be positive and finite, got ", learning_rate));
  }
  if (!(momentum >= 0 && momentum < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("--momentum must be in [0, 1), got ", momentum));
  }
  if (!(weight_decay >= 0 && std::isfinite(weight_decay))) {
    return absl::InvalidArgumentError(
        absl::StrCat("--weight_decay must be non-negative, got ", weight_decay));
  }
  if (!(warmup_fraction >= 0 && warmup_fraction < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--warmup must be in [0, 1), got ", warmup_fraction));
  }
  if (!(min_lr_ratio >= 0 && min_lr_ratio <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--min_lr_ratio must be in [0, 1], got ", min_lr_ratio));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<torch::optim::Optimizer>> CreateOptimizer(
    const OptimizerOptions& options, const std::vector<torch::Tensor>& parameters) {
  absl::Status valid = options.Validate();
  if (!valid.ok()) return valid;
  if (options.kind == "sgd") {
    return std::make_unique<torch::optim::SGD>(parameters,
                                               torch::optim::SGDOptions(options.learning_rate)
                                                   .momentum(options.momentum)
                                                   .weight_decay(options.weight_decay));
  }
  return std::make_unique<torch::optim::AdamW>(
      parameters,
      torch::optim::AdamWOptions(options.learning_rate).weight_decay(options.weight_decay));
}

double LearningRateAt(const OptimizerOptions& options, int64_t step, int64_t total_steps) {
  const double peak = options.learning_rate;
  const int64_t warmup = static_cast<int64_t>(options.warmup_fraction * total_steps);
  if (step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const int64_t decay_steps = total_steps - warmup;
  if (decay_steps <= 1) return peak;
  double progress = static_cast<double>(step - warmup) / static_cast<double>(decay_steps - 1);
  if (progress > 1) progress = 1;
  const double floor = peak * options.min_lr_ratio;
  return floor + (peak - floor) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

void SetLearningRate(torch::optim::Optimizer& optimizer, double learning_rate) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(learning_rate);
}

}  // namespace retort::trainer
