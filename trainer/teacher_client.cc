#include "trainer/teacher_client.h"

#include "absl/strings/str_cat.h"

namespace retort::trainer {

TeacherClient::TargetsFuture TeacherClient::SubmitTargets(
    const torch::Tensor& inputs, double temperature,
    const std::vector<std::string>& hidden_layers) {
  if (!hidden_layers.empty()) {
    std::promise<absl::StatusOr<Targets>> promise;
    promise.set_value(absl::UnimplementedError(
        absl::StrCat("this teacher client cannot return hidden states (asked for ",
                     hidden_layers.size(), " layers); use a teacher server or checkpoint")));
    return promise.get_future().share();
  }
  LogProbsFuture log_probs = Submit(inputs, temperature);
  // Deferred: the conversion runs in the caller's wait, without a thread.
  return std::async(std::launch::deferred,
                    [log_probs]() -> absl::StatusOr<Targets> {
                      const absl::StatusOr<torch::Tensor>& answer = log_probs.get();
                      if (!answer.ok()) return answer.status();
                      return Targets{.log_probs = *answer, .hidden = {}};
                    })
      .share();
}

}  // namespace retort::trainer
