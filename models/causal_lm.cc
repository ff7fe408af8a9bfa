#include "models/causal_lm.h"

#include "common/status_macros.h"
#include "models/llama_checkpoint.h"
#include "models/sliced_llama.h"

namespace retort::models {

absl::StatusOr<std::shared_ptr<CausalLm>> LoadCausalLm(const std::string& dir) {
  if (IsSlicedLlamaCheckpoint(dir)) {
    RETORT_ASSIGN_OR_RETURN(std::shared_ptr<SlicedLlamaModel> sliced, LoadSlicedLlama(dir));
    return std::shared_ptr<CausalLm>(std::move(sliced));
  }
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<LlamaModel> model, LoadLlamaCheckpoint(dir));
  return std::shared_ptr<CausalLm>(std::move(model));
}

}  // namespace retort::models
