#include "teacher/teacher.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/torch_status.h"

namespace retort::teacher {

absl::StatusOr<torch::Tensor> Teacher::LogProbs(const torch::Tensor& inputs, double temperature) {
  RETORT_RETURN_IF_ERROR(ValidateTeacherInput(fingerprint(), inputs, temperature, max_batch()));
  RETORT_ASSIGN_OR_RETURN(TeacherOutput out, Forward(inputs, {}));
  return TorchCall("teacher log-probabilities",
                   [&] { return torch::log_softmax(out.logits / temperature, /*dim=*/1); });
}

absl::Status ValidateTeacherInput(const v1::TeacherFingerprint& fingerprint,
                                  const torch::Tensor& inputs, double temperature,
                                  int64_t max_batch) {
  if (!std::isfinite(temperature) || temperature < kMinTemperature ||
      temperature > kMaxTemperature) {
    return absl::InvalidArgumentError(absl::StrCat("temperature ", temperature, " is not in [",
                                                   kMinTemperature, ", ", kMaxTemperature, "]"));
  }
  if (!inputs.defined() || inputs.scalar_type() != torch::kFloat32) {
    return absl::InvalidArgumentError("teacher inputs must be a float32 tensor");
  }
  const auto& want = fingerprint.input_shape();
  auto sizes = inputs.sizes();
  bool shape_ok = static_cast<int>(sizes.size()) == want.size() + 1;
  for (int i = 0; shape_ok && i < want.size(); ++i) shape_ok = sizes[i + 1] == want[i];
  if (!shape_ok) {
    return absl::InvalidArgumentError(absl::StrCat("teacher inputs have shape [",
                                                   absl::StrJoin(sizes, ","), "], expected [B,",
                                                   absl::StrJoin(want, ","), "]"));
  }
  if (sizes[0] < 1 || sizes[0] > max_batch) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch of ", sizes[0], " rows is not in [1, ", max_batch, "]"));
  }
  return absl::OkStatus();
}

}  // namespace retort::teacher
