// The encodings of the teacher-logit cache and their parameters (see
// cache/target_encoding.h for the record layouts). Torch-free.
#ifndef RETORT_CACHE_ENCODING_OPTIONS_H_
#define RETORT_CACHE_ENCODING_OPTIONS_H_

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace retort::cache {

struct EncodingOptions {
  enum class Kind { kTopK, kSampled };
  Kind kind = Kind::kTopK;
  int32_t top_k = 32;      // kTopK: entries per position, 1..65535 (at most V)
  int32_t exact = 4;       // kTopK: entries kept as float16, 1..top_k
  int32_t value_bits = 8;  // kTopK: bits of the other entries' codes, 1..16
  int32_t samples = 32;    // kSampled: draws per position, 1..65535

  // INVALID_ARGUMENT naming the option (as a flag: --cache_top_k, ...).
  absl::Status Validate() const;
  // "topk" or "sampled" (the --cache_encoding values).
  static absl::StatusOr<Kind> ParseKind(const std::string& name);
  std::string Describe() const;  // "top-32 (4 exact, 8-bit codes)", "sampled N=32"
  nlohmann::json ToJson() const;
  static absl::StatusOr<EncodingOptions> FromJson(const nlohmann::json& json);
  bool operator==(const EncodingOptions& other) const { return ToJson() == other.ToJson(); }
};

// Bits per position of a top-k record (fixed); the sampled kind varies.
int64_t TopKBitsPerPosition(const EncodingOptions& options, int64_t vocab);

}  // namespace retort::cache

#endif  // RETORT_CACHE_ENCODING_OPTIONS_H_
