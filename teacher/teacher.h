// Teacher: a trained model that turns inputs into temperature-softened
// log-probabilities. Implementations are thread-safe: many clients (or server
// streams) may call LogProbs at once.
#ifndef RETORT_TEACHER_TEACHER_H_
#define RETORT_TEACHER_TEACHER_H_

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "retort/v1/teacher.pb.h"

namespace retort::teacher {

// Temperatures outside this range are refused: below it softmax saturates to
// one-hot in fp32, above it the distribution is uniform to fp32 precision.
inline constexpr double kMinTemperature = 0.05;
inline constexpr double kMaxTemperature = 100.0;

class Teacher {
 public:
  virtual ~Teacher() = default;

  // What this teacher is; stable for its lifetime.
  virtual const v1::TeacherFingerprint& fingerprint() const = 0;

  // log_softmax(logits(inputs) / temperature) as float32 [B, num_classes].
  // INVALID_ARGUMENT for inputs that do not match the fingerprint's input
  // shape or a temperature that is not finite and in range.
  virtual absl::StatusOr<torch::Tensor> LogProbs(const torch::Tensor& inputs,
                                                 double temperature) = 0;
};

// Checks a request against a fingerprint before any LibTorch work: float32
// inputs of shape [B, ...input_shape] with 1 <= B <= max_batch, and a finite
// temperature in [kMinTemperature, kMaxTemperature].
absl::Status ValidateTeacherInput(const v1::TeacherFingerprint& fingerprint,
                                  const torch::Tensor& inputs, double temperature,
                                  int64_t max_batch);

}  // namespace retort::teacher

#endif  // RETORT_TEACHER_TEACHER_H_
