#include "tokenizer/json_fields.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tokenizer/unicode.h"

namespace retort::tokenizer {
namespace {

absl::Status FieldError(absl::string_view what, absl::string_view key, absl::string_view expected) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": field '", key, "' must be ", expected));
}

const nlohmann::json* Find(const nlohmann::json& object, absl::string_view key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(std::string(key));
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

}  // namespace

absl::StatusOr<std::string> GetType(const nlohmann::json& object, absl::string_view what) {
  if (!object.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be a JSON object or null"));
  }
  const nlohmann::json* type = Find(object, "type");
  if (type == nullptr || !type->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " has no string field 'type'"));
  }
  return type->get<std::string>();
}

absl::StatusOr<std::string> GetString(const nlohmann::json& object, absl::string_view key,
                                      absl::string_view what) {
  const nlohmann::json* value = Find(object, key);
  if (value == nullptr || !value->is_string()) return FieldError(what, key, "a string");
  return value->get<std::string>();
}

absl::StatusOr<std::optional<std::string>> GetOptionalString(const nlohmann::json& object,
                                                             absl::string_view key,
                                                             absl::string_view what) {
  const nlohmann::json* value = Find(object, key);
  if (value == nullptr) return std::optional<std::string>();
  if (!value->is_string()) return FieldError(what, key, "a string or null");
  return std::optional<std::string>(value->get<std::string>());
}

absl::StatusOr<bool> GetBool(const nlohmann::json& object, absl::string_view key,
                             bool default_value, absl::string_view what) {
  const nlohmann::json* value = Find(object, key);
  if (value == nullptr) return default_value;
  if (!value->is_boolean()) return FieldError(what, key, "a boolean");
  return value->get<bool>();
}

absl::StatusOr<int64_t> GetInt(const nlohmann::json& object, absl::string_view key,
                               int64_t default_value, absl::string_view what) {
  const nlohmann::json* value = Find(object, key);
  if (value == nullptr) return default_value;
  if (!value->is_number_integer()) return FieldError(what, key, "an integer");
  return value->get<int64_t>();
}

absl::StatusOr<char32_t> GetChar(const nlohmann::json& object, absl::string_view key,
                                 absl::string_view what) {
  const nlohmann::json* value = Find(object, key);
  if (value == nullptr || !value->is_string()) return FieldError(what, key, "one character");
  const std::string& text = value->get_ref<const std::string&>();
  if (text.empty() || !IsValidUtf8(text)) return FieldError(what, key, "one character");
  size_t pos = 0;
  const char32_t c = NextCodePoint(text, &pos);
  if (pos != text.size()) return FieldError(what, key, "one character");
  return c;
}

absl::StatusOr<const nlohmann::json*> GetArray(const nlohmann::json& object, absl::string_view key,
                                               absl::string_view what) {
  const nlohmann::json* value = Find(object, key);
  if (value == nullptr || !value->is_array()) return FieldError(what, key, "an array");
  return value;
}

absl::StatusOr<std::string> GetPattern(const nlohmann::json& object, absl::string_view key,
                                       absl::string_view what, bool* is_regex) {
  const nlohmann::json* value = Find(object, key);
  const char* expected = "{\"String\": ...} or {\"Regex\": ...}";
  if (value == nullptr || !value->is_object() || value->size() != 1) {
    return FieldError(what, key, expected);
  }
  const auto it = value->begin();
  if ((it.key() != "String" && it.key() != "Regex") || !it.value().is_string()) {
    return FieldError(what, key, expected);
  }
  *is_regex = it.key() == "Regex";
  return it.value().get<std::string>();
}

}  // namespace retort::tokenizer
