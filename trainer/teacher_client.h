// TeacherClient: how a trainer asks a teacher for soft targets. The trainer
// sees teachers only through this interface; implementations live in-process
// (InProcessTeacherClient), behind gRPC (later), or in tests (FakeTeacherClient).
#ifndef RETORT_TRAINER_TEACHER_CLIENT_H_
#define RETORT_TRAINER_TEACHER_CLIENT_H_

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
};

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_TEACHER_CLIENT_H_
