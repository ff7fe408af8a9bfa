// Pre-tokenizers of tokenizer.json ("pre_tokenizer"): Sequence, Split,
// ByteLevel, Metaspace, Digits, Whitespace, WhitespaceSplit and Punctuation,
// with Hugging Face's semantics.
#ifndef RETORT_TOKENIZER_PRE_TOKENIZER_H_
#define RETORT_TOKENIZER_PRE_TOKENIZER_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"
#include "tokenizer/pre_token.h"

namespace retort::tokenizer {

// Immutable after construction; PreTokenize may run on several threads.
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits (and may rewrite) the text pieces; added-token pieces pass
  // through untouched. Empty pieces are dropped.
  virtual void PreTokenize(std::vector<PreToken>* pieces) const = 0;
};

// Builds the pre-tokenizer a non-null "pre_tokenizer" object describes.
// UnimplementedError naming the type for types Retort does not implement
// (BertPreTokenizer, CharDelimiterSplit, UnicodeScripts, ...);
// InvalidArgumentError for malformed fields or regexes.
absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const nlohmann::json& config);

}  // namespace retort::tokenizer

#endif  // RETORT_TOKENIZER_PRE_TOKENIZER_H_
