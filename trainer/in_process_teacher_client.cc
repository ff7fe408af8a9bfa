#include "trainer/in_process_teacher_client.h"

#include <utility>

#include "common/status_macros.h"
#include "common/torch_status.h"
#include "teacher/request_validation.h"

namespace retort::trainer {

absl::StatusOr<TeacherClient::Targets> InProcessTeacherClient::Answer(
    const torch::Tensor& inputs, double temperature,
    const std::vector<std::string>& hidden_layers) {
  const v1::TeacherFingerprint& fingerprint = teacher_->fingerprint();
  RETORT_RETURN_IF_ERROR(
      teacher::ValidateTeacherInput(fingerprint, inputs, temperature, teacher_->max_batch()));
  RETORT_RETURN_IF_ERROR(teacher::ValidateHiddenLayers(fingerprint, hidden_layers));
  RETORT_ASSIGN_OR_RETURN(teacher::TeacherOutput out, teacher_->Forward(inputs, hidden_layers));
  return TorchCall("teacher log-probabilities", [&] {
    return Targets{.log_probs = torch::log_softmax(out.logits / temperature, /*dim=*/1),
                   .hidden = std::move(out.hidden)};
  });
}

TeacherClient::TargetsFuture InProcessTeacherClient::SubmitTargets(
    const torch::Tensor& inputs, double temperature,
    const std::vector<std::string>& hidden_layers) {
  std::promise<absl::StatusOr<Targets>> promise;
  promise.set_value(Answer(inputs, temperature, hidden_layers));
  return promise.get_future().share();
}

}  // namespace retort::trainer
