// The compaction and export steps written for the plain Llama block (GGUF
// export, structured pruning, SliceGPT) refuse the other families' features
// (q/k/v biases, q/k norms, sliding windows, llama3 rope scaling) rather
// than drop them silently.
#ifndef RETORT_STUDENT_PLAIN_LLAMA_H_
#define RETORT_STUDENT_PLAIN_LLAMA_H_

#include <string>

#include "absl/status/status.h"
#include "models/llama_config.h"

namespace retort::student {

// OK for a plain Llama config; UNIMPLEMENTED naming `operation` and the
// model's family and features otherwise.
absl::Status RequirePlainLlama(const models::LlamaConfig& config, const std::string& operation);

}  // namespace retort::student

#endif  // RETORT_STUDENT_PLAIN_LLAMA_H_
