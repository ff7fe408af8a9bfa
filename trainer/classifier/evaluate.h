// Classification accuracy and loss of a model over a whole dataset.
#ifndef RETORT_TRAINER_CLASSIFIER_EVALUATE_H_
#define RETORT_TRAINER_CLASSIFIER_EVALUATE_H_

#include <cstdint>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "data/dataset.h"
#include "models/classifier.h"

namespace retort::trainer {

struct EvalResult {
  int64_t examples = 0;
  int64_t correct = 0;
  double mean_loss = 0;  // cross-entropy

  int64_t errors() const { return examples - correct; }
  double accuracy() const {
    return examples == 0 ? 0.0 : static_cast<double>(correct) / static_cast<double>(examples);
  }
  nlohmann::json ToJson() const;
};

// Runs `model` in eval mode over every example of `dataset` in order, in
// batches of `batch_size`, and restores the model's training mode afterwards.
absl::StatusOr<EvalResult> Evaluate(models::Classifier& model, const data::Dataset& dataset,
                                    int64_t batch_size = 1000);

// The same over examples [begin, end) of `dataset` (one rank's share).
absl::StatusOr<EvalResult> EvaluateRange(models::Classifier& model, const data::Dataset& dataset,
                                         int64_t begin, int64_t end, int64_t batch_size = 1000);

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_CLASSIFIER_EVALUATE_H_
