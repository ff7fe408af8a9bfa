// A regular expression with the semantics of the Oniguruma regexes Hugging
// Face's tokenizers compiles for Split, Replace and ByteLevel (\p{L},
// \p{N}, lookahead, (?i:...)), run by ICU. \s and \S mean the Unicode
// White_Space property in both. Immutable and thread-safe.
#ifndef RETORT_TOKENIZER_REGEX_H_
#define RETORT_TOKENIZER_REGEX_H_

#include <memory>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include <unicode/uversion.h>

#include "absl/status/statusor.h"
#include "tokenizer/split.h"

U_NAMESPACE_BEGIN
class RegexPattern;
U_NAMESPACE_END

namespace retort::tokenizer {

class Regex {
 public:
  // Compiles `pattern`; InvalidArgumentError (with ICU's message) when it
  // does not compile or is empty.
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(absl::string_view pattern);
  // A pattern matching `text` literally; InvalidArgumentError when empty.
  static absl::StatusOr<std::unique_ptr<Regex>> Literal(absl::string_view text);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // The successive leftmost matches in `text` (valid UTF-8) and the gaps
  // between them, covering the text in order; an empty match right after the
  // previous match is skipped, as the onig crate does. An empty text gives
  // one empty non-match.
  std::vector<Match> FindMatches(absl::string_view text) const;

 private:
  Regex() = default;
  std::string literal_;                     // set for Literal
  std::unique_ptr<icu::RegexPattern> icu_;  // set for Compile
};

}  // namespace retort::tokenizer

#endif  // RETORT_TOKENIZER_REGEX_H_
