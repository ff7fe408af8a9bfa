// A SentencePiece tokenizer: training a .model file from text, and encoding
// and decoding with it.
//
// SentencePiece runs inside libretort_sentencepiece.so, loaded on first use
// (see data/sentencepiece_backend.h for why it cannot be linked directly).
// The loader looks, in order, at $RETORT_SENTENCEPIECE_MODULE, next to the
// running executable, and at the path the build wrote it to. A build
// without SentencePiece (none found at configure time, or a sanitizer build,
// whose runtime refuses RTLD_DEEPBIND) answers UNIMPLEMENTED.
//
// Models trained here keep text as is (identity normalization, whitespace
// untouched) and fall back to UTF-8 bytes for anything outside the
// vocabulary, so Decode(Encode(s)) == s for every valid UTF-8 string. Ids:
// <unk> 0, <s> 1, </s> 2, then the 256 byte pieces, then the learned pieces.
//
// A Tokenizer is immutable after Load and safe to use from several threads.
#ifndef RETORT_DATA_TOKENIZER_H_
#define RETORT_DATA_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/text_tokenizer.h"

struct RetortSpmApi;

namespace retort::data {

class Tokenizer : public TextTokenizer {
 public:
  struct TrainOptions {
    // Read line by line; empty and whitespace-only lines are skipped.
    std::vector<std::string> text_files;
    // At least 259 (the byte pieces and the three specials) plus the number
    // of distinct characters in the text; at most what the text can merge.
    // SentencePiece's message says the bound when one is crossed.
    int vocab_size = 4096;
    std::string model_type = "bpe";  // "bpe" or "unigram"
    // Writes exactly this .model file, atomically.
    std::string output_path;
    int num_threads = 2;
    // Train on at most this many lines, drawn evenly (reservoir sampling
    // seeded by `seed`); 0 = all.
    int64_t input_sentence_size = 0;
    uint64_t seed = 1;
    // Training lines longer than this many bytes are skipped (still encoded
    // later, through shorter pieces and bytes).
    int max_sentence_length = 65536;
  };

  // Trains and writes options.output_path. Deterministic: the same text and
  // options give the same bytes (the model records its training options, so
  // changing any of them, num_threads included, changes its sha256).
  // INVALID_ARGUMENT for bad options, or a vocab_size the text cannot
  // support (SentencePiece's message, with the bound it needs); errors from
  // ForEachTextLine for the files; UNIMPLEMENTED / FAILED_PRECONDITION when
  // SentencePiece is unavailable.
  static absl::Status Train(const TrainOptions& options);

  // NOT_FOUND when the file is missing; DATA_LOSS when it is not a
  // SentencePiece model. Both name the file.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& model_path);

  ~Tokenizer() override;
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // No <s> or </s> is added. Invalid UTF-8 bytes are read as U+FFFD.
  std::vector<int32_t> Encode(const std::string& text) const override;
  // <s> and </s> decode to nothing; ids outside [0, vocab_size()) decode as
  // <unk> (" \u2047 ").
  std::string Decode(const std::vector<int32_t>& ids) const override;

  int vocab_size() const override { return vocab_size_; }
  int bos_id() const override { return bos_id_; }  // -1 when the model has none
  int eos_id() const override { return eos_id_; }  // -1 when the model has none
  // Lowercase hex SHA-256 of the .model file's bytes.
  const std::string& sha256() const override { return sha256_; }
  const std::string& path() const override { return path_; }

 private:
  Tokenizer() = default;

  const RetortSpmApi* api_ = nullptr;
  void* processor_ = nullptr;  // owned; released through api_
  int vocab_size_ = 0;
  int unk_id_ = 0;
  int bos_id_ = -1;
  int eos_id_ = -1;
  std::string sha256_;
  std::string path_;
};

}  // namespace retort::data

#endif  // RETORT_DATA_TOKENIZER_H_
