#include "student/plain_llama.h"

#include "absl/strings/str_cat.h"

namespace retort::student {

absl::Status RequirePlainLlama(const models::LlamaConfig& config, const std::string& operation) {
  if (config.IsPlainLlama()) return absl::OkStatus();
  return absl::UnimplementedError(
      absl::StrCat(operation, " is implemented for plain Llama models only; this one is ",
                   config.Describe(), " (model_type ", config.model_type,
                   "; the features after the sizes are what it lacks: qkv-bias, qk-norm, window, "
                   "rope-llama3)"));
}

}  // namespace retort::student
