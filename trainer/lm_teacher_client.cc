#include "trainer/lm_teacher_client.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/torch_status.h"

namespace retort::trainer {
namespace {

LmTeacherClient::Future Ready(absl::StatusOr<teacher::TopKLogProbs> value) {
  std::promise<absl::StatusOr<teacher::TopKLogProbs>> promise;
  promise.set_value(std::move(value));
  return promise.get_future().share();
}

}  // namespace

LmTeacherClient::Future InProcessLmTeacher::Submit(const torch::Tensor& tokens,
                                                   double temperature) {
  absl::StatusOr<teacher::TeacherOutput> out = teacher_->Forward(tokens, {});
  if (!out.ok()) return Ready(out.status());
  return Ready(TorchCall("teacher log-probabilities", [&] {
    torch::InferenceMode guard;
    const int64_t vocab = out->logits.size(-1);
    const torch::Tensor log_probs =
        torch::log_softmax(out->logits / temperature, -1).reshape({-1, vocab});
    return top_k_ > 0 && top_k_ < vocab ? teacher::TopK(log_probs, top_k_)
                                        : teacher::DenseAsTopK(log_probs);
  }));
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

}  // namespace retort::trainer
