#include "tokenizer/decoder.h"
#include "absl/strings/string_view.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "tokenizer/byte_level.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace retort::tokenizer {
namespace {

constexpr char kReplacementChar[] = "\xEF\xBF\xBD";  // U+FFFD

std::vector<char32_t> CodePoints(absl::string_view text) {
  std::vector<char32_t> out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) out.push_back(NextCodePoint(text, &pos));
  return out;
}

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps)
      : steps_(std::move(steps)) {}
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    for (const auto& step : steps_) tokens = step->DecodeChain(std::move(tokens));
    return tokens;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

class ByteLevelDecoder : public Decoder {
 public:
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    std::string bytes;
    for (const std::string& token : tokens) bytes += CharsToBytes(token);
    return {ToValidUtf8(bytes)};
  }
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(char32_t replacement, bool drop_first)
      : replacement_(replacement), drop_first_(drop_first) {}
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      for (const char32_t c : CodePoints(tokens[i])) {
        if (c != replacement_) {
          AppendUtf8(c, &out);
        } else if (i != 0 || !drop_first_) {
          out += ' ';
        }
      }
      tokens[i] = std::move(out);
    }
    return tokens;
  }

 private:
  char32_t replacement_;
  bool drop_first_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::unique_ptr<Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    for (std::string& token : tokens) {
      std::string out;
      for (const Match& m : pattern_->FindMatches(token)) {
        if (m.is_match) {
          out += content_;
        } else {
          out.append(token, m.start, m.end - m.start);
        }
      }
      token = std::move(out);
    }
    return tokens;
  }

 private:
  std::unique_ptr<Regex> pattern_;
  std::string content_;
};

// Rust's u8::from_str_radix(s, 16) for a two-character string: an optional
// '+' then hex digits.
int ParseHexByte(absl::string_view s) {
  size_t i = 0;
  if (!s.empty() && s[0] == '+') i = 1;
  if (i == s.size()) return -1;
  int value = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else {
      return -1;
    }
    value = value * 16 + digit;
  }
  return value;
}

class ByteFallbackDecoder : public Decoder {
 public:
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (IsValidUtf8(pending)) {
        out.push_back(pending);
      } else {
        for (size_t i = 0; i < pending.size(); ++i) out.push_back(kReplacementChar);
      }
      pending.clear();
    };
    for (std::string& token : tokens) {
      int byte = -1;
      if (token.size() == 6 && token.rfind("<0x", 0) == 0 && token.back() == '>') {
        byte = ParseHexByte(absl::string_view(token).substr(3, 2));
      }
      if (byte >= 0) {
        pending.push_back(static_cast<char>(byte));
      } else {
        flush();
        out.push_back(std::move(token));
      }
    }
    flush();
    return out;
  }
};

class FuseDecoder : public Decoder {
 public:
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    return {absl::StrJoin(tokens, "")};
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop)
      : content_(content), start_(start), stop_(stop) {}
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    for (std::string& token : tokens) {
      const std::vector<char32_t> chars = CodePoints(token);
      size_t start_cut = 0;
      for (size_t i = 0; i < start_ && i < chars.size(); ++i) {
        if (chars[i] != content_) break;
        start_cut = i + 1;
      }
      size_t stop_cut = chars.size();
      for (size_t i = 0; i < stop_ && i < chars.size(); ++i) {
        const size_t index = chars.size() - i - 1;
        if (chars[index] != content_) break;
        stop_cut = index;
      }
      std::string out;
      for (size_t i = start_cut; i < stop_cut; ++i) AppendUtf8(chars[i], &out);
      token = std::move(out);
    }
    return tokens;
  }

 private:
  char32_t content_;
  size_t start_;
  size_t stop_;
};

class BpeDecoder : public Decoder {
 public:
  explicit BpeDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = absl::StrReplaceAll(tokens[i], {{suffix_, i + 1 == tokens.size() ? "" : " "}});
    }
    return tokens;
  }

 private:
  std::string suffix_;
};

}  // namespace

std::string Decoder::Decode(std::vector<std::string> tokens) const {
  return absl::StrJoin(DecodeChain(std::move(tokens)), "");
}

absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const nlohmann::json& config) {
  RETORT_ASSIGN_OR_RETURN(const std::string type, GetType(config, "decoder"));
  const std::string what = absl::StrCat("decoder ", type);
  if (type == "Sequence") {
    RETORT_ASSIGN_OR_RETURN(const nlohmann::json* list, GetArray(config, "decoders", what));
    std::vector<std::unique_ptr<Decoder>> steps;
    for (const nlohmann::json& item : *list) {
      RETORT_ASSIGN_OR_RETURN(auto step, ParseDecoder(item));
      steps.push_back(std::move(step));
    }
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") {
    RETORT_ASSIGN_OR_RETURN(const char32_t replacement, GetChar(config, "replacement", what));
    RETORT_ASSIGN_OR_RETURN(const std::optional<std::string> scheme,
                            GetOptionalString(config, "prepend_scheme", what));
    if (scheme.has_value() && *scheme != "always" && *scheme != "first" && *scheme != "never") {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": unknown prepend_scheme '", *scheme, "'"));
    }
    RETORT_ASSIGN_OR_RETURN(const bool add_prefix_space,
                            GetBool(config, "add_prefix_space", true, what));
    const bool never = (scheme.has_value() && *scheme == "never") || !add_prefix_space;
    return std::make_unique<MetaspaceDecoder>(replacement, !never);
  }
  if (type == "Replace") {
    bool is_regex = false;
    RETORT_ASSIGN_OR_RETURN(const std::string pattern,
                            GetPattern(config, "pattern", what, &is_regex));
    RETORT_ASSIGN_OR_RETURN(std::string content, GetString(config, "content", what));
    auto regex = is_regex ? Regex::Compile(pattern) : Regex::Literal(pattern);
    if (!regex.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", regex.status().message()));
    }
    return std::make_unique<ReplaceDecoder>(*std::move(regex), std::move(content));
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    RETORT_ASSIGN_OR_RETURN(const char32_t content, GetChar(config, "content", what));
    RETORT_ASSIGN_OR_RETURN(const int64_t start, GetInt(config, "start", 0, what));
    RETORT_ASSIGN_OR_RETURN(const int64_t stop, GetInt(config, "stop", 0, what));
    if (start < 0 || stop < 0) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": start and stop must be >= 0"));
    }
    return std::make_unique<StripDecoder>(content, static_cast<size_t>(start),
                                          static_cast<size_t>(stop));
  }
  if (type == "BPEDecoder") {
    RETORT_ASSIGN_OR_RETURN(std::optional<std::string> suffix,
                            GetOptionalString(config, "suffix", what));
    return std::make_unique<BpeDecoder>(suffix.value_or("</w>"));
  }
  return absl::UnimplementedError(absl::StrCat("decoder type '", type, "' is not supported"));
}

}  // namespace retort::tokenizer
