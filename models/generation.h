// Generation: sampling continuations of prompts from a causal language model
// (a Llama, any family, or a sliced one), batched over prompts of different
// lengths, with a key/value cache so each new token costs one token's
// forward pass.
#ifndef RETORT_MODELS_GENERATION_H_
#define RETORT_MODELS_GENERATION_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "models/causal_lm.h"

namespace retort::models {

struct GenerationOptions {
  int64_t max_new_tokens = 100;
  // Logits are divided by it before top_k / top_p; 0: greedy (the most
  // likely token, top_k and top_p ignored).
  double temperature = 0.8;
  int64_t top_k = 40;       // sample among the k most likely tokens; 0: all
  double top_p = 1.0;       // then among the fewest whose mass reaches top_p; 1: all
  uint64_t seed = 1;        // of a generator of its own (the global one is left alone)
  int64_t stop_token = -1;  // a row stops after sampling it; -1: never
  // false: every token recomputes its whole prefix (no cache), the baseline
  // the cache is measured against. Same tokens either way, to rounding.
  bool use_cache = true;
};

// Checks options against a model's vocabulary: INVALID_ARGUMENT naming the
// bad one.
absl::Status ValidateGenerationOptions(const GenerationOptions& options, int64_t vocab_size);

// One continuation per prompt (new tokens only, the stop token included when
// sampled). The model sees the last max_position_embeddings tokens of each
// row: past that, the cache is rebuilt from them for every further token
// (costing what recomputing does). INVALID_ARGUMENT for an empty prompt, a
// token outside the vocabulary or bad options. Runs in
// inference mode with the model in eval mode (restored after). Rows are
// sampled together from one generator: the same prompts, options and seed
// give the same continuations.
absl::StatusOr<std::vector<std::vector<int64_t>>> Generate(
    CausalLm& model, const std::vector<std::vector<int64_t>>& prompts,
    const GenerationOptions& options);

}  // namespace retort::models

#endif  // RETORT_MODELS_GENERATION_H_
