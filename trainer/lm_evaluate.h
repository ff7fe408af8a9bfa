// Evaluation of a language model on token sequences: next-token
// cross-entropy and perplexity, top-1 accuracy, and (given a teacher) how
// often the student's most likely next token is the teacher's.
#ifndef RETORT_TRAINER_LM_EVALUATE_H_
#define RETORT_TRAINER_LM_EVALUATE_H_

#include <cstdint>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "data/dataset.h"
#include "models/causal_lm.h"
#include "trainer/lm_teacher_client.h"

namespace retort::trainer {

struct LmEvalResult {
  int64_t sequences = 0;
  int64_t tokens = 0;
  double loss = 0;        // mean next-token cross-entropy, nats
  double perplexity = 0;  // exp(loss)
  double top1_accuracy = 0;
  double teacher_agreement =
      -1;  // share of tokens where argmax student == argmax teacher; -1 without a teacher
  nlohmann::json ToJson() const;
};

struct LmEvalOptions {
  int64_t batch_size = 16;
  int64_t max_sequences = 0;  // 0: the whole dataset
};

// Evaluates `model` (a Llama, a sliced one, ...; switched to eval mode and
// back) on the first max_sequences sequences of `dataset` (inputs and labels
// int64 [B, T]). `teacher` may be null.
absl::StatusOr<LmEvalResult> EvaluateLm(models::CausalLm& model, const data::Dataset& dataset,
                                        const LmEvalOptions& options,
                                        LmTeacherClient* teacher = nullptr);

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_LM_EVALUATE_H_
