#include "models/cnn.h"

#include <algorithm>

namespace retort::models {

Cnn::Cnn(const ModelSpec& spec) : Classifier(spec) {
  const int64_t c = spec.input_shape[0], h = spec.input_shape[1], w = spec.input_shape[2];
  conv1_ = register_module(
      "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, spec.hidden[0], 3).padding(1)));
  conv2_ = register_module(
      "conv2",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(spec.hidden[0], spec.hidden[1], 3).padding(1)));
  fc_ =
      register_module("fc", torch::nn::Linear(spec.hidden[1] * (h / 4) * (w / 4), spec.hidden[2]));
  classifier_ = register_module("classifier", torch::nn::Linear(spec.hidden[2], spec.num_classes));
}

torch::Tensor Cnn::forward(const torch::Tensor& inputs) {
  return ForwardWithHidden(inputs, {}, nullptr);
}

std::vector<HiddenLayer> Cnn::HiddenLayers() const {
  const ModelSpec& s = spec();
  const int64_t h = s.input_shape[1], w = s.input_shape[2];
  return {{"conv1", {s.hidden[0], h / 2, w / 2}},
          {"conv2", {s.hidden[1], h / 4, w / 4}},
          {"fc", {s.hidden[2]}}};
}

torch::Tensor Cnn::ForwardWithHidden(const torch::Tensor& inputs,
                                     const std::vector<std::string>& names, HiddenStates* hidden) {
  auto keep = [&](const char* name, const torch::Tensor& x) {
    if (hidden != nullptr && std::find(names.begin(), names.end(), name) != names.end()) {
      (*hidden)[name] = x;
    }
  };
  torch::Tensor x = torch::max_pool2d(torch::relu(conv1_->forward(inputs)), 2);
  keep("conv1", x);
  x = torch::max_pool2d(torch::relu(conv2_->forward(x)), 2);
  keep("conv2", x);
  x = torch::relu(fc_->forward(x.flatten(1)));
  keep("fc", x);
  if (spec().dropout > 0) x = torch::dropout(x, spec().dropout, is_training());
  return classifier_->forward(x);
}

}  // namespace retort::models
