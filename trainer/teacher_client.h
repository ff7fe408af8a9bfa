// TeacherClient: how a trainer asks a teacher for soft targets. The trainer
// sees teachers only through this interface; implementations live in-process
// (InProcessTeacherClient), behind gRPC (TeacherPoolClient over one or many
// servers), or in tests (FakeTeacherClient).
//
// Submit lets a caller ask ahead: it returns at once with a future, and the
// caller consumes futures in its own order, so answers can arrive in any
// order while training stays deterministic. Clients that cannot work
// asynchronously answer Submit synchronously (the default).
#ifndef RETORT_TRAINER_TEACHER_CLIENT_H_
#define RETORT_TRAINER_TEACHER_CLIENT_H_

#include <future>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "retort/v1/teacher.pb.h"

namespace retort::trainer {

class TeacherClient {
 public:
  virtual ~TeacherClient() = default;

  // The fingerprint of the teacher answering; the trainer records it in its
  // checkpoints and refuses to resume against a different teacher.
  virtual absl::StatusOr<v1::TeacherFingerprint> Fingerprint() = 0;

  // log_softmax(teacher_logits(inputs) / temperature), float32 [B, classes].
  virtual absl::StatusOr<torch::Tensor> LogProbs(const torch::Tensor& inputs,
                                                 double temperature) = 0;

  using LogProbsFuture = std::shared_future<absl::StatusOr<torch::Tensor>>;
  // Like LogProbs, but may return before the answer is there. `inputs` must
  // not be modified until the future is ready. The future may be deferred
  // (its get() finishes the work): wait on it with get(), not wait_for().
  virtual LogProbsFuture Submit(const torch::Tensor& inputs, double temperature) {
    std::promise<absl::StatusOr<torch::Tensor>> promise;
    promise.set_value(LogProbs(inputs, temperature));
    return promise.get_future().share();
  }

  // The soft targets and, for feature matching, the teacher's hidden
  // activations of the named layers (each one of the fingerprint's
  // hidden_layers), float32 [B, ...layer shape].
  struct Targets {
    torch::Tensor log_probs;
    std::map<std::string, torch::Tensor> hidden;
  };
  using TargetsFuture = std::shared_future<absl::StatusOr<Targets>>;
  // Like Submit, also asking for hidden layers. The default serves an empty
  // `hidden_layers` through Submit and answers UNIMPLEMENTED otherwise.
  virtual TargetsFuture SubmitTargets(const torch::Tensor& inputs, double temperature,
                                      const std::vector<std::string>& hidden_layers);
};

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_TEACHER_CLIENT_H_
