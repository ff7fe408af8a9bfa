// The added tokens of tokenizer.json ("added_tokens"), found in the text the
// way Hugging Face's AddedVocabulary finds them: tokens with normalized=false
// in the raw text first, then, in each remaining piece once normalized,
// tokens with normalized=true (matched in their normalized form). Matching is
// leftmost-longest without overlaps; single_word, lstrip and rstrip apply.
#ifndef RETORT_TOKENIZER_ADDED_VOCABULARY_H_
#define RETORT_TOKENIZER_ADDED_VOCABULARY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"
#include "tokenizer/pre_token.h"

namespace retort::tokenizer {

class BpeModel;
class Normalizer;

struct AddedToken {
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

// Immutable after Create; thread-safe.
class AddedVocabulary {
 public:
  // Registers the "added_tokens" array (may be null) in order, as Hugging
  // Face does when it loads a file: a token whose content the model (or an
  // earlier added token) knows takes that id, others take fresh ids from the
  // model's vocabulary size up (the file's "id" fields are not used).
  // `normalizer` (may be null) gives the form normalized tokens are matched in.
  static absl::StatusOr<std::unique_ptr<AddedVocabulary>> Create(const nlohmann::json& added_tokens,
                                                                 const BpeModel& model,
                                                                 const Normalizer* normalizer);

  // Splits `text` (valid UTF-8) into pieces: added tokens resolved to ids,
  // the rest normalized with `normalizer` (may be null).
  std::vector<PreToken> ExtractAndNormalize(absl::string_view text,
                                            const Normalizer* normalizer) const;

  std::optional<int32_t> TokenToId(absl::string_view content) const;
  // The string Decode uses for `id` (the normalized form for a normalized
  // token), or nullptr when `id` is not an added token.
  const std::string* IdToToken(int32_t id) const;
  bool IsSpecial(absl::string_view token) const { return special_.contains(token); }
  // One more than the largest added id (0 when none).
  int32_t id_bound() const { return id_bound_; }
  int size() const { return static_cast<int>(by_content_.size()); }

 private:
  // A byte trie over the patterns of one pass.
  struct Trie {
    struct Node {
      absl::flat_hash_map<unsigned char, int> children;
      int32_t id = -1;  // the token that ends here
    };
    std::vector<Node> nodes{Node()};
    void Insert(absl::string_view pattern, int32_t id);
    // The id and length of the longest pattern starting at `pos`, or id -1.
    std::pair<int32_t, size_t> LongestAt(absl::string_view text, size_t pos) const;
  };

  AddedVocabulary() = default;
  void Split(const PreToken& piece, const Trie& trie, std::vector<PreToken>* out) const;

  absl::flat_hash_map<std::string, int32_t> by_content_;
  absl::flat_hash_map<int32_t, AddedToken> by_id_;
  absl::flat_hash_map<int32_t, std::string> normalized_form_;  // where it differs
  absl::flat_hash_set<std::string> special_;
  Trie raw_trie_;         // normalized=false tokens
  Trie normalized_trie_;  // normalized=true tokens, in normalized form
  bool has_raw_ = false;
  bool has_normalized_ = false;
  int32_t id_bound_ = 0;
};

}  // namespace retort::tokenizer

#endif  // RETORT_TOKENIZER_ADDED_VOCABULARY_H_
