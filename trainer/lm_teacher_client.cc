#include "trainer/lm_teacher_client.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/torch_status.h"
#include "teacher/request_validation.h"

namespace retort::trainer {
namespace {

LmTeacherClient::Future Ready(absl::StatusOr<teacher::TopKLogProbs> value) {
  std::promise<absl::StatusOr<teacher::TopKLogProbs>> promise;
  promise.set_value(std::move(value));
  return promise.get_future().share();
}

}  // namespace

LmTeacherClient::TargetsFuture LmTeacherClient::SubmitTargets(
    const torch::Tensor& tokens, double temperature,
    const std::vector<std::string>& hidden_layers) {
  if (!hidden_layers.empty()) {
    std::promise<absl::StatusOr<Targets>> promise;
    promise.set_value(
        absl::UnimplementedError("this language-model teacher client cannot return hidden states"));
    return promise.get_future().share();
  }
  Future log_probs = Submit(tokens, temperature);
  return std::async(std::launch::deferred,
                    [log_probs]() -> absl::StatusOr<Targets> {
                      const absl::StatusOr<teacher::TopKLogProbs>& a = log_probs.get();
                      if (!a.ok()) return a.status();
                      return Targets{.log_probs = *a, .hidden = {}};
                    })
      .share();
}

absl::StatusOr<LmTeacherClient::Targets> InProcessLmTeacher::Answer(
    const torch::Tensor& tokens, double temperature,
    const std::vector<std::string>& hidden_layers) {
  RETORT_RETURN_IF_ERROR(teacher::ValidateHiddenLayers(teacher_->fingerprint(), hidden_layers));
  RETORT_ASSIGN_OR_RETURN(teacher::TeacherOutput out, teacher_->Forward(tokens, hidden_layers));
  return TorchCall("teacher log-probabilities", [&] {
    torch::InferenceMode guard;
    const int64_t vocab = out.logits.size(-1);
    const torch::Tensor log_probs =
        torch::log_softmax(out.logits / temperature, -1).reshape({-1, vocab});
    return Targets{.log_probs = top_k_ > 0 && top_k_ < vocab ? teacher::TopK(log_probs, top_k_)
                                                             : teacher::DenseAsTopK(log_probs),
                   .hidden = std::move(out.hidden)};
  });
}

LmTeacherClient::Future InProcessLmTeacher::Submit(const torch::Tensor& tokens,
                                                   double temperature) {
  absl::StatusOr<Targets> answer = Answer(tokens, temperature, {});
  if (!answer.ok()) return Ready(answer.status());
  return Ready(std::move(answer->log_probs));
}

LmTeacherClient::TargetsFuture InProcessLmTeacher::SubmitTargets(
    const torch::Tensor& tokens, double temperature,
    const std::vector<std::string>& hidden_layers) {
  std::promise<absl::StatusOr<Targets>> promise;
  promise.set_value(Answer(tokens, temperature, hidden_layers));
  return promise.get_future().share();
}

LmTeacherClient::Future RemoteLmTeacher::Submit(const torch::Tensor& tokens, double temperature) {
  TeacherPoolClient::AnswerFuture answer = pool_->SubmitAnswer(tokens, temperature);
  return std::async(std::launch::deferred,
                    [answer]() -> absl::StatusOr<teacher::TopKLogProbs> {
                      const absl::StatusOr<teacher::Answer>& a = answer.get();
                      if (!a.ok()) return a.status();
                      if (a->top_k.indices.defined()) return a->top_k;
                      return teacher::DenseAsTopK(a->log_probs);
                    })
      .share();
}

LmTeacherClient::TargetsFuture RemoteLmTeacher::SubmitTargets(
    const torch::Tensor& tokens, double temperature,
    const std::vector<std::string>& hidden_layers) {
  TeacherPoolClient::AnswerFuture answer = pool_->SubmitAnswer(tokens, temperature, hidden_layers);
  return std::async(std::launch::deferred,
                    [answer]() -> absl::StatusOr<Targets> {
                      const absl::StatusOr<teacher::Answer>& a = answer.get();
                      if (!a.ok()) return a.status();
                      return Targets{.log_probs = a->top_k.indices.defined()
                                                      ? a->top_k
                                                      : teacher::DenseAsTopK(a->log_probs),
                                     .hidden = a->hidden};
                    })
      .share();
}

}  // namespace retort::trainer
