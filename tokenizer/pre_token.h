// The pieces a text is cut into before the model sees it (Hugging Face's
// PreTokenizedString, without offsets): added tokens already resolved to an
// id, and the remaining text pieces that pre-tokenizers keep splitting.
#ifndef RETORT_TOKENIZER_PRE_TOKEN_H_
#define RETORT_TOKENIZER_PRE_TOKEN_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace retort::tokenizer {

struct PreToken {
  std::string text;
  // Whether the piece begins where the input text begins (Metaspace's
  // prepend_scheme "first" prepends only to such a piece).
  bool at_input_start = false;
  // The id of an added token this piece was matched as, or -1 for text the
  // pre-tokenizers and the model still handle.
  int32_t added_token_id = -1;
};

// Replaces every text piece (added_token_id < 0) by what `split` returns for
// it, dropping empty pieces; added-token pieces stay as they are.
template <typename SplitFn>
void SplitEach(std::vector<PreToken>* pieces, SplitFn&& split) {
  std::vector<PreToken> out;
  out.reserve(pieces->size());
  for (PreToken& piece : *pieces) {
    if (piece.added_token_id >= 0) {
      out.push_back(std::move(piece));
      continue;
    }
    for (PreToken& part : split(std::move(piece))) {
      if (!part.text.empty()) out.push_back(std::move(part));
    }
  }
  *pieces = std::move(out);
}

// The pieces of `piece` at the given byte ranges; only a part starting at
// byte 0 keeps at_input_start.
inline std::vector<PreToken> Slice(const PreToken& piece,
                                   const std::vector<std::pair<size_t, size_t>>& ranges) {
  std::vector<PreToken> parts;
  parts.reserve(ranges.size());
  for (const auto& [begin, end] : ranges) {
    parts.push_back(
        {piece.text.substr(begin, end - begin), piece.at_input_start && begin == 0, -1});
  }
  return parts;
}

}  // namespace retort::tokenizer

#endif  // RETORT_TOKENIZER_PRE_TOKEN_H_
