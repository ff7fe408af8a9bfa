#include "tokenizer/bpe_model.h"

#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/tokenizer/test_json.h"

namespace retort::tokenizer {
namespace {

using testing::BpeModelJson;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::Merges;

std::vector<int32_t> Tokenize(const BpeModel& model, absl::string_view word) {
  std::vector<int32_t> ids;
  model.Tokenize(word, &ids);
  return ids;
}

const nlohmann::json kAbcVocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}};

TEST(BpeModelTest, LowestRankMergesFirst) {
  // "b c" outranks "a b": a + bc, and no merge joins those two.
  auto model =
      BpeModel::Parse(BpeModelJson(kAbcVocab, Merges({{"b", "c"}, {"a", "b"}, {"ab", "c"}})));
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_THAT(Tokenize(**model, "abc"), ElementsAre(0, 4));
  // "a b" first, then "ab c".
  model = BpeModel::Parse(BpeModelJson(kAbcVocab, Merges({{"a", "b"}, {"b", "c"}, {"ab", "c"}})));
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_THAT(Tokenize(**model, "abc"), ElementsAre(5));
}

TEST(BpeModelTest, LeftmostPairWinsTies) {
  auto model = BpeModel::Parse(BpeModelJson({{"a", 0}, {"aa", 1}}, Merges({{"a", "a"}})));
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_THAT(Tokenize(**model, "aaa"), ElementsAre(1, 0));
  EXPECT_THAT(Tokenize(**model, "aaaa"), ElementsAre(1, 1));
}

TEST(BpeModelTest, LegacyMergeStringsMeanTheSame) {
  auto pairs = BpeModel::Parse(BpeModelJson(kAbcVocab, Merges({{"a", "b"}, {"ab", "c"}})));
  auto strings = BpeModel::Parse(
      BpeModelJson(kAbcVocab, nlohmann::json::array({"#version: 0.2", "a b", "ab c"})));
  ASSERT_TRUE(pairs.ok() && strings.ok());
  EXPECT_EQ(Tokenize(**pairs, "abcab"), Tokenize(**strings, "abcab"));
  EXPECT_THAT(Tokenize(**strings, "abcab"), ElementsAre(5, 3));
}

TEST(BpeModelTest, ByteFallbackSpellsUnknownCharactersAsBytes) {
  nlohmann::json vocab = {{"<unk>", 0}, {"<0xC3>", 1}, {"<0xA9>", 2}, {"a", 3}};
  auto model = BpeModel::Parse(BpeModelJson(vocab, nlohmann::json::array(),
                                            {{"byte_fallback", true}, {"unk_token", "<unk>"}}));
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_THAT(Tokenize(**model, "a\xC3\xA9"), ElementsAre(3, 1, 2));  // aé
  // ü (C3 BC) has no <0xBC>: unk.
  EXPECT_THAT(Tokenize(**model,
                       "\xC3\xBC"
                       "a"),
              ElementsAre(0, 3));
}

TEST(BpeModelTest, UnknownCharactersFuseOnlyWithFuseUnk) {
  nlohmann::json vocab = {{"<unk>", 0}, {"a", 1}};
  auto fused = BpeModel::Parse(
      BpeModelJson(vocab, nlohmann::json::array(), {{"unk_token", "<unk>"}, {"fuse_unk", true}}));
  auto separate =
      BpeModel::Parse(BpeModelJson(vocab, nlohmann::json::array(), {{"unk_token", "<unk>"}}));
  auto dropped = BpeModel::Parse(BpeModelJson(vocab, nlohmann::json::array()));
  ASSERT_TRUE(fused.ok() && separate.ok() && dropped.ok());
  EXPECT_THAT(Tokenize(**fused, "xyza"), ElementsAre(0, 1));
  EXPECT_THAT(Tokenize(**separate, "xyza"), ElementsAre(0, 0, 0, 1));
  EXPECT_THAT(Tokenize(**dropped, "xyza"), ElementsAre(1));
}

TEST(BpeModelTest, IgnoreMergesTakesWholeWordsFromTheVocabulary) {
  // "abc" is in the vocabulary but no merge reaches it.
  nlohmann::json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"abc", 3}};
  auto plain = BpeModel::Parse(BpeModelJson(vocab, nlohmann::json::array()));
  auto ignore =
      BpeModel::Parse(BpeModelJson(vocab, nlohmann::json::array(), {{"ignore_merges", true}}));
  ASSERT_TRUE(plain.ok() && ignore.ok());
  EXPECT_THAT(Tokenize(**plain, "abc"), ElementsAre(0, 1, 2));
  EXPECT_THAT(Tokenize(**ignore, "abc"), ElementsAre(3));
  EXPECT_THAT(Tokenize(**ignore, "abca"), ElementsAre(0, 1, 2, 0));
}

TEST(BpeModelTest, SubwordPrefixAndWordSuffix) {
  nlohmann::json vocab = {{"a", 0}, {"##b", 1}, {"ab", 2}, {"##c</w>", 3}, {"abc</w>", 4}};
  auto model = BpeModel::Parse(
      BpeModelJson(vocab, Merges({{"a", "##b"}, {"ab", "##c</w>"}}),
                   {{"continuing_subword_prefix", "##"}, {"end_of_word_suffix", "</w>"}}));
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_THAT(Tokenize(**model, "abc"), ElementsAre(4));
}

TEST(BpeModelTest, RefusesBadModels) {
  auto unknown = BpeModel::Parse(BpeModelJson(kAbcVocab, Merges({{"a", "x"}})));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.status().message(), HasSubstr("'x' that is not in the vocabulary"));
  auto no_result = BpeModel::Parse(BpeModelJson({{"a", 0}, {"c", 1}}, Merges({{"a", "c"}})));
  EXPECT_THAT(no_result.status().message(), HasSubstr("yields 'ac'"));
  auto three = BpeModel::Parse(BpeModelJson(kAbcVocab, nlohmann::json::array({"a b c"})));
  EXPECT_EQ(three.status().code(), absl::StatusCode::kInvalidArgument);
  auto unk =
      BpeModel::Parse(BpeModelJson(kAbcVocab, nlohmann::json::array(), {{"unk_token", "<unk>"}}));
  EXPECT_THAT(unk.status().message(), HasSubstr("unk_token '<unk>'"));
  auto dropout =
      BpeModel::Parse(BpeModelJson(kAbcVocab, nlohmann::json::array(), {{"dropout", 0.1}}));
  EXPECT_EQ(dropout.status().code(), absl::StatusCode::kUnimplemented);
  auto negative = BpeModel::Parse(BpeModelJson({{"a", -1}}, nlohmann::json::array()));
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  nlohmann::json word_piece = {{"type", "WordPiece"}, {"vocab", kAbcVocab}};
  auto other = BpeModel::Parse(word_piece);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(other.status().message(), HasSubstr("WordPiece"));
}

TEST(BpeModelTest, TokenizesFromSeveralThreads) {
  auto model =
      BpeModel::Parse(BpeModelJson(kAbcVocab, Merges({{"a", "b"}, {"ab", "c"}, {"b", "c"}})));
  ASSERT_TRUE(model.ok());
  const std::vector<std::string> words = {"abc", "abcabc", "cab", "bca", "aabbcc"};
  std::vector<std::vector<int32_t>> expected;
  for (const auto& w : words) expected.push_back(Tokenize(**model, w));
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        const size_t k = i % words.size();
        // Distinct words too, so that the cache is written while read.
        if (Tokenize(**model, words[k]) != expected[k]) ++wrong;
        Tokenize(**model, words[k] + std::string(i % 50, 'a'));
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

}  // namespace
}  // namespace retort::tokenizer
