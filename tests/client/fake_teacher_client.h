// A TeacherClient for tests: answers with log_softmax(fn(inputs) / T) for a
// caller-supplied logits function, and counts calls. Can be told to fail.
#ifndef RETORT_TESTS_CLIENT_FAKE_TEACHER_CLIENT_H_
#define RETORT_TESTS_CLIENT_FAKE_TEACHER_CLIENT_H_

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "client/teacher_client.h"

namespace retort::client {

class FakeTeacherClient : public TeacherClient {
 public:
  using LogitsFn = std::function<torch::Tensor(const torch::Tensor&)>;

  explicit FakeTeacherClient(LogitsFn logits, std::string weights_sha256 = "fake")
      : logits_(std::move(logits)) {
    fingerprint_.set_weights_sha256(std::move(weights_sha256));
    fingerprint_.set_architecture("fake");
  }

  absl::StatusOr<v1::TeacherFingerprint> Fingerprint() override { return fingerprint_; }

  // Answers query ids too (from the same log-probabilities).
  TargetsFuture SubmitTargets(const Request& request) override {
    const torch::Tensor& inputs = request.inputs;
    const std::vector<std::string>& hidden_layers = request.hidden_layers;
    std::promise<absl::StatusOr<Targets>> promise;
    absl::StatusOr<torch::Tensor> log_probs = Answer(inputs, request.temperature);
    torch::Tensor query;
    if (log_probs.ok() && request.query_ids.defined()) {
      const int64_t classes = log_probs->size(-1);
      query = log_probs->reshape({-1, classes})
                  .gather(1, request.query_ids.reshape({-1, request.query_ids.size(-1)}));
    }
    if (!log_probs.ok()) {
      promise.set_value(log_probs.status());
    } else if (hidden_layers.empty()) {
      promise.set_value(
          Targets{.log_probs = *log_probs, .top_k = {}, .hidden = {}, .query_log_probs = query});
    } else if (!hidden_) {
      promise.set_value(absl::InvalidArgumentError("the fake teacher exposes no hidden layers"));
    } else {
      torch::NoGradGuard no_grad;
      std::map<std::string, torch::Tensor> all = hidden_(inputs), wanted;
      for (const std::string& name : hidden_layers) wanted[name] = all.at(name);
      promise.set_value(Targets{.log_probs = *log_probs,
                                .top_k = {},
                                .hidden = std::move(wanted),
                                .query_log_probs = query});
    }
    return promise.get_future().share();
  }

  void FailWith(absl::Status status) { fail_with_ = std::move(status); }
  // The vocabulary (classes) the fingerprint reports; 0 unless set.
  void SetNumClasses(int64_t classes) { fingerprint_.set_num_classes(classes); }
  int calls() const { return calls_; }

  // Hidden states for feature matching: `hidden(inputs)` gives every layer
  // the fake exposes (they are added to the fingerprint with `layers`).
  using HiddenFn = std::function<std::map<std::string, torch::Tensor>(const torch::Tensor&)>;
  void SetHidden(std::vector<std::pair<std::string, std::vector<int64_t>>> layers,
                 HiddenFn hidden) {
    fingerprint_.clear_hidden_layers();
    for (auto& [name, shape] : layers) {
      v1::HiddenLayerInfo* info = fingerprint_.add_hidden_layers();
      info->set_name(name);
      for (int64_t d : shape) info->add_shape(d);
    }
    hidden_ = std::move(hidden);
  }

 private:
  absl::StatusOr<torch::Tensor> Answer(const torch::Tensor& inputs, double temperature) {
    ++calls_;
    if (!fail_with_.ok()) return fail_with_;
    torch::NoGradGuard no_grad;
    return torch::log_softmax(logits_(inputs) / temperature, -1);
  }

  LogitsFn logits_;
  HiddenFn hidden_;
  v1::TeacherFingerprint fingerprint_;
  absl::Status fail_with_;
  int calls_ = 0;
};

}  // namespace retort::client

#endif  // RETORT_TESTS_CLIENT_FAKE_TEACHER_CLIENT_H_
