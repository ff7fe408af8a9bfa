// Typed, error-returning access to the fields of tokenizer.json objects, so
// that a malformed file gives a Status naming the field instead of throwing.
// Absent and null optional fields take the given default, as Hugging Face's
// deserializers do.
#ifndef RETORT_TOKENIZER_JSON_FIELDS_H_
#define RETORT_TOKENIZER_JSON_FIELDS_H_

#include <cstdint>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace retort::tokenizer {

// The object's "type" string; InvalidArgumentError when `object` is not an
// object or has no string "type". `what` names the component in messages
// ("normalizer", "decoder", ...).
absl::StatusOr<std::string> GetType(const nlohmann::json& object, absl::string_view what);

absl::StatusOr<std::string> GetString(const nlohmann::json& object, absl::string_view key,
                                      absl::string_view what);
absl::StatusOr<std::optional<std::string>> GetOptionalString(const nlohmann::json& object,
                                                             absl::string_view key,
                                                             absl::string_view what);
absl::StatusOr<bool> GetBool(const nlohmann::json& object, absl::string_view key,
                             bool default_value, absl::string_view what);
absl::StatusOr<int64_t> GetInt(const nlohmann::json& object, absl::string_view key,
                               int64_t default_value, absl::string_view what);
// A string of exactly one character (Rust `char` fields).
absl::StatusOr<char32_t> GetChar(const nlohmann::json& object, absl::string_view key,
                                 absl::string_view what);
// The array at `key`; InvalidArgumentError when absent or not an array.
absl::StatusOr<const nlohmann::json*> GetArray(const nlohmann::json& object, absl::string_view key,
                                               absl::string_view what);
// Hugging Face's pattern enum: {"String": "..."} or {"Regex": "..."}. Sets
// `*is_regex` and returns the text.
absl::StatusOr<std::string> GetPattern(const nlohmann::json& object, absl::string_view key,
                                       absl::string_view what, bool* is_regex);

}  // namespace retort::tokenizer

#endif  // RETORT_TOKENIZER_JSON_FIELDS_H_
