#include "client/teacher_client.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace retort::client {

torch::Tensor TeacherClient::Targets::Dense(int64_t classes) const {
  return sparse() ? top_k.ToDense(classes) : log_probs;
}

teacher::TopKLogProbs TeacherClient::Targets::TopK() const {
  return sparse() ? top_k : teacher::DenseAsTopK(log_probs);
}

TeacherClient::LogProbsFuture TeacherClient::Submit(const torch::Tensor& inputs,
                                                    double temperature) {
  TargetsFuture targets = SubmitTargets(
      {.inputs = inputs, .temperature = temperature, .hidden_layers = {}, .query_ids = {}});
  // A top-k answer spreads its tail over the teacher's classes.
  absl::StatusOr<v1::TeacherFingerprint> fingerprint = Fingerprint();
  const int64_t classes = fingerprint.ok() ? fingerprint->num_classes() : 0;
  // Deferred: the conversion runs in the caller's wait, without a thread.
  return std::async(std::launch::deferred,
                    [targets, classes]() -> absl::StatusOr<torch::Tensor> {
                      const absl::StatusOr<Targets>& answer = targets.get();
                      if (!answer.ok()) return answer.status();
                      return answer->Dense(classes);
                    })
      .share();
}

absl::StatusOr<torch::Tensor> TeacherClient::LogProbs(const torch::Tensor& inputs,
                                                      double temperature) {
  return Submit(inputs, temperature).get();
}

absl::Status ValidateQueryIds(const torch::Tensor& inputs, const torch::Tensor& query_ids,
                              int64_t classes) {
  if (!query_ids.defined()) return absl::OkStatus();
  if (!inputs.defined() || inputs.is_floating_point() || inputs.dim() != 2) {
    return absl::InvalidArgumentError("query ids are for token models with inputs [B, T]");
  }
  if (query_ids.scalar_type() != torch::kInt64 || query_ids.dim() != 3 ||
      query_ids.size(0) != inputs.size(0) || query_ids.size(1) != inputs.size(1) ||
      query_ids.size(2) < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "query ids must be int64 [", inputs.size(0), ", ", inputs.size(1), ", m >= 1], not ",
        query_ids.scalar_type(), " [", absl::StrJoin(query_ids.sizes(), ", "), "]"));
  }
  if (query_ids.numel() > 0) {
    const int64_t low = query_ids.min().item<int64_t>(), high = query_ids.max().item<int64_t>();
    if (low < 0 || high >= classes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "query id ", low < 0 ? low : high, " is outside the vocabulary [0, ", classes, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace retort::client
