#include "student/gguf_vocabulary.h"

#include <cstdint>
#include <map>
#include <memory>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "data/sentencepiece_model.h"
#include "tokenizer/hf_tokenizer.h"

namespace retort::student {
namespace {

using models::GgufValue;

// llama.cpp's token types (llama_token_type).
constexpr int32_t kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5;

// The pre-tokenizer regexes as published in tokenizer.json files, and the
// name llama.cpp gives each (src/llama-vocab.cpp).
constexpr char kLlama3Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr char kQwen2Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

bool IsByteLevel(const nlohmann::json& j, bool use_regex) {
  return j.is_object() && j.value("type", "") == "ByteLevel" &&
         j.value("use_regex", true) == use_regex && !j.value("add_prefix_space", false);
}

// "gpt-2", "llama-bpe" or "qwen2" for a pre_tokenizer llama.cpp runs the
// same; empty otherwise.
std::string PreTokenizerName(const nlohmann::json& pre) {
  if (IsByteLevel(pre, /*use_regex=*/true)) return "gpt-2";
  if (!pre.is_object() || pre.value("type", "") != "Sequence") return "";
  const nlohmann::json& parts = pre.value("pretokenizers", nlohmann::json::array());
  if (parts.size() != 2 || !IsByteLevel(parts[1], /*use_regex=*/false)) return "";
  const nlohmann::json& split = parts[0];
  if (!split.is_object() || split.value("type", "") != "Split" ||
      split.value("behavior", "") != "Isolated" || split.value("invert", false) ||
      !split.contains("pattern") || !split["pattern"].is_object() ||
      !split["pattern"].contains("Regex") || !split["pattern"]["Regex"].is_string()) {
    return "";
  }
  const std::string pattern = split["pattern"]["Regex"].get<std::string>();
  if (pattern == kLlama3Pattern) return "llama-bpe";
  if (pattern == kQwen2Pattern) return "qwen2";
  return "";
}

absl::StatusOr<GgufMetadata> FromSentencePiece(const std::string& path, const std::string& bytes,
                                               const models::LlamaConfig& c) {
  RETORT_ASSIGN_OR_RETURN(data::SentencePieceVocabulary vocab,
                          data::ParseSentencePieceModel(bytes, path));
  if (static_cast<int64_t>(vocab.pieces.size()) != c.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " has ", vocab.pieces.size(), " pieces but the model's vocabulary is ",
                     c.vocab_size, "; export with the tokenizer the model was trained with"));
  }
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (const auto& p : vocab.pieces) {
    tokens.push_back(p.text);
    scores.push_back(p.score);
    types.push_back(p.type);
  }
  GgufMetadata meta = {
      {"tokenizer.ggml.model", GgufValue::String("llama")},
      {"tokenizer.ggml.tokens", GgufValue::Strings(tokens)},
      {"tokenizer.ggml.scores", GgufValue::F32s(scores)},
      {"tokenizer.ggml.token_type", GgufValue::I32s(types)},
      {"tokenizer.ggml.bos_token_id", GgufValue::U32(static_cast<uint32_t>(c.bos_token_id))},
      {"tokenizer.ggml.eos_token_id", GgufValue::U32(static_cast<uint32_t>(c.eos_token_id))},
      {"tokenizer.ggml.add_bos_token", GgufValue::Bool(true)},
      {"tokenizer.ggml.add_eos_token", GgufValue::Bool(false)},
      {"tokenizer.ggml.add_space_prefix", GgufValue::Bool(vocab.add_dummy_prefix)},
  };
  if (const int32_t unk = vocab.FirstOfType(2); unk >= 0) {
    meta.push_back({"tokenizer.ggml.unknown_token_id", GgufValue::U32(static_cast<uint32_t>(unk))});
  }
  return meta;
}

absl::StatusOr<GgufMetadata> FromTokenizerJson(const std::string& path, const std::string& text,
                                               const models::LlamaConfig& c) {
  // Loading it checks every part retort runs; what follows checks that
  // llama.cpp would run the same.
  RETORT_ASSIGN_OR_RETURN(std::unique_ptr<tokenizer::HfTokenizer> hf,
                          tokenizer::HfTokenizer::FromJson(text, path));
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, false);
  auto refuse = [&](const std::string& what) {
    return absl::UnimplementedError(absl::StrCat(
        "GGUF export: ", path, ": ", what,
        "; llama.cpp's byte-level BPE (tokenizer.ggml.model gpt2) would tokenize differently. "
        "Byte-level BPE tokenizers like GPT-2's, Llama 3's and Qwen2's are converted"));
  };
  const nlohmann::json& model = json.at("model");
  if (model.value("type", "") != "BPE") {
    return refuse(absl::StrCat("the model is ", model.value("type", "(no type)"), ", not BPE"));
  }
  if (model.value("byte_fallback", false)) {
    return refuse(
        "a BPE with byte_fallback (Llama 2 and Mistral's tokenizer.json) is not converted; "
        "export with the model's tokenizer.model instead");
  }
  const nlohmann::json& normalizer = json.value("normalizer", nlohmann::json());
  if (!normalizer.is_null() && normalizer.value("type", "") != "NFC") {
    return refuse(
        absl::StrCat("the normalizer ", normalizer.dump().substr(0, 200), " is not null or NFC"));
  }
  const std::string pre = PreTokenizerName(json.value("pre_tokenizer", nlohmann::json()));
  if (pre.empty()) {
    return refuse(absl::StrCat("the pre_tokenizer ",
                               json.value("pre_tokenizer", nlohmann::json()).dump().substr(0, 300),
                               " is not GPT-2's ByteLevel or Llama 3's or Qwen2's regex split "
                               "with ByteLevel"));
  }
  // llama.cpp ignores merges for whole-vocabulary words exactly with llama-bpe.
  const bool ignore_merges = model.value("ignore_merges", false);
  if (ignore_merges != (pre == "llama-bpe")) {
    return refuse(absl::StrCat("ignore_merges is ", ignore_merges ? "true" : "false",
                               ", which llama.cpp's '", pre, "' pre-tokenizer does not do"));
  }

  // Tokens by id: the model's vocabulary, then the added tokens.
  std::map<int64_t, std::pair<std::string, int32_t>> by_id;
  for (const auto& [token, id] : model.at("vocab").items()) {
    by_id[id.get<int64_t>()] = {token, kNormal};
  }
  for (const nlohmann::json& t : json.value("added_tokens", nlohmann::json::array())) {
    by_id[t.at("id").get<int64_t>()] = {t.at("content").get<std::string>(),
                                        t.value("special", false) ? kControl : kUserDefined};
  }
  const int64_t size = by_id.empty() ? 0 : by_id.rbegin()->first + 1;
  if (size > c.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " has token ids up to ", size - 1, " but the model's vocabulary is ",
                     c.vocab_size, "; export with the tokenizer the model was trained with"));
  }
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  for (int64_t id = 0; id < c.vocab_size; ++id) {
    auto it = by_id.find(id);
    if (it == by_id.end()) {
      tokens.push_back(absl::StrCat("[PAD", id, "]"));
      types.push_back(kUnused);
    } else {
      tokens.push_back(it->second.first);
      types.push_back(it->second.second);
    }
  }
  std::vector<std::string> merges;
  for (const nlohmann::json& m : model.at("merges")) {
    merges.push_back(
        m.is_string() ? m.get<std::string>()
                      : absl::StrCat(m.at(0).get<std::string>(), " ", m.at(1).get<std::string>()));
  }
  // Whether the post-processor puts the bos token first.
  const std::vector<int32_t> plain = hf->Encode("a", false), with = hf->Encode("a", true);
  const bool add_bos =
      hf->bos_id() >= 0 && with.size() > plain.size() && !with.empty() && with[0] == hf->bos_id();
  GgufMetadata meta = {
      {"tokenizer.ggml.model", GgufValue::String("gpt2")},
      {"tokenizer.ggml.pre", GgufValue::String(pre)},
      {"tokenizer.ggml.tokens", GgufValue::Strings(tokens)},
      {"tokenizer.ggml.token_type", GgufValue::I32s(types)},
      {"tokenizer.ggml.merges", GgufValue::Strings(merges)},
      {"tokenizer.ggml.add_bos_token", GgufValue::Bool(add_bos)},
      {"tokenizer.ggml.add_eos_token", GgufValue::Bool(false)},
  };
  if (hf->bos_id() >= 0) {
    meta.push_back(
        {"tokenizer.ggml.bos_token_id", GgufValue::U32(static_cast<uint32_t>(hf->bos_id()))});
  }
  if (hf->eos_id() >= 0) {
    meta.push_back(
        {"tokenizer.ggml.eos_token_id", GgufValue::U32(static_cast<uint32_t>(hf->eos_id()))});
  }
  return meta;
}

}  // namespace

absl::StatusOr<GgufMetadata> GgufVocabularyMetadata(const std::string& tokenizer_file,
                                                    const models::LlamaConfig& config) {
  if (tokenizer_file.empty()) {
    return absl::InvalidArgumentError(
        "a GGUF file needs the tokenizer's vocabulary: the checkpoint has no tokenizer.model or "
        "tokenizer.json");
  }
  RETORT_ASSIGN_OR_RETURN(std::string bytes, ReadFile(tokenizer_file));
  const size_t first = bytes.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && bytes[first] == '{') {
    return FromTokenizerJson(tokenizer_file, bytes, config);
  }
  return FromSentencePiece(tokenizer_file, bytes, config);
}

}  // namespace retort::student
