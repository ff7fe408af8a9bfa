#include "trainer/task.h"

#include "absl/strings/str_cat.h"

namespace retort::trainer {

absl::Status CheckDevice(const torch::Device& device) {
  if (device.is_cpu()) return absl::OkStatus();
  if (device.is_cuda()) {
    if (!torch::cuda::is_available()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--device=", device.str(),
          ": this build's LibTorch has no CUDA (or no GPU is visible); use --device=cpu, or "
          "build against a CUDA LibTorch 2.x (tools/device/libtorch2_check.sh)"));
    }
    const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
    if (device.has_index() && device.index() >= count) {
      return absl::FailedPreconditionError(
          absl::StrCat("--device=", device.str(), ": this machine has ", count, " CUDA device(s)"));
    }
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      absl::StrCat("--device=", device.str(), ": only cpu and cuda[:N] are supported"));
}

}  // namespace retort::trainer
