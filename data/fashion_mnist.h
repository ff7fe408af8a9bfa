// Fashion-MNIST from the IDX files Debian's dataset-fashion-mnist installs.
//
// Images become float32 [N, 1, 28, 28], standardised with the training set's
// mean and standard deviation; labels int64 in [0, 10).
#ifndef RETORT_DATA_FASHION_MNIST_H_
#define RETORT_DATA_FASHION_MNIST_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "data/dataset.h"

namespace retort::data {

inline constexpr char kDefaultFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";

struct TrainValidationSplit {
  std::shared_ptr<TensorDataset> train;
  std::shared_ptr<TensorDataset> validation;
};

struct FashionMnistOptions {
  std::string dir = kDefaultFashionMnistDir;
  // Examples held out of the 60k training set for validation.
  int64_t validation_size = 5000;
  // Seed of the train/validation split. Independent of the training seed so
  // every run validates on the same examples.
  uint64_t split_seed = 0;
  // If > 0, keep only the first `train_limit` training examples after the
  // split (for quick runs and tests).
  int64_t train_limit = 0;
};

// Loads the official training set and splits a validation set off it.
absl::StatusOr<TrainValidationSplit> LoadFashionMnistTrain(const FashionMnistOptions& options);

// Loads the official test set. Use only for final evaluation.
absl::StatusOr<std::shared_ptr<TensorDataset>> LoadFashionMnistTest(
    const FashionMnistOptions& options);

// Loads one images/labels pair of IDX files and checks they agree.
absl::StatusOr<std::shared_ptr<TensorDataset>> LoadIdxPair(const std::string& images_path,
                                                           const std::string& labels_path,
                                                           int64_t num_classes);

}  // namespace retort::data

#endif  // RETORT_DATA_FASHION_MNIST_H_
