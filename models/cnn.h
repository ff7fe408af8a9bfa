// A small CNN: conv3x3-ReLU-maxpool twice, a fully connected ReLU layer,
// dropout, and a linear classifier.
#ifndef RETORT_MODELS_CNN_H_
#define RETORT_MODELS_CNN_H_

#include "models/classifier.h"

namespace retort::models {

class Cnn : public Classifier {
 public:
  // `spec` must be a valid CNN spec: hidden = {conv1, conv2, fc}.
  explicit Cnn(const ModelSpec& spec);
  torch::Tensor forward(const torch::Tensor& inputs) override;
  std::vector<HiddenLayer> HiddenLayers() const override;
  torch::Tensor ForwardWithHidden(const torch::Tensor& inputs,
                                  const std::vector<std::string>& names,
                                  HiddenStates* hidden) override;

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::Linear fc_{nullptr}, classifier_{nullptr};
};

}  // namespace retort::models

#endif  // RETORT_MODELS_CNN_H_
