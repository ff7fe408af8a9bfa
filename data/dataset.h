// Dataset interface: random access to labelled examples, gathered into
// batches. Implementations are immutable after construction and safe to read
// from several threads.
#ifndef RETORT_DATA_DATASET_H_
#define RETORT_DATA_DATASET_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace retort::data {

// inputs: [B, ...example_shape]: float32 for image data, int64 token ids for
// language data (TokenSequenceDataset). labels: int64, [B] class labels, or
// [B, T] next-token targets for language data.
struct Batch {
  torch::Tensor inputs;
  torch::Tensor labels;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // Shape of one example, e.g. {1, 28, 28}.
  virtual std::vector<int64_t> example_shape() const = 0;
  virtual int64_t num_classes() const = 0;
  // Gathers the examples at `indices` (each in [0, size())).
  virtual Batch GetBatch(const std::vector<int64_t>& indices) const = 0;
};

// A dataset held as two tensors in memory.
class TensorDataset : public Dataset {
 public:
  // `inputs` is [N, ...], `labels` is [N] int64 in [0, num_classes).
  TensorDataset(torch::Tensor inputs, torch::Tensor labels, int64_t num_classes);

  int64_t size() const override { return labels_.size(0); }
  std::vector<int64_t> example_shape() const override;
  int64_t num_classes() const override { return num_classes_; }
  Batch GetBatch(const std::vector<int64_t>& indices) const override;

  // A new dataset holding copies of the examples at `indices`.
  std::shared_ptr<TensorDataset> Subset(const std::vector<int64_t>& indices) const;

  const torch::Tensor& inputs() const { return inputs_; }
  const torch::Tensor& labels() const { return labels_; }

 private:
  torch::Tensor inputs_;
  torch::Tensor labels_;
  int64_t num_classes_;
};

}  // namespace retort::data

#endif  // RETORT_DATA_DATASET_H_
