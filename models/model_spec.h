// ModelSpec: the architecture of a classifier, small enough to store in every
// checkpoint so a checkpoint says what it holds and a mismatch is caught.
#ifndef RETORT_MODELS_MODEL_SPEC_H_
#define RETORT_MODELS_MODEL_SPEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace retort::models {

enum class Architecture { kMlp, kCnn };

struct ModelSpec {
  Architecture architecture = Architecture::kMlp;
  std::vector<int64_t> input_shape = {1, 28, 28};
  int64_t num_classes = 10;
  // MLP: the hidden layer widths. CNN: {conv1 channels, conv2 channels,
  // fully connected width}.
  std::vector<int64_t> hidden = {100};
  // Dropout after each hidden layer (MLP) or before the classifier (CNN).
  double dropout = 0.0;
  // Dropout on the inputs (MLP only), as in Hinton et al. 2015.
  double input_dropout = 0.0;

  // OK, or INVALID_ARGUMENT saying which field is wrong.
  absl::Status Validate() const;

  // "mlp 784-1200-1200-10 dropout=0.5 input_dropout=0.2".
  std::string Describe() const;

  nlohmann::json ToJson() const;
  static absl::StatusOr<ModelSpec> FromJson(const nlohmann::json& json);

  bool operator==(const ModelSpec& other) const;
  bool operator!=(const ModelSpec& other) const { return !(*this == other); }
};

// "mlp" or "cnn".
absl::StatusOr<Architecture> ParseArchitecture(const std::string& name);
std::string ArchitectureName(Architecture architecture);

}  // namespace retort::models

#endif  // RETORT_MODELS_MODEL_SPEC_H_
