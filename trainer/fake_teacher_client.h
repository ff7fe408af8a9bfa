// A TeacherClient for tests: answers with log_softmax(fn(inputs) / T) for a
// caller-supplied logits function, and counts calls. Can be told to fail.
#ifndef RETORT_TRAINER_FAKE_TEACHER_CLIENT_H_
#define RETORT_TRAINER_FAKE_TEACHER_CLIENT_H_

#include <functional>
#include <utility>

#include "trainer/teacher_client.h"

namespace retort::trainer {

class FakeTeacherClient : public TeacherClient {
 public:
  using LogitsFn = std::function<torch::Tensor(const torch::Tensor&)>;

  explicit FakeTeacherClient(LogitsFn logits, std::string weights_sha256 = "fake")
      : logits_(std::move(logits)) {
    fingerprint_.set_weights_sha256(std::move(weights_sha256));
    fingerprint_.set_architecture("fake");
  }

  absl::StatusOr<v1::TeacherFingerprint> Fingerprint() override { return fingerprint_; }

  absl::StatusOr<torch::Tensor> LogProbs(const torch::Tensor& inputs, double temperature) override {
    ++calls_;
    if (!fail_with_.ok()) return fail_with_;
    torch::NoGradGuard no_grad;
    return torch::log_softmax(logits_(inputs) / temperature, 1);
  }

  void FailWith(absl::Status status) { fail_with_ = std::move(status); }
  int calls() const { return calls_; }

 private:
  LogitsFn logits_;
  v1::TeacherFingerprint fingerprint_;
  absl::Status fail_with_;
  int calls_ = 0;
};

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_FAKE_TEACHER_CLIENT_H_
