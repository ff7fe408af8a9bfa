// On-policy distillation: the student samples continuations of prompts, the
// teacher scores every sampled token, and the student minimises a per-token
// divergence on its own samples (GKD, Agarwal et al. 2024; MiniLLM; Qwen3's
// recipe). A share lambda (`fraction`) of the steps trains this way, the
// rest on ordinary corpus batches (GKD's mixture).
//
// A rollout row is prompt + continuation. Its inputs are that sequence less
// its last token, right-padded; position t predicts token t + 1, and only
// positions predicting a generated token count (labels elsewhere are
// ignore_index). The teacher is asked, besides its usual answer, for its
// log-probabilities at query ids per position: the sampled token first,
// then the student's own top `candidates` tokens there.
//
// Losses, at temperature T (scaled by T^2 like every soft term), over the
// generated positions:
//   kReverseKlSampled  the sampled-token estimator of KL(q || p): the
//                      surrogate sg(log q(y) - log p(y)) * log q(y) for the
//                      sampled y, whose gradient is in expectation that of
//                      the reverse KL when rollouts are sampled from q at T
//                      (rollout temperature = T, no top-k/top-p cut).
//   kReverseKl, kJensenShannon
//                      the divergence between the teacher's and student's
//                      distributions collapsed onto the teacher's top k
//                      joined with the student's candidates, plus one tail
//                      bucket (the bucket form of LmDistillationLoss, exact
//                      on what it covers). Buckets of the student's
//                      candidates alone hid the teacher's answer in the tail
//                      whenever the student missed it (docs/results.md).
//   kForwardKl         KL(p || q) on the teacher's top-k with tail, as
//                      off-policy distillation, on the student's samples.
//
// Determinism: whether a step is on-policy and the generator seed of its
// rollouts are functions of (run seed, step), and rollouts are generated
// from the weights the step starts from (staleness 0) or, with staleness 1,
// from the previous step's (a checkpoint keeps the rollout generated ahead),
// so a resumed run reproduces an uninterrupted one bit for bit.
#ifndef RETORT_TRAINER_LM_ON_POLICY_H_
#define RETORT_TRAINER_LM_ON_POLICY_H_

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "models/causal_lm.h"
#include "teacher/top_k.h"
#include "trainer/lm/lm_distillation_loss.h"

namespace retort::trainer {

enum class OnPolicyLoss { kReverseKlSampled, kReverseKl, kForwardKl, kJensenShannon };

// "rkl_sampled", "rkl", "fkl", "jsd"; INVALID_ARGUMENT naming them otherwise.
absl::StatusOr<OnPolicyLoss> ParseOnPolicyLoss(const std::string& name);
std::string OnPolicyLossName(OnPolicyLoss loss);

struct OnPolicyOptions {
  double fraction = 0;  // lambda: the share of steps trained on-policy; 0: off
  // Prompts: tokenized prompts (a prompts file), row i of a batch taking
  // prompt (index mod count); empty: the first `prompt_tokens` tokens of
  // each training sequence.
  std::vector<std::vector<int64_t>> prompts;
  int64_t prompt_tokens = 16;
  int64_t rollout_tokens = 32;     // tokens sampled per prompt
  double rollout_temperature = 1;  // sampling; see kReverseKlSampled
  int64_t rollout_top_k = 0;
  double rollout_top_p = 1;
  OnPolicyLoss loss = OnPolicyLoss::kReverseKlSampled;
  // Student candidates the teacher scores per position (at most the whole
  // vocabulary, which makes rkl and jsd exact).
  int64_t candidates = 16;
  // 0: each step's rollout comes from the weights it starts from. 1: from
  // the previous step's, generated while that step trains (LmTask).
  int64_t max_staleness = 0;

  bool enabled() const { return fraction > 0; }
  // INVALID_ARGUMENT naming the flag for values out of range, prompts that
  // leave no room in `max_positions` for the rollout, or max_staleness other
  // than 0 or 1.
  absl::Status Validate(int64_t vocab_size, int64_t max_positions, int64_t sequence_length) const;
};

// Whether `step` trains on-policy: a uniform draw from (seed, step) below
// `fraction`. Every rank and every resume agree.
bool IsOnPolicyStep(const OnPolicyOptions& options, uint64_t seed, int64_t step);
// The generator seed of `step`'s rollouts.
uint64_t RolloutSeed(uint64_t seed, int64_t step);

struct Rollout {
  torch::Tensor inputs;     // int64 [B, L], right-padded with id 0
  torch::Tensor labels;     // int64 [B, L]: generated token predicted, or ignore_index
  torch::Tensor query_ids;  // int64 [B, L, 1 + candidates]: label (0 if masked), candidates
  int64_t generated = 0;    // tokens generated, all rows
};

// Samples continuations of `prompts` from `model` (no gradient; the model's
// training mode is kept) and lays them out as above; candidates are the
// student's most likely tokens at `temperature` at each position.
absl::StatusOr<Rollout> MakeRollout(models::CausalLm& model,
                                    const std::vector<std::vector<int64_t>>& prompts,
                                    const OnPolicyOptions& options, int64_t ignore_index,
                                    uint64_t seed);

// The on-policy loss of student logits [B, L, V] (or [N, V]) on rollout
// positions: `labels` and `query_ids` as in Rollout (rows matching the
// logits), `query_log_probs` float32 [N, 1 + candidates] the teacher's
// log-probabilities at the query ids, `teacher_top_k` the teacher's top-k
// answer (kForwardKl only). `options` gives T and js_beta (alpha is taken
// as 1: generated tokens have no labels). `hard` is the student's mean
// negative log-likelihood of its own samples; `soft` the divergence
// estimate (for kReverseKlSampled, mean log q(y) - log p(y)).
LmLossTerms OnPolicyDistillationLoss(const torch::Tensor& student_logits,
                                     const torch::Tensor& labels, const torch::Tensor& query_ids,
                                     const torch::Tensor& query_log_probs,
                                     const teacher::TopKLogProbs* teacher_top_k, OnPolicyLoss loss,
                                     const LmLossOptions& options);

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_LM_ON_POLICY_H_
