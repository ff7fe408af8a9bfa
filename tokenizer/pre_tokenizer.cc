#include "tokenizer/pre_tokenizer.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "tokenizer/byte_level.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/regex.h"
#include "tokenizer/split.h"
#include "tokenizer/unicode.h"

namespace retort::tokenizer {
namespace {

// GPT-2's pre-tokenization regex, as Hugging Face's ByteLevel has it.
constexpr char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

const Regex& Gpt2Regex() {
  static const Regex* regex = Regex::Compile(kGpt2Pattern).value().release();
  return *regex;
}

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  void PreTokenize(std::vector<PreToken>* pieces) const override {
    for (const auto& step : steps_) step->PreTokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::unique_ptr<Regex> pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  void PreTokenize(std::vector<PreToken>* pieces) const override {
    SplitEach(pieces, [this](PreToken piece) {
      std::vector<Match> matches = pattern_->FindMatches(piece.text);
      if (invert_) InvertMatches(&matches);
      return Slice(piece, ApplySplitBehavior(matches, behavior_));
    });
  }

 private:
  std::unique_ptr<Regex> pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex) {}
  void PreTokenize(std::vector<PreToken>* pieces) const override {
    SplitEach(pieces, [this](PreToken piece) {
      if (add_prefix_space_ && piece.text[0] != ' ') piece.text.insert(0, " ");
      if (!use_regex_) return std::vector<PreToken>{std::move(piece)};
      return Slice(
          piece, ApplySplitBehavior(Gpt2Regex().FindMatches(piece.text), SplitBehavior::kIsolated));
    });
    for (PreToken& piece : *pieces) {
      if (piece.added_token_id < 0) piece.text = BytesToChars(piece.text);
    }
  }

 private:
  bool add_prefix_space_;
  bool use_regex_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(char32_t replacement, PrependScheme scheme, bool split)
      : replacement_(replacement), scheme_(scheme), split_(split) {
    AppendUtf8(replacement, &replacement_utf8_);
  }
  void PreTokenize(std::vector<PreToken>* pieces) const override {
    SplitEach(pieces, [this](PreToken piece) {
      std::string replaced;
      replaced.reserve(piece.text.size() + replacement_utf8_.size());
      for (const char c : piece.text) {
        if (c == ' ') {
          replaced += replacement_utf8_;
        } else {
          replaced += c;
        }
      }
      piece.text = std::move(replaced);
      const bool starts_with_replacement = piece.text.rfind(replacement_utf8_, 0) == 0;
      if (!starts_with_replacement &&
          (scheme_ == PrependScheme::kAlways ||
           (scheme_ == PrependScheme::kFirst && piece.at_input_start))) {
        piece.text.insert(0, replacement_utf8_);
      }
      if (!split_) return std::vector<PreToken>{std::move(piece)};
      const char32_t replacement = replacement_;
      return Slice(
          piece,
          ApplySplitBehavior(
              FindCharMatches(piece.text, [replacement](char32_t c) { return c == replacement; }),
              SplitBehavior::kMergedWithNext));
    });
  }

 private:
  char32_t replacement_;
  std::string replacement_utf8_;
  PrependScheme scheme_;
  bool split_;
};

// Splits on characters of one class (Digits, WhitespaceSplit, Punctuation).
class CharClassPreTokenizer : public PreTokenizer {
 public:
  CharClassPreTokenizer(bool (*is_delimiter)(char32_t), SplitBehavior behavior)
      : is_delimiter_(is_delimiter), behavior_(behavior) {}
  void PreTokenize(std::vector<PreToken>* pieces) const override {
    SplitEach(pieces, [this](PreToken piece) {
      return Slice(piece,
                   ApplySplitBehavior(FindCharMatches(piece.text, is_delimiter_), behavior_));
    });
  }

 private:
  bool (*is_delimiter_)(char32_t);
  SplitBehavior behavior_;
};

// Hugging Face's Whitespace: the runs of \w+ and of [^\w\s]+, whitespace
// dropped.
class WhitespacePreTokenizer : public PreTokenizer {
 public:
  void PreTokenize(std::vector<PreToken>* pieces) const override {
    SplitEach(pieces, [](PreToken piece) {
      std::vector<std::pair<size_t, size_t>> ranges;
      const std::string& text = piece.text;
      int run_class = 0;  // 0 none, 1 word, 2 other non-space
      for (size_t pos = 0; pos < text.size();) {
        const size_t start = pos;
        const char32_t c = NextCodePoint(text, &pos);
        const int cls = IsWordChar(c) ? 1 : IsWhitespace(c) ? 0 : 2;
        if (cls != 0 && cls == run_class) {
          ranges.back().second = pos;
        } else if (cls != 0) {
          ranges.emplace_back(start, pos);
        }
        run_class = cls;
      }
      return Slice(piece, ranges);
    });
  }
};

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParseMetaspace(const nlohmann::json& config,
                                                             const std::string& what) {
  RETORT_ASSIGN_OR_RETURN(const char32_t replacement, GetChar(config, "replacement", what));
  RETORT_ASSIGN_OR_RETURN(const std::optional<std::string> scheme_name,
                          GetOptionalString(config, "prepend_scheme", what));
  PrependScheme scheme = PrependScheme::kAlways;
  if (scheme_name.has_value()) {
    if (*scheme_name == "always") {
      scheme = PrependScheme::kAlways;
    } else if (*scheme_name == "first") {
      scheme = PrependScheme::kFirst;
    } else if (*scheme_name == "never") {
      scheme = PrependScheme::kNever;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": unknown prepend_scheme '", *scheme_name, "'"));
    }
  }
  // Older files carry add_prefix_space instead.
  RETORT_ASSIGN_OR_RETURN(const bool add_prefix_space,
                          GetBool(config, "add_prefix_space", true, what));
  if (!add_prefix_space) {
    if (scheme != PrependScheme::kNever && scheme_name.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": add_prefix_space does not match declared prepend_scheme"));
    }
    scheme = PrependScheme::kNever;
  }
  RETORT_ASSIGN_OR_RETURN(const bool split, GetBool(config, "split", true, what));
  return std::make_unique<MetaspacePreTokenizer>(replacement, scheme, split);
}

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const nlohmann::json& config) {
  RETORT_ASSIGN_OR_RETURN(const std::string type, GetType(config, "pre_tokenizer"));
  const std::string what = absl::StrCat("pre_tokenizer ", type);
  if (type == "Sequence") {
    RETORT_ASSIGN_OR_RETURN(const nlohmann::json* list, GetArray(config, "pretokenizers", what));
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (const nlohmann::json& item : *list) {
      RETORT_ASSIGN_OR_RETURN(auto step, ParsePreTokenizer(item));
      steps.push_back(std::move(step));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  if (type == "Split") {
    bool is_regex = false;
    RETORT_ASSIGN_OR_RETURN(const std::string pattern,
                            GetPattern(config, "pattern", what, &is_regex));
    RETORT_ASSIGN_OR_RETURN(const std::string behavior_name, GetString(config, "behavior", what));
    auto behavior = ParseSplitBehavior(behavior_name);
    if (!behavior.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", behavior.status().message()));
    }
    RETORT_ASSIGN_OR_RETURN(const bool invert, GetBool(config, "invert", false, what));
    auto regex = is_regex ? Regex::Compile(pattern) : Regex::Literal(pattern);
    if (!regex.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", regex.status().message()));
    }
    return std::make_unique<SplitPreTokenizer>(*std::move(regex), *behavior, invert);
  }
  if (type == "ByteLevel") {
    RETORT_ASSIGN_OR_RETURN(const bool add_prefix_space,
                            GetBool(config, "add_prefix_space", true, what));
    RETORT_ASSIGN_OR_RETURN(const bool use_regex, GetBool(config, "use_regex", true, what));
    return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, use_regex);
  }
  if (type == "Metaspace") return ParseMetaspace(config, what);
  if (type == "Digits") {
    RETORT_ASSIGN_OR_RETURN(const bool individual,
                            GetBool(config, "individual_digits", false, what));
    return std::make_unique<CharClassPreTokenizer>(
        IsNumeric, individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous);
  }
  if (type == "Whitespace") return std::make_unique<WhitespacePreTokenizer>();
  if (type == "WhitespaceSplit") {
    return std::make_unique<CharClassPreTokenizer>(IsWhitespace, SplitBehavior::kRemoved);
  }
  if (type == "Punctuation") {
    RETORT_ASSIGN_OR_RETURN(const std::optional<std::string> behavior_name,
                            GetOptionalString(config, "behavior", what));
    SplitBehavior behavior = SplitBehavior::kIsolated;
    if (behavior_name.has_value()) {
      auto parsed = ParseSplitBehavior(*behavior_name);
      if (!parsed.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": ", parsed.status().message()));
      }
      behavior = *parsed;
    }
    return std::make_unique<CharClassPreTokenizer>(IsPunctuation, behavior);
  }
  return absl::UnimplementedError(absl::StrCat("pre_tokenizer type '", type, "' is not supported"));
}

}  // namespace retort::tokenizer
