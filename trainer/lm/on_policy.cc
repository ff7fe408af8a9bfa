#include "trainer/lm/on_policy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/torch_status.h"
#include "models/generation.h"

namespace retort::trainer {
namespace {

// SplitMix64: a well-mixed 64-bit value of (seed, step, salt).
uint64_t Mix(uint64_t seed, int64_t step, uint64_t salt) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(step) * 0xBF58476D1CE4E5B9ULL +
               salt * 0x94D049BB133111EBULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// log(1 - sum exp(values)) per row: the mass outside the buckets, -inf when
// they hold all of it (to rounding).
torch::Tensor TailLogMass(const torch::Tensor& values) {
  const torch::Tensor total = values.logsumexp(1);
  return torch::where(total < 0, torch::log(-torch::expm1(total.clamp_max(-1e-30))),
                      torch::full_like(total, -std::numeric_limits<float>::infinity()));
}

// `values` with every repeat of an id in its row (after the first) at -inf.
torch::Tensor FirstCopies(const torch::Tensor& ids, const torch::Tensor& values) {
  const int64_t k = ids.size(1);
  if (k < 2) return values;
  const auto [sorted, order] = ids.sort(/*dim=*/1, /*descending=*/false);
  const torch::Tensor repeat_sorted =
      torch::cat({torch::zeros({ids.size(0), 1}, torch::kBool).to(ids.device()),
                  sorted.narrow(1, 1, k - 1) == sorted.narrow(1, 0, k - 1)},
                 1);
  const torch::Tensor repeat = torch::zeros_like(repeat_sorted).scatter(1, order, repeat_sorted);
  return values.masked_fill(repeat, -std::numeric_limits<float>::infinity());
}

}  // namespace

absl::StatusOr<OnPolicyLoss> ParseOnPolicyLoss(const std::string& name) {
  if (name == "rkl_sampled") return OnPolicyLoss::kReverseKlSampled;
  if (name == "rkl") return OnPolicyLoss::kReverseKl;
  if (name == "fkl") return OnPolicyLoss::kForwardKl;
  if (name == "jsd") return OnPolicyLoss::kJensenShannon;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown on-policy loss \"", name, "\"; valid: rkl_sampled, rkl, fkl, jsd"));
}

std::string OnPolicyLossName(OnPolicyLoss loss) {
  switch (loss) {
    case OnPolicyLoss::kReverseKlSampled:
      return "rkl_sampled";
    case OnPolicyLoss::kReverseKl:
      return "rkl";
    case OnPolicyLoss::kForwardKl:
      return "fkl";
    case OnPolicyLoss::kJensenShannon:
      return "jsd";
  }
  return "unknown";
}

absl::Status OnPolicyOptions::Validate(int64_t vocab_size, int64_t max_positions,
                                       int64_t sequence_length) const {
  if (!(fraction >= 0 && fraction <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--on_policy_fraction is ", fraction, "; it must be in [0, 1]"));
  }
  if (!enabled()) return absl::OkStatus();
  if (max_staleness != 0 && max_staleness != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_staleness=", max_staleness,
        ": 0 (strictly on-policy) or 1 (the next step's rollout generated while this one "
        "trains) are built"));
  }
  if (rollout_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--rollout_tokens is ", rollout_tokens, "; sample at least 1 token"));
  }
  if (candidates < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--on_policy_candidates is ", candidates, "; it must be at least 1"));
  }
  models::GenerationOptions g;
  g.temperature = rollout_temperature;
  g.top_k = rollout_top_k;
  g.top_p = rollout_top_p;
  if (rollout_temperature <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("--rollout_temperature is ", rollout_temperature,
                                                   "; on-policy rollouts are sampled (> 0)"));
  }
  RETORT_RETURN_IF_ERROR(models::ValidateGenerationOptions(g, vocab_size));
  int64_t longest = prompt_tokens;
  if (prompts.empty()) {
    if (prompt_tokens < 1 || prompt_tokens > sequence_length) {
      return absl::InvalidArgumentError(absl::StrCat("--prompt_tokens is ", prompt_tokens,
                                                     "; it must be in [1, ", sequence_length,
                                                     "] (the training sequences' length)"));
    }
  } else {
    longest = 0;
    for (size_t i = 0; i < prompts.size(); ++i) {
      if (prompts[i].empty()) {
        return absl::InvalidArgumentError(absl::StrCat("prompt ", i, " holds no tokens"));
      }
      longest = std::max<int64_t>(longest, prompts[i].size());
    }
  }
  if (longest + rollout_tokens > max_positions) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompts of up to ", longest, " tokens plus --rollout_tokens=", rollout_tokens,
                     " exceed the model's ", max_positions, " positions; shorten one of them"));
  }
  return absl::OkStatus();
}

bool IsOnPolicyStep(const OnPolicyOptions& options, uint64_t seed, int64_t step) {
  if (options.fraction <= 0) return false;
  if (options.fraction >= 1) return true;
  const double u = static_cast<double>(Mix(seed, step, 1) >> 11) * 0x1.0p-53;
  return u < options.fraction;
}

uint64_t RolloutSeed(uint64_t seed, int64_t step) { return Mix(seed, step, 2); }

absl::StatusOr<Rollout> MakeRollout(models::CausalLm& model,
                                    const std::vector<std::vector<int64_t>>& prompts,
                                    const OnPolicyOptions& options, int64_t ignore_index,
                                    uint64_t seed) {
  models::GenerationOptions g;
  g.max_new_tokens = options.rollout_tokens;
  g.temperature = options.rollout_temperature;
  g.top_k = options.rollout_top_k;
  g.top_p = options.rollout_top_p;
  g.seed = seed;
  RETORT_ASSIGN_OR_RETURN(std::vector<std::vector<int64_t>> continuations,
                          models::Generate(model, prompts, g));
  return TorchCall("laying out rollouts", [&] {
    Rollout r;
    const int64_t b = static_cast<int64_t>(prompts.size());
    int64_t length = 1;
    for (int64_t i = 0; i < b; ++i) {
      length = std::max<int64_t>(length, prompts[i].size() + continuations[i].size() - 1);
    }
    r.inputs = torch::zeros({b, length}, torch::kInt64);
    r.labels = torch::full({b, length}, ignore_index, torch::kInt64);
    auto in = r.inputs.accessor<int64_t, 2>();
    auto lab = r.labels.accessor<int64_t, 2>();
    for (int64_t i = 0; i < b; ++i) {
      std::vector<int64_t> seq = prompts[i];
      const int64_t p = static_cast<int64_t>(seq.size());
      seq.insert(seq.end(), continuations[i].begin(), continuations[i].end());
      for (int64_t t = 0; t + 1 < static_cast<int64_t>(seq.size()); ++t) {
        in[i][t] = seq[t];
        if (t + 1 >= p) lab[i][t] = seq[t + 1];
      }
      r.generated += static_cast<int64_t>(continuations[i].size());
    }
    torch::Tensor candidates;
    {
      torch::InferenceMode guard;
      const torch::Tensor logits = model.forward(r.inputs).to(torch::kFloat32);
      candidates = std::get<1>(logits.topk(std::min(options.candidates, logits.size(-1)), -1));
    }
    const torch::Tensor sampled = r.labels.clamp_min(0).masked_fill(r.labels == ignore_index, 0);
    r.query_ids = torch::cat({sampled.unsqueeze(2), candidates.clone()}, 2);
    return r;
  });
}

LmLossTerms OnPolicyDistillationLoss(const torch::Tensor& student_logits,
                                     const torch::Tensor& labels, const torch::Tensor& query_ids,
                                     const torch::Tensor& query_log_probs,
                                     const teacher::TopKLogProbs* teacher_top_k, OnPolicyLoss loss,
                                     const LmLossOptions& options) {
  LmLossOptions o = options;
  o.alpha = 1.0;
  if (loss == OnPolicyLoss::kForwardKl) {
    TORCH_CHECK(teacher_top_k != nullptr, "forward KL needs the teacher's top-k answer");
    o.divergence = Divergence::kForwardKl;
    return LmDistillationLoss(student_logits, teacher_top_k, labels, o);
  }
  const int64_t vocab = student_logits.size(-1);
  const torch::Tensor logits = student_logits.reshape({-1, vocab});
  const torch::Tensor flat_labels = labels.reshape({-1});
  const torch::Tensor ids = query_ids.reshape({flat_labels.size(0), -1});
  const torch::Tensor teacher_lp = query_log_probs.reshape({flat_labels.size(0), -1});
  TORCH_CHECK(ids.size(1) >= 2 && teacher_lp.sizes().equals(ids.sizes()),
              "query ids and their log-probabilities must be [N, 1 + candidates]");
  if (loss == OnPolicyLoss::kReverseKl || loss == OnPolicyLoss::kJensenShannon) {
    o.divergence =
        loss == OnPolicyLoss::kReverseKl ? Divergence::kReverseKl : Divergence::kJensenShannon;
    // Buckets: the teacher's top k joined with the student's candidates, so
    // the teacher's likely tokens are never hidden in the tail when the
    // student misses them (a repeated id splits its mass; see
    // LmDistillationLoss).
    torch::Tensor bucket_ids = ids.narrow(1, 1, ids.size(1) - 1);
    torch::Tensor values = teacher_lp.narrow(1, 1, ids.size(1) - 1);
    if (teacher_top_k != nullptr && teacher_top_k->indices.size(1) > 0) {
      bucket_ids =
          torch::cat({teacher_top_k->indices.to(bucket_ids.device(), torch::kLong), bucket_ids}, 1);
      values =
          torch::cat({teacher_top_k->values.to(values.device(), values.scalar_type()), values}, 1);
    }
    // An id's teacher mass is the sum over its copies: keep it on one.
    values = FirstCopies(bucket_ids, values);
    teacher::TopKLogProbs buckets{
        .indices = bucket_ids, .values = values, .tail_log_mass = TailLogMass(values)};
    return LmDistillationLoss(logits, &buckets, flat_labels, o);
  }
  // The sampled-token estimator of reverse KL.
  const torch::Tensor mask = flat_labels != options.ignore_index;
  const torch::Tensor weight = mask.to(torch::kFloat32);
  const int64_t tokens = mask.sum().item<int64_t>();
  const double denominator = std::max<int64_t>(tokens, 1);
  const torch::Tensor sampled = flat_labels.masked_fill(mask.logical_not(), 0).unsqueeze(1);
  const torch::Tensor log_q =
      torch::log_softmax(logits.to(torch::kFloat32) / options.temperature, 1)
          .gather(1, sampled)
          .squeeze(1);
  const torch::Tensor log_p =
      teacher_lp.select(1, 0).to(torch::kFloat32).clamp_min(kLmLogProbFloor);
  const torch::Tensor gap = (log_q - log_p).detach();
  LmLossTerms terms;
  terms.tokens = tokens;
  terms.soft = (gap * weight).sum() / denominator;
  terms.total =
      options.temperature * options.temperature * (gap * log_q * weight).sum() / denominator;
  const torch::Tensor nll =
      -torch::log_softmax(logits.to(torch::kFloat32), 1).gather(1, sampled).squeeze(1);
  terms.hard = ((nll * weight).sum() / denominator).detach();
  return terms;
}

}  // namespace retort::trainer
