#include "tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "tokenizer/added_vocabulary.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/unicode.h"

namespace retort::tokenizer {
namespace {

// Prefixes a component's error with the file's name, keeping the code.
absl::Status InFile(absl::string_view name, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(name, ": ", status.message()));
}

bool Present(const nlohmann::json& root, const char* key) {
  return root.contains(key) && !root[key].is_null();
}

}  // namespace

HfTokenizer::HfTokenizer() = default;
HfTokenizer::~HfTokenizer() = default;

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open tokenizer file ", path));
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read tokenizer file ", path));
  return FromJson(contents.str(), path);
}

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::FromJson(
    absl::string_view json, absl::string_view name_for_errors) {
  nlohmann::json root = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(name_for_errors, ": not valid JSON"));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(name_for_errors, ": not a JSON object"));
  }
  std::unique_ptr<HfTokenizer> tokenizer(new HfTokenizer());
  try {
    if (Present(root, "version") &&
        (!root["version"].is_string() || root["version"].get<std::string>() != "1.0")) {
      return absl::InvalidArgumentError(
          absl::StrCat(name_for_errors, ": unknown tokenizer version ", root["version"].dump()));
    }
    for (const char* key : {"truncation", "padding"}) {
      if (Present(root, key)) {
        return absl::UnimplementedError(
            absl::StrCat(name_for_errors, ": '", key, "' is not supported (it must be null)"));
      }
    }
    if (!Present(root, "model")) {
      return absl::InvalidArgumentError(absl::StrCat(name_for_errors, ": no 'model'"));
    }
    auto model = BpeModel::Parse(root["model"]);
    if (!model.ok()) return InFile(name_for_errors, model.status());
    tokenizer->model_ = *std::move(model);
    if (Present(root, "normalizer")) {
      auto normalizer = ParseNormalizer(root["normalizer"]);
      if (!normalizer.ok()) return InFile(name_for_errors, normalizer.status());
      tokenizer->normalizer_ = *std::move(normalizer);
    }
    if (Present(root, "pre_tokenizer")) {
      auto pre_tokenizer = ParsePreTokenizer(root["pre_tokenizer"]);
      if (!pre_tokenizer.ok()) return InFile(name_for_errors, pre_tokenizer.status());
      tokenizer->pre_tokenizer_ = *std::move(pre_tokenizer);
    }
    if (Present(root, "post_processor")) {
      auto post_processor = ParsePostProcessor(root["post_processor"]);
      if (!post_processor.ok()) return InFile(name_for_errors, post_processor.status());
      tokenizer->post_processor_ = *std::move(post_processor);
    }
    if (Present(root, "decoder")) {
      auto decoder = ParseDecoder(root["decoder"]);
      if (!decoder.ok()) return InFile(name_for_errors, decoder.status());
      tokenizer->decoder_ = *std::move(decoder);
    }
    auto added = AddedVocabulary::Create(
        root.contains("added_tokens") ? root["added_tokens"] : nlohmann::json(), *tokenizer->model_,
        tokenizer->normalizer_.get());
    if (!added.ok()) return InFile(name_for_errors, added.status());
    tokenizer->added_ = *std::move(added);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(name_for_errors, ": ", e.what()));
  }

  auto first_known = [&](std::initializer_list<const char*> names) {
    for (const char* name : names) {
      if (auto id = tokenizer->TokenToId(name)) return static_cast<int>(*id);
    }
    return -1;
  };
  std::optional<int32_t> bos, eos;
  if (tokenizer->post_processor_ != nullptr) {
    bos = tokenizer->post_processor_->LeadingSpecialId();
    eos = tokenizer->post_processor_->TrailingSpecialId();
  }
  tokenizer->bos_id_ = bos.has_value()
                           ? *bos
                           : first_known({"<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>"});
  tokenizer->eos_id_ =
      eos.has_value() ? *eos : first_known({"<|end_of_text|>", "</s>", "<eos>", "<|endoftext|>"});
  tokenizer->sha256_ = Sha256Hex(json);
  return tokenizer;
}

void HfTokenizer::EncodeInto(absl::string_view text, std::vector<int32_t>* ids) const {
  const std::string valid = IsValidUtf8(text) ? std::string(text) : ToValidUtf8(text);
  std::vector<PreToken> pieces = added_->ExtractAndNormalize(valid, normalizer_.get());
  if (pre_tokenizer_ != nullptr) pre_tokenizer_->PreTokenize(&pieces);
  for (const PreToken& piece : pieces) {
    if (piece.added_token_id >= 0) {
      ids->push_back(piece.added_token_id);
    } else {
      model_->Tokenize(piece.text, ids);
    }
  }
}

std::vector<int32_t> HfTokenizer::Encode(absl::string_view text, bool add_special_tokens) const {
  std::vector<std::vector<int32_t>> sequences(1);
  EncodeInto(text, &sequences[0]);
  if (post_processor_ != nullptr) {
    sequences = post_processor_->Process(std::move(sequences), add_special_tokens);
  }
  std::vector<int32_t> ids;
  for (const auto& s : sequences) ids.insert(ids.end(), s.begin(), s.end());
  return ids;
}

std::vector<int32_t> HfTokenizer::EncodePair(absl::string_view first, absl::string_view second,
                                             bool add_special_tokens) const {
  std::vector<std::vector<int32_t>> sequences(2);
  EncodeInto(first, &sequences[0]);
  EncodeInto(second, &sequences[1]);
  if (post_processor_ != nullptr) {
    sequences = post_processor_->Process(std::move(sequences), add_special_tokens);
  }
  std::vector<int32_t> ids;
  for (const auto& s : sequences) ids.insert(ids.end(), s.begin(), s.end());
  return ids;
}

std::string HfTokenizer::Decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int32_t id : ids) {
    const std::string* token = added_->IdToToken(id);
    if (token == nullptr) token = model_->IdToToken(id);
    if (token == nullptr) continue;
    if (skip_special_tokens && added_->IsSpecial(*token)) continue;
    tokens.push_back(*token);
  }
  if (decoder_ == nullptr) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out += ' ';
      out += tokens[i];
    }
    return out;
  }
  return decoder_->Decode(std::move(tokens));
}

int HfTokenizer::vocab_size() const { return std::max(model_->id_bound(), added_->id_bound()); }

std::optional<int32_t> HfTokenizer::TokenToId(absl::string_view token) const {
  if (auto id = added_->TokenToId(token)) return id;
  return model_->TokenToId(token);
}

std::optional<std::string> HfTokenizer::IdToToken(int32_t id) const {
  const std::string* token = added_->IdToToken(id);
  if (token == nullptr) token = model_->IdToToken(id);
  if (token == nullptr) return std::nullopt;
  return *token;
}

}  // namespace retort::tokenizer
