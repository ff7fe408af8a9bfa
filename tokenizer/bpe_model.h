// The BPE model of tokenizer.json ("model": {"type": "BPE"}), merging exactly
// as Hugging Face's tokenizers does: the pair of lowest merge rank first, the
// leftmost on ties; byte_fallback to <0xXX> tokens; unk_token (fused or not);
// ignore_merges; continuing_subword_prefix and end_of_word_suffix.
#ifndef RETORT_TOKENIZER_BPE_MODEL_H_
#define RETORT_TOKENIZER_BPE_MODEL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace retort::tokenizer {

// Immutable after Parse; Tokenize is thread-safe (the word cache is locked).
class BpeModel {
 public:
  // Builds the model from the "model" object. Accepts merges as "a b"
  // strings or ["a", "b"] pairs. InvalidArgumentError when a merge names a
  // token (or yields one) missing from the vocabulary, when unk_token is not
  // in it, or for a malformed field; UnimplementedError for a dropout other
  // than null or 0 (Retort is deterministic) and for other model types.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Parse(const nlohmann::json& config);
  ~BpeModel();
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the ids of one pre-token (a non-empty piece of normalized,
  // pre-tokenized text) to `ids`.
  void Tokenize(absl::string_view word, std::vector<int32_t>* ids) const;

  std::optional<int32_t> TokenToId(absl::string_view token) const;
  // The token of `id`, or nullptr when no token has it.
  const std::string* IdToToken(int32_t id) const;
  // The number of entries in the vocabulary (Hugging Face's vocab size).
  int vocab_size() const;
  // One more than the largest id in the vocabulary.
  int32_t id_bound() const;

 private:
  class Impl;
  explicit BpeModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace retort::tokenizer

#endif  // RETORT_TOKENIZER_BPE_MODEL_H_
