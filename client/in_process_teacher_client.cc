#include "client/in_process_teacher_client.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

#include "common/status_macros.h"
#include "common/torch_status.h"
#include "teacher/request_validation.h"
#include "teacher/sampled_targets.h"

namespace retort::client {
namespace {

// What a server checks of a token request, for a teacher in this process:
// int64 [B, T] ids within the vocabulary, a temperature in range.
absl::Status ValidateTokens(const v1::TeacherFingerprint& fingerprint, const torch::Tensor& tokens,
                            double temperature) {
  if (!std::isfinite(temperature) || temperature < teacher::kMinTemperature ||
      temperature > teacher::kMaxTemperature) {
    return absl::InvalidArgumentError(absl::StrCat("temperature ", temperature, " is not in [",
                                                   teacher::kMinTemperature, ", ",
                                                   teacher::kMaxTemperature, "]"));
  }
  if (tokens.scalar_type() != torch::kInt64 || tokens.dim() != 2 || tokens.numel() == 0) {
    return absl::InvalidArgumentError(
        "teacher token inputs must be a non-empty int64 [B, T] tensor");
  }
  const int64_t low = tokens.min().item<int64_t>();
  const int64_t high = tokens.max().item<int64_t>();
  if (low < 0 || high >= fingerprint.num_classes()) {
    return absl::InvalidArgumentError(absl::StrCat("token id ", low < 0 ? low : high,
                                                   " is outside the teacher's vocabulary of ",
                                                   fingerprint.num_classes()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TeacherClient::Targets> InProcessTeacherClient::Answer(const Request& request) {
  const torch::Tensor& inputs = request.inputs;
  const double temperature = request.temperature;
  const std::vector<std::string>& hidden_layers = request.hidden_layers;
  const v1::TeacherFingerprint& fingerprint = teacher_->fingerprint();
  if (inputs.defined() && !inputs.is_floating_point()) {
    // Token ids of a language model.
    RETORT_RETURN_IF_ERROR(ValidateTokens(fingerprint, inputs, temperature));
  } else {
    RETORT_RETURN_IF_ERROR(
        teacher::ValidateTeacherInput(fingerprint, inputs, temperature, teacher_->max_batch()));
  }
  RETORT_RETURN_IF_ERROR(teacher::ValidateHiddenLayers(fingerprint, hidden_layers));
  RETORT_RETURN_IF_ERROR(ValidateQueryIds(inputs, request.query_ids, fingerprint.num_classes()));
  RETORT_ASSIGN_OR_RETURN(teacher::TeacherOutput out, teacher_->Forward(inputs, hidden_layers));
  return TorchCall("teacher log-probabilities", [&] {
    torch::NoGradGuard no_grad;
    const int64_t classes = out.logits.size(-1);
    // A row per input, or per position of a language model's [B, T, V].
    torch::Tensor log_probs =
        torch::log_softmax(out.logits / temperature, /*dim=*/-1).reshape({-1, classes});
    Targets targets{
        .log_probs = {}, .top_k = {}, .hidden = std::move(out.hidden), .query_log_probs = {}};
    if (request.query_ids.defined()) {
      targets.query_log_probs =
          log_probs.gather(1, request.query_ids.reshape({log_probs.size(0), -1}));
    }
    if (options_.samples > 0) {
      targets.top_k =
          teacher::SampleTargets(log_probs, options_.samples, teacher::RowKeys(inputs)).ToTopK();
    } else if (options_.top_k > 0 && options_.top_k < classes) {
      targets.top_k = teacher::TopK(log_probs, options_.top_k);
    } else {
      targets.log_probs = std::move(log_probs);
    }
    return targets;
  });
}

TeacherClient::TargetsFuture InProcessTeacherClient::SubmitTargets(const Request& request) {
  std::promise<absl::StatusOr<Targets>> promise;
  promise.set_value(Answer(request));
  return promise.get_future().share();
}

}  // namespace retort::client
