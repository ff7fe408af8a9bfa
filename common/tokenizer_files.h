// Where a model or corpus directory keeps its tokenizer, by Hugging Face's
// file names: tokenizer.json (the `tokenizers` library's format) or
// tokenizer.model (SentencePiece). Names only; loading is data/'s
// (data/text_tokenizer.h). Torch-free.
#ifndef RETORT_COMMON_TOKENIZER_FILES_H_
#define RETORT_COMMON_TOKENIZER_FILES_H_

#include <string>

#include "absl/status/status.h"

namespace retort {

inline constexpr char kHfTokenizerFileName[] = "tokenizer.json";
inline constexpr char kSentencePieceFileName[] = "tokenizer.model";

// The name a copy of `path` takes in a directory: tokenizer.json when the
// file name ends in .json, tokenizer.model otherwise.
std::string TokenizerFileNameFor(const std::string& path);

// dir/tokenizer.json when it exists, else dir/tokenizer.model when it
// exists, else "". A directory that holds both (as Hugging Face's Llama 2 and
// Mistral repositories do) is read through tokenizer.json, as transformers'
// fast tokenizers read it.
std::string FindTokenizerFile(const std::string& dir);

// Copies `path` into `dir` as TokenizerFileNameFor(path), atomically; does
// nothing for an empty path. Errors name the file.
absl::Status CopyTokenizerInto(const std::string& path, const std::string& dir);

}  // namespace retort

#endif  // RETORT_COMMON_TOKENIZER_FILES_H_
