// Expected ids and texts were checked against Hugging Face's tokenizers
// (npm 0.23.2) on the same tokenizer.json.
#include "tokenizer/hf_tokenizer.h"

#include <cstdio>
#include <fstream>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/tokenizer/test_json.h"

namespace retort::tokenizer {
namespace {

using testing::BpeModelJson;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::Merges;
using testing::TokenizerJson;

// A tiny Llama-2-style tokenizer: <unk> <s> </s>, bytes for 'é' and '!',
// ▁-words, Prepend + Replace normalizer, <s> template, SentencePiece decoders.
std::string Llama2Json() {
  nlohmann::json vocab = {{"<unk>", 0},  {"<s>", 1},     {"</s>", 2},     {"<0x21>", 3},
                          {"<0xC3>", 4}, {"<0xA9>", 5},  {"\u2581", 6},   {"h", 7},
                          {"i", 8},      {"\u2581h", 9}, {"\u2581hi", 10}};
  nlohmann::json rest = nlohmann::json::parse(R"({
    "added_tokens": [
      {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false,
       "normalized": false, "special": true},
      {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false,
       "normalized": false, "special": true},
      {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false,
       "normalized": false, "special": true}],
    "normalizer": {"type": "Sequence", "normalizers": [
      {"type": "Prepend", "prepend": "\u2581"},
      {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
    "post_processor": {"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}}],
      "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
               {"SpecialToken": {"id": "</s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
      "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]},
                         "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}},
    "decoder": {"type": "Sequence", "decoders": [
      {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
      {"type": "ByteFallback"}, {"type": "Fuse"},
      {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}})");
  return TokenizerJson(
      BpeModelJson(vocab, Merges({{"\u2581", "h"}, {"\u2581h", "i"}}),
                   {{"unk_token", "<unk>"}, {"fuse_unk", true}, {"byte_fallback", true}}),
      rest);
}

std::unique_ptr<HfTokenizer> Llama2() {
  auto tokenizer = HfTokenizer::FromJson(Llama2Json(), "llama2.json");
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

TEST(HfTokenizerTest, EncodesLikeLlama2) {
  auto tokenizer = Llama2();
  EXPECT_THAT(tokenizer->Encode("hi hi", false), ElementsAre(10, 10));
  EXPECT_THAT(tokenizer->Encode("hi hi", true), ElementsAre(1, 10, 10));
  // é by byte fallback, '!' too; x and y fused into one <unk>.
  EXPECT_THAT(tokenizer->Encode("hi\xC3\xA9!xy", false), ElementsAre(10, 4, 5, 3, 0));
  // The normalizer runs per piece around added tokens: "hi" after <s> gets
  // its own ▁.
  EXPECT_THAT(tokenizer->Encode("<s>hi", false), ElementsAre(1, 10));
  EXPECT_THAT(tokenizer->Encode("", false), IsEmpty());
  EXPECT_THAT(tokenizer->Encode("", true), ElementsAre(1));
  EXPECT_THAT(tokenizer->EncodePair("hi", "hi", true), ElementsAre(1, 10, 2, 10));
  EXPECT_THAT(tokenizer->EncodePair("hi", "hi", false), ElementsAre(10, 10));
}

TEST(HfTokenizerTest, DecodesLikeLlama2) {
  auto tokenizer = Llama2();
  EXPECT_EQ(tokenizer->Decode({1, 10, 10, 4, 5, 3}, true), "hi hi\xC3\xA9!");
  EXPECT_EQ(tokenizer->Decode({1, 10}, false), "<s> hi");
  EXPECT_EQ(tokenizer->Decode({10, 999, -1}, false), "hi");  // unknown ids are skipped
}

TEST(HfTokenizerTest, SpecialIdsVocabAndLookups) {
  auto tokenizer = Llama2();
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_EQ(tokenizer->eos_id(), 2);  // not in the single template: by name
  EXPECT_EQ(tokenizer->vocab_size(), 11);
  EXPECT_EQ(tokenizer->TokenToId("\u2581hi"), 10);
  EXPECT_EQ(tokenizer->TokenToId("nope"), std::nullopt);
  EXPECT_EQ(tokenizer->IdToToken(7), "h");
}

TEST(HfTokenizerTest, InvalidUtf8IsReplacedNotFatal) {
  auto tokenizer = Llama2();
  EXPECT_EQ(tokenizer->Encode("hi\xFF\xFEhi", false),
            tokenizer->Encode("hi\xEF\xBF\xBD\xEF\xBF\xBDhi", false));
}

TEST(HfTokenizerTest, Sha256IsOfTheFileBytes) {
  const std::string json = Llama2Json();
  const std::string path = ::testing::TempDir() + "/hf_tokenizer_test.json";
  std::ofstream(path, std::ios::binary) << json;
  auto loaded = HfTokenizer::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->sha256(), (*HfTokenizer::FromJson(json, "x"))->sha256());
  std::remove(path.c_str());
  // sha256sum of this tokenizer.json text.
  auto minimal = HfTokenizer::FromJson(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":[]}})",
                                       "minimal.json");
  ASSERT_TRUE(minimal.ok()) << minimal.status();
  EXPECT_EQ((*minimal)->sha256(),
            "fd638f243daed12fb4aaff022d7d3724fe064d76f4cc417f58308644ca20fcb3");
}

TEST(HfTokenizerTest, ErrorsNameTheFileAndTheComponent) {
  auto missing = HfTokenizer::Load("/nonexistent/tokenizer.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("/nonexistent/tokenizer.json"));

  auto malformed = HfTokenizer::FromJson("{\"model\": ", "bad.json");
  EXPECT_EQ(malformed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(malformed.status().message(), HasSubstr("bad.json"));

  nlohmann::json root = nlohmann::json::parse(Llama2Json());
  auto with = [&](const char* key, nlohmann::json value) {
    nlohmann::json changed = root;
    changed[key] = std::move(value);
    return HfTokenizer::FromJson(changed.dump(), "x.json");
  };
  auto unigram = with("model", nlohmann::json::parse(R"({"type": "Unigram", "vocab": []})"));
  EXPECT_EQ(unigram.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(unigram.status().message(), HasSubstr("x.json"));
  EXPECT_THAT(unigram.status().message(), HasSubstr("Unigram"));
  auto pre = with("pre_tokenizer", {{"type", "UnicodeScripts"}});
  EXPECT_EQ(pre.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(pre.status().message(), HasSubstr("UnicodeScripts"));
  auto decoder = with("decoder", {{"type", "CTC"}});
  EXPECT_THAT(decoder.status().message(), HasSubstr("CTC"));
  auto post = with("post_processor", nlohmann::json::parse(R"({"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}], "special_tokens": {}})"));
  EXPECT_EQ(post.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(post.status().message(), HasSubstr("<bos>"));
  auto truncation = with("truncation", {{"max_length", 8}});
  EXPECT_EQ(truncation.status().code(), absl::StatusCode::kUnimplemented);
  auto version = with("version", "2.0");
  EXPECT_EQ(version.status().code(), absl::StatusCode::kInvalidArgument);
  auto added = with("added_tokens", nlohmann::json::parse(R"([{"id": 5}])"));
  EXPECT_THAT(added.status().message(), HasSubstr("content"));
  auto vocab_type = with(
      "model", nlohmann::json::parse(R"({"type": "BPE", "vocab": {"a": "zero"}, "merges": []})"));
  EXPECT_EQ(vocab_type.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HfTokenizer::FromJson("[]", "array.json").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(HfTokenizerTest, ArbitraryInputNeverCrashes) {
  auto tokenizer = Llama2();
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string text(rng() % 40, '\0');
    for (char& c : text) c = static_cast<char>(rng() % 256);
    const std::vector<int32_t> ids = tokenizer->Encode(text, true);
    for (const int32_t id : ids) EXPECT_LT(id, tokenizer->vocab_size());
    std::vector<int32_t> random_ids(rng() % 10);
    for (int32_t& id : random_ids) id = static_cast<int32_t>(rng() % 20) - 5;
    tokenizer->Decode(random_ids, i % 2 == 0);
  }
  // Every truncation of a valid file is an error, never a crash.
  const std::string json = Llama2Json();
  for (size_t n = 0; n < json.size(); n += 7) {
    EXPECT_FALSE(HfTokenizer::FromJson(json.substr(0, n), "cut.json").ok());
  }
}

}  // namespace
}  // namespace retort::tokenizer
