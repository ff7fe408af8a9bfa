#include "models/llama_sampling.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/torch_status.h"

namespace retort::models {

absl::StatusOr<std::vector<int64_t>> SampleContinuation(LlamaModel& model,
                                                        const std::vector<int64_t>& prompt,
                                                        const SamplingOptions& options) {
  const LlamaConfig& config = model.config();
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt holds no tokens");
  for (int64_t id : prompt) {
    if (id < 0 || id >= config.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt token ", id, " is outside the vocabulary [0, ", config.vocab_size, ")"));
    }
  }
  if (options.max_new_tokens < 0 || !(options.temperature >= 0) || options.top_k < 0) {
    return absl::InvalidArgumentError(
        "max_new_tokens, temperature and top_k must not be negative");
  }
  return TorchCall("sampling", [&] {
    torch::InferenceMode guard;
    model.eval();
    at::Generator generator = at::detail::createCPUGenerator(options.seed);
    std::vector<int64_t> context = prompt, out;
    for (int64_t i = 0; i < options.max_new_tokens; ++i) {
      const int64_t start =
          std::max<int64_t>(0, static_cast<int64_t>(context.size()) - config.max_position_embeddings);
      std::vector<int64_t> window(context.begin() + start, context.end());
      const torch::Tensor tokens =
          torch::tensor(window, torch::kInt64).unsqueeze(0);
      torch::Tensor logits = model.forward(tokens).select(1, -1).squeeze(0).to(torch::kFloat32);
      int64_t next;
      if (options.temperature == 0) {
        next = logits.argmax().item<int64_t>();
      } else {
        logits = logits / options.temperature;
        if (options.top_k > 0 && options.top_k < logits.size(0)) {
          const torch::Tensor kth = std::get<0>(logits.topk(options.top_k)).select(0, -1);
          logits = logits.masked_fill(logits < kth, -INFINITY);
        }
        const torch::Tensor probs = torch::softmax(logits, 0);
        next = at::multinomial(probs, 1, false, generator).item<int64_t>();
      }
      out.push_back(next);
      context.push_back(next);
      if (next == options.stop_token) break;
    }
    return out;
  });
}

}  // namespace retort::models
