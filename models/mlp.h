// Multi-layer perceptron: flatten, [input dropout], then Linear-ReLU-[Dropout]
// per hidden width, then a Linear classifier.
#ifndef RETORT_MODELS_MLP_H_
#define RETORT_MODELS_MLP_H_

#include "models/classifier.h"

namespace retort::models {

class Mlp : public Classifier {
 public:
  // `spec` must be a valid MLP spec.
  explicit Mlp(const ModelSpec& spec);
  torch::Tensor forward(const torch::Tensor& inputs) override;
  std::vector<HiddenLayer> HiddenLayers() const override;
  torch::Tensor ForwardWithHidden(const torch::Tensor& inputs,
                                  const std::vector<std::string>& names,
                                  HiddenStates* hidden) override;

 private:
  std::vector<torch::nn::Linear> layers_;  // hidden layers then the classifier
};

}  // namespace retort::models

#endif  // RETORT_MODELS_MLP_H_
