#include "trainer/classifier/distillation_loss.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace retort::trainer {

absl::Status DistillationLossOptions::Validate() const {
  if (!std::isfinite(temperature) || temperature <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--temperature must be finite and positive, got ", temperature));
  }
  if (!(alpha >= 0.0 && alpha <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("--alpha must be in [0, 1], got ", alpha));
  }
  return absl::OkStatus();
}

torch::Tensor KlDivergence(const torch::Tensor& log_p, const torch::Tensor& log_q) {
  // sum_c p_c (log p_c - log q_c); p_c = 0 rows contribute 0 (exp(-inf) = 0,
  // and log_softmax never returns -inf for finite logits).
  return (log_p.exp() * (log_p - log_q)).sum(/*dim=*/1).mean();
}

LossTerms DistillationLoss(const torch::Tensor& student_logits,
                           const torch::Tensor& teacher_log_probs, const torch::Tensor& labels,
                           const DistillationLossOptions& options) {
  LossTerms terms;
  terms.hard = torch::nn::functional::cross_entropy(student_logits, labels);
  if (options.alpha == 0.0) {
    terms.total = terms.hard;
    return terms;
  }
  const double t = options.temperature;
  torch::Tensor student_log_probs = torch::log_softmax(student_logits / t, /*dim=*/1);
  terms.soft = KlDivergence(teacher_log_probs.detach(), student_log_probs);
  terms.total = options.alpha * t * t * terms.soft + (1.0 - options.alpha) * terms.hard;
  return terms;
}

}  // namespace retort::trainer
