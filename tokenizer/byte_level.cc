#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/unicode.h"

namespace retort::tokenizer {
namespace {

struct Tables {
  std::array<char32_t, 256> byte_to_char;
  std::array<int, 512> char_to_byte;  // every character in the table is < 512
  std::array<std::string, 256> byte_to_utf8;
};

bool IsPrintable(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

const Tables& GetTables() {
  static const Tables* tables = [] {
    auto* t = new Tables();
    t->char_to_byte.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      t->byte_to_char[b] = IsPrintable(b) ? static_cast<char32_t>(b) : 256 + n++;
    }
    for (int b = 0; b < 256; ++b) {
      t->char_to_byte[t->byte_to_char[b]] = b;
      AppendUtf8(t->byte_to_char[b], &t->byte_to_utf8[b]);
    }
    return t;
  }();
  return *tables;
}

}  // namespace

char32_t ByteToChar(unsigned char byte) { return GetTables().byte_to_char[byte]; }

int CharToByte(char32_t c) { return c < 512 ? GetTables().char_to_byte[c] : -1; }

std::string BytesToChars(absl::string_view text) {
  const Tables& tables = GetTables();
  std::string out;
  out.reserve(text.size() * 2);
  for (const char b : text) out += tables.byte_to_utf8[static_cast<unsigned char>(b)];
  return out;
}

std::string CharsToBytes(absl::string_view token) {
  std::string out;
  out.reserve(token.size());
  size_t pos = 0;
  while (pos < token.size()) {
    const int b = CharToByte(NextCodePoint(token, &pos));
    if (b < 0) return std::string(token);
    out.push_back(static_cast<char>(b));
  }
  return out;
}

}  // namespace retort::tokenizer
