// Normalizers of tokenizer.json ("normalizer"): Sequence, NFC, NFD, NFKC,
// NFKD, Lowercase, Prepend, Replace (String or Regex pattern) and Strip,
// with Hugging Face's semantics. Only the normalized text is kept (no
// alignments): Retort needs ids, not offsets.
#ifndef RETORT_TOKENIZER_NORMALIZER_H_
#define RETORT_TOKENIZER_NORMALIZER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace retort::tokenizer {

// Immutable after construction; Normalize may run on several threads.
class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Rewrites `text` (valid UTF-8) in place.
  virtual void Normalize(std::string* text) const = 0;
};

// Builds the normalizer that a non-null "normalizer" object describes.
// UnimplementedError naming the type for types Retort does not implement
// (BertNormalizer, Precompiled, Nmt, StripAccents, ...); InvalidArgumentError
// for malformed fields or regexes.
absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const nlohmann::json& config);

}  // namespace retort::tokenizer

#endif  // RETORT_TOKENIZER_NORMALIZER_H_
