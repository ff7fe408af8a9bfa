// A Hugging Face `tokenizer.json` tokenizer that produces exactly the ids
// Hugging Face's `tokenizers` library produces, for the BPE family that
// Llama 3, Qwen2/2.5/3, GPT-2, Mistral and Llama 2 use:
//
//   text -> added tokens split out (raw text) -> normalizer (per piece)
//        -> normalized added tokens split out -> pre_tokenizer -> BPE model
//        -> post_processor (when add_special_tokens)
//
// Supported components (anything else fails Load with an error naming the
// component type and the file, see docs/tokenizers.md):
//   model          BPE (merges as "a b" or ["a","b"], byte_fallback,
//                  unk_token, fuse_unk, ignore_merges, continuing_subword_prefix,
//                  end_of_word_suffix; dropout null or 0)
//   normalizer     Sequence NFC NFD NFKC NFKD Lowercase Prepend Replace Strip
//   pre_tokenizer  Sequence Split ByteLevel Metaspace Digits Whitespace
//                  WhitespaceSplit Punctuation
//   post_processor TemplateProcessing BertProcessing RobertaProcessing
//                  ByteLevel Sequence
//   decoder        ByteLevel Metaspace Sequence Replace ByteFallback Fuse
//                  Strip BPEDecoder
// "truncation" and "padding" must be null.
//
// Immutable after Load; Encode and Decode are thread-safe.
#ifndef RETORT_TOKENIZER_HF_TOKENIZER_H_
#define RETORT_TOKENIZER_HF_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace retort::tokenizer {

class AddedVocabulary;
class BpeModel;
class Decoder;
class Normalizer;
class PostProcessor;
class PreTokenizer;

class HfTokenizer {
 public:
  // Reads and parses `path`. NotFoundError when it cannot be read;
  // InvalidArgumentError (malformed JSON or fields) or UnimplementedError
  // (an unsupported component type), each message naming the file.
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> Load(const std::string& path);
  // Parses tokenizer.json text; `name_for_errors` stands for the file in
  // error messages.
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> FromJson(absl::string_view json,
                                                               absl::string_view name_for_errors);
  ~HfTokenizer();
  HfTokenizer(const HfTokenizer&) = delete;
  HfTokenizer& operator=(const HfTokenizer&) = delete;

  // The ids of `text`. Invalid UTF-8 is first replaced as Rust's
  // from_utf8_lossy does (Hugging Face only ever sees valid text). With
  // `add_special_tokens`, the post_processor adds its special tokens.
  std::vector<int32_t> Encode(absl::string_view text, bool add_special_tokens) const;
  // The ids of a pair of texts (the post_processor's pair template).
  std::vector<int32_t> EncodePair(absl::string_view first, absl::string_view second,
                                  bool add_special_tokens) const;

  // The text of `ids` through the decoder, as Hugging Face's decode: ids
  // with no token are skipped, and with `skip_special_tokens` so are the
  // special added tokens. Without a decoder the tokens are joined by spaces.
  std::string Decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const;

  // One more than the largest id any token has (model or added): the size
  // an embedding table needs.
  int vocab_size() const;
  // The special token the single-sequence template puts first, else the
  // first known of <|begin_of_text|>, <s>, <bos>, <|startoftext|>; -1 when
  // none.
  int bos_id() const { return bos_id_; }
  // The special token the template puts after the text, else the first
  // known of <|end_of_text|>, </s>, <eos>, <|endoftext|>; -1 when none.
  int eos_id() const { return eos_id_; }
  // Lowercase hex SHA-256 of the tokenizer.json bytes.
  const std::string& sha256() const { return sha256_; }
  // The id of a token (added tokens first, then the model vocabulary).
  std::optional<int32_t> TokenToId(absl::string_view token) const;
  // The token of an id, or nullopt.
  std::optional<std::string> IdToToken(int32_t id) const;

 private:
  HfTokenizer();
  void EncodeInto(absl::string_view text, std::vector<int32_t>* ids) const;

  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Normalizer> normalizer_;         // may be null
  std::unique_ptr<PreTokenizer> pre_tokenizer_;    // may be null
  std::unique_ptr<PostProcessor> post_processor_;  // may be null
  std::unique_ptr<Decoder> decoder_;               // may be null
  std::unique_ptr<AddedVocabulary> added_;
  int bos_id_ = -1;
  int eos_id_ = -1;
  std::string sha256_;
};

}  // namespace retort::tokenizer

#endif  // RETORT_TOKENIZER_HF_TOKENIZER_H_
