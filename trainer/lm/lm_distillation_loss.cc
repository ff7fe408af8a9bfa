#include "trainer/lm/lm_distillation_loss.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "trainer/lm/bucket_log_softmax.h"

namespace retort::trainer {
namespace {

constexpr char kValidDivergences[] = "fkl (forward_kl), rkl (reverse_kl), js, skew_kl";

// How often each entry's id occurs in its row, [n, k] int64, or undefined
// when no row repeats an id (the usual case, checked on a sorted copy).
torch::Tensor RepeatedIdCopies(const torch::Tensor& indices) {
  const int64_t k = indices.size(1);
  if (k < 2 || indices.size(0) == 0) return torch::Tensor();
  const torch::Tensor sorted = std::get<0>(indices.sort(/*dim=*/1));
  if (!(sorted.narrow(1, 1, k - 1) == sorted.narrow(1, 0, k - 1)).any().item<bool>()) {
    return torch::Tensor();
  }
  return (indices.unsqueeze(2) == indices.unsqueeze(1)).sum(2);
}

// Per-row D(p || q) [n] from bucket log-probabilities [n, k(+1)]; either
// may hold -inf (no mass: an empty tail), which counts as zero mass.
torch::Tensor BucketDivergence(const torch::Tensor& log_p, const torch::Tensor& raw_log_q,
                               const LmLossOptions& options) {
  torch::Tensor p = log_p.exp();  // exactly 0 where log_p = -inf
  torch::Tensor log_p_floor = log_p.clamp_min(kLmLogProbFloor);
  // Finite where q = 0, so 0 * log q is 0 and its gradient too.
  torch::Tensor log_q = raw_log_q.clamp_min(kLmLogProbFloor);
  switch (options.divergence) {
    case Divergence::kForwardKl:
      // p = 0 terms: 0 * finite = 0, and their gradient -p = 0.
      return (p * (log_p_floor - log_q)).sum(/*dim=*/1);
    case Divergence::kReverseKl:
      return (log_q.exp() * (log_q - log_p_floor)).sum(/*dim=*/1);
    case Divergence::kJensenShannon: {
      // Generalised: b KL(p || m) + (1 - b) KL(q || m), m = b p + (1 - b) q.
      const double b = options.js_beta;
      torch::Tensor log_m = torch::logaddexp(log_p_floor + std::log(b), log_q + std::log1p(-b));
      return (b * p * (log_p_floor - log_m) + (1 - b) * log_q.exp() * (log_q - log_m))
          .sum(/*dim=*/1);
    }
    case Divergence::kSkewKl: {
      const double s = options.skew;
      if (s == 0.0) return (p * (log_p_floor - log_q)).sum(/*dim=*/1);
      torch::Tensor log_mix = torch::logaddexp(log_p_floor + std::log(s), log_q + std::log1p(-s));
      return (p * (log_p_floor - log_mix)).sum(/*dim=*/1);
    }
  }
  TORCH_CHECK(false, "unknown divergence ", static_cast<int>(options.divergence));
  return torch::Tensor();
}

}  // namespace

absl::StatusOr<Divergence> ParseDivergence(const std::string& name) {
  if (name == "fkl" || name == "forward_kl") return Divergence::kForwardKl;
  if (name == "rkl" || name == "reverse_kl") return Divergence::kReverseKl;
  if (name == "js") return Divergence::kJensenShannon;
  if (name == "skew_kl") return Divergence::kSkewKl;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown divergence \"", name, "\"; valid: ", kValidDivergences));
}

std::string DivergenceName(Divergence divergence) {
  switch (divergence) {
    case Divergence::kForwardKl:
      return "forward_kl";
    case Divergence::kReverseKl:
      return "reverse_kl";
    case Divergence::kJensenShannon:
      return "js";
    case Divergence::kSkewKl:
      return "skew_kl";
  }
  return absl::StrCat("divergence(", static_cast<int>(divergence), ")");
}

absl::Status LmLossOptions::Validate() const {
  if (!std::isfinite(temperature) || temperature <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--temperature must be finite and positive, got ", temperature));
  }
  if (!(alpha >= 0.0 && alpha <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("--alpha must be in [0, 1], got ", alpha));
  }
  if (!(skew >= 0.0 && skew < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("--skew must be in [0, 1), got ", skew));
  }
  if (!(js_beta > 0.0 && js_beta < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("--js_beta must be in (0, 1), got ", js_beta));
  }
  return absl::OkStatus();
}

LmLossTerms LmDistillationLoss(const torch::Tensor& student_logits,
                               const teacher::TopKLogProbs* teacher, const torch::Tensor& labels,
                               const LmLossOptions& options) {
  const absl::Status valid = options.Validate();
  TORCH_CHECK(valid.ok(), std::string(valid.message()));
  TORCH_CHECK(student_logits.dim() == 2 || student_logits.dim() == 3,
              "student logits must be [N, V] or [B, T, V], got ", student_logits.sizes());
  TORCH_CHECK(labels.dim() == student_logits.dim() - 1 &&
                  labels.sizes().equals(student_logits.sizes().slice(0, labels.dim())),
              "labels ", labels.sizes(), " do not match student logits ", student_logits.sizes());
  TORCH_CHECK(labels.scalar_type() == torch::kLong, "labels must be int64");
  const int64_t vocab = student_logits.size(-1);
  const bool soft = options.alpha > 0.0;
  TORCH_CHECK(!soft || teacher != nullptr, "alpha > 0 needs the teacher's log-probabilities");

  // float32, or float64 when given float64.
  const torch::ScalarType dtype =
      student_logits.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  torch::Tensor logits = student_logits.reshape({-1, vocab}).to(dtype);
  torch::Tensor flat_labels = labels.reshape({-1}).to(logits.device());
  const int64_t positions = logits.size(0);

  // Only the unmasked rows take part, so padding rows (and whatever the
  // teacher put there) cannot reach the loss or its gradient.
  torch::Tensor keep = (flat_labels != options.ignore_index).nonzero().reshape({-1});
  const int64_t n = keep.size(0);
  const bool all_kept = n == positions;  // the usual case: no [N, V] copy
  if (!all_kept) logits = logits.index_select(0, keep);
  torch::Tensor kept_labels = all_kept ? flat_labels : flat_labels.index_select(0, keep);
  if (n > 0) {
    TORCH_CHECK(kept_labels.min().item<int64_t>() >= 0 && kept_labels.max().item<int64_t>() < vocab,
                "a label is outside [0, ", vocab, ")");
  }
  const double denominator = static_cast<double>(std::max<int64_t>(n, 1));

  LmLossTerms terms;
  terms.tokens = n;
  // Sum / max(n, 1): the mean over unmasked rows, and 0 (still connected to
  // the logits) when there are none.
  auto hard_from_log_softmax = [&] {
    return -torch::log_softmax(logits, /*dim=*/1).gather(1, kept_labels.unsqueeze(1)).sum() /
           denominator;
  };
  if (!soft) {
    terms.hard = hard_from_log_softmax();
    terms.total = terms.hard;
    return terms;
  }

  TORCH_CHECK(teacher->indices.dim() == 2 && teacher->indices.size(0) == positions &&
                  teacher->values.sizes().equals(teacher->indices.sizes()) &&
                  teacher->tail_log_mass.dim() == 1 && teacher->tail_log_mass.size(0) == positions,
              "teacher top-k (indices ", teacher->indices.sizes(), ", values ",
              teacher->values.sizes(), ", tail ", teacher->tail_log_mass.sizes(),
              ") does not match ", positions, " positions");
  const int64_t k = teacher->indices.size(1);
  torch::Tensor keep_on_teacher = keep.to(teacher->indices.device());
  torch::Tensor indices =
      (all_kept ? teacher->indices : teacher->indices.index_select(0, keep_on_teacher))
          .to(logits.device(), torch::kLong);
  if (n > 0 && k > 0) {
    TORCH_CHECK(indices.min().item<int64_t>() >= 0 && indices.max().item<int64_t>() < vocab,
                "a teacher index is outside [0, ", vocab, ")");
  }
  torch::Tensor log_p = teacher->values.index_select(0, keep_on_teacher).to(logits.device(), dtype);
  // A repeated id (sampled targets pad with id 0 at -inf; on-policy buckets
  // join two id lists) holds the sum of its copies' teacher mass, shared
  // equally among them as its student mass is, which leaves every
  // divergence here that of the distinct ids.
  torch::Tensor copies = RepeatedIdCopies(indices);
  if (copies.defined()) {
    copies = copies.to(dtype);
    const torch::Tensor same = indices.unsqueeze(2) == indices.unsqueeze(1);
    log_p = ((same.to(dtype) * log_p.exp().unsqueeze(1)).sum(2) / copies).log();
  }
  TORCH_CHECK(k <= vocab || copies.defined(), "the teacher sent k = ", k,
              " ids per position, more than the vocabulary's ", vocab);
  // No tail bucket only when the ids are the whole vocabulary once.
  const bool tail_bucket = k < vocab || copies.defined();
  if (tail_bucket) {
    torch::Tensor tail = teacher->tail_log_mass.index_select(0, keep_on_teacher)
                             .to(logits.device(), dtype)
                             .unsqueeze(1);
    log_p = torch::cat({log_p, tail}, /*dim=*/1);
  }
  log_p = log_p.detach();

  // At T = 1 the labels' log-probabilities come from the same softmax.
  const double t = options.temperature;
  const bool fused_labels = t == 1.0;
  BucketLogProbs student = BucketLogSoftmax(logits, indices, tail_bucket,
                                            fused_labels ? kept_labels : torch::Tensor(), t);
  terms.hard = fused_labels ? -student.labels.sum() / denominator : hard_from_log_softmax();
  torch::Tensor log_q = student.buckets;
  if (copies.defined()) {
    log_q = torch::cat({log_q.narrow(1, 0, k) - copies.log(), log_q.narrow(1, k, 1)}, 1);
  }
  terms.soft = BucketDivergence(log_p, log_q, options).sum() / denominator;
  terms.total = options.alpha * t * t * terms.soft + (1.0 - options.alpha) * terms.hard;
  return terms;
}

}  // namespace retort::trainer
