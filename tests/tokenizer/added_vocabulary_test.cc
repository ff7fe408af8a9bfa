// Expected ids and texts were checked against Hugging Face's tokenizers
// (npm 0.23.2) on the same tokenizer.json.
// Added tokens as Hugging Face's AddedVocabulary treats them, through the
// whole tokenizer (no pre-tokenizer; a character-level BPE vocabulary).
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/tokenizer/test_json.h"
#include "tokenizer/hf_tokenizer.h"

namespace retort::tokenizer {
namespace {

using testing::BpeModelJson;
using ::testing::ElementsAre;
using testing::TokenizerJson;

constexpr char kChars[] = " abcdefghijklmnopqrstuvwxyz<>";

nlohmann::json CharVocab() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int i = 0; kChars[i] != '\0'; ++i) vocab[std::string(1, kChars[i])] = i;
  return vocab;
}

int32_t C(char c) { return static_cast<int32_t>(std::string(kChars).find(c)); }

nlohmann::json Added(const std::string& content, nlohmann::json options = {}) {
  nlohmann::json token = {{"id", 0},         {"content", content}, {"single_word", false},
                          {"lstrip", false}, {"rstrip", false},    {"normalized", false},
                          {"special", true}};
  if (!options.is_null()) token.update(options);
  return token;
}

std::unique_ptr<HfTokenizer> Make(const nlohmann::json& added_tokens,
                                  const nlohmann::json& normalizer = nullptr) {
  auto tokenizer = HfTokenizer::FromJson(
      TokenizerJson(BpeModelJson(CharVocab(), nlohmann::json::array()),
                    {{"added_tokens", added_tokens}, {"normalizer", normalizer}}),
      "test.json");
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

TEST(AddedVocabularyTest, NewTokensTakeIdsAfterTheModelAndKnownOnesKeepTheirs) {
  const int32_t n = static_cast<int32_t>(std::string(kChars).size());
  auto tokenizer = Make(nlohmann::json::array({Added("<ab>"), Added("a"), Added("<a>")}));
  EXPECT_EQ(tokenizer->TokenToId("<ab>"), n);
  EXPECT_EQ(tokenizer->TokenToId("a"), C('a'));
  EXPECT_EQ(tokenizer->TokenToId("<a>"), n + 1);
  EXPECT_EQ(tokenizer->vocab_size(), n + 2);
}

TEST(AddedVocabularyTest, LongestMatchFirst) {
  auto tokenizer = Make(nlohmann::json::array({Added("<a>"), Added("<ab>")}));
  const int32_t a = *tokenizer->TokenToId("<a>"), ab = *tokenizer->TokenToId("<ab>");
  EXPECT_THAT(tokenizer->Encode("x<ab>y<a>", false), ElementsAre(C('x'), ab, C('y'), a));
  EXPECT_THAT(tokenizer->Encode("<a><ab", false), ElementsAre(a, C('<'), C('a'), C('b')));
}

TEST(AddedVocabularyTest, LstripAndRstripEatWhitespace) {
  auto tokenizer = Make(
      nlohmann::json::array({Added("<m>", {{"lstrip", true}}), Added("<r>", {{"rstrip", true}})}));
  const int32_t m = *tokenizer->TokenToId("<m>"), r = *tokenizer->TokenToId("<r>");
  EXPECT_THAT(tokenizer->Encode("a  <m> b", false), ElementsAre(C('a'), m, C(' '), C('b')));
  EXPECT_THAT(tokenizer->Encode("a <r>  b", false), ElementsAre(C('a'), C(' '), r, C('b')));
}

TEST(AddedVocabularyTest, SingleWordOnlyMatchesWholeWords) {
  auto tokenizer =
      Make(nlohmann::json::array({Added("cat", {{"single_word", true}, {"special", false}})}));
  const int32_t cat = *tokenizer->TokenToId("cat");
  EXPECT_THAT(tokenizer->Encode("a cat", false), ElementsAre(C('a'), C(' '), cat));
  EXPECT_THAT(tokenizer->Encode("cats", false), ElementsAre(C('c'), C('a'), C('t'), C('s')));
  EXPECT_THAT(tokenizer->Encode("cat.", false), ElementsAre(cat));  // '.' is not in the vocab
}

TEST(AddedVocabularyTest, NormalizedTokensMatchTheNormalizedText) {
  auto tokenizer = Make(nlohmann::json::array({Added("<NORM>", {{"normalized", true}})}),
                        {{"type", "Lowercase"}});
  const int32_t norm = *tokenizer->TokenToId("<NORM>");
  EXPECT_THAT(tokenizer->Encode("<NORM> <norm>", false), ElementsAre(norm, C(' '), norm));
  // Decode shows the normalized form, as Hugging Face does.
  EXPECT_EQ(tokenizer->Decode({norm}, false), "<norm>");
}

TEST(AddedVocabularyTest, DecodeSkipsOnlySpecialTokens) {
  auto tokenizer =
      Make(nlohmann::json::array({Added("<s>"), Added("<plain>", {{"special", false}})}));
  const int32_t s = *tokenizer->TokenToId("<s>"), plain = *tokenizer->TokenToId("<plain>");
  EXPECT_EQ(tokenizer->Decode({s, C('a'), plain}, true), "a <plain>");
  EXPECT_EQ(tokenizer->Decode({s, C('a'), plain}, false), "<s> a <plain>");
}

}  // namespace
}  // namespace retort::tokenizer
