// Teacher: a trained model that turns inputs into logits (and, on request,
// named hidden activations). Implementations are thread-safe: many clients,
// server streams or batcher workers may call Forward at once.
#ifndef RETORT_TEACHER_TEACHER_H_
#define RETORT_TEACHER_TEACHER_H_

#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "retort/v1/teacher.pb.h"

namespace retort::teacher {

// Temperatures outside this range are refused: below it softmax saturates to
// one-hot in fp32, above it the distribution is uniform to fp32 precision.
inline constexpr double kMinTemperature = 0.05;
inline constexpr double kMaxTemperature = 100.0;

struct TeacherOutput {
  torch::Tensor logits;                         // float32 [B, num_classes]
  std::map<std::string, torch::Tensor> hidden;  // float32 [B, ...layer shape]
};

class Teacher {
 public:
  virtual ~Teacher() = default;

  // What this teacher is; stable for its lifetime.
  virtual const v1::TeacherFingerprint& fingerprint() const = 0;

  // The largest batch one Forward call accepts.
  virtual int64_t max_batch() const = 0;

  // Runs the model in inference mode on already validated inputs (see
  // ValidateTeacherInput): logits and the hidden layers named in
  // `hidden_layers` (each one of fingerprint().hidden_layers()).
  virtual absl::StatusOr<TeacherOutput> Forward(const torch::Tensor& inputs,
                                                const std::vector<std::string>& hidden_layers) = 0;

  // Validates, then log_softmax(logits(inputs) / temperature) as float32
  // [B, num_classes]. INVALID_ARGUMENT for inputs that do not match the
  // fingerprint or a temperature that is not finite and in range.
  absl::StatusOr<torch::Tensor> LogProbs(const torch::Tensor& inputs, double temperature);
};

// Checks a request against a fingerprint before any LibTorch work: float32
// inputs of shape [B, ...input_shape] with 1 <= B <= max_batch, and a finite
// temperature in [kMinTemperature, kMaxTemperature].
absl::Status ValidateTeacherInput(const v1::TeacherFingerprint& fingerprint,
                                  const torch::Tensor& inputs, double temperature,
                                  int64_t max_batch);

}  // namespace retort::teacher

#endif  // RETORT_TEACHER_TEACHER_H_
