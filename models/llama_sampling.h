// Sampling text from a Llama model, so a person can look at what it learned.
#ifndef RETORT_MODELS_LLAMA_SAMPLING_H_
#define RETORT_MODELS_LLAMA_SAMPLING_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "models/llama.h"

namespace retort::models {

struct SamplingOptions {
  int64_t max_new_tokens = 100;
  double temperature = 0.8;  // 0: greedy (always the most likely token)
  int64_t top_k = 40;        // sample among the k most likely tokens; 0: all
  uint64_t seed = 1;         // of a generator of its own (the global one is left alone)
  int64_t stop_token = -1;   // stop after sampling this token (e.g. end of sentence); -1: never
};

// The prompt's continuation (new tokens only). The context is the last
// max_position_embeddings tokens. INVALID_ARGUMENT for an empty prompt, a
// token outside the vocabulary or bad options.
absl::StatusOr<std::vector<int64_t>> SampleContinuation(LlamaModel& model,
                                                        const std::vector<int64_t>& prompt,
                                                        const SamplingOptions& options);

}  // namespace retort::models

#endif  // RETORT_MODELS_LLAMA_SAMPLING_H_
