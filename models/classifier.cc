#include "models/classifier.h"

#include "common/status_macros.h"
#include "common/torch_status.h"
#include "models/cnn.h"
#include "models/mlp.h"

namespace retort::models {

absl::StatusOr<std::shared_ptr<Classifier>> CreateClassifier(const ModelSpec& spec) {
  RETORT_RETURN_IF_ERROR(spec.Validate());
  return TorchCall("building " + spec.Describe(), [&]() -> std::shared_ptr<Classifier> {
    if (spec.architecture == Architecture::kMlp) return std::make_shared<Mlp>(spec);
    return std::make_shared<Cnn>(spec);
  });
}

absl::StatusOr<std::shared_ptr<Classifier>> CreateClassifier(const ModelSpec& spec, uint64_t seed) {
  torch::manual_seed(seed);
  return CreateClassifier(spec);
}

}  // namespace retort::models
