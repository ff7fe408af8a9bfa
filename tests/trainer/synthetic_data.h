// A small synthetic classification problem for trainer tests: 10 Gaussian
// blobs in a 1x4x4 "image" space.
#ifndef RETORT_TESTS_TRAINER_SYNTHETIC_DATA_H_
#define RETORT_TESTS_TRAINER_SYNTHETIC_DATA_H_

#include <memory>

#include "data/dataset.h"

namespace retort::trainer::testing {

inline std::shared_ptr<data::TensorDataset> Blobs(int64_t n, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(1234);  // same centres for all
  torch::Tensor centres = torch::randn({10, 1, 4, 4}, gen) * 3.0;
  at::Generator noise = at::detail::createCPUGenerator(seed);
  torch::Tensor labels = torch::randint(0, 10, {n}, noise, torch::kLong);
  torch::Tensor inputs = centres.index_select(0, labels) + 0.5 * torch::randn({n, 1, 4, 4}, noise);
  return std::make_shared<data::TensorDataset>(inputs, labels, 10);
}

}  // namespace retort::trainer::testing

#endif  // RETORT_TESTS_TRAINER_SYNTHETIC_DATA_H_
