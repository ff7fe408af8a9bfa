// Helpers shared by the tests that run teacher servers in process (the
// server tests and the trainer's pool tests).
#ifndef RETORT_TESTS_TEACHER_TEST_TEACHERS_H_
#define RETORT_TESTS_TEACHER_TEST_TEACHERS_H_

#include <functional>
#include <memory>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/free_port.h"
#include "models/classifier.h"

namespace retort::testutil {

// Polls `condition` every 5 ms until it holds (true) or `timeout` passes.
inline bool Eventually(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

// An MLP 784-32-10 with weights drawn from `seed`.
inline std::shared_ptr<models::Classifier> MakeModel(uint64_t seed) {
  models::ModelSpec spec;
  spec.hidden = {32};
  absl::StatusOr<std::shared_ptr<models::Classifier>> model = models::CreateClassifier(spec, seed);
  if (!model.ok()) {
    ADD_FAILURE() << model.status();
    return nullptr;
  }
  return *std::move(model);
}

inline torch::Tensor Images(int64_t rows) { return torch::randn({rows, 1, 28, 28}); }

// A TCP port on 127.0.0.1 that was free a moment ago.
inline int FreePort() {
  absl::StatusOr<int> port = FreeLoopbackPort();
  if (!port.ok()) {
    ADD_FAILURE() << port.status();
    return 0;
  }
  return *port;
}

}  // namespace retort::testutil

#endif  // RETORT_TESTS_TEACHER_TEST_TEACHERS_H_
