// UTF-8 helpers and the character classes Hugging Face's tokenizers (Rust)
// use, computed with ICU so that they follow the same Unicode tables.
#ifndef RETORT_TOKENIZER_UNICODE_H_
#define RETORT_TOKENIZER_UNICODE_H_

#include <string>
#include <vector>
#include "absl/strings/string_view.h"

namespace retort::tokenizer {

// Decodes the code point at `text[*pos]` and advances `*pos` past it. The text
// must be valid UTF-8 (see ToValidUtf8).
char32_t NextCodePoint(absl::string_view text, size_t* pos);

// Appends the UTF-8 encoding of `c`.
void AppendUtf8(char32_t c, std::string* out);

// The byte length of the UTF-8 sequence that starts with `lead`.
int Utf8Length(unsigned char lead);

// Replaces every maximal invalid subsequence with U+FFFD, exactly as Rust's
// String::from_utf8_lossy does. Valid input comes back unchanged.
std::string ToValidUtf8(absl::string_view bytes);

// Whether `bytes` is valid UTF-8.
bool IsValidUtf8(absl::string_view bytes);

// Rust's char::is_whitespace: the White_Space property.
bool IsWhitespace(char32_t c);
// Rust regex's Unicode \w: Alphabetic, marks, Nd, Pc, Join_Control.
bool IsWordChar(char32_t c);
// Rust's char::is_numeric: general categories Nd, Nl, No.
bool IsNumeric(char32_t c);
// ASCII punctuation or a general category P*.
bool IsPunctuation(char32_t c);

// Rust's char::to_lowercase for each character (full mappings, no context).
std::string Lowercase(absl::string_view text);

}  // namespace retort::tokenizer

#endif  // RETORT_TOKENIZER_UNICODE_H_
