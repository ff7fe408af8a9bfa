// A Communicator for tests: world size 1, every collective the identity.
#ifndef RETORT_TESTS_TRAINER_FAKE_COMMUNICATOR_H_
#define RETORT_TESTS_TRAINER_FAKE_COMMUNICATOR_H_

#include <memory>
#include <vector>

#include "distributed/communicator.h"

namespace retort::distributed {

class FakeCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  absl::Status Broadcast(const std::vector<torch::Tensor>&, int) override {
    return absl::OkStatus();
  }
  absl::Status AllReduceMean(const std::vector<torch::Tensor>&) override {
    return absl::OkStatus();
  }
  absl::Status Barrier() override { return absl::OkStatus(); }
  absl::StatusOr<std::unique_ptr<GradientSync>> CreateGradientSync(
      const std::vector<torch::Tensor>&, int64_t) override {
    class NoSync : public GradientSync {
     public:
      absl::Status PrepareForBackward(const torch::Tensor&) override { return absl::OkStatus(); }
    };
    return std::unique_ptr<GradientSync>(new NoSync());
  }
};

}  // namespace retort::distributed

#endif  // RETORT_TESTS_TRAINER_FAKE_COMMUNICATOR_H_
