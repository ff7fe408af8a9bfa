#include "data/dataset.h"

namespace retort::data {

TensorDataset::TensorDataset(torch::Tensor inputs, torch::Tensor labels, int64_t num_classes)
    : inputs_(inputs.contiguous()),
      labels_(labels.to(torch::kLong).contiguous()),
      num_classes_(num_classes) {
  TORCH_CHECK(inputs_.size(0) == labels_.size(0), "inputs and labels differ in length");
}

std::vector<int64_t> TensorDataset::example_shape() const {
  auto sizes = inputs_.sizes();
  return std::vector<int64_t>(sizes.begin() + 1, sizes.end());
}

Batch TensorDataset::GetBatch(const std::vector<int64_t>& indices) const {
  torch::Tensor index = torch::from_blob(const_cast<int64_t*>(indices.data()),
                                         {static_cast<int64_t>(indices.size())}, torch::kLong);
  return Batch{inputs_.index_select(0, index), labels_.index_select(0, index)};
}

std::shared_ptr<TensorDataset> TensorDataset::Subset(const std::vector<int64_t>& indices) const {
  Batch batch = GetBatch(indices);
  return std::make_shared<TensorDataset>(batch.inputs, batch.labels, num_classes_);
}

}  // namespace retort::data
