// Evaluation of a language model on token sequences: next-token
// cross-entropy and perplexity, top-1 accuracy, and (given a teacher) how
// often the student's most likely next token is the teacher's.
#ifndef RETORT_TRAINER_LM_EVALUATE_H_
#define RETORT_TRAINER_LM_EVALUATE_H_

#include <cstdint>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "client/teacher_client.h"
#include "data/dataset.h"
#include "models/causal_lm.h"

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
  // Data parallelism: this call evaluates share `rank` of `world_size`
  // (contiguous) of those sequences; the caller sums the ranks' counts.
  int rank = 0;
  int world_size = 1;
};

// Evaluates `model` (a Llama, a sliced one, ...; switched to eval mode and
// back) on the first max_sequences sequences of `dataset` (inputs and labels
// int64 [B, T]), or this rank's share of them. `teacher` may be null. A
// share with no sequences gives a result of zero sequences and tokens.
absl::StatusOr<LmEvalResult> EvaluateLm(models::CausalLm& model, const data::Dataset& dataset,
                                        const LmEvalOptions& options,
                                        client::TeacherClient* teacher = nullptr);

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_LM_EVALUATE_H_
