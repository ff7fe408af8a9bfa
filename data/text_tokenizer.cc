#include "data/text_tokenizer.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "data/tokenizer.h"
#include "tokenizer/hf_tokenizer.h"

namespace retort::data {
namespace {

// A tokenizer.json through the TextTokenizer interface.
class HfTextTokenizer : public TextTokenizer {
 public:
  HfTextTokenizer(std::unique_ptr<tokenizer::HfTokenizer> tokenizer, std::string path)
      : tokenizer_(std::move(tokenizer)), path_(std::move(path)) {}

  std::vector<int32_t> Encode(const std::string& text) const override {
    return tokenizer_->Encode(text, /*add_special_tokens=*/false);
  }
  std::string Decode(const std::vector<int32_t>& ids) const override {
    return tokenizer_->Decode(ids, /*skip_special_tokens=*/true);
  }
  int vocab_size() const override { return tokenizer_->vocab_size(); }
  int bos_id() const override { return tokenizer_->bos_id(); }
  int eos_id() const override { return tokenizer_->eos_id(); }
  const std::string& sha256() const override { return tokenizer_->sha256(); }
  const std::string& path() const override { return path_; }

 private:
  std::unique_ptr<tokenizer::HfTokenizer> tokenizer_;
  std::string path_;
};

enum class Kind { kTokenizerJson, kSentencePiece, kUnknown };

// True when `bytes` start as a SentencePiece ModelProto does: field 1 (a
// piece, tag byte 0x0A) and its length; inside it the piece's text (field 1,
// tag 0x0A, a one-byte length, the text) followed by its score (field 2, tag
// 0x15) or type (field 3, tag 0x18).
bool LooksLikeModelProto(const std::string& bytes) {
  if (bytes.size() < 4 || bytes[0] != '\x0a') return false;
  size_t i = 1;
  while (i < bytes.size() && (static_cast<unsigned char>(bytes[i]) & 0x80) != 0) ++i;  // varint
  ++i;
  if (i + 1 >= bytes.size() || bytes[i] != '\x0a') return false;
  const size_t text_length = static_cast<unsigned char>(bytes[i + 1]);
  const size_t next = i + 2 + text_length;
  return text_length < 0x80 && next < bytes.size() &&
         (bytes[next] == '\x15' || bytes[next] == '\x18');
}

// By content first: JSON starts with '{' (after blanks), a SentencePiece
// model as LooksLikeModelProto says. A .model file that is neither goes to
// SentencePiece too, whose error says why it does not parse.
Kind KindOf(const std::string& path, const std::string& bytes) {
  for (const char c : bytes) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '{') return Kind::kTokenizerJson;
    break;
  }
  if (LooksLikeModelProto(bytes)) return Kind::kSentencePiece;
  if (absl::EndsWith(path, ".model")) return Kind::kSentencePiece;
  return Kind::kUnknown;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TextTokenizer>> LoadTextTokenizer(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadFile(path);
  if (!bytes.ok()) {
    return absl::Status(bytes.status().code(),
                        absl::StrCat("cannot load tokenizer: ", bytes.status().message()));
  }
  switch (KindOf(path, *bytes)) {
    case Kind::kTokenizerJson: {
      RETORT_ASSIGN_OR_RETURN(std::unique_ptr<tokenizer::HfTokenizer> hf,
                              tokenizer::HfTokenizer::FromJson(*bytes, path));
      return std::unique_ptr<TextTokenizer>(new HfTextTokenizer(std::move(hf), path));
    }
    case Kind::kSentencePiece: {
      RETORT_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> spm, Tokenizer::Load(path));
      return std::unique_ptr<TextTokenizer>(std::move(spm));
    }
    case Kind::kUnknown:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path,
                   " is neither a Hugging Face tokenizer.json (a JSON object) nor a SentencePiece "
                   ".model (a ModelProto); give one of those (Hugging Face repositories ship "
                   "tokenizer.json, and often tokenizer.model beside it)"));
}

}  // namespace retort::data
