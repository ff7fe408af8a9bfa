// TextTokenizer: what language-model data preparation, training, evaluation
// and generation need of a tokenizer, whichever file it comes from.
//
//   tokenizer.json   Hugging Face's `tokenizers` format, run by
//                    retort::tokenizer::HfTokenizer (tokenizer/)
//   *.model          SentencePiece, run by data::Tokenizer (data/tokenizer.h)
//
// LoadTextTokenizer chooses by content: a file whose first non-blank byte is
// '{' is a tokenizer.json, one that parses as a SentencePiece ModelProto is
// a SentencePiece model; anything else is refused naming the file.
// Implementations are immutable after loading and safe to share between
// threads.
#ifndef RETORT_DATA_TEXT_TOKENIZER_H_
#define RETORT_DATA_TEXT_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace retort::data {

class TextTokenizer {
 public:
  virtual ~TextTokenizer() = default;

  // The ids of `text`, without special tokens (no BOS or EOS template).
  virtual std::vector<int32_t> Encode(const std::string& text) const = 0;
  // The text of `ids`; special tokens (BOS, EOS, ...) decode to nothing.
  virtual std::string Decode(const std::vector<int32_t>& ids) const = 0;

  // One more than the largest id: the embedding table's size.
  virtual int vocab_size() const = 0;
  virtual int bos_id() const = 0;  // -1 when there is none
  virtual int eos_id() const = 0;  // -1 when there is none
  // Lowercase hex SHA-256 of the file's bytes (the teacher fingerprint's
  // tokenizer_sha256).
  virtual const std::string& sha256() const = 0;
  virtual const std::string& path() const = 0;
};

// Loads `path` as a tokenizer.json or a SentencePiece model (see above).
// NOT_FOUND for a missing file; INVALID_ARGUMENT naming the file for one
// that is neither; the loaders' own errors (which name the file) otherwise.
absl::StatusOr<std::unique_ptr<TextTokenizer>> LoadTextTokenizer(const std::string& path);

}  // namespace retort::data

#endif  // RETORT_DATA_TEXT_TOKENIZER_H_
