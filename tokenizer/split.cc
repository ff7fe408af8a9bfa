#include "tokenizer/split.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "tokenizer/unicode.h"

namespace retort::tokenizer {

absl::StatusOr<SplitBehavior> ParseSplitBehavior(absl::string_view name) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return absl::InvalidArgumentError(absl::StrCat("unknown split behavior '", name, "'"));
}

std::vector<Match> FindCharMatches(absl::string_view text,
                                   const std::function<bool(char32_t)>& is_delimiter) {
  if (text.empty()) return {{0, 0, false}};
  std::vector<Match> matches;
  size_t last = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t start = pos;
    const char32_t c = NextCodePoint(text, &pos);
    if (is_delimiter(c)) {
      if (last < start) matches.push_back({last, start, false});
      matches.push_back({start, pos, true});
      last = pos;
    }
  }
  if (last < text.size()) matches.push_back({last, text.size(), false});
  return matches;
}

void InvertMatches(std::vector<Match>* matches) {
  for (Match& m : *matches) m.is_match = !m.is_match;
}

std::vector<std::pair<size_t, size_t>> ApplySplitBehavior(const std::vector<Match>& matches,
                                                          SplitBehavior behavior) {
  std::vector<std::pair<size_t, size_t>> out;
  out.reserve(matches.size());
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const Match& m : matches) out.emplace_back(m.start, m.end);
      break;
    case SplitBehavior::kRemoved:
      for (const Match& m : matches) {
        if (!m.is_match) out.emplace_back(m.start, m.end);
      }
      break;
    case SplitBehavior::kContiguous:
      for (const Match& m : matches) {
        if (m.is_match == previous_match && !out.empty()) {
          out.back().second = m.end;
        } else {
          out.emplace_back(m.start, m.end);
        }
        previous_match = m.is_match;
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const Match& m : matches) {
        if (m.is_match && !previous_match && !out.empty()) {
          out.back().second = m.end;
        } else {
          out.emplace_back(m.start, m.end);
        }
        previous_match = m.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty()) {
          out.back().first = it->start;
        } else {
          out.emplace_back(it->start, it->end);
        }
        previous_match = it->is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
  }
  return out;
}

}  // namespace retort::tokenizer
