// Communicator: how data-parallel trainer ranks talk to each other. The
// trainer reaches its peers only through this interface; C10dCommunicator
// (trainer/c10d_communicator.h) runs PyTorch's own c10d (Gloo on CPU);
// tests/trainer/fake_communicator.h has a fake of world size 1 for tests.
//
// GradientSync averages gradients over the ranks during backward: call
// PrepareForBackward(output) before each backward pass; when backward
// returns, every parameter's .grad is the mean over the ranks.
#ifndef RETORT_DISTRIBUTED_COMMUNICATOR_H_
#define RETORT_DISTRIBUTED_COMMUNICATOR_H_

#include <cstdint>
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace retort::distributed {

class GradientSync {
 public:
  virtual ~GradientSync() = default;
  // Before each backward pass of the model whose parameters this syncs.
  virtual absl::Status PrepareForBackward(const torch::Tensor& output) = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // Overwrites each tensor with rank `root`'s (in place, no autograd).
  virtual absl::Status Broadcast(const std::vector<torch::Tensor>& tensors, int root) = 0;
  // Replaces each tensor with the mean of it over the ranks (in place).
  virtual absl::Status AllReduceMean(const std::vector<torch::Tensor>& tensors) = 0;
  virtual absl::Status Barrier() = 0;

  // Gradient averaging for `parameters`, in buckets of about `bucket_bytes`
  // all-reduced as they fill during backward.
  virtual absl::StatusOr<std::unique_ptr<GradientSync>> CreateGradientSync(
      const std::vector<torch::Tensor>& parameters, int64_t bucket_bytes) = 0;
};

}  // namespace retort::distributed

#endif  // RETORT_DISTRIBUTED_COMMUNICATOR_H_
