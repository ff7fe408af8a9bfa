#include "tokenizer/regex.h"

#include <unicode/regex.h>
#include <unicode/unistr.h>
#include <unicode/utf16.h>

#include "absl/strings/str_cat.h"
#include "tokenizer/unicode.h"

namespace retort::tokenizer {

Regex::~Regex() = default;

absl::StatusOr<std::unique_ptr<Regex>> Regex::Compile(absl::string_view pattern) {
  if (pattern.empty()) return absl::InvalidArgumentError("empty regex pattern");
  UErrorCode status = U_ZERO_ERROR;
  UParseError parse_error;
  const icu::UnicodeString icu_pattern = icu::UnicodeString::fromUTF8(
      icu::StringPiece(pattern.data(), static_cast<int32_t>(pattern.size())));
  std::unique_ptr<icu::RegexPattern> compiled(
      icu::RegexPattern::compile(icu_pattern, 0, parse_error, status));
  if (U_FAILURE(status) || compiled == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("regex '", pattern,
                                                   "' does not compile: ", u_errorName(status),
                                                   " at offset ", parse_error.offset));
  }
  std::unique_ptr<Regex> regex(new Regex());
  regex->icu_ = std::move(compiled);
  return regex;
}

absl::StatusOr<std::unique_ptr<Regex>> Regex::Literal(absl::string_view text) {
  if (text.empty()) return absl::InvalidArgumentError("empty string pattern");
  std::unique_ptr<Regex> regex(new Regex());
  regex->literal_ = std::string(text);
  return regex;
}

std::vector<Match> Regex::FindMatches(absl::string_view text) const {
  if (text.empty()) return {{0, 0, false}};
  std::vector<Match> out;
  size_t prev = 0;
  auto add = [&](size_t start, size_t end) {
    if (prev != start) out.push_back({prev, start, false});
    out.push_back({start, end, true});
    prev = end;
  };
  if (icu_ == nullptr) {
    for (size_t pos = text.find(literal_); pos != absl::string_view::npos;
         pos = text.find(literal_, pos + literal_.size())) {
      add(pos, pos + literal_.size());
    }
  } else {
    // ICU works on UTF-16: map its indices back to byte offsets.
    icu::UnicodeString u16;
    std::vector<size_t> byte_at;  // byte offset of each UTF-16 index
    byte_at.reserve(text.size() + 1);
    for (size_t pos = 0; pos < text.size();) {
      const size_t start = pos;
      const char32_t c = NextCodePoint(text, &pos);
      u16.append(static_cast<UChar32>(c));
      byte_at.push_back(start);
      if (c >= 0x10000) byte_at.push_back(start);
    }
    byte_at.push_back(text.size());
    UErrorCode status = U_ZERO_ERROR;
    std::unique_ptr<icu::RegexMatcher> matcher(icu_->matcher(u16, status));
    if (U_FAILURE(status)) return {{0, text.size(), false}};
    const int64_t length = u16.length();
    int64_t search_from = 0;
    int64_t last_match_end = -1;
    while (search_from <= length) {
      if (!matcher->find(search_from, status) || U_FAILURE(status)) break;
      const int64_t s = matcher->start64(status);
      const int64_t e = matcher->end64(status);
      if (U_FAILURE(status)) break;
      if (s == e && e == last_match_end) {
        // No empty match right after the previous one: move one character on.
        if (search_from >= length) break;
        search_from += U16_IS_LEAD(u16.charAt(static_cast<int32_t>(search_from))) ? 2 : 1;
        continue;
      }
      add(byte_at[s], byte_at[e]);
      search_from = e;
      last_match_end = e;
    }
  }
  if (prev != text.size()) out.push_back({prev, text.size(), false});
  return out;
}

}  // namespace retort::tokenizer
