// The per-token loss of language-model distillation against a teacher that
// sends, for each position, its top k log-probabilities at temperature T and
// the log of the mass outside them (teacher::TopKLogProbs):
//
//   loss = alpha * T^2 * D(p || q) + (1 - alpha) * CE(y, softmax(z))
//
// averaged over the positions whose label is not `ignore_index`.
//
// Buckets. The student's distribution at temperature T, q = softmax(z / T)
// over the whole vocabulary, is collapsed onto the teacher's k + 1 buckets:
// the k classes the teacher sent, and one tail bucket holding every other
// class. The teacher's buckets are p_i = exp(values_i) and
// p_tail = exp(tail_log_mass); the student's are q_i = q[indices_i] and
// q_tail = 1 - sum_i q_i, computed as the tail's own sum in float64 (a
// shifted logsumexp over the classes outside the top k where that sum is
// below 1e-30), so log q_tail is accurate even when q_tail is far below
// float epsilon, where log(1 - sum_i q_i) would cancel to log(0). D is a
// divergence between these two distributions over k + 1 outcomes. The
// student's side and its gradient come from BucketLogSoftmax
// (bucket_log_softmax.h), which reads the [N, V] logits a few times
// instead of a dozen.
//
// Repeated ids. A row may name an id more than once (sampled targets pad
// with id 0 at -inf; on-policy buckets join the teacher's top k with the
// student's candidates): the id's teacher mass is the sum over its copies,
// and it and the student's mass are shared equally among them, which
// leaves every divergence here that of the distinct ids. Then there may be
// more than V entries, and the tail bucket is kept (empty, -inf, where the
// distinct ids cover the vocabulary).
//
// This is exact for the teacher's mass: nothing is renormalised. Every bit
// of probability the teacher sent is accounted for, the top k as sent and
// the rest in the tail bucket, so p and q are both proper distributions and
// D is zero exactly when the student agrees with the teacher on every bucket
// (and, being a divergence on a coarsening of the vocabulary, never more than
// the full-vocabulary divergence; equal to it when k = V). The alternative,
// keeping the top k and renormalising them to sum to one, inflates the
// teacher's head and teaches the student that everything outside the top k
// has probability zero; DESIGN.md records that top-k distillation without
// tail handling loses the benefit of distillation below k ~ 25, which is
// where the wire format's bandwidth savings are. With the tail bucket, small
// k keeps the teacher's confidence (how much mass is in the head) even though
// it drops the shape of the tail.
//
// When k = V (a dense answer sent as top-k: `indices` a permutation of the
// vocabulary in every row, tail -inf) there is no tail bucket, and forward
// KL is the ordinary dense KL(p_t || softmax(z / T)) of trainer::KlDivergence.
//
// Numerics. Computed in float32 (bfloat16 and float16 logits are upcast;
// float64 logits stay float64, which the tests use for reference checks).
// Teacher buckets with p = 0 contribute 0 to forward KL and to the p-side of
// JS; log p is clamped from below at kLmLogProbFloor wherever the divergence
// needs it finite (reverse KL, JS's mixture, skew KL's mixture), so a student
// that puts mass where the teacher has none pays a large, finite price
// rather than +inf. Loss and gradients are finite for any finite logits.
#ifndef RETORT_TRAINER_LM_DISTILLATION_LOSS_H_
#define RETORT_TRAINER_LM_DISTILLATION_LOSS_H_

#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "teacher/top_k.h"

namespace retort::trainer {

// The divergence D(p || q) of the soft term, p the teacher's buckets and q
// the student's (natural log throughout, so values are in nats):
//   kForwardKl     KL(p || q) = sum p (log p - log q); mean-seeking, the
//                  classic distillation loss.
//   kReverseKl     KL(q || p) = sum q (log q - log p); mode-seeking (Gu et
//                  al. 2024, MiniLLM).
//   kJensenShannon b KL(p || m) + (1 - b) KL(q || m) with m = b p + (1 - b) q
//                  and b = LmLossOptions::js_beta (generalised JSD, GKD's
//                  beta); b = 1/2 is the symmetric JS, bounded by log 2.
//   kSkewKl        KL(p || s p + (1 - s) q) with s = LmLossOptions::skew
//                  (Ko et al. 2024, DistiLLM); s = 0 is forward KL, and s > 0
//                  bounds the loss and its gradient where q is near 0.
enum class Divergence { kForwardKl, kReverseKl, kJensenShannon, kSkewKl };

// "fkl" or "forward_kl", "rkl" or "reverse_kl", "js", "skew_kl" (flag
// values); INVALID_ARGUMENT naming the valid ones otherwise.
absl::StatusOr<Divergence> ParseDivergence(const std::string& name);
// "forward_kl", "reverse_kl", "js", "skew_kl"; ParseDivergence accepts them.
std::string DivergenceName(Divergence divergence);

// The lower clamp on teacher log-probabilities where a divergence needs log p
// finite (see above). exp of it is 0 in float32 and float64.
inline constexpr double kLmLogProbFloor = -1e4;

struct LmLossOptions {
  double temperature = 1.0;
  double alpha = 0.5;  // weight of the soft term; 1 - alpha on next-token cross-entropy
  Divergence divergence = Divergence::kForwardKl;
  double skew = 0.1;            // kSkewKl: KL(p || skew p + (1 - skew) q)
  double js_beta = 0.5;         // kJensenShannon: the teacher's weight b in the mixture
  int64_t ignore_index = -100;  // label of padding positions

  // INVALID_ARGUMENT unless T is finite and positive, alpha in [0, 1],
  // skew in [0, 1) and js_beta in (0, 1).
  absl::Status Validate() const;
};

struct LmLossTerms {
  torch::Tensor total;  // scalar, differentiable with respect to the student's logits
  torch::Tensor soft;  // D(p || q), mean over unmasked positions, unscaled; undefined if alpha == 0
  torch::Tensor hard;  // cross-entropy at T = 1, mean over unmasked positions
  int64_t tokens = 0;  // unmasked positions
};

// `student_logits` [N, V] or [B, T, V] (any floating dtype); `teacher` the
// top-k answer for the same positions in row-major order (N = B * T rows,
// `indices` and `values` [N, k] with k <= V, `tail_log_mass` [N]); it may be
// null when alpha == 0. `labels` [N] or [B, T] int64, `ignore_index` at
// padding. Teacher rows at padding positions are never read beyond being
// skipped (they may hold anything). With every position padding the terms
// are zeros (connected to the logits, so backward() works), not NaN.
// Throws c10::Error (TORCH_CHECK) on invalid options or mismatched shapes,
// a teacher index or label outside [0, V), or a null teacher with alpha > 0.
LmLossTerms LmDistillationLoss(const torch::Tensor& student_logits,
                               const teacher::TopKLogProbs* teacher, const torch::Tensor& labels,
                               const LmLossOptions& options);

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_LM_DISTILLATION_LOSS_H_
