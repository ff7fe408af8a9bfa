// Splitting a string by a pattern, as Hugging Face's NormalizedString::split
// does: a pattern yields contiguous ranges that cover the whole text, each
// flagged as a match (a delimiter) or not, and a SplitBehavior decides what
// becomes of the delimiters.
#ifndef RETORT_TOKENIZER_SPLIT_H_
#define RETORT_TOKENIZER_SPLIT_H_

#include <cstddef>
#include <functional>
#include <utility>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace retort::tokenizer {

// A byte range [start, end) of a text and whether the pattern matched it.
struct Match {
  size_t start;
  size_t end;
  bool is_match;
};

// What to do with the delimiters (the matches). With `the-final--countdown`
// split on '-':
//   kRemoved            the | final | countdown       (empty pieces dropped)
//   kIsolated           the | - | final | - | - | countdown
//   kMergedWithPrevious the- | final- | - | countdown
//   kMergedWithNext     the | -final | - | -countdown
//   kContiguous         the | - | final | -- | countdown
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Parses "Removed", "Isolated", "MergedWithPrevious", "MergedWithNext" or
// "Contiguous"; InvalidArgumentError otherwise.
absl::StatusOr<SplitBehavior> ParseSplitBehavior(absl::string_view name);

// Every character for which `is_delimiter` holds is a one-character match.
// An empty text gives one empty non-match.
std::vector<Match> FindCharMatches(absl::string_view text,
                                   const std::function<bool(char32_t)>& is_delimiter);

// Flips every is_match flag.
void InvertMatches(std::vector<Match>* matches);

// The byte ranges of the pieces that `behavior` keeps, in order. Some may be
// empty; callers drop empty pieces as Hugging Face does.
std::vector<std::pair<size_t, size_t>> ApplySplitBehavior(const std::vector<Match>& matches,
                                                          SplitBehavior behavior);

}  // namespace retort::tokenizer

#endif  // RETORT_TOKENIZER_SPLIT_H_
