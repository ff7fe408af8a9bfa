// The knowledge-distillation loss of Hinton, Vinyals and Dean (2015):
//
//   loss = alpha * T^2 * KL(p_t || p_s) + (1 - alpha) * CE(y, softmax(z_s))
//
// where p_t = softmax(z_t / T) is the teacher's softened distribution,
// p_s = softmax(z_s / T) the student's, and CE the ordinary cross-entropy at
// temperature 1. T^2 keeps the soft term's gradients on the scale of the hard
// term's as T changes. Everything is computed in log space (log_softmax), so
// it is finite for any finite logits.
#ifndef RETORT_TRAINER_CLASSIFIER_DISTILLATION_LOSS_H_
#define RETORT_TRAINER_CLASSIFIER_DISTILLATION_LOSS_H_

#include <torch/torch.h>

#include "absl/status/status.h"

namespace retort::trainer {

struct DistillationLossOptions {
  double temperature = 1.0;
  double alpha = 0.5;  // weight of the soft term; 0 is plain cross-entropy

  // INVALID_ARGUMENT unless T is finite and positive and alpha in [0, 1].
  absl::Status Validate() const;
};

struct LossTerms {
  torch::Tensor total;  // scalar, differentiable
  torch::Tensor soft;   // KL(p_t || p_s), batch mean, unscaled; undefined if alpha == 0
  torch::Tensor hard;   // cross-entropy, batch mean
};

// `student_logits` [B, C]; `teacher_log_probs` [B, C] = log_softmax(z_t / T)
// (may be undefined when alpha == 0); `labels` [B] int64.
LossTerms DistillationLoss(const torch::Tensor& student_logits,
                           const torch::Tensor& teacher_log_probs, const torch::Tensor& labels,
                           const DistillationLossOptions& options);

// KL(p || q) per row, batch-averaged, from log-probabilities.
torch::Tensor KlDivergence(const torch::Tensor& log_p, const torch::Tensor& log_q);

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_CLASSIFIER_DISTILLATION_LOSS_H_
