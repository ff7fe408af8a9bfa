// The vocabulary a GGUF file carries for llama.cpp's tokenizer
// (tokenizer.ggml.*), read from the tokenizer a checkpoint was trained with:
//
//   a SentencePiece .model  -> model "llama": pieces, scores, piece types,
//                              bos/eos from the config, unk, add_space_prefix;
//   a tokenizer.json with a byte-level BPE model (Llama 3, Qwen2/2.5/3,
//   GPT-2)                  -> model "gpt2": tokens by id (the model's
//                              vocabulary, then the added tokens: special
//                              ones CONTROL, others USER_DEFINED), merges as
//                              "a b", and tokenizer.ggml.pre, the name under
//                              which llama.cpp knows the pre-tokenizer:
//                              "gpt-2" (ByteLevel with GPT-2's regex),
//                              "llama-bpe" (Llama 3's Split regex, merges
//                              ignored for whole-vocabulary words) or
//                              "qwen2" (Qwen2's Split regex).
//
// A model whose embedding table is larger than the tokenizer (Qwen pads
// it) gets "[PAD<id>]" tokens of type UNUSED for the rest, as llama.cpp's
// converter writes them. Whatever llama.cpp would tokenize differently is
// refused (UNIMPLEMENTED, naming the file and the part): BPE with
// byte_fallback (Llama 2 and Mistral's tokenizer.json; their
// tokenizer.model exports), another pre-tokenizer or regex, a normalizer
// other than NFC, ignore_merges other than the pre-tokenizer's.
#ifndef RETORT_STUDENT_GGUF_VOCABULARY_H_
#define RETORT_STUDENT_GGUF_VOCABULARY_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "models/gguf_format.h"
#include "models/llama_config.h"

namespace retort::student {

using GgufMetadata = std::vector<std::pair<std::string, models::GgufValue>>;

// The tokenizer.ggml.* metadata for `config`'s model from `tokenizer_file`
// (a .model or a .json, told apart by content as data/text_tokenizer.h
// does). INVALID_ARGUMENT when the tokenizer has more tokens than the model
// has rows, or (SentencePiece) not exactly as many; errors name the file.
absl::StatusOr<GgufMetadata> GgufVocabularyMetadata(const std::string& tokenizer_file,
                                                    const models::LlamaConfig& config);

}  // namespace retort::student

#endif  // RETORT_STUDENT_GGUF_VOCABULARY_H_
