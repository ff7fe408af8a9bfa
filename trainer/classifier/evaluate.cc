#include "trainer/classifier/evaluate.h"

#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/torch_status.h"

namespace retort::trainer {

nlohmann::json EvalResult::ToJson() const {
  return {{"examples", examples},
          {"correct", correct},
          {"errors", errors()},
          {"accuracy", accuracy()},
          {"loss", mean_loss}};
}

absl::StatusOr<EvalResult> Evaluate(models::Classifier& model, const data::Dataset& dataset,
                                    int64_t batch_size) {
  return EvaluateRange(model, dataset, 0, dataset.size(), batch_size);
}

absl::StatusOr<EvalResult> EvaluateRange(models::Classifier& model, const data::Dataset& dataset,
                                         int64_t first, int64_t last, int64_t batch_size) {
  if (first < 0 || first > last || last > dataset.size() || batch_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot evaluate examples [", first, ", ", last,
                                                   ") of ", dataset.size(), " in batches of ",
                                                   batch_size));
  }
  return TorchCall("evaluating", [&] {
    const bool was_training = model.is_training();
    model.eval();
    torch::InferenceMode guard;
    EvalResult result;
    double loss_sum = 0;
    const int64_t n = last - first;
    const std::vector<torch::Tensor> params = model.parameters();
    const torch::Device device = params.empty() ? torch::Device(torch::kCPU) : params[0].device();
    std::vector<int64_t> indices;
    for (int64_t start = first; start < last; start += batch_size) {
      const int64_t end = std::min(last, start + batch_size);
      indices.resize(static_cast<size_t>(end - start));
      std::iota(indices.begin(), indices.end(), start);
      data::Batch batch = dataset.GetBatch(indices);
      batch.inputs = batch.inputs.to(device);
      batch.labels = batch.labels.to(device);
      torch::Tensor logits = model.forward(batch.inputs);
      loss_sum += torch::nn::functional::cross_entropy(
                      logits, batch.labels,
                      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                      .item<double>();
      result.correct += logits.argmax(1).eq(batch.labels).sum().item<int64_t>();
      result.examples += end - start;
    }
    result.mean_loss = n == 0 ? 0.0 : loss_sum / static_cast<double>(n);
    model.train(was_training);
    return result;
  });
}

}  // namespace retort::trainer
