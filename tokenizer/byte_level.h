// GPT-2's byte-to-unicode table, which byte-level BPE uses to spell every
// byte as a printable character (0x20 ' ' becomes 'Ġ' U+0120, ...).
#ifndef RETORT_TOKENIZER_BYTE_LEVEL_H_
#define RETORT_TOKENIZER_BYTE_LEVEL_H_

#include <string>
#include "absl/strings/string_view.h"

namespace retort::tokenizer {

// The character that stands for `byte`.
char32_t ByteToChar(unsigned char byte);

// The byte that `c` stands for, or -1 when `c` is not in the table.
int CharToByte(char32_t c);

// Every byte of `text` spelled as its character (UTF-8).
std::string BytesToChars(absl::string_view text);

// Undoes BytesToChars for a token: the bytes its characters stand for, or the
// token's own bytes when one of its characters is not in the table (as
// Hugging Face's ByteLevel decoder does).
std::string CharsToBytes(absl::string_view token);

}  // namespace retort::tokenizer

#endif  // RETORT_TOKENIZER_BYTE_LEVEL_H_
