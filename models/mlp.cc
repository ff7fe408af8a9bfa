#include "models/mlp.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace retort::models {

Mlp::Mlp(const ModelSpec& spec) : Classifier(spec) {
  int64_t width = 1;
  for (int64_t d : spec.input_shape) width *= d;
  std::vector<int64_t> outs = spec.hidden;
  outs.push_back(spec.num_classes);
  for (size_t i = 0; i < outs.size(); ++i) {
    layers_.push_back(register_module(absl::StrCat("fc", i), torch::nn::Linear(width, outs[i])));
    width = outs[i];
  }
}

torch::Tensor Mlp::forward(const torch::Tensor& inputs) {
  return ForwardWithHidden(inputs, {}, nullptr);
}

std::vector<HiddenLayer> Mlp::HiddenLayers() const {
  std::vector<HiddenLayer> layers;
  for (size_t i = 0; i < spec().hidden.size(); ++i) {
    layers.push_back({absl::StrCat("fc", i), {spec().hidden[i]}});
  }
  return layers;
}

torch::Tensor Mlp::ForwardWithHidden(const torch::Tensor& inputs,
                                     const std::vector<std::string>& names, HiddenStates* hidden) {
  torch::Tensor x = inputs.flatten(1);
  const ModelSpec& s = spec();
  if (s.input_dropout > 0) x = torch::dropout(x, s.input_dropout, is_training());
  for (size_t i = 0; i + 1 < layers_.size(); ++i) {
    x = torch::relu(layers_[i]->forward(x));
    if (hidden != nullptr) {
      std::string name = absl::StrCat("fc", i);
      if (std::find(names.begin(), names.end(), name) != names.end()) (*hidden)[name] = x;
    }
    if (s.dropout > 0) x = torch::dropout(x, s.dropout, is_training());
  }
  return layers_.back()->forward(x);
}

}  // namespace retort::models
