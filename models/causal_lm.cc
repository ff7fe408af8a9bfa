#include "models/causal_lm.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "models/llama_checkpoint.h"
#include "models/sliced_llama.h"

namespace retort::models {

std::string WeightQuantization::Describe() const {
  if (!quantized()) return "float32";
  return absl::StrCat("int", bits,
                      group_size == 0 ? " per-channel" : absl::StrCat(" g", group_size),
                      embeddings ? " (+ embeddings)" : "");
}

std::vector<std::pair<std::string, Projection>> CausalLm::Projections() {
  std::vector<std::pair<std::string, Projection>> out;
  for (const auto& item : named_modules("", /*include_self=*/false)) {
    if (auto p = std::dynamic_pointer_cast<ProjectionImpl>(item.value())) {
      out.emplace_back(item.key(), Projection(p));
    }
  }
  return out;
}

absl::StatusOr<std::shared_ptr<CausalLm>> LoadCausalLm(const std::string& dir) {
  if (IsSlicedLlamaCheckpoint(dir)) {
    RETORT_ASSIGN_OR_RETURN(std::shared_ptr<SlicedLlamaModel> sliced, LoadSlicedLlama(dir));
    return std::shared_ptr<CausalLm>(std::move(sliced));
  }
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<LlamaModel> model, LoadLlamaCheckpoint(dir));
  return std::shared_ptr<CausalLm>(std::move(model));
}

}  // namespace retort::models
