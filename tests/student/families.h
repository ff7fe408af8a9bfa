// The Llama family's variants for the compaction tests: a base config made
// into each family, and weights that make each family's extra tensors
// matter (biases and norm scales far from their initial values).
#ifndef RETORT_TESTS_STUDENT_FAMILIES_H_
#define RETORT_TESTS_STUDENT_FAMILIES_H_

#include <string>
#include <vector>

#include <torch/torch.h>

#include "models/llama.h"
#include "models/llama_config.h"

namespace retort::student::testing {

// "qwen2" (q/k/v biases), "qwen3" (q/k norms, heads 4 wider than
// hidden / heads), "mistral" (a sliding window of 4 positions), "llama3"
// (rope_scaling llama3 with an original context of 8, so every frequency
// band is scaled), or "llama" (unchanged).
inline models::LlamaConfig WithFamily(models::LlamaConfig c, const std::string& family) {
  if (family == "qwen2") {
    c.model_type = "qwen2";
    c.qkv_bias = true;
  } else if (family == "qwen3") {
    c.model_type = "qwen3";
    c.qk_norm = true;
    c.attention_head_dim = c.head_dim() + 4;
  } else if (family == "mistral") {
    c.model_type = "mistral";
    c.sliding_window = 4;
  } else if (family == "llama3") {
    c.rope_scaling.factor = 8;
    c.rope_scaling.low_freq_factor = 1;
    c.rope_scaling.high_freq_factor = 4;
    c.rope_scaling.original_max_position_embeddings = 8;
  }
  return c;
}

inline const std::vector<std::string>& OtherFamilies() {
  static const std::vector<std::string> families = {"qwen2", "qwen3", "mistral", "llama3"};
  return families;
}

// Biases uniform in [-0.5, 0.5], norm scales (q/k norms included) in
// [0.5, 1.5].
inline void PerturbBiasesAndNorms(models::LlamaModel& model) {
  torch::NoGradGuard no_grad;
  for (auto& p : model.named_parameters()) {
    if (p.key().find("norm") != std::string::npos) p.value().uniform_(0.5, 1.5);
    if (p.key().size() > 5 && p.key().substr(p.key().size() - 5) == ".bias") {
      p.value().uniform_(-0.5, 0.5);
    }
  }
}

}  // namespace retort::student::testing

#endif  // RETORT_TESTS_STUDENT_FAMILIES_H_
