#include "trainer/lm/lm_evaluate.h"

#include <cmath>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/torch_status.h"

namespace retort::trainer {

nlohmann::json LmEvalResult::ToJson() const {
  nlohmann::json j = {{"sequences", sequences},
                      {"tokens", tokens},
                      {"loss", loss},
                      {"perplexity", perplexity},
                      {"top1_accuracy", top1_accuracy}};
  if (teacher_agreement >= 0) j["teacher_agreement"] = teacher_agreement;
  return j;
}

absl::StatusOr<LmEvalResult> EvaluateLm(models::CausalLm& model, const data::Dataset& dataset,
                                        const LmEvalOptions& options,
                                        client::TeacherClient* teacher) {
  if (options.batch_size < 1) {
    return absl::InvalidArgumentError("evaluation batch size must be at least 1");
  }
  const int64_t n =
      options.max_sequences > 0 ? std::min(options.max_sequences, dataset.size()) : dataset.size();
  if (n < 1) return absl::InvalidArgumentError("the evaluation set holds no sequences");
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError("evaluation rank outside the world size");
  }
  const int64_t first = n * options.rank / options.world_size;
  const int64_t last = n * (options.rank + 1) / options.world_size;
  if (first == last) return LmEvalResult{};
  const bool was_training = model.is_training();
  model.eval();
  double loss_sum = 0;
  int64_t tokens = 0, correct = 0, agree = 0;
  absl::Status status = absl::OkStatus();
  for (int64_t begin = first; begin < last && status.ok(); begin += options.batch_size) {
    std::vector<int64_t> indices(static_cast<size_t>(std::min(options.batch_size, last - begin)));
    std::iota(indices.begin(), indices.end(), begin);
    const data::Batch batch = dataset.GetBatch(indices);
    client::TeacherClient::TargetsFuture teacher_answer;
    if (teacher != nullptr)
      teacher_answer = teacher->SubmitTargets(
          {.inputs = batch.inputs, .temperature = 1.0, .hidden_layers = {}, .query_ids = {}});
    absl::StatusOr<torch::Tensor> student_top1 = TorchCall("evaluation", [&] {
      torch::InferenceMode guard;
      const std::vector<torch::Tensor> params = model.parameters();
      const torch::Device device = params.empty() ? torch::Device(torch::kCPU) : params[0].device();
      const torch::Tensor logits = model.forward(batch.inputs.to(device)).to(torch::kFloat32);
      const int64_t vocab = logits.size(-1);
      const torch::Tensor flat = logits.reshape({-1, vocab});
      const torch::Tensor labels = batch.labels.reshape({-1}).to(device);
      loss_sum +=
          torch::nn::functional::cross_entropy(
              flat, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
              .item<double>();
      const torch::Tensor top1 = flat.argmax(-1);
      correct += top1.eq(labels).sum().item<int64_t>();
      tokens += labels.numel();
      return top1;
    });
    if (!student_top1.ok()) {
      status = student_top1.status();
      break;
    }
    if (teacher != nullptr) {
      const absl::StatusOr<client::TeacherClient::Targets>& answer = teacher_answer.get();
      if (!answer.ok()) {
        status = answer.status();
        break;
      }
      const torch::Tensor teacher_top1 =
          answer->sparse()
              ? answer->top_k.indices.gather(1, answer->top_k.values.argmax(1, /*keepdim=*/true))
                    .squeeze(1)
              : answer->log_probs.argmax(1);
      agree += teacher_top1.to(student_top1->device()).eq(*student_top1).sum().item<int64_t>();
    }
  }
  if (was_training) model.train();
  if (!status.ok()) return status;
  LmEvalResult r;
  r.sequences = last - first;
  r.tokens = tokens;
  r.loss = loss_sum / static_cast<double>(tokens);
  r.perplexity = std::exp(r.loss);
  r.top1_accuracy = static_cast<double>(correct) / static_cast<double>(tokens);
  if (teacher != nullptr)
    r.teacher_agreement = static_cast<double>(agree) / static_cast<double>(tokens);
  return r;
}

}  // namespace retort::trainer
