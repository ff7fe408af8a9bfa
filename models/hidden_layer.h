// The intermediate activations a model can expose for feature matching: a
// layer's name and the shape of one example's (or one position's)
// activation, and the activations of a forward pass by name. Kept apart
// from the model headers so code that only names layers does not include
// a model.
#ifndef RETORT_MODELS_HIDDEN_LAYER_H_
#define RETORT_MODELS_HIDDEN_LAYER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace retort::models {

struct HiddenLayer {
  std::string name;
  std::vector<int64_t> shape;
};

using HiddenStates = std::map<std::string, torch::Tensor>;

}  // namespace retort::models

#endif  // RETORT_MODELS_HIDDEN_LAYER_H_
