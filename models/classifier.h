// Classifier networks shared by teachers and students.
//
// A Classifier maps a float batch [B, C, H, W] to logits [B, num_classes].
// Modules are not thread-safe for training; concurrent inference in eval mode
// is safe.
#ifndef RETORT_MODELS_CLASSIFIER_H_
#define RETORT_MODELS_CLASSIFIER_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "models/hidden_layer.h"
#include "models/model_spec.h"

namespace retort::models {

class Classifier : public torch::nn::Module {
 public:
  explicit Classifier(ModelSpec spec) : spec_(std::move(spec)) {}
  virtual torch::Tensor forward(const torch::Tensor& inputs) = 0;
  const ModelSpec& spec() const { return spec_; }

  // The activations ForwardWithHidden can record, in network order.
  virtual std::vector<HiddenLayer> HiddenLayers() const = 0;

  // forward(), also storing in `hidden` the activations named in `names`
  // (after the nonlinearity, before dropout). Names not in HiddenLayers() are
  // ignored; callers validate them first.
  virtual torch::Tensor ForwardWithHidden(const torch::Tensor& inputs,
                                          const std::vector<std::string>& names,
                                          HiddenStates* hidden) = 0;

 private:
  ModelSpec spec_;
};

// Builds a freshly initialised classifier. Initialisation draws from LibTorch's
// default CPU generator: seed it (torch::manual_seed) for reproducible weights.
absl::StatusOr<std::shared_ptr<Classifier>> CreateClassifier(const ModelSpec& spec);

// Reseeds LibTorch's default generator with `seed`, then builds the
// classifier: the same (spec, seed) always gives the same initial weights, so
// a scratch student and a distilled student start from the same point.
absl::StatusOr<std::shared_ptr<Classifier>> CreateClassifier(const ModelSpec& spec, uint64_t seed);

}  // namespace retort::models

#endif  // RETORT_MODELS_CLASSIFIER_H_
