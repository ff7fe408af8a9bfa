#include "client/teacher_client.h"

namespace retort::client {

torch::Tensor TeacherClient::Targets::Dense(int64_t classes) const {
  return sparse() ? top_k.ToDense(classes) : log_probs;
}

teacher::TopKLogProbs TeacherClient::Targets::TopK() const {
  return sparse() ? top_k : teacher::DenseAsTopK(log_probs);
}

TeacherClient::LogProbsFuture TeacherClient::Submit(const torch::Tensor& inputs,
                                                    double temperature) {
  TargetsFuture targets = SubmitTargets(inputs, temperature, {});
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

}  // namespace retort::client
