#include "trainer/lm/generation_eval.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/torch_status.h"
#include "models/generation.h"
#include "trainer/lm/on_policy.h"

namespace retort::trainer {

nlohmann::json GenerationEvalResult::ToJson() const {
  nlohmann::json j = {
      {"prompts", prompts}, {"answered", answered}, {"sampled_tokens", sampled_tokens}};
  if (exact_match >= 0) j["exact_match"] = exact_match;
  if (prefix_match >= 0) j["prefix_match"] = prefix_match;
  if (teacher_nll >= 0) j["teacher_nll"] = teacher_nll;
  return j;
}

AnswerMatch MatchAnswer(const std::string& output, const std::string& answer) {
  const std::string want(absl::StripAsciiWhitespace(answer));
  const std::string got(absl::StripAsciiWhitespace(output));
  const std::string first_line(absl::StripAsciiWhitespace(got.substr(0, got.find('\n'))));
  return {.exact = first_line == want, .prefix = absl::StartsWith(got, want)};
}

absl::StatusOr<GenerationEvalResult> EvaluateGenerations(
    models::CausalLm& model, const std::vector<PromptCase>& cases,
    const std::function<std::string(const std::vector<int64_t>&)>& decode,
    const GenerationEvalOptions& options, client::TeacherClient* teacher) {
  if (options.batch_size < 1) {
    return absl::InvalidArgumentError("the evaluation batch must hold at least 1 prompt");
  }
  GenerationEvalResult r;
  r.prompts = static_cast<int64_t>(cases.size());
  int64_t exact = 0, prefix = 0;
  double nll_sum = 0;
  for (size_t begin = 0; begin < cases.size(); begin += options.batch_size) {
    const size_t end = std::min(cases.size(), begin + static_cast<size_t>(options.batch_size));
    std::vector<std::vector<int64_t>> prompts;
    for (size_t i = begin; i < end; ++i) prompts.push_back(cases[i].prompt);
    // Greedy continuations against the answers.
    models::GenerationOptions greedy;
    greedy.max_new_tokens = options.max_new_tokens;
    greedy.temperature = 0;
    greedy.stop_token = options.stop_token;
    RETORT_ASSIGN_OR_RETURN(std::vector<std::vector<int64_t>> outputs,
                            models::Generate(model, prompts, greedy));
    for (size_t i = begin; i < end; ++i) {
      if (!cases[i].answer.has_value()) continue;
      std::vector<int64_t> ids = outputs[i - begin];
      if (!ids.empty() && ids.back() == options.stop_token) ids.pop_back();
      const AnswerMatch m = MatchAnswer(decode(ids), *cases[i].answer);
      ++r.answered;
      exact += m.exact;
      prefix += m.prefix;
    }
    if (teacher == nullptr) continue;
    // Sampled continuations, scored by the teacher.
    OnPolicyOptions sampling;
    sampling.rollout_tokens = options.max_new_tokens;
    sampling.rollout_temperature = options.sample_temperature;
    sampling.candidates = 1;
    RETORT_ASSIGN_OR_RETURN(Rollout rollout,
                            MakeRollout(model, prompts, sampling, /*ignore_index=*/-100,
                                        RolloutSeed(options.seed, static_cast<int64_t>(begin))));
    // A copy: the future holding the answer is a temporary.
    const absl::StatusOr<client::TeacherClient::Targets> scored =
        teacher
            ->SubmitTargets({.inputs = rollout.inputs,
                             .temperature = 1.0,
                             .hidden_layers = {},
                             .query_ids = rollout.query_ids.narrow(2, 0, 1).contiguous()})
            .get();
    if (!scored.ok()) return scored.status();
    if (!scored->query_log_probs.defined()) {
      return absl::FailedPreconditionError(
          "the teacher answered without log-probabilities at the student's tokens");
    }
    RETORT_RETURN_IF_ERROR(TorchCall("scoring samples", [&] {
      const torch::Tensor keep = rollout.labels.reshape({-1}) != -100;
      nll_sum -= scored->query_log_probs.select(1, 0).masked_select(keep).sum().item<double>();
      r.sampled_tokens += keep.sum().item<int64_t>();
    }));
  }
  if (r.answered > 0) {
    r.exact_match = static_cast<double>(exact) / static_cast<double>(r.answered);
    r.prefix_match = static_cast<double>(prefix) / static_cast<double>(r.answered);
  }
  if (teacher != nullptr && r.sampled_tokens > 0) {
    r.teacher_nll = nll_sum / static_cast<double>(r.sampled_tokens);
  }
  return r;
}

}  // namespace retort::trainer
