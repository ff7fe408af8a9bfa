// The shapes of published checkpoints, by name, as LlamaConfig (sizes and
// features from their config.json), for randomly initialised models of a
// real shape in tests and benchmarks; and tiny shapes of each family's
// features for the tests.
#ifndef RETORT_MODELS_NAMED_SHAPES_H_
#define RETORT_MODELS_NAMED_SHAPES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "models/llama_config.h"

namespace retort::models {

// "llama-3.2-1b", "qwen3-0.6b", "qwen2.5-0.5b", "mistral-7b-v0.1", and the
// tiny "tiny-llama3", "tiny-qwen2", "tiny-qwen3", "tiny-mistral".
// INVALID_ARGUMENT listing the names for any other.
absl::StatusOr<LlamaConfig> NamedShape(const std::string& name);

std::vector<std::string> NamedShapeNames();

}  // namespace retort::models

#endif  // RETORT_MODELS_NAMED_SHAPES_H_
