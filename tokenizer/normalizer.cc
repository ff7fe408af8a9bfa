#include "tokenizer/normalizer.h"
#include "absl/strings/string_view.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "tokenizer/json_fields.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace retort::tokenizer {
namespace {

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> normalizers)
      : normalizers_(std::move(normalizers)) {}
  void Normalize(std::string* text) const override {
    for (const auto& n : normalizers_) n->Normalize(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> normalizers_;
};

// NFC, NFD, NFKC or NFKD through ICU (the instances are immutable singletons).
class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(const icu::Normalizer2* form) : form_(form) {}
  void Normalize(std::string* text) const override {
    UErrorCode status = U_ZERO_ERROR;
    if (form_->isNormalizedUTF8(*text, status) && U_SUCCESS(status)) return;
    std::string out;
    icu::StringByteSink<std::string> sink(&out);
    status = U_ZERO_ERROR;
    form_->normalizeUTF8(0, *text, sink, nullptr, status);
    if (U_SUCCESS(status)) *text = std::move(out);
  }

 private:
  const icu::Normalizer2* form_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  void Normalize(std::string* text) const override { *text = Lowercase(*text); }
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void Normalize(std::string* text) const override {
    if (!text->empty()) text->insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::unique_ptr<Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void Normalize(std::string* text) const override {
    std::string out;
    out.reserve(text->size());
    for (const Match& m : pattern_->FindMatches(*text)) {
      if (m.is_match) {
        out += content_;
      } else {
        out.append(*text, m.start, m.end - m.start);
      }
    }
    *text = std::move(out);
  }

 private:
  std::unique_ptr<Regex> pattern_;
  std::string content_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void Normalize(std::string* text) const override {
    size_t begin = 0;
    size_t end = text->size();
    if (left_) {
      while (begin < end) {
        size_t next = begin;
        if (!IsWhitespace(NextCodePoint(*text, &next))) break;
        begin = next;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin && ((*text)[start] & 0xC0) == 0x80) --start;
        size_t next = start;
        if (!IsWhitespace(NextCodePoint(*text, &next))) break;
        end = start;
      }
    }
    *text = text->substr(begin, end - begin);
  }

 private:
  bool left_;
  bool right_;
};

absl::StatusOr<const icu::Normalizer2*> Form(absl::string_view type) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* form = nullptr;
  if (type == "NFC") form = icu::Normalizer2::getNFCInstance(status);
  if (type == "NFD") form = icu::Normalizer2::getNFDInstance(status);
  if (type == "NFKC") form = icu::Normalizer2::getNFKCInstance(status);
  if (type == "NFKD") form = icu::Normalizer2::getNFKDInstance(status);
  if (U_FAILURE(status) || form == nullptr) {
    return absl::InternalError(
        absl::StrCat("ICU has no ", type, " normalizer: ", u_errorName(status)));
  }
  return form;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const nlohmann::json& config) {
  RETORT_ASSIGN_OR_RETURN(const std::string type, GetType(config, "normalizer"));
  const std::string what = absl::StrCat("normalizer ", type);
  if (type == "Sequence") {
    RETORT_ASSIGN_OR_RETURN(const nlohmann::json* list, GetArray(config, "normalizers", what));
    std::vector<std::unique_ptr<Normalizer>> normalizers;
    for (const nlohmann::json& item : *list) {
      RETORT_ASSIGN_OR_RETURN(auto normalizer, ParseNormalizer(item));
      normalizers.push_back(std::move(normalizer));
    }
    return std::make_unique<SequenceNormalizer>(std::move(normalizers));
  }
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    RETORT_ASSIGN_OR_RETURN(const icu::Normalizer2* form, Form(type));
    return std::make_unique<UnicodeNormalizer>(form);
  }
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Prepend") {
    RETORT_ASSIGN_OR_RETURN(std::string prefix, GetString(config, "prepend", what));
    return std::make_unique<PrependNormalizer>(std::move(prefix));
  }
  if (type == "Replace") {
    bool is_regex = false;
    RETORT_ASSIGN_OR_RETURN(const std::string pattern,
                            GetPattern(config, "pattern", what, &is_regex));
    RETORT_ASSIGN_OR_RETURN(std::string content, GetString(config, "content", what));
    auto regex = is_regex ? Regex::Compile(pattern) : Regex::Literal(pattern);
    if (!regex.ok())
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", regex.status().message()));
    return std::make_unique<ReplaceNormalizer>(*std::move(regex), std::move(content));
  }
  if (type == "Strip") {
    RETORT_ASSIGN_OR_RETURN(const bool left, GetBool(config, "strip_left", false, what));
    RETORT_ASSIGN_OR_RETURN(const bool right, GetBool(config, "strip_right", false, what));
    return std::make_unique<StripNormalizer>(left, right);
  }
  return absl::UnimplementedError(absl::StrCat("normalizer type '", type, "' is not supported"));
}

}  // namespace retort::tokenizer
