// Evaluation of what a language model generates for prompts: exact and
// prefix match of its greedy continuations against reference answers, and
// the teacher's mean negative log-likelihood of its sampled continuations
// (how likely the teacher finds what the student writes; the quantity
// on-policy distillation lowers).
#ifndef RETORT_TRAINER_LM_GENERATION_EVAL_H_
#define RETORT_TRAINER_LM_GENERATION_EVAL_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "client/teacher_client.h"
#include "models/causal_lm.h"

namespace retort::trainer {

struct PromptCase {
  std::vector<int64_t> prompt;        // token ids, not empty
  std::optional<std::string> answer;  // the reference, when the prompts file has one
};

struct GenerationEvalOptions {
  int64_t max_new_tokens = 32;
  int64_t stop_token = -1;  // generation of a row stops after it (e.g. end of sequence)
  int64_t batch_size = 16;  // prompts generated together
  uint64_t seed = 1;        // of the sampled continuations
  double sample_temperature = 1.0;
};

struct GenerationEvalResult {
  int64_t prompts = 0;
  int64_t answered = 0;      // prompts with a reference answer
  double exact_match = -1;   // share whose greedy output, up to its first newline, is the answer
  double prefix_match = -1;  // share whose greedy output starts with the answer
  double teacher_nll = -1;   // nats per sampled token; -1 without a teacher
  int64_t sampled_tokens = 0;
  nlohmann::json ToJson() const;
};

// `decode` turns ids into text (the tokenizer's). Whitespace around outputs
// and answers is ignored. `teacher` may be null (then no NLL); it must
// answer query ids. The model is switched to eval mode and back.
absl::StatusOr<GenerationEvalResult> EvaluateGenerations(
    models::CausalLm& model, const std::vector<PromptCase>& cases,
    const std::function<std::string(const std::vector<int64_t>&)>& decode,
    const GenerationEvalOptions& options, client::TeacherClient* teacher = nullptr);

// Whether `output` (a decoded continuation) matches `answer` exactly (up to
// the output's first newline) and as a prefix, whitespace around ignored.
struct AnswerMatch {
  bool exact = false, prefix = false;
};
AnswerMatch MatchAnswer(const std::string& output, const std::string& answer);

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_LM_GENERATION_EVAL_H_
